"""`streamproc run` as a real process: its environment, its summary line, its children, and
a Kafka worker process that logs JSON to a file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import Patience, eventually
from tests.kafka_broker import Topics

ROOT = Path(__file__).resolve().parents[2]


def streamproc_env(**extra: str) -> dict[str, str]:
    """The environment of a `streamproc` child: offline, unbuffered, this checkout's package
    first on the path whatever the caller's working directory, the tiny model on the CPU."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "STREAMPROC_GENERATION__DEVICE": "cpu",
        **extra,
    }


def streamproc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "streamproc", *args]


@dataclass(frozen=True)
class Summary:
    """The numbers of the line `streamproc run` ends with."""

    received: int
    results: int
    dead_letters: int
    abandoned: int
    #: Records a local re-run found answered in its output already.
    already_answered: int = 0

    @property
    def adds_up(self) -> bool:
        answered = self.already_answered + self.results + self.dead_letters
        return self.received == answered + self.abandoned


_SUMMARY = re.compile(
    r"streamproc: (\d+) events: (?:(\d+) already answered, )?(\d+) results(?: \([^)]*\))?, "
    r"(\d+) dead letters(?: \([^)]*\))?(?:, (\d+) abandoned)?"
)
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")


def plain(text: str) -> str:
    """``text`` without terminal escape sequences and carriage returns."""
    return _ANSI.sub("", text).replace("\r", "")


def summary_of(output: str) -> Summary:
    """The summary line of a run's output (exactly one must be there)."""
    found = _SUMMARY.findall(plain(output))
    assert len(found) == 1, f"expected one summary line, found {found}:\n{output[-3000:]}"
    received, already, results, dead, abandoned = found[0]
    return Summary(int(received), int(results), int(dead), int(abandoned or 0), int(already or 0))


def descendants(pid: int) -> dict[int, int]:
    """Every living descendant of ``pid``, with its start time (so a reused pid is not taken
    for it), from /proc."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is not None:
            children.setdefault(stat[1], []).append(int(entry))
            started[int(entry)] = stat[2]
    out: dict[int, int] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        out[child] = started[child]
        todo.extend(children.get(child, []))
    return out


def alive(pid: int, start_time: int) -> bool:
    """Whether process ``pid`` (started at ``start_time``) still runs: gone or a zombie is
    not alive."""
    stat = _stat(pid)
    return stat is not None and stat[2] == start_time and stat[0] != "Z"


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of ``pid``, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return fields[0], int(fields[1]), int(fields[19])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Worker:
    """One `python -m streamproc run --transport kafka` process, logging JSON to a file;
    ``args`` are further `run` flags (e.g. ``--cache-backend redis``)."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        topics: Topics,
        tmp_path: Path,
        *,
        args: Sequence[str] = (),
        **env: str,
    ) -> None:
        self.name = name
        self.log_path = tmp_path / f"{name}.log"
        kafka = {
            k: v for k, v in topics.settings(bootstrap).items() if k.endswith(("_ms", "_timeout"))
        }
        environment = streamproc_env(
            **{
                "STREAMPROC_COMMIT_INTERVAL_MS": "200",
                **{f"STREAMPROC_KAFKA__{k.upper()}": str(v) for k, v in kafka.items()},
                **env,
            }
        )
        command = streamproc_command(
            "run",
            "--transport",
            "kafka",
            *topics.cli_args(bootstrap),
            "--group-id",
            topics.group,
            "--no-idempotence",
            "--worker-id",
            name,
            "--store-dir",
            str(tmp_path / "store"),
            "--window-ms",
            "50",
            "--max-batch-size",
            "4",
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "--no-progress",
            *args,
        )
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=environment
            )

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self) -> str:
        return self.text()[-3000:]

    def assignment(self) -> list[int]:
        """The partitions this worker holds according to its log."""
        held: list[int] = []
        for entry in self.logs():
            if entry["event"] == "kafka_partitions_revoked":
                held = []
            elif entry["event"] == "kafka_partitions_assigned":
                held = sorted(int(p.rsplit("[", 1)[1].rstrip("]")) for p in entry["partitions"])
        return held

    def stop(self, timeout_s: float = 240) -> int:
        """SIGTERM, then the exit status (a ceiling far above a drain's need)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def worker_progress(*workers: Worker) -> Callable[[], Awaitable[object]]:
    """Progress of worker processes for :func:`~tests.helpers.eventually` (see
    :func:`progress_of`; their logs are the files they write)."""

    async def progress() -> object:
        return tuple(progress_of(w.proc.pid, w.log_path) for w in workers)

    return progress


async def wait_while_running(
    check: Callable[[], Awaitable[bool]], stall_s: float, *workers: Worker
) -> None:
    """:func:`eventually`, failing at once (with the logs) when a worker process died, and
    after ``stall_s`` seconds in which no worker made progress (see :func:`worker_progress`)."""

    def running() -> None:
        for worker in workers:
            assert worker.proc.poll() is None, f"{worker.name} exited:\n{worker.tail()}"

    def logs() -> str:
        return "\n".join(f"--- {w.name}\n{w.tail()}" for w in workers)

    await eventually(
        check, stall_s, alive=running, context=logs, progress=worker_progress(*workers)
    )


def progress_of(pid: int, *outputs: Path) -> tuple[int, tuple[int, ...]]:
    """How far process ``pid`` got: the CPU time of it and its children in whole seconds
    (it advances while the process works, however slowly a busy machine lets it), and the
    sizes of the files it writes."""
    cpu = cpu_seconds(pid) + sum(cpu_seconds(child) for child in descendants(pid))
    return int(cpu), tuple(p.stat().st_size if p.exists() else -1 for p in outputs)


def process_progress(pid: int, *outputs: Path) -> Callable[[], Awaitable[object]]:
    """:func:`progress_of` as the progress probe of :func:`~tests.helpers.eventually`."""

    async def progress() -> object:
        return progress_of(pid, *outputs)

    return progress


def run_to_end(
    command: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    input: bytes | None = None,
    stall_s: float = 90,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` to its end like :func:`subprocess.run` (output captured), failing only
    when it makes no progress (CPU time, output) for ``stall_s`` seconds: a busy machine may
    slow it down as much as it likes."""
    with tempfile.TemporaryDirectory() as scratch:
        out_path, err_path = Path(scratch) / "stdout", Path(scratch) / "stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        try:
            if input is not None:
                assert proc.stdin is not None
                proc.stdin.write(input)
                proc.stdin.close()
            patience = Patience(stall_s)
            while proc.poll() is None:
                stalled = patience.expired(progress_of(proc.pid, out_path, err_path))
                assert stalled is None, f"{command[3:5]}: {stalled}\n{err_path.read_text()[-3000:]}"
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return subprocess.CompletedProcess(
            command, proc.returncode, out_path.read_bytes(), err_path.read_bytes()
        )
