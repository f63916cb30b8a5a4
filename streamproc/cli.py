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
from typing import TYPE_CHECKING, Any, TypeVar

import click

from streamproc import __version__
from streamproc.errors import StreamprocError
from streamproc.events import json_schemas
from streamproc.samples import example_events
from streamproc.settings import Settings, load_settings

if TYPE_CHECKING:
    from streamproc.processor import RunSummary

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


def _kafka_options(func: F) -> F:
    """Flags for the most used ``kafka.*`` settings (everything else: config file or env)."""
    options = [
        click.option(
            "--bootstrap-servers",
            metavar="HOST:PORT,...",
            help="Kafka brokers to start from. [default: localhost:9092]",
        ),
        click.option(
            "--topic",
            "prompts_topic",
            metavar="NAME",
            help="Topic of prompt events. [default: streamproc.prompts]",
        ),
        click.option(
            "--results-topic",
            metavar="NAME",
            help="Topic for result events. [default: streamproc.results]",
        ),
        click.option(
            "--dead-letter-topic",
            metavar="NAME",
            help="Topic for dead letters. [default: streamproc.dead-letters]",
        ),
        click.option(
            "--idempotence/--no-idempotence",
            default=None,
            help="Idempotent producer; --no-idempotence for brokers without it. [default: on]",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _kafka_overrides(
    bootstrap_servers: str | None,
    prompts_topic: str | None,
    results_topic: str | None,
    dead_letter_topic: str | None,
    idempotence: bool | None,
    **more: Any,
) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap_servers,
        "prompts_topic": prompts_topic,
        "results_topic": results_topic,
        "dead_letter_topic": dead_letter_topic,
        "enable_idempotence": idempotence,
        **more,
    }


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
    "--transport",
    type=click.Choice(["local", "kafka"]),
    help="'local': JSONL in and out (--input, --results); 'kafka': topics (docs/kafka.md). "
    "[default: local]",
)
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
    "--storage",
    "storage_backend",
    type=click.Choice(["local", "s3"]),
    help="Object store: 'local' (a directory) or 's3' (S3/MinIO, configured by the "
    "storage.s3 settings, see docs/storage.md). [default: local]",
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
    help="Weights precision; auto = float16 on CUDA (bfloat16 with --fp8), float32 on CPU.",
)
@click.option("--fps", type=int, help="Frame rate of the MP4s. [default: 16]")
@click.option(
    "--compile/--no-compile",
    "compile_blocks",
    default=None,
    help="Regionally compile the transformer blocks (warmed up at start).",
)
@click.option(
    "--compile-cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Persistent compile cache: a restart with the same model, shapes, dtype and "
    "versions loads the compiled graphs from here instead of compiling again.",
)
@click.option(
    "--fp8/--no-fp8",
    default=None,
    help="float8 linear layers in the transformer (torchao, CUDA with compute capability "
    ">= 8.9); with --dtype auto the weights load in bfloat16.",
)
@click.option(
    "--attention-backend",
    metavar="NAME",
    help="diffusers attention backend, e.g. _native_cudnn or _native_flash.",
)
@click.option(
    "--warmup-shape",
    "warmup_shapes",
    multiple=True,
    metavar="WxHxF[/STEPS]",
    help="Shape to warm up (compile, autotune) before reading events; repeatable.",
)
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
@_kafka_options
@click.option("--group-id", metavar="NAME", help="Kafka consumer group. [default: streamproc]")
@click.option(
    "--cache-backend",
    type=click.Choice(["memory", "redis", "none"]),
    help="'memory' (this worker), 'redis' (shared by all workers) or 'none' (no cache, no "
    "embedding model). [default: memory]",
)
@click.option(
    "--redis-url", metavar="URL", help="Redis of the shared cache (--cache-backend redis)."
)
@click.option(
    "--similarity-threshold",
    type=click.FloatRange(0, 1, min_open=True),
    help="Lowest cosine similarity of a semantic cache hit. [default: 0.75]",
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
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Port of /metrics, /healthz and /readyz (0: any free port). [default: 9464]",
)
@click.option(
    "--metrics/--no-metrics",
    "metrics_enabled",
    default=None,
    help="Serve the operations endpoints. [default: on]",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr. [default: on when stderr is a terminal]",
)
@click.option(
    "--reprocess",
    is_flag=True,
    help="Answer every event anew, even those the result ledger holds an answer for "
    "(a re-run of the same --input otherwise answers only what it has not answered yet).",
)
@_config_option
def run(
    transport: str | None,
    input_path: str | None,
    results: str | None,
    dead_letters: str | None,
    store_dir: Path | None,
    storage_backend: str | None,
    model: str | None,
    scheduler: str | None,
    device: str | None,
    dtype: str | None,
    fps: int | None,
    compile_blocks: bool | None,
    compile_cache_dir: Path | None,
    fp8: bool | None,
    attention_backend: str | None,
    warmup_shapes: tuple[str, ...],
    window_ms: float | None,
    max_batch_size: int | None,
    max_in_flight: int | None,
    cache_mode: str | None,
    bootstrap_servers: str | None,
    prompts_topic: str | None,
    results_topic: str | None,
    dead_letter_topic: str | None,
    idempotence: bool | None,
    group_id: str | None,
    cache_backend: str | None,
    redis_url: str | None,
    similarity_threshold: float | None,
    cache_ttl_s: float | None,
    worker_id: str | None,
    log_format: str | None,
    log_level: str | None,
    metrics_port: int | None,
    metrics_enabled: bool | None,
    progress: bool | None,
    reprocess: bool,
    config_file: Path | None,
) -> None:
    """Process prompt events until the input ends (or SIGINT/SIGTERM), then drain and exit.

    Every input line ends as a result in --results or a dead letter in --dead-letters.
    Running the same --input again finishes what an interrupted run left: lines already
    answered in --results/--dead-letters are not answered (nor generated) again, unless
    --reprocess.
    With --transport kafka the worker joins a consumer group on the prompts topic and runs
    until stopped, publishing to the results and dead-letter topics.
    SIGINT/SIGTERM (Ctrl-C) stop reading, finish the work in flight, commit and exit; a second
    signal abandons unfinished work.

    \b
    Exit status:
      0    every event received has its result or dead letter
      1    could not start (settings, a service unreachable or refusing at start)
      3    stopped with unfinished events (uncommitted: delivered again)
      4    a service refused the worker for good while running (faults.exit_after_s)
      5    a worker task crashed (a bug; see the task_crashed log)
      130  interrupted before the worker started
    """
    if transport == "kafka" and input_path is not None:
        _fail("--input reads a JSONL file; with --transport kafka prompts come from --topic")
    settings = _load(
        config_file,
        worker_id=worker_id,
        transport=transport,
        kafka=_kafka_overrides(
            bootstrap_servers,
            prompts_topic,
            results_topic,
            dead_letter_topic,
            idempotence,
            group_id=group_id,
        ),
        local={"input": input_path, "results": results, "dead_letters": dead_letters},
        storage={"local_dir": store_dir, "backend": storage_backend},
        generation={
            "model": model,
            "scheduler": scheduler,
            "device": device,
            "dtype": dtype,
            "fps": fps,
            "compile": compile_blocks,
            "compile_cache_dir": compile_cache_dir,
            "fp8": fp8,
            "attention_backend": attention_backend,
            "warmup_shapes": list(warmup_shapes) or None,
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
        metrics={"port": metrics_port, "enabled": metrics_enabled},
    )
    from streamproc.app import build_source, run_worker
    from streamproc.logs import configure_logging
    from streamproc.metrics import Metrics
    from streamproc.processor import ExitStatus
    from streamproc.progress import ProgressDisplay, StderrProxy

    show_progress = sys.stderr.isatty() if progress is None else progress
    configure_logging(settings.log, stream=StderrProxy())  # type: ignore[arg-type]

    async def go() -> int:
        metrics = Metrics()
        options: dict[str, Any] = {
            "metrics": metrics,
            "reprocess": reprocess,
            # A re-run of a file answers only what its output lacks; Kafka redeliveries are
            # answered again (re-published from the ledger).
            "skip_answered": settings.transport == "local",
        }
        source = build_source(settings, metrics)
        if settings.transport == "local":
            # Fail fast on a bad input file; a Kafka source joins its group only once the
            # model is loaded, so it never holds partitions it cannot work on yet.
            await source.start()
        try:
            if show_progress:
                with ProgressDisplay(source.input_size) as display:
                    summary = await run_worker(
                        settings, source=source, observers=[display], **options
                    )
            else:
                summary = await run_worker(settings, source=source, **options)
        finally:
            # Idempotent; needed when the worker failed before it took the source over (e.g. a
            # metrics port in use), so the input thread ends before the interpreter does.
            await source.stop()
        where = (
            (settings.kafka.results_topic, settings.kafka.dead_letter_topic)
            if settings.transport == "kafka"
            else (settings.local.results, settings.local.dead_letters)
        )
        click.echo(
            f"streamproc: {summary_line(summary)} | results: {where[0]}, dead letters: "
            f"{where[1]}, videos: {_videos_at(settings)}",
            err=True,
        )
        if summary.faulted is not None:
            click.echo(
                f"streamproc: error: stopped by a permanent fault: {summary.faulted}", err=True
            )
        if summary.crashed is not None:
            click.echo(f"streamproc: error: a worker task crashed: {summary.crashed}", err=True)
        return summary.exit_status

    try:
        status = asyncio.run(go())
    except StreamprocError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(ExitStatus.INTERRUPTED)
    sys.exit(status)


def summary_line(summary: RunSummary) -> str:
    """``N events: R results (…), D dead letters (…), A abandoned`` — always adds up."""
    from streamproc.processor import Outcome

    parts = [f"{summary.received} events"]
    if summary.already_answered:
        parts[0] += f": {summary.already_answered} already answered, {summary.results} results"
    else:
        parts[0] += f": {summary.results} results"
    hits = [
        f"{summary.outcomes[o]} {o.value}"
        for o in (Outcome.GENERATED, Outcome.HIT_EXACT, Outcome.HIT_SEMANTIC)
        if summary.outcomes[o]
    ]
    if hits:
        parts[0] += f" ({', '.join(hits)})"
    dead = f"{summary.dead_letters} dead letters"
    if summary.outcomes[Outcome.FAILED]:
        dead += f" ({summary.outcomes[Outcome.FAILED]} failed generation)"
    parts.append(dead)
    if summary.abandoned:
        parts.append(f"{summary.abandoned} abandoned (not committed: delivered again)")
    return ", ".join(parts)


def _videos_at(settings: Settings) -> str:
    if settings.storage.backend == "s3":
        return f"s3://{settings.storage.s3.bucket}/{settings.storage.s3.key_prefix}videos"
    return str(settings.storage.local_dir / "videos")


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
@click.option(
    "--kafka",
    "to_kafka",
    is_flag=True,
    help="Send the events to the prompts topic (keyed by event_id) instead of writing them.",
)
@click.option(
    "-i",
    "--input",
    "input_file",
    type=click.File("rb"),
    help="With --kafka: send the lines of this JSONL file ('-' = stdin) as they are, "
    "instead of generated examples.",
)
@_kafka_options
@_config_option
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
    to_kafka: bool,
    input_file: Any,
    bootstrap_servers: str | None,
    prompts_topic: str | None,
    results_topic: str | None,
    dead_letter_topic: str | None,
    idempotence: bool | None,
    config_file: Path | None,
) -> None:
    """Write example prompt events as JSON lines (valid input for `streamproc run`), or send
    them (or the lines of --input) to the Kafka prompts topic with --kafka."""
    if input_file is not None and not to_kafka:
        _fail("--input only works with --kafka (to send a file's events to the topic)")
    if input_file is not None:
        lines = [line.rstrip(b"\r\n") for line in input_file if line.strip()]
    else:
        try:
            lines = [
                event.model_dump_json(exclude_none=True).encode()
                for event in example_events(
                    count,
                    seed=seed,
                    repeat_ratio=repeat_ratio,
                    width=width,
                    height=height,
                    num_frames=num_frames,
                    num_inference_steps=num_inference_steps,
                    guidance_scale=guidance_scale,
                )
            ]
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            _fail(f"these parameters make invalid events: {exc}".splitlines()[0])
    if not to_kafka:
        for line in lines:
            output.write(line.decode() + "\n")
        return
    settings = _load(
        config_file,
        kafka=_kafka_overrides(
            bootstrap_servers, prompts_topic, results_topic, dead_letter_topic, idempotence
        ),
    )
    from streamproc.bus.kafka_admin import send_prompts

    try:
        sent = asyncio.run(send_prompts(settings.kafka, lines))
    except StreamprocError as exc:
        _fail(str(exc))
    click.echo(f"streamproc: sent {sent} events to {settings.kafka.prompts_topics[0]}", err=True)


@main.group(context_settings=_CONTEXT)
def topics() -> None:
    """Manage the Kafka topics."""


@topics.command("create", context_settings=_CONTEXT)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=6,
    show_default=True,
    help="Partitions per new topic (the most workers one group can use).",
)
@click.option(
    "--replication-factor",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Copies of each partition; use 3 on a production cluster.",
)
@_kafka_options
@_config_option
def topics_create(
    partitions: int,
    replication_factor: int,
    bootstrap_servers: str | None,
    prompts_topic: str | None,
    results_topic: str | None,
    dead_letter_topic: str | None,
    idempotence: bool | None,
    config_file: Path | None,
) -> None:
    """Create the prompts, results and dead-letter topics; existing ones are left as they are."""
    settings = _load(
        config_file,
        kafka=_kafka_overrides(
            bootstrap_servers, prompts_topic, results_topic, dead_letter_topic, idempotence
        ),
    )
    from streamproc.bus.kafka_admin import create_topics

    try:
        statuses = asyncio.run(
            create_topics(
                settings.kafka, partitions=partitions, replication_factor=replication_factor
            )
        )
    except StreamprocError as exc:
        _fail(str(exc))
    for status in statuses:
        if status.created:
            click.echo(f"created {status.name} ({status.partitions} partitions)")
        else:
            click.echo(f"exists  {status.name} ({status.partitions} partitions)")


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
    """Print the effective settings (file + environment + defaults) as JSON.

    Secrets are masked; a URL holding a password (cache.redis_url) is shown with only the
    password masked, so you can see which server is used.
    """
    settings = _load(config_file)
    click.echo(settings.model_dump_json(indent=2))


@config.command("reference", context_settings=_CONTEXT)
def config_reference() -> None:
    """Print the Markdown reference of every setting (docs/configuration.md)."""
    from streamproc.reference import settings_reference

    click.echo(settings_reference(), nl=False)


@main.group(context_settings=_CONTEXT)
def storage() -> None:
    """Inspect the object store."""


@storage.command("check", context_settings=_CONTEXT)
@click.option(
    "--storage",
    "backend",
    type=click.Choice(["local", "s3"]),
    help="Check this backend instead of storage.backend.",
)
@_config_option
def storage_check(backend: str | None, config_file: Path | None) -> None:
    """Verify the configured object store: credentials, bucket, and a small probe object
    written, read back, fetched by its URL and deleted (S3: below storage.s3.prefix).

    Exit status 0 when every step passed (a URL that cannot be fetched from this host is only
    a warning), 1 otherwise.
    """
    settings = _load(config_file, storage={"backend": backend})
    from streamproc.app import build_store
    from streamproc.logs import configure_logging

    configure_logging(settings.log)
    try:
        steps = asyncio.run(build_store(settings).check())
    except StreamprocError as exc:
        _fail(str(exc))
        return
    click.echo(f"storage check: {settings.storage.backend} store at {_videos_at(settings)}")
    for step in steps:
        click.echo(f"  {step.status:<4}  {step.name:<6}  {step.detail}")
    failed = [step for step in steps if step.status == "fail"]
    if failed:
        _fail(f"storage check failed ({failed[0].name}): {failed[0].detail}")
    warned = any(step.status == "warn" for step in steps)
    click.echo(f"storage: OK{' (with warnings)' if warned else ''}")


@main.command(context_settings=_CONTEXT)
@click.option(
    "--from",
    "from_text",
    metavar="OFFSET|TIME|AGO",
    help="Start of the range, inclusive: an offset of every partition (1200), an ISO-8601 "
    "time with a zone (2026-11-25T14:00:00Z) or a duration ago (30m, 2h, 1d).",
)
@click.option(
    "--to",
    "to_text",
    metavar="OFFSET|TIME|AGO|now",
    default="now",
    show_default=True,
    help="End of the range, inclusive: an offset, a time, a duration ago, or 'now' (the "
    "end of each partition when the replay starts).",
)
@click.option(
    "--partitions",
    "partitions_text",
    metavar="LIST",
    help="Partitions to replay, e.g. 0,2,5-7. [default: all]",
)
@click.option(
    "--cache",
    "cache_mode",
    type=click.Choice(["reuse", "refresh", "bypass"]),
    help="reuse: answer cached events from the cache; refresh: regenerate and replace the "
    "entries; bypass: neither read nor write the cache (an event's 'cache' attribute wins, "
    "as in `run`). [default: cache.mode, reuse]",
)
@click.option(
    "--rate",
    "rate_text",
    metavar="N/s",
    help="Most events per second handed to the pipeline (also N/m). [default: no limit]",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only count: events per partition, invalid ones and the expected cache hit rate; "
    "nothing is generated, written or published.",
)
@click.option(
    "--checkpoint",
    "checkpoint_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where the replay keeps its progress. [default: replay-<id>.checkpoint.json]",
)
@click.option(
    "--resume",
    "resume_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Go on with the replay of this checkpoint (its range, id and progress); events "
    "it records as finished are not processed again.",
)
@click.option(
    "--replay-id",
    metavar="ID",
    help="Id in the results' replay_id field and streamproc-replay header. [default: random]",
)
@_kafka_options
@click.option(
    "--store-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory of the local video store. [default: streamproc-out]",
)
@click.option(
    "--storage",
    "storage_backend",
    type=click.Choice(["local", "s3"]),
    help="Object store, as for `run`. [default: local]",
)
@click.option("--model", metavar="PATH_OR_ID", help="Model, as for `run`. [default: tiny]")
@click.option("--device", help="'auto', 'cpu', 'cuda' or 'cuda:N'. [default: auto]")
@click.option("--window-ms", type=float, help="Batching window per shape. [default: 100]")
@click.option("--max-batch-size", type=int, help="Most videos per pipeline call. [default: 4]")
@click.option(
    "--cache-backend",
    type=click.Choice(["memory", "redis", "none"]),
    help="Cache backend, as for `run`; use the live workers' (redis) to share their cache.",
)
@click.option("--redis-url", metavar="URL", help="Redis of the shared cache.")
@click.option("--worker-id", help="Name of this replay in results and logs.")
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]))
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bars on stderr; otherwise replay_progress log events. "
    "[default: bars when stderr is a terminal]",
)
@click.option(
    "--progress-interval",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between replay_progress log events (without bars).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve /metrics, /healthz and /readyz on this port while replaying (0: any free "
    "port). [default: none — a replay often runs beside a live worker that holds the "
    "metrics port]",
)
@_config_option
def replay(
    from_text: str | None,
    to_text: str,
    partitions_text: str | None,
    cache_mode: str | None,
    rate_text: str | None,
    dry_run: bool,
    checkpoint_path: Path | None,
    resume_path: Path | None,
    replay_id: str | None,
    bootstrap_servers: str | None,
    prompts_topic: str | None,
    results_topic: str | None,
    dead_letter_topic: str | None,
    idempotence: bool | None,
    store_dir: Path | None,
    storage_backend: str | None,
    model: str | None,
    device: str | None,
    window_ms: float | None,
    max_batch_size: int | None,
    cache_backend: str | None,
    redis_url: str | None,
    worker_id: str | None,
    log_format: str | None,
    log_level: str | None,
    progress: bool | None,
    progress_interval: float,
    metrics_port: int | None,
    config_file: Path | None,
) -> None:
    """Re-run a range of the prompts topic (after a model upgrade, an outage, or to fill a
    new results topic) without touching the live consumer group.

    The replay reads the range with its own group-less consumer and runs it through the
    live worker's pipeline; results carry "replayed": true, the replay_id and a
    streamproc-replay header. Offsets and times are inclusive at both ends. Progress goes to
    a checkpoint file as events finish: after a crash or Ctrl-C, run again with --resume
    FILE. Runbook: docs/replay.md.

    Exit status: 0 when the whole range is done, 3 when the replay stopped before (resume
    it), 2 for unusable flags or bounds, 1 for other errors.

    Example:  streamproc replay --topic streamproc.prompts --from 2h --to now --dry-run
    """
    import re
    import uuid
    from datetime import UTC, datetime

    from streamproc.errors import ReplayRangeError
    from streamproc.replay.bounds import check_order, parse_bound, parse_partitions
    from streamproc.replay.checkpoint import Checkpoint
    from streamproc.replay.rate import parse_rate

    now = datetime.now(UTC)
    rate: float | None = None
    if rate_text is not None:
        try:
            rate = parse_rate(rate_text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--rate") from None
    resume: Checkpoint | None = None
    if resume_path is not None:
        if from_text is not None or partitions_text is not None or replay_id is not None:
            raise click.UsageError(
                "--resume takes the range, partitions and id from the checkpoint; "
                "drop --from/--partitions/--replay-id"
            )
        if checkpoint_path is not None:
            raise click.UsageError("--resume FILE goes on writing FILE; drop --checkpoint")
        try:
            resume = Checkpoint.load(resume_path)
        except StreamprocError as exc:
            raise click.BadParameter(str(exc), param_hint="--resume") from None
        if prompts_topic is not None and prompts_topic != resume.topic:
            raise click.BadParameter(
                f"the checkpoint replays {resume.topic}, not {prompts_topic}",
                param_hint="--topic",
            )
        prompts_topic = resume.topic
    elif from_text is None:
        raise click.UsageError("say where the range starts: --from OFFSET|TIME|AGO")
    settings = _load(
        config_file,
        worker_id=worker_id,
        transport="kafka",
        kafka=_kafka_overrides(
            bootstrap_servers, prompts_topic, results_topic, dead_letter_topic, idempotence
        ),
        storage={"local_dir": store_dir, "backend": storage_backend},
        generation={"model": model, "device": device},
        batch={"window_ms": window_ms, "max_batch_size": max_batch_size},
        cache={"mode": cache_mode, "backend": cache_backend, "redis_url": redis_url},
        log={"format": log_format, "level": log_level},
        metrics={"enabled": metrics_port is not None, "port": metrics_port},
    )
    if len(settings.kafka.prompts_topics) > 1:
        raise click.BadParameter(
            f"a replay reads one topic, not {settings.kafka.prompts_topic!r}", param_hint="--topic"
        )
    from streamproc.bus.kafka_replay import KafkaReplaySource, ReplayRequest

    request: ReplayRequest | None = None
    if resume is None:
        assert from_text is not None
        try:
            start = parse_bound(from_text, now=now, allow_now=False)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--from") from None
        try:
            end = parse_bound(to_text, now=now, allow_now=True)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--to") from None
        try:
            check_order(start, end)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--from/--to") from None
        partitions = None
        if partitions_text is not None:
            try:
                partitions = parse_partitions(partitions_text)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--partitions") from None
        if replay_id is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", replay_id):
            raise click.BadParameter(
                "use 1-100 letters, digits, '.', '_' or '-'", param_hint="--replay-id"
            )
        rid = replay_id or f"replay-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        if not dry_run and checkpoint_path is None:
            checkpoint_path = Path(f"{rid}.checkpoint.json")
        if not dry_run and checkpoint_path is not None and checkpoint_path.exists():
            raise click.BadParameter(
                f"{checkpoint_path} exists (a replay started before): go on with "
                f"--resume {checkpoint_path}, or choose another --checkpoint",
                param_hint="--checkpoint",
            )
        request = ReplayRequest(
            topic=settings.kafka.prompts_topics[0],
            start=start,
            end=end,
            replay_id=rid,
            partitions=partitions,
            checkpoint_path=None if dry_run else checkpoint_path,
        )
    elif dry_run:
        raise click.UsageError("--dry-run counts a new range; it cannot resume a checkpoint")

    from streamproc.logs import configure_logging
    from streamproc.progress import StderrProxy

    configure_logging(settings.log, stream=StderrProxy())  # type: ignore[arg-type]
    show_bars = sys.stderr.isatty() if progress is None else progress
    source = KafkaReplaySource(
        settings.kafka,
        client_id=settings.worker_id,
        request=request,
        resume=resume,
        rate=None if dry_run else rate,
    )

    async def go() -> None:
        from streamproc.replay.run import ReplayProgress, run_replay

        try:
            await source.start()  # a bad range fails here, before the model loads
        except ReplayRangeError as exc:
            raise click.BadParameter(str(exc), param_hint=exc.option) from None
        if dry_run:
            await _dry_run(settings, source)
            return
        checkpoint = source.checkpoint
        assert checkpoint is not None
        click.echo(
            f"streamproc: replay {checkpoint.replay_id} of {checkpoint.topic} "
            f"({sum(s.span for s in checkpoint.partitions.values())} offsets) -> "
            f"{settings.kafka.results_topic}; checkpoint: {checkpoint.path}",
            err=True,
        )
        display = ReplayProgress(source, tty=show_bars, interval_s=progress_interval)
        summary = await run_replay(settings, source, progress=display)
        click.echo(f"streamproc: {summary.line()}", err=True)
        if not summary.complete:
            click.echo(f"streamproc: resume with: --resume {checkpoint.path}", err=True)
            sys.exit(3)

    try:
        asyncio.run(go())
    except StreamprocError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)


async def _dry_run(settings: Settings, source: Any) -> None:
    from streamproc.app import build_cache
    from streamproc.generation.wan import model_id_for
    from streamproc.replay.run import dry_run, dry_run_settings

    checked = dry_run_settings(settings)
    cache = await asyncio.to_thread(build_cache, checked)
    report = await dry_run(checked, source, cache, model_id_for(settings.generation))
    click.echo(report.table())
