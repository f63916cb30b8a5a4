"""Tests of the WordNet tables the guard reads synonyms from."""

from __future__ import annotations

from streamproc.cache.wordnet import WordNet, load_wordnet


def test_the_tables_are_read_once_per_process() -> None:
    assert load_wordnet() is load_wordnet()


def test_first_senses_in_one_synset_are_synonyms() -> None:
    wordnet = load_wordnet()
    assert wordnet.synonyms(["purchase"], ["buy"], "verb")
    assert wordnet.synonyms(["cemetery"], ["graveyard"], "noun")
    assert wordnet.synonyms(["brave"], ["courageous"], "adjective")


def test_the_part_of_speech_is_the_words_own() -> None:
    # As nouns, "purchase" is a thing bought and "buy" a bargain.
    assert not load_wordnet().synonyms(["purchase"], ["buy"], "noun")


def test_only_the_first_sense_counts() -> None:
    # "swim" and "float" share the second sense of "swim" (be afloat).
    assert not load_wordnet().synonyms(["swim"], ["float"], "verb")


def test_numbers_names_and_unknown_words_have_no_synonyms() -> None:
    wordnet = load_wordnet()
    assert not wordnet.synonyms(["two"], ["2"], "number")
    assert not wordnet.synonyms(["paris"], ["paris"], "name")
    assert not wordnet.synonyms(["blorft"], ["blorft"], "noun")


def test_any_form_of_either_side_may_match() -> None:
    assert load_wordnet().synonyms(["purchasing", "purchase"], ["buy"], "verb")


def test_phrases_are_looked_up_with_underscores() -> None:
    wordnet = WordNet({"noun": {"ice_cream": (1,), "icecream": (1,)}})
    assert wordnet.synonyms(["ice cream"], ["icecream"], "noun")
