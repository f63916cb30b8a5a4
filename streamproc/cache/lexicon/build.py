"""The phrase table: every surface of the vocabulary as a token tuple -> its attributes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from streamproc.cache.lexicon import Attr, alts
from streamproc.cache.lexicon.morphology import plural_phrase, verb_forms, verb_phrase_forms
from streamproc.cache.lexicon.nouns import COUNTED_NOUNS, OBJECT_NOUNS
from streamproc.cache.lexicon.places import PLACE_NOUNS
from streamproc.cache.lexicon.verbs import ACTION_EXTRAS, NEUTRAL_VERBS, VERBS
from streamproc.cache.lexicon.words import (
    FIXED_READINGS,
    LITERALS,
    NEUTRAL_PHRASES,
    NUMBER_PHRASES,
    TENS,
    UNITS,
)
from streamproc.cache.normalize import tokenize


def _add(
    lexicon: dict[tuple[str, ...], tuple[Attr, ...]], surface: str, attrs: Iterable[Attr]
) -> None:
    key = tuple(tokenize(surface))
    if not key:
        raise ValueError(f"empty surface for {attrs!r}")
    merged = tuple(dict.fromkeys((*lexicon.get(key, ()), *attrs)))
    lexicon[key] = merged


def _build_lexicon() -> dict[tuple[str, ...], tuple[Attr, ...]]:
    lexicon: dict[tuple[str, ...], tuple[Attr, ...]] = {}
    for value, spec in COUNTED_NOUNS.items():
        for surface in alts(spec):
            _add(lexicon, surface, [("subject", value)])
            plural = plural_phrase(surface)
            if plural != surface:
                _add(lexicon, plural, [("subject", value), ("plurality", value)])
    # "people" and "children" are listed above via irregular plurals; collective words:
    _add(lexicon, "couple", [("subject", "person"), ("plurality", "person"), ("number", "2")])
    _add(lexicon, "couples", [("subject", "person"), ("plurality", "person"), ("number", "many")])
    _add(lexicon, "kids", [("subject", "child"), ("plurality", "child")])
    _add(lexicon, "cattle", [("subject", "cow"), ("plurality", "cow")])
    for family, table in (("subject", OBJECT_NOUNS), ("location", PLACE_NOUNS)):
        for value, spec in table.items():
            for surface in alts(spec):
                _add(lexicon, surface, [(family, value)])
                _add(lexicon, plural_phrase(surface), [(family, value)])
    for value, spec in VERBS.items():
        for base in alts(spec):
            for form in verb_phrase_forms(base):
                _add(lexicon, form, [("action", value)])
    for value, spec in ACTION_EXTRAS.items():
        for surface in alts(spec):
            _add(lexicon, surface, [("action", value)])
    for family, table in LITERALS.items():
        for value, spec in table.items():
            for surface in alts(spec):
                _add(lexicon, surface, [(family, value)])
    for value, spec in NUMBER_PHRASES.items():
        for surface in alts(spec):
            _add(lexicon, surface, [("number", value)])
    return lexicon


def _build_overrides() -> dict[tuple[str, ...], tuple[Attr, ...]]:
    # Exact readings that replace whatever the parts would mean.
    overrides: dict[tuple[str, ...], tuple[Attr, ...]] = {}
    for surface in alts(NEUTRAL_PHRASES):
        overrides[tuple(tokenize(surface))] = ()
    for surface, attrs in FIXED_READINGS.items():
        overrides[tuple(tokenize(surface))] = attrs
    return overrides


#: Token tuple -> the attributes it stands for (an empty tuple: a phrase that means nothing).
LEXICON: Final[Mapping[tuple[str, ...], tuple[Attr, ...]]] = {
    **_build_lexicon(),
    **_build_overrides(),
}
#: The longest phrase of the table, in tokens.
MAX_PHRASE: Final = max(len(key) for key in LEXICON)

#: Every word the vocabulary knows; other words are "unknown" to the word-swap check.
KNOWN_TOKENS: Final = (
    frozenset(token for key in LEXICON for token in key)
    | frozenset([*UNITS, *TENS, "hundred", "thousand"])
    | frozenset(form for verb in NEUTRAL_VERBS for form in verb_forms(verb))
)
