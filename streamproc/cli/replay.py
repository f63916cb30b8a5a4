"""``streamproc replay``: a range of the prompts topic again, beside the live workers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from streamproc.cli.common import CONTEXT, fail, load
from streamproc.cli.options import SettingsCommand, settings_options
from streamproc.errors import StreamprocError
from streamproc.settings import Settings


@click.command(cls=SettingsCommand, context_settings=CONTEXT)
@settings_options(exclude={"transport", "local"})
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
def replay(
    from_text: str | None,
    to_text: str,
    partitions_text: str | None,
    rate_text: str | None,
    dry_run: bool,
    checkpoint_path: Path | None,
    resume_path: Path | None,
    replay_id: str | None,
    progress: bool | None,
    progress_interval: float,
    config_file: Path | None,
    overrides: dict[str, Any],
) -> None:
    """Re-run a range of the prompts topic (after a model upgrade, an outage, or to fill a
    new results topic) without touching the live consumer group.

    The replay reads the range with its own group-less consumer and runs it through the
    live worker's pipeline; results carry "replayed": true, the replay_id and a
    streamproc-replay header. Offsets and times are inclusive at both ends. Progress goes to
    a checkpoint file as events finish: after a crash or Ctrl-C, run again with --resume
    FILE. Runbook: docs/replay.md.

    A replay serves /metrics, /healthz and /readyz only when asked (--metrics-port PORT or
    --metrics): it often runs beside a live worker that holds the metrics port.

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
        kafka = overrides.setdefault("kafka", {})
        prompts_topic = kafka.get("prompts_topic")
        if prompts_topic is not None and prompts_topic != resume.topic:
            raise click.BadParameter(
                f"the checkpoint replays {resume.topic}, not {prompts_topic}",
                param_hint="--topic",
            )
        kafka["prompts_topic"] = resume.topic
    elif from_text is None:
        raise click.UsageError("say where the range starts: --from OFFSET|TIME|AGO")
    metrics = overrides.setdefault("metrics", {})
    metrics.setdefault("enabled", "port" in metrics)  # a replay serves metrics when asked
    settings = load(config_file, {**overrides, "transport": "kafka"})
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
    from streamproc.progress import LogStream

    logs = LogStream()
    configure_logging(settings.log, stream=logs)  # type: ignore[arg-type]
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
        display = ReplayProgress(source, tty=show_bars, interval_s=progress_interval, logs=logs)
        summary = await run_replay(settings, source, progress=display)
        click.echo(f"streamproc: {summary.line()}", err=True)
        if not summary.complete:
            click.echo(f"streamproc: resume with: --resume {checkpoint.path}", err=True)
            sys.exit(3)

    try:
        asyncio.run(go())
    except StreamprocError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        # Ctrl-C reaches here only before the worker's own signal handling is in place.
        click.echo(
            "streamproc: interrupted while starting, before any record was replayed; "
            "run the same command again",
            err=True,
        )
        sys.exit(130)


async def _dry_run(settings: Settings, source: Any) -> None:
    from streamproc.app import build_cache
    from streamproc.generation.wan import model_id_for
    from streamproc.replay.run import dry_run, dry_run_settings

    checked = dry_run_settings(settings)
    cache = await asyncio.to_thread(build_cache, checked)
    report = await dry_run(checked, source, cache, model_id_for(settings.generation))
    click.echo(report.table())
