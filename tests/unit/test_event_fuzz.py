"""Every record ends as exactly one outcome: an event that serialises, or a dead letter that
does. Hypothesis properties over bytes and JSON-ish text, and a short coverage-guided run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.errors import InvalidEventError
from streamproc.events import (
    DeadLetterReason,
    EventLimits,
    Origin,
    dead_letter_for,
    decode_prompt,
    event_id_of,
)

ROOT = Path(__file__).resolve().parents[2]
LIMITS = EventLimits(max_prompt_chars=100, model_id="m", quality_classes=frozenset({"draft"}))
ORIGIN = Origin(topic="prompts", partition=0, offset=0)
FUZZ_RUNS = 30_000


def assert_one_serialisable_outcome(data: bytes) -> None:
    try:
        event = decode_prompt(data, LIMITS)
    except InvalidEventError as exc:
        error = exc
    else:
        assert json.loads(event.model_dump_json().encode("utf-8"))["event_id"] == event.event_id
        return
    letter = dead_letter_for(
        data,
        ORIGIN,
        reason=DeadLetterReason(error.reason),
        detail=error.detail,
        error_class=error.error_class,
        event_id=event_id_of(data),
        worker_id="w",
        max_original_bytes=256,
    )
    assert json.loads(letter.model_dump_json().encode("utf-8"))["reason"] == error.reason


# -- JSON-ish text: mostly well-formed, with hostile tokens spliced in -----------------------

FIELD_NAMES = st.sampled_from(["event_id", "prompt", "width", "seed", "guidance_scale", "cache"])
PLAIN_TEXT = st.text(
    st.characters(exclude_categories=("Cc", "Cs"), exclude_characters='"\\'), max_size=8
)
HOSTILE_TEXT = st.text(max_size=4) | st.sampled_from(
    ["\\ud800", "\\udfff", "x\\ud83d\\ude00", "\\\\", '\\"', "\\u00e9", "\\x"]
)
STRING_BODIES = st.one_of(PLAIN_TEXT, PLAIN_TEXT, HOSTILE_TEXT)
NUMBERS = st.sampled_from(
    ["0", "-1", "64", "1.5", "1e999", "-1e999", "NaN", "Infinity", "-Infinity", "128.0"]
) | st.integers(1, 6000).map(lambda n: "9" * n)
SCALARS = st.one_of(
    st.sampled_from(["true", "false", "null", "7", "2.5"]),
    STRING_BODIES.map(lambda s: f'"{s}"'),
    NUMBERS,
)


def json_object(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pairs = st.lists(st.tuples(STRING_BODIES, values), max_size=4)
    return pairs.map(lambda ps: "{" + ",".join(f'"{k}":{v}' for k, v in ps) + "}")


def json_ish() -> st.SearchStrategy[str]:
    def containers(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        arrays = st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
        return arrays | json_object(inner)

    return st.recursive(SCALARS, containers, max_leaves=12)


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """An event whose attributes hold JSON-ish values; now and then with a hostile field,
    deep nesting, a BOM or cut short."""
    fields = [("attributes", draw(json_object(json_ish())))]
    twist = draw(st.sampled_from(["none", "none", "none", "field", "deep", "bom", "cut"]))
    if twist == "field":
        fields.append((draw(FIELD_NAMES), draw(json_ish())))
    elif twist == "deep":
        depth = draw(st.sampled_from([30, 31, 2000]))
        fields.append(("negative_prompt", "[" * depth + "]" * depth))
    body = ",".join(f'"{k}":{v}' for k, v in draw(st.permutations(fields)))
    data = ('{"event_id":"e1","prompt":"p",' + body + "}").encode("utf-8", "surrogatepass")
    if twist == "bom":
        data = b"\xef\xbb\xbf" + data
    elif twist == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    return data


@given(st.binary(max_size=2000))
def test_any_bytes_end_as_an_event_or_a_dead_letter_that_serialise(data: bytes) -> None:
    assert_one_serialisable_outcome(data)


@settings(max_examples=300)
@given(records())
def test_any_json_ish_record_ends_as_an_event_or_a_dead_letter_that_serialise(data: bytes) -> None:
    assert_one_serialisable_outcome(data)


@given(json_ish())
def test_any_json_ish_value_ends_as_an_event_or_a_dead_letter_that_serialise(text: str) -> None:
    assert_one_serialisable_outcome(text.encode("utf-8", "surrogatepass"))


# -- coverage-guided ------------------------------------------------------------------------


def test_a_short_coverage_guided_run_finds_no_crash(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "fuzz_decode.py"),
            f"-runs={FUZZ_RUNS}",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"Done {FUZZ_RUNS} runs" in run.stderr
    assert not list(tmp_path.glob("crash-*"))
    assert len(list(corpus.iterdir())) > 11, "the run found no new coverage: is it instrumented?"
