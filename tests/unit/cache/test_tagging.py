"""Tests of the corrections made to the small parser's tags and lemmas."""

from __future__ import annotations

import pytest

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
    trots = next(t for t in doc if t.text == "trots")
    fox = next(t for t in doc if t.text == "fox")
    assert (trots.pos_, trots.lemma_) == ("VERB", "trot")
    assert fox.dep_ == "nsubj" and fox.head.i == trots.i


def test_a_modal_without_a_verb_is_a_noun() -> None:
    doc = correct(PARSER("water droplets on a cold soda can"), LEMMAS)
    assert doc[-1].pos_ == "NOUN"


def test_a_parser_without_lemma_tables_corrects_nothing() -> None:
    assert Lemmas.of(PARSER.__class__()).verb("riding") is None
