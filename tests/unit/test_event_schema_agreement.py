"""The published schema and decode_prompt accept the same documents, but for the rules
JSON Schema cannot state (listed in docs/events.md and checked by :func:`extra_rules_broken`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamproc.errors import InvalidEventError
from streamproc.events import ATTRIBUTE_INT_MAX, ATTRIBUTE_INT_MIN, SEED_MAX, decode_prompt

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "prompt-event.v1.schema.json").read_text()
)
INTEGER_FIELDS = (
    "schema_version",
    "width",
    "height",
    "num_frames",
    "num_inference_steps",
    "seed",
    "priority",
)
SURROGATES = re.compile("[\ud800-\udfff]")


def ecma_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Any:
    """JSON Schema's ``pattern`` is ECMA-262, where ``$`` matches only at the very end; in
    Python's ``re`` (which jsonschema uses) it also matches before a final newline."""
    if pattern.endswith("$"):
        pattern = pattern[:-1] + r"\Z"
    if validator.is_type(instance, "string") and not re.search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, validators={"pattern": ecma_pattern}
)
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER
# Without rfc3339-validator the checker would pass any date-time silently.
assert "date-time" in FORMATS.checkers
VALIDATOR = Validator(SCHEMA, format_checker=FORMATS)


def extra_rules_broken(doc: dict[str, Any]) -> list[str]:
    """The documented rules beyond the schema that ``doc`` breaks.

    Not listed because the corpus cannot contain them: duplicate keys, NaN and infinities
    (a Python dict written by json.dumps with allow_nan=False has neither) and nesting deeper
    than MAX_DEPTH (the corpus nests at most a few levels). Configured limits are off
    (``limits=None``). Each of those has its own tests in test_event_decoding.py.
    """
    broken = []
    frames = doc.get("num_frames")
    if type(frames) is int and (frames - 1) % 4:
        broken.append("num_frames is not of the form 4k+1")
    for name in INTEGER_FIELDS:
        if type(doc.get(name)) is float:
            broken.append(f"{name} is written with a fraction or exponent")
    if any(
        not ATTRIBUTE_INT_MIN <= n <= ATTRIBUTE_INT_MAX for n in integers(doc.get("attributes"))
    ):
        broken.append("an attribute integer needs more than 64 bits")
    if SURROGATES.search(json.dumps(doc, ensure_ascii=False)):
        broken.append("a lone surrogate")
    return broken


def integers(value: Any) -> list[int]:
    if isinstance(value, dict):
        return [n for item in value.values() for n in integers(item)]
    if isinstance(value, list):
        return [n for item in value for n in integers(item)]
    return [value] if type(value) is int else []


# -- the corpus: events, near misses and wrong types ----------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
integral_floats = st.integers(-300, 3000).map(float)
printable_ascii = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12
)
texts = st.text(max_size=12) | st.sampled_from(["", " ", "\t\n", "\u3000", "\x1c", "a\n", "\ufeff"])
timestamps = (
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | st.datetimes().map(lambda d: d.isoformat())
    | st.sampled_from(
        [
            "2026-12-01T10:00:00Z",
            "2026-12-01t10:00:00.123456789z",
            "2026-12-01T10:00:00+23:59",
            "2026-12-01T10:00:00+24:00",
            "2026-12-01 10:00:00Z",
            "2026-12-01T10:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T10:00:60Z",
            "2026-02-29T10:00:00Z",
            "2024-02-29T10:00:00Z",
            "0000-01-01T00:00:00Z",
            "2026-12-01",
            "1700000000",
        ]
    )
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "schema_version": st.sampled_from([1, 1.0, True, 2, 0, "1"]),
    "event_id": printable_ascii
    | st.sampled_from(["a b", "x\n", "", "é", "x" * 200, "x" * 201])
    | texts,
    "prompt": texts | st.sampled_from(["x" * 4000, "x" * 4001, " x "]),
    "negative_prompt": st.none() | texts | st.just("x" * 4001),
    "width": st.integers(-1, 70).map(lambda k: k * 32) | st.integers(0, 2100) | integral_floats,
    "height": st.integers(-1, 70).map(lambda k: k * 32) | st.integers(0, 2100) | integral_floats,
    "num_frames": st.integers(-2, 260) | integral_floats,
    "num_inference_steps": st.integers(-2, 205) | integral_floats,
    "guidance_scale": st.floats(-1, 31) | st.integers(-1, 31) | st.sampled_from([0, 30, 30.000001]),
    "seed": st.none()
    | st.integers(-2, 2**64)
    | st.sampled_from([SEED_MAX, SEED_MAX + 1])
    | integral_floats,
    "priority": st.integers(-1, 10) | integral_floats,
    "tenant": st.none() | st.from_regex(r"[A-Za-z0-9._-]{0,66}", fullmatch=True) | texts,
    "model": st.none() | texts | st.just("m" * 301),
    "created_at": st.none() | timestamps,
    "deadline": st.none() | timestamps,
    "attributes": st.dictionaries(
        st.sampled_from(["cache", "quality", "campaign", "n"]) | st.text(max_size=4),
        st.sampled_from(["reuse", "refresh", "bypass", "draft", "standard", "", " ", None])
        | json_values,
        max_size=5,
    )
    | st.builds(lambda n: {f"k{i}": i for i in range(n)}, st.integers(63, 65)),
}


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A document shaped like an event: some fields set (often wrongly), maybe one required
    field missing, maybe an unknown field, maybe a field of a wholly different type."""
    doc = {"event_id": draw(printable_ascii), "prompt": draw(printable_ascii)}
    for name in draw(st.sets(st.sampled_from(sorted(FIELDS)), max_size=6)):
        doc[name] = draw(FIELDS[name])
    mutation = draw(st.sampled_from(["none", "drop", "unknown", "retype"]))
    if mutation == "drop":
        del doc[draw(st.sampled_from(["event_id", "prompt"]))]
    elif mutation == "unknown":
        doc[draw(st.sampled_from(["widht", "extra", "Prompt", ""]))] = draw(json_values)
    elif mutation == "retype":
        doc[draw(st.sampled_from(sorted(FIELDS)))] = draw(json_values)
    return doc


@settings(max_examples=600)
@given(documents())
@example({"event_id": "e", "prompt": "p", "width": 64.0})
@example({"event_id": "e", "prompt": "p", "schema_version": True})
@example({"event_id": "e\n", "prompt": "p"})
@example({"event_id": "e", "prompt": "p", "tenant": "acme\n"})
@example({"event_id": "e", "prompt": "p", "attributes": {"cache": None, "quality": None}})
@example({"event_id": "e", "prompt": "p", "attributes": {"cache": ["reuse"]}})
@example({"event_id": "e", "prompt": "\u3000"})
@example({"event_id": "e", "prompt": "p", "num_frames": 16})
@example({"event_id": "e", "prompt": "p", "attributes": {"n": 2**63}})
def test_the_decoder_accepts_exactly_what_the_schema_and_the_documented_rules_accept(
    doc: dict[str, Any],
) -> None:
    schema_valid = VALIDATOR.is_valid(doc)
    broken = extra_rules_broken(doc)
    try:
        decode_prompt(json.dumps(doc).encode(), limits=None)
        decoded, why = True, "accepted"
    except InvalidEventError as exc:
        decoded, why = False, f"{exc.reason}: {exc.detail}"
    errors = [e.message for e in VALIDATOR.iter_errors(doc)]
    assert decoded == (schema_valid and not broken), (
        f"schema errors {errors}, extra rules broken {broken}, decoder: {why}"
    )
