"""What a command costs to start: commands that need no model import none of the model
libraries, and an empty input file is answered without loading a model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "diffusers", "transformers", "sentence_transformers", "spacy", "faiss")

PROBE = """
import json, sys
from click.testing import CliRunner
from streamproc.cli import main
result = CliRunner().invoke(main, json.loads(sys.argv[1]))
heavy = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
print(json.dumps({"code": result.exit_code, "output": result.output, "heavy": heavy}))
"""


def invoke_in_a_fresh_interpreter(args: list[str], cwd: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        cwd=cwd,
        capture_output=True,
        check=True,
        timeout=120,
    )
    outcome: dict[str, object] = json.loads(proc.stdout.decode().splitlines()[-1])
    return outcome


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["replay", "--help"],
        ["config", "show"],
        ["gateway", "--help"],
        ["api-key", "create", "--tenant", "acme"],
    ],
)
def test_commands_that_need_no_model_import_no_model_library(
    args: list[str], tmp_path: Path
) -> None:
    outcome = invoke_in_a_fresh_interpreter(args, tmp_path)
    assert outcome["code"] == 0, outcome["output"]
    assert outcome["heavy"] == []


def test_an_empty_input_file_is_answered_at_once_without_a_model(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")  # blank lines are no records
    outcome = invoke_in_a_fresh_interpreter(
        ["run", "-i", str(empty), "--no-progress", "--log-format", "json"], tmp_path
    )
    assert outcome["code"] == 0, outcome["output"]
    assert "streamproc: 0 events: 0 results, 0 dead letters |" in str(outcome["output"])
    assert outcome["heavy"] == []
    # The outputs exist, as after any run, and hold nothing.
    out = tmp_path / "streamproc-out"
    assert (out / "results.jsonl").read_text() == (out / "dead-letters.jsonl").read_text() == ""
