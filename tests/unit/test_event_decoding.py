"""decode_prompt on hostile bytes: every record becomes an event or one InvalidEventError."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from streamproc.errors import InvalidEventError
from streamproc.events import (
    ATTRIBUTE_INT_MAX,
    ATTRIBUTE_INT_MIN,
    DETAIL_MAX_CHARS,
    EVENT_ID_SCAN_BYTES,
    MAX_DEPTH,
    NON_BLANK,
    PromptEvent,
    decode_prompt,
    event_id_of,
)

BOM = b"\xef\xbb\xbf"
INTEGER_FIELDS = [
    "schema_version",
    "width",
    "height",
    "num_frames",
    "num_inference_steps",
    "seed",
    "priority",
]
STRING_FIELDS = ["event_id", "prompt", "negative_prompt", "tenant", "model"]


def record(body: str = "") -> bytes:
    """An event's JSON text with ``body`` (already JSON, leading comma included) appended."""
    return ('{"event_id": "e1", "prompt": "a cat"' + body + "}").encode()


def rejection(data: bytes) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as info:
        decode_prompt(data)
    return info.value


def nested(depth: int) -> bytes:
    """An event whose brackets nest ``depth`` levels, the event object included."""
    inner = depth - 2  # the event object and the attributes object
    return record(', "attributes": {"a": ' + "[" * inner + "]" * inner + "}")


# -- bytes and JSON syntax --------------------------------------------------------------------


def test_a_leading_utf8_bom_is_accepted() -> None:
    assert decode_prompt(BOM + record()).event_id == "e1"


def test_bytes_that_are_not_utf8_name_the_byte_and_its_position() -> None:
    error = rejection(b'{"event_id": "e1", "prompt": "a \xff cat"}')
    assert (error.reason, error.detail) == (
        "malformed",
        "not UTF-8: invalid byte 0xff at position 32",
    )


def test_the_position_of_a_bad_byte_counts_the_bom() -> None:
    assert rejection(BOM + b"\xfe").detail == "not UTF-8: invalid byte 0xfe at position 3"


def test_utf8_cut_inside_a_character_is_a_truncated_sequence() -> None:
    error = rejection('{"prompt": "caf\u00e9'.encode()[:-1])
    assert error.detail == "not UTF-8: truncated sequence at position 15"


def test_a_surrogate_encoded_as_utf8_bytes_is_not_utf8() -> None:
    assert rejection(b'{"prompt": "\xed\xa0\x80"}').detail.startswith(
        "not UTF-8: invalid byte 0xed"
    )


def test_a_json_syntax_error_names_line_and_column() -> None:
    error = rejection(b'{"event_id": "e1",\n  "prompt": }')
    assert error.reason == "malformed"
    assert error.detail == "invalid JSON at line 2, column 13: Expecting value"


@pytest.mark.parametrize(
    ("data", "got"),
    [(b"[]", "an array"), (b'"x"', "a string"), (b"1", "a number"), (b"true", "true or false")],
)
def test_a_json_value_other_than_an_object_is_malformed(data: bytes, got: str) -> None:
    error = rejection(data)
    assert (error.reason, error.detail) == ("malformed", f"expected a JSON object, got {got}")


# -- nesting ----------------------------------------------------------------------------------


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert decode_prompt(nested(MAX_DEPTH)).attributes["a"] is not None


def test_nesting_beyond_the_limit_is_malformed() -> None:
    error = rejection(nested(MAX_DEPTH + 1))
    assert (error.reason, error.detail) == ("malformed", f"nesting deeper than {MAX_DEPTH} levels")


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    brackets = '[{\\"' * 500  # escaped quotes must not end the string early
    assert decode_prompt(record(f', "negative_prompt": "{brackets}"')).negative_prompt


@pytest.mark.parametrize("opening", [b"[", b"{", b'{"a":'])
def test_far_deeper_nesting_than_python_recursion_allows_is_malformed(opening: bytes) -> None:
    data = opening * (sys.getrecursionlimit() * 100)
    assert rejection(data).detail == f"nesting deeper than {MAX_DEPTH} levels"


# -- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("digits", [20, 5000, 100_000])
def test_an_integer_too_long_for_any_field_is_out_of_the_fields_range(digits: int) -> None:
    error = rejection(record(f', "seed": {"9" * digits}'))
    assert error.reason == "schema_violation"
    assert error.detail == "seed: must be an integer between 0 and 9223372036854775807"


def test_a_huge_negative_integer_is_out_of_range_too() -> None:
    error = rejection(record(f', "width": -{"1" * 5000}'))
    assert error.detail == "width: must be an integer between 32 and 2048"


def test_a_huge_guidance_scale_is_out_of_its_range() -> None:
    error = rejection(record(f', "guidance_scale": {"3" * 5000}'))
    assert error.detail == "guidance_scale: must be a number between 0 and 30"


@pytest.mark.parametrize("value", [ATTRIBUTE_INT_MIN, ATTRIBUTE_INT_MAX])
def test_attribute_integers_at_the_64_bit_bounds_are_kept(value: int) -> None:
    assert decode_prompt(record(f', "attributes": {{"n": {value}}}')).attributes["n"] == value


@pytest.mark.parametrize(
    "value",
    [str(ATTRIBUTE_INT_MAX + 1), str(ATTRIBUTE_INT_MIN - 1), "9" * 5000],
    ids=["max+1", "min-1", "5000-digits"],
)
def test_attribute_integers_beyond_64_bits_are_refused(value: str) -> None:
    error = rejection(record(f', "attributes": {{"x": [1, {{"n": {value}}}]}}'))
    assert error.reason == "schema_violation"
    assert error.detail == (
        "attributes.x.1.n: must be an integer between -9223372036854775808 and 9223372036854775807"
    )


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_a_non_finite_number_is_refused_naming_its_field(constant: str) -> None:
    error = rejection(record(f', "guidance_scale": {constant}'))
    assert (error.reason, error.detail) == (
        "schema_violation",
        "guidance_scale: must be a finite number",
    )


@pytest.mark.parametrize("number", ["1E400", "-2e+308", "1" * 400 + ".5"])
def test_a_number_beyond_float_range_is_not_finite(number: str) -> None:
    error = rejection(record(f', "attributes": {{"x": {number}}}'))
    assert error.detail == "attributes.x: must be a finite number"


def test_a_non_finite_number_inside_attributes_is_refused() -> None:
    error = rejection(record(', "attributes": {"scores": [0.5, NaN]}'))
    assert error.detail == "attributes.scores.1: must be a finite number"


@pytest.mark.parametrize("field", INTEGER_FIELDS)
@pytest.mark.parametrize(
    "value", ['"1"', "1.0", "true", "false"], ids=["string", "float", "true", "false"]
)
def test_integer_fields_take_json_integers_only(field: str, value: str) -> None:
    error = rejection(record(f', "{field}": {value}'))
    assert (error.reason, error.detail) == ("schema_violation", f"{field}: must be an integer")


@pytest.mark.parametrize("value", ["7", "7.5"])
def test_guidance_scale_takes_any_json_number(value: str) -> None:
    assert decode_prompt(record(f', "guidance_scale": {value}')).guidance_scale == float(value)


@pytest.mark.parametrize("value", ['"7"', "true"])
def test_guidance_scale_refuses_strings_and_booleans(value: str) -> None:
    assert (
        rejection(record(f', "guidance_scale": {value}')).detail
        == "guidance_scale: must be a number"
    )


def test_an_integer_field_out_of_range_states_the_range() -> None:
    assert (
        rejection(record(', "priority": 10')).detail
        == "priority: must be an integer between 0 and 9"
    )


def test_schema_version_other_than_1_is_refused() -> None:
    assert rejection(record(', "schema_version": 2')).detail == "schema_version: must be 1"


# -- strings, keys and Unicode ----------------------------------------------------------------


@pytest.mark.parametrize("field", STRING_FIELDS)
@pytest.mark.parametrize("value", ["5", "true", "[]", "{}"])
def test_string_fields_take_json_strings_only(field: str, value: str) -> None:
    data = json.loads(record())
    data[field] = "placeholder"
    text = json.dumps(data).replace('"placeholder"', value)
    assert rejection(text.encode()).detail == f"{field}: must be a string"


@pytest.mark.parametrize("blank", ["", " ", "\t\n", "\u3000\u00a0", "\x1c"])
def test_a_blank_prompt_is_refused(blank: str) -> None:
    error = rejection(json.dumps({"event_id": "e1", "prompt": blank}).encode())
    assert error.detail == "prompt: must not be blank"


def test_blank_means_the_same_in_the_schema_pattern_and_in_python() -> None:
    import re

    pattern = re.compile(NON_BLANK)
    blank = [chr(c) for c in range(sys.maxunicode + 1) if not pattern.search(chr(c))]
    assert blank == [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (', "negative_prompt": "blur \\ud800"', "negative_prompt"),
        (', "tenant": "\\udfff"', "tenant"),
        (', "model": "m\\udc00"', "model"),
        (', "attributes": {"tags": ["ok", "\\ud83d"]}', "attributes.tags.1"),
        (', "attributes": {"a": {"b": "\\ude00x"}}', "attributes.a.b"),
        (', "attributes": {"\\ud800": 1}', "attributes.\\ud800"),
        (', "attributes": {"upper": "\\uDBFF"}', "attributes.upper"),
        (', "\\ud800": 1', "\\ud800"),
    ],
)
def test_a_lone_surrogate_anywhere_is_refused_naming_its_path(body: str, path: str) -> None:
    error = rejection(record(body))
    assert error.reason == "schema_violation"
    assert error.detail == f"{path}: text is not valid Unicode (lone surrogate)"


@pytest.mark.parametrize("field", ["event_id", "prompt"])
def test_a_lone_surrogate_in_a_required_field_is_refused(field: str) -> None:
    data = json.dumps({"event_id": "e1", "prompt": "a cat", field: "x\ud800"}).encode()
    assert rejection(data).detail == f"{field}: text is not valid Unicode (lone surrogate)"


def test_strings_that_only_look_like_refused_values_are_accepted() -> None:
    look_alike = "NaN Infinity 1e999 12345678901234567890 \\\\ud800"
    event = decode_prompt(record(f', "negative_prompt": "{look_alike}"'))
    assert event.negative_prompt == "NaN Infinity 1e999 12345678901234567890 \\ud800"


def test_an_escaped_surrogate_pair_is_one_valid_character() -> None:
    event = decode_prompt(record(', "negative_prompt": "\\ud83d\\ude00"'))
    assert event.negative_prompt == "\U0001f600"
    assert "\U0001f600" in event.model_dump_json()


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (', "width": 64, "width": 128', "width"),
        (', "prompt": "a dog"', "prompt"),
        (', "attributes": {"a": 1, "b": 2, "a": 3}', "attributes.a"),
        (', "attributes": {"x": [{"k": 1, "k": 1}]}', "attributes.x.0.k"),
    ],
)
def test_a_key_named_twice_is_refused_naming_it(body: str, path: str) -> None:
    error = rejection(record(body))
    assert (error.reason, error.detail) == ("schema_violation", f"{path}: duplicate key")


def test_the_detail_of_a_rejection_is_bounded_and_encodable() -> None:
    error = rejection(record(f', "attributes": {{"{"k" * 10_000}\\ud800": 1}}'))
    assert len(error.detail) <= DETAIL_MAX_CHARS
    error.detail.encode("utf-8")


# -- timestamps and attributes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ['"2026-12-01T10:00:00Z"', '"2026-12-01t10:00:00.123456789+05:30"', "null"]
)
def test_timestamps_are_rfc3339_with_a_zone(value: str) -> None:
    event = decode_prompt(record(f', "created_at": {value}'))
    assert event.created_at is None or event.created_at.tzinfo is not None


@pytest.mark.parametrize(
    "value",
    [
        "1700000000",
        '"1700000000"',
        '"2026-12-01 10:00:00Z"',
        '"2026-12-01T10:00Z"',
        '"2026-12-01T10:00:00"',
        '"2026-12-01"',
    ],
)
def test_other_timestamp_forms_are_refused(value: str) -> None:
    error = rejection(record(f', "deadline": {value}'))
    assert error.detail.startswith("deadline: must be an RFC 3339 date-time with a zone")


@pytest.mark.parametrize("value", ["[]", "{}", "3", '"sometimes"'])
def test_a_cache_attribute_must_name_a_mode(value: str) -> None:
    error = rejection(record(f', "attributes": {{"cache": {value}}}'))
    assert error.detail == "attributes: 'cache' must be reuse, refresh or bypass"


# -- whatever else goes wrong ----------------------------------------------------------------


def test_an_unexpected_error_while_validating_becomes_a_schema_violation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> PromptEvent:
        raise RuntimeError("validator bug")

    monkeypatch.setattr(PromptEvent, "model_validate", broken)
    error = rejection(record())
    assert (error.reason, error.detail) == ("schema_violation", "RuntimeError: validator bug")
    assert error.error_class == "RuntimeError"


def test_an_unexpected_error_while_parsing_becomes_malformed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("no room")

    monkeypatch.setattr("streamproc.events.json.loads", broken)
    error = rejection(record())
    assert (error.reason, error.detail) == ("malformed", "MemoryError: no room")


def test_an_accepted_event_serialises_to_utf8() -> None:
    event = decode_prompt(
        record(
            ', "negative_prompt": "\\u00e9\\ud83d\\ude00", "attributes": {"k\\u2028": [1.5, null]}'
        )
    )
    assert PromptEvent.model_validate_json(event.model_dump_json().encode("utf-8")) == event


# -- event_id_of ------------------------------------------------------------------------------


def test_event_id_of_finds_the_id_of_a_record_cut_short() -> None:
    assert event_id_of(b'{"event_id": "e-7", "prompt": "a ca') == "e-7"


def test_event_id_of_finds_the_id_in_invalid_json() -> None:
    assert event_id_of(b'{"width": 1e999, "event_id" :\n "e-8", oops}') == "e-8"


def test_event_id_of_finds_the_id_after_a_bom() -> None:
    assert event_id_of(BOM + record()) == "e1"


def test_event_id_of_skips_an_event_id_nested_inside_the_event() -> None:
    data = b'{"attributes": {"event_id": "inner"}, "x": ["{\\"", {"event_id": "deeper"}], "event_id": "outer"}'
    assert event_id_of(data) == "outer"


def test_event_id_of_decodes_json_escapes_in_the_id() -> None:
    assert event_id_of(b'{"event_id": "a\\u002fb\\"c"}') == 'a/b"c'


@pytest.mark.parametrize(
    "data",
    [
        b'{"event_id": "has space"}',
        b'{"event_id": "\\ud800"}',
        b'{"event_id": "caf\xc3\xa9"}',
        b'{"event_id": ""}',
        b'{"event_id": 5}',
        b'{"event_id": "' + b"x" * 201 + b'"}',
        b'[{"event_id": "in-an-array"}]',
    ],
    ids=["space", "surrogate", "non-ascii", "empty", "number", "too-long", "not-outermost"],
)
def test_event_id_of_returns_only_well_formed_ids(data: bytes) -> None:
    assert event_id_of(data) is None


def test_event_id_of_reads_only_the_head_of_a_large_record() -> None:
    late = b'{"prompt": "' + b"p" * EVENT_ID_SCAN_BYTES + b'", "event_id": "late"}'
    early = b'{"event_id": "early", "prompt": "' + b"p" * (1 << 20) + b'"}'
    assert (event_id_of(late), event_id_of(early)) == (None, "early")


@pytest.mark.parametrize(
    "data",
    [b"\xff" * 100, b'"' + b'\\"' * 50_000, b"[" * 100_000, b'{"event_id": "\\'],
    ids=["bytes", "escapes", "brackets", "cut-escape"],
)
def test_event_id_of_never_raises(data: bytes) -> None:
    assert event_id_of(data) is None
