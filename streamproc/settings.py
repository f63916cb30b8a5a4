"""All configuration, in one pydantic-settings model read once at the edge (the CLI).

Precedence, highest first: CLI flags, environment (``STREAMPROC_`` prefix, ``__`` between
nested names, e.g. ``STREAMPROC_BATCH__WINDOW_MS=50``), the optional config file (TOML or YAML,
``--config``), the defaults below. Components receive typed values from here and never read
the environment themselves.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from streamproc.errors import ConfigError
from streamproc.events import (
    FRAMES_MAX,
    PROMPT_MAX_CHARS,
    SIDE_MAX,
    STANDARD_QUALITY,
    STEPS_MAX,
    CacheMode,
    EventLimits,
)
from streamproc.generation.profiles import (
    BUILTIN_PROFILES,
    DEFAULT_PROFILE,
    ModelProfile,
    SamplerKind,
    load_profile,
)
from streamproc.urls import (
    check_bind_host,
    check_bootstrap_servers,
    check_http_url,
    check_redis_url,
    mask_password,
)

TINY_MODEL = "tiny"
DEFAULT_OUT = Path("streamproc-out")
#: Defaults that components also take as constructor defaults: defined here, once.
MAX_RECORD_BYTES = 1 << 20
REDIS_TIMEOUT_MS = 250.0
REDIS_START_TIMEOUT_MS = 5000.0
REDIS_STREAM_MAX_LEN = 100_000
REDIS_MAX_PENDING = 10_000
#: A tenant's name, as the event contract allows it.
TENANT_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_TENANT = re.compile(TENANT_PATTERN)


def parse_shape_spec(
    spec: str, default_steps: int = 16, default_guidance: float = 5.0
) -> tuple[int, int, int, int, float]:
    """``'832x480x17/16/5.0'`` → (width, height, frames, steps, guidance); steps and guidance
    default to the given values (a model profile's). Raises ValueError with a readable
    message."""
    size, _, rest = spec.partition("/")
    parts = size.lower().split("x")
    extra = rest.split("/") if rest else []
    try:
        width, height, frames = (int(p) for p in parts)
        steps = int(extra[0]) if extra else default_steps
        guidance = float(extra[1]) if len(extra) > 1 else default_guidance
    except ValueError:
        raise ValueError(f"shape {spec!r} is not WIDTHxHEIGHTxFRAMES[/STEPS[/GUIDANCE]]") from None
    if width % 32 or height % 32 or (frames - 1) % 4 or steps < 1 or len(extra) > 2:
        raise ValueError(f"shape {spec!r}: sizes must be multiples of 32, frames 4k+1")
    return width, height, frames, steps, guidance


@functools.lru_cache(maxsize=16)
def _profile_in_force(spec: str, sampler: SamplerKind | None, shift: float | None) -> ModelProfile:
    # Read once per process (events are validated against it one by one).
    return load_profile(spec).with_overrides(sampler=sampler, shift=shift)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitSettings(_Section):
    """What this worker accepts; larger requests are dead-lettered as unsupported_parameter."""

    max_prompt_chars: int = Field(
        2000, ge=1, le=PROMPT_MAX_CHARS, description="Longest prompt (and negative prompt)."
    )
    max_width: int = Field(1280, ge=32, le=SIDE_MAX, description="Widest video, pixels.")
    max_height: int = Field(1280, ge=32, le=SIDE_MAX, description="Tallest video, pixels.")
    max_frames: int = Field(121, ge=1, le=FRAMES_MAX, description="Most frames per video.")
    max_steps: int = Field(50, ge=1, le=STEPS_MAX, description="Most denoising steps.")


class BatchSettings(_Section):
    """How cache misses are grouped into GPU micro-batches."""

    window_ms: float = Field(
        100.0, ge=0, description="Longest wait for more events of the same shape."
    )
    max_batch_size: int = Field(4, ge=1, le=64, description="Most videos per pipeline call.")
    size_policy: Literal["largest", "throughput"] = Field(
        "largest",
        description="'largest': batches grow to max_batch_size (or what fits in GPU memory). "
        "'throughput': at warm-up, time one call per batch size of each warm-up shape and keep "
        "a larger batch only where it raises videos/s by at least min_batch_gain (long clips "
        "then run alone instead of making every event wait for the whole batch).",
    )
    min_batch_gain: float = Field(
        0.05,
        ge=0,
        le=10,
        description="With size_policy 'throughput': the least throughput gain (0.05: 5 %) a "
        "larger batch must bring over the size chosen so far.",
    )
    throughput_file: Path | None = Field(
        None,
        description="With size_policy 'throughput': a JSON file of measured seconds per call "
        "(per model, device and shape). Shapes found there are not measured again; shapes "
        "measured at start are added to it.",
    )
    max_in_flight: int = Field(
        64, ge=1, description="Events admitted but unfinished; above it the source is paused."
    )
    deadline_slack_ms: float = Field(
        1000.0, ge=0, description="Dispatch early when an event's deadline is this close."
    )


class StepCacheSpec(_Section):
    """A diffusers step-cache hook for one request class (fewer transformer passes per step).

    Random weights show such a hook's speed, not its quality: choose thresholds on real weights.
    """

    kind: Literal["first-block", "mag"] = Field(
        description="'first-block' (FirstBlockCache: skip the other blocks while the first "
        "block's residual barely changes) or 'mag' (MagCache: skip by calibrated magnitude "
        "ratios; needs mag_ratios)."
    )
    threshold: float = Field(
        gt=0, description="Skip threshold (higher skips more: faster, further from the full run)."
    )
    max_skip_steps: int = Field(3, ge=1, description="mag: most consecutive skipped steps.")
    retention_ratio: float = Field(
        0.2, ge=0, lt=1, description="mag: share of the first steps that are never skipped."
    )
    mag_ratios: list[float] | None = Field(
        None,
        description="mag: the model's per-step magnitude ratios (diffusers' MagCache "
        "calibration mode prints them for a checkpoint).",
    )

    @model_validator(mode="after")
    def _mag_needs_ratios(self) -> StepCacheSpec:
        if self.kind == "mag" and not self.mag_ratios:
            raise ValueError("a 'mag' step cache needs mag_ratios (calibrated per checkpoint)")
        return self

    def label(self) -> str:
        """How results and object keys name the hook, e.g. ``first-block:0.1``."""
        if self.kind == "first-block":
            return f"first-block:{self.threshold:g}"
        return f"mag:{self.threshold:g}/{self.max_skip_steps}/{self.retention_ratio:g}"


class GenerationSettings(_Section):
    """The resident video pipeline."""

    model: str = Field(
        TINY_MODEL,
        description="'tiny' (random-weight Wan2.2-TI2V-5B architecture, built locally), "
        "'random-5b' (the full-size architecture with random weights, GPU benchmarks) or a "
        "path / hub id for WanPipeline.from_pretrained.",
    )
    device: str = Field("auto", description="'auto' (cuda when present), 'cpu', 'cuda', 'cuda:1'.")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto",
        description="'auto' is float16 on CUDA (bfloat16 with fp8) and float32 on CPU.",
    )
    profile: str = Field(
        DEFAULT_PROFILE,
        description="Model profile: how the checkpoint is sampled (sampler, shift, explicit "
        "timesteps, default steps and guidance, whether events may ask for guidance). A "
        "built-in name (" + ", ".join(sorted(BUILTIN_PROFILES)) + ") or a .toml/.yaml file of "
        "profile fields; see docs/models.md.",
    )
    scheduler: SamplerKind | None = Field(
        None,
        description="Overrides the profile's sampler: 'unipc', 'dpm++' (multistep flow "
        "matching), 'euler' or 'lcm' (x0-predict-and-renoise); null keeps the profile's.",
    )
    flow_shift: float | None = Field(
        None, gt=0, description="Overrides the profile's flow-matching sigma shift."
    )
    max_sequence_length: int = Field(512, ge=8, le=512, description="Text tokens per prompt.")
    text_encoder_cuda_graphs: bool = Field(
        True,
        description="On CUDA, replay the text encoder as CUDA graphs recorded per padded "
        "(texts, tokens) size: the same embeddings without launching its ~1,500 kernels one "
        "by one (falls back to eager, with a warning, where recording fails).",
    )
    text_encoder_graph_tokens: int = Field(
        128,
        ge=0,
        le=512,
        description="With text_encoder_cuda_graphs: record at warm-up the graphs for prompts "
        "of up to this many tokens (each batch size's texts, in 32-token steps; about 0.15 s "
        "each), so the first events do not pay for recording them; longer prompts record "
        "theirs on first use. 0: record every size on first use.",
    )
    fps: int = Field(16, ge=1, le=120, description="Frame rate of the MP4s.")
    retries: int = Field(
        2, ge=0, le=10, description="Extra attempts for an event whose generation raised."
    )
    tiny_seed: int = Field(
        0, ge=0, description="Weight seed of the random-weight models (tiny, random-5b)."
    )
    batched_cfg: bool = Field(
        True, description="Run cond and uncond as one batched transformer call per step."
    )
    vae_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="VAE decode precision; auto = bfloat16 on CUDA, float32 on CPU."
    )
    compile: bool = Field(
        False,
        description="Regionally compile the repeated transformer blocks (torch.compile), "
        "warmed up at start for warmup_shapes.",
    )
    compile_dynamic_batch: bool = Field(
        False,
        description="With compile: one graph per frame size whose batch dimension is "
        "symbolic, instead of one specialised graph per batch size (fewer compiles at start).",
    )
    compile_cache_dir: Path | None = Field(
        None,
        description="Directory of the persistent compile cache (with compile): compiled graphs "
        "are saved there after a cold warm-up and loaded by the next start with the same "
        "model, shapes, dtype and versions (keyed; see docs/operations.md). Unset: every "
        "start compiles anew.",
    )
    attention_backend: str | None = Field(
        None,
        description="diffusers attention backend, e.g. '_native_flash' (best compiled) "
        "or '_native_cudnn' (best eager); null keeps diffusers' default.",
    )
    vae_channels_last: bool = Field(
        False, description="Run the VAE decoder in channels-last (NDHWC) memory format."
    )
    overlap_decode: bool = Field(
        False,
        description="Decode one batch on its own thread (and CUDA stream) while the "
        "next batch denoises (with decode 'compiled' 3-4 % faster on an H200; no gain with the "
        "eager decode: off by default).",
    )
    decode: Literal["diffusers", "chunked", "compiled", "tiny"] = Field(
        "diffusers",
        description="How latents become frames: 'diffusers' (the VAE one latent frame per "
        "pass), 'chunked' (the same causal decode over longer time axes, same frames within "
        "float rounding), 'compiled' (chunked with the decoder's layers compiled one by one at warm-up, "
        "checked against the eager decode once per shape) or "
        "'tiny' (a TAEHV-family decoder: cheaper, different frames, named in the model id).",
    )
    decode_chunk_frames: int = Field(
        0,
        ge=0,
        description="chunked/compiled: latent frames per decoder pass (0: the whole clip in "
        "one pass; smaller chunks bound the decoder's activation memory).",
    )
    decode_cuda_graphs: bool = Field(
        False,
        description="compiled, on CUDA: replay the compiled decoder layers as CUDA graphs "
        "(torch.compile mode 'reduce-overhead'; measured slower than without on an H200).",
    )
    decode_autotune: bool = Field(
        False,
        description="compiled: let inductor benchmark its own convolution kernels against "
        "cuDNN's (torch.compile max-autotune; much longer warm-up).",
    )
    tiny_decoder_path: Path | None = Field(
        None,
        description="tiny: TAEHV weights for Wan2.2 latents (taew2_2.pth or .safetensors); "
        "unset: random weights from tiny_seed (cost only, the frames are noise).",
    )
    fp8: bool = Field(
        False,
        description="Opt-in: float8 linear layers in the transformer blocks (torchao, "
        "pip install 'streamproc[fp8]'; CUDA, compute capability >= 8.9; needs bfloat16 "
        "weights, which dtype 'auto' then loads).",
    )
    fp8_kernel_tuning: bool = Field(
        False,
        description="With fp8: let torchao switch on inductor's coordinate-descent kernel "
        "tuning for the whole process (measured 107 s per compiled graph on an H200, paid "
        "again at every restart; off keeps inductor's own kernel choices).",
    )
    tf32: bool = Field(
        True, description="Let float32 matmuls (the fp32-only time embedding) use TF32 on CUDA."
    )
    warmup_shapes: list[str] = Field(
        default_factory=list,
        description="Shapes 'WIDTHxHEIGHTxFRAMES[/STEPS[/GUIDANCE]]' run at start (compile, "
        "cuDNN autotune, memory measurement) so the first real event does not pay for them.",
    )
    memory_fraction: float = Field(
        0.85,
        gt=0,
        le=1,
        description="Share of GPU memory a batch may use; the batch size of "
        "each shape is capped to fit (measured at warm-up).",
    )

    gpus_per_worker: int = Field(
        1,
        ge=1,
        le=8,
        description="Devices one worker drives together (context parallelism): with K > 1 "
        "'run' spawns K-1 more ranks, one per GPU (cuda:0..K-1 of the visible devices; on the "
        "CPU, K processes over gloo), and every batch's denoising is split along the token "
        "sequence across them; rank 0 does everything else. See docs/parallel.md.",
    )
    context_parallel: Literal["ulysses", "ring"] = Field(
        "ulysses",
        description="How gpus_per_worker > 1 splits attention: 'ulysses' (all-to-all of heads; "
        "the head count must divide by K; any backend, CPU included) or 'ring' (key/value "
        "blocks passed around; needs an attention backend that returns log-sum-exp, e.g. "
        "'_native_cudnn' or '_native_flash': CUDA only).",
    )
    rank_timeout_s: float = Field(
        600.0,
        gt=0,
        description="With gpus_per_worker > 1: how long a rank may wait in one collective "
        "(process-group timeout) and how long the ranks may take to start and join.",
    )

    step_cache_classes: dict[str, StepCacheSpec] = Field(
        default_factory=lambda: {"draft": StepCacheSpec(kind="first-block", threshold=0.1)},
        description="Request classes served with a step-cache hook: an event whose "
        "attributes.quality names a class is generated with that class's hook (batched only "
        "with its own class); events without 'quality' (or 'standard') compute every step. "
        "A class reuses the compiled blocks warmed up for warmup_shapes.",
    )

    @property
    def model_profile(self) -> ModelProfile:
        """The profile in force: ``profile`` with the ``scheduler``/``flow_shift`` overrides."""
        return _profile_in_force(self.profile, self.scheduler, self.flow_shift)

    def step_cache_for(self, quality: str | None) -> str | None:
        """The step-cache label of a request class (None: standard, every step computed)."""
        return None if quality is None else self.step_cache_classes[quality].label()

    @model_validator(mode="after")
    def _cuda_graphs_need_compiled_decode(self) -> GenerationSettings:
        for flag in ("decode_cuda_graphs", "decode_autotune"):
            if getattr(self, flag) and self.decode != "compiled":
                raise ValueError(f"{flag} needs decode 'compiled'")
        return self

    @model_validator(mode="after")
    def _parallel_needs_one_device_name(self) -> GenerationSettings:
        if self.gpus_per_worker > 1 and self.device not in ("auto", "cuda", "cpu"):
            raise ValueError(
                "gpus_per_worker > 1 takes device 'auto', 'cuda' or 'cpu' (the ranks use "
                "cuda:0..K-1; choose the cards with CUDA_VISIBLE_DEVICES)"
            )
        return self

    @model_validator(mode="after")
    def _fp8_needs_bf16(self) -> GenerationSettings:
        if self.fp8 and self.dtype in ("float16", "float32"):
            raise ValueError("fp8 needs dtype 'bfloat16' (or 'auto')")
        return self

    @field_validator("step_cache_classes")
    @classmethod
    def _class_names(cls, value: dict[str, StepCacheSpec]) -> dict[str, StepCacheSpec]:
        for name in value:
            if name == STANDARD_QUALITY or not name.strip():
                raise ValueError(f"{name!r} cannot name a step-cache class")
        return value

    @field_validator("profile")
    @classmethod
    def _profile_loads(cls, value: str) -> str:
        try:
            load_profile(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _overrides_fit_the_profile(self) -> GenerationSettings:
        try:
            self.model_profile  # noqa: B018 - validates the overrides against the profile
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    @field_validator("tiny_decoder_path")
    @classmethod
    def _weights_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no tiny decoder weights at {value}")
        return value

    @field_validator("warmup_shapes")
    @classmethod
    def _shapes_parse(cls, value: list[str]) -> list[str]:
        for spec in value:
            parse_shape_spec(spec)
        return value


class EncodingSettings(_Section):
    """MP4 encoding of the frames (H.264 through PyAV: libx264 on the CPU, or NVENC)."""

    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = (
        Field("veryfast", description="x264 speed/size trade-off; part of the object key.")
    )
    crf: int = Field(
        18,
        ge=0,
        le=51,
        description="x264 quality (lower is better, bigger); part of the object key.",
    )
    threads: int = Field(0, ge=0, le=64, description="x264 threads per video (0: x264 picks).")
    workers: int | Literal["auto"] = Field(
        "auto",
        description="Videos encoded at the same time (one process each); 'auto': every usable "
        "core but two (event loop, GPU thread), at least 2, at most 32.",
    )
    codec: Literal["libx264", "h264_nvenc", "auto"] = Field(
        "libx264",
        description="H.264 encoder: 'libx264' (CPU), 'h264_nvenc' (NVIDIA hardware encoder; the "
        "worker refuses to start where the card or the PyAV build lacks it) or 'auto' (NVENC "
        "where it works, else libx264, logged as encoder_codec).",
    )
    executor: Literal["process", "thread"] = Field(
        "process",
        description="Encode in worker processes (keeps the GIL free for the GPU "
        "thread) or threads.",
    )
    shared_memory: bool = Field(
        True,
        description="process executor: hand frames to the encoder processes through POSIX "
        "shared memory (/dev/shm) instead of pickling them, which holds the GIL the GPU "
        "thread needs; falls back to pickling when /dev/shm has too little room.",
    )

    @field_validator("workers")
    @classmethod
    def _workers_in_range(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 32:
            raise ValueError("must be 'auto' or between 1 and 32")
        return value


class S3Settings(_Section):
    """S3 or an S3-compatible store such as MinIO (``storage.backend = "s3"``)."""

    bucket: str | None = Field(None, description="Bucket of the videos (required for 's3').")
    prefix: str = Field(
        "", description="Key prefix inside the bucket, e.g. 'streamproc/' ('/' is appended)."
    )
    endpoint_url: str | None = Field(
        None, description="S3 API endpoint; unset for AWS, e.g. 'http://minio:9000' for MinIO."
    )
    region: str = Field("us-east-1", description="Region of the bucket (MinIO: any, as set).")
    access_key_id: str | None = Field(
        None, description="Access key id; unset: the default AWS credential chain."
    )
    secret_access_key: SecretStr | None = Field(
        None, description="Secret access key (never logged or shown)."
    )
    session_token: SecretStr | None = Field(
        None, description="Session token of temporary credentials (never logged or shown)."
    )
    path_style: bool = Field(
        False, description="Path-style addressing (endpoint/bucket/key), as MinIO needs."
    )
    public_base_url: str | None = Field(
        None,
        description="Public (CDN) http(s) URL the keys are appended to (no query or fragment); "
        "unset: presigned GET URLs.",
    )
    presign_endpoint_url: str | None = Field(
        None,
        description="Endpoint written into presigned URLs when consumers reach the store under "
        "another name than the worker (e.g. http://localhost:9000); unset: endpoint_url.",
    )
    presign_expiry_s: int = Field(
        86_400, ge=1, le=604_800, description="Lifetime of presigned URLs (SigV4: 7 days at most)."
    )
    multipart_threshold_bytes: int = Field(
        16 << 20, ge=1, description="Videos of this size or larger are uploaded in parts."
    )
    multipart_chunk_bytes: int = Field(
        8 << 20,
        ge=5 << 20,
        le=5 << 30,
        description="Part size of multipart uploads (S3 and MinIO need 5 MiB or more).",
    )
    max_attempts: int = Field(
        4, ge=1, le=20, description="Attempts per S3 request on transient errors (then a failure)."
    )
    backoff_initial_s: float = Field(
        0.1, gt=0, description="Backoff cap after the first transient error (full jitter)."
    )
    backoff_max_s: float = Field(2.0, gt=0, description="Largest backoff between attempts.")
    connect_timeout_s: float = Field(5.0, gt=0, description="TCP connect timeout per request.")
    read_timeout_s: float = Field(30.0, gt=0, description="Socket read timeout per request.")
    checksums: Literal["when_supported", "when_required"] = Field(
        "when_supported",
        description="Request checksums; 'when_required' for S3-compatible stores that reject "
        "the CRC32 headers of recent SDKs.",
    )
    verify_on_start: bool = Field(
        True, description="Check that the bucket exists and is reachable before reading input."
    )

    @field_validator("endpoint_url", "public_base_url", "presign_endpoint_url")
    @classmethod
    def _http_urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None  # an empty variable (e.g. from a compose template) means unset
        check_http_url(value, appended=info.field_name == "public_base_url")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> S3Settings:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both access_key_id and secret_access_key, or neither")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self

    @property
    def key_prefix(self) -> str:
        """``prefix`` without a leading '/', ending in '/' unless empty."""
        prefix = self.prefix.strip("/")
        return f"{prefix}/" if prefix else ""


class StorageSettings(_Section):
    """Where videos are kept."""

    backend: Literal["local", "s3"] = Field(
        "local", description="'local': a directory; 's3': S3 or MinIO (see storage.s3)."
    )
    local_dir: Path = Field(
        DEFAULT_OUT, description="Directory of the local store (videos go under videos/)."
    )
    retry_initial_s: float = Field(0.2, gt=0, description="First backoff after a failed put.")
    retry_max_s: float = Field(10.0, gt=0, description="Longest backoff between puts.")
    s3: S3Settings = S3Settings()


class CacheSettings(_Section):
    """The semantic result cache (see docs/cache.md)."""

    mode: CacheMode = Field(CacheMode.REUSE, description="reuse, refresh or bypass, globally.")
    backend: Literal["memory", "redis", "none"] = Field(
        "memory",
        description="'memory': this worker only; 'redis': shared by every worker through "
        "cache.redis_url; 'none': remember nothing (no embedding model is loaded).",
    )
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis of the shared cache: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], "
        "rediss://… (TLS) or unix:///PATH[?db=N]. Logs and config show hide only the password.",
    )
    degrade_at_start: bool = Field(
        False,
        description="With backend 'redis': start even when Redis does not answer at start "
        "(warn, answer from this worker's own entries, reconnect with backoff). Off: a Redis "
        "that refuses the connection, times out, has an unknown host or rejects the "
        "credentials stops the start with an error naming it, before the model loads. An "
        "outage while running always degrades.",
    )
    key_prefix: str = Field(
        "streamproc:cache",
        min_length=1,
        description="Prefix of the Redis keys; workers that share a cache use the same one.",
    )
    ttl_s: float = Field(
        3600.0, gt=0, description="How long an entry answers requests after it was stored."
    )
    refresh_ttl_on_hit: bool = Field(False, description="A hit restarts its entry's TTL.")
    similarity_threshold: float = Field(
        0.75,
        gt=0,
        le=1,
        description="Lowest cosine similarity of a semantic hit; the guard (verify_hits) then "
        "decides. Without the guard cosine alone decides: keep it high (docs/cache.md).",
    )
    verify_hits: bool = Field(
        True,
        description="Check every semantic candidate with the guard before accepting it: the "
        "prompts are parsed and must have the same words, roles, relations, directions, "
        "counts and negation (loads spaCy's small English model).",
    )
    verified_threshold: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Optional lower band: a candidate from here up to similarity_threshold "
        "hits when the guard accepts it and the prompts share min_lexical_overlap of their "
        "content words. Off when unset. With verify_hits on it is the same as a lower "
        "similarity_threshold (a candidate the guard accepts shares all its words).",
    )
    min_lexical_overlap: float = Field(
        0.65, ge=0, le=1, description="Content-word overlap the lower band requires."
    )
    candidates: int = Field(
        4, ge=1, le=64, description="Nearest neighbours checked per lookup, best first."
    )
    coalesce_near_duplicates: bool = Field(
        True,
        description="A miss close to one being generated waits for its video (identical "
        "prompts always do).",
    )
    embedder_model: str = Field(
        "all-MiniLM-L6-v2",
        description="Sentence-transformers model of the embeddings: the default ships with "
        "the package (English only); or a model directory, e.g. "
        "paraphrase-multilingual-MiniLM-L12-v2 for other languages.",
    )
    embedder_device: str = Field("cpu", description="Where the embedder runs: 'cpu', 'cuda'.")
    embedder_threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads (process-wide); unset keeps torch's default.",
    )
    embed_batch_size: int = Field(64, ge=1, le=1024, description="Most prompts per embedding call.")
    embed_window_ms: float = Field(
        2.0, ge=0, description="How long an embedding call waits for more prompts."
    )
    embed_max_tokens: int = Field(
        128, ge=8, le=512, description="Tokens of a prompt that are embedded."
    )
    lookup_timeout_ms: float = Field(
        1000.0,
        gt=0,
        description="A lookup that cannot embed in time is a miss (a generation costs more).",
    )
    max_entries: int = Field(
        100_000, ge=1, description="Entries kept in process; the least recently used go."
    )
    ivf_from_entries: int = Field(
        10_000,
        ge=64,
        description="Entries of one scope at which its index turns from exact to IVF.",
    )
    sweep_interval_s: float = Field(
        5.0, gt=0, description="How often expired entries are dropped from the indexes."
    )
    redis_timeout_ms: float = Field(
        REDIS_TIMEOUT_MS, gt=0, description="Per Redis command (never awaited by an event)."
    )
    redis_start_timeout_ms: float = Field(
        REDIS_START_TIMEOUT_MS,
        gt=0,
        description="Per step of the PING at start: a busy host may answer slower than a command.",
    )
    redis_stream_max_len: int = Field(
        REDIS_STREAM_MAX_LEN, ge=100, description="Length of the change stream workers follow."
    )
    redis_max_pending: int = Field(
        REDIS_MAX_PENDING,
        ge=1,
        description="Writes kept while Redis is unreachable; beyond, the oldest are dropped.",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr) -> SecretStr:
        check_redis_url(value.get_secret_value())
        return value

    @field_serializer("redis_url", when_used="json")
    def _redis_url_shown(self, value: SecretStr) -> str:
        # Which Redis is in use matters to whoever reads config show; only the password not.
        return mask_password(value.get_secret_value())

    @model_validator(mode="after")
    def _bands(self) -> CacheSettings:
        if (
            self.verified_threshold is not None
            and self.verified_threshold > self.similarity_threshold
        ):
            raise ValueError("cache.verified_threshold must be <= cache.similarity_threshold")
        return self


class LocalTransportSettings(_Section):
    """The embedded transport: JSONL files (or stdin/stdout) instead of Kafka topics."""

    input: str | None = Field(None, description="JSONL file of prompt events, or '-' for stdin.")
    results: str = Field(str(DEFAULT_OUT / "results.jsonl"), description="JSONL, or '-'.")
    dead_letters: str = Field(str(DEFAULT_OUT / "dead-letters.jsonl"), description="JSONL, or '-'.")
    max_record_bytes: int = Field(
        MAX_RECORD_BYTES, ge=1024, description="Longer lines are dead-lettered."
    )
    status: str | None = Field(
        None,
        description="JSONL of status events (with status.enabled), or '-' for stderr; unset: "
        "status.jsonl beside the results file (none when results go to stdout).",
    )
    control: str | None = Field(
        None,
        description="JSONL file of control events (cancel), read from its start and followed "
        "while the worker runs (lines appended later are seen); unset: no control input.",
    )


class KafkaSettings(_Section):
    """The production transport: a consumer group on the prompts topic, a producer for answers.

    See ``docs/kafka.md``. Offsets are committed by streamproc (never automatically), the
    producer waits for all in-sync replicas (``acks=all``).
    """

    bootstrap_servers: str = Field(
        "localhost:9092",
        description="Comma-separated HOST:PORT list of brokers to start from (an IPv6 "
        "address in brackets: [ADDRESS]:PORT).",
    )
    prompts_topic: str = Field(
        "streamproc.prompts",
        description="Topic of prompt events (comma-separated for several topics).",
        pattern=r"^[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*$",
    )
    results_topic: str = Field(
        "streamproc.results", description="Topic for result events.", pattern=r"^[A-Za-z0-9._-]+$"
    )
    dead_letter_topic: str = Field(
        "streamproc.dead-letters",
        description="Topic for dead letters.",
        pattern=r"^[A-Za-z0-9._-]+$",
    )
    status_topic: str = Field(
        "streamproc.status",
        description="Topic for status events (with status.enabled), keyed by event_id.",
        pattern=r"^[A-Za-z0-9._-]+$",
    )
    control_topic: str = Field(
        "streamproc.control",
        description="Topic of control events (cancel), read by every worker from every "
        "partition (no consumer group), from control.cancel_memory_s ago (with control.enabled).",
        pattern=r"^[A-Za-z0-9._-]+$",
    )
    group_id: str = Field("streamproc", min_length=1, description="Consumer group of the workers.")
    client_id: str | None = Field(
        None, description="Client id in broker logs and quotas; default: the worker id."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How to talk to the brokers."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (with a SASL_* security protocol)."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (secret).")
    ssl_cafile: Path | None = Field(
        None, description="CA bundle to verify the brokers (default: the system's)."
    )
    ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(None, description="Private key of the client certificate.")
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of the private key (secret)."
    )
    ssl_check_hostname: bool = Field(
        True, description="Check that broker certificates match their host names."
    )
    enable_idempotence: bool = Field(
        True,
        description="Idempotent producer (no duplicates from producer retries). Turn off only "
        "for brokers without it (the Tansu test broker).",
    )
    linger_ms: int = Field(5, ge=0, description="How long the producer waits to fill a batch.")
    compression_type: Literal["none", "gzip"] = Field(
        "none", description="Compression of produced batches."
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest",
        description="Where a group without a committed offset starts ('latest' skips the "
        "backlog: those events are never processed).",
    )
    session_timeout_ms: int = Field(
        45_000, ge=1000, description="A worker silent this long is removed from the group."
    )
    heartbeat_interval_ms: int = Field(
        3000, ge=100, description="Heartbeat period; well below session_timeout_ms."
    )
    max_poll_interval_ms: int = Field(
        300_000,
        ge=1000,
        description="Longest gap between polls before the worker leaves its group (the "
        "worker polls continuously, also while the GPU works or input is paused).",
    )
    rebalance_timeout_ms: int = Field(
        60_000,
        ge=1000,
        description="How long the group waits for members to rejoin during a rebalance; "
        "bounds revoke_grace_ms.",
    )
    revoke_grace_ms: int = Field(
        20_000,
        ge=0,
        description="On a rebalance, how long in-flight events of revoked partitions may "
        "finish before they are abandoned (uncommitted, so the next owner redoes them).",
    )
    max_poll_records: int = Field(
        200, ge=1, description="Most records one poll returns (and the fetch buffer holds)."
    )
    fetch_max_wait_ms: int = Field(
        500, ge=0, description="Longest wait of the broker for fetch_min_bytes of data."
    )
    fetch_max_bytes: int = Field(
        52_428_800, ge=1024, description="Most bytes of one fetch response."
    )
    max_partition_fetch_bytes: int = Field(
        1_048_576, ge=1024, description="Most bytes per partition of one fetch response."
    )
    request_timeout_ms: int = Field(
        40_000, ge=1000, description="Client timeout of one broker request."
    )
    publish_timeout_ms: int = Field(
        60_000,
        ge=1000,
        description="How long one publish may wait for its acknowledgement before it is "
        "retried (the event stays uncommitted meanwhile).",
    )
    commit_timeout_ms: int = Field(
        15_000, ge=1000, description="How long one offset commit may take before it fails."
    )
    max_request_size: int = Field(
        1 << 20,
        ge=64 * 1024,
        description="Largest record the producer sends (bytes; keep it at or below the "
        "brokers' message.max.bytes). A result above it dead-letters its event; dead letters "
        "are capped to fit (dead_letters.max_original_bytes).",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _brokers(cls, value: str) -> str:
        check_bootstrap_servers(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("kafka.heartbeat_interval_ms must be below kafka.session_timeout_ms")
        if self.revoke_grace_ms >= self.rebalance_timeout_ms:
            raise ValueError("kafka.revoke_grace_ms must be below kafka.rebalance_timeout_ms")
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and (self.sasl_mechanism is None or not self.sasl_username):
            raise ValueError(
                f"kafka.security_protocol {self.security_protocol} needs kafka.sasl_mechanism "
                "and kafka.sasl_username"
            )
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError("kafka.sasl_mechanism needs a SASL_* kafka.security_protocol")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("kafka.ssl_keyfile needs kafka.ssl_certfile")
        return self

    @property
    def prompts_topics(self) -> list[str]:
        """The prompt topics as a list."""
        return self.prompts_topic.split(",")


class RoutingSettings(_Section):
    """Mixed fleets: clips above a size go to the workers that split one video over several
    GPUs (docs/parallel.md)."""

    large_above_tokens: int | None = Field(
        None,
        ge=1,
        description="A one-GPU Kafka worker forwards every event whose clip has more latent "
        "tokens than this (frames/4+1 x height/32 x width/32 for Wan2.2-TI2V-5B; 832x480x121 "
        "is 12090, 1280x704x121 is 27280) to large_topic, durably, before committing it; "
        "cache hits and earlier answers are still answered here. Unset: every clip runs here.",
    )
    large_topic: str = Field(
        "streamproc.prompts.large",
        min_length=1,
        description="The prompts topic of the context-parallel workers (their "
        "kafka.prompts_topic), where large clips are forwarded as they arrived (key, value, "
        "headers, plus streamproc-forwarded-from).",
    )


class DeadLetterSettings(_Section):
    """How dead letters keep the input they could not use."""

    max_original_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Most bytes of the original record kept (base64) in a dead letter; a "
        "longer original is cut there and marked original_truncated, with its full size and "
        "SHA-256. Must leave room under kafka.max_request_size.",
    )
    store_originals: bool = Field(
        False,
        description="Also put every cut original, whole, into the object store under "
        "dead-letters/ and give its URL in original_url.",
    )


class LedgerSettings(_Section):
    """The result ledger: the first answer to each event, re-published on redelivery."""

    backend: Literal["auto", "redis", "sqlite", "none"] = Field(
        "auto",
        description="'redis' (shared by every worker: copies of an answer are identical "
        "across workers), 'sqlite' (a file on this machine: identical for this worker and "
        "local re-runs), 'none' (off: a redelivered event is answered anew), 'auto' (redis "
        "when cache.backend is redis, else sqlite).",
    )
    redis_url: SecretStr | None = Field(
        None, description="Redis of the ledger (default: cache.redis_url)."
    )
    path: Path | None = Field(
        None, description="SQLite file of the ledger (default: <storage.local_dir>/ledger.sqlite3)."
    )
    ttl_s: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="How long an answer is kept; at least the prompts topic's retention, so "
        "any record Kafka can still deliver finds its answer.",
    )
    key_prefix: str = Field(
        "streamproc-ledger", min_length=1, description="Prefix of the ledger's Redis keys."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_redis_url(value.get_secret_value())
        return value

    @field_serializer("redis_url", when_used="json")
    def _redis_url_shown(self, value: SecretStr | None) -> str | None:
        return mask_password(value.get_secret_value()) if value is not None else None


class FaultSettings(_Section):
    """What the worker does when a service refuses it for good while running."""

    exit_after_s: float = Field(
        60.0,
        ge=0,
        description="After a permanent fault (denied credentials, missing bucket or topic) the "
        "worker stays up this long with /readyz failing and input paused, then exits non-zero "
        "so its orchestrator restarts it.",
    )


class StatusSettings(_Section):
    """Status events: where each event is (best effort, never holds up results)."""

    enabled: bool = Field(
        True,
        description="Send status events to kafka.status_topic (or local.status): accepted, "
        "queued, generating (step k of N), stored, answered / dead_lettered / cancelled.",
    )
    step_interval_s: float = Field(
        1.0,
        ge=0,
        description="Least time between two 'generating' events of one batch (the first and "
        "last step are always sent; 0: every step).",
    )
    buffer_size: int = Field(
        10_000,
        ge=1,
        description="Status events waiting to be sent; when full, new ones are dropped and "
        "counted (streamproc_status_dropped_total), never waited for.",
    )


class ControlSettings(_Section):
    """Cancellation and expiry (docs/control.md)."""

    enabled: bool = Field(
        True, description="Read control events (kafka.control_topic, or local.control)."
    )
    cancel_memory_s: float = Field(
        3600.0,
        gt=0,
        description="How long a cancel is remembered: an event it names that arrives later "
        "(or is delivered again) within this time is cancelled too.",
    )
    cancel_memory_max: int = Field(
        100_000, ge=1, description="Most remembered cancels (the oldest are forgotten first)."
    )
    max_event_age_s: float = Field(
        0.0,
        ge=0,
        description="Dead-letter events older than this (from created_at, else the record's "
        "timestamp) as 'expired', at admission and again before generation (0: no limit).",
    )


class TenantQuota(_Section):
    """Limits of one tenant (0: no limit)."""

    max_in_flight: int = Field(
        0, ge=0, description="Most events of the tenant admitted and unfinished on one worker."
    )
    events_per_minute: float = Field(
        0.0, ge=0, description="Most events of the tenant admitted per minute on one worker."
    )


class TenantSettings(_Section):
    """Fair sharing between tenants: weights inside each lane, per-tenant limits.

    Events without a tenant share one anonymous tenant. An event over a limit is dead-lettered
    as quota_exceeded (docs/control.md).
    """

    weights: dict[str, float] = Field(
        default_factory=dict,
        description="Share of the GPU of each tenant inside a lane, relative to others "
        "(weighted fair queuing); tenants not named get default_weight.",
    )
    default_weight: float = Field(1.0, gt=0, description="Weight of tenants not in weights.")
    max_in_flight: int = Field(
        0,
        ge=0,
        description="Most events of one tenant admitted and unfinished on one worker (0: no "
        "limit); beyond it an event is dead-lettered as quota_exceeded.",
    )
    events_per_minute: float = Field(
        0.0,
        ge=0,
        description="Most events of one tenant admitted per minute on one worker, a token "
        "bucket holding a minute's worth (0: no limit); beyond it quota_exceeded.",
    )
    quotas: dict[str, TenantQuota] = Field(
        default_factory=dict,
        description="Limits of named tenants, instead of max_in_flight / events_per_minute.",
    )

    @field_validator("weights")
    @classmethod
    def _positive_weights(cls, value: dict[str, float]) -> dict[str, float]:
        for tenant, weight in value.items():
            if not weight > 0:
                raise ValueError(f"weight of tenant {tenant!r} must be > 0")
        return value

    def weight(self, tenant: str | None) -> float:
        """The weight of ``tenant`` (None: the anonymous tenant)."""
        return self.weights.get(tenant or "", self.default_weight)

    def quota(self, tenant: str | None) -> TenantQuota:
        """The limits in force for ``tenant``."""
        named = self.quotas.get(tenant or "")
        if named is not None:
            return named
        return TenantQuota(
            max_in_flight=self.max_in_flight, events_per_minute=self.events_per_minute
        )


class LaneSettings(_Section):
    """Priority lanes: each priority (0-9) is a lane, higher lanes are served first."""

    starvation_s: float = Field(
        30.0,
        gt=0,
        description="Longest wait of the event at the head of a lane once a higher lane keeps "
        "the GPU busy; past it, its batch goes next.",
    )
    replay_priority: int = Field(
        0,
        ge=-1,
        le=9,
        description="Lane of events run by `streamproc replay` (-1: their own priority).",
    )


class LogSettings(_Section):
    """Structured logs on stderr."""

    format: Literal["auto", "console", "json"] = Field(
        "auto", description="'auto': console on a TTY, JSON otherwise."
    )
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged."
    )
    max_prompt_chars: int = Field(
        80, ge=0, description="Prompts are cut to this length in logs (0: never logged)."
    )


class TenantLimits(_Section):
    """One tenant's limits at the gateway (enforced across replicas through Redis)."""

    requests_per_s: float = Field(
        50.0, gt=0, description="Requests per second of any kind (a burst of burst_requests)."
    )
    burst_requests: int = Field(
        100, ge=1, description="Requests allowed at once before requests_per_s applies."
    )
    videos_per_min: float | None = Field(
        None,
        gt=0,
        description="Accepted video submissions per minute (POST /v1/videos); unset: the "
        "workers' quota of the tenant (tenants.quotas / tenants.events_per_minute), or 600 "
        "where that is 0 (no limit).",
    )
    burst_videos: int | None = Field(
        None,
        ge=1,
        description="Submissions allowed at once before videos_per_min applies; unset: a "
        "minute's worth, like the workers' token bucket.",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Key of the HMAC-SHA256 signature of the tenant's webhooks (never logged); "
        "unset: a submission with a Webhook-URL header is refused (422 webhooks_not_enabled).",
    )


class GatewayRates(NamedTuple):
    """The limits in force for one tenant at the gateway."""

    requests_per_s: float
    burst_requests: int
    videos_per_min: float
    burst_videos: int


class ApiKeySpec(_Section):
    """An API key of the gateway, stored as the SHA-256 of the key (never the key itself)."""

    tenant: str = Field(pattern=TENANT_PATTERN, description="The tenant the key acts for.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="Lowercase hex SHA-256 of the key (streamproc api-key create prints it).",
    )
    expires_at: AwareDatetime | None = Field(
        None, description="After this time the key is refused (401 expired_api_key)."
    )
    name: str = Field("", max_length=200, description="A label for people (never the key).")


class GatewaySettings(_Section):
    """The HTTP gateway (streamproc gateway): auth, rate limits, the Kafka contract."""

    host: str = Field("0.0.0.0", min_length=1, description="Address to bind, without port.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port of the API (0: any free port).")
    public_url: str | None = Field(
        None,
        description="Base URL clients reach the gateway at, for the links in answers "
        "(unset: taken from each request's Host header).",
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, le=1 << 20, description="Largest request body (413 above it)."
    )
    redis_url: SecretStr | None = Field(
        None,
        description="Redis of the API keys, rate limits and idempotency keys (default: "
        "ledger.redis_url, else cache.redis_url). Every replica must use the same one.",
    )
    key_prefix: str = Field(
        "streamproc-gateway", min_length=1, description="Prefix of the gateway's Redis keys."
    )
    api_keys: list[ApiKeySpec] = Field(
        default_factory=list,
        description="API keys from the configuration; keys stored in Redis "
        "(streamproc api-key create --store redis) are accepted as well.",
    )
    key_cache_s: float = Field(
        5.0,
        ge=0,
        description="How long a replica remembers a key looked up in Redis (a key revoked "
        "there is refused at most this much later).",
    )
    tenants: dict[str, TenantLimits] = Field(
        default_factory=dict,
        description="Tenants the gateway serves, with their limits; the tenants named in "
        "the workers' tenants.weights and tenants.quotas are served too, with the default "
        "limits. A key of a tenant named nowhere is refused (403 unknown_tenant).",
    )
    idempotency_ttl_s: float = Field(
        24 * 3600.0,
        gt=0,
        description="How long an Idempotency-Key (and the video id) is remembered; at most "
        "ledger.ttl_s.",
    )
    produce_timeout_ms: int = Field(
        10_000,
        ge=100,
        description="How long a submission waits for the brokers' acknowledgement (acks=all) "
        "before it is answered 503 (the client retries with the same Idempotency-Key).",
    )
    linger_ms: int = Field(
        0,
        ge=0,
        le=1000,
        description="How long the gateway's producer waits to fill a batch (kafka.linger_ms is "
        "the workers'). 0: a submission waits only for its acknowledgement; under load records "
        "still share batches while one is in flight.",
    )
    redis_timeout_ms: float = Field(500.0, gt=0, description="Per Redis command.")
    log_prompts: bool = Field(
        False, description="Put the prompt (cut to log.max_prompt_chars) in the access log."
    )
    webhook_poll_s: float = Field(
        2.0,
        gt=0,
        description="How often a replica looks for videos with a webhook that ended (a final "
        "status event makes it look at once); also the first retry delay, doubled per failure.",
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=50, description="Deliveries of one webhook before it is given up (logged)."
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, description="How long one webhook POST may take (connect to answer)."
    )

    @field_validator("host")
    @classmethod
    def _bind_host(cls, value: str) -> str:
        check_bind_host(value)
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        check_http_url(value, appended=True)
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_redis_url(value.get_secret_value())
        return value

    @field_serializer("redis_url", when_used="json")
    def _redis_url_shown(self, value: SecretStr | None) -> str | None:
        return mask_password(value.get_secret_value()) if value is not None else None

    @field_validator("tenants")
    @classmethod
    def _tenant_names(cls, value: dict[str, TenantLimits]) -> dict[str, TenantLimits]:
        for name in value:
            if not _TENANT.fullmatch(name):
                raise ValueError(f"tenant name {name!r} must match {TENANT_PATTERN}")
        return value


class MetricsSettings(_Section):
    """The operations HTTP server: Prometheus ``/metrics``, ``/healthz``, ``/readyz``."""

    enabled: bool = Field(True, description="Serve the three endpoints while a worker runs.")
    host: str = Field(
        "0.0.0.0",
        min_length=1,
        description="Address to bind, without port ('127.0.0.1' keeps it on this machine).",
    )
    port: int = Field(
        9464, ge=0, le=65535, description="TCP port of the endpoints (0: any free port)."
    )

    @field_validator("host")
    @classmethod
    def _bind_host(cls, value: str) -> str:
        check_bind_host(value)
        return value


class Settings(BaseSettings):
    """Everything a worker needs; see ``docs/configuration.md``."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMPROC_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    worker_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="Name of this worker in results and logs.",
    )
    transport: Literal["local", "kafka"] = Field(
        "local",
        description="Where prompt events come from and results go: 'local' (JSONL files) or "
        "'kafka' (topics; see the kafka section).",
    )
    commit_interval_ms: float = Field(
        500.0, gt=0, description="How often finished offsets are committed."
    )
    shutdown_grace_s: float = Field(
        60.0,
        ge=0,
        description="On stop, how long in-flight work may finish before it is "
        "abandoned (uncommitted, so it is re-delivered).",
    )
    local: LocalTransportSettings = LocalTransportSettings()
    kafka: KafkaSettings = KafkaSettings()
    batch: BatchSettings = BatchSettings()
    generation: GenerationSettings = GenerationSettings()
    encoding: EncodingSettings = EncodingSettings()
    storage: StorageSettings = StorageSettings()
    cache: CacheSettings = CacheSettings()
    limits: LimitSettings = LimitSettings()
    dead_letters: DeadLetterSettings = DeadLetterSettings()
    routing: RoutingSettings = RoutingSettings()
    ledger: LedgerSettings = LedgerSettings()
    faults: FaultSettings = FaultSettings()
    status: StatusSettings = StatusSettings()
    control: ControlSettings = ControlSettings()
    lanes: LaneSettings = LaneSettings()
    tenants: TenantSettings = TenantSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    gateway: GatewaySettings = GatewaySettings()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.storage.retry_max_s < self.storage.retry_initial_s:
            raise ValueError("storage.retry_max_s must be >= storage.retry_initial_s")
        if self.routing.large_above_tokens is not None:
            if self.transport != "kafka":
                raise ValueError("routing.large_above_tokens forwards to Kafka: transport 'kafka'")
            if self.generation.gpus_per_worker > 1:
                raise ValueError(
                    "routing.large_above_tokens is for one-GPU workers; a worker with "
                    "generation.gpus_per_worker > 1 reads routing.large_topic as its "
                    "kafka.prompts_topic and runs every clip"
                )
            if self.routing.large_topic in self.kafka.prompts_topic.split(","):
                raise ValueError("routing.large_topic must differ from kafka.prompts_topic")
        if self.storage.backend == "s3" and not self.storage.s3.bucket:
            raise ValueError("storage.s3.bucket is required when storage.backend is 's3'")
        # base64 grows the original by 4/3; the rest of a dead letter stays under 16 KiB.
        if self.dead_letters.max_original_bytes * 4 // 3 + 16 * 1024 > self.kafka.max_request_size:
            raise ValueError(
                "dead_letters.max_original_bytes leaves no room for the rest of a dead letter "
                "under kafka.max_request_size (base64 adds a third)"
            )
        if self.gateway.idempotency_ttl_s > self.ledger.ttl_s:
            raise ValueError(
                "gateway.idempotency_ttl_s must not exceed ledger.ttl_s (a retried submission "
                "must still find its answer)"
            )
        return self

    @property
    def ledger_backend(self) -> Literal["redis", "sqlite", "none"]:
        """The ledger backend in effect ('auto' resolved)."""
        if self.ledger.backend != "auto":
            return self.ledger.backend
        return "redis" if self.cache.backend == "redis" else "sqlite"

    @property
    def local_status_path(self) -> str | None:
        """Where the local transport writes status events: ``local.status``, else
        ``status.jsonl`` beside the results file (None when results go to stdout)."""
        if self.local.status is not None:
            return self.local.status
        if self.local.results == "-":
            return None
        return str(Path(self.local.results).parent / "status.jsonl")

    @property
    def ledger_path(self) -> Path:
        """The SQLite file of the embedded ledger."""
        return self.ledger.path or self.storage.local_dir / "ledger.sqlite3"

    @property
    def ledger_redis_url(self) -> str:
        """The Redis URL of the shared ledger."""
        url = self.ledger.redis_url or self.cache.redis_url
        return url.get_secret_value()

    @property
    def gateway_redis_url(self) -> str:
        """The Redis URL of the gateway's keys, limits and idempotency records."""
        url = self.gateway.redis_url or self.ledger.redis_url or self.cache.redis_url
        return url.get_secret_value()

    def gateway_tenants(self) -> dict[str, GatewayRates]:
        """Every tenant the gateway serves → (requests/s, burst, videos/min, burst): the
        gateway's own limits, with videos/min defaulting to the workers' quota of the tenant
        so that a tenant within its gateway limit is never dead-lettered as quota_exceeded."""
        names = {*self.gateway.tenants, *self.tenants.weights, *self.tenants.quotas}
        out: dict[str, GatewayRates] = {}
        for name in sorted(names):
            own = self.gateway.tenants.get(name) or TenantLimits()
            quota = self.tenants.quota(name).events_per_minute
            per_min = own.videos_per_min or quota or 600.0
            burst = own.burst_videos or max(1, int(per_min))
            out[name] = GatewayRates(own.requests_per_s, own.burst_requests, per_min, burst)
        return out

    def event_limits(self, model_id: str | None = None) -> EventLimits:
        """The limits handed to event validation (with the model profile's defaults)."""
        profile = self.generation.model_profile
        return EventLimits(
            max_prompt_chars=self.limits.max_prompt_chars,
            max_width=self.limits.max_width,
            max_height=self.limits.max_height,
            max_frames=self.limits.max_frames,
            max_steps=self.limits.max_steps,
            model_id=model_id,
            quality_classes=frozenset(self.generation.step_cache_classes),
            default_steps=profile.steps,
            default_guidance=profile.guidance,
            fixed_steps=profile.fixed_steps,
            no_guidance=profile.guidance_fixed,
            profile=profile.name,
        )


def _file_sources(
    settings_cls: type[BaseSettings], path: Path | None
) -> tuple[PydanticBaseSettingsSource, ...]:
    """pydantic-settings' own TOML or YAML source for ``--config`` (none without a file)."""
    if path is None:
        return ()
    suffix = path.suffix.lower()
    if suffix not in {".toml", ".yaml", ".yml"}:
        raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml")
    try:
        with path.open("rb"):  # the sources skip a missing file silently; we must not
            pass
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        if suffix == ".toml":
            return (TomlConfigSettingsSource(settings_cls, toml_file=path),)
        return (YamlConfigSettingsSource(settings_cls, yaml_file=path),)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} does not parse: {exc}") from None
    except (TypeError, ValueError, AttributeError):  # a list or a scalar at the top
        raise ConfigError(f"config file {path} must hold a table of settings") from None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from flags (``overrides``), environment, config file and defaults.

    Nested overrides are dicts (``batch={"window_ms": 50}``); ``None`` values are ignored so
    unset CLI flags fall through. Raises :class:`ConfigError` with one readable line. What no
    source set keeps out of ``model_fields_set`` (a default the worker may adapt, such as a
    local run's metrics port).
    """
    flags = _drop_none(overrides)

    class _Layered(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, *_file_sources(settings_cls, config_file))

    try:
        layered = _Layered(**flags)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    # A plain Settings (picklable); unset fields are filled with the same defaults again.
    return Settings.model_validate(layered.model_dump(exclude_unset=True))


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")  # our validators' own words
        parts.append(f"{where}: {message}" if where else message)
    return "invalid settings: " + "; ".join(parts)
