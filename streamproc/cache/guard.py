"""Verification guard for semantic-cache hits.

Cosine similarity of MiniLM embeddings is blunt about the details that make two videos
different: "a kitten on grass" and "a kitten on grass at night" score 0.87, "two horses"
and "three horses" 0.84. This module extracts the attributes a viewer would notice
(counts, colours, time of day, weather, season, subjects, actions, camera, direction,
size, material, style, negation ...) from both prompts and refuses a cached candidate
whose attributes differ from the request's. It is pure Python: no I/O, no model.

Design decisions (documented because they decide which pairs are "the same scene"):

* Attributes come from a closed vocabulary; a synonym outside the synonym tables turns a
  paraphrase into a miss (a slow answer, never a wrong one). Words outside the vocabulary
  count in one way only: when the prompts align word by word and one unknown word stands
  where another stood ("mango" / "papaya", "Lisbon" / "Prague"), the candidate is
  rejected. An unknown word added or dropped on one side is left to the cosine threshold.
* Symmetric: an attribute present in one prompt and absent in the other rejects
  ("a kitten on grass" never serves "a kitten on grass at night", nor the reverse).
* Synonyms are merged only when the picture is the same: dusk = sunset = sundown,
  dawn = sunrise, snowy = snow-covered, drone shot = aerial footage, cab = taxi,
  plane = airplane, kids = children, sea = ocean. Young animals are distinct subjects
  (kitten != cat, puppy != dog) because the video looks different.
* For people, animals and vehicles the grammatical number counts ("a dog" != "dogs");
  for other nouns it is ignored ("waves" / "a wave" rarely changes the clip).
* Negation is scoped to the few words after "without" / "no" / "not"; a negated word
  does not count as present, and "without people" means the same as "empty".
* English only: a prompt in another language yields no attributes (only the word-swap
  check applies), and MiniLM's cosine across languages is near zero, so a prompt and its
  translation are a miss.

Layout: :mod:`~streamproc.cache.normalize` (prompt text), :mod:`~streamproc.cache.lexicon`
(the vocabulary), :mod:`~streamproc.cache.attributes` (extraction); this module decides.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from streamproc.cache.attributes import FAMILIES, Attributes, extract_attributes, match_phrase
from streamproc.cache.lexicon.build import KNOWN_TOKENS
from streamproc.cache.lexicon.words import STOPWORDS, US_SPELLING
from streamproc.cache.normalize import PUNCT_TOKENS, tokenize

__all__ = [
    "AttributeGuard",
    "GuardVerdict",
    "HitPolicy",
    "HitQuality",
    "hit_quality",
    "lexical_overlap",
]

# --------------------------------------------------------------------------------------
# Words outside the vocabulary
# --------------------------------------------------------------------------------------


def _is_unknown_word(token: str) -> bool:
    return (
        token not in KNOWN_TOKENS
        and token not in STOPWORDS
        and token not in PUNCT_TOKENS
        and not token.isdigit()
    )


def _stem(word: str) -> str:
    """A rough stem that also folds British spellings ("flavourful" ~ "flavorful")."""
    word = US_SPELLING.get(word, word)
    # -our -> -or (colour, flavour, harbour); words like "pour" and "four" only merge with
    # nonsense, which is harmless here.
    word = re.sub(r"(?<=[a-z]{2})our(?=(s|ed|ing|ful|ite|able)?$)", "or", word)
    # travelling -> traveling; merging "filling" with "filing" is an accepted cost.
    word = re.sub(r"(?<=[aeiou])ll(?=(ing|ed|er)$)", "l", word)
    # Crude, but keeps "grinds" and "grinding" from looking like a swap.
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@functools.lru_cache(maxsize=16384)
def _content_tokens(text: str) -> list[str]:
    # Cached: a cache lookup checks one request against several candidates, and a stored
    # prompt is checked again and again. Callers only read the list.
    return [t for t in tokenize(text) if t not in STOPWORDS and t not in PUNCT_TOKENS]


def _unknown_word_swap(request: str, candidate: str) -> tuple[str, str] | None:
    """Unknown words standing in the same place in both prompts ("mango" / "papaya").

    The vocabulary cannot name every fruit, breed or city, and MiniLM scores such swaps
    in otherwise identical long prompts above 0.85. When the prompts align word by word
    and an aligned stretch holds a different unknown word on each side, the change is
    treated as a different scene. An unknown word on one side only (a paraphrase adding
    "shrouded") is not a swap.
    """
    left, right = _content_tokens(request), _content_tokens(candidate)
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "replace":
            continue
        mine = {_stem(t): t for t in left[i1:i2] if _is_unknown_word(t)}
        theirs = {_stem(t): t for t in right[j1:j2] if _is_unknown_word(t)}
        if not mine or not theirs or mine.keys() == theirs.keys():
            continue
        # "clawfoot" / "claw-foot", "watering hole" / "waterhole" are one word written twice.
        joined_left = "".join(map(_stem, left[i1:i2]))
        if "".join(mine) == "".join(theirs) or joined_left == "".join(map(_stem, right[j1:j2])):
            continue
        return _describe(mine), _describe(theirs)
    return None


# --------------------------------------------------------------------------------------
# Guard
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardVerdict:
    """Whether a cached candidate may answer a request, and why not when it may not."""

    accepted: bool
    reason: str | None = None


def _describe(values: Mapping[str, str]) -> str:
    if not values:
        return "none"
    return "+".join(values[key] for key in sorted(values))


class AttributeGuard:
    """Rejects a candidate whose visible attributes differ from the request's."""

    def __init__(self, families: Iterable[str] = FAMILIES, *, memo_size: int = 16384) -> None:
        self._families = tuple(families)
        unknown = set(self._families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown attribute families: {sorted(unknown)}")
        # Attributes of recent prompts: extraction is pure, and costs more than the check.
        self._memo: OrderedDict[str, Attributes] = OrderedDict()
        self._memo_size = memo_size

    def _attributes(self, text: str) -> Attributes:
        found = self._memo.get(text)
        if found is None:
            found = self._memo[text] = extract_attributes(text)
            if len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(text)
        return found

    def check(self, request: str, candidate: str) -> GuardVerdict:
        """Accept when every checked family has the same values in both prompts."""
        wanted = self._attributes(request)
        offered = self._attributes(candidate)
        for family in self._families:
            if family == "wording":
                swap = _unknown_word_swap(request, candidate)
                if swap is not None:
                    return GuardVerdict(False, f"wording_mismatch: {swap[0]} vs {swap[1]}")
                continue
            mine = wanted.get(family, {})
            theirs = offered.get(family, {})
            if mine.keys() != theirs.keys():
                return GuardVerdict(
                    False, f"{family}_mismatch: {_describe(mine)} vs {_describe(theirs)}"
                )
        return GuardVerdict(True)


# --------------------------------------------------------------------------------------
# Hit decision and its quality
# --------------------------------------------------------------------------------------


def lexical_overlap(a: str, b: str) -> float:
    """Jaccard overlap of content words, after mapping known synonyms to one word.

    Used only as a second-stage check for candidates between the lower and the main
    threshold: a paraphrase below 0.85 cosine usually still shares its key words.
    """

    def bag(text: str) -> set[str]:
        tokens = tokenize(text)
        words: set[str] = set()
        i = 0
        while i < len(tokens):
            hit = match_phrase(tokens, i)
            if hit is not None and hit[0]:
                words.update(f"{fam}:{val}" for fam, val in hit[0] if fam != "plurality")
                i += hit[1]
                continue
            token = tokens[i]
            if token not in STOPWORDS and token not in PUNCT_TOKENS:
                words.add(token)
            i += 1
        return words

    left, right = bag(a), bag(b)
    if not left and not right:
        return 1.0
    return len(left & right) / len(left | right)


@dataclass(frozen=True)
class HitPolicy:
    """When a nearest neighbour may answer a request.

    ``similarity_threshold`` is ``cache.similarity_threshold``. A candidate at or above it
    is a hit when the guard accepts. With ``verified_threshold`` set below it
    (``cache.verified_threshold``), a candidate in between is also a hit when the guard
    accepts and the prompts share at least ``min_overlap`` of their content words
    (``cache.min_lexical_overlap``).
    """

    similarity_threshold: float = 0.85
    use_guard: bool = True
    verified_threshold: float | None = None
    min_overlap: float = 0.0

    def is_hit(
        self, cosine: float, request: str, candidate: str, guard: AttributeGuard | None = None
    ) -> bool:
        """The decision for one (request, nearest candidate) pair with its cosine."""
        floor = self.similarity_threshold
        if self.verified_threshold is not None:
            floor = min(floor, self.verified_threshold)
        if cosine < floor:
            return False
        if self.use_guard and not (guard or AttributeGuard()).check(request, candidate).accepted:
            return False
        if cosine >= self.similarity_threshold:
            return True
        return lexical_overlap(request, candidate) >= self.min_overlap


@dataclass(frozen=True)
class HitQuality:
    """Confusion counts of hit decisions against same-scene labels."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        """Share of hits that were the same scene (1.0 when there are no hits)."""
        hits = self.tp + self.fp
        return self.tp / hits if hits else 1.0

    @property
    def recall(self) -> float:
        """Share of same-scene pairs that were hits."""
        positives = self.tp + self.fn
        return self.tp / positives if positives else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def hit_quality(decisions: Sequence[bool], labels: Sequence[bool]) -> HitQuality:
    """Compare hit decisions with ground-truth labels (True = same scene)."""
    if len(decisions) != len(labels):
        raise ValueError("decisions and labels differ in length")
    tp = sum(1 for d, y in zip(decisions, labels, strict=True) if d and y)
    fp = sum(1 for d, y in zip(decisions, labels, strict=True) if d and not y)
    fn = sum(1 for d, y in zip(decisions, labels, strict=True) if not d and y)
    return HitQuality(tp=tp, fp=fp, fn=fn, tn=len(labels) - tp - fp - fn)
