"""The Kafka source: one member of a consumer group, explicit commits, pause-and-keep-polling.

How it keeps the delivery contract (``docs/delivery.md``, ``docs/kafka.md``):

* **Commits are explicit.** Auto-commit is off; :meth:`KafkaSource.commit` commits exactly the
  positions the processor computed from its contiguous watermark, and only for partitions this
  member is assigned at that moment (a commit for a partition it lost would be refused by the
  group, and must not happen anyway).
* **Polling never stops.** A background task calls ``getmany`` every ``_POLL_S`` for as long as
  the source runs — also while the processor is paused, while it drains at shutdown and while
  the GPU works for minutes — so heartbeats flow and ``max_poll_interval_ms`` never expires.
  Back-pressure pauses the *partitions* in the consumer instead; the records already fetched
  wait in a bounded buffer (at most ``max_poll_records``) in offset order and are handed out
  after :meth:`~KafkaSource.resume`. aiokafka drops what it prefetched for a paused partition
  without moving its position, so nothing is skipped.
* **Rebalances settle before they complete.** aiokafka's classic group protocol is eager:
  before rejoining it calls ``on_partitions_revoked`` with every partition this member holds,
  and the group waits (up to ``rebalance_timeout_ms``) for it. The listener first drops the
  buffered records of those partitions (their next owner reads them again from the committed
  offset), then asks the processor to settle their in-flight events within
  ``revoke_grace_ms`` and to commit what is finished. This is the last moment such a commit
  can succeed: the member still holds its generation, and ``getmany`` is blocked until the
  new assignment arrives, so no new record of a revoked partition can slip through. If the
  member was already expelled (e.g. the broker lost its heartbeats), the commit fails with
  ``CommitFailedError``; the processor logs it and the events are processed again by the
  partition's next owner — at least once, never lost. New partitions start at their committed
  offset (``auto_offset_reset`` applies only where the group never committed).
* **Failures are classified once** (:func:`~streamproc.bus.kafka.kafka_error`). A poll
  failure that may heal (the brokers unreachable, a leader moving) is logged and polling goes
  on with backoff; a permanent one (authorisation refused, a record over the fetch size) ends
  the input: :meth:`~KafkaSource.records` raises it as :class:`ServiceRefused`. An unexpected
  exception (a bug) ends the input too, as a :class:`TransportError`. A commit raises
  :class:`TransportError` when it may succeed later (``CommitFailedError`` after a
  rebalance, a timeout) and :class:`ServiceRefused` when the group or topic is refused or a
  prompts topic no longer exists.
* **Shutdown commits, then leaves.** :meth:`~KafkaSource.close_input` stops handing out
  records but keeps polling while the processor drains and commits; :meth:`~KafkaSource.stop`
  retries a commit that failed last, then leaves the group, so the partitions move to the
  other members at once rather than after ``session_timeout_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownTopicOrPartitionError

from streamproc.bus.base import Partition, PartitionListener, Record, Source
from streamproc.bus.kafka import (
    absent_topic,
    client_options,
    fetch_options,
    kafka_error,
    partitions,
    require_topics,
    start_client,
    to_partition,
    to_topic_partition,
    topic_missing_error,
)
from streamproc.bus.kafka_clients import ConsumerClient, KafkaMessage
from streamproc.errors import PermanentError, RecordRejected, ServiceRefused, TransportError
from streamproc.metrics import Metrics
from streamproc.resource import AsyncResource
from streamproc.retry import RetryPolicy
from streamproc.settings import KafkaSettings

log = structlog.get_logger(__name__)

#: Longest wait of one poll; also how quickly a stop or a failure is noticed.
_POLL_S = 0.2
_BACKOFF_MAX_S = 5.0
_COMPONENT = "source"
#: Longest wait for the metadata request asking whether a prompts topic still exists.
_TOPIC_CHECK_S = 10.0


class KafkaSource(AsyncResource, Source):
    """Prompt records from the ``prompts_topic`` partitions assigned to this group member."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        client_id: str,
        metrics: Metrics | None = None,
        retries: RetryPolicy | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics if metrics is not None else Metrics()
        self._retries = retries or RetryPolicy.for_reconnect(_BACKOFF_MAX_S, self._metrics)
        self._unregister: Callable[[], None] | None = None
        self._client_id = client_id
        self._consumer: ConsumerClient | None = None
        self._listener: PartitionListener | None = None
        self._buffer: deque[Record] = deque()
        self._wakeup = asyncio.Event()
        self._paused = False
        self._closing = False
        self._revoking: set[Partition] = set()
        self._poller: asyncio.Task[None] | None = None
        self._failure: TransportError | ServiceRefused | None = None
        self._unacked: dict[TopicPartition, int] = {}

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, check the topics exist, join the group and start polling."""
        if self._consumer is not None:
            return
        s = self._settings
        consumer: ConsumerClient = AIOKafkaConsumer(
            **client_options(s, self._client_id),
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset=s.auto_offset_reset,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            rebalance_timeout_ms=s.rebalance_timeout_ms,
            **fetch_options(s),
        )
        await start_client(consumer, "consumer", s, component=_COMPONENT)
        try:
            require_topics(await consumer.topics(), s.prompts_topics, s.bootstrap_servers)
        except KafkaError as exc:
            await consumer.stop()
            raise self._error("metadata request", exc) from None
        except BaseException:  # outcome: the client is closed and the error re-raised
            await consumer.stop()
            raise
        consumer.subscribe(
            topics=s.prompts_topics, listener=_Rebalance(self._on_revoked, self._on_assigned)
        )
        self._consumer = consumer
        self._poller = asyncio.create_task(self._poll_loop(), name="streamproc-kafka-poll")
        self._unregister = self._metrics.add_refresher(self.refresh_metrics)
        log.info("kafka_consumer_started", topics=s.prompts_topics, group_id=s.group_id)

    async def stop(self) -> None:
        """Retry a commit that failed last, stop polling and leave the group."""
        consumer = self._consumer
        if consumer is None:
            return
        self._closing = True
        self._wakeup.set()
        if self._unregister is not None:
            self._unregister()
            self._unregister = None
        if self._unacked:
            try:
                await self.commit({to_partition(tp): o for tp, o in self._unacked.items()})
            except (TransportError, PermanentError) as exc:  # delivered again: at least once
                log.warning("final_commit_failed", error=str(exc)[:300])
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        self._consumer = None
        try:
            await consumer.stop()  # sends LeaveGroup: the partitions move on at once
        except KafkaError as exc:
            log.warning("kafka_consumer_stop_failed", error=str(exc)[:300])
        log.info("kafka_consumer_stopped")

    # -- the Source seam -----------------------------------------------------------------

    async def records(self) -> AsyncIterator[Record]:
        """The assigned partitions' records in offset order; raises :class:`ServiceRefused`
        once polling met a permanent fault (and :class:`TransportError` after a bug)."""
        if self._consumer is None:
            raise TransportError("source not started")
        while True:
            if self._failure is not None:
                raise self._failure
            if self._closing:
                return
            if self._buffer and not self._paused:
                record = self._buffer.popleft()
                if record.partition in self._revoking:
                    continue  # its partition is being handed over; the next owner reads it
                yield record
                continue
            self._wakeup.clear()
            self._apply_flow()
            await self._wakeup.wait()

    async def commit(self, positions: Mapping[Partition, int]) -> None:
        consumer = self._consumer
        if consumer is None:
            raise TransportError("source not started")
        owned = consumer.assignment()
        offsets: dict[TopicPartition, int] = {}
        for partition, position in positions.items():
            tp = to_topic_partition(partition)
            if tp in owned:
                offsets[tp] = position
            else:
                log.debug("commit_skipped_not_owned", partition=str(partition), offset=position)
        if not offsets:
            return
        try:
            await asyncio.wait_for(
                consumer.commit(offsets), timeout=self._settings.commit_timeout_ms / 1000
            )
        except (KafkaError, TimeoutError) as exc:
            self._unacked.update(offsets)
            error = self._error("commit", exc)
            if isinstance(error, TransportError) and isinstance(
                exc, UnknownTopicOrPartitionError | KafkaTimeoutError | TimeoutError
            ):
                # aiokafka retries a commit to a deleted topic until the timeout: gone for good?
                wait_s = min(self._settings.request_timeout_ms / 1000, _TOPIC_CHECK_S)
                topics = sorted({tp.topic for tp in offsets})
                gone = await absent_topic(consumer.topics, topics, wait_s)
                if gone is not None:
                    raise topic_missing_error(
                        gone, component=_COMPONENT, brokers=self._settings.bootstrap_servers
                    ) from None
            raise error from None
        for tp, position in offsets.items():
            if self._unacked.get(tp, position) <= position:
                self._unacked.pop(tp, None)

    def pause(self) -> None:
        self._paused = True
        self._apply_flow()

    def resume(self) -> None:
        self._paused = False
        self._apply_flow()
        self._wakeup.set()

    def close_input(self) -> None:
        self._closing = True
        self._apply_flow()
        self._wakeup.set()

    def set_listener(self, listener: PartitionListener) -> None:
        self._listener = listener

    @property
    def assignment(self) -> list[Partition]:
        """The partitions this member holds now."""
        return partitions(self._consumer.assignment()) if self._consumer is not None else []

    @property
    def paused_partitions(self) -> list[Partition]:
        """The partitions paused in the consumer now (back-pressure, shutdown)."""
        return partitions(self._consumer.paused()) if self._consumer is not None else []

    async def readiness(self) -> tuple[bool, str]:
        """Ready when the brokers answer a metadata request and polling has not failed."""
        consumer = self._consumer
        if consumer is None:
            return False, "consumer not started"
        if self._failure is not None:
            return False, str(self._failure)[:200]
        try:
            topics = await consumer.topics()  # a metadata request to the cluster
        except KafkaError as exc:
            return False, f"metadata request failed: {exc!r}"[:200]
        missing = [t for t in self._settings.prompts_topics if t not in topics]
        if missing:
            return False, f"kafka topic(s) {', '.join(missing)} do not exist"
        return True, f"assigned {len(consumer.assignment())} partitions"

    async def refresh_metrics(self) -> None:
        """Set the lag (high watermark - position) and high watermark of each assigned
        partition whose high watermark is known (after its first fetch)."""
        consumer = self._consumer
        if consumer is None:
            return
        lag: dict[Partition, int] = {}
        high: dict[Partition, int] = {}
        for tp in consumer.assignment():
            watermark = consumer.highwater(tp)
            if watermark is None:
                continue
            position = await consumer.position(tp)
            partition = to_partition(tp)
            high[partition] = watermark
            lag[partition] = max(0, watermark - position)
        self._metrics.set_partition(self._metrics.consumer_lag, lag)
        self._metrics.set_partition(self._metrics.high_watermark, high)

    # -- polling -------------------------------------------------------------------------

    def _apply_flow(self) -> None:
        """Pause every assigned partition while records must not flow, else resume them."""
        consumer = self._consumer
        if consumer is None:
            return
        hold = (
            self._paused
            or self._closing
            or self._failure is not None
            or len(self._buffer) >= self._settings.max_poll_records
        )
        paused = consumer.paused()
        if hold:
            todo = consumer.assignment() - paused
            if todo:
                consumer.pause(*todo)
        elif paused:
            consumer.resume(*paused)

    async def _poll_loop(self) -> None:
        while True:
            self._apply_flow()
            batch = await self._retries.call(self._poll_once, "kafka_poll")
            if batch:
                self._receive(batch)

    async def _poll_once(self) -> Mapping[TopicPartition, list[KafkaMessage]]:
        """One ``getmany``. A failure raises :class:`TransportError` so the retry policy backs
        off before the next poll: a transient fault is polled through; a permanent one (an
        authorisation refused) or a bug also ends the input (``records()`` raises it), and
        polling goes on so the drain and the final commit keep the membership."""
        consumer = self._consumer
        assert consumer is not None  # polled only between start and stop
        room = max(1, self._settings.max_poll_records - len(self._buffer))
        try:
            # Awaited directly (not wrapped in a task), so the records land in the buffer in
            # the same step as aiokafka checked they belong to the current assignment.
            return await consumer.getmany(timeout_ms=int(_POLL_S * 1000), max_records=room)
        except Exception as exc:  # outcome: re-raised as TransportError, fatal ones end the source
            error = self._error("poll", exc)
            if isinstance(error, RecordRejected):  # no record to dead-letter in a poll
                error = ServiceRefused(str(error), component=_COMPONENT)
            ends = isinstance(error, ServiceRefused) or not isinstance(exc, KafkaError)
            if ends and self._failure is None:
                self._failure = error
                self._wakeup.set()
            log.warning("kafka_poll_failed", error=repr(exc)[:300], transient=not ends)
            raise TransportError(f"kafka poll failed: {error}") from exc

    def _receive(self, batch: Mapping[TopicPartition, list[KafkaMessage]]) -> None:
        consumer = self._consumer
        assert consumer is not None
        owned = consumer.assignment()
        for tp, messages in batch.items():
            partition = to_partition(tp)
            if tp not in owned or partition in self._revoking:
                # aiokafka returns only records of the current assignment; kept as a guard.
                log.warning("kafka_records_dropped", partition=str(partition), count=len(messages))
                continue
            for m in messages:
                self._buffer.append(
                    Record(
                        value=m.value if m.value is not None else b"",
                        partition=partition,
                        offset=m.offset,
                        key=m.key,
                        timestamp_ms=m.timestamp,
                        headers=tuple((name, bytes(value or b"")) for name, value in m.headers),
                    )
                )
        self._wakeup.set()

    def _error(
        self, what: str, exc: BaseException
    ) -> TransportError | RecordRejected | ServiceRefused:
        return kafka_error(
            what, exc, component=_COMPONENT, brokers=self._settings.bootstrap_servers
        )

    # -- rebalances ----------------------------------------------------------------------

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        gone = partitions(revoked)
        if not gone:
            return
        self._revoking.update(gone)
        before = len(self._buffer)
        self._buffer = deque(r for r in self._buffer if r.partition not in self._revoking)
        log.info(
            "kafka_partitions_revoked",
            partitions=[str(p) for p in gone],
            buffered_dropped=before - len(self._buffer),
        )
        if self._listener is not None:
            try:
                await self._listener.partitions_revoked(
                    gone, grace_s=self._settings.revoke_grace_ms / 1000
                )
            except Exception:  # aiokafka would only log it; say what it broke
                # outcome: the revoked partitions' unfinished records stay uncommitted and
                # their next owner answers them; logged.
                log.exception("partitions_revoked_failed")
        for tp in revoked:
            self._unacked.pop(tp, None)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        # First thing, before any await: records of the new assignment can only arrive once
        # aiokafka has fetched their committed offsets, which it starts right before this call.
        self._revoking.clear()
        self._apply_flow()
        got = partitions(assigned)
        log.info("kafka_partitions_assigned", partitions=[str(p) for p in got])
        if self._listener is not None and got:
            try:
                await self._listener.partitions_assigned(got)
            except Exception:
                # outcome: nothing was prepared for the partitions (the listener only logs);
                # their records are read from the committed offsets as usual; logged.
                log.exception("partitions_assigned_failed")


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """aiokafka's public rebalance-listener API, forwarding both callbacks to the source."""

    def __init__(
        self,
        revoked: Callable[[set[TopicPartition]], Awaitable[None]],
        assigned: Callable[[set[TopicPartition]], Awaitable[None]],
    ) -> None:
        self._revoked = revoked
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._assigned(assigned)
