"""Status events: best effort, off the data path.

Invariant: :meth:`StatusPublisher.emit` never blocks, never raises and never waits for a
broker. Events go into a bounded buffer (``status.buffer_size``); when it is full the new
event is dropped and counted (``streamproc_status_dropped_total``). One supervised sender task
drains the buffer into a :class:`StatusSink`; a sink failure is logged, counted as dropped,
and the sender carries on. Status is therefore not part of the delivery contract: results and
dead letters are (docs/control.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Protocol, TextIO

import structlog

from streamproc.errors import ConfigError
from streamproc.events import StatusEvent
from streamproc.metrics import Metrics
from streamproc.resource import AsyncResource, Resource

log = structlog.get_logger(__name__)


class StatusSink(Resource, Protocol):
    """Where status events go. ``send`` may raise anything: the publisher counts a drop."""

    async def send(self, events: list[StatusEvent]) -> None:
        """Write ``events`` (in order); returns when they are handed over."""
        ...


class JsonlStatusSink(AsyncResource):
    """Appends status events as JSON lines to a file (``local.status``), or stderr for '-'."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._stream: TextIO | None = None

    async def start(self) -> None:
        if self._stream is not None:
            return
        if self._path == "-":
            self._stream = sys.stderr
            return
        self._stream = _open_append(Path(self._path))

    async def send(self, events: list[StatusEvent]) -> None:
        stream = self._stream
        if stream is None:
            raise RuntimeError("status sink not started")
        stream.write("".join(e.model_dump_json() + "\n" for e in events))
        stream.flush()

    async def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and stream is not sys.stderr:
            stream.close()


def _open_append(target: Path) -> TextIO:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return open(target, "a", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot open status file {target}: {exc.strerror}") from None


class StatusPublisher(AsyncResource):
    """A bounded buffer of status events and the task that sends them."""

    def __init__(self, sink: StatusSink, *, buffer_size: int, metrics: Metrics) -> None:
        self._sink = sink
        self._queue: asyncio.Queue[StatusEvent] = asyncio.Queue(maxsize=buffer_size)
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        self._failing = False

    def emit(self, event: StatusEvent) -> None:
        """Queue ``event`` for sending; drops (and counts) it when the buffer is full."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._drop(1)

    def _drop(self, count: int) -> None:
        self.dropped += count
        self._metrics.status_dropped.inc(count)

    async def start(self) -> None:
        if self._task is not None:
            return
        await self._sink.start()
        self._task = asyncio.create_task(self._send_loop(), name="streamproc-status")

    async def _send_loop(self) -> None:
        while True:
            events = [await self._queue.get()]
            while not self._queue.empty() and len(events) < 500:
                events.append(self._queue.get_nowait())
            await self._send(events)

    async def _send(self, events: list[StatusEvent]) -> None:
        try:
            await self._sink.send(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # best effort: a lost status event is counted, not fatal
            self._drop(len(events))
            if not self._failing:  # once per outage, not once per batch of events
                self._failing = True
                log.warning("status_send_failed", events=len(events), error=repr(exc)[:300])
            return
        if self._failing:
            self._failing = False
            log.info("status_send_recovered")
        self.sent += len(events)
        self._metrics.status_sent.inc(len(events))

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is buffered (for up to ``timeout_s``), then stop the sink."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        left: list[StatusEvent] = []
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        if left:
            try:
                await asyncio.wait_for(self._send(left), timeout_s)
            except TimeoutError:
                self._drop(len(left))
        await self._sink.stop()
