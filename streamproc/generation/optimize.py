"""Speed switches applied to a loaded pipeline, each a setting (see docs/benchmarks.md).

* ``attention_backend`` — diffusers' attention dispatcher (``_native_flash``, ``_native_cudnn``,
  ``flash``, …); the measured best was flash attention compiled and cuDNN eager.
* ``compile`` — regional compilation: ``torch.compile`` of the repeated transformer block
  (compiled once, reused by all 30 blocks), warmed up at start for the configured shapes.
* ``fp8`` — float8 dynamic-activation, float8-weight linear layers through torchao (opt-in,
  CUDA with compute capability ≥ 8.9 only, bf16 weights; ``pip install 'streamproc[fp8]'``).
"""

from __future__ import annotations

from typing import Any

import structlog
import torch

from streamproc.errors import ConfigError
from streamproc.generation.decode import raise_recompile_limit
from streamproc.generation.decode import set_conv3d_memory_format as set_conv3d_memory_format
from streamproc.settings import GenerationSettings

log = structlog.get_logger(__name__)

#: The matmul implementations inductor may use for float8 layers (see apply_compile).
FP8_GEMM_BACKENDS = "ATEN"

#: diffusers' attention backends that pin one PyTorch SDPA kernel by entering ``sdpa_kernel``
#: inside every attention call. Compiled, that context manager becomes part of the block graph,
#: and AOTAutograd's cache refuses such graphs ("Unsupported call_function target
#: _backend_from_string", seen on an H200), so every restart traced them again. With
#: ``compile`` on, the blocks use plain SDPA instead and the same kernel is pinned around each
#: compiled call, outside the graph (see apply_compile's ``sdpa``).
PINNED_SDPA = {
    "_native_cudnn": "CUDNN_ATTENTION",
    "_native_flash": "FLASH_ATTENTION",
    "_native_efficient": "EFFICIENT_ATTENTION",
    "_native_math": "MATH",
}


def apply_attention_backend(pipe: Any, backend: str | None) -> None:
    """Select diffusers' attention backend for the transformer (None keeps the default)."""
    if not backend:
        return
    try:
        pipe.transformer.set_attention_backend(backend)
        _probe_attention(backend, pipe.transformer.device, pipe.transformer.dtype)
    except (ValueError, RuntimeError, ImportError) as exc:
        raise ConfigError(f"attention backend {backend!r} is not usable here: {exc}") from None


def _probe_attention(backend: str, device: torch.device, dtype: torch.dtype) -> None:
    # Backends fail only when called (e.g. cuDNN on a CPU): try one tiny call at start rather
    # than dead-lettering every event later.
    from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

    q = torch.zeros(1, 16, 2, 64, device=device, dtype=dtype)  # (batch, tokens, heads, dim)
    with torch.inference_mode():
        dispatch_attention_fn(q, q, q, backend=AttentionBackendName(backend))


def apply_fp8(pipe: Any, device: torch.device, *, kernel_tuning: bool = False) -> None:
    """Quantise the transformer's linear layers to float8 (weights and activations, per row).

    torchao's quantisation also sets inductor's global config to its recommendation
    (coordinate-descent tuning of every Triton kernel at its first run) unless told not to:
    on an H200 that tuning was 107 of the 120 s that compiling one block graph took, and a
    restart paid it again despite the compile cache. ``kernel_tuning`` opts back in.
    """
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        raise ConfigError("generation.fp8 needs a CUDA GPU with compute capability 8.9 or newer")
    dtype = pipe.transformer.dtype
    if dtype != torch.bfloat16:
        # torchao's per-row float8 quantises from bf16 only; say so before it fails deep inside.
        raise ConfigError(
            f"generation.fp8 needs the transformer in bfloat16, but it was loaded as {dtype} "
            "(load with generation.dtype 'auto' or 'bfloat16' and generation.fp8 set)"
        )
    try:
        from torchao.quantization import (  # type: ignore[import-not-found,unused-ignore]
            Float8DynamicActivationFloat8WeightConfig,
            PerRow,
            quantize_,
        )
    except ImportError as exc:
        raise ConfigError(
            f"generation.fp8 needs torchao (pip install 'streamproc[fp8]'): {exc}"
        ) from None

    def is_block_linear(module: torch.nn.Module, name: str) -> bool:
        # Only the repeated blocks' large matmuls; embeddings and the output head stay exact.
        return isinstance(module, torch.nn.Linear) and name.startswith("blocks.")

    quantize_(
        pipe.transformer,
        Float8DynamicActivationFloat8WeightConfig(
            granularity=PerRow(), set_inductor_config=kernel_tuning
        ),
        filter_fn=is_block_linear,
    )


def apply_compile(
    pipe: Any,
    *,
    dynamic_batch: bool = False,
    gemm_backends: str | None = None,
    sdpa: str | None = None,
) -> None:
    """Regionally compile the transformer's repeated blocks (compiled lazily, at warm-up).

    By default shapes stay static: a graph per batch size and frame size, each specialised,
    all compiled at warm-up. With ``dynamic_batch`` the batch dimension is symbolic, so one
    graph per frame size serves every batch size (fewer compiles at start). The recompile
    limit is raised so that many shapes never silently fall back to eager.

    ``gemm_backends`` limits the matmul implementations inductor may choose from (its
    ``max_autotune_gemm_backends``). Inductor benchmarks Triton templates for every
    float8 ``_scaled_mm`` shape even without max-autotune; ``"ATEN"`` keeps cuBLAS/CUTLASS.

    ``sdpa`` (a ``torch.nn.attention.SDPBackend`` name) is entered around each compiled block
    call, so the graph is traced with that kernel chosen and holds no context manager.
    """
    import torch._dynamo

    torch._dynamo.config.automatic_dynamic_shapes = False
    raise_recompile_limit()
    # Each repeated block's own forward is compiled (rather than the module call, as diffusers'
    # compile_repeated_blocks does): one graph serves all blocks, and step-cache hooks, which
    # wrap a block's forward from outside, stay eager around the compiled block.
    transformer = pipe.transformer
    repeated = set(getattr(transformer, "_repeated_blocks", ()))
    blocks = [m for m in transformer.modules() if type(m).__name__ in repeated]
    if not blocks:
        raise ConfigError(f"{type(transformer).__name__} declares no repeated blocks to compile")
    options: dict[str, Any] | None = (
        {"max_autotune_gemm_backends": gemm_backends} if gemm_backends else None
    )
    for block in blocks:
        compiled = torch.compile(block.forward, fullgraph=True, options=options)
        if dynamic_batch:
            compiled = _batch_dynamic(compiled)
        block.forward = _pinned_sdpa(compiled, sdpa) if sdpa else compiled


def _pinned_sdpa(compiled: Any, backend: str) -> Any:
    """``compiled`` called with PyTorch's SDPA limited to ``backend`` (outside the graph)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernel = getattr(SDPBackend, backend)

    def forward(*args: Any, **kwargs: Any) -> Any:
        with sdpa_kernel(kernel):
            return compiled(*args, **kwargs)

    return forward


def _batch_dynamic(compiled: Any) -> Any:
    """``compiled`` with dimension 0 of its tensor arguments marked dynamic before each call."""
    mark = torch._dynamo.maybe_mark_dynamic

    def forward(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            # The rotary table has no batch dimension (its first is 1) and stays static.
            if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] > 1:
                mark(value, 0)
        return compiled(*args, **kwargs)

    return forward


def apply_optimizations(pipe: Any, settings: GenerationSettings, device: torch.device) -> list[str]:
    """Apply every enabled switch; returns their names for the start-up log.

    Idempotent on the same pipeline (a generator may be started again): a switch already
    applied is not applied twice — re-quantising or re-compiling would break or recompile.
    """
    done: set[str] = pipe.__dict__.setdefault("_streamproc_applied", set())
    applied = []
    backend = settings.attention_backend
    pinned = PINNED_SDPA.get(backend or "") if settings.compile else None
    if backend and f"attention={backend}" not in done:
        apply_attention_backend(pipe, backend)
        if pinned and "compile" not in done:
            # Probed above with the pinning backend; the compiled blocks pin it themselves.
            pipe.transformer.set_attention_backend("native")
        done -= {d for d in done if d.startswith("attention=")}
        done.add(f"attention={backend}")
    if settings.fp8 and "fp8" not in done:
        apply_fp8(pipe, device, kernel_tuning=settings.fp8_kernel_tuning)
        done.add("fp8")
    if settings.compile and "compile" not in done:
        apply_compile(
            pipe,
            dynamic_batch=settings.compile_dynamic_batch,
            # Float8 matmuls stay on cuBLAS/CUTLASS's row-wise kernels (what the measured FP8
            # figures ran): inductor would benchmark Triton templates for each of them.
            gemm_backends=FP8_GEMM_BACKENDS if settings.fp8 else None,
            sdpa=pinned,
        )
        done.add("compile")
    applied = sorted(done)
    if device.type == "cuda":
        # Convolution algorithms of the VAE are picked once per shape, then reused.
        torch.backends.cudnn.benchmark = True
        # The time embedding stays in fp32 (diffusers keeps it there) and runs on every token
        # under expand_timesteps: TF32 makes those matmuls several times cheaper.
        torch.backends.cuda.matmul.allow_tf32 = settings.tf32
    return applied
