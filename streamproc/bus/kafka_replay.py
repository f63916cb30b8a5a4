"""The replay source: a range of the prompts topic, read beside the live consumer group.

How it stays out of the live workers' way and keeps the range exact (``docs/replay.md``):

* **No group.** The consumer has no ``group_id`` and uses ``assign()``: it never joins the
  live group (no rebalance there), and :meth:`KafkaReplaySource.commit` never commits to
  Kafka. Progress goes to the replay's :class:`~streamproc.replay.checkpoint.Checkpoint`.
* **Resolved once.** At start each partition's range becomes ``[start, stop)`` in offsets:
  ``--from``/``--to`` offsets are inclusive, ``now`` is the end offset at start (later
  records are not replayed), a ``--from`` time is the broker's ``offsets_for_times`` answer.
  A ``--to`` time ends at the end offset at start, or earlier where the broker's
  ``offsets_for_times`` answer is confirmed by the record found there (its timestamp is past
  the bound). A resume takes the ranges from the checkpoint.
* **Filtered by each record's own timestamp.** With time bounds, records whose timestamp lies
  outside ``[from, to]`` are skipped, whatever the broker answered to ``offsets_for_times``
  (the Tansu test broker answers offset 0 for every time).
* **Finished per partition.** A partition ends when its position reaches ``stop``; the input
  ends when every partition has, and the processor drains.
* **Paced.** With a rate, a token bucket spaces the records handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streamproc.bus.base import Partition, Record, Source
from streamproc.bus.kafka import client_options, fetch_options, kafka_error, start_client
from streamproc.bus.kafka_clients import ConsumerClient, KafkaMessage, OffsetTime
from streamproc.errors import RecordRejected, ReplayRangeError, ServiceRefused, TransportError
from streamproc.replay.bounds import Bound, NowBound, OffsetBound, TimeBound, check_order
from streamproc.replay.checkpoint import Checkpoint, PartitionState
from streamproc.replay.rate import TokenBucket
from streamproc.resource import AsyncResource
from streamproc.settings import KafkaSettings

log = structlog.get_logger(__name__)

_POLL_MS = 200
_COMPONENT = "source"
#: Longest time between checkpoint writes for progress that is not a finished event.
_SAVE_EVERY_S = 1.0


@dataclass(frozen=True)
class ReplayRequest:
    """A new replay: which topic, partitions and bounds, and where its checkpoint goes."""

    topic: str
    start: Bound
    end: Bound
    replay_id: str
    partitions: tuple[int, ...] | None = None
    checkpoint_path: Path | None = None


@dataclass(frozen=True)
class PartitionProgress:
    """One partition's progress, for progress bars and logs."""

    partition: int
    start: int
    stop: int
    watermark: int
    finished: int
    passed: int

    @property
    def done(self) -> int:
        """Offsets of the range settled (finished or needing no work)."""
        return min(max(self.watermark - self.start, 0), self.stop - self.start)

    @property
    def span(self) -> int:
        """Offsets in the range."""
        return max(self.stop - self.start, 0)


class KafkaReplaySource(AsyncResource, Source):
    """Records of a resolved offset (and time) range, for one replay; see the module doc."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        client_id: str,
        request: ReplayRequest | None = None,
        resume: Checkpoint | None = None,
        rate: float | None = None,
    ) -> None:
        if (request is None) == (resume is None):
            raise ValueError("give a request or a checkpoint to resume")
        self._settings = settings
        self._client_id = client_id
        self._request = request
        self.checkpoint: Checkpoint | None = resume
        self._bucket = TokenBucket(rate) if rate else None
        self._consumer: ConsumerClient | None = None
        self._buffer: deque[KafkaMessage] = deque()
        self._read_through: set[int] = set()
        self._stop_candidates: dict[int, int] = {}
        self._paused = False
        self._closing = False
        self._wakeup = asyncio.Event()
        self._last_save = 0.0
        #: Offsets skipped: finished before (a resumed replay) / outside the time bounds.
        self.skipped_done = 0
        self.filtered = 0

    @property
    def topic(self) -> str:
        """The replayed topic."""
        if self._request is not None:
            return self._request.topic
        assert self.checkpoint is not None
        return self.checkpoint.topic

    @property
    def replay_id(self) -> str:
        """The id marking this replay's results."""
        if self.checkpoint is not None:
            return self.checkpoint.replay_id
        assert self._request is not None
        return self._request.replay_id

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, resolve the range (or take it from the checkpoint), seek, write the
        checkpoint. Raises :class:`ReplayRangeError` for bounds or partitions that cannot
        work, before anything is read."""
        if self._consumer is not None:
            return
        s = self._settings
        consumer: ConsumerClient = AIOKafkaConsumer(
            **client_options(s, self._client_id),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **fetch_options(s),
        )
        await start_client(consumer, "consumer", s, component=_COMPONENT)
        try:
            await self._prepare(consumer)
        except KafkaError as exc:
            await consumer.stop()
            raise self._error("replay set-up", exc) from None
        except BaseException:  # outcome: re-raised once the consumer is closed
            await consumer.stop()
            raise
        self._consumer = consumer

    async def _prepare(self, consumer: ConsumerClient) -> None:
        topic = self.topic
        if topic not in await consumer.topics():
            raise ReplayRangeError(
                f"kafka topic {topic} does not exist on brokers {self._settings.bootstrap_servers}",
                "--topic",
            )
        existing = sorted(consumer.partitions_for_topic(topic) or ())
        if self.checkpoint is None:
            assert self._request is not None
            self.checkpoint = await self._resolve(consumer, self._request, existing)
        else:
            missing = sorted(set(self.checkpoint.partitions) - set(existing))
            if missing:
                raise ReplayRangeError(
                    f"partitions {missing} of the checkpoint are not in {topic}", "--resume"
                )
            # Below the watermarks nothing is read again: count it as finished before.
            self.skipped_done = sum(
                st.watermark - st.start for st in self.checkpoint.partitions.values()
            )
        checkpoint = self.checkpoint
        todo = {p: st for p, st in checkpoint.partitions.items() if not st.complete}
        if checkpoint.to_ms is not None and todo:
            await self._ask_stop_candidates(consumer, checkpoint.to_ms, todo)
        tps = [TopicPartition(topic, p) for p in sorted(todo)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, todo[tp.partition].watermark)
        self._read_through = set(checkpoint.partitions) - set(todo)
        try:
            checkpoint.save(sync=True)
        except OSError as exc:
            option = "--checkpoint" if self._request is not None else "--resume"
            raise ReplayRangeError(
                f"cannot write checkpoint {checkpoint.path}: {exc.strerror or exc}", option
            ) from None
        self._last_save = time.monotonic()
        log.info(
            "replay_started",
            replay_id=checkpoint.replay_id,
            topic=topic,
            ranges={str(p): [st.start, st.stop] for p, st in sorted(checkpoint.partitions.items())},
            resume_at={str(p): st.watermark for p, st in sorted(todo.items())},
            from_ms=checkpoint.from_ms,
            to_ms=checkpoint.to_ms,
            checkpoint=str(checkpoint.path) if checkpoint.path else None,
        )

    async def _resolve(
        self, consumer: ConsumerClient, request: ReplayRequest, existing: list[int]
    ) -> Checkpoint:
        try:
            check_order(request.start, request.end)
        except ValueError as exc:
            raise ReplayRangeError(str(exc), "--from") from None
        if isinstance(request.start, NowBound):
            raise ReplayRangeError("'now' can only end a range", "--from")
        wanted = list(request.partitions) if request.partitions is not None else existing
        unknown = sorted(set(wanted) - set(existing))
        if unknown:
            raise ReplayRangeError(
                f"{request.topic} has partitions {_spans(existing)}, not {unknown}",
                "--partitions",
            )
        tps = [TopicPartition(request.topic, p) for p in wanted]
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        from_ms = request.start.ms if isinstance(request.start, TimeBound) else None
        to_ms = request.end.ms if isinstance(request.end, TimeBound) else None
        starts: dict[TopicPartition, int] = {}
        if isinstance(request.start, OffsetBound):
            starts = {tp: request.start.offset for tp in tps}
        else:
            assert from_ms is not None
            found = await consumer.offsets_for_times(dict.fromkeys(tps, from_ms))
            # No record at or after the time: nothing to replay there.
            starts = {tp: _offset_or(found.get(tp), ends[tp]) for tp in tps}
        partitions: dict[int, PartitionState] = {}
        for tp in tps:
            start = max(starts[tp], begins[tp])
            if starts[tp] < begins[tp] and isinstance(request.start, OffsetBound):
                log.warning(
                    "replay_start_trimmed",
                    partition=tp.partition,
                    requested=starts[tp],
                    earliest=begins[tp],
                )
            stop = ends[tp]
            if isinstance(request.end, OffsetBound):
                stop = min(stop, request.end.offset + 1)
            start = min(start, stop)
            partitions[tp.partition] = PartitionState(start=start, stop=stop, watermark=start)
        return Checkpoint(
            path=request.checkpoint_path,
            replay_id=request.replay_id,
            topic=request.topic,
            from_text=str(request.start),
            to_text=str(request.end),
            from_ms=from_ms,
            to_ms=to_ms,
            partitions=partitions,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    async def _ask_stop_candidates(
        self, consumer: ConsumerClient, to_ms: int, todo: Mapping[int, PartitionState]
    ) -> None:
        """Where the broker says the records after ``to_ms`` begin; used only once the record
        there confirms it (see the module docstring)."""
        tps = {TopicPartition(self.topic, p): st for p, st in todo.items()}
        found = await consumer.offsets_for_times(dict.fromkeys(tps, to_ms + 1))
        for tp, st in tps.items():
            answer = found.get(tp)
            if answer is not None and st.watermark <= answer.offset < st.stop:
                self._stop_candidates[tp.partition] = answer.offset

    async def stop(self) -> None:
        """Write the checkpoint (fsynced) and disconnect; never commits to any group."""
        consumer, self._consumer = self._consumer, None
        self._closing = True
        self._wakeup.set()
        if consumer is None:
            return
        self._save(sync=True)
        try:
            await consumer.stop()
        except KafkaError as exc:
            log.warning("kafka_consumer_stop_failed", error=str(exc)[:300])
        checkpoint = self.checkpoint
        if checkpoint is not None:
            log.info(
                "replay_source_stopped",
                replay_id=checkpoint.replay_id,
                complete=checkpoint.complete,
                watermarks={str(p): s.watermark for p, s in sorted(checkpoint.partitions.items())},
            )

    # -- the Source seam -----------------------------------------------------------------

    async def records(self) -> AsyncIterator[Record]:
        consumer = self._consumer
        checkpoint = self.checkpoint
        if consumer is None or checkpoint is None:
            raise TransportError("source not started")
        while not self._closing:
            if self._buffer:
                if self._paused:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                record = self._admit(self._buffer.popleft())
                if record is None:
                    continue
                if self._bucket is not None:
                    await self._bucket.take()
                    if self._closing:
                        return
                checkpoint.handed(record.partition.partition, record.offset)
                yield record
                continue
            await self._note_positions(consumer, checkpoint)
            if self._read_through >= set(checkpoint.partitions):
                self._save()
                log.info("replay_input_read", replay_id=checkpoint.replay_id)
                return
            if checkpoint.dirty and time.monotonic() - self._last_save > _SAVE_EVERY_S:
                self._save()
            try:
                batch = await consumer.getmany(timeout_ms=_POLL_MS)
            except KafkaError as exc:
                error = self._error("poll", exc)
                if isinstance(error, TransportError):
                    log.warning("kafka_poll_failed", error=repr(exc)[:300], transient=True)
                    await asyncio.sleep(0.5)
                    continue
                # Permanent; even a record too large to fetch is no record to dead-letter.
                raise ServiceRefused(str(error), component=_COMPONENT) from None
            for tp in sorted(batch):
                self._buffer.extend(batch[tp])

    def _admit(self, message: KafkaMessage) -> Record | None:
        """The record to hand out, or None when it is past the range, finished before or
        outside the time bounds."""
        checkpoint = self.checkpoint
        assert checkpoint is not None
        p, offset = message.partition, message.offset
        state = checkpoint.partitions[p]
        if p in self._read_through:
            return None
        candidate = self._stop_candidates.get(p)
        if candidate is not None and offset >= candidate:
            del self._stop_candidates[p]
            if checkpoint.to_ms is not None and message.timestamp > checkpoint.to_ms:
                checkpoint.end_at(p, offset)  # the broker's answer holds: the range ends here
            else:
                log.info("replay_time_index_ignored", partition=p, offset=candidate)
        if offset >= state.stop:
            self._finish_reading(p)
            return None
        if checkpoint.is_finished(p, offset):
            checkpoint.passed(p, offset)
            self.skipped_done += 1
            return None
        if not self._in_time(message.timestamp):
            checkpoint.passed(p, offset)
            self.filtered += 1
            return None
        return Record(
            value=message.value if message.value is not None else b"",
            partition=Partition(message.topic, p),
            offset=offset,
            key=message.key,
            timestamp_ms=message.timestamp,
            headers=tuple((name, bytes(value or b"")) for name, value in message.headers),
        )

    def _error(
        self, what: str, exc: BaseException
    ) -> TransportError | RecordRejected | ServiceRefused:
        return kafka_error(
            what, exc, component=_COMPONENT, brokers=self._settings.bootstrap_servers
        )

    def _in_time(self, timestamp: int | None) -> bool:
        checkpoint = self.checkpoint
        assert checkpoint is not None
        if checkpoint.from_ms is None and checkpoint.to_ms is None:
            return True
        if timestamp is None or timestamp < 0:
            return False  # a record without a time cannot be shown to lie inside the bounds
        if checkpoint.from_ms is not None and timestamp < checkpoint.from_ms:
            return False
        return checkpoint.to_ms is None or timestamp <= checkpoint.to_ms

    async def _note_positions(self, consumer: ConsumerClient, checkpoint: Checkpoint) -> None:
        """With the buffer empty, offsets below each position that never came are no records
        (gaps, transaction markers); a partition whose position reached ``stop`` is read."""
        for tp in list(consumer.assignment()):
            p = tp.partition
            if p in self._read_through:
                continue
            position = await consumer.position(tp)
            state = checkpoint.partitions[p]
            checkpoint.read_past(p, min(position, state.stop))
            if position >= state.stop:
                self._finish_reading(p)

    def _finish_reading(self, p: int) -> None:
        if p in self._read_through:
            return
        self._read_through.add(p)
        tp = TopicPartition(self.topic, p)
        with contextlib.suppress(Exception):  # only stops prefetching
            if self._consumer is not None:
                self._consumer.pause(tp)
        log.info("replay_partition_read", partition=p)

    def finished(self, record: Record) -> None:
        checkpoint = self.checkpoint
        if checkpoint is None:
            return
        checkpoint.finished(record.partition.partition, record.offset)
        self._save()  # at once: a kill after this cannot make the event run again

    async def commit(self, positions: Mapping[Partition, int]) -> None:
        """Nothing is committed to Kafka (no group); the checkpoint is written instead."""
        if self.checkpoint is not None and self.checkpoint.dirty:
            self._save()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._wakeup.set()

    def close_input(self) -> None:
        self._closing = True
        self._wakeup.set()

    @property
    def input_size(self) -> int | None:
        if self.checkpoint is None:
            return None
        return sum(s.span for s in self.checkpoint.partitions.values())

    def progress(self) -> list[PartitionProgress]:
        """Each partition's progress now."""
        if self.checkpoint is None:
            return []
        return [
            PartitionProgress(p, s.start, s.stop, s.watermark, s.finished_count, s.passed_count)
            for p, s in sorted(self.checkpoint.partitions.items())
        ]

    def _save(self, *, sync: bool = False) -> None:
        checkpoint = self.checkpoint
        if checkpoint is None:
            return
        try:
            checkpoint.save(sync=sync)
        except OSError as exc:  # the replay goes on; a resume would redo more (at least once)
            log.warning("replay_checkpoint_write_failed", error=str(exc)[:300])
        self._last_save = time.monotonic()


def _spans(partitions: Sequence[int]) -> str:
    if not partitions:
        return "none"
    if list(partitions) == list(range(partitions[0], partitions[-1] + 1)):
        return f"{partitions[0]}-{partitions[-1]}" if len(partitions) > 1 else str(partitions[0])
    return ",".join(str(p) for p in partitions)


def _offset_or(found: OffsetTime | None, default: int) -> int:
    """The offset ``offsets_for_times`` found, or ``default`` where no record is that late."""
    return default if found is None else found.offset
