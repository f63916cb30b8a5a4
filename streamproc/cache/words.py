"""When two different words show the same thing: synonym groups, US spelling, regional words.

Three sources, cheapest first: the synonym groups of :mod:`~streamproc.cache.lexicon.synonyms`;
British spellings mapped to US ones and British/American word pairs, both read from the
``breame`` package (its spelling table, and the "(US: truck)" / "(UK: lorry)" notes of its
regional glossaries); nothing else. Word embeddings were measured and not used: MiniLM scores
"buy"/"sell" (0.76) and "wet"/"dry" (0.78) above most true synonyms ("sip"/"drink" 0.55).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Final

from streamproc.cache.lexicon.synonyms import SYNONYM_GROUPS

_PHRASE: Final = re.compile(r"[a-z][a-z' -]*")
# Words of a regional note that are not the other region's word for the term.
_NOTE_SPLIT: Final = re.compile(
    r"[,;:/\n]|\b(?:US|UK|and|also|or|both|usu|usually|often|sometimes|especially|esp|"
    r"informal|formal|slang|called|see|e\.g|i\.e|more|commonly|the|a|an|uncommon|in)\b"
)
_MAX_PHRASE_WORDS: Final = 3


def _groups() -> dict[str, str]:
    heads: dict[str, str] = {}
    for group in SYNONYM_GROUPS:
        members = [member.strip() for member in group.split("|") if member.strip()]
        for member in members:
            heads.setdefault(member, members[0])
    return heads


#: Word or phrase -> the first member of its synonym group.
SYNONYM_HEAD: Final[Mapping[str, str]] = _groups()


@functools.cache
def _breame() -> tuple[Mapping[str, str], Mapping[str, frozenset[str]]]:
    # Imported on first use: about 0.4 MB of Python dicts.
    from breame.data.american_terms_constants import AMERICAN_ENGLISH_ONLY_TERMS
    from breame.data.british_terms_constants import BRITISH_ENGLISH_ONLY_TERMS
    from breame.data.meaning_constants import DIFFERENT_MEANINGS_US_UK_COMMON
    from breame.data.spelling_constants import BRITISH_ENGLISH_SPELLINGS

    pairs: dict[str, set[str]] = {}

    def add(left: str, right: str) -> None:
        left, right = " ".join(left.lower().split()), " ".join(right.lower().split())
        if left != right and _is_phrase(left) and _is_phrase(right):
            pairs.setdefault(left, set()).add(right)
            pairs.setdefault(right, set()).add(left)

    def notes() -> Iterator[tuple[str, str]]:
        for table in (AMERICAN_ENGLISH_ONLY_TERMS, BRITISH_ENGLISH_ONLY_TERMS):
            yield from table.items()
        for term, senses in DIFFERENT_MEANINGS_US_UK_COMMON.items():
            for region, gloss in senses.items():
                if not isinstance(gloss, str):
                    continue
                yield term, gloss
                # "fall": {"American English": "autumn", ...}: a one-word sense is a synonym.
                if region == "American English" and len(gloss.split()) <= 2:
                    add(term, gloss)

    for term, gloss in notes():
        if not isinstance(term, str) or not isinstance(gloss, str):
            continue
        for note in re.findall(r"\(([^()]*)\)", gloss):
            if re.search(r"\b(?:US|UK)\b", note):
                for word in _NOTE_SPLIT.split(note):
                    add(term, (word or "").strip(" '\".-"))
    spelling = {british: american for british, american in BRITISH_ENGLISH_SPELLINGS.items()}
    return spelling, {word: frozenset(others) for word, others in pairs.items()}


def _is_phrase(text: str) -> bool:
    return bool(text) and len(text.split()) <= _MAX_PHRASE_WORDS and bool(_PHRASE.fullmatch(text))


def us_spelling(word: str) -> str:
    """``word`` in US spelling ("neighbourhood" -> "neighborhood"); unchanged when unknown."""
    return _breame()[0].get(word, word)


def regional_pair(left: str, right: str) -> bool:
    """True when one is the other region's word for the same thing ("lorry" / "truck")."""
    return right in _breame()[1].get(left, frozenset())


@functools.cache
def phrases() -> frozenset[tuple[str, ...]]:
    """Multi-word terms read as one word: synonym-group and regional phrases ("car park")."""
    found = {tuple(key.split()) for key in SYNONYM_HEAD if " " in key}
    # Regional notes also hold fragments ("car parked"); only their two-word nouns whose
    # counterpart is a word or a phrase too are kept.
    found |= {
        tuple(key.split())
        for key, others in _breame()[1].items()
        if len(key.split()) == 2
        and not key.split()[-1].endswith(("ed", "ing"))
        and any(other in _breame()[1] for other in others)
    }
    return frozenset(found)
