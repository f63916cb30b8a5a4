"""Attribute extraction: the details a viewer would notice, read from one prompt.

A prompt is tokenised and scanned left to right for the longest phrase of the vocabulary
(:mod:`streamproc.cache.lexicon`), numbers and negations. The result maps each attribute
family to canonical values, e.g. ``{"colour": {"red": "crimson"}, "number": {"2": "two"}}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from streamproc.cache.lexicon import Attr
from streamproc.cache.lexicon.build import LEXICON, MAX_PHRASE
from streamproc.cache.lexicon.words import (
    DETERMINERS,
    NEGATORS,
    SCOPE_BREAKS,
    TENS,
    UNITS,
)
from streamproc.cache.normalize import PUNCT_TOKENS, tokenize

# Families in the order a rejection reports them.
FAMILIES: Final[tuple[str, ...]] = (
    "negation",
    "number",
    "subject",
    "plurality",
    "action",
    "colour",
    "time_of_day",
    "weather",
    "season",
    "location",
    "camera",
    "playback",
    "pace",
    "direction",
    "size",
    "age",
    "material",
    "style",
    "era",
    "setting",
    "mood",
    "intensity",
    "temperature",
    "position",
    "wording",
)

_NEGATION_SCOPE: Final = 3
_EMPTY: Final[Attr] = ("mood", "empty")
_PEOPLE_VALUES: Final = frozenset({"person", "man", "woman", "child", "busy"})


def _read_number(tokens: Sequence[str], i: int) -> tuple[int, int] | None:
    """A number starting at ``tokens[i]``: (value, tokens consumed), or None."""
    token = tokens[i]
    if token.isdigit():
        return int(token), 1
    if token in TENS:
        value, used = TENS[token], 1
        if i + 1 < len(tokens) and tokens[i + 1] in UNITS and UNITS[tokens[i + 1]] < 10:
            value, used = value + UNITS[tokens[i + 1]], 2
    elif token in UNITS:
        value, used = UNITS[token], 1
    else:
        return None
    if i + used < len(tokens) and tokens[i + used] in ("hundred", "thousand"):
        value *= 100 if tokens[i + used] == "hundred" else 1000
        used += 1
    return value, used


@dataclass(frozen=True)
class _Found:
    attr: Attr
    surface: str


def match_phrase(tokens: Sequence[str], i: int) -> tuple[tuple[Attr, ...], int] | None:
    """The longest lexicon phrase starting at ``tokens[i]``."""
    for length in range(min(MAX_PHRASE, len(tokens) - i), 0, -1):
        attrs = LEXICON.get(tuple(tokens[i : i + length]))
        if attrs is not None:
            return attrs, length
    return None


def _negator_width(tokens: Sequence[str], i: int) -> int:
    """Tokens taken by a negator at ``tokens[i]`` (0 when there is none)."""
    if tuple(tokens[i : i + 2]) in NEGATORS:
        return 2
    if (tokens[i],) in NEGATORS:
        phrase = match_phrase(tokens, i)
        # A longer fixed phrase ("no one", "no longer") is not a negation of what follows.
        return 1 if phrase is None or phrase[1] == 1 else 0
    return 0


def _scan_negation(tokens: Sequence[str], start: int) -> tuple[list[_Found], int]:
    """Attributes in the scope of a negation beginning at ``start``; returns (found, end)."""
    while start < len(tokens) and tokens[start] in DETERMINERS:
        start += 1
    limit = min(start + _NEGATION_SCOPE, len(tokens))
    found: list[_Found] = []
    j = start
    while j < limit and tokens[j] not in PUNCT_TOKENS and tokens[j] not in SCOPE_BREAKS:
        hit = match_phrase(tokens, j)
        if hit is None:
            j += 1
            continue
        if found and any(family == "action" for family, _ in hit[0]):
            break  # "without a hat walking": the walking is not negated
        found.extend(_Found(attr, " ".join(tokens[j : j + hit[1]])) for attr in hit[0])
        j += hit[1]
    if not found and start < j:
        # An unknown negated word still distinguishes "with X" from "without X".
        word = tokens[start]
        found.append(_Found(("negation", word.removesuffix("s")), word))
    return found, j


def _scan(tokens: Sequence[str]) -> list[tuple[_Found, bool]]:
    """Attributes in reading order, each flagged True when it sits in a negation's scope."""
    found: list[tuple[_Found, bool]] = []
    i = 0
    while i < len(tokens):
        width = _negator_width(tokens, i)
        if width:
            negated, end = _scan_negation(tokens, i + width)
            found.extend((item, True) for item in negated)
            i = max(end, i + width)
            continue
        number = _read_number(tokens, i)
        phrase = match_phrase(tokens, i)
        if number is not None and (phrase is None or phrase[1] <= number[1]):
            value, used = number
            surface = " ".join(tokens[i : i + used])
            found.append((_Found(("number", str(value)), surface), False))
            i += used
        elif phrase is not None:
            attrs, used = phrase
            surface = " ".join(tokens[i : i + used])
            found.extend((_Found(attr, surface), False) for attr in attrs)
            i += used
        else:
            i += 1
    return found


Attributes = dict[str, dict[str, str]]


def extract_attributes(text: str) -> Attributes:
    """Family -> canonical value -> the words that produced it, for one prompt."""
    result: Attributes = {}
    for item, negated in _scan(tokenize(text)):
        family, value = item.attr
        if negated:
            if family == "plurality":
                continue
            if family == "negation":
                attr = item.attr
            elif value in _PEOPLE_VALUES and family in ("subject", "mood"):
                attr = _EMPTY  # "without people" shows the same as "an empty ..."
            else:
                attr = ("negation", f"{family}:{value}")
        else:
            attr = item.attr
        result.setdefault(attr[0], {}).setdefault(attr[1], item.surface)
    return result
