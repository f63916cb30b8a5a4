"""All configuration, in one pydantic-settings model read once at the edge (the CLI).

Precedence, highest first: CLI flags, environment (``STREAMPROC_`` prefix, ``__`` between
nested names, e.g. ``STREAMPROC_BATCH__WINDOW_MS=50``), the optional config file (TOML or YAML,
``--config``), the defaults below. Components receive typed values from here and never read
the environment themselves.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from streamproc.errors import ConfigError
from streamproc.events import (
    FRAMES_MAX,
    PROMPT_MAX_CHARS,
    SIDE_MAX,
    STEPS_MAX,
    CacheMode,
    EventLimits,
)

TINY_MODEL = "tiny"
DEFAULT_OUT = Path("streamproc-out")


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
    max_in_flight: int = Field(
        64, ge=1, description="Events admitted but unfinished; above it the source is paused."
    )
    deadline_slack_ms: float = Field(
        1000.0, ge=0, description="Dispatch early when an event's deadline is this close."
    )


class GenerationSettings(_Section):
    """The resident video pipeline."""

    model: str = Field(
        TINY_MODEL,
        description="'tiny' (random-weight Wan2.2-TI2V-5B architecture, built locally) or a "
        "path / hub id for WanPipeline.from_pretrained.",
    )
    device: str = Field("auto", description="'auto' (cuda when present), 'cpu', 'cuda', 'cuda:1'.")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="'auto' is float16 on CUDA and float32 on CPU."
    )
    scheduler: Literal["unipc", "dpm++"] = Field(
        "unipc", description="Sampler: UniPC or DPM-Solver++ (flow matching)."
    )
    flow_shift: float = Field(5.0, gt=0, description="Flow-matching sigma shift of the sampler.")
    max_sequence_length: int = Field(512, ge=8, le=512, description="Text tokens per prompt.")
    fps: int = Field(16, ge=1, le=120, description="Frame rate of the MP4s.")
    retries: int = Field(
        2, ge=0, le=10, description="Extra attempts for an event whose generation raised."
    )
    tiny_seed: int = Field(0, ge=0, description="Weight seed of the tiny model.")


class StorageSettings(_Section):
    """Where videos are kept."""

    backend: Literal["local"] = Field("local", description="'local': a directory.")
    local_dir: Path = Field(
        DEFAULT_OUT, description="Directory of the local store (videos go under videos/)."
    )
    retry_initial_s: float = Field(0.2, gt=0, description="First backoff after a failed put.")
    retry_max_s: float = Field(10.0, gt=0, description="Longest backoff between puts.")


class CacheSettings(_Section):
    """The semantic result cache (see docs/cache.md)."""

    mode: CacheMode = Field(CacheMode.REUSE, description="reuse, refresh or bypass, globally.")
    backend: Literal["memory", "redis"] = Field(
        "memory",
        description="'memory': this worker only; 'redis': shared by every worker through "
        "cache.redis_url.",
    )
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis of the shared cache, redis:// or rediss:// (may hold a password).",
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
        0.85, gt=0, le=1, description="Lowest cosine similarity of a semantic hit."
    )
    verify_hits: bool = Field(
        True,
        description="Check a semantic candidate's attributes (numbers, colours, time of day, "
        "weather, subjects, negation ...) against the request before accepting it.",
    )
    verified_threshold: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Optional lower band: a candidate from here up to similarity_threshold "
        "hits when the guard accepts it and the prompts share min_lexical_overlap of their "
        "content words. Off when unset.",
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
        250.0, gt=0, description="Per Redis command (never awaited by an event)."
    )
    redis_stream_max_len: int = Field(
        100_000, ge=100, description="Length of the change stream workers follow."
    )
    redis_max_pending: int = Field(
        10_000,
        ge=1,
        description="Writes kept while Redis is unreachable; beyond, the oldest are dropped.",
    )

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
    max_record_bytes: int = Field(1 << 20, ge=1024, description="Longer lines are dead-lettered.")


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
    transport: Literal["local"] = Field(
        "local", description="Where prompt events come from and results go: 'local' (JSONL files)."
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
    batch: BatchSettings = BatchSettings()
    generation: GenerationSettings = GenerationSettings()
    storage: StorageSettings = StorageSettings()
    cache: CacheSettings = CacheSettings()
    limits: LimitSettings = LimitSettings()
    log: LogSettings = LogSettings()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.storage.retry_max_s < self.storage.retry_initial_s:
            raise ValueError("storage.retry_max_s must be >= storage.retry_initial_s")
        return self

    def event_limits(self, model_id: str | None = None) -> EventLimits:
        """The limits handed to event validation."""
        return EventLimits(
            max_prompt_chars=self.limits.max_prompt_chars,
            max_width=self.limits.max_width,
            max_height=self.limits.max_height,
            max_frames=self.limits.max_frames,
            max_steps=self.limits.max_steps,
            model_id=model_id,
        )


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix.lower() in {".yaml", ".yml"}:
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} does not parse: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of settings")
    return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from flags (``overrides``), environment, config file and defaults.

    Nested overrides are dicts (``batch={"window_ms": 50}``); ``None`` values are ignored so
    unset CLI flags fall through. Raises :class:`ConfigError` with one readable line.
    """
    file_data = _read_config_file(config_file) if config_file is not None else {}
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
            return (init_settings, env_settings, InitSettingsSource(settings_cls, file_data))

    try:
        layered = _Layered(**flags)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    return Settings.model_validate(layered.model_dump())


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
        parts.append(f"{where}: {error['msg']}")
    return "invalid settings: " + "; ".join(parts)
