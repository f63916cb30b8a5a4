"""Verification guard for semantic-cache hits.

Cosine similarity of MiniLM embeddings is blunt about the details that make two videos
different: "a kitten on grass" and "a kitten on grass at night" score 0.87, and "a dog
chasing a cat" and "a cat chasing a dog" 0.98 — the same words in other roles. The guard
reads both prompts with a dependency parser (:mod:`~streamproc.cache.scene`) and accepts a
cached candidate only when the two describe the same scene:

1. **words** — every content word of one prompt has a counterpart in the other: the same
   lemma (so inflection and voice do not matter), the same word in US spelling, a member of
   the same synonym group, the other region's word ("lorry" / "truck"), or, between two words
   no group lists, a WordNet synonym of the same part of speech ("purchasing" / "buying":
   :mod:`~streamproc.cache.wordnet`), or an adjective WordNet makes from the noun that shares
   its stem ("woolly" / "wool"), or a phrase WordNet gives the same first sense as its last
   word, matched through that word ("french fries" / "fries" / "chips"); last, for words
   still left over on both sides, a looser WordNet tie between adjectives, adverbs or verbs
   ("snug" / "cozy", "shivering" / "trembling"). A word without a counterpart is a changed or
   added detail: objects, actions, colours, time of day, weather, places, styles — no list of
   them is needed;
2. **negation** — a word negated on one side only ("with" / "without cheese");
3. **number** — aligned nouns with different counts ("two" / "three"; "a dog" / "dogs");
4. **roles** — an aligned participant that is the agent, patient or recipient of an action
   on one side and another of them on the other, whatever the voice: "a cat chased by a dog"
   = "a dog chasing a cat" but != "a dog chased by a cat"; the owner of a patient counts as a
   patient ("a nurse bandaging a soldier's arm" != "a soldier bandaging a nurse's arm"), who
   takes, paints or draws a picture of whom is a role too, and an action whose agents differ
   on the two sides was done by someone else ("a teacher listening as a student explains" !=
   "a student listening as a teacher explains"); and two adjectives, or an adjective and a
   manner adverb, that trade what they describe ("a tiny boat on a huge wave" / "a huge boat
   on a tiny wave", "walking slowly past a fast car" / "walking fast past a slow car"), or an
   adjective right before its noun on both sides that describes another thing on the other
   ("a dog wearing a tiny hat" / "a tiny dog wearing a hat");
5. **relations** — the same two things placed differently ("above" / "beside", "behind" /
   "in front of", left / right, inside / outside, on / under), the relation reversed
   ("a cat on a box" / "a box on a cat"; "X below Y" = "Y above X"), or a way run the other
   way ("from the village to the summit", "left to right");
6. **particles** — states and directions: "lights on" / "off", "zoom in" / "out" differ even
   when one side says nothing; up / down, forward / back, toward / away, over / under only
   against their opposite ("climbing up a ladder" is "climbing a ladder"). A direction is read
   whether the parser makes it a particle or a preposition ("moving up / down a staircase").

Filler ("generate a video of", "video request:", "a short clip showing", ", 4k, high
quality") is removed by :func:`~streamproc.cache.normalize.normalize_prompt` before both the
embedding and the parse.
The verdict names the first check that failed and the words involved. Symmetric by
construction. English only: a prompt in another language parses into nonsense words that
must then match exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from streamproc.cache.lexicon.relations import OPPOSITE, POSTURES, STATES, SYMMETRIC
from streamproc.cache.normalize import request_word
from streamproc.cache.scene import Relation, Role, Scene, SceneReader, Word
from streamproc.cache.wordnet import WordNet, load_wordnet
from streamproc.cache.words import (
    GROUP_MEMBERS,
    SYNONYM_HEADS,
    canonical_text,
    regional_pair,
    us_spelling,
)
from streamproc.settings import CacheSettings

__all__ = [
    "CHECKS",
    "AttributeGuard",
    "GuardVerdict",
    "HitPolicy",
    "HitQuality",
    "hit_quality",
    "lexical_overlap",
]

_CACHE_DEFAULTS: Final = CacheSettings()

#: The guard's checks, in the order a rejection reports them.
CHECKS: Final[tuple[str, ...]] = ("word", "negation", "number", "role", "relation", "particle")


@dataclass(frozen=True)
class GuardVerdict:
    """Whether a cached candidate may answer a request, and why not when it may not.

    ``reason`` reads ``"<check>_mismatch: <request side> vs <candidate side>"``, e.g.
    ``"role_mismatch: dog agent of chase vs dog patient of chase"``.
    """

    accepted: bool
    reason: str | None = None


# --------------------------------------------------------------------------------------
# Alignment: which word of the candidate stands for which word of the request
# --------------------------------------------------------------------------------------


def _same(left: Word, right: Word) -> bool:
    if left.keys & right.keys:
        return True
    return any(regional_pair(x, y) for x in left.forms for y in right.forms)


def _spellings(word: Word) -> set[str]:
    return {form.replace("-", "").replace(" ", "") for form in (*word.forms, word.text)}


def _joined(words: Sequence[Word], i: int) -> set[str]:
    # Two neighbouring words written as one elsewhere ("skate park" / "skatepark",
    # "watering hole" / "waterhole").
    if i + 1 >= len(words):
        return set()
    return {a + b for a in _spellings(words[i]) for b in _spellings(words[i + 1])}


def _parts(text: str) -> list[str]:
    return [us_spelling(part) for part in text.split("-") if part]


def _says(part: str, other: Word) -> bool:
    """Whether ``other`` says the word ``part``: one of its forms in US spelling, or the same
    key-group head ("shop" / "store")."""
    forms = (other.text, other.lemma, *other.forms)
    return part in {us_spelling(form) for form in forms} or canonical_text(part) in {
        canonical_text(form) for form in forms
    }


def _phrase_said_apart(word: Word, others: Sequence[Word], taken: Mapping[int, int]) -> list[int]:
    """Neighbouring words of ``others`` without counterparts that say the words of the phrase
    ``word`` in its order ("a corner shop" / "a corner store"); [] when none do. Only in
    order and side by side: "a hot dog" is no dog on a hot plate."""
    parts = word.text.split(" ")
    if len(parts) < 2:
        return []
    for start in range(len(others) - len(parts) + 1):
        run = range(start, start + len(parts))
        if all(
            j not in taken and _says(part, others[j]) for j, part in zip(run, parts, strict=True)
        ):
            return list(run)
    return []


def _said_apart(word: Word, others: Sequence[Word], taken: Mapping[int, int]) -> list[int]:
    """The words of ``others`` without counterparts that say the parts of the hyphenated
    ``word``: one word with the same parts, or one word for each part; [] when none do."""
    if " " in word.text:
        return _phrase_said_apart(word, others, taken)
    parts = _parts(word.text)
    if len(parts) < 2:
        return []
    free = [j for j in range(len(others)) if j not in taken]
    for j in free:
        if "-" in others[j].text and _parts(others[j].text) == parts:
            return [j]
    found: list[int] = []
    for part in parts:
        match = next(
            (j for j in free if j not in found and _says(part, others[j])),
            None,
        )
        if match is None:
            return []
        found.append(match)
    return found


def _both_ways(
    left: Scene, right: Scene, forward: dict[int, int], backward: dict[int, int]
) -> tuple[tuple[Sequence[Word], Sequence[Word], dict[int, int], dict[int, int]], ...]:
    """(words, other words, their mapping, the other's) from each side in turn."""
    return (
        (left.words, right.words, forward, backward),
        (right.words, left.words, backward, forward),
    )


def _closed_compound(word: Word, other: Scene, taken: Mapping[int, int]) -> tuple[int, int] | None:
    """(head, modifier) of two nouns that ``other`` links as one thing ("the river bank", "the
    bank of the river") and ``word`` writes as one word, the modifier first ("riverbank");
    None when there are none. "a house dog" is no "doghouse"."""
    for head, modifier in other.links:
        if head in taken or modifier in taken:
            continue
        first, second = other.words[modifier], other.words[head]
        if first.kind != "noun" or second.kind != "noun":
            continue
        if len(first.lemma) < 3 or len(second.lemma) < 3:
            continue
        if {m + h for m in first.forms for h in second.forms} & word.forms:
            return head, modifier
    return None


def _player_of(word: Word, other: Scene, taken: Mapping[int, int]) -> tuple[int, int] | None:
    """(player, instrument) where ``word`` names who plays what ``other`` says as "an X
    player": "a violinist" / "a violin player", "a pianist" / "a piano player", "a drummer" /
    "a drum player" (the noun less "-ist" or "-er" and the instrument begin alike)."""
    if not word.lemma.endswith(("ist", "er")) or len(word.lemma) < 6:
        return None
    stem = word.lemma[: -3 if word.lemma.endswith("ist") else -2]
    for head, modifier in other.links:
        if head in taken or modifier in taken or other.words[head].lemma != "player":
            continue
        played = other.words[modifier].lemma
        if len(played) >= 3 and (played.startswith(stem) or stem.startswith(played)):
            return head, modifier
    return None


def _spelled_out(
    word: Word, others: Sequence[Word], taken: Mapping[int, int], wordnet: WordNet | None
) -> list[int]:
    """The neighbouring words of ``others``, none aligned yet, whose initials spell ``word``
    (two to five letters, one word per letter); [] when there are none. An acronym WordNet
    lists must mean that phrase there ("UFO" is an unidentified flying object, not an
    "unusual flying owl"); one it does not list, of three letters or more, is read by its
    initials alone ("ISS")."""
    letters = word.text
    if not 2 <= len(letters) <= 5 or not letters.isalpha():
        return []
    listed = frozenset(wordnet.all_senses(letters, "noun")) if wordnet is not None else frozenset()
    if not listed and len(letters) < 3:
        return []  # two letters of an unlisted word are too easily a coincidence ("an RC plane")
    for start in range(len(others) - len(letters) + 1):
        span = range(start, start + len(letters))
        phrase = [others[j] for j in span]
        if not all(
            j not in taken and " " not in w.text and w.text[:1] == letters[k]
            for k, (j, w) in enumerate(zip(span, phrase, strict=True))
        ):
            continue
        if not listed:
            return list(span)
        assert wordnet is not None  # (only WordNet lists an acronym)
        written = " ".join(w.text for w in phrase[:-1]) + " " + phrase[-1].lemma
        if not listed.isdisjoint(wordnet.all_senses(written, "noun")):
            return list(span)
    return []


def _group_sense(wordnet: WordNet, word: Word, kind: str) -> bool:
    """Whether a hand-written group fixes ``word`` to another sense than WordNet's first.

    A group fixes the sense a prompt means by its word, where WordNet's most frequent sense
    may be another ("jog" is to ramble on, "bike" a motorcycle, "draw" to pull, "pool" a pond):
    such a word is tied only by its group. Where WordNet ties the word's first sense, as the
    prompt's kind, to another member of each of its groups, the group means that sense and
    WordNet may tie it further ("pull" / "drag", so "tugging" / "pulling"; "small" / "little",
    so "wee" / "small"; the verb "bike" / "bicycle", so "biking" / "cycling"). So may it where
    WordNet lists no other member as that kind.
    """
    forms = frozenset(form for form in word.forms if form in SYNONYM_HEADS)
    if not forms:
        return False
    # Bounded: only words of the groups are keys.
    key = (id(wordnet), forms, kind)
    found = _GROUP_SENSES.get(key)
    if found is None:
        found = _GROUP_SENSES[key] = _fixed_by_group(wordnet, forms, kind)
    return found


#: (WordNet, a word's grouped forms, kind) -> whether its groups fix another sense.
_GROUP_SENSES: dict[tuple[int, frozenset[str], str], bool] = {}


def _fixed_by_group(wordnet: WordNet, forms: frozenset[str], kind: str) -> bool:
    for form in forms:
        mine = {form, us_spelling(form)}
        for head in SYNONYM_HEADS[form]:
            # A group whose other members WordNet does not list as this kind fixes no sense
            # of it: "boots" for the verb "booting", "gentle" for the adverb "gently".
            others = {
                other
                for other in GROUP_MEMBERS.get(head, frozenset()) - mine
                if wordnet.all_senses(other, kind)
            }
            if others and not any(
                wordnet.synonyms(mine, {other}, kind)
                or wordnet.near_synonyms(mine, {other}, kind, first_of_left=True) is not None
                for other in others
            ):
                return True
    return False


#: The parts of speech WordNet lists.
_WORDNET_KINDS: Final = ("noun", "verb", "adjective", "adverb")


def _kinds(wordnet: WordNet, word: Word, other: Word) -> tuple[str, ...]:
    """The kinds to compare two words as: their own, or where the tagger gave them two, each
    of the two that WordNet lists both words as ("a chubby hamster" / "a plump hamster",
    "their pal" / "their friend": the tagger took "chubby" for a name and "pal" for an
    adjective)."""
    if word.kind == other.kind:
        return (word.kind,)
    return tuple(
        kind
        for kind in (word.kind, other.kind)
        if kind in _WORDNET_KINDS
        and wordnet.all_senses(word.lemma, kind)
        and wordnet.all_senses(other.lemma, kind)
    )


def _synonyms(wordnet: WordNet, word: Word, other: Word) -> bool:
    # A word whose group fixes another sense is tied by WordNet only where neither word has
    # another sense to mean ("grandpa" / "grandad").
    left, right = ({w.lemma, us_spelling(w.lemma)} for w in (word, other))
    for kind in _kinds(wordnet, word, other):
        if _group_sense(wordnet, word, kind) or _group_sense(wordnet, other, kind):
            if wordnet.one_sense_each(left, right, kind):
                return True
        elif wordnet.synonyms(left, right, kind) or wordnet.sole_sense_shared(left, right, kind):
            return True
    return False


def _near_synonyms(wordnet: WordNet, word: Word, other: Word) -> bool:
    # "snug" / "cozy", "discovering" / "finding", "shivering" / "trembling": only between
    # words whose groups, if any, mean WordNet's first sense.
    left, right = ({w.lemma, us_spelling(w.lemma)} for w in (word, other))
    return any(
        not _group_sense(wordnet, word, kind)
        and not _group_sense(wordnet, other, kind)
        and wordnet.near_synonyms(left, right, kind) is not None
        for kind in _kinds(wordnet, word, other)
    )


def _phrasal_synonyms(wordnet: WordNet, word: Word, other: Word, particles: frozenset[str]) -> bool:
    # "switches on" / "turns on": phrasal verbs WordNet lists, with a particle both prompts
    # have. The phrase fixes the sense, so a hand-written group of either verb does not bar it.
    if word.kind != "verb" or other.kind != "verb":
        return False
    return any(
        wordnet.synonyms({f"{word.lemma} {p}"}, {f"{other.lemma} {p}"}, "verb") for p in particles
    )


def _adverb_of(word: Word, other: Word) -> bool:
    # "a dim kitchen" / "a dimly lit kitchen", "a gentle breeze" / "blowing gently": the
    # adjective and the adverb English makes of it ("-ly", "-y" to "-ily", "-le" to "-ly",
    # "-ic" to "-ically").
    if word.kind != "adjective" or other.kind != "adverb":
        return False
    stem = word.lemma
    made = {stem + "ly"}
    if stem.endswith("y"):
        made.add(stem[:-1] + "ily")
    if stem.endswith("le"):
        made.add(stem[:-1] + "y")
    if stem.endswith("ic"):
        made.add(stem + "ally")
    return other.text in made


def _lit_by(word: Word, other: Word) -> bool:
    # "a moonlit forest" / "a forest lit by the moon", "a candlelit table" / "a table lit by
    # candles": the light the adjective names, said as a noun.
    text = word.text.replace("-", "")
    if not text.endswith("lit") or len(text) < 6 or other.kind != "noun":
        return False
    source = text[:-3]
    return bool({source, source + "light"} & other.forms)


def _derived(wordnet: WordNet, word: Word, other: Word) -> bool:
    # "woolly" is often tagged an adverb, for its "-ly".
    modifier = word.kind == "adjective" or (word.kind == "adverb" and word.text.endswith("ly"))
    if not modifier or other.kind not in ("noun", "name"):  # "Brazilian" / "Brazil"
        return False
    adjectives = {word.text, word.lemma, us_spelling(word.text)}
    nouns = {other.lemma, us_spelling(other.lemma), *other.forms}
    # The pointer joins synsets, so the two words must also share their stem ("windy" is
    # related to a synset of "wind" that holds other words too).
    made = {n for n in nouns if any(_shares_stem(a, n) for a in adjectives)}
    return bool(made) and wordnet.derived_from(adjectives, made)


def _shares_stem(adjective: str, noun: str) -> bool:
    # "wool"/"woolly", "shade"/"shady", "smoke"/"smoky", "mud"/"muddy".
    pairs = zip(adjective, noun, strict=False)  # the shorter word ends the stem
    stem = next((i for i, (a, n) in enumerate(pairs) if a != n), min(len(adjective), len(noun)))
    return stem >= 3 and stem >= len(noun) - 1


def _traits(scene: Scene) -> dict[int, set[str]]:
    # Each noun's adjectives, by their keys.
    traits: dict[int, set[str]] = {}
    for role in scene.roles:
        if role.role == "property":
            traits.setdefault(role.participant, set()).update(scene.words[role.verb].keys)
    return traits


def _interchangeable(scene: Scene, words: Sequence[int]) -> bool:
    # Whether the words do the same and are with things that do the same, apart from their
    # adjectives.
    return len({_signature(scene, i) for i in words}) == 1


def _signature(scene: Scene, i: int) -> frozenset[tuple[object, ...]]:
    def roles_of(k: int) -> frozenset[tuple[str, frozenset[str]]]:
        return frozenset(
            (r.role, scene.words[r.verb].keys)
            for r in scene.roles
            if r.participant == k and r.role not in _TRAITS and r.role != "with"
        )

    # What the word does, and what the things placed with it do: "a boxer in red gloves
    # knocks down ..." gives the gloves the knocking boxer's role. Where a place phrase hangs
    # is not compared (the parser puts "flying above a beach" on the last of two kites).
    found: set[tuple[object, ...]] = {("role", *r) for r in roles_of(i)}
    for rel in scene.relations:
        for me, other in ((rel.subject, rel.anchor), (rel.anchor, rel.subject)):
            if me == i:
                found |= {("with", *r) for r in roles_of(other)}
    return frozenset(found)


def _said_as_verb_and_noun(
    wordnet: WordNet,
    word: Word,
    others: Sequence[Word],
    taken: Mapping[int, int],
    counterpart: int | None,
) -> tuple[int, int] | None:
    """The verb and the noun among ``others`` that WordNet's definition of the verb ``word``
    names (the noun may be the verb's own word: "skateboard"), the verb still without a
    counterpart and the noun too, unless it is already ``word``'s own counterpart; or None."""
    if word.kind != "verb" or (counterpart is not None and others[counterpart].kind != "noun"):
        return None
    defined = wordnet.defined_by(word.lemma)
    if not defined:
        return None
    free = [j for j in range(len(others)) if j not in taken]
    verbs = [j for j in free if others[j].kind == "verb" and others[j].lemma in defined]
    nouns = (
        [counterpart]
        if counterpart is not None
        else [
            j
            for j in free
            if others[j].kind == "noun"
            and (others[j].lemma in defined or others[j].lemma == word.lemma)
        ]
    )
    return (verbs[0], nouns[0]) if verbs and nouns else None


def _young_ones(scene: Scene, animals: frozenset[str], taken: Mapping[int, int]) -> list[Role]:
    # "young" said of one of ``animals``, both words still without a counterpart; or written
    # straight before it, where the parser hung the adjective elsewhere ("a young dog tumbles"
    # with "young" said of "tumbles").
    said = [r for r in scene.roles if r.role == "property"]
    said += [Role(i, "property", i + 1) for i in range(len(scene.words) - 1)]
    return [
        role
        for role in said
        if scene.words[role.verb].lemma == "young"
        and scene.words[role.participant].kind == "noun"
        and animals & scene.words[role.participant].keys
        and role.verb not in taken
        and role.participant not in taken
    ]


def _phrase_heads(wordnet: WordNet, word: Word) -> set[str]:
    # The last words of a noun phrase's forms that name the same first sense as the phrase.
    if word.kind != "noun":
        return set()
    phrases = {form for form in word.forms if " " in form}
    heads = {form.rsplit(" ", 1)[1] for form in phrases}
    return {head for head in heads if wordnet.synonyms(phrases, {head}, "noun")}


def _head_matches(heads: set[str], other: Word) -> bool:
    if heads & other.keys:
        return True
    return any(regional_pair(head, form) for head in heads for form in other.forms)


@dataclass
class _Alignment:
    forward: dict[int, int]
    backward: dict[int, int]
    left_over: list[int]
    right_over: list[int]


def _align(left: Scene, right: Scene, wordnet: WordNet | None = None) -> _Alignment:
    forward: dict[int, int] = {}
    backward: dict[int, int] = {}
    mine_traits, their_traits = _traits(left), _traits(right)
    for strict in (True, False):
        for i, word in enumerate(left.words):
            if i in forward:
                continue
            found = [
                j
                for j, other in enumerate(right.words)
                if j not in backward
                and (
                    (word.kind == other.kind and bool(word.keys & other.keys))
                    if strict
                    else _same(word, other)
                )
            ]
            if found:
                j = found[0]
                if len(found) > 1 and _interchangeable(right, found):
                    # The same noun twice, doing and placed alike ("a red kite and a blue kite
                    # flying"): the one described alike. Not where they differ otherwise ("a
                    # boxer in red gloves knocks down a boxer in blue gloves").
                    j = max(
                        found,
                        key=lambda j: len(mine_traits.get(i, set()) & their_traits.get(j, set())),
                    )
                forward[i], backward[j] = j, i
    for words, others, mine, theirs in _both_ways(left, right, forward, backward):
        for i in range(len(words) - 1):
            if i in mine:
                continue
            joined = _joined(words, i)
            if i + 1 in mine:
                # The head found its counterpart through a group that holds the two words
                # written as one: "the sea shore" / "the beach" ("beach|shore|seashore").
                head = others[mine[i + 1]]
                if any(SYNONYM_HEADS.get(form, frozenset()) & head.keys for form in joined):
                    mine[i] = mine[i + 1]
                continue
            for j, other in enumerate(others):
                if j not in theirs and joined & _spellings(other):
                    mine[i] = mine[i + 1] = j
                    theirs[j] = i
                    break
    # A hyphenated word and its parts said apart on the other side, in any order ("a
    # rain-streaked window" / "a window streaked with rain", "a sun-drenched terrace" / "a
    # terrace drenched in sun"), or in another spelling ("colour-coded" / "color-coded").
    for words, others, mine, theirs in _both_ways(left, right, forward, backward):
        for i, word in enumerate(words):
            apart = _said_apart(word, others, theirs) if i not in mine else []
            if apart:
                mine[i] = apart[-1]
                for j in apart:
                    theirs[j] = i
    # An acronym and the words it abbreviates, written out on the other side: "the ISS" /
    # "the International Space Station", "a UFO" / "an unidentified flying object".
    for words, others, mine, theirs in _both_ways(left, right, forward, backward):
        for i, word in enumerate(words):
            if i in mine:
                continue
            spelled = _spelled_out(word, others, theirs, wordnet)
            if spelled:
                mine[i] = spelled[-1]  # the phrase's head: "station", "object"
                for j in spelled:
                    theirs[j] = i
    # A noun written as one word and as its two nouns: "the riverbank" / "the bank of the
    # river" or "the river bank", "a sandcastle" / "a castle of sand".
    for scene, facing, mine, theirs in (
        (left, right, forward, backward),
        (right, left, backward, forward),
    ):
        for i, word in enumerate(scene.words):
            if i in mine or word.kind != "noun":
                continue
            parts = _closed_compound(word, facing, theirs) or _player_of(word, facing, theirs)
            if parts is not None:
                mine[i] = parts[0]
                theirs[parts[0]] = theirs[parts[1]] = i
    if wordnet is not None:
        # An adjective WordNet makes from a noun, and the noun: "a woolly jumper" / "a wool
        # jumper", "a muddy boot" / "a boot covered in mud".
        for words, others, mine, theirs in _both_ways(left, right, forward, backward):
            for i, word in enumerate(words):
                if i in mine:
                    continue
                for j, other in enumerate(others):
                    if j not in theirs and (
                        _derived(wordnet, word, other)
                        or _adverb_of(word, other)
                        or _lit_by(word, other)
                    ):
                        mine[i], theirs[j] = j, i
                        break
        # A noun WordNet defines as the young of an animal, and that animal called young:
        # "a puppy" / "a young dog", "a kitten" / "a young cat".
        for words, scene, mine, theirs in (
            (left.words, right, forward, backward),
            (right.words, left, backward, forward),
        ):
            for i, word in enumerate(words):
                animals = wordnet.young_of(word.lemma) if i not in mine else frozenset()
                if not animals:  # ("a kitten sleeping" may leave "kitten" an adjective)
                    continue
                for young in _young_ones(scene, animals, theirs):
                    mine[i], theirs[young.participant], theirs[young.verb] = (
                        young.participant,
                        i,
                        i,
                    )
                    break
        # A phrase WordNet gives the same first sense as its last word stands for that word:
        # "french fries" is "fries", and so the other region's "chips" ("soccer ball" is no
        # plain "ball": another first sense).
        for words, others, mine, theirs in _both_ways(left, right, forward, backward):
            for i, word in enumerate(words):
                heads = _phrase_heads(wordnet, word) if i not in mine else set()
                for j, other in enumerate(others):
                    if heads and j not in theirs and _head_matches(heads, other):
                        mine[i], theirs[j] = j, i
                        break
        # Two nouns that WordNet lists as one, and its synonym: "a mountain climber" / "a
        # mountaineer", "a soccer player" / ... (only as a first sense, like single words).
        for words, others, mine, theirs in _both_ways(left, right, forward, backward):
            for i in range(len(words) - 1):
                first, second = words[i], words[i + 1]
                if i in mine or i + 1 in mine or first.kind != "noun" or second.kind != "noun":
                    continue
                compound = {f"{first.lemma} {second.lemma}", f"{first.text} {second.lemma}"}
                for j, other in enumerate(others):
                    if (
                        j not in theirs
                        and other.kind == "noun"
                        and wordnet.synonyms(compound, other.forms, "noun")
                    ):
                        mine[i] = mine[i + 1] = j
                        theirs[j] = i
                        break
        # A verb said on the other side as the verb and the thing its definition names:
        # "skateboarding" / "riding a skateboard" ("skateboard": ride on a flat board …, and
        # the noun is the verb's own word), "surfing" / "riding a surfboard", "biking" /
        # "riding a bicycle", "hoovering" / "cleaning with a vacuum".
        # The noun may already be the verb's counterpart ("vacuuming" / "a vacuum").
        for words, others, mine, theirs in _both_ways(left, right, forward, backward):
            for i, word in enumerate(words):
                said = _said_as_verb_and_noun(wordnet, word, others, theirs, mine.get(i))
                if said is not None:
                    mine[i] = said[0]
                    theirs[said[0]] = theirs[said[1]] = i
        # Last, for words still without a counterpart: a synonym the lexical database knows.
        shared_particles = left.particles & right.particles
        for i, word in enumerate(left.words):
            if i in forward:
                continue
            for j, other in enumerate(right.words):
                if j in backward:
                    continue
                if _synonyms(wordnet, word, other) or _phrasal_synonyms(
                    wordnet, word, other, shared_particles
                ):
                    forward[i], backward[j] = j, i
                    break
        # Then, for words still left over on both sides, a looser tie WordNet knows (a sense
        # further down the list, a verb that is a way of doing the other).
        for i, word in enumerate(left.words):
            if i in forward:
                continue
            for j, other in enumerate(right.words):
                if j not in backward and _near_synonyms(wordnet, word, other):
                    forward[i], backward[j] = j, i
                    break
    mine_unnamed = _unnamed_agents(left, right, forward)
    their_unnamed = _unnamed_agents(right, left, backward)
    # A thing's posture needs no counterpart ("a piano stands in the corner" / "a piano in
    # the corner"), but two different ones are two words ("a statue standing" / "a statue
    # sitting").
    postures = _postures(left, forward) and _postures(right, backward)

    def left_over(scene: Scene, mapping: Mapping[int, int], unnamed: set[int]) -> list[int]:
        return [
            i
            for i, w in enumerate(scene.words)
            if i not in mapping
            and (not w.silent or (postures and _is_posture(w)))
            and i not in unnamed
        ]

    return _Alignment(
        forward,
        backward,
        left_over(left, forward, mine_unnamed),
        left_over(right, backward, their_unnamed),
    )


def _is_posture(word: Word) -> bool:
    return word.kind == "verb" and word.lemma in POSTURES


def _postures(scene: Scene, mapping: Mapping[int, int]) -> bool:
    # Whether a posture verb of ``scene`` is left without a counterpart.
    return any(i not in mapping and _is_posture(w) for i, w in enumerate(scene.words))


#: Pronouns that name no one in particular.
_UNNAMED: Final = frozenset({"someone", "somebody", "people", "person"})


def _unnamed_agents(scene: Scene, other: Scene, mapping: Mapping[int, int]) -> set[int]:
    # "someone is cutting fresh pasta" / "fresh pasta is being cut": an agent nobody is named
    # for is what a passive without agent implies. Only where the aligned action has no
    # agent on the other side that is left without a counterpart ("a chef cuts" names one).
    found: set[int] = set()
    matched = set(mapping.values())
    for role in scene.roles:
        word = scene.words[role.participant]
        verb = mapping.get(role.verb)
        if role.role != "agent" or word.text not in _UNNAMED or role.participant in mapping:
            continue
        named = any(
            r.verb == verb and r.role == "agent" and r.participant not in matched
            for r in other.roles
        )
        if verb is not None and not named:
            found.add(role.participant)
    return found


# --------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------


def _names(words: Iterable[Word]) -> str:
    return "+".join(sorted(word.text for word in words)) or "none"


def _request_words_only(scene: Scene, over: Iterable[int]) -> bool:
    """Whether the words ``over`` of ``scene`` are all about the request, not the scene
    (:func:`~streamproc.cache.normalize.request_word`): "… a panda eating bamboo, deadline
    friday pls", "… a staircase 8k uhd hdr" with no comma. A word that may also be the
    scene's ("presentation", "project") must have nothing of the scene done to it or placed
    by it: "a man presenting a slideshow" / "a man presenting" stays refused. A tag never
    names a thing, wherever the parser hangs it ("staircase 8k uhd hdr" makes "hdr" the
    staircase's head)."""
    over = set(over)
    ends = [(r.verb, r.participant) for r in scene.roles if r.role in _ROLES[1:]]
    ends += [(r.subject, r.anchor) for r in scene.relations]
    tied = {a for a, b in ends if b not in over} | {b for a, b in ends if a not in over}
    kinds = {i: request_word(scene.words[i].text) for i in over}
    return bool(over) and all(
        kind == "tag" or (kind == "asking" and i not in tied) for i, kind in kinds.items()
    )


def _check_words(left: Scene, right: Scene, al: _Alignment) -> str | None:
    if not al.left_over and not al.right_over:
        return None
    # Words about the request on one side only, all of them, where the other side has
    # every word matched: what the filler rules did not cut off.
    if not al.right_over and _request_words_only(left, al.left_over):
        return None
    if not al.left_over and _request_words_only(right, al.right_over):
        return None
    mine = [left.words[i] for i in al.left_over]
    theirs = [right.words[j] for j in al.right_over]
    return f"word_mismatch: {_names(mine)} vs {_names(theirs)}"


def _check_negation(left: Scene, right: Scene, al: _Alignment) -> str | None:
    for i, j in al.forward.items():
        mine, theirs = left.words[i], right.words[j]
        if mine.negated != theirs.negated:
            return f"negation_mismatch: {_polar(mine)} vs {_polar(theirs)}"
    return None


def _polar(word: Word) -> str:
    return f"no {word.text}" if word.negated else word.text


def _count(word: Word) -> str:
    if word.count is not None:
        return f"{word.count} {word.text}"
    return f"{'several' if word.plural else 'one'} {word.text}"


def _counts_differ(mine: Word, theirs: Word) -> bool:
    if mine.count is not None and theirs.count is not None:
        return mine.count != theirs.count
    if mine.count is None and theirs.count is None:
        return None not in (mine.plural, theirs.plural) and mine.plural != theirs.plural
    counted, other = (mine, theirs) if mine.count is not None else (theirs, mine)
    # "one dog" is "a dog"; "three dogs" is not "dogs".
    return other.plural is not None and not (counted.count == 1 and not other.plural)


def _named_plural(word: Word) -> bool:
    return bool(word.plural) and word.text in SYNONYM_HEADS


def _check_number(left: Scene, right: Scene, al: _Alignment) -> str | None:
    for i, j in al.forward.items():
        mine, theirs = left.words[i], right.words[j]
        nouns = mine.kind in ("noun", "name") and theirs.kind in ("noun", "name")
        if not nouns:
            continue
        if not (mine.forms & theirs.forms) and (_named_plural(mine) or _named_plural(theirs)):
            # A group that lists a word in the plural names one thing by it ("flames" /
            # "a fire", "the woods" / "a forest"): only stated counts compare. Other plurals
            # count ("kids" / "a child").
            counted = None not in (mine.count, theirs.count)
            if counted and mine.count != theirs.count:
                return f"number_mismatch: {_count(mine)} vs {_count(theirs)}"
            continue
        if _counts_differ(mine, theirs):
            return f"number_mismatch: {_count(mine)} vs {_count(theirs)}"
    return None


def _check_roles(left: Scene, right: Scene, al: _Alignment) -> str | None:
    theirs = {(r.verb, r.role, r.participant) for r in right.roles if r.certain}
    traits = {(r.verb, r.participant) for r in right.roles if r.role in _TRAITS}
    for role in left.roles:
        if not role.certain:
            continue
        verb, participant = al.forward.get(role.verb), al.forward.get(role.participant)
        if verb is None or participant is None or (verb, role.role, participant) in theirs:
            continue
        if role.role in _TRAITS:
            # A swap counts ("a tiny boat on a huge wave" / "a huge boat on a tiny wave",
            # "walking slowly past a fast car" / "walking fast past a slow car"), and so does
            # an adjective right before its noun on both sides that is before another one on
            # the other ("a dog wearing a tiny hat" / "a tiny dog wearing a hat"). Otherwise
            # not: the parser attaches stacked adjectives inconsistently.
            moved = [r for r in right.roles if r.verb == verb and r.role in _TRAITS]
            for r in moved:
                back = al.backward.get(r.participant)
                swapped = back is not None and any(
                    o.role in _TRAITS
                    and o.participant == back
                    and al.forward.get(o.verb) is not None
                    and (al.forward[o.verb], participant) in traits
                    for o in left.roles
                )
                next_to = (
                    (role.role, r.role) == ("property", "property")
                    and role.participant == role.verb + 1
                    and r.participant == r.verb + 1
                    and "noun" not in (left.words[role.verb].kind, right.words[r.verb].kind)
                    # "a cold soda can" / "a cold can of soda": one thing, named by two nouns
                    and back not in _linked(left, [role.participant])
                    and participant not in _linked(right, [r.participant])
                    # two words of one key ("steel mill" … "molten metal"): either may align
                    and not right.words[r.participant].keys & right.words[participant].keys
                )
                if r.participant != participant and (swapped or (next_to and back is not None)):
                    what = left.words[role.verb].text
                    return (
                        f"role_mismatch: {what} {left.words[role.participant].text} vs "
                        f"{what} {right.words[r.participant].text}"
                    )
            continue
        for other in _ROLES:
            if other != role.role and (verb, other, participant) in theirs:
                who, action = left.words[role.participant].text, left.words[role.verb].text
                return f"role_mismatch: {who} {role.role} of {action} vs {who} {other} of {action}"
    return (
        _check_holdings(left, right, al)
        or _check_patient_swaps(left, right, al)
        or _check_fillers(left, right, al)
    )


def _check_patient_swaps(left: Scene, right: Scene, al: _Alignment) -> str | None:
    # "a woman wearing a hat and holding an umbrella" / "a woman wearing an umbrella and
    # holding a hat": each action is done to the other thing. Only as such a swap, both
    # objects traded between the same two actions: the parser's objects alone are less
    # reliable than its agents ("a glass of whiskey poured over ice").
    mine = {(r.verb, r.participant) for r in left.roles if r.role == "patient" and r.certain}
    theirs = {(r.verb, r.participant) for r in right.roles if r.role == "patient" and r.certain}
    for verb, thing in mine:
        other_verb, other_thing = al.forward.get(verb), al.forward.get(thing)
        if other_verb is None or other_thing is None or (other_verb, other_thing) in theirs:
            continue
        for moved_to in (v for v, t in theirs if t == other_thing and v != other_verb):
            back_verb = al.backward.get(moved_to)
            if back_verb is None or back_verb == verb:
                continue
            traded = (al.backward.get(t) for v, t in theirs if v == other_verb)
            if any(back is not None and (back_verb, back) in mine for back in traded):
                what = left.words[thing].text
                return (
                    f"role_mismatch: {what} patient of {left.words[verb].text} vs "
                    f"{what} patient of {right.words[moved_to].text}"
                )
    return None


def _check_holdings(left: Scene, right: Scene, al: _Alignment) -> str | None:
    # "a boy with a red balloon and a girl with a blue kite" / "a boy with a blue kite and a
    # girl with a red balloon": the balloon is with someone else. Only as such a move: a
    # thing with one owner on one side and without any on the other is no difference (the
    # parser hangs "with" on a verb as often as on a noun).
    for role in (r for r in left.roles if r.role == "with"):
        owner, held = al.forward.get(role.verb), al.forward.get(role.participant)
        if owner is None or held is None:
            continue
        holders = [
            r.verb
            for r in right.roles
            if r.role == "with" and r.participant in _linked(right, [held])
        ]
        if holders and owner not in _linked(right, holders):
            what = left.words[role.participant].text
            return (
                f"role_mismatch: {what} with {left.words[role.verb].text} vs "
                f"{what} with {right.words[holders[0]].text}"
            )
    return None


#: Roles a participant can swap between (an adjective's noun, "property", only swaps nouns).
_ROLES: Final = ("agent", "patient", "recipient", "source")

#: What an adjective or an adverb describes: compared only as a swap between two of them,
#: or as an adjective moved between two nouns it stands right before.
_TRAITS: Final = frozenset({"property", "manner"})


_THINGS: Final = frozenset({"noun", "name"})


def _linked(scene: Scene, words: Iterable[int]) -> set[int]:
    found = set(words)
    for a, b in scene.links:
        if a in found or b in found:
            found.update((a, b))
    return found


def _mapped(al: _Alignment, words: Iterable[int]) -> set[int]:
    return {al.forward[w] for w in words if w in al.forward}


def _check_fillers(left: Scene, right: Scene, al: _Alignment) -> str | None:
    # The same action done by someone else: "a teacher listening as a student explains" /
    # "a student listening as a teacher explains", "a robot serving coffee to a man" / "a
    # man serving coffee to a robot". Both sides name who fills the role and no one of them
    # is the same: the participant moved to another verb or a prepositional object.
    # Agents only: the parser's objects are less reliable ("a glass of whiskey poured over
    # ice" makes the ice the object).
    role = "agent"
    for verb in dict.fromkeys(r.verb for r in left.roles if r.role == role):
        theirs_verb = al.forward.get(verb)
        if theirs_verb is None:
            continue
        mine = [r.participant for r in left.roles if (r.verb, r.role) == (verb, role)]
        theirs = {r.participant for r in right.roles if (r.verb, r.role) == (theirs_verb, role)}
        # Only things fill roles; an adjective or adverb there is a misread noun phrase.
        mine = [p for p in mine if left.words[p].kind in _THINGS]
        theirs = {p for p in theirs if right.words[p].kind in _THINGS}
        # "a field of sunflowers turning" is "a sunflower field turning".
        mapped = {al.forward[p] for p in _linked(left, mine) if p in al.forward}
        if mapped and theirs and mapped.isdisjoint(_linked(right, theirs)):
            action = left.words[verb].text
            who = "+".join(sorted(left.words[p].text for p in mine))
            whom = "+".join(sorted(right.words[p].text for p in theirs))
            return f"role_mismatch: {who} {role} of {action} vs {whom} {role} of {action}"
    return None


def _check_relations(left: Scene, right: Scene, al: _Alignment) -> str | None:
    for start, end in left.paths:
        if (end, start) in right.paths and (start, end) not in right.paths:
            return f"relation_mismatch: {start} to {end} vs {end} to {start}"
    for relation in left.relations:
        if relation.subject not in al.forward or relation.anchor not in al.forward:
            continue
        subjects, anchors = {al.forward[relation.subject]}, {al.forward[relation.anchor]}
        between = _between(right, subjects, anchors)
        linked = not between
        if linked:
            # Either end may be named with the noun it is one thing with: "a bottle of perfume
            # placed behind a vase" places the bottle whichever noun the parser hangs it on.
            # Read so, only a reversed or opposite relation differs.
            subjects = _linked(right, _mapped(al, _linked(left, [relation.subject])))
            anchors = _linked(right, _mapped(al, _linked(left, [relation.anchor])))
            if subjects & anchors:
                continue
            between = _between(right, subjects, anchors)
            between = [r for r in between if _contradicts(relation, r, subjects)]
        if not between:
            continue
        agrees = not linked and any(
            (r.subject in subjects and r.anchor in anchors and r.kind == relation.kind)
            or (r.kind == relation.kind and relation.kind in SYMMETRIC)
            for r in between
        )
        if agrees:
            continue
        other = between[0]
        return f"relation_mismatch: {_relation(left, relation)} vs {_relation(right, other)}"
    return (
        _check_positions(left, right, al)
        or _check_stray_places(left, right, al)
        or _check_place_phrases(left, right)
    )


#: Where in the picture a thing is: "a cat on the left", "a vase in the foreground".
_POSITIONS: Final = frozenset(
    {"left", "right", "top", "bottom", "front", "back", "middle", "center", "centre"}
    | {"foreground", "background"}
)


def _check_positions(left: Scene, right: Scene, al: _Alignment) -> str | None:
    # "a cat on the left and a dog on the right" / "a cat on the right and a dog on the
    # left": each position is placed somewhere on both sides, so no relation is missing, but
    # the cat's position is another one.
    for relation in left.relations:
        where = us_spelling(left.words[relation.anchor].lemma)  # "centre" is "center"
        theirs = al.forward.get(relation.subject)
        if where not in _POSITIONS or theirs is None:
            continue
        there = [
            r
            for r in right.relations
            if r.subject == theirs and right.words[r.anchor].lemma in _POSITIONS
        ]
        if there and all(us_spelling(right.words[r.anchor].lemma) != where for r in there):
            return f"relation_mismatch: {_relation(left, relation)} vs {_relation(right, there[0])}"
    return None


def _check_place_phrases(left: Scene, right: Scene) -> str | None:
    # "asleep on top of the washing machine" / "asleep next to the washing machine" with one
    # of them attached to nothing: each prompt places something in a way the other never
    # does. (A kind said on one side only is no difference: "a cup on a table" / "a cup on
    # top of a table".)
    mine = Counter(kind for kind, _ in left.places)
    theirs = Counter(kind for kind, _ in right.places)
    extra, missing = mine - theirs, theirs - mine
    if extra and missing:
        said = next(surface for kind, surface in left.places if kind in extra)
        other = next(surface for kind, surface in right.places if kind in missing)
        return f"relation_mismatch: {said} vs {other}"
    return None


def _check_stray_places(left: Scene, right: Scene, al: _Alignment) -> str | None:
    # "a reporter speaks to the camera in front of the stadium" / "... inside the stadium"
    # with the place hung on the reporter in one parse and on the camera in the other: no
    # relation joins the same two things, yet the same anchor is placed otherwise. Where
    # neither thing has a place of its own relative to that anchor on the other side, two
    # kinds of place for it differ.
    for relation in left.relations:
        subject, anchor = al.forward.get(relation.subject), al.forward.get(relation.anchor)
        if subject is None or anchor is None or _between(right, {subject}, {anchor}):
            continue
        for other in right.relations:
            mine = al.backward.get(other.subject)
            if (
                other.anchor != anchor
                or other.subject == subject
                or mine is None
                or other.kind == relation.kind
                or _between(left, {mine}, {relation.anchor})
            ):
                continue
            return f"relation_mismatch: {_relation(left, relation)} vs {_relation(right, other)}"
    return None


def _between(scene: Scene, subjects: set[int], anchors: set[int]) -> list[Relation]:
    return [
        r
        for r in scene.relations
        if (r.subject in subjects and r.anchor in anchors)
        or (r.subject in anchors and r.anchor in subjects)
    ]


def _contradicts(relation: Relation, other: Relation, subjects: set[int]) -> bool:
    if other.subject in subjects:
        return OPPOSITE.get(relation.kind) == other.kind
    return relation.kind == other.kind and relation.kind not in SYMMETRIC


def _relation(scene: Scene, relation: Relation) -> str:
    first, second = scene.words[relation.subject].text, scene.words[relation.anchor].text
    if relation.written_reversed:
        first, second = second, first
    return f"{first} {relation.surface} {second}"


def _check_particles(left: Scene, right: Scene, al: _Alignment) -> str | None:
    del al
    differ = left.particles ^ right.particles
    clash = {p for p in differ if p in STATES} | {
        p for p in left.particles if OPPOSITE[p] in right.particles - left.particles
    }
    if not clash:
        return None
    mine = "+".join(sorted(left.particles)) or "none"
    theirs = "+".join(sorted(right.particles)) or "none"
    return f"particle_mismatch: {mine} vs {theirs}"


_CHECKERS: Final = {
    "word": _check_words,
    "negation": _check_negation,
    "number": _check_number,
    "role": _check_roles,
    "relation": _check_relations,
    "particle": _check_particles,
}


class AttributeGuard:
    """Rejects a candidate that does not describe the request's scene (see the module doc).

    Loads the parser and the WordNet tables when built (about 1.5 s and 0.4 s, once per
    process): build it off the event loop. ``checks`` limits the guard to some of
    :data:`CHECKS`.
    """

    def __init__(
        self,
        checks: Iterable[str] = CHECKS,
        *,
        reader: SceneReader | None = None,
        wordnet: WordNet | None = None,
    ) -> None:
        self._checks = tuple(checks)
        unknown = set(self._checks) - set(CHECKS)
        if unknown:
            raise ValueError(f"unknown guard checks: {sorted(unknown)}")
        self._reader = reader or SceneReader()
        self._reader.load()
        self._wordnet = wordnet or load_wordnet()

    def scene(self, prompt: str) -> Scene:
        """The parsed scene of ``prompt`` (memoised)."""
        return self._reader.read(prompt)

    def check(self, request: str, candidate: str) -> GuardVerdict:
        """Accept when every check finds the two prompts' scenes the same."""
        left, right = self._reader.read(request), self._reader.read(candidate)
        alignment = _align(left, right, self._wordnet)
        for name in self._checks:
            reason = _CHECKERS[name](left, right, alignment)
            if reason is None and name != "word":
                # Every check is asked both ways round, so the verdict is symmetric.
                flipped = _Alignment(
                    alignment.backward, alignment.forward, alignment.right_over, alignment.left_over
                )
                if _CHECKERS[name](right, left, flipped) is not None:
                    reason = _swap_sides(_CHECKERS[name](right, left, flipped))
            if reason is not None:
                return GuardVerdict(False, reason)
        return GuardVerdict(True)

    def overlap(self, a: str, b: str) -> float:
        """Share of content words the two prompts have in common (Jaccard, after alignment)."""
        left, right = self._reader.read(a), self._reader.read(b)
        mine = [i for i, w in enumerate(left.words) if not w.silent]
        theirs = [j for j, w in enumerate(right.words) if not w.silent]
        if not mine and not theirs:
            return 1.0
        backward = _align(left, right, self._wordnet).backward
        aligned = len({j for j, i in backward.items() if not right.words[j].silent})
        return aligned / (len(mine) + len(theirs) - aligned)


def _swap_sides(reason: str | None) -> str | None:
    if reason is None:
        return None
    head, _, detail = reason.partition(": ")
    mine, _, theirs = detail.partition(" vs ")
    return f"{head}: {theirs} vs {mine}"


# --------------------------------------------------------------------------------------
# Hit decision and its quality
# --------------------------------------------------------------------------------------


def lexical_overlap(a: str, b: str, guard: AttributeGuard | None = None) -> float:
    """Jaccard overlap of the prompts' content words, counting aligned synonyms as shared.

    Used only as a second-stage check for candidates between the lower and the main
    threshold. With the guard on it adds nothing: a candidate the guard accepts has a
    counterpart for every content word, so its overlap is 1.0 (less only where two words
    were read as one, "skate park" / "skatepark").
    """
    return (guard or AttributeGuard()).overlap(a, b)


@dataclass(frozen=True)
class HitPolicy:
    """When a nearest neighbour may answer a request.

    ``similarity_threshold`` is ``cache.similarity_threshold``. A candidate at or above it
    is a hit when the guard accepts. With ``verified_threshold`` set below it
    (``cache.verified_threshold``), a candidate in between is also a hit when the guard
    accepts and the prompts share at least ``min_overlap`` of their content words
    (``cache.min_lexical_overlap``).
    """

    # Defaults defined once, in the settings model.
    similarity_threshold: float = _CACHE_DEFAULTS.similarity_threshold
    use_guard: bool = _CACHE_DEFAULTS.verify_hits
    verified_threshold: float | None = _CACHE_DEFAULTS.verified_threshold
    min_overlap: float = _CACHE_DEFAULTS.min_lexical_overlap

    @classmethod
    def from_settings(cls, config: CacheSettings) -> HitPolicy:
        """The policy the ``cache`` settings describe."""
        return cls(
            similarity_threshold=config.similarity_threshold,
            use_guard=config.verify_hits,
            verified_threshold=config.verified_threshold,
            min_overlap=config.min_lexical_overlap,
        )

    def is_hit(
        self, cosine: float, request: str, candidate: str, guard: AttributeGuard | None = None
    ) -> bool:
        """The decision for one (request, nearest candidate) pair with its cosine."""
        floor = self.similarity_threshold
        if self.verified_threshold is not None:
            floor = min(floor, self.verified_threshold)
        if cosine < floor:
            return False
        if self.use_guard:
            guard = guard or AttributeGuard()
            if not guard.check(request, candidate).accepted:
                return False
        if cosine >= self.similarity_threshold:
            return True
        return lexical_overlap(request, candidate, guard) >= self.min_overlap


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
