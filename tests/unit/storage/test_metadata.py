"""S3 user metadata: ASCII header values within 2 KB, readable again."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from streamproc.storage.metadata import METADATA_LIMIT, decode_metadata, encode_metadata

names = st.sampled_from(["event_id", "model_id", "parameters", "tenant"])
values = st.text(max_size=3000)


@given(st.dictionaries(names, values, max_size=4))
def test_encoded_metadata_is_ascii_without_edge_spaces_and_within_the_limit(
    meta: dict[str, str],
) -> None:
    encoded = encode_metadata(meta)
    assert sum(len(k) + len(v) for k, v in encoded.items()) <= METADATA_LIMIT
    for key, value in encoded.items():
        assert key.isascii() and value.isascii()
        assert value == value.strip() and " " not in value
        assert all(c.isprintable() for c in value)


@given(st.dictionaries(names, st.text(max_size=60), max_size=4))
def test_small_metadata_reads_back_exactly(meta: dict[str, str]) -> None:
    readable = decode_metadata(encode_metadata(meta))
    assert readable == {k.replace("_", "-"): v for k, v in meta.items()}


@given(st.text(min_size=1, max_size=4000))
@example("é" * 400)  # a cut inside a two-byte character would not decode to a prefix
def test_cut_values_are_listed_and_are_prefixes_of_the_original(value: str) -> None:
    encoded = encode_metadata({"event_id": "e1", "parameters": value}, limit=400)
    readable = decode_metadata(encoded)
    assert readable["event-id"] == "e1"
    if "truncated" in readable:
        assert readable["truncated"] == "parameters"
        assert value.startswith(readable["parameters"])
    else:
        assert readable["parameters"] == value


def test_printable_ascii_is_kept_readable() -> None:
    assert encode_metadata({"model_id": "org/model@v1"}) == {"model-id": "org/model@v1"}
    assert encode_metadata({"x": "100% sure"}) == {"x": "100%25%20sure"}


def test_a_lone_surrogate_does_not_fail_the_upload() -> None:
    assert encode_metadata({"x": "a\ud800b"}) == {"x": "a?b"}
