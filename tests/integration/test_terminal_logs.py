"""`streamproc run` in a narrow terminal with its progress bar: every log record is printed
whole, on lines of its own above the bar, never across it. A real pseudo-terminal, read back
through a small screen model (carriage return, line feed, erase line, cursor up)."""

from __future__ import annotations

import fcntl
import json
import re
import struct
import termios
from pathlib import Path

import pytest

from tests.helpers import event
from tests.integration.test_terminal import Terminal, lines_of
from tests.integration.workers import summary_of

pytestmark = pytest.mark.slow

BAR = "━"
_CONTROL = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\r|\n|[^\x1b\r\n]+")


def screen(output: str) -> list[str]:
    """The logical lines a terminal shows after ``output`` (a line the terminal wrapped
    counts as one), with colours dropped."""
    lines: list[str] = [""]
    row = col = 0
    for match in _CONTROL.finditer(output):
        text = match.group(0)
        if text == "\r":
            col = 0
        elif text == "\n":
            row += 1
            if row == len(lines):
                lines.append("")
        elif match.group(2) == "K":  # erase the line (rich: 2K)
            lines[row] = ""
        elif match.group(2) == "A":  # cursor up
            row = max(row - int(match.group(1) or 1), 0)
        elif match.group(2) is None:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + text + line[col + len(text) :]
            col += len(text)
    return lines


def test_screen_model_reads_an_overwritten_bar_as_one_line() -> None:
    assert screen("bar 1/2\r\x1b[2Klog line\r\nbar 2/2\r\x1b[2Kbar 2/2\r\n") == [
        "log line",
        "bar 2/2",
        "",
    ]


def test_log_records_print_whole_above_the_progress_bar(tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(json.dumps(event(f"t{i}", f"a tram at dawn, take {i}")) + "\n"
                              for i in range(6)))  # fmt: skip
    results = tmp_path / "results.jsonl"
    args = ["run", "-i", str(source), "--results", str(results), "--cache-backend", "none"]
    args += ["--dead-letters", str(tmp_path / "dl.jsonl"), "--store-dir", str(tmp_path / "s")]
    terminal = Terminal(args, tmp_path)
    try:
        # Narrow: records are longer than a line of it (the terminal wraps them, not rich).
        fcntl.ioctl(terminal.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        status = terminal.wait()
    finally:
        terminal.close()
    assert status == 0, terminal.output[-3000:]
    assert summary_of(terminal.output).results == lines_of(results) == 6
    shown = screen(terminal.output)
    records = [line for line in shown if "event_generated" in line]
    assert len(records) == 6, "\n".join(shown)
    for line in records:  # whole: from its time stamp to its last field, on one line
        assert re.match(r"^\d{4}-\d\d-\d\dT", line) and "topic=" in line, line
    mixed = [line for line in shown if BAR in line and ("[info" in line or "topic=" in line)]
    assert mixed == [], "\n".join(mixed)
    bars = [i for i, line in enumerate(shown) if BAR in line]
    assert bars and all(i > shown.index(records[-1]) for i in bars[-1:])  # the bar stays below
