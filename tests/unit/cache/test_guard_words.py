"""The guard's word alignment beyond lemmas and synonyms: adjectives made from nouns.

Sentences written for these tests (none is taken from a labelled pair file).
"""

from __future__ import annotations

from streamproc.cache.guard import AttributeGuard

GUARD = AttributeGuard()


def test_an_adjective_made_from_a_noun_stands_for_the_noun() -> None:
    assert GUARD.check(
        "a smoky jazz bar at midnight", "a jazz bar full of smoke at midnight"
    ).accepted
    assert GUARD.check("a leafy courtyard in spring", "a courtyard with leaves in spring").accepted


def test_a_word_that_only_looks_derived_is_no_counterpart() -> None:
    # "busy" shares letters with "bus", but WordNet does not make it from the noun.
    assert GUARD.check("a busy road at dusk", "a bus road at dusk").reason == (
        "word_mismatch: busy vs bus"
    )


def test_a_derived_word_still_faces_the_other_checks() -> None:
    verdict = GUARD.check("two smoky chimneys on a roof", "a chimney with smoke on a roof")
    assert verdict.reason == "number_mismatch: 2 chimneys vs one chimney"
