"""When two different words show the same thing: synonym groups, US spelling, regional words.

Three sources, cheapest first: the synonym groups of :mod:`~streamproc.cache.lexicon.synonyms`;
British spellings mapped to US ones and British/American word pairs, both read from the
``breame`` package (its spelling table, and the "(US: truck)" / "(UK: lorry)" notes of its
regional glossaries). The guard then asks WordNet about words none of these joins
(:mod:`~streamproc.cache.wordnet`; alignment only, never a rewrite). Word embeddings were
measured and not used: MiniLM scores "buy"/"sell" (0.76) and "wet"/"dry" (0.78) above most
true synonyms ("sip"/"drink" 0.55).

:func:`canonical_text` rewrites a prompt with one form per thing (US spelling, the head of its
key group) for the cache key and the embedding. breame's regional notes are used by the guard
only: as a rewrite they are too loose ("points" -> "switch", "remains" -> "cremains").
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator, Mapping
from typing import Final

from streamproc.cache.lexicon.relations import PARTICLES
from streamproc.cache.lexicon.synonyms import KEY_GROUPS, SYNONYM_GROUPS

_PHRASE: Final = re.compile(r"[a-z][a-z' -]*")
# Words of a regional note that are not the other region's word for the term.
_NOTE_SPLIT: Final = re.compile(
    r"[,;:/\n]|\b(?:US|UK|and|also|or|both|usu|usually|often|sometimes|especially|esp|"
    r"informal|formal|slang|called|see|e\.g|i\.e|more|commonly|the|a|an|uncommon|in)\b"
)
_MAX_PHRASE_WORDS: Final = 3


def _members(group: str) -> list[tuple[str, bool]]:
    """A group's members, each with whether the cache key may rewrite it (no ``~``)."""
    found = []
    for member in group.split("|"):
        member = member.strip()
        if member:
            found.append((member.lstrip("~"), not member.startswith("~")))
    return found


def _groups() -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    heads: dict[str, set[str]] = {}
    members_of: dict[str, set[str]] = {}
    for group in SYNONYM_GROUPS:
        members = _members(group)
        for member, _ in members:
            heads.setdefault(member, set()).add(members[0][0])
            members_of.setdefault(members[0][0], set()).add(member)
    return (
        {member: frozenset(found) for member, found in heads.items()},
        {head: frozenset(found) for head, found in members_of.items()},
    )


_HEADS_AND_MEMBERS: Final = _groups()
#: Word or phrase -> the first member of each synonym group that holds it.
SYNONYM_HEADS: Final[Mapping[str, frozenset[str]]] = _HEADS_AND_MEMBERS[0]
#: A group's first member -> every member of the groups it heads.
GROUP_MEMBERS: Final[Mapping[str, frozenset[str]]] = _HEADS_AND_MEMBERS[1]


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
    found = {tuple(key.split()) for key in SYNONYM_HEADS if " " in key}
    # Regional notes also hold fragments ("car parked") and phrasal verbs ("turn on", "walk
    # out"); only their two-word nouns whose counterpart is a word or a phrase too are kept,
    # and none with a particle, which the guard must read as one.
    found |= {
        tuple(key.split())
        for key, others in _breame()[1].items()
        if len(key.split()) == 2
        and not key.split()[-1].endswith(("ed", "ing"))
        and not any(word in PARTICLES for word in key.split())
        and any(other in _breame()[1] for other in others)
    }
    return frozenset(found)


# -- the canonical text the cache keys and embeds --------------------------------------------

# A possessive "'s" stays outside the word ("the lorry's wheels").
_WORD: Final = re.compile(r"[^\W_]+(?:'(?!s\b)[^\W_]+)*")
_IRREGULAR_PLURALS: Final = {
    "child": "children",
    "person": "people",
    "man": "men",
    "woman": "women",
    "foot": "feet",
    "tooth": "teeth",
    "mouse": "mice",
    "goose": "geese",
    "leaf": "leaves",
    "knife": "knives",
    "wolf": "wolves",
    "shelf": "shelves",
}


_FUNCTIONS: Final = (
    "in at on by during after from under below beneath above over seen looking the a of"
)
_FUNCTION_WORDS: Final = frozenset(_FUNCTIONS.split())


_IRREGULAR_SINGULARS: Final = {plural: singular for singular, plural in _IRREGULAR_PLURALS.items()}


def _plural_of(word: str) -> bool:
    return word.endswith("s") and not word.endswith("ss")


def _plural(phrase: str) -> str:
    *rest, last = phrase.split(" ")
    if last in _IRREGULAR_PLURALS:
        last = _IRREGULAR_PLURALS[last]
    elif last.endswith("s"):
        pass  # already a plural head ("sneakers", "plains")
    elif last.endswith(("x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in ("a", "e", "i", "o", "u"):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return " ".join([*rest, last])


def singulars(word: str) -> list[str]:
    """The singulars ``word`` may be the plural of ("cookies" -> "cookie", "cooky")."""
    if word in _IRREGULAR_SINGULARS:
        return [_IRREGULAR_SINGULARS[word]]
    if not _plural_of(word) or len(word) < 4:
        return []
    found = [word[:-1]]
    if word.endswith("es"):
        found.append(word[:-2])
    if word.endswith("ies"):
        found.append(word[:-3] + "y")
    return found


@functools.cache
def _rewrites() -> tuple[Mapping[str, str], int, frozenset[str]]:
    """Key-group member (US spelling) -> its group's head, phrase heads mapping to themselves;
    the longest key in words; the words a key starts with."""
    seen: dict[str, int] = {}
    for group in SYNONYM_GROUPS:
        for member, _ in _members(group):
            seen[member] = seen.get(member, 0) + 1
    table: dict[str, str] = {}
    for group in KEY_GROUPS:
        members = _members(group)
        head = _spelled(members[0][0])
        if " " in head:
            table.setdefault(head, head)  # read whole, so a rewritten text reads the same
        for member, rewritable in members[1:]:
            key = _spelled(member)
            # A member of two groups, the plural of the head, or an adverbial phrase ("at
            # night", "seen from above": the head would lose its preposition) stays as written.
            plural = head in singulars(key) or key in singulars(head)
            adverbial = key.split(" ")[0] in _FUNCTION_WORDS
            if rewritable and seen[member] == 1 and not (plural or adverbial) and key != head:
                table.setdefault(key, head)
    starts = frozenset(key.split(" ")[0] for key in table)
    return table, max(len(key.split()) for key in table), starts


def _spelled(phrase: str) -> str:
    return " ".join(us_spelling(word) for word in phrase.split(" "))


@functools.lru_cache(maxsize=16384)  # repeats are the exact-key path's common case
def canonical_text(text: str) -> str:
    """``text`` (already normalised) with one form for each thing: US spelling, and each
    member of a key group as its group's head ("a red lorry in a car park" -> "a red truck in
    a parking lot"; "courgettes" -> "zucchinis"). Deterministic and idempotent."""
    table, longest, starts = _rewrites()
    spans = [(m.start(), m.end(), us_spelling(m.group())) for m in _WORD.finditer(text)]
    out: list[str] = []
    position = i = 0
    while i < len(spans):
        first = spans[i][2]
        # Most words start no key: skip the phrase search for them.
        keyed = first in starts or any(s in starts for s in singulars(first))
        for length in range(min(longest, len(spans) - i) if keyed else 0, 0, -1):
            window = spans[i : i + length]
            # Words of a phrase stand apart by one space or a hyphen ("snow-covered").
            if any(text[a[1] : b[0]] not in (" ", "-") for a, b in itertools.pairwise(window)):
                continue
            words = [w for _, _, w in window]
            found = table.get(" ".join(words))
            if found is None:
                for singular in singulars(words[-1]):
                    head = table.get(" ".join([*words[:-1], singular]))
                    if head is not None:
                        found = _plural(head)
                        break
            if found is not None:
                out.append(text[position : window[0][0]] + found)
                position, i = window[-1][1], i + length
                break
        else:
            start, end, word = spans[i]
            out.append(text[position:start] + word)
            position, i = end, i + 1
    out.append(text[position:])
    return "".join(out)
