"""The guard's word alignment beyond lemmas and synonyms: adjectives made from nouns.

Sentences written for these tests (none is taken from a labelled pair file).
"""

from __future__ import annotations

import pytest

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


def test_two_nouns_that_wordnet_lists_as_one_match_its_synonym() -> None:
    assert GUARD.check(
        "a mountaineer reaching the top", "a mountain climber reaching the top"
    ).accepted
    refused = GUARD.check("a mountaineer on a ridge", "a mountain goat on a ridge")
    assert not refused.accepted and refused.reason is not None
    assert refused.reason.startswith("word_mismatch:")


def test_a_hyphenated_noun_counts_by_its_last_part() -> None:
    active = "a doctor examines a patient's x-ray"
    assert GUARD.check(active, "a patient's x-ray is studied by a physician").accepted
    refused = GUARD.check(active, "a patient's x-rays are studied by a physician")
    assert refused.reason == "number_mismatch: one x-ray vs several x-rays"


def test_someone_doing_it_is_the_passive_without_an_agent() -> None:
    assert GUARD.check(
        "a wedding cake is wheeled into the hall", "someone wheels a wedding cake into the hall"
    ).accepted
    # a named agent is a detail "someone" does not give
    named = GUARD.check("a chef wheels a cake into the hall", "someone wheels a cake into the hall")
    assert not named.accepted
    # and "someone" still needs an action to be the agent of
    other = GUARD.check("a cake is wheeled into the hall", "someone eats a cake in the hall")
    assert not other.accepted


def test_people_doing_it_is_the_passive_without_an_agent_too() -> None:
    assert GUARD.check(
        "crates of fish being unloaded from a trawler",
        "people unloading crates of fish from a trawler",
    ).accepted


def test_using_and_wearing_are_with_and_in() -> None:
    assert GUARD.check(
        "a bricklayer spreading mortar using a trowel",
        "a bricklayer spreading mortar with a trowel",
    ).accepted
    assert GUARD.check("a girl wearing a silver cloak", "a girl in a silver cloak").accepted
    # what is worn or used is still compared
    assert not GUARD.check("a girl wearing a silver cloak", "a girl in a golden cloak").accepted
    assert not GUARD.check("a girl wearing a cloak", "a girl holding a cloak").accepted


def test_phrasal_verbs_that_wordnet_lists_as_one_sense_match_with_the_same_particle() -> None:
    assert GUARD.check(
        "a clerk switches on the desk lamp", "a clerk turns on the desk lamp"
    ).accepted
    assert GUARD.check(
        "a glider lifts off from a field", "a glider takes off from a field"
    ).accepted
    # The particle is compared first: on against off stays a mismatch.
    assert not GUARD.check(
        "a clerk switches off the desk lamp", "a clerk turns on the desk lamp"
    ).accepted
    # Without a shared particle the verbs are only themselves.
    assert not GUARD.check("a clerk switches the channel", "a clerk turns the channel").accepted


def test_a_grouped_word_meets_its_wordnet_synonym_when_neither_has_another_sense() -> None:
    # "grandpa" is in a hand-written group; it and "grandad" each have one WordNet sense,
    # the same one.
    assert GUARD.check("a grandpa feeding ducks", "a grandad feeding ducks").accepted
    # "bike" has a second sense (a motorcycle), so its group still decides.
    assert not GUARD.check("a bike on a forest path", "a motorbike on a forest path").accepted


def test_an_acronym_matches_the_words_it_abbreviates() -> None:
    assert GUARD.check(
        "a crane lifts a module onto the ISS",
        "a crane lifts a module onto the International Space Station",
    ).accepted
    # WordNet lists "UFO": its phrase, in either direction
    assert GUARD.check(
        "an unidentified flying object over a cornfield", "a UFO over a cornfield"
    ).accepted
    assert GUARD.check("the ATM on a corner", "the automated teller machine on a corner").accepted


def test_initials_that_spell_a_listed_acronym_are_not_its_phrase() -> None:
    refused = GUARD.check("a UFO over a cornfield", "an unusual flying owl over a cornfield")
    assert refused.reason == "word_mismatch: ufo vs flying+owl+unusual"
    # an unlisted two-letter word is not read by its initials, and what the phrase adds stays
    assert not GUARD.check("a red car on a track", "an RC car on a track").accepted
    verdict = GUARD.check("the ISS at night", "the international space station and a moon")
    assert not verdict.accepted


def test_a_place_name_and_the_adjective_made_from_it_match() -> None:
    assert GUARD.check("a street market in Mexico", "a Mexican street market").accepted
    assert GUARD.check("an Italian cafe at noon", "a cafe in Italy at noon").accepted
    assert GUARD.check("a cafe in Italy at noon", "a Spanish cafe at noon").reason == (
        "word_mismatch: italy vs spanish"
    )


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a red-brick house at the end of a lane", "a red-brick home at the end of a lane"),
        ("sheep graze on a grassy hill", "sheep graze on a grassy slope"),
        ("an old couple rocking on the porch", "an old couple rocking on the veranda"),
        (
            "a knight rides his steed across a drawbridge",
            "a knight rides his horse across a drawbridge",
        ),
        ("a cat silently stalks a pigeon", "a cat quietly stalks a pigeon"),
        ("a drowsy toddler rubs her eyes", "a sleepy toddler rubs her eyes"),
    ],
)
def test_everyday_words_for_one_thing_are_one_word(request_text: str, candidate: str) -> None:
    assert GUARD.check(request_text, candidate).accepted


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a red-brick house at the end of a lane", "a red-brick barn at the end of a lane"),
        ("an aerial view of a small village", "an aerial view of a small city"),
        ("sheep graze on a grassy hill", "sheep graze on a grassy mountain"),
    ],
)
def test_their_neighbours_stay_apart(request_text: str, candidate: str) -> None:
    assert not GUARD.check(request_text, candidate).accepted


def test_young_written_before_the_animal_is_its_young_whatever_the_parse() -> None:
    # the parser hangs "young" on "tumbles"
    assert GUARD.check(
        "a puppy tumbles across a living room rug chasing a squeaky toy",
        "a young dog tumbles across a living room rug chasing a squeaky toy",
    ).accepted
    assert not GUARD.check(
        "a puppy tumbles across a rug", "an old dog tumbles across a rug"
    ).accepted


def test_a_modifier_that_makes_one_group_word_with_its_head_is_said() -> None:
    # "seashore" is in the group of "beach" and "shore"
    assert GUARD.check(
        "gentle waves wash over pebbles on the sea shore",
        "gentle waves wash over pebbles on the beach",
    ).accepted
    assert not GUARD.check(
        "gentle waves wash over pebbles on the lake shore",
        "gentle waves wash over pebbles on the beach",
    ).accepted


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a calm lake at sunrise, wide shot", "a calm lake at sunrise, wide-angle shot"),
        ("a drummer hitting a cymbal, close-up", "a drummer hitting a cymbal, close shot"),
        ("slow pan across a modern kitchen", "slow panning shot across a modern kitchen"),
        ("a glass tower at dusk, low angle shot", "a glass tower at dusk, shot from below"),
        ("a ferry in rough seas, aerial view", "a ferry in rough seas, view from above"),
        ("sheep on a country lane, overhead shot", "sheep on a country lane, bird's-eye view"),
        ("cherries dropping into cream in slow motion", "cherries dropping into cream in slo-mo"),
    ],
)
def test_a_camera_term_said_with_or_without_shot_or_view_is_one_term(
    request_text: str, candidate: str
) -> None:
    assert GUARD.check(request_text, candidate).accepted


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a glass tower at dusk, low angle shot", "a glass tower at dusk, high angle shot"),
        ("a ferry in rough seas, aerial view", "a ferry in rough seas, close shot"),
        ("sheep on a country lane, bird's-eye view", "sheep on a country lane, wide shot"),
    ],
)
def test_different_camera_terms_stay_apart(request_text: str, candidate: str) -> None:
    assert not GUARD.check(request_text, candidate).accepted


def test_an_adjective_and_its_adverb_on_a_participle_are_one_word() -> None:
    assert GUARD.check(
        "a cat asleep in a dim hallway", "a cat asleep in a dimly lit hallway"
    ).accepted
    assert GUARD.check("a slow tortoise on a path", "a tortoise moving slowly on a path").accepted
    verdict = GUARD.check("a cat asleep in a dim hallway", "a cat asleep in a brightly lit hallway")
    assert verdict.reason == "word_mismatch: dim vs brightly"


def test_a_light_said_in_the_adjective_is_the_light_named_by_lit_by() -> None:
    assert GUARD.check("a candlelit dinner table", "a dinner table lit by candles").accepted
    assert GUARD.check("a moonlit harbour", "a harbour lit by the moon").accepted
    assert not GUARD.check("a moonlit harbour", "a harbour lit by the sun").accepted


def test_an_adjective_the_tagger_took_for_a_compound_noun_is_made_from_its_noun() -> None:
    # the tagger reads "powdery" as a compound noun; it is only an adjective
    assert GUARD.check(
        "a snowboarder on a powdery slope", "a snowboarder on a powder-covered slope"
    ).accepted
    assert GUARD.check("a rocky cove at low tide", "a rock-strewn cove at low tide").accepted
    assert not GUARD.check("a rocky cove at low tide", "a shell-strewn cove at low tide").accepted


def test_the_posture_of_a_thing_needs_no_counterpart() -> None:
    assert GUARD.check(
        "an old piano in the corner of a dusty attic",
        "an old piano stands in the corner of a dusty attic",
    ).accepted
    assert GUARD.check("a cabin in the pines", "a cabin nestled in the pines").accepted
    # the place still counts, and so does a second posture
    verdict = GUARD.check("a windmill on a hill", "a windmill standing below a hill")
    assert verdict.reason == "relation_mismatch: windmill on hill vs windmill below hill"
    assert not GUARD.check(
        "a statue standing in a square", "a statue kneeling in a square"
    ).accepted
    assert not GUARD.check("a ladder leaning on a wall", "a ladder standing by a wall").accepted


def test_the_posture_of_a_person_or_animal_is_what_it_does() -> None:
    assert GUARD.check("a boy on a bench", "a boy sitting on a bench").reason == (
        "word_mismatch: none vs sitting"
    )
    assert not GUARD.check("a crowd of fans standing", "a crowd of fans sitting").accepted


def test_a_noun_written_as_one_word_is_its_two_nouns() -> None:
    assert GUARD.check(
        "a heron wading along the riverbank", "a heron wading along the bank of the river"
    ).accepted
    assert GUARD.check(
        "a heron wading along the riverbank", "a heron wading along the river bank"
    ).accepted
    assert GUARD.check("a sandcastle at low tide", "a castle of sand at low tide").accepted
    # the compound's order names the thing: a house dog is no doghouse
    assert not GUARD.check("a doghouse in a garden", "a house dog in a garden").accepted


def test_a_noun_before_a_noun_in_ing_has_no_number() -> None:
    # "ring" ends in "-ing" but is no verb form: "a mushroom ring" counts no mushrooms
    assert GUARD.check(
        "elves dancing around a mushroom ring", "elves dancing around a ring of mushrooms"
    ).accepted


def test_falling_snow_and_times_said_with_early_or_late_are_one_detail() -> None:
    assert GUARD.check("heavy snow falling on a street", "heavy snowfall on a street").accepted
    assert GUARD.check(
        "a heron at the lake early in the morning", "a heron at the lake in the early morning"
    ).accepted
    assert GUARD.check("a quiet diner late at night", "a quiet diner at night").accepted
    assert not GUARD.check("snow falling on a street", "rain falling on a street").accepted
    assert not GUARD.check(
        "a quiet diner late at night", "a quiet diner late in the evening"
    ).accepted


def test_a_position_in_british_spelling_is_the_same_position() -> None:
    assert GUARD.check(
        "a fountain in a park in the city center", "a fountain in a park in the city centre"
    ).accepted
    assert not GUARD.check("a fountain in the centre", "a fountain on the left").accepted


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a rushing river through a canyon", "a fast-flowing river through a canyon"),
        ("an outdoor market at noon", "an open-air market at noon"),
        ("a cottage by the coastal road", "a cottage by the seaside road"),
        ("a kitten batting a ball of yarn", "a kitten batting a ball of wool"),
        ("a stack of old books on a desk", "a pile of old books on a desk"),
        ("a derelict warehouse at dusk", "an abandoned warehouse at dusk"),
        ("a lush valley after rain", "a verdant valley after rain"),
        ("a cobblestone lane in the old town", "a cobbled lane in the old town"),
        ("soap lather on a sponge", "soap foam on a sponge"),
        ("a haunted mansion on a hill", "a haunted manor on a hill"),
    ],
)
def test_everyday_words_of_the_rewrites_set_are_one_word(request_text: str, candidate: str) -> None:
    assert GUARD.check(request_text, candidate).accepted


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        # members of one group that a viewer tells apart get groups of their own
        ("a man jogging along the river", "a man sprinting along the river"),
        ("a pot of pasta boiling on a stove", "a pot of pasta simmering on a stove"),
        ("a crow on a fence post", "a raven on a fence post"),
        ("a rushing river through a canyon", "a still river through a canyon"),
    ],
)
def test_near_neighbours_of_those_words_stay_apart(request_text: str, candidate: str) -> None:
    assert not GUARD.check(request_text, candidate).accepted


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a janitor mopping a school hallway", "a custodian mopping a school hallway"),
        ("a messy desk covered in papers", "a cluttered desk covered in papers"),
        (
            "a busker playing violin under a bridge",
            "a street musician playing violin under a bridge",
        ),
        ("a waterfall plunging into a gorge", "a waterfall cascading into a gorge"),
        ("a grandmother wearing glasses knitting", "a grandmother wearing spectacles knitting"),
        ("a footballer heading the ball", "a soccer player heading the ball"),
    ],
)
def test_everyday_words_of_the_second_swap_set_are_one_word(
    request_text: str, candidate: str
) -> None:
    assert GUARD.check(request_text, candidate).accepted


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a footballer heading the ball", "a basketball player heading the ball"),
        ("a messy desk covered in papers", "a tidy desk covered in papers"),
        ("a country lane at dusk", "a country street at dusk"),
    ],
)
def test_their_neighbours_of_the_second_swap_set_stay_apart(
    request_text: str, candidate: str
) -> None:
    assert not GUARD.check(request_text, candidate).accepted


def test_a_player_of_an_instrument_is_its_player_noun() -> None:
    assert GUARD.check(
        "a violinist on a street corner", "a violin player on a street corner"
    ).accepted
    assert GUARD.check("a pianist in a concert hall", "a piano player in a concert hall").accepted
    assert GUARD.check("a drummer on a small stage", "a drum player on a small stage").accepted
    assert not GUARD.check(
        "a violinist on a street corner", "a guitar player on a street corner"
    ).accepted


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a sheer cliff above the sea", "a vertical cliff above the sea"),
        ("a conductor rehearsing with an orchestra", "a conductor practising with an orchestra"),
        (
            "a freighter unloading containers at a port",
            "a freighter offloading containers at a port",
        ),
        ("fireflies over a meadow at dusk", "lightning bugs over a meadow at dusk"),
        ("a garbage truck on a narrow street", "a bin lorry on a narrow street"),
    ],
)
def test_everyday_words_of_the_third_swap_set_are_one_word(
    request_text: str, candidate: str
) -> None:
    assert GUARD.check(request_text, candidate).accepted


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        # members of one old group that a fourth swap set tells apart
        ("a gentle breeze ripples a mountain lake", "a gentle gust ripples a mountain lake"),
        ("drizzle on the terrace of a cafe", "a downpour on the terrace of a cafe"),
        ("morning fog over a swamp", "morning fog over a marsh"),
        ("a chef dices onions on a board", "a chef slices onions on a board"),
        ("a woman whispers to her friend", "a woman talks to her friend"),
        ("a singer hums into a microphone", "a singer sings into a microphone"),
    ],
)
def test_intensities_and_manners_a_viewer_tells_apart_stay_apart(
    request_text: str, candidate: str
) -> None:
    assert not GUARD.check(request_text, candidate).accepted


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a gentle breeze ripples a mountain lake", "a gentle wind ripples a mountain lake"),
        ("a rainy street at night", "a street in a downpour at night"),
        ("a chef chops onions on a board", "a chef cuts onions on a board"),
        ("a man chops firewood", "a man splits firewood"),
    ],
)
def test_the_general_word_still_meets_each(request_text: str, candidate: str) -> None:
    assert GUARD.check(request_text, candidate).accepted


@pytest.mark.parametrize(
    ("request_text", "candidate", "same"),
    [
        (
            "a teenage skateboarder lands a kickflip",
            "an adolescent skateboarder lands a kickflip",
            True,
        ),
        ("cars honk in a traffic jam at dusk", "cars honk in a gridlock at dusk", True),
        ("a lighthouse beam over a choppy sea", "a lighthouse beam over a rough sea", True),
        (
            "a mermaid combing her hair beside the sea",
            "a mermaid combing her hair by the sea",
            True,
        ),
        ("a lighthouse beam over a choppy sea", "a lighthouse beam over a calm sea", False),
    ],
)
def test_words_of_the_fourth_swap_set(request_text: str, candidate: str, same: bool) -> None:
    assert GUARD.check(request_text, candidate).accepted is same
