"""The embedded ledger opens safely when several processes of one host start on one file."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from streamproc.errors import ServiceRefused
from streamproc.ledger import sqlite as ledger_sqlite
from streamproc.ledger.base import LedgerEntry
from streamproc.ledger.sqlite import SqliteLedger


def _entry(key: str) -> LedgerEntry:
    return LedgerEntry(
        key=key, payload_hash="h", kind="result", body="{}", sink="s", recorded_at=time.time()
    )


def _start_and_claim(path: str, key: str, go: threading.Event | None = None) -> str:
    async def main() -> str:
        ledger = SqliteLedger(Path(path), ttl_s=3600)
        await ledger.start()
        try:
            return (await ledger.claim(_entry(key))).key
        finally:
            await ledger.stop()

    return asyncio.run(main())


def _worker(path: str, key: str, barrier: multiprocessing.synchronize.Barrier, out: object) -> None:
    barrier.wait()
    try:
        out.put((key, _start_and_claim(path, key)))  # type: ignore[attr-defined]
    except BaseException as exc:  # reported to the test, which fails on it
        out.put((key, f"error: {exc}"))  # type: ignore[attr-defined]


def test_workers_starting_together_on_a_new_file_all_open_it(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    path = str(tmp_path / "ledger.sqlite3")
    n = 8
    rounds = 3
    for r in range(rounds):  # each round on a new file: the WAL switch is where they race
        path = str(tmp_path / f"ledger-{r}.sqlite3")
        barrier = ctx.Barrier(n)
        out = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(path, f"k{i}", barrier, out)) for i in range(n)]
        for p in procs:
            p.start()
        got = dict(out.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(timeout=30)
        assert got == {f"k{i}": f"k{i}" for i in range(n)}
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("SELECT count(*) FROM answers").fetchone()[0] == n


def _hold_exclusive(path: Path, seconds: float, held: threading.Event) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")  # a rollback-journal file: the open must switch it
    db.execute("BEGIN EXCLUSIVE")
    held.set()
    time.sleep(seconds)
    db.execute("COMMIT")
    db.close()


def test_a_start_waits_for_a_lock_that_is_released(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    held = threading.Event()
    holder = threading.Thread(target=_hold_exclusive, args=(path, 1.0, held))
    holder.start()
    held.wait(5)
    try:
        assert _start_and_claim(str(path), "k") == "k"
    finally:
        holder.join()


def test_a_lock_that_outlasts_the_wait_refuses_the_start_with_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_sqlite, "OPEN_WAIT_S", 0.5)
    path = tmp_path / "ledger.sqlite3"
    held = threading.Event()
    holder = threading.Thread(target=_hold_exclusive, args=(path, 3.0, held))
    holder.start()
    held.wait(5)
    try:
        started = time.monotonic()
        with pytest.raises(
            ServiceRefused, match=r"cannot open the result ledger .*ledger\.sqlite3"
        ):
            _start_and_claim(str(path), "k")
        assert time.monotonic() - started < 2.5  # bounded, not the holder's 3 s
    finally:
        holder.join()


def test_a_file_that_is_not_a_database_refuses_the_start(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ServiceRefused, match="cannot open the result ledger"):
        _start_and_claim(str(path), "k")
