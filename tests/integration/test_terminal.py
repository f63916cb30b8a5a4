"""`streamproc run` as an operator runs it: in a terminal, stopped with Ctrl-C (once: drain;
twice: abandon), or killed outright. Real processes, a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import Patience, event
from tests.integration.workers import (
    alive,
    descendants,
    progress_of,
    streamproc_command,
    streamproc_env,
    summary_of,
)

pytestmark = pytest.mark.slow

EVENTS = 400  # far more than a run gets through before the Ctrl-C (it admits 16 at a time)


def lines_of(path: Path) -> int:
    """Complete lines in ``path`` now (0 when it does not exist yet)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


class Terminal:
    """`streamproc` as the session leader of a new pseudo-terminal: what a terminal driver
    does to it (Ctrl-C signals its whole foreground process group) happens for real."""

    def __init__(self, args: list[str], cwd: Path, **env: str) -> None:
        command = streamproc_command(*args)
        environment = streamproc_env(**env)
        self.pid, self.fd = pty.fork()  # the child: setsid, the pty as controlling terminal
        if self.pid == 0:  # pragma: no cover - the child process
            try:
                os.chdir(cwd)
                os.execve(command[0], command, environment)
            finally:
                os._exit(127)  # never back into the test runner
        # Wide enough that no line of streamproc's output wraps.
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
        self._output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.status: int | None = None

    def _read(self) -> None:
        # Drained all along: a full terminal buffer would block the process writing to it.
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: every process holding the terminal is gone
                return
            if not chunk:
                return
            self._output += chunk

    @property
    def output(self) -> str:
        return bytes(self._output).decode(errors="replace")

    def type(self, keys: bytes) -> None:
        """Type ``keys`` at the terminal (``b"\\x03"``: Ctrl-C)."""
        os.write(self.fd, keys)

    def encoders_in_the_foreground(self) -> list[int]:
        """The encoder processes in the terminal's foreground process group (the group a
        Ctrl-C signals)."""
        group = os.tcgetpgrp(self.fd)
        return [
            pid for pid in descendants(self.pid) if _kind(pid) == "encoder" and _group(pid) == group
        ]

    def wait_until(self, condition: object, what: str, stall_s: float = 90) -> None:
        """Wait until ``condition()`` holds while the process runs and makes progress."""
        assert callable(condition)
        patience = Patience(stall_s)
        while not condition():
            assert self.poll() is None, f"exited {self.status} before {what}:\n{self.output}"
            stalled = patience.expired((progress_of(self.pid), len(self._output)))
            assert stalled is None, f"{what}: {stalled}\n{self.output[-3000:]}"
            time.sleep(0.1)

    def poll(self) -> int | None:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def wait(self) -> int:
        """The exit status, once the process has ended (and its output is read)."""
        self.wait_until(lambda: self.poll() is not None, "exit")
        self._reader.join(timeout=10)
        assert self.status is not None
        return self.status

    def close(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def run_args(tmp_path: Path) -> list[str]:
    source = tmp_path / "prompts.jsonl"
    source.write_text(
        "".join(
            json.dumps(event(f"t{i:03d}", f"scene {i}: a tram at dawn")) + "\n"
            for i in range(EVENTS)
        )
    )
    return [
        "run",
        "-i",
        str(source),
        "--results",
        str(tmp_path / "results.jsonl"),
        "--dead-letters",
        str(tmp_path / "dead-letters.jsonl"),
        "--store-dir",
        str(tmp_path / "store"),
        "--cache-backend",
        "none",
        "--max-in-flight",
        "16",
    ]


FORBIDDEN = ("Traceback", "KeyboardInterrupt", "BrokenProcessPool")


def test_ctrl_c_in_a_terminal_drains_the_work_in_flight_and_exits_0(tmp_path: Path) -> None:
    """One Ctrl-C at the terminal reaches the worker and its encoder processes alike (the
    whole foreground process group): the worker stops reading, finishes what it admitted,
    and exits 0 with a summary equal to the lines written and nothing abandoned; no
    traceback, no KeyboardInterrupt, no broken encoder pool."""
    results, letters = tmp_path / "results.jsonl", tmp_path / "dead-letters.jsonl"
    terminal = Terminal(run_args(tmp_path), tmp_path)
    try:
        terminal.wait_until(lambda: lines_of(results) >= 2, "the first results")
        assert terminal.encoders_in_the_foreground()  # so the Ctrl-C reaches them too
        terminal.type(b"\x03")
        status = terminal.wait()
    finally:
        terminal.close()
    output = terminal.output
    assert status == 0, output[-3000:]
    assert [word for word in FORBIDDEN if word in output] == [], output[-3000:]
    summary = summary_of(output)
    assert summary.received < EVENTS  # stopped before the input ended
    assert (summary.results, summary.dead_letters) == (lines_of(results), lines_of(letters))
    assert summary.abandoned == 0 and summary.adds_up


def test_a_second_ctrl_c_abandons_the_work_in_flight_and_exits_3(tmp_path: Path) -> None:
    """Ctrl-C twice in quick succession: the work in flight is abandoned (left uncommitted,
    to be delivered again), the exit status is 3, and the summary still adds up against the
    lines written: received = results + dead letters + abandoned."""
    results, letters = tmp_path / "results.jsonl", tmp_path / "dead-letters.jsonl"
    terminal = Terminal(run_args(tmp_path), tmp_path)
    try:
        terminal.wait_until(lambda: lines_of(results) >= 2, "the first results")
        terminal.type(b"\x03")
        time.sleep(0.1)
        terminal.type(b"\x03")
        status = terminal.wait()
    finally:
        terminal.close()
    output = terminal.output
    assert status == 3, output[-3000:]
    assert [word for word in FORBIDDEN if word in output] == [], output[-3000:]
    summary = summary_of(output)
    assert summary.abandoned > 0
    assert (summary.results, summary.dead_letters) == (lines_of(results), lines_of(letters))
    assert summary.adds_up


def test_a_killed_worker_leaves_no_process_behind(tmp_path: Path) -> None:
    """SIGKILL on a running worker (it cannot clean up): within 5 s none of its child
    processes is left running — neither the encoder processes (parent-death signal) nor
    multiprocessing's resource tracker."""
    results = tmp_path / "results.jsonl"
    proc = subprocess.Popen(
        streamproc_command(*run_args(tmp_path), "--log-format", "json", "--no-progress"),
        cwd=tmp_path,
        env=streamproc_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: dict[int, int] = {}
    try:
        patience = Patience(90)
        while lines_of(results) < 2:  # results are out: the encoder pool is up and working
            assert proc.poll() is None, f"exited {proc.returncode}"
            assert patience.expired(progress_of(proc.pid)) is None, "no results"
            time.sleep(0.1)
        children = descendants(proc.pid)
        kinds = {_kind(pid) for pid in children}
        assert {"encoder", "resource tracker"} <= kinds, kinds
        proc.kill()
        proc.wait()
        gone_by = time.monotonic() + 5
        while any(alive(*child) for child in children.items()) and time.monotonic() < gone_by:
            time.sleep(0.05)
        left = {pid: _kind(pid) for pid, started in children.items() if alive(pid, started)}
        assert left == {}
    finally:
        proc.kill()
        for pid, started in children.items():  # only what this test started, by pid
            if alive(pid, started):
                os.kill(pid, signal.SIGKILL)


def _kind(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return "gone"
    if b"resource_tracker" in command:
        return "resource tracker"
    if b"spawn_main" in command:
        return "encoder"
    return command.decode(errors="replace")[:200]


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
