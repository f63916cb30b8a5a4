"""Running a replay through the live worker's processor, and counting one (``--dry-run``).

:func:`run_replay` hands a started :class:`~streamproc.bus.kafka_replay.KafkaReplaySource` to
:func:`~streamproc.app.run_worker`: validation, cache, batcher, generator, storage and sink are
the live worker's, and the results carry ``replayed: true``, the ``replay_id`` and the
``streamproc-replay`` header. :func:`dry_run` reads the same range, validates and looks each
event up in the cache (no writes, no generation) to count what a replay would do.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from streamproc.bus.kafka_replay import KafkaReplaySource
from streamproc.cache.base import Cache, CacheScope, exact_key, scope_of
from streamproc.errors import InvalidEventError
from streamproc.events import CacheMode, CacheOutcome, canonical_prompt, decode_prompt
from streamproc.generation.base import Generator
from streamproc.processor import Outcome, RunSummary
from streamproc.progress import LogStream
from streamproc.settings import Settings
from streamproc.storage.base import ObjectStore

log = structlog.get_logger(__name__)

#: Events/s and ETA are measured over this many recent seconds.
_RATE_WINDOW_S = 30.0


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay did."""

    replay_id: str
    run: RunSummary
    skipped_done: int
    filtered: int
    complete: bool

    def counts(self) -> dict[str, int]:
        """Processed, hits, generated, dead-lettered, failed, skipped, filtered, abandoned."""
        o = self.run.outcomes
        return {
            "processed": self.run.finished,
            "hit_exact": o[Outcome.HIT_EXACT],
            "hit_semantic": o[Outcome.HIT_SEMANTIC],
            "generated": o[Outcome.GENERATED],
            "dead_lettered": o[Outcome.DEAD_LETTERED],
            "failed": o[Outcome.FAILED],
            "skipped_finished_before": self.skipped_done,
            "outside_time_bounds": self.filtered,
            "abandoned": self.run.abandoned,
        }

    def line(self) -> str:
        """One line for the terminal."""
        c = self.counts()
        state = "complete" if self.complete else "NOT complete (resume it from its checkpoint)"
        abandoned = f", {c['abandoned']} abandoned" if c["abandoned"] else ""
        return (
            f"replay {self.replay_id} {state}: {c['processed']} processed, "
            f"{c['hit_exact'] + c['hit_semantic']} cache hits ({c['hit_exact']} exact, "
            f"{c['hit_semantic']} semantic), {c['generated']} generated, "
            f"{c['dead_lettered']} dead-lettered, {c['failed']} failed; "
            f"{c['skipped_finished_before']} finished before, "
            f"{c['outside_time_bounds']} outside the time bounds{abandoned}"
        )


async def run_replay(
    settings: Settings,
    source: KafkaReplaySource,
    *,
    store: ObjectStore | None = None,
    cache: Cache | None = None,
    generator: Generator | None = None,
    progress: ReplayProgress | None = None,
    handle_signals: bool = True,
) -> ReplaySummary:
    """Replay ``source``'s range through the live worker's processor (see the module doc)."""
    from streamproc.app import run_worker

    await source.start()
    async with progress if progress is not None else contextlib.nullcontext():
        run = await run_worker(
            settings,
            source=source,
            store=store,
            cache=cache,
            generator=generator,
            handle_signals=handle_signals,
            replay_id=source.replay_id,
        )
    checkpoint = source.checkpoint
    summary = ReplaySummary(
        replay_id=source.replay_id,
        run=run,
        skipped_done=source.skipped_done,
        filtered=source.filtered,
        complete=checkpoint is not None and checkpoint.complete,
    )
    log.info("replay_finished", replay_id=summary.replay_id, complete=summary.complete,
             **summary.counts())  # fmt: skip
    return summary


class ReplayProgress:
    """Progress of a running replay: rich bars (per partition and total, events/s, ETA) on a
    terminal, else a ``replay_progress`` log event every ``interval_s``."""

    def __init__(
        self,
        source: KafkaReplaySource,
        *,
        tty: bool,
        interval_s: float = 10.0,
        logs: LogStream | None = None,
    ) -> None:
        self._source = source
        self._logs = logs  # printed above the bars while they show
        self._tty = tty
        self._interval_s = interval_s if not tty else 0.25
        self._task: asyncio.Task[None] | None = None
        self._bars: Progress | None = None
        self._ids: dict[int | None, TaskID] = {}
        self._samples: deque[tuple[float, dict[int, int], int]] = deque()

    async def __aenter__(self) -> Self:
        if self._tty:
            self._bars = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                redirect_stderr=True,
                redirect_stdout=False,
            )
            for item in self._source.progress():
                self._ids[item.partition] = self._bars.add_task(
                    f"partition {item.partition}", total=item.span, rate=""
                )
            total = sum(item.span for item in self._source.progress())
            self._ids[None] = self._bars.add_task("total", total=total, rate="")
            self._bars.start()
            if self._logs is not None:
                self._logs.attach(self._bars.console)
        self._task = asyncio.create_task(self._loop(), name="streamproc-replay-progress")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.report()
        if self._bars is not None:
            if self._logs is not None:
                self._logs.attach(None)
            self._bars.stop()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            self.report()

    def report(self) -> None:
        """Draw the bars, or log one progress event."""
        items = self._source.progress()
        now = time.monotonic()
        finished = {i.partition: i.finished for i in items}
        done = sum(i.done for i in items)
        span = sum(i.span for i in items)
        self._samples.append((now, finished, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= _RATE_WINDOW_S:
            self._samples.popleft()
        # Rates over the last window, not since the start (which includes loading the model).
        then, finished_then, done_then = self._samples[0]
        elapsed = max(now - then, 1e-6)
        rates = {p: (n - finished_then.get(p, 0)) / elapsed for p, n in finished.items()}
        rate = sum(rates.values())
        if self._bars is not None:
            for item in items:
                self._bars.update(
                    self._ids[item.partition],
                    completed=item.done,
                    rate=f"{rates[item.partition]:.1f} ev/s",
                )
            self._bars.update(self._ids[None], completed=done, rate=f"{rate:.1f} ev/s")
            return
        offsets_per_s = (done - done_then) / elapsed
        eta = (span - done) / offsets_per_s if offsets_per_s > 0 else None
        log.info(
            "replay_progress",
            replay_id=self._source.replay_id,
            done=done,
            total=span,
            finished=sum(finished.values()),
            events_per_s=round(rate, 2),
            eta_s=round(eta, 1) if eta is not None else None,
            partitions={str(i.partition): f"{i.done}/{i.span}" for i in items},
        )


@dataclass
class DryRunCounts:
    """What a replay of one partition would do."""

    partition: int
    start: int = 0
    stop: int = 0
    events: int = 0
    invalid: int = 0
    hit_exact: int = 0
    hit_semantic: int = 0
    repeats: int = 0
    generate: int = 0

    @property
    def hits(self) -> int:
        """Events answered without generating (cache hits and repeats inside the range)."""
        return self.hit_exact + self.hit_semantic + self.repeats


@dataclass
class DryRunReport:
    """Counts per partition and in total."""

    partitions: list[DryRunCounts]
    filtered: int
    total: DryRunCounts = field(init=False)

    def __post_init__(self) -> None:
        total = DryRunCounts(partition=-1)
        for c in self.partitions:
            for name in ("events", "invalid", "hit_exact", "hit_semantic", "repeats", "generate"):
                setattr(total, name, getattr(total, name) + getattr(c, name))
        self.total = total

    @property
    def hit_rate(self) -> float | None:
        """Expected share of valid events answered without generating."""
        valid = self.total.events - self.total.invalid
        return self.total.hits / valid if valid else None

    def table(self) -> str:
        """A plain-text table for the terminal."""
        head = (
            f"{'partition':>9} {'offsets':>17} {'events':>7} {'invalid':>7} {'exact':>6} "
            f"{'semantic':>8} {'repeats':>7} {'generate':>8}"
        )
        rows = [head]
        for c in [*self.partitions, self.total]:
            name = "total" if c.partition < 0 else str(c.partition)
            offsets = "" if c.partition < 0 else f"[{c.start}, {c.stop})"
            rows.append(
                f"{name:>9} {offsets:>17} {c.events:>7} {c.invalid:>7} {c.hit_exact:>6} "
                f"{c.hit_semantic:>8} {c.repeats:>7} {c.generate:>8}"
            )
        rate = self.hit_rate
        rows.append(
            f"expected cache hit rate: {'n/a' if rate is None else f'{rate:.1%}'}"
            f" ({self.total.hits} of {self.total.events - self.total.invalid} valid events); "
            f"{self.filtered} records outside the time bounds"
        )
        return "\n".join(rows)


async def dry_run(
    settings: Settings, source: KafkaReplaySource, cache: Cache, model_id: str
) -> DryRunReport:
    """Count what replaying ``source``'s range would do: no generation, no cache writes, no
    results. ``cache`` must not refresh TTLs on hits (the caller builds it so)."""
    await source.start()
    counts = {p.partition: DryRunCounts(p.partition, p.start, p.stop) for p in source.progress()}
    seen: set[str] = set()
    lookups: set[asyncio.Task[None]] = set()
    limits = settings.event_limits(model_id)
    await cache.start()
    try:
        async for record in source.records():
            c = counts[record.partition.partition]
            c.events += 1
            try:
                event = decode_prompt(record.value, limits)
            except InvalidEventError:
                c.invalid += 1
                continue
            prompt = canonical_prompt(event.prompt)
            step_cache = settings.generation.step_cache_for(event.quality)
            scope = scope_of(event, model_id, step_cache)
            mode = event.cache_mode or settings.cache.mode
            if mode is not CacheMode.REUSE:
                c.generate += 1
                continue
            key = exact_key(prompt, scope)
            first = key not in seen
            seen.add(key)
            task = asyncio.create_task(_count_lookup(cache, prompt, scope, c, first))
            lookups.add(task)
            task.add_done_callback(lookups.discard)
            if len(lookups) >= 64:
                await asyncio.wait(set(lookups), return_when=asyncio.FIRST_COMPLETED)
        if lookups:
            await asyncio.gather(*lookups)
    finally:
        await cache.stop()
        await source.stop()
    return DryRunReport(sorted(counts.values(), key=lambda c: c.partition), source.filtered)


async def _count_lookup(
    cache: Cache, prompt: str, scope: CacheScope, counts: DryRunCounts, first: bool
) -> None:
    try:
        hit = await cache.lookup(prompt, scope)
    except Exception as exc:  # as in the processor: a cache fault means a generation
        log.warning("cache_lookup_failed", error=repr(exc))
        hit = None
    if hit is not None and hit.outcome is CacheOutcome.HIT_EXACT:
        counts.hit_exact += 1
    elif hit is not None:
        counts.hit_semantic += 1
    elif not first:
        counts.repeats += 1  # an earlier event of the range makes it; this one shares it
    else:
        counts.generate += 1


def dry_run_settings(settings: Settings) -> Settings:
    """``settings`` for a dry run's cache: lookups never move an entry's TTL."""
    cache = settings.cache.model_copy(update={"refresh_ttl_on_hit": False})
    return settings.model_copy(update={"cache": cache})
