"""The embedded ledger opens safely when several processes of one host start on one file."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from streamproc.errors import ServiceRefused
from streamproc.ledger import sqlite as ledger_sqlite
from streamproc.ledger.base import LedgerEntry
from streamproc.ledger.sqlite import SqliteLedger


def _entry(key: str) -> LedgerEntry:
    return LedgerEntry(
        key=key, payload_hash="h", kind="result", body="{}", sink="s", recorded_at=time.time()
    )


def _start_and_claim(path: str, key: str) -> str:
    async def main() -> str:
        ledger = SqliteLedger(Path(path), ttl_s=3600)
        await ledger.start()
        try:
            return (await ledger.claim(_entry(key))).key
        finally:
            await ledger.stop()

    return asyncio.run(main())


def _open_in_child(path: str, barrier: Any, out: Any) -> None:
    barrier.wait()
    try:
        SqliteLedger(Path(path), ttl_s=3600)._open().close()
        out.put("ok")
    except BaseException as exc:  # reported to the test, which fails on it
        out.put(f"{type(exc).__name__}: {exc}")


def test_workers_starting_together_on_a_new_file_all_open_it(tmp_path: Path) -> None:
    """Three processes switch one new file to WAL at the same instant, many times over.

    Without the retry about one round in thirty failed here (of 120 rounds, 4 to 10) with "database is locked"
    (SQLite refuses the second journal-mode switch at once, without its busy handler).
    """
    ctx = multiprocessing.get_context("fork")  # children start at once: the race is real
    failures: list[str] = []
    for r in range(120):
        path = str(tmp_path / f"ledger-{r}.sqlite3")
        barrier = ctx.Barrier(3)
        out = ctx.Queue()
        procs = [ctx.Process(target=_open_in_child, args=(path, barrier, out)) for _ in range(3)]
        for p in procs:
            p.start()
        failures += [got for got in (out.get(timeout=60) for _ in procs) if got != "ok"]
        for p in procs:
            p.join(timeout=30)
    assert failures == []
    with sqlite3.connect(tmp_path / "ledger-0.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_two_ledgers_on_one_file_see_each_others_answers(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite3")
    assert _start_and_claim(path, "a") == "a"
    assert _start_and_claim(path, "b") == "b"
    with sqlite3.connect(path) as db:
        assert sorted(k for (k,) in db.execute("SELECT key FROM answers")) == ["a", "b"]


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
    monkeypatch.setattr(ledger_sqlite, "OPEN_WAIT_S", 0.3)
    path = tmp_path / "ledger.sqlite3"
    held = threading.Event()
    holder = threading.Thread(target=_hold_exclusive, args=(path, 1.5, held))
    holder.start()
    held.wait(5)
    try:
        started = time.monotonic()
        with pytest.raises(
            ServiceRefused, match=r"cannot open the result ledger .*ledger\.sqlite3"
        ):
            _start_and_claim(str(path), "k")
        assert time.monotonic() - started < 1.2  # bounded, not the holder's 1.5 s
    finally:
        holder.join()


def test_a_file_that_is_not_a_database_refuses_the_start(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ServiceRefused, match="cannot open the result ledger"):
        _start_and_claim(str(path), "k")
