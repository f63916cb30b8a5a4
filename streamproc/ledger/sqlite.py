"""The embedded ledger: one SQLite file on local disk (one worker, or workers of one host).

Each call runs on a worker thread (SQLite blocks). The file is in WAL mode with a busy
timeout, so two processes of one host may share it; entries older than the TTL are dropped
at start and then hourly.

Opening is where processes meet: switching a new file to WAL takes an exclusive lock, and
SQLite answers "database is locked" at once (without its busy handler) to a second process
doing the same, or reading while the first recovers the log. Workers started together on one
host would then refuse to start. So a locked or busy open is tried again, with jittered
backoff, for up to :data:`OPEN_WAIT_S`; any other error, or a lock that outlasts it, refuses
the start with the file's path.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import structlog
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from streamproc.errors import ServiceRefused, TransientError
from streamproc.ledger.base import LedgerEntry
from streamproc.resource import AsyncResource

log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    payload_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    sink TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
)
"""
_COLUMNS = "key, payload_hash, kind, body, sink, recorded_at, published"
_SWEEP_S = 3600.0
#: How long a start waits for other processes that hold the file while opening it.
OPEN_WAIT_S = 30.0


class SqliteLedger(AsyncResource):
    """Answers in ``path`` (created with its folder); entries live ``ttl_s`` seconds."""

    def __init__(self, path: Path, *, ttl_s: float) -> None:
        self._path = path
        self._ttl_s = ttl_s
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._swept = 0.0

    @property
    def shared(self) -> bool:
        return False

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self._path

    async def start(self) -> None:
        if self._db is None:
            self._db = await asyncio.to_thread(self._open)
            await self._sweep()

    def _open(self) -> sqlite3.Connection:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            for attempt in Retrying(
                retry=retry_if_exception(_locked),
                stop=stop_after_delay(OPEN_WAIT_S),
                wait=wait_random_exponential(multiplier=0.02, max=1.0),
                reraise=True,
            ):
                with attempt:
                    return self._connect()
        except (OSError, sqlite3.Error) as exc:
            raise ServiceRefused(
                f"cannot open the result ledger {self._path}: {exc}", component="ledger"
            ) from None
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self._path, timeout=OPEN_WAIT_S, isolation_level=None, check_same_thread=False
        )
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    async def stop(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:
                await asyncio.to_thread(db.close)

    async def get(self, key: str) -> LedgerEntry | None:
        row = await self._run(
            f"SELECT {_COLUMNS} FROM answers WHERE key = ? AND recorded_at >= ?",
            (key, time.time() - self._ttl_s),
        )
        return _entry(row) if row is not None else None

    async def claim(self, entry: LedgerEntry, *, replace: bool = False) -> LedgerEntry:
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        await self._maybe_sweep()
        row = await self._run(
            f"{verb} INTO answers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0)",
            (entry.key, entry.payload_hash, entry.kind, entry.body, entry.sink, entry.recorded_at),
            then=(f"SELECT {_COLUMNS} FROM answers WHERE key = ?", (entry.key,)),
        )
        return _entry(row) if row is not None else entry

    async def mark_published(self, key: str) -> None:
        await self._run("UPDATE answers SET published = 1 WHERE key = ?", (key,))

    async def _maybe_sweep(self) -> None:
        if time.monotonic() - self._swept > _SWEEP_S:
            await self._sweep()

    async def _sweep(self) -> None:
        self._swept = time.monotonic()
        await self._run("DELETE FROM answers WHERE recorded_at < ?", (time.time() - self._ttl_s,))

    async def _run(
        self,
        sql: str,
        args: tuple[object, ...],
        *,
        then: tuple[str, tuple[object, ...]] | None = None,
    ) -> tuple[object, ...] | None:
        db = self._db
        if db is None:
            raise TransientError("the result ledger is not started")

        def work() -> tuple[object, ...] | None:
            cursor = db.execute(sql, args)
            if then is not None:
                cursor = db.execute(*then)
            row = cursor.fetchone()
            return tuple(row) if row is not None else None

        async with self._lock:
            try:
                return await asyncio.to_thread(work)
            except sqlite3.OperationalError as exc:  # locked, disk full, I/O: may heal
                raise TransientError(f"result ledger {self._path}: {exc}") from None
            except sqlite3.DatabaseError as exc:  # corrupt file, not a database
                raise ServiceRefused(
                    f"result ledger {self._path} is unusable: {exc}", component="ledger"
                ) from None


def _locked(exc: BaseException) -> bool:
    """Whether ``exc`` is another process holding the file (worth waiting for)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _entry(row: tuple[object, ...]) -> LedgerEntry:
    key, payload_hash, kind, body, sink, recorded_at, published = row
    return LedgerEntry(
        key=str(key),
        payload_hash=str(payload_hash),
        kind="result" if kind == "result" else "dead_letter",
        body=str(body),
        sink=str(sink),
        recorded_at=float(recorded_at),  # type: ignore[arg-type]
        published=bool(published),
    )
