"""A progress line on stderr for interactive runs, with the log records above it."""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from streamproc.processor import Outcome


class LogStream:
    """The stream log records are written to: the current ``sys.stderr``, or, while a
    progress bar is shown (:meth:`attach`), that bar's console.

    Through the console every record is printed whole, on its own lines above the bar (rich
    moves the bar down), and soft-wrapped by the terminal rather than cut by rich at the
    console width. Records come from several threads; a lock keeps their lines apart.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._console: Console | None = None
        self._partial = ""

    def attach(self, console: Console | None) -> None:
        """Print through ``console`` from now on (None: back to ``sys.stderr``)."""
        with self._lock:
            self._flush_partial()
            self._console = console

    def write(self, text: str) -> int:
        with self._lock:
            if self._console is None:
                return sys.stderr.write(text)
            *lines, self._partial = (self._partial + text).split("\n")
            for line in lines:
                self._console.print(Text.from_ansi(line), soft_wrap=True, highlight=False)
            return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._console is None:
                sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()

    def _flush_partial(self) -> None:
        if self._partial and self._console is not None:
            self._console.print(Text.from_ansi(self._partial), soft_wrap=True, highlight=False)
        self._partial = ""


class ProgressDisplay:
    """Processor observer that draws records done / total and outcome counts; log records
    written to ``logs`` meanwhile are printed above the bar."""

    def __init__(self, total: int | None, logs: LogStream | None = None) -> None:
        self._logs = logs
        self._counts = dict.fromkeys(Outcome, 0)
        self._progress = Progress(
            TextColumn("[bold]streamproc"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            redirect_stderr=True,
            redirect_stdout=False,
        )
        self._task: TaskID = self._progress.add_task("events", total=total, detail="")

    def __enter__(self) -> Self:
        self._progress.start()
        if self._logs is not None:
            self._logs.attach(self._progress.console)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._logs is not None:
            self._logs.attach(None)
        self._progress.stop()

    def record_received(self) -> None:
        return None

    def record_finished(self, outcome: Outcome, seconds: float) -> None:
        self._counts[outcome] += 1
        detail = " ".join(f"{k.value}={v}" for k, v in self._counts.items() if v)
        self._progress.update(self._task, advance=1, detail=detail)
