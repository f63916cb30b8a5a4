"""The ``streamproc`` command.

Settings are read here, once: flags override ``STREAMPROC_*`` environment variables, which
override the ``--config`` file, which overrides the defaults. Errors are printed as one line
(exit status 1), never as a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from streamproc import __version__
from streamproc.errors import StreamprocError
from streamproc.events import json_schemas
from streamproc.samples import example_events
from streamproc.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(message: str) -> None:
    click.echo(f"streamproc: error: {message}", err=True)
    sys.exit(1)


def _config_option(func: F) -> F:
    return click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="TOML or YAML settings file (see docs/configuration.md).",
    )(func)


def _load(config_file: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config_file, **overrides)
    except StreamprocError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


@click.group(context_settings=_CONTEXT)
@click.version_option(__version__, prog_name="streamproc")
def main() -> None:
    """Turn prompt events into short videos.

    Reads prompt events (JSON lines), answers repeats from a cache, batches the rest for a
    resident diffusers Wan2.2 pipeline, stores each MP4 and writes one result event per
    prompt (or a dead letter for input it cannot use).

    Start with:  streamproc produce --count 20 > prompts.jsonl && streamproc run -i prompts.jsonl
    """


@main.command(context_settings=_CONTEXT)
@click.option(
    "-i",
    "--input",
    "input_path",
    metavar="FILE",
    help="JSONL file of prompt events, or '-' for stdin.",
)
@click.option(
    "--results",
    metavar="FILE",
    help="Where result events go (JSONL, '-' = stdout). [default: streamproc-out/results.jsonl]",
)
@click.option(
    "--dead-letters",
    metavar="FILE",
    help="Where dead letters go (JSONL). [default: streamproc-out/dead-letters.jsonl]",
)
@click.option(
    "--store-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory of the local video store; MP4s go under its videos/ folder. "
    "[default: streamproc-out]",
)
@click.option(
    "--model",
    metavar="PATH_OR_ID",
    help="'tiny' (default: random weights, runs on a CPU) or a Wan2.2 diffusers "
    "model directory / hub id loaded with WanPipeline.from_pretrained.",
)
@click.option(
    "--scheduler", type=click.Choice(["unipc", "dpm++"]), help="Sampler. [default: unipc]"
)
@click.option("--device", help="'auto', 'cpu', 'cuda' or 'cuda:N'. [default: auto]")
@click.option(
    "--dtype",
    type=click.Choice(["auto", "float16", "bfloat16", "float32"]),
    help="Weights precision; auto = float16 on CUDA, float32 on CPU.",
)
@click.option("--fps", type=int, help="Frame rate of the MP4s. [default: 16]")
@click.option("--window-ms", type=float, help="Batching window per shape. [default: 100]")
@click.option("--max-batch-size", type=int, help="Most videos per pipeline call. [default: 4]")
@click.option(
    "--max-in-flight", type=int, help="Unfinished events before input is paused. [default: 64]"
)
@click.option(
    "--cache",
    "cache_mode",
    type=click.Choice(["reuse", "refresh", "bypass"]),
    help="Cache behaviour for every event (an event's 'cache' attribute wins).",
)
@click.option(
    "--cache-backend",
    type=click.Choice(["memory", "redis"]),
    help="'memory' (this worker) or 'redis' (shared by all workers). [default: memory]",
)
@click.option(
    "--redis-url", metavar="URL", help="Redis of the shared cache (--cache-backend redis)."
)
@click.option(
    "--similarity-threshold",
    type=click.FloatRange(0, 1, min_open=True),
    help="Lowest cosine similarity of a semantic cache hit. [default: 0.85]",
)
@click.option(
    "--cache-ttl",
    "cache_ttl_s",
    type=float,
    help="Seconds a cached video is reused. [default: 3600]",
)
@click.option("--worker-id", help="Name of this worker in results and logs.")
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]))
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr. [default: on when stderr is a terminal]",
)
@_config_option
def run(
    input_path: str | None,
    results: str | None,
    dead_letters: str | None,
    store_dir: Path | None,
    model: str | None,
    scheduler: str | None,
    device: str | None,
    dtype: str | None,
    fps: int | None,
    window_ms: float | None,
    max_batch_size: int | None,
    max_in_flight: int | None,
    cache_mode: str | None,
    cache_backend: str | None,
    redis_url: str | None,
    similarity_threshold: float | None,
    cache_ttl_s: float | None,
    worker_id: str | None,
    log_format: str | None,
    log_level: str | None,
    progress: bool | None,
    config_file: Path | None,
) -> None:
    """Process prompt events until the input ends (or SIGINT/SIGTERM), then drain and exit.

    Every input line ends as a result in --results or a dead letter in --dead-letters.
    SIGINT/SIGTERM stop reading, finish the work in flight and exit; a second signal
    abandons unfinished work.
    """
    settings = _load(
        config_file,
        worker_id=worker_id,
        local={"input": input_path, "results": results, "dead_letters": dead_letters},
        storage={"local_dir": store_dir},
        generation={
            "model": model,
            "scheduler": scheduler,
            "device": device,
            "dtype": dtype,
            "fps": fps,
        },
        batch={
            "window_ms": window_ms,
            "max_batch_size": max_batch_size,
            "max_in_flight": max_in_flight,
        },
        cache={
            "mode": cache_mode,
            "backend": cache_backend,
            "redis_url": redis_url,
            "similarity_threshold": similarity_threshold,
            "ttl_s": cache_ttl_s,
        },
        log={"format": log_format, "level": log_level},
    )
    from streamproc.app import build_source, run_worker
    from streamproc.logs import configure_logging
    from streamproc.progress import ProgressDisplay, StderrProxy

    show_progress = sys.stderr.isatty() if progress is None else progress
    configure_logging(settings.log, stream=StderrProxy())  # type: ignore[arg-type]

    async def go() -> None:
        source = build_source(settings)
        await source.start()
        if show_progress:
            with ProgressDisplay(source.input_size) as display:
                summary = await run_worker(settings, source=source, observers=[display])
        else:
            summary = await run_worker(settings, source=source)
        counts = ", ".join(f"{v} {k.value}" for k, v in summary.outcomes.items() if v)
        click.echo(
            f"streamproc: {summary.received} events: {counts or 'nothing done'}"
            f"{f', {summary.abandoned} abandoned (not committed)' if summary.abandoned else ''}"
            f" | results: {settings.local.results}, dead letters: "
            f"{settings.local.dead_letters}, videos: {settings.storage.local_dir / 'videos'}",
            err=True,
        )

    try:
        asyncio.run(go())
    except StreamprocError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)


@main.command(context_settings=_CONTEXT)
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many events to write.",
)
@click.option(
    "-o",
    "--output",
    type=click.File("w"),
    default="-",
    show_default=True,
    help="JSONL file to write ('-' = stdout).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the choices.")
@click.option(
    "--repeat-ratio",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="Share of events that repeat an earlier prompt (cache hits).",
)
@click.option("--width", type=int, default=832, show_default=True)
@click.option("--height", type=int, default=480, show_default=True)
@click.option(
    "--frames",
    "num_frames",
    type=int,
    default=17,
    show_default=True,
    help="Frames per video, 4k+1.",
)
@click.option("--steps", "num_inference_steps", type=int, default=16, show_default=True)
@click.option("--guidance", "guidance_scale", type=float, default=5.0, show_default=True)
def produce(
    count: int,
    output: Any,
    seed: int,
    repeat_ratio: float,
    width: int,
    height: int,
    num_frames: int,
    num_inference_steps: int,
    guidance_scale: float,
) -> None:
    """Write example prompt events as JSON lines (valid input for `streamproc run`)."""
    try:
        for event in example_events(
            count,
            seed=seed,
            repeat_ratio=repeat_ratio,
            width=width,
            height=height,
            num_frames=num_frames,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
        ):
            output.write(event.model_dump_json(exclude_none=True) + "\n")
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        _fail(f"these parameters make invalid events: {exc}".splitlines()[0])


@main.command(context_settings=_CONTEXT)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("schemas"),
    show_default=True,
    help="Where the schema files live.",
)
@click.option("--check", is_flag=True, help="Exit 1 if the files differ from the models.")
def schemas(directory: Path, check: bool) -> None:
    """Write (or --check) the JSON Schemas of the event contract."""
    stale = []
    for name, schema in json_schemas().items():
        text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        path = directory / name
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        stale.append(name)
        if not check:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            click.echo(f"wrote {path}", err=True)
    if check and stale:
        _fail(f"schemas out of date: {', '.join(stale)} (run: streamproc schemas)")


@main.group(context_settings=_CONTEXT)
def config() -> None:
    """Inspect settings."""


@config.command("show", context_settings=_CONTEXT)
@_config_option
def config_show(config_file: Path | None) -> None:
    """Print the effective settings (file + environment + defaults) as JSON; secrets masked."""
    settings = _load(config_file)
    click.echo(settings.model_dump_json(indent=2))


@config.command("reference", context_settings=_CONTEXT)
def config_reference() -> None:
    """Print the Markdown reference of every setting (docs/configuration.md)."""
    from streamproc.reference import settings_reference

    click.echo(settings_reference(), nl=False)
