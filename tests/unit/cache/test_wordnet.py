"""Tests of the WordNet tables the guard reads synonyms from."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamproc.cache.guard import AttributeGuard
from streamproc.cache.wordnet import (
    WordNet,
    _made_from,
    _read_derivations,
    _read_index,
    load_wordnet,
)


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


def test_an_adjective_is_derived_from_its_noun() -> None:
    wordnet = load_wordnet()
    assert wordnet.derived_from(["muddy"], ["mud"])
    assert wordnet.derived_from(["woolly"], ["wool"])  # from the noun's third sense
    assert not wordnet.derived_from(["busy"], ["bus"])
    assert not wordnet.derived_from(["mud"], ["muddy"])  # the adjective comes first


def test_a_derivation_joins_only_the_noun_synsets_it_points_to(tmp_path: Path) -> None:
    index = tmp_path / "index.noun"
    index.write_text("rock n 2 0 2 0 00000007 00000009\nstone n 1 0 1 0 00000008\n")
    made = _made_from(_read_index(index, None), {7: {"rocky"}, 5: {"pebbly"}})
    assert made == {"rock": frozenset({"rocky"})}
    wordnet = WordNet({}, made_from=made)
    assert wordnet.derived_from(["rocky"], ["rock"])
    assert not wordnet.derived_from(["rocky"], ["stone"])


def test_derivations_are_read_per_word_of_the_pointer(tmp_path: Path) -> None:
    # wndb(5): source 01 is the first word of the synset, 02 the second, 00 every word;
    # pointers to verbs and other symbols are not derivations of a noun.
    data = tmp_path / "data.adj"
    data.write_text(
        "  1 licence line\n"
        "00001740 00 a 02 rocky 0 stony(a) 0 004 + 09416076 n 0101 \\ 09416077 n 0200 "
        "+ 00000001 v 0101 & 00000002 a 0000 | full of rocks  \r\n"
        "00001800 00 s 01 gritty 0 001 + 09416078 n 0000 | with grit\n",
        encoding="utf-8",
        newline="",
    )
    assert _read_derivations(data) == {9416076: {"rocky"}, 9416077: {"stony"}, 9416078: {"gritty"}}


def test_a_word_with_a_single_sense_matches_a_word_that_has_that_sense() -> None:
    wordnet = load_wordnet()
    # "arugula" has one sense, the third of "rocket"; the first sense of neither is the other
    assert not wordnet.synonyms(["rocket"], ["arugula"], "noun")
    assert wordnet.sole_sense_shared(["rocket"], ["arugula"], "noun")
    assert wordnet.sole_sense_shared(["arugula"], ["rocket"], "noun")
    # two words of several senses each still need their first senses to meet
    assert not wordnet.sole_sense_shared(["boy"], ["son"], "noun")
    assert not wordnet.sole_sense_shared(["clay"], ["mud"], "noun")


def test_the_guard_accepts_a_sole_sense_and_refuses_another_word() -> None:
    guard = AttributeGuard()
    assert guard.check("a bowl of rocket and parmesan", "a bowl of arugula and parmesan").accepted
    assert not guard.check(
        "a bowl of rocket and parmesan", "a bowl of spinach and parmesan"
    ).accepted


def test_near_synonyms_name_the_tie_they_found() -> None:
    wordnet = load_wordnet()
    assert wordnet.near_synonyms(["snug"], ["cozy"], "adjective") == "one sense"
    assert wordnet.near_synonyms(["carefully"], ["cautiously"], "adverb") == "one sense"
    assert wordnet.near_synonyms(["discover"], ["find"], "verb") == "one sense"
    assert wordnet.near_synonyms(["shiver"], ["tremble"], "verb") == "a way of"
    assert wordnet.near_synonyms(["tremble"], ["shiver"], "verb") == "a way of"


def test_nouns_are_near_synonyms_through_their_common_senses_only() -> None:
    wordnet = load_wordnet()
    # the first sense of one among the other's first senses that the corpus tags
    assert wordnet.near_synonyms(["pupil"], ["student"], "noun") == "one sense"
    assert wordnet.near_synonyms(["peak"], ["summit"], "noun") == "one sense"
    assert wordnet.near_synonyms(["son"], ["boy"], "noun") == "one sense"
    # a rare sense does not tie: a tower is no tugboat, a paw no hand, a washing no laundry
    assert wordnet.common_senses("tower") == wordnet.all_senses("tower", "noun")[:2]
    assert wordnet.near_synonyms(["tower"], ["tugboat"], "noun") is None
    assert wordnet.near_synonyms(["paw"], ["hand"], "noun") is None
    assert wordnet.near_synonyms(["washing"], ["laundry"], "noun") is None
    # nor do later senses, or a kind of a thing: other things to a viewer
    assert wordnet.near_synonyms(["crib"], ["pony"], "noun") is None
    assert wordnet.near_synonyms(["lioness"], ["lion"], "noun") is None
    assert wordnet.near_synonyms(["cup"], ["mug"], "noun") is None


def test_near_synonyms_leave_out_clusters_and_rare_verb_senses() -> None:
    wordnet = load_wordnet()
    # adjectives of one cluster, colours among them
    assert wordnet.near_synonyms(["striped"], ["spotted"], "adjective") is None
    assert wordnet.near_synonyms(["pink"], ["yellow"], "adjective") is None
    assert wordnet.near_synonyms(["thin"], ["fat"], "adjective") is None
    # verbs sharing neither's first sense ("mop" / "mow": to grimace)
    assert wordnet.near_synonyms(["mop"], ["mow"], "verb") is None
    assert wordnet.near_synonyms(["blorft"], ["find"], "verb") is None


def test_people_and_animals_are_beings_by_their_first_sense() -> None:
    wordnet = load_wordnet()
    assert all(wordnet.names_a_being(w) for w in ("knight", "queen", "fox", "deer", "pilgrim"))
    # A city is a place, a family a group, a painting an artefact; "mole" is first a unit.
    assert not any(wordnet.names_a_being(w) for w in ("city", "family", "painting", "mole"))
    assert not wordnet.names_a_being("no such word")


def test_a_verb_is_defined_by_the_words_of_its_first_gloss() -> None:
    wordnet = load_wordnet()
    assert {"ride", "surfboard", "wave"} <= wordnet.defined_by("surf")
    assert {"ride", "bicycle"} <= wordnet.defined_by("bike")
    assert "ski" in wordnet.defined_by("ski")  # "skis", also without its plural "s"
    assert wordnet.defined_by("blorft") == frozenset()


@pytest.mark.parametrize(
    ("verb", "said"),
    [
        ("a man surfing a tall wave", "a man riding a surfboard on a tall wave"),
        # the noun is the verb's own word, or already its counterpart
        ("a boy skateboarding past a fountain", "a boy riding a skateboard past a fountain"),
        ("a girl biking along a canal", "a girl riding a bicycle along a canal"),
        ("a man vacuuming the stairs", "a man cleaning the stairs with a vacuum"),
    ],
)
def test_a_verb_said_as_its_definitions_verb_and_noun_is_accepted(verb: str, said: str) -> None:
    guard = AttributeGuard()
    assert guard.check(verb, said).accepted
    assert guard.check(said, verb).accepted


def test_a_verb_and_a_noun_its_definition_does_not_name_are_refused() -> None:
    guard = AttributeGuard()
    assert guard.check(
        "a man skiing down a slope", "a man riding a snowboard down a slope"
    ).reason == ("word_mismatch: skiing vs riding+snowboard")
    # the noun alone, with another verb, is another action
    assert not guard.check(
        "a boy skateboarding past a fountain", "a boy carrying a skateboard past a fountain"
    ).accepted


def test_adjectives_are_near_synonyms_through_a_head_and_its_satellite() -> None:
    wordnet = load_wordnet()
    assert wordnet.near_synonyms(["tiny"], ["small"], "adjective") == "similar"
    assert wordnet.near_synonyms(["damp"], ["wet"], "adjective") == "similar"
    # two satellites of one head, and opposites, are not tied
    assert wordnet.near_synonyms(["striped"], ["spotted"], "adjective") is None
    assert wordnet.near_synonyms(["boiled"], ["fried"], "adjective") is None
    assert wordnet.near_synonyms(["dry"], ["wet"], "adjective") is None
    guard = AttributeGuard()
    assert guard.check("a neat desk by a window", "a tidy desk by a window").accepted
    assert not guard.check("a striped cat on a mat", "a spotted cat on a mat").accepted
