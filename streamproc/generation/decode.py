"""Decode strategies: latents as the denoiser leaves them → video in [-1, 1].

``generation.decode`` picks one:

* ``diffusers`` — ``AutoencoderKLWan.decode``: one latent frame per decoder pass, every causal
  convolution fed a time axis of one to three frames (today's decode, the reference).
* ``chunked`` — the same causal computation over longer time axes: the whole clip in one
  decoder pass (``decode_chunk_frames = 0``) or a few latent frames per pass. The causal
  caches carry exactly what diffusers' frame-by-frame loop carries, so the frames are equal
  within float rounding (tested against ``diffusers`` for several lengths and batch sizes).
* ``compiled`` — ``chunked`` with the decoder's normalisations (each fused with the activation
  after it), causal convolutions and attention blocks compiled one by one by
  ``torch.compile`` (the cache loop stays eager),
  optionally replayed as CUDA graphs (``decode_cuda_graphs``, CUDA only); checked against the
  eager decode on the first call of each shape (:class:`CompiledDecode`).
* ``tiny`` — a TAEHV-family decoder (:mod:`streamproc.generation.taehv`) instead of the VAE:
  a different, cheaper model whose frames differ from the VAE's, so it names itself in the
  model id (and with it the cache scope and object keys).

Why a whole clip can go through diffusers' decoder in one pass: every causal convolution pads
two zero frames in front of the first frame it sees and then reads its own history, which is
the same whether that history arrives one frame at a time or all at once. The one exception
is the temporal upsampler (``WanResample`` in ``upsample3d`` mode): diffusers passes the first
latent frame through it without temporal upsampling and starts its causal history at the
second frame. :func:`allow_multi_frame_first_chunk` wraps those modules' ``forward`` so that a
first chunk of several frames is split there into that first frame and the rest, each handled
by diffusers' own code; with the one-frame chunks of diffusers' loop the wrapper is inert.

Nothing here imports the rest of streamproc, so a benchmark can use it on a host that has
only torch and diffusers.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch._dynamo.exc

if TYPE_CHECKING:
    from streamproc.settings import GenerationSettings

#: Values of ``generation.decode``.
STRATEGIES = ("diffusers", "chunked", "compiled", "tiny")

_WRAPPED = "_streamproc_multi_frame_first_chunk"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeOptions:
    """How latents become frames."""

    strategy: str = "diffusers"
    #: Precision of the VAE (or tiny decoder) weights and activations.
    dtype: torch.dtype = torch.float32
    #: Lay the VAE's input out channels-last (NDHWC), matching channels-last weights.
    channels_last: bool = False
    #: Latent frames per decoder pass for ``chunked``/``compiled`` (0: the whole clip).
    chunk_frames: int = 0
    #: Replay the compiled decode as a CUDA graph (``compiled`` on CUDA only).
    cuda_graphs: bool = False
    #: ``compiled``: compile each normalisation that feeds an activation together with it
    #: (one fused kernel instead of two passes over the activations), see
    #: :data:`FUSED_NORM_ACTIVATIONS`.
    fuse_activations: bool = True
    #: Let inductor benchmark its own convolution and matmul kernels (Triton implicit GEMM)
    #: against cuDNN/cuBLAS for ``compiled`` (minutes more compile time).
    autotune: bool = False
    #: torch.compile backend of ``compiled`` (CPU tests use "eager", graph capture alone:
    #: inductor's CPU code generation takes minutes on a small machine).
    compile_backend: str = "inductor"
    #: TAEHV weights for ``tiny`` (``.pth`` or ``.safetensors``); None: random weights.
    tiny_path: Path | None = None
    #: Seed of the tiny decoder's random weights (without ``tiny_path``).
    tiny_seed: int = 0


class VideoDecoder(ABC):
    """Turns a batch of latents into videos; called on the decode thread, one call at a time."""

    #: Appended to the model id when this decoder's frames differ from the VAE's (None: the
    #: same frames as ``diffusers``, within float rounding).
    label: str | None = None

    @abstractmethod
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        """``latents`` (B, z, T, h, w), normalised as the denoiser produces them → videos
        (B, 3, F, H, W) in [-1, 1] on the decoder's device."""


class VaeDecode(VideoDecoder):
    """Shared part of the full-VAE strategies: undo the latent normalisation, cast, lay out."""

    def __init__(self, vae: Any, options: DecodeOptions) -> None:
        self.vae = vae
        self.options = options

    def vae_input(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents in the VAE's space, dtype and memory layout."""
        config, device, dtype = self.vae.config, self.vae.device, self.options.dtype
        shape = (1, config.z_dim, 1, 1, 1)
        mean = torch.tensor(config.latents_mean, device=device, dtype=dtype).view(shape)
        std = torch.tensor(config.latents_std, device=device, dtype=dtype).view(shape)
        z = latents.to(device=device, dtype=dtype) * std + mean
        if self.options.channels_last:
            z = z.contiguous(memory_format=torch.channels_last_3d)
        return z


class DiffusersDecode(VaeDecode):
    """``AutoencoderKLWan.decode``, one latent frame per decoder pass."""

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        video: torch.Tensor = self.vae.decode(self.vae_input(latents), return_dict=False)[0]
        return video


class ChunkedDecode(VaeDecode):
    """Diffusers' causal decode over ``chunk_frames`` latent frames per pass (0: all)."""

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        return causal_decode(self.vae, self.vae_input(latents), self.options.chunk_frames)


#: Decoder modules (diffusers' Wan VAE classes) that ``compiled`` compiles one by one: each is a
#: tensor function of its input (and a causal convolution's cache tensor); the causal-cache
#: bookkeeping between them stays eager.
COMPILED_REGIONS = ("WanRMS_norm", "WanCausalConv3d", "WanAttentionBlock")

#: Decoder modules whose forward applies ``self.nonlinearity`` right after these normalisations
#: and nowhere else (diffusers' Wan VAE): with ``fuse_activations`` each such norm is compiled
#: as ``nonlinearity(norm(x))`` and the module's own ``nonlinearity`` is an identity during the
#: compiled decode, so the activation costs no extra pass over memory.
FUSED_NORM_ACTIVATIONS = {
    "WanResidualBlock": ("norm1", "norm2"),
    "WanDecoder3d": ("norm_out",),
}

#: Relative L2 distance from the eager decode above which compiled frames are refused. Layout
#: and rounding differences measure about 0.013 in bf16 (docs/benchmarks.md); the whole-pass
#: graph inductor got wrong measured about 1.0.
COMPILED_TOLERANCE = 0.05


class CompiledDecode(VaeDecode):
    """``chunked`` with the decoder's normalisations, causal convolutions and attention blocks
    each compiled on its own (the first call of each shape compiles); the loop that carries the
    causal caches runs eagerly between them.

    Why regions and not one graph of the whole pass: with the pass under a single graph,
    inductor (torch 2.11, H200, bf16) produced frames unrelated to the VAE's (PSNR 14 dB against
    ``diffusers``; correct in fp32 and under ``aot_eager``), while every region compiled alone
    matches it. See docs/benchmarks.md, "Seventh GPU session".

    Invariant: this decoder never returns frames that disagree with the eager decode, and a
    compiler that fails costs speed, never a batch. The first call of each input shape also
    decodes eagerly and compares (relative L2 ≤ :data:`COMPILED_TOLERANCE`); on a mismatch,
    or when dynamo or inductor fails to compile a region, it logs an error, returns the eager
    frames and decodes eagerly from then on (``fallback`` says why).
    """

    def __init__(self, vae: Any, options: DecodeOptions) -> None:
        super().__init__(vae, options)
        self.cuda_graphs = options.cuda_graphs and vae.device.type == "cuda"
        allow_multi_frame_first_chunk(vae.decoder)
        raise_recompile_limit()
        modes = {
            (False, False): None,
            (True, False): "reduce-overhead",
            (False, True): "max-autotune-no-cudagraphs",
            (True, True): "max-autotune",
        }
        mode = modes[self.cuda_graphs, options.autotune]

        def compile_region(fn: Callable[..., Any]) -> Callable[..., Any]:
            # One graph per region or an error: a break would split its fusions.
            return torch.compile(
                fn, mode=mode, dynamic=False, fullgraph=True, backend=options.compile_backend
            )

        #: (module, attribute, eager value, value during the compiled decode)
        self._swaps: list[tuple[torch.nn.Module, str, Any, Any]] = []
        fused: set[int] = set()
        if options.fuse_activations:
            for module in vae.decoder.modules():
                norms = FUSED_NORM_ACTIVATIONS.get(type(module).__name__, ())
                activation = getattr(module, "nonlinearity", None)
                if not norms or not isinstance(activation, torch.nn.Module):
                    continue
                for name in norms:
                    norm = getattr(module, name)
                    fn = _norm_then(norm.forward, activation)
                    self._swaps.append((norm, "forward", norm.forward, compile_region(fn)))
                    fused.add(id(norm))
                self._swaps.append((module, "nonlinearity", activation, torch.nn.Identity()))
        for module in vae.decoder.modules():
            if type(module).__name__ in COMPILED_REGIONS and id(module) not in fused:
                forward = module.forward
                self._swaps.append((module, "forward", forward, compile_region(forward)))
        #: Input shapes whose compiled frames were compared with the eager decode.
        self.checked: set[tuple[int, ...]] = set()
        #: Why this decoder decodes eagerly now (None: it runs compiled).
        self.fallback: str | None = None

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        z = self.vae_input(latents)
        if self.fallback is not None:
            return self._eager(z)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
        try:
            with self._compiled():
                video = causal_decode(self.vae, z, self.options.chunk_frames)
            if self.cuda_graphs:
                # A CUDA graph's output lives in its memory pool until the next replay: copy.
                video = video.clone()
        except torch._dynamo.exc.TorchDynamoException as exc:
            # outcome: the batch still gets the eager decode's frames; only the speed is lost.
            # (Dynamo's and inductor's compile failures; a CUDA or memory error of a
            # compiled kernel is not one of them and fails the batch as it would eagerly.)
            cause = getattr(exc, "inner_exception", None) or exc.__cause__ or exc
            message = next((line for line in str(cause).splitlines() if line.strip()), "")
            self.fallback = (
                f"compiling the decode of latents {list(z.shape)} failed "
                f"({type(cause).__name__}: {message}): decoding eagerly"
            )
            _log.error("decode_compiled_failed: %s", self.fallback)
            return self._eager(z)
        shape = tuple(z.shape)
        if shape not in self.checked:
            reference = self._eager(z)
            distance = relative_l2(video, reference)
            self.checked.add(shape)
            if not distance <= COMPILED_TOLERANCE:  # NaN counts as a mismatch
                self.fallback = (
                    f"compiled decode of latents {list(shape)} is {distance:.3g} (relative L2) "
                    f"from the eager decode, above {COMPILED_TOLERANCE}: decoding eagerly"
                )
                _log.error("decode_compiled_mismatch: %s", self.fallback)
                return reference
        return video

    def _eager(self, z: torch.Tensor) -> torch.Tensor:
        return causal_decode(self.vae, z, self.options.chunk_frames)

    @contextmanager
    def _compiled(self) -> Iterator[None]:
        """The compiled regions in place for one decode (other decoders of the same VAE, and
        the eager reference, see the modules as diffusers left them)."""
        for module, name, _, compiled in self._swaps:
            setattr(module, name, compiled)
        try:
            yield
        finally:
            for module, name, eager, _ in self._swaps:
                setattr(module, name, eager)


def _norm_then(
    norm: Callable[[torch.Tensor], torch.Tensor], activation: Callable[[torch.Tensor], torch.Tensor]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``activation(norm(x))`` as one function (one compiled region)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        return activation(norm(x))

    return forward


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a - b‖ / ‖b‖ in float32 (0 when both are zero)."""
    diff = (a.float() - b.float()).norm()
    scale = b.float().norm()
    return float(diff / scale) if float(scale) > 0 else float(diff)


def raise_recompile_limit(limit: int = 256) -> None:
    """Let dynamo keep at least ``limit`` graphs per compiled function (one per shape: the
    decoder's regions have a few dozen, the transformer's blocks one per batch size and
    frame size), beyond its default, after which it would silently run the rest eagerly."""
    import torch._dynamo

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), limit))


class TinyDecode(VideoDecoder):
    """A TAEHV-family decoder on the VAE's device, in the decode dtype."""

    def __init__(self, vae: Any, options: DecodeOptions) -> None:
        from streamproc.generation.taehv import load_tiny_decoder

        self.options = options
        self.label = tiny_decoder_label(options.tiny_path, options.tiny_seed)
        decoder = load_tiny_decoder(options.tiny_path, seed=options.tiny_seed)
        self.decoder = decoder.to(device=vae.device, dtype=options.dtype)
        if options.channels_last:
            for module in self.decoder.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.weight.data = module.weight.data.contiguous(
                        memory_format=torch.channels_last
                    )

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        param = next(self.decoder.parameters())
        frames: torch.Tensor = self.decoder(latents.to(device=param.device, dtype=param.dtype))
        return frames * 2 - 1


def build_decoder(vae: Any, options: DecodeOptions) -> VideoDecoder:
    """The decoder ``options.strategy`` names, over ``vae`` (already on its device/dtype)."""
    strategies: dict[str, Callable[[Any, DecodeOptions], VideoDecoder]] = {
        "diffusers": DiffusersDecode,
        "chunked": ChunkedDecode,
        "compiled": CompiledDecode,
        "tiny": TinyDecode,
    }
    if options.strategy not in strategies:
        raise ValueError(f"unknown decode strategy {options.strategy!r} (one of {STRATEGIES})")
    return strategies[options.strategy](vae, options)


def options_from_settings(settings: GenerationSettings, dtype: torch.dtype) -> DecodeOptions:
    """The decode options of a worker's settings (``dtype``: the VAE's resolved dtype)."""
    return DecodeOptions(
        strategy=settings.decode,
        dtype=dtype,
        channels_last=settings.vae_channels_last,
        chunk_frames=settings.decode_chunk_frames,
        cuda_graphs=settings.decode_cuda_graphs,
        autotune=settings.decode_autotune,
        tiny_path=settings.tiny_decoder_path,
        tiny_seed=settings.tiny_seed,
    )


def model_id_suffix(settings: GenerationSettings) -> str:
    """What the decoder adds to the model id: nothing when it yields the VAE's frames."""
    if settings.decode != "tiny":
        return ""
    return "+" + tiny_decoder_label(settings.tiny_decoder_path, settings.tiny_seed)


def tiny_decoder_label(path: Path | None, seed: int = 0) -> str:
    """How the model id names a tiny decoder: its file name and content hash, or its seed."""
    if path is None:
        return f"taehv:random@seed{seed}"
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"taehv:{path.stem}@{digest.hexdigest()[:12]}"


def set_conv3d_memory_format(model: torch.nn.Module, channels_last: bool) -> None:
    """Lay out every 3-D convolution weight channels-last (NDHWC) or back to contiguous.

    ``Module.to(memory_format=...)`` refuses models that also hold 1-D parameters.
    """
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    for module in model.modules():
        if isinstance(module, torch.nn.Conv3d):
            module.weight.data = module.weight.data.contiguous(memory_format=fmt)


# -- the causal decode ---------------------------------------------------------------------


def causal_decode(vae: Any, z: torch.Tensor, chunk_frames: int = 0) -> torch.Tensor:
    """Decode ``z`` (B, z, T, h, w, in the VAE's space) through ``vae``'s own decoder modules,
    ``chunk_frames`` latent frames per pass (0: one pass), carrying the causal caches between
    passes as diffusers does. Same result as ``vae.decode(z)`` within float rounding."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    decoder = vae.decoder
    allow_multi_frame_first_chunk(decoder)
    x = vae.post_quant_conv(z)
    frames = x.shape[2]
    step = chunk_frames if chunk_frames > 0 else frames
    # A fresh cache per call (diffusers keeps one on the module): decodes on different
    # threads cannot disturb each other.
    cache: list[Any] = [None] * _causal_conv_count(decoder)
    parts = [
        decoder(
            x[:, :, start : start + step], feat_cache=cache, feat_idx=[0], first_chunk=start == 0
        )
        for start in range(0, frames, step)
    ]
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
    if vae.config.patch_size is not None:
        out = unpatchify(out, patch_size=vae.config.patch_size)
    return out.clamp(-1.0, 1.0)


def allow_multi_frame_first_chunk(decoder: torch.nn.Module) -> None:
    """Let the temporal upsamplers of a diffusers Wan decoder take a first chunk of several
    frames (idempotent; inert for one-frame chunks)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanResample

    for module in decoder.modules():
        upsamples_time = isinstance(module, WanResample) and module.mode == "upsample3d"
        if upsamples_time and not getattr(module, _WRAPPED, False):
            module.forward = _split_first_frame(module.forward)
            setattr(module, _WRAPPED, True)


def _split_first_frame(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def forward(
        x: torch.Tensor, feat_cache: list[Any] | None = None, feat_idx: list[int] | None = None
    ) -> torch.Tensor:
        idx = [0] if feat_idx is None else feat_idx
        if feat_cache is None or x.shape[2] == 1 or feat_cache[idx[0]] is not None:
            return original(x, feat_cache=feat_cache, feat_idx=idx)
        # The clip's first chunk: diffusers' code sees its first frame alone (no temporal
        # upsampling, marks the cache) and then the rest as a following chunk, with a cache
        # slot of its own that is handed back to the caller's cache afterwards.
        slot: list[Any] = [None]
        first = original(x[:, :, :1], feat_cache=slot, feat_idx=[0])
        rest = original(x[:, :, 1:], feat_cache=slot, feat_idx=[0])
        feat_cache[idx[0]] = slot[0]
        idx[0] += 1
        return torch.cat([first, rest], dim=2)

    return forward


def _causal_conv_count(decoder: torch.nn.Module) -> int:
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    return sum(isinstance(m, WanCausalConv3d) for m in decoder.modules())
