"""The embedded transport: prompt events from a JSONL file or stdin, answers to JSONL files.

Each input line is one record of partition 0 of a "topic" named after the file (``stdin`` for
standard input); its offset is the 0-based line number. Blank lines are skipped. A line longer
than ``max_record_bytes`` is cut there and flagged, so it becomes a dead letter instead of
exhausting memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import fcntl
import io
import sys
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TextIO

from streamproc.bus.base import Partition, Record, Sink, Source
from streamproc.errors import ConfigError, TransportError
from streamproc.events import DeadLetter, VideoResult
from streamproc.resource import AsyncResource
from streamproc.settings import MAX_RECORD_BYTES

_EOF = None


class JsonlSource(AsyncResource, Source):
    """Reads prompt records, one JSON document per line, from a file or ``-`` (stdin)."""

    def __init__(self, path: str, *, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._path = path
        self._max = max_record_bytes
        topic = "stdin" if path == "-" else Path(path).name
        self.partition = Partition(topic, 0)
        self._queue: asyncio.Queue[list[tuple[int, bytes, bool]] | None] | None = None
        self._thread: threading.Thread | None = None
        self._stream: IO[bytes] | None = None
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._closing = False
        self._committed: dict[Partition, int] = {}
        self._size: int | None = None
        self._stdin = False

    async def start(self) -> None:
        if self._thread is not None:
            return
        if self._path == "-":
            # Our own unbuffered-by-Python reader on fd 0, not sys.stdin.buffer: a daemon
            # thread blocked in readline holds its reader's lock, and the interpreter takes
            # sys.stdin.buffer's lock at shutdown (a fatal error if a thread holds it).
            self._stream = io.BufferedReader(io.FileIO(sys.stdin.fileno(), closefd=False))
            self._stdin = True
            batch = 1  # interactive: hand over every line as soon as it is typed
        else:
            try:
                self._stream = await asyncio.to_thread(open, self._path, "rb")
            except OSError as exc:
                raise ConfigError(f"cannot open input {self._path}: {exc.strerror}") from None
            self._size = await asyncio.to_thread(_count_lines, self._path)
            batch = 256
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=8)
        # A daemon thread, not the default executor: a read blocked on stdin must not keep the
        # process alive at exit.
        self._thread = threading.Thread(
            target=self._read_lines,
            args=(loop, self._stream, batch),
            daemon=True,
            name="streamproc-input",
        )
        self._thread.start()

    def _read_lines(self, loop: asyncio.AbstractEventLoop, stream: IO[bytes], batch: int) -> None:
        assert self._queue is not None
        queue = self._queue

        def hand_over(item: list[tuple[int, bytes, bool]] | None) -> bool:
            # False once the source is closing or its loop is gone: the thread then ends
            # quietly (no un-awaited coroutine, no exception escaping the thread).
            if self._closing or loop.is_closed():
                return False
            put = queue.put(item)
            try:
                future = asyncio.run_coroutine_threadsafe(put, loop)
            except RuntimeError:
                put.close()
                return False
            try:
                future.result()
            except (concurrent.futures.CancelledError, RuntimeError):
                return False
            return True

        offset = 0
        chunk: list[tuple[int, bytes, bool]] = []
        try:
            while not self._closing:
                line = stream.readline(self._max + 1)
                if not line:
                    break
                truncated = len(line) > self._max and not line.endswith(b"\n")
                if truncated:
                    line = line[: self._max]
                    while True:  # skip the rest of the over-long line
                        rest = stream.readline(1 << 16)
                        if not rest or rest.endswith(b"\n"):
                            break
                if line.strip() or truncated:
                    chunk.append((offset, line.rstrip(b"\r\n"), truncated))
                offset += 1
                if len(chunk) >= batch:
                    if not hand_over(chunk):
                        return
                    chunk = []
        except (OSError, ValueError):
            return  # stream closed under us during shutdown
        if chunk and not hand_over(chunk):
            return
        hand_over(_EOF)

    async def records(self) -> AsyncIterator[Record]:
        if self._queue is None:
            raise TransportError("source not started")
        while not self._closing:
            chunk = await self._queue.get()
            if chunk is _EOF:
                return
            for offset, value, truncated in chunk:
                await self._resumed.wait()
                if self._closing:
                    return
                yield Record(
                    value=value,
                    partition=self.partition,
                    offset=offset,
                    cut_at=self._max if truncated else None,
                )

    async def commit(self, positions: Mapping[Partition, int]) -> None:
        # A file has nothing to commit to; the positions are kept so runs can report them.
        self._committed.update(positions)

    @property
    def committed(self) -> dict[Partition, int]:
        """Positions committed so far."""
        return dict(self._committed)

    def pause(self) -> None:
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()

    def close_input(self) -> None:
        self._closing = True
        self._resumed.set()

    @property
    def input_size(self) -> int | None:
        return self._size

    async def stop(self) -> None:
        self._closing = True
        self._resumed.set()
        if self._queue is not None:
            while not self._queue.empty():  # unblock a reader waiting for queue space
                self._queue.get_nowait()
        if self._stream is not None and not self._stdin:
            self._stream.close()
        self._stream = None
        thread = self._thread
        if thread is not None and thread.is_alive():
            # A reader about to see the end of its input (stdin at EOF) finishes now; one
            # blocked on an open terminal stays behind as a daemon thread.
            await asyncio.to_thread(thread.join, 0.5)


def _count_lines(path: str) -> int:
    count = 0
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                count += 1
    return count


class JsonlSink(AsyncResource, Sink):
    """Appends results and dead letters as JSON lines to two files (or stdout for ``-``)."""

    def __init__(self, results: str, dead_letters: str) -> None:
        self._paths = (results, dead_letters)
        self._results: TextIO | None = None
        self._dead: TextIO | None = None
        self.published = 0
        self.dead_lettered = 0

    @property
    def destination(self) -> str:
        """The results file, as an absolute path (``stdout`` for ``-``)."""
        path = self._paths[0]
        return "stdout" if path == "-" else f"file:{Path(path).resolve()}"

    async def start(self) -> None:
        """Open both files for appending, each locked for this process: two runs appending
        to one output at once would both answer the records neither had answered yet."""
        if self._results is not None:
            return
        results = _open_out(self._paths[0])
        try:
            dead = _open_out(self._paths[1]) if self._paths[1] != self._paths[0] else None
        except ConfigError:
            _close(results)
            raise
        self._results, self._dead = results, dead

    async def publish(
        self,
        result: VideoResult,
        key: bytes | None,
        *,
        input_headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        self._write(self._results, result.model_dump_json())
        self.published += 1

    async def dead_letter(
        self,
        letter: DeadLetter,
        key: bytes | None,
        *,
        input_headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        self._write(self._dead or self._results, letter.model_dump_json())
        self.dead_lettered += 1

    @staticmethod
    def _write(stream: TextIO | None, line: str) -> None:
        if stream is None:
            raise TransportError("sink not started")
        try:
            stream.write(line + "\n")
            stream.flush()
        except OSError as exc:
            raise TransportError(f"cannot write output: {exc.strerror}") from exc

    async def stop(self) -> None:
        for stream in (self._results, self._dead):
            if stream is not None:
                _close(stream)
        self._results = self._dead = None


def _open_out(path: str) -> TextIO:
    """``path`` opened for appending and locked (released when closed); stdout for ``-``."""
    if path == "-":
        return sys.stdout
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stream = open(target, "a", encoding="utf-8")  # noqa: SIM115  (closed by stop())
    except OSError as exc:
        raise ConfigError(f"cannot open output {path}: {exc.strerror}") from None
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        stream.close()
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise ConfigError(
                f"output {path} is being written by another streamproc run; wait until it "
                "has stopped (a stop after Ctrl-C finishes the batch in hand first), or give "
                "this run other outputs (--results, --dead-letters)"
            ) from None
        # outcome: a file system without locks (some network mounts) is written unlocked.
        return open(target, "a", encoding="utf-8")
    return stream


def _close(stream: TextIO) -> None:
    if stream is not sys.stdout:
        stream.close()
