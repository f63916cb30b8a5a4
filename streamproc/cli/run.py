"""``streamproc run``: one worker until its input ends or it is stopped."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from streamproc.cli.common import CONTEXT, fail, load, videos_at
from streamproc.cli.options import SettingsCommand, settings_options
from streamproc.errors import StreamprocError

if TYPE_CHECKING:
    from streamproc.bus.base import Source
    from streamproc.metrics import Metrics
    from streamproc.processor import RunSummary
    from streamproc.progress import LogStream
    from streamproc.settings import Settings


@click.command(cls=SettingsCommand, context_settings=CONTEXT)
@settings_options()
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (log lines scroll above it). [default: on when stderr is a "
    "terminal]",
)
@click.option(
    "--reprocess",
    is_flag=True,
    help="Answer every event anew, even those the result ledger holds an answer for "
    "(a re-run of the same --input otherwise answers only what it has not answered yet).",
)
def run(
    progress: bool | None, reprocess: bool, config_file: Path | None, overrides: dict[str, Any]
) -> None:
    """Process prompt events until the input ends (or SIGINT/SIGTERM), then drain and exit.

    Every input line ends as a result in --results or a dead letter in --dead-letters.
    Running the same --input again finishes what an interrupted run left: lines already
    answered in --results/--dead-letters are not answered (nor generated) again, unless
    --reprocess. An empty input file is answered at once, without loading a model.
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
    if overrides.get("transport") == "kafka" and "input" in overrides.get("local", {}):
        fail("--input reads a JSONL file; with --transport kafka prompts come from --topic")
    settings = load(config_file, overrides)
    from streamproc.app import build_source
    from streamproc.logs import configure_logging
    from streamproc.progress import LogStream

    show_progress = sys.stderr.isatty() if progress is None else progress
    logs = LogStream()
    configure_logging(settings.log, stream=logs)  # type: ignore[arg-type]

    async def go() -> int:
        from streamproc.metrics import Metrics

        metrics = Metrics()
        source = build_source(settings, metrics)
        if settings.transport == "local":
            # Fail fast on a bad input file; a Kafka source joins its group only once the
            # model is loaded, so it never holds partitions it cannot work on yet.
            await source.start()
        try:
            if settings.transport == "local" and source.input_size == 0:
                summary = await _answer_empty_input(settings)
            else:
                summary = await _work(
                    settings, source, metrics, logs if show_progress else None, reprocess
                )
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
            f"{where[1]}, videos: {videos_at(settings)}",
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
        fail(str(exc))
    except KeyboardInterrupt:
        from streamproc.processor import ExitStatus

        # Ctrl-C reaches here only before the worker's own signal handling is in place.
        click.echo(
            "streamproc: interrupted while starting, before any event was read; "
            "run the same command again to process the input",
            err=True,
        )
        sys.exit(ExitStatus.INTERRUPTED)
    sys.exit(status)


async def _work(
    settings: Settings,
    source: Source,
    metrics: Metrics,
    progress_logs: LogStream | None,
    reprocess: bool,
) -> RunSummary:
    """Run the worker, with a progress bar (and the log records above it) when
    ``progress_logs`` is given."""
    from streamproc.app import run_worker
    from streamproc.progress import ProgressDisplay

    options: dict[str, Any] = {
        "metrics": metrics,
        "reprocess": reprocess,
        # A re-run of a file answers only what its output lacks; Kafka redeliveries are
        # answered again (re-published from the ledger).
        "skip_answered": settings.transport == "local",
    }
    if progress_logs is None:
        return await run_worker(settings, source=source, **options)
    with ProgressDisplay(source.input_size, logs=progress_logs) as display:
        return await run_worker(settings, source=source, observers=[display], **options)


async def _answer_empty_input(settings: Settings) -> RunSummary:
    """A local input without a record: nothing to generate, look up or encode, so no model,
    embedder, encoder pool or ledger is started; the outputs exist afterwards, as after any
    run."""
    from streamproc.app import build_sink
    from streamproc.processor import RunSummary

    sink = build_sink(settings)
    await sink.start()
    await sink.stop()
    return RunSummary()


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
    if summary.forwarded:
        parts.append(f"{summary.forwarded} forwarded to the large-clip lane")
    if summary.abandoned:
        handed = f", {summary.handed_over} of them in rebalances" if summary.handed_over else ""
        parts.append(f"{summary.abandoned} abandoned (not committed: delivered again{handed})")
    return ", ".join(parts)
