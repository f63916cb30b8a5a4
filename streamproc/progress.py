"""A progress line on stderr for interactive runs."""

from __future__ import annotations

import sys
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

from streamproc.processor import Outcome


class StderrProxy:
    """A text stream that always writes to the *current* ``sys.stderr``.

    Loggers keep a reference to their stream; while a progress bar redirects stderr, log
    lines written through this proxy appear above the bar instead of through it.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


class ProgressDisplay:
    """Processor observer that draws records done / total and outcome counts."""

    def __init__(self, total: int | None) -> None:
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
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def record_received(self) -> None:
        return None

    def record_finished(self, outcome: Outcome, seconds: float) -> None:
        self._counts[outcome] += 1
        detail = " ".join(f"{k.value}={v}" for k, v in self._counts.items() if v)
        self._progress.update(self._task, advance=1, detail=detail)
