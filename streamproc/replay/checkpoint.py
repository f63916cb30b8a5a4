"""The checkpoint file of a replay: what is finished, so a killed replay can resume.

Invariant (what makes a resume safe): for every partition, every offset below ``watermark``
and every offset listed in ``done`` is *finished* — its result or dead letter was acknowledged
by the broker — or needs no work (outside the time bounds, or no record at all: a gap or a
transaction marker). The file is rewritten after such facts become true, never before, so:

* a resume skips exactly those offsets: **nothing finished before the last write is
  published again**;
* everything else in the range (handed to the processor but unfinished, or never read) is
  read again: **every event in the range is processed at least once**.

An event finished after the last write and before a kill (a window of one synchronous file
write after the broker's acknowledgement) is the only one that may be published twice; its
result is idempotent (same ``event_id``, ``result_id`` and object key).

Writes are atomic: the JSON goes to a temporary file in the same directory, which then
replaces the checkpoint with :func:`os.replace`. A killed process leaves either the old or the
new file, never half of one. Writes are not fsynced one by one (they survive the process
dying, not the machine); the final write is.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamproc.errors import ConfigError

VERSION = 1


@dataclass
class PartitionState:
    """Progress of one partition inside ``[start, stop)``."""

    start: int
    stop: int
    #: First offset not known to be finished; everything in ``[start, watermark)`` is.
    watermark: int
    #: Finished offsets at or above the watermark (events finish out of order).
    done: set[int] = field(default_factory=set)
    #: Offsets handed to the processor and not finished yet (not persisted).
    pending: set[int] = field(default_factory=set)
    #: One past the highest offset read (not persisted; starts at the watermark).
    read_to: int = 0
    #: Records handed out / finished / needing no work, in this run (not persisted).
    handed_count: int = 0
    finished_count: int = 0
    passed_count: int = 0

    def __post_init__(self) -> None:
        self.read_to = max(self.read_to, self.watermark)

    def _advance(self) -> None:
        self.watermark = max(self.watermark, min(self.pending) if self.pending else self.read_to)
        while self.watermark in self.done and self.watermark not in self.pending:
            self.watermark += 1
        self.watermark = min(max(self.watermark, self.start), max(self.stop, self.start))
        self.done = {o for o in self.done if o >= self.watermark}

    @property
    def complete(self) -> bool:
        """Every offset of the range is finished or needs no work."""
        return self.watermark >= self.stop

    @property
    def span(self) -> int:
        """Offsets in the range."""
        return max(self.stop - self.start, 0)


@dataclass
class Checkpoint:
    """Progress of one replay, kept in a JSON file (see the module docstring)."""

    path: Path | None
    replay_id: str
    topic: str
    #: The bounds as given, and the time filters they resolved to (ms since the epoch).
    from_text: str
    to_text: str
    from_ms: int | None
    to_ms: int | None
    partitions: dict[int, PartitionState]
    created_at: str
    dirty: bool = False

    # -- progress ------------------------------------------------------------------------

    def is_finished(self, partition: int, offset: int) -> bool:
        """Whether ``offset`` is known finished (a resume skips it)."""
        state = self.partitions[partition]
        return offset < state.watermark or offset in state.done

    def handed(self, partition: int, offset: int) -> None:
        """``offset`` went to the processor; unfinished until :meth:`finished`."""
        state = self.partitions[partition]
        state.pending.add(offset)
        state.read_to = max(state.read_to, offset + 1)
        state.handed_count += 1

    def finished(self, partition: int, offset: int) -> None:
        """``offset``'s outcome is durable."""
        state = self.partitions[partition]
        if offset in state.pending:
            state.pending.discard(offset)
            state.finished_count += 1
        state.done.add(offset)
        state._advance()
        self.dirty = True

    def passed(self, partition: int, offset: int) -> None:
        """``offset`` was read and needs no work (outside the time bounds, already done)."""
        state = self.partitions[partition]
        state.done.add(offset)
        state.read_to = max(state.read_to, offset + 1)
        state.passed_count += 1
        state._advance()
        self.dirty = True

    def read_past(self, partition: int, position: int) -> None:
        """The consumer's position reached ``position``: offsets below it that were never
        returned are no records (gaps, transaction markers)."""
        state = self.partitions[partition]
        if position > state.read_to:
            state.read_to = position
            state._advance()
            self.dirty = True

    def end_at(self, partition: int, stop: int) -> None:
        """The range of ``partition`` ends before ``stop`` (a time bound confirmed it)."""
        state = self.partitions[partition]
        if stop < state.stop:
            state.stop = max(stop, state.start)
            state._advance()
            self.dirty = True

    @property
    def complete(self) -> bool:
        """Every partition is complete."""
        return all(s.complete for s in self.partitions.values())

    # -- the file ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The persisted form."""
        return {
            "version": VERSION,
            "replay_id": self.replay_id,
            "topic": self.topic,
            "from": self.from_text,
            "to": self.to_text,
            "from_ms": self.from_ms,
            "to_ms": self.to_ms,
            "created_at": self.created_at,
            "complete": self.complete,
            "partitions": {
                str(p): {
                    "start": s.start,
                    "stop": s.stop,
                    "watermark": s.watermark,
                    "done": sorted(s.done),
                }
                for p, s in sorted(self.partitions.items())
            },
        }

    def save(self, *, sync: bool = False) -> None:
        """Write the file atomically (temporary file + ``os.replace``); ``sync`` also
        fsyncs it. No-op without a path."""
        if self.path is None:
            return
        data = json.dumps(self.to_json(), separators=(",", ":")).encode()
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.dirty = False

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """Read a checkpoint written by :meth:`save`; :class:`ConfigError` when unusable."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read checkpoint {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"checkpoint {path} is not JSON: {exc}") from None
        try:
            if data["version"] != VERSION:
                raise ConfigError(f"checkpoint {path} has version {data['version']}")
            partitions = {
                int(p): PartitionState(
                    start=int(s["start"]),
                    stop=int(s["stop"]),
                    watermark=int(s["watermark"]),
                    done={int(o) for o in s["done"]},
                )
                for p, s in data["partitions"].items()
            }
            return cls(
                path=path,
                replay_id=str(data["replay_id"]),
                topic=str(data["topic"]),
                from_text=str(data["from"]),
                to_text=str(data["to"]),
                from_ms=data["from_ms"],
                to_ms=data["to_ms"],
                partitions=partitions,
                created_at=str(data["created_at"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"checkpoint {path} is not a replay checkpoint ({exc!r})") from None
