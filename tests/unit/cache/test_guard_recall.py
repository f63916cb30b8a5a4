"""The guard's recall on paraphrases, each with hard negatives next to what it accepts.

Sentences written for these tests (none is taken from a labelled pair file). Every class of
acceptance added for recall has refusals beside it that differ by one detail, so a rule that
accepts too much fails here.
"""

from __future__ import annotations

import pytest

from streamproc.cache.guard import AttributeGuard

GUARD = AttributeGuard()


def accepts(request: str, candidate: str) -> bool:
    return GUARD.check(request, candidate).accepted


# --- a passive participle the tagger reads as an adjective is its verb -------------------------


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        # "bent" tagged an adjective with an agent (the parse this reading exists for)
        (
            "strong winds bend the pine trees along the ridge",
            "the pine trees along the ridge are bent by strong winds",
        ),
        ("a storm shakes the old windmill", "the old windmill is shaken by a storm"),
    ],
)
def test_a_passive_read_as_an_adjective_is_its_active(request_text: str, candidate: str) -> None:
    assert accepts(request_text, candidate)
    assert accepts(candidate, request_text)


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        # another action
        (
            "the pine trees along the ridge are bent by strong winds",
            "strong winds break the pine trees along the ridge",
        ),
        # the same action done to something else, or by something else
        (
            "the pine trees along the ridge are bent by strong winds",
            "strong winds bend the pine poles along the ridge",
        ),
        (
            "the pine trees along the ridge are bent by strong winds",
            "heavy snow bends the pine trees along the ridge",
        ),
        # a bent thing, with no one bending it, is no action of the wind
        ("a bent spoon on a table", "a spoon bending on a table"),
    ],
)
def test_a_passive_adjective_keeps_its_details(request_text: str, candidate: str) -> None:
    assert not accepts(request_text, candidate)
    assert not accepts(candidate, request_text)


# --- particles that move in a passive: the refusals a looser reading must keep -----------------
# Tried and not kept (docs/benchmarks.md, third round): reading a particle the parser gives an
# object ("is knocked off the table") as a preposition accepted the first pair below.


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a glass is knocked off the shelf by a puppy", "a puppy knocks a glass onto the shelf"),
        (
            "a glass is knocked off the shelf by a puppy",
            "a glass is knocked onto the shelf by a puppy",
        ),
        ("a man takes off his hat", "a man takes his hat"),
        ("the lamps are switched off by a guard", "a guard switches on the lamps"),
        # the passive keeps its state particle: blowing on candles does not put them out
        ("the candles are blown out by a girl", "a girl blows on the candles"),
        ("the candles are blown out by a girl", "the candles are lit by a girl"),
    ],
)
def test_a_moved_particle_still_tells_states_and_places_apart(
    request_text: str, candidate: str
) -> None:
    assert not accepts(request_text, candidate)
    assert not accepts(candidate, request_text)


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a guard switches off the lamps", "the lamps are switched off by a guard"),
        ("a girl blows out the candles", "the candles are blown out by a girl"),
    ],
)
def test_a_particle_kept_beside_its_verb_in_a_passive_is_accepted(
    request_text: str, candidate: str
) -> None:
    assert accepts(request_text, candidate)
    assert accepts(candidate, request_text)


# --- a phrase WordNet names by its last word: "french fries" is "fries" ------------------------


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a basket of french fries on a diner counter", "a basket of fries on a diner counter"),
        # and so the other region's word for "fries"
        ("grilled sausages and chips on a tray", "grilled sausages and French fries on a tray"),
    ],
)
def test_a_phrase_with_its_heads_first_sense_is_its_head(request_text: str, candidate: str) -> None:
    assert accepts(request_text, candidate)
    assert accepts(candidate, request_text)


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        # another first sense than the head's: a kind of the thing, not the thing
        ("a boy kicking a soccer ball in a yard", "a boy kicking a ball in a yard"),
        ("a red sports car on a bridge", "a red car on a bridge"),
        ("a golden retriever on a lawn", "a retriever on a lawn"),
        ("a police car parked by a shop", "a car parked by a shop"),
        # the head is not the whole phrase
        (
            "a basket of french fries on a diner counter",
            "a basket of french toast on a diner counter",
        ),
    ],
)
def test_a_phrase_that_names_a_kind_is_not_its_head(request_text: str, candidate: str) -> None:
    assert not accepts(request_text, candidate)
    assert not accepts(candidate, request_text)


# --- a looser WordNet tie, for words left over on both sides -----------------------------------


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        # a sense further down the list of one of them, or any shared sense of an adjective
        ("a snug cottage on a hillside in the snow", "a cozy cottage on a hillside in the snow"),
        ("a diver discovering a wreck on the seabed", "a diver finding a wreck on the seabed"),
        ("a clumsy clown juggling oranges", "an awkward clown juggling oranges"),
        ("a nurse carefully lifting a tray", "a nurse cautiously lifting a tray"),
        # a verb that is a way of doing the other
        ("a wet dog shivering on a porch", "a wet dog trembling on a porch"),
        (
            "a jeweller inspecting a diamond under a lamp",
            "a jeweller examining a diamond under a lamp",
        ),
        ("a woman scribbling a letter at a desk", "a woman writing a letter at a desk"),
    ],
)
def test_a_near_synonym_wordnet_knows_is_the_same_word(request_text: str, candidate: str) -> None:
    assert accepts(request_text, candidate)
    assert accepts(candidate, request_text)


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        # nouns are not tied: a kind of the thing is another animal or boat to a viewer
        ("a lion dozing under an acacia tree", "a lioness dozing under an acacia tree"),
        ("a kayak drifting on a still lake", "a canoe drifting on a still lake"),
        # adjectives of one WordNet cluster: kinds a viewer tells apart, colours among them
        ("a boy flying a pink kite on a beach", "a boy flying a yellow kite on a beach"),
        ("a woman in a striped dress on a pier", "a woman in a spotted dress on a pier"),
        ("two boiled eggs on a blue plate", "two fried eggs on a blue plate"),
        ("an angry man shouting at a referee", "a calm man shouting at a referee"),
        # the words tie, but the roles around them differ
        (
            "a tall man shivering beside a short woman",
            "a short man trembling beside a tall woman",
        ),
        # a tied pair does not excuse another word left over
        ("an angry man with a red scarf", "a furious man with a blue scarf"),
    ],
)
def test_a_near_synonym_tie_does_not_join_what_a_viewer_tells_apart(
    request_text: str, candidate: str
) -> None:
    assert not accepts(request_text, candidate)
    assert not accepts(candidate, request_text)


@pytest.mark.parametrize(
    ("hyphenated", "apart"),
    [
        # a hyphenated word and its parts said apart, in any order
        ("a heron by a rain-streaked window", "a heron by a window streaked with rain"),
        ("a cat on a sun-drenched terrace", "a cat on a terrace drenched in sun"),
        # or the same parts in another spelling
        ("a rack of colour-coded folders", "a rack of color-coded folders"),
    ],
)
def test_a_hyphenated_word_matches_its_parts_said_apart(hyphenated: str, apart: str) -> None:
    assert GUARD.check(hyphenated, apart).accepted
    assert GUARD.check(apart, hyphenated).accepted


def test_a_hyphenated_word_with_another_part_is_refused() -> None:
    assert GUARD.check(
        "a cat on a sun-drenched terrace", "a cat on a terrace drenched in rain"
    ).reason == ("word_mismatch: sun-drenched vs drenched+rain")


@pytest.mark.parametrize(
    ("active", "passive", "swapped"),
    [
        ("a man mowing the lawn", "the lawn gets mowed by a man", "a man gets mowed by the lawn"),
        (
            "a crane lifting a truck",
            "a truck being lifted by a crane",
            "a crane being lifted by a truck",
        ),
    ],
)
def test_the_auxiliary_of_a_passive_is_no_word_of_the_scene(
    active: str, passive: str, swapped: str
) -> None:
    assert GUARD.check(active, passive).accepted
    # and the roles are still compared
    assert not GUARD.check(active, swapped).accepted


def test_a_phrase_matches_its_words_side_by_side_with_a_synonym() -> None:
    # "corner shop" is one word to the reader; "corner store" two, "shop" / "store" one key
    assert GUARD.check("a man at a corner shop", "a man at a corner store").accepted
    # only in order and side by side
    assert not GUARD.check("a man at a corner shop", "a man at a store on the corner").accepted
    assert not GUARD.check("a hot dog on a plate", "a dog on a hot plate").accepted


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        # "pull" / "drag": the group means WordNet's first sense, so WordNet ties further
        ("a dachshund tugging on a rope toy", "a dachshund pulling on a rope toy"),
        # "small" / "little" share their first sense
        ("a wee lamb on a hillside", "a small lamb on a hillside"),
        # the verb "bike" is first "bicycle" (the noun is first a motorcycle)
        ("two kids biking down a dirt road", "two kids cycling down a dirt road"),
        # the group "boot|boots" names no verb: it fixes no sense of "booting"
        ("a striker booting the ball into the net", "a striker kicking the ball into the net"),
    ],
)
def test_a_grouped_word_whose_group_means_wordnets_first_sense_is_tied_further(
    request_text: str, candidate: str
) -> None:
    assert GUARD.check(request_text, candidate).accepted


@pytest.mark.parametrize(
    ("request_text", "candidate", "reason"),
    [
        # a pool is a swimming pool to its group; WordNet's "pond, pool" is its second sense
        (
            "a man swims laps in an outdoor pool",
            "a man swims laps in an outdoor pond",
            "word_mismatch: pool vs pond",
        ),
        # "jog" is first to ramble on, which its group ("run", "sprint" ...) does not mean
        (
            "a woman jogging along a river",
            "a woman rambling along a river",
            "word_mismatch: jogging vs rambling",
        ),
        # "draw" is first to pull; its group means to sketch
        (
            "a child drawing a cart",
            "a child pulling a cart",
            "word_mismatch: drawing vs pulling",
        ),
    ],
)
def test_a_grouped_word_whose_group_means_another_sense_keeps_it(
    request_text: str, candidate: str, reason: str
) -> None:
    assert GUARD.check(request_text, candidate).reason == reason


def test_words_the_tagger_gave_two_kinds_are_compared_as_the_kind_both_have() -> None:
    # the tagger reads "chubby" as a name: both are adjectives to WordNet
    assert GUARD.check(
        "a chubby hamster stuffs seeds into its cheeks",
        "a plump hamster stuffs seeds into its cheeks",
    ).accepted
    assert not GUARD.check(
        "a chubby hamster stuffs seeds into its cheeks",
        "a skinny hamster stuffs seeds into its cheeks",
    ).accepted


def test_someone_doing_it_is_the_passive_without_an_agent() -> None:
    # "someone" heads the participle clause as a noun would, and names no one
    assert GUARD.check(
        "grilled corn being brushed with butter", "someone brushing butter onto grilled corn"
    ).accepted
    assert not GUARD.check("a chef cutting fresh pasta", "someone cutting fresh pasta").accepted
