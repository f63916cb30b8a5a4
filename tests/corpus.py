"""A seeded corpus of adversarial prompt records, and how to match a run's outputs to it.

:func:`adversarial_corpus` makes the same records for the same seed: random bytes, truncated
JSON, integers of thousands of digits, nesting 100,000 deep, lone surrogates (``\\ud800``
escapes) in the event id, the prompts and the attributes, a UTF-8 BOM, duplicate keys, wrong
types, NaN and Infinity, oversize prompts, over-long records, unknown fields, empty values, and
a few valid small events. What becomes of each record is not prescribed here (the decoder
decides), only that each ends as exactly one outcome: :func:`outcomes_by_record` maps results
(by event id) and dead letters (by origin offset) back to the records they answer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.helpers import SMALL

#: Nesting of the deepest records (the brief of the outcome tests asks for 100k brackets).
DEEPEST = 100_000


@dataclass(frozen=True)
class Case:
    """One record of the corpus: what kind it is, its bytes, and every event id a result
    answering it could carry (a JSON object may name several through duplicate keys)."""

    kind: str
    value: bytes
    event_ids: frozenset[str] = frozenset()


def _text(value: Any) -> str:
    """JSON text of ``value``, non-ASCII escaped (so lone surrogates become ``\\udXXX``)."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


def _object(pairs: Iterable[tuple[str, str]]) -> bytes:
    """A JSON object from ``(key, raw JSON value text)`` pairs: keys may repeat, values may
    be anything (an integer of 20,000 digits, ``NaN``)."""
    return ("{" + ", ".join(f"{_text(k)}: {v}" for k, v in pairs) + "}").encode()


def _fields(event_id: str, prompt: str) -> list[tuple[str, str]]:
    return [(k, _text(v)) for k, v in {"event_id": event_id, "prompt": prompt, **SMALL}.items()]


def _set(pairs: list[tuple[str, str]], key: str, raw: str) -> list[tuple[str, str]]:
    """``pairs`` with ``key``'s value replaced by ``raw`` (appended where absent)."""
    if all(k != key for k, _ in pairs):
        return [*pairs, (key, raw)]
    return [(k, raw if k == key else v) for k, v in pairs]


class _Maker:
    """Builds the records of one corpus; ``line_safe`` keeps every record one non-blank line
    (the JSONL transport splits on newlines and skips blank lines)."""

    def __init__(self, seed: int, *, line_safe: bool, max_record_bytes: int) -> None:
        self.rng = random.Random(seed)
        self.line_safe = line_safe
        self.max_record_bytes = max_record_bytes
        self.n = 0

    def ident(self, tag: str = "") -> str:
        self.n += 1
        return f"fz-{self.n:05d}{tag}"

    def prompt(self) -> str:
        words = ["fox", "lake", "neon", "storm", "kite", "owl", "train", "dune", "reef", "moon"]
        return f"{self.n} " + " ".join(self.rng.choice(words) for _ in range(4))

    def event(self, tag: str = "") -> tuple[str, list[tuple[str, str]]]:
        event_id = self.ident(tag)
        return event_id, _fields(event_id, self.prompt())

    def case(self, kind: str, value: bytes, *ids: str) -> Case:
        if self.line_safe:
            value = value.replace(b"\n", b" ").replace(b"\r", b" ")
            if not value.strip():
                value = b"#" + value
        return Case(kind, value, frozenset(ids))

    # -- the kinds -------------------------------------------------------------------------

    def random_bytes(self) -> Case:
        size = self.rng.choice([1, 2, 7, 64, 300, 2000])
        return self.case("random_bytes", self.rng.randbytes(size))

    def truncated_json(self) -> Case:
        event_id, pairs = self.event()
        whole = _object(pairs)
        return self.case("truncated_json", whole[: self.rng.randrange(1, len(whole) - 1)], event_id)

    def huge_integer(self) -> Case:
        event_id, pairs = self.event()
        digits = self.rng.choice([4301, 5000, 20_000])
        number = self.rng.choice("123456789") + "".join(
            self.rng.choice("0123456789") for _ in range(digits - 1)
        )
        sign = self.rng.choice(["", "-"])
        where = self.rng.choice(["seed", "width", "priority", "attributes", "top"])
        if where == "top":
            return self.case("huge_integer", f"{sign}{number}".encode())
        raw = f'{{"n": {sign}{number}}}' if where == "attributes" else sign + number
        return self.case("huge_integer", _object(_set(pairs, where, raw)), event_id)

    def deep_nesting(self) -> Case:
        event_id, pairs = self.event()
        depth = self.rng.choice([DEEPEST, 20_000, 3000, 1001, 400])
        shape = self.rng.choice(["array", "object", "attribute", "prompt"])
        if shape == "array":
            value = b"[" * depth + b"]" * self.rng.choice([0, depth])
            return self.case("deep_nesting", value)
        if shape == "object":
            depth = min(depth, 20_000)  # six bytes a level: keep it under the record limit
            return self.case("deep_nesting", b'{"a": ' * depth + b"1" + b"}" * depth)
        nested = "[" * depth + "]" * depth
        key = "attributes" if shape == "attribute" else "prompt"
        raw = f'{{"deep": {nested}}}' if key == "attributes" else nested
        return self.case("deep_nesting", _object(_set(pairs, key, raw)), event_id)

    def lone_surrogate(self) -> Case:
        event_id, pairs = self.event()
        lone = self.rng.choice(["\ud800", "\udfff", "\udc00x", "a\ud83d"])
        where = self.rng.choice(
            ["event_id", "prompt", "negative_prompt", "attr_key", "attr_value", "tenant", "bytes"]
        )
        if where == "event_id":
            event_id = event_id + lone
            pairs = _set(pairs, "event_id", _text(event_id))
        elif where == "prompt":
            pairs = _set(pairs, "prompt", _text(f"a {lone} fox {self.n}"))
        elif where == "negative_prompt":
            pairs = [*pairs, ("negative_prompt", _text(f"blur {lone}"))]
        elif where == "attr_key":
            pairs = [*pairs, ("attributes", _text({f"k{lone}": 1, "ok": "v"}))]
        elif where == "attr_value":
            pairs = [*pairs, ("attributes", _text({"note": f"v{lone}", "list": [lone]}))]
        elif where == "tenant":
            pairs = [*pairs, ("tenant", _text(f"t{lone}"))]
        else:  # a surrogate encoded in the bytes themselves: not valid UTF-8
            pairs = _set(pairs, "prompt", '"a \xed\xa0\x80 fox"')
            raw = ("{" + ", ".join(f"{_text(k)}: {v}" for k, v in pairs) + "}").encode("latin-1")
            return self.case("lone_surrogate", raw, event_id)
        return self.case("lone_surrogate", _object(pairs), event_id)

    def bom(self) -> Case:
        event_id, pairs = self.event()
        return self.case("bom", b"\xef\xbb\xbf" + _object(pairs), event_id)

    def duplicate_keys(self) -> Case:
        event_id, pairs = self.event("a")
        other = self.ident("b")
        key, raw = self.rng.choice(
            [
                ("event_id", _text(other)),
                ("width", "33"),
                ("prompt", _text("")),
                ("num_frames", "5"),
                ("attributes", "{}"),
            ]
        )
        return self.case("duplicate_keys", _object([*pairs, (key, raw)]), event_id, other)

    def wrong_type(self) -> Case:
        event_id, pairs = self.event()
        key = self.rng.choice(
            ["width", "height", "num_frames", "num_inference_steps", "seed", "priority"]
        )
        good = SMALL.get(key, 1)
        raw = self.rng.choice(
            [
                *(_text(str(good)), f"{good}.0", f"{good}.5", "true", "false", "null", "[]"),
                *("{}", _text(" 64 "), _text("sixty-four"), "1e400", "-0", "0x40"),
            ]
        )
        return self.case("wrong_type", _object(_set(pairs, key, raw)), event_id)

    def not_a_number(self) -> Case:
        event_id, pairs = self.event()
        key = self.rng.choice(["guidance_scale", "width", "seed", "num_frames"])
        raw = self.rng.choice(["NaN", "Infinity", "-Infinity", "1e999"])
        return self.case("not_a_number", _object(_set(pairs, key, raw)), event_id)

    def oversize_prompt(self) -> Case:
        event_id, pairs = self.event()
        length = self.rng.choice([2001, 3999, 4001, 9000])
        key = self.rng.choice(["prompt", "negative_prompt"])
        text = _text(("dune " * (length // 5 + 1))[:length])
        return self.case("oversize_prompt", _object(_set(pairs, key, text)), event_id)

    def over_long(self) -> Case:
        event_id, pairs = self.event()
        size = self.max_record_bytes + self.rng.choice([1, 1000, 100_000])
        value = _object([*pairs, ("attributes", _text({"pad": ""}))])
        pad = b"x" * (size - len(value))
        return self.case(
            "over_long", value.replace(b'"pad": ""', b'"pad": "' + pad + b'"'), event_id
        )

    def unknown_field(self) -> Case:
        event_id, pairs = self.event()
        name = self.rng.choice(["colour", "Width", "event-id", "", "\u00e9t\u00e9", "__proto__"])
        return self.case("unknown_field", _object([*pairs, (name, "1")]), event_id)

    def empty_value(self) -> Case:
        event_id, pairs = self.event()
        choice = self.rng.choice(
            [
                ("event_id", '""'),
                ("prompt", '""'),
                ("prompt", '"   "'),
                ("event_id", "null"),
                ("prompt", "null"),
                ("width", '""'),
                ("attributes", "null"),
                ("record", ""),
            ]
        )
        if choice[0] == "record":
            value = self.rng.choice([b"{}", b"[]", b'""', b"null", b"0", b"true"])
            if not self.line_safe:
                value = self.rng.choice([value, b""])
            return self.case("empty_value", value)
        return self.case("empty_value", _object(_set(pairs, *choice)), event_id)

    def valid(self) -> Case:
        event_id, pairs = self.event()
        return self.case("valid", _object(pairs), event_id)


#: Kinds and how many of every 100 records are of each (valid ones are few: they generate).
MIX: Mapping[str, int] = {
    "random_bytes": 14,
    "truncated_json": 10,
    "huge_integer": 9,
    "deep_nesting": 6,
    "lone_surrogate": 8,
    "bom": 3,
    "duplicate_keys": 7,
    "wrong_type": 10,
    "not_a_number": 7,
    "oversize_prompt": 5,
    "over_long": 1,
    "unknown_field": 6,
    "empty_value": 9,
    "valid": 5,
}


def adversarial_corpus(
    count: int = 1000, *, seed: int = 20261201, line_safe: bool, max_record_bytes: int
) -> list[Case]:
    """``count`` records (the same for the same arguments), every kind of :data:`MIX` at
    least once, deepest nesting included, in a shuffled order."""
    maker = _Maker(seed, line_safe=line_safe, max_record_bytes=max_record_bytes)
    kinds = list(MIX)
    weights = [MIX[k] for k in kinds]
    chosen = kinds + maker.rng.choices(kinds, weights, k=max(0, count - len(kinds)))
    cases = [getattr(maker, kind)() for kind in chosen]
    deepest = b"[" * DEEPEST
    cases.append(maker.case("deep_nesting", deepest))  # always at least one 100k-deep record
    maker.rng.shuffle(cases)
    return cases


@dataclass(frozen=True)
class Matched:
    """Outputs of a run matched to the corpus records (by index)."""

    outcomes: dict[int, list[str]]
    unmatched: list[str]

    def problems(self, count: int) -> list[str]:
        """Records without exactly one outcome, and outputs that answer no record."""
        out = [f"record {i}: {self.outcomes.get(i, [])}" for i in range(count)]
        out = [line for i, line in enumerate(out) if len(self.outcomes.get(i, [])) != 1]
        return out + [f"unmatched output: {u}" for u in self.unmatched]


def outcomes_by_record(
    cases: list[Case],
    positions: Mapping[tuple[int, int], int],
    results: Iterable[Mapping[str, Any]],
    letters: Iterable[Mapping[str, Any]],
) -> Matched:
    """Each record's outcomes: a dead letter answers the record at its origin
    ``(partition, offset)`` (``positions`` maps those to corpus indexes), a result the one
    record that could carry its event id."""
    by_id: dict[str, int] = {}
    for index, case in enumerate(cases):
        for event_id in case.event_ids:
            assert event_id not in by_id, f"event id {event_id} is not unique in the corpus"
            by_id[event_id] = index
    outcomes: dict[int, list[str]] = {}
    unmatched: list[str] = []
    for result in results:
        answered = by_id.get(result["event_id"])
        if answered is None:
            unmatched.append(f"result {result['event_id']!r}")
        else:
            outcomes.setdefault(answered, []).append(f"result {result['status']}")
    for letter in letters:
        where = (letter["origin"]["partition"], letter["origin"]["offset"])
        quoted = positions.get(where)
        if quoted is None:
            unmatched.append(f"dead letter at {where}")
        else:
            outcomes.setdefault(quoted, []).append(f"dead letter {letter['reason']}")
    return Matched(outcomes, unmatched)
