"""Tests of the corrections made to the small parser's tags and lemmas."""

from __future__ import annotations

import pytest
from spacy.tokens import Doc, Token

from streamproc.cache.scene import load_parser
from streamproc.cache.tagging import Lemmas, correct

PARSER = load_parser()
LEMMAS = Lemmas.of(PARSER)


@pytest.mark.parametrize(
    ("form", "lemma"),
    [
        ("riding", "ride"),  # "rid" would be "ridding"
        ("shining", "shine"),
        ("running", "run"),
        ("visiting", "visit"),  # no verb "visite"
        ("eating", "eat"),
        ("lying", "lie"),
        ("carried", "carry"),
        ("baked", "bake"),
        ("planned", "plan"),
        ("paddling", "paddle"),
        ("ridden", "ride"),  # irregular, from the lemmatiser's exceptions
        ("caught", "catch"),
    ],
)
def test_verb_lemmas_follow_english_spelling(form: str, lemma: str) -> None:
    assert LEMMAS.verb(form) == lemma


def test_a_word_that_is_no_verb_has_no_verb_lemma() -> None:
    assert LEMMAS.verb("xylophone") is None


def test_a_plural_noun_with_a_singular_determiner_is_the_verb() -> None:
    doc = correct(PARSER("in the morning, a fox trots through tall grass"), LEMMAS)
    trots = _word(doc, "trots")
    fox = _word(doc, "fox")
    assert (trots.pos_, trots.lemma_) == ("VERB", "trot")
    assert fox.dep_ == "nsubj" and fox.head.i == trots.i


def test_a_modal_without_a_verb_is_a_noun() -> None:
    doc = correct(PARSER("water droplets on a cold soda can"), LEMMAS)
    assert doc[-1].pos_ == "NOUN"


def test_a_parser_without_lemma_tables_corrects_nothing() -> None:
    assert Lemmas.of(PARSER.__class__()).verb("riding") is None


def _word(doc: Doc, text: str) -> Token:
    """The token of ``doc`` written ``text`` (the first)."""
    return next(t for t in doc if t.text == text)


def _doc(
    words: list[str], pos: list[str], tags: list[str], deps: list[str], heads: list[int]
) -> Doc:
    doc = Doc(PARSER.vocab, words=words, pos=pos, tags=tags, deps=deps, heads=heads)
    for token in doc:
        token.lemma_ = token.lower_
    return doc


def test_a_noun_only_word_tagged_an_adjective_with_a_determiner_is_a_noun() -> None:
    # The small parser's reading of "a kitten sleeping under a lamp".
    doc = _doc(
        ["a", "kitten", "sleeping", "under", "a", "lamp"],
        ["DET", "ADJ", "VERB", "ADP", "DET", "NOUN"],
        ["DT", "JJ", "VBG", "IN", "DT", "NN"],
        ["det", "ROOT", "acl", "prep", "det", "pobj"],
        [1, 1, 1, 2, 5, 3],
    )
    assert correct(doc, LEMMAS)[1].pos_ == "NOUN"


def test_an_adjective_with_a_determiner_stays_an_adjective() -> None:
    doc = _doc(
        ["a", "golden", "retriever"],
        ["DET", "ADJ", "ADV"],
        ["DT", "JJ", "RB"],
        ["det", "ROOT", "advmod"],
        [1, 1, 1],
    )
    assert correct(doc, LEMMAS)[1].pos_ == "ADJ"


@pytest.mark.parametrize(
    ("words", "pos", "tags", "deps", "heads", "subject"),
    [
        # "an apprentice repairs a tyre": the determiner hangs on the noun before the verb
        (
            ["an", "apprentice", "repairs", "a", "tyre"],
            ["DET", "NOUN", "NOUN", "DET", "NOUN"],
            ["DT", "NN", "NNS", "DT", "NN"],
            ["det", "compound", "ROOT", "det", "npadvmod"],
            [1, 2, 2, 4, 2],
            1,
        ),
        # "a mechanic repairs a tyre" with "mechanic" an adjective of "repairs"
        (
            ["a", "mechanic", "repairs", "a", "tyre"],
            ["DET", "ADJ", "NOUN", "DET", "NOUN"],
            ["DT", "JJ", "NNS", "DT", "NN"],
            ["det", "amod", "ROOT", "det", "npadvmod"],
            [2, 2, 2, 4, 2],
            1,
        ),
    ],
)
def test_a_plural_noun_after_a_determined_noun_is_its_verb(
    words: list[str],
    pos: list[str],
    tags: list[str],
    deps: list[str],
    heads: list[int],
    subject: int,
) -> None:
    doc = _doc(words, pos, tags, deps, heads)
    doc[2].lemma_ = "repair"
    doc = correct(doc, LEMMAS)
    assert doc[2].pos_ == "VERB"
    assert doc[subject].dep_ == "nsubj"
    assert doc[subject].pos_ == "NOUN"


def _subjects(text: str) -> dict[str, str]:
    doc = correct(PARSER(text), LEMMAS)
    return {t.head.lower_: t.lower_ for t in doc if t.dep_ == "nsubj"}


@pytest.mark.parametrize(
    ("text", "verb", "subject"),
    [
        # The small parser reads "as" as a preposition with the noun its object and makes
        # the first noun of the sentence the later verb's subject.
        ("waves crashing as a surfer rides the swell", "rides", "surfer"),
        ("embers glowing as a smith shapes a horseshoe", "shapes", "smith"),
        ("petals drifting as a bride walks down the aisle", "walks", "bride"),
    ],
)
def test_the_noun_after_a_clause_opening_conjunction_is_the_subject_of_its_verb(
    text: str, verb: str, subject: str
) -> None:
    assert _subjects(text).get(verb) == subject


def test_a_preposition_before_a_noun_without_a_verb_after_it_is_left_alone() -> None:
    doc = correct(PARSER("a boat drifting as a shadow on the lake"), LEMMAS)
    assert next(t for t in doc if t.lower_ == "shadow").dep_ != "nsubj"


@pytest.mark.parametrize(
    ("prompt", "verb", "subject", "obj", "phrase_object"),
    [
        ("a knight on horseback chases a dragon", "chases", "knight", "dragon", "horseback"),
        ("a girl with pigtails hugs a puppy", "hugs", "girl", "puppy", "pigtails"),
        ("a dog with a bone chases a cat", "chases", "dog", "cat", "bone"),
    ],
)
def test_the_verb_read_inside_a_phrase_becomes_the_sentence_verb(
    prompt: str, verb: str, subject: str, obj: str, phrase_object: str
) -> None:
    doc = correct(PARSER(prompt), LEMMAS)
    by_text = {t.text: t for t in doc}
    v = by_text[verb]
    assert v.pos_ == "VERB" and v.dep_ == "ROOT" and v.head.i == v.i
    assert (by_text[subject].dep_, by_text[subject].head.i) == ("nsubj", v.i)
    assert (by_text[obj].dep_, by_text[obj].head.i) == ("dobj", v.i)
    assert by_text[phrase_object].dep_ == "pobj"
    assert by_text[phrase_object].head.dep_ == "prep"


def test_a_sentence_with_its_own_verb_keeps_the_phrase_as_parsed() -> None:
    # "boots" is a verb form too, but "kicks" is the verb here.
    doc = correct(PARSER("a man in rain boots kicks a ball"), LEMMAS)
    by_text = {t.text: t for t in doc}
    assert by_text["kicks"].dep_ == "ROOT" and by_text["boots"].pos_ == "NOUN"


def test_a_noun_after_a_verb_without_an_object_is_its_object_not_an_appositive() -> None:
    doc = correct(PARSER("A dragon chases a knight on horseback over snowy mountains."), LEMMAS)
    knight = _word(doc, "knight")
    assert (knight.dep_, knight.head.text) == ("dobj", "chases")


def _compound_lemmas() -> Lemmas:
    from streamproc.cache.scene import _ing_compounds

    return Lemmas.of(PARSER, _ing_compounds())


@pytest.mark.parametrize(
    ("prompt", "noun", "verb", "obj", "attached"),
    [
        ("a seagull stealing chips from a child", "seagull", "stealing", "chips", "from"),
        ("a waiter serving soup to a chef", "waiter", "serving", "soup", "to"),
        ("a porter carrying luggage up the stairs", "porter", "carrying", "luggage", "up"),
    ],
)
def test_a_clause_read_as_a_noun_phrase_is_a_clause_on_the_first_noun(
    prompt: str, noun: str, verb: str, obj: str, attached: str
) -> None:
    doc = correct(PARSER(prompt), _compound_lemmas())
    by_text = {t.text: t for t in doc}
    n, v, o = by_text[noun], by_text[verb], by_text[obj]
    assert n.pos_ == "NOUN"
    assert (v.pos_, v.dep_, v.head.i) == ("VERB", "acl", n.i)
    assert (o.dep_, o.head.i) == ("dobj", v.i)
    assert by_text[attached].head.i == v.i  # where, from and to whom: the clause's


def test_a_colour_after_the_clause_is_its_complement() -> None:
    doc = correct(
        PARSER("a jellyfish glowing blue, drifting in the dark ocean"), _compound_lemmas()
    )
    by_text = {t.text: t for t in doc}
    assert (by_text["blue"].pos_, by_text["blue"].dep_) == ("ADJ", "acomp")
    assert by_text["drifting"].head.text == "jellyfish"


def test_a_two_word_noun_after_a_noun_stays_one_noun() -> None:
    doc = correct(PARSER("a hotel swimming pool at night"), _compound_lemmas())
    pool = _word(doc, "pool")
    assert pool.dep_ == "ROOT" and _word(doc, "swimming").head.i == pool.i


@pytest.mark.parametrize(
    ("prompt", "subject", "dep"),
    [
        ("drifting in the dark ocean, a jellyfish glowing blue", "jellyfish", "nsubj"),
        ("chasing a ball across the lawn, a puppy", "puppy", "nsubj"),
        ("carved from ice, a swan", "swan", "nsubjpass"),
    ],
)
def test_the_noun_after_a_fronted_clause_and_its_comma_is_its_subject(
    prompt: str, subject: str, dep: str
) -> None:
    doc = correct(PARSER(prompt), _compound_lemmas())
    assert _word(doc, subject).dep_ == dep


def test_an_object_before_the_comma_stays_the_object() -> None:
    doc = correct(PARSER("chasing a ball across the lawn, a puppy"), _compound_lemmas())
    assert _word(doc, "ball").dep_ == "dobj"


@pytest.mark.parametrize(
    ("form", "lemma"),
    [("buries", "bury"), ("watches", "watch"), ("goes", "go"), ("lies", "lie"), ("trots", "trot")],
)
def test_third_person_forms_have_their_verb_lemma(form: str, lemma: str) -> None:
    assert LEMMAS.present(form) == lemma
    assert LEMMAS.present("xylophones") is None


def test_a_plural_noun_verb_gets_its_own_lemma_and_its_object_keeps_its_number() -> None:
    # Tagged: "buries" a plural noun lemmatised "burie", "hut" a plural appositive.
    doc = correct(PARSER("a fierce blizzard buries the mountain hut"), LEMMAS)
    buries = _word(doc, "buries")
    hut = _word(doc, "hut")
    assert (buries.pos_, buries.lemma_) == ("VERB", "bury")
    assert hut.dep_ == "dobj" and hut.head.i == buries.i
    assert hut.tag_ == "NN" and "Plur" not in hut.morph.get("Number")


def test_the_noun_after_a_plural_noun_verb_is_its_object_not_a_subject() -> None:
    # Tagged: "buries" a plural noun, "acorn" an adjective and the subject of "buries".
    doc = correct(PARSER("under the oak, a gray squirrel buries an acorn"), LEMMAS)
    buries = _word(doc, "buries")
    acorn = _word(doc, "acorn")
    squirrel = _word(doc, "squirrel")
    assert (buries.pos_, buries.lemma_) == ("VERB", "bury")
    assert squirrel.dep_ == "nsubj" and acorn.dep_ == "dobj" and acorn.head.i == buries.i


def _being_lemmas() -> Lemmas:
    from streamproc.cache.scene import _ing_compounds
    from streamproc.cache.wordnet import load_wordnet

    return Lemmas.of(PARSER, _ing_compounds(), load_wordnet().names_a_being)


@pytest.mark.parametrize(
    ("prompt", "noun", "verb", "place"),
    [
        ("a knight kneeling before a queen", "knight", "kneeling", "before"),
        ("a deer grazing near a fence", "deer", "grazing", "near"),
        ("a wizard dancing with a bear", "wizard", "dancing", "with"),
        # tagged a verb, but with the noun hung on it as a compound
        ("a puppy barking from in front of a fence", "puppy", "barking", "from"),
    ],
)
def test_an_ing_noun_after_a_being_is_a_clause_on_the_being(
    prompt: str, noun: str, verb: str, place: str
) -> None:
    # The tagger reads "knight kneeling" as one noun, a kneeling of the knight kind.
    assert _word(PARSER(prompt), noun).dep_ == "compound"
    doc = correct(PARSER(prompt), _being_lemmas())
    n, v = _word(doc, noun), _word(doc, verb)
    assert (n.dep_, n.head.i) == ("ROOT", n.i)
    assert (v.pos_, v.dep_, v.head.i) == ("VERB", "acl", n.i)
    assert _word(doc, "a").head.i == n.i
    assert _word(doc, place).head.i == v.i


@pytest.mark.parametrize(
    ("prompt", "head"),
    [
        ("a city building in the rain", "building"),  # a city is no one
        ("a family gathering in a garden", "gathering"),  # a group, not a person
    ],
)
def test_an_ing_noun_after_a_thing_stays_a_noun(prompt: str, head: str) -> None:
    doc = correct(PARSER(prompt), _being_lemmas())
    word = _word(doc, head)
    assert (word.pos_, word.dep_) == ("NOUN", "ROOT")


def test_a_picture_of_a_being_stays_a_picture() -> None:
    doc = correct(PARSER("a horse drawing"), _being_lemmas())
    assert _word(doc, "drawing").pos_ == "NOUN"
