"""The guard on roles and relations the parser carries beyond subject and object.

Sentences written for these tests (none is taken from a labelled pair file): each class of
fix with a refused swap and an accepted paraphrase, so a rule that refuses everything fails.
"""

from __future__ import annotations

import pytest

from streamproc.cache.guard import AttributeGuard

GUARD = AttributeGuard()


def reason(request: str, candidate: str) -> str | None:
    return GUARD.check(request, candidate).reason


def accepts(request: str, candidate: str) -> bool:
    return GUARD.check(request, candidate).accepted


# --- who does the action: the agent moved into another clause or a prepositional object --------


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        # participle + subordinate clause
        (
            "a nurse smiling while a doctor writes a prescription",
            "a doctor smiling while a nurse writes a prescription",
        ),
        # prepositional (dative) object
        ("a chef passing a plate to a busboy", "a busboy passing a plate to a chef"),
        (
            "a father singing a lullaby to his daughter",
            "a daughter singing a lullaby to her father",
        ),
        # a finite verb the tagger read as a plural noun
        (
            "a falcon swoops at a pigeon over the square",
            "a pigeon swoops at a falcon over the square",
        ),
    ],
)
def test_the_same_action_done_by_the_other_participant_is_refused(
    request_text: str, candidate: str
) -> None:
    why = reason(request_text, candidate)
    assert why is not None and why.startswith("role_mismatch:")


def test_the_refusal_names_both_agents() -> None:
    assert reason(
        "a nurse smiling while a doctor writes a prescription",
        "a doctor smiling while a nurse writes a prescription",
    ) == ("role_mismatch: nurse agent of smiling vs doctor agent of smiling")


def test_a_giver_who_becomes_the_receiver_is_named_so() -> None:
    assert reason("a chef passing a plate to a busboy", "a busboy passing a plate to a chef") == (
        "role_mismatch: chef agent of passing vs chef recipient of passing"
    )


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        # the clause hangs on the noun of a prepositional phrase on one side only
        ("a man in a kayak paddling upstream", "a man paddling upstream in a kayak"),
        # a group noun and its members name one agent
        ("a flock of geese landing on a lake", "geese in a flock landing on a lake"),
        ("a swarm of bees circling a hive", "bees in a swarm circling a hive"),
        # ... and through a participle: the clause hangs on "mud", the dog is who runs
        ("a muddy dog running through a field", "a dog covered in mud running through a field"),
        ("a chef passing a plate to a busboy", "a chef passes a plate to a busboy"),
    ],
)
def test_the_same_agent_read_through_another_attachment_is_accepted(
    request_text: str, candidate: str
) -> None:
    assert accepts(request_text, candidate), reason(request_text, candidate)


def test_a_neutral_verb_adds_no_word_but_keeps_its_roles() -> None:
    # "pass" is neutral ("a car passing through a tunnel" is a car in a tunnel), yet who
    # overtakes whom is a different video.
    assert reason(
        "a car passing a truck on the motorway", "a truck passing a car on the motorway"
    ) == ("role_mismatch: car agent of passing vs car patient of passing")
    assert accepts("a car passing through a tunnel", "a car going through a tunnel")


# --- relations: compound prepositions and things named by two nouns ------------------------------


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a cat peeking from inside a cardboard box", "a cat peeking from outside a cardboard box"),
        ("a puppy barking from behind a fence", "a puppy barking from in front of a fence"),
    ],
)
def test_a_preposition_under_from_still_places_the_thing(request_text: str, candidate: str) -> None:
    why = reason(request_text, candidate)
    assert why is not None and why.startswith("relation_mismatch:")


def test_a_relation_hung_on_either_noun_of_one_thing_is_compared() -> None:
    # The parser hangs "set" on "jar" in one prompt and reads it as the jar's own verb in the
    # other: the relation check alone refuses.
    relations_only = AttributeGuard(checks=("word", "relation"))
    verdict = relations_only.check(
        "a jar of honey set in front of a basket of lemons",
        "a jar of honey set behind a basket of lemons",
    )
    assert verdict.reason == "relation_mismatch: jar in front of basket vs jar behind basket"


def test_a_relation_to_a_linked_noun_is_no_contradiction() -> None:
    # "in the shade of a tree" and "under a tree" place the fox in two compatible ways.
    assert accepts(
        "a fox sleeping in the shade of an oak", "a fox sleeping in the shade under an oak"
    )


# --- who receives: a dative, a "to"/"for" object, the subject of a passive that keeps an object --


def test_what_is_given_and_who_receives_it_may_not_swap() -> None:
    assert reason(
        "a girl introducing her uncle to her teacher",
        "a girl introducing her teacher to her uncle",
    ) == ("role_mismatch: uncle patient of introducing vs uncle recipient of introducing")


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        (
            "a nurse handing a patient a glass of water",
            "a nurse handing a glass of water to a patient",
        ),
        ("a boy baking a cake for his sister", "a boy baking his sister a cake"),
        ("a clerk hands a parcel to a courier", "a courier is handed a parcel by a clerk"),
    ],
)
def test_the_receiver_is_the_same_in_any_construction(request_text: str, candidate: str) -> None:
    assert accepts(request_text, candidate), reason(request_text, candidate)


def test_a_bare_past_form_may_be_a_participle() -> None:
    # The tagger reads "placed" as a past tense with the jar as its subject; a prompt means
    # the jar that is placed. Agent against patient is not compared for such a verb.
    assert accepts("a jar of honey placed behind a basket", "a honey jar placed behind a basket")
    assert accepts(
        "a jar of honey placed behind a basket of lemons",
        "a jar of honey that is placed behind a basket of lemons",
    )
    # With an object the past tense is certain.
    assert reason("a dog chased a cat", "a cat chased a dog") == (
        "role_mismatch: dog agent of chased vs dog patient of chased"
    )


def test_swaps_are_refused_through_the_parsers_misread_nouns() -> None:
    # "kitten" read as an adjective, "repairs" as a plural noun: corrected before reading.
    assert reason("a kitten sleeping on top of a laptop", "a kitten sleeping under a laptop") == (
        "relation_mismatch: kitten on top of laptop vs kitten under laptop"
    )
    assert reason(
        "a mechanic watching as an apprentice repairs a tyre",
        "an apprentice watching as a mechanic repairs a tyre",
    ) == ("role_mismatch: apprentice agent of repairs vs mechanic agent of repairs")


def test_a_being_and_its_ing_form_read_as_one_noun_still_swap() -> None:
    # "a knight kneeling" tagged as one noun ("knight kneeling"): corrected before reading.
    assert reason("a knight kneeling before a queen", "a queen kneeling before a knight") == (
        "role_mismatch: knight agent of kneeling vs queen agent of kneeling"
    )
    assert reason("a wizard dancing with a bear", "a bear dancing with a wizard") is not None
    assert accepts("a deer grazing near a fence", "near a fence, a deer grazes")
    assert accepts("a knight kneeling before a queen", "a knight kneels before a queen")


# --- whom something is taken from, and clauses the parser read as noun phrases -----------------


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a seagull stealing chips from a child", "a child stealing chips from a seagull"),
        ("a boy buying bread from a baker", "a baker buying bread from a boy"),
        ("a waiter serving soup to a chef", "a chef serving soup to a waiter"),
        ("a nurse taking a cup from a patient", "a patient taking a cup from a nurse"),
    ],
)
def test_taker_and_source_or_giver_and_receiver_may_not_swap(
    request_text: str, candidate: str
) -> None:
    why = reason(request_text, candidate)
    assert why is not None and why.startswith("role_mismatch:")


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a seagull stealing chips from a child", "chips are stolen from a child by a seagull"),
        ("a waiter serving soup to a chef", "a waiter serves soup to a chef"),
        (
            "a jellyfish glowing blue, drifting in the dark ocean",
            "drifting in the dark ocean, a jellyfish glowing blue",
        ),
        ("carved from ice, a swan", "a swan carved from ice"),
        # "from" without an object is where something flows, not whom it is taken from
        (
            "a bottle of olive oil pouring in slow motion",
            "olive oil pouring from a bottle in slow motion",
        ),
    ],
)
def test_the_same_taking_giving_or_fronted_clause_is_accepted(
    request_text: str, candidate: str
) -> None:
    assert accepts(request_text, candidate), reason(request_text, candidate)


def test_a_fronted_clause_keeps_who_does_it() -> None:
    why = reason(
        "chasing a puppy across the lawn, a ball", "a puppy chasing a ball across the lawn"
    )
    assert why is not None and why.startswith("role_mismatch:")


# --- the same noun twice ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        (
            "a black cat and a white cat sleeping on a sofa",
            "a white cat and a black cat sleeping on a sofa",
        ),
        (
            "a man in a red hat and a man in a blue hat",
            "a man in a blue hat and a man in a red hat",
        ),
    ],
)
def test_two_alike_things_named_in_the_other_order_are_the_same_scene(
    request_text: str, candidate: str
) -> None:
    assert accepts(request_text, candidate), reason(request_text, candidate)


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a black cat chasing a white cat", "a white cat chasing a black cat"),
        ("a red kite above a blue kite", "a blue kite above a red kite"),
        # the gloves go with boxers that do different things
        (
            "a wrestler in red boots pins a wrestler in green boots",
            "a wrestler in green boots pins a wrestler in red boots",
        ),
    ],
)
def test_two_alike_things_that_differ_in_what_they_do_or_where_may_not_swap(
    request_text: str, candidate: str
) -> None:
    assert not accepts(request_text, candidate)


def test_a_place_hung_on_another_noun_still_places_the_anchor() -> None:
    # the parser hangs "in front of" on the reporter and "inside" on the camera
    why = reason(
        "a reporter speaks to the camera in front of the stadium",
        "a reporter speaks to the camera inside the stadium",
    )
    assert why is not None and why.startswith("relation_mismatch:")
    assert accepts(
        "a reporter speaks to the camera in front of the stadium",
        "in front of the stadium, a reporter speaks to the camera",
    )


def test_by_hand_says_how_not_who() -> None:
    assert accepts(
        "the seedlings are being watered by hand",
        "someone is watering the seedlings by hand",
    )
    assert not accepts("bread kneaded by hand", "bread kneaded by a machine")


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        # one place phrase attached to nothing by the parser
        (
            "a puppy dozing on top of the dryer while it tumbles",
            "a puppy dozing next to the dryer while it tumbles",
        ),
        (
            "a vase stands between the candles and the clock",
            "a vase stands behind the candles and the clock",
        ),
        ("a dog waiting inside the shop", "a dog waiting outside the shop"),
    ],
)
def test_two_different_place_phrases_differ_wherever_they_hang(
    request_text: str, candidate: str
) -> None:
    why = reason(request_text, candidate)
    assert why is not None and why.startswith("relation_mismatch:")


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a lantern above a doorway", "a doorway below a lantern"),  # the inverse place
        ("a fox under the hedge", "beneath the hedge, a fox"),
        ("a mug on a desk", "a mug on top of a desk"),  # said one way on one side only
    ],
)
def test_the_same_place_said_another_way_is_no_difference(
    request_text: str, candidate: str
) -> None:
    assert accepts(request_text, candidate), reason(request_text, candidate)


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        ("a juggler in the square, nobody watches", "a juggler in the square, everybody watches"),
        ("a juggler in the square, no one watches", "a juggler in the square, everyone watches"),
        ("pupils reading, none of them smiling", "pupils reading, all of them smiling"),
    ],
)
def test_an_action_nobody_does_is_negated(request_text: str, candidate: str) -> None:
    why = reason(request_text, candidate)
    assert why is not None and why.startswith("negation_mismatch:")


@pytest.mark.parametrize(
    ("request_text", "candidate"),
    [
        # the parser reads the sentence as one noun phrase, the verb a compound
        (
            "the old baker spoons batter into her grandson's tin",
            "the grandson spoons batter into the old baker's tin",
        ),
        ("a farmer ships crates to his neighbour", "his neighbour ships crates to a farmer"),
    ],
)
def test_a_verb_read_as_a_compound_noun_still_has_its_roles(
    request_text: str, candidate: str
) -> None:
    why = reason(request_text, candidate)
    assert why is not None and why.startswith("role_mismatch:")


def test_a_verb_read_as_a_compound_noun_meets_its_passive() -> None:
    request_text = "the old baker spoons batter into a tin"
    assert accepts(request_text, "batter is spooned into a tin by the old baker"), reason(
        request_text, "batter is spooned into a tin by the old baker"
    )


def test_an_object_tagged_plural_beside_a_misread_verb_keeps_its_number() -> None:
    # The parser reads "buries" as a plural noun and "hut" as a plural appositive.
    assert accepts(
        "the mountain hut is buried by a fierce blizzard",
        "a fierce blizzard buries the mountain hut",
    )
    why = reason(
        "a fierce blizzard buries the mountain huts", "a fierce blizzard buries the mountain hut"
    )
    assert why is not None and why.startswith("number_mismatch:")


def test_a_relational_noun_counts_in_either_spelling() -> None:
    # "the centre of" and "the center of" place alike; another part of the square does not
    assert GUARD.check(
        "a kite hovering over the centre of a park", "a kite hovering over the center of a park"
    ).accepted
    assert not GUARD.check(
        "a kite hovering over the centre of a park", "a kite hovering beside the park"
    ).accepted


@pytest.mark.parametrize(
    ("placed", "swapped"),
    [
        ("a cat on the left and a dog on the right", "a cat on the right and a dog on the left"),
        (
            "a bowl with grapes on the left and cheese on the right",
            "a bowl with grapes on the right and cheese on the left",
        ),
        (
            "a vase in the foreground and a lamp in the background",
            "a lamp in the foreground and a vase in the background",
        ),
    ],
)
def test_two_things_trading_positions_in_the_picture_are_refused(placed: str, swapped: str) -> None:
    assert reason(placed, swapped).startswith("relation_mismatch")
    # said in another order, each thing keeps its position
    first, second = placed.split(" and ")
    assert reason(placed, f"{second} and {first}") is None


def test_what_each_person_has_with_them_is_compared_as_a_swap() -> None:
    assert (
        reason(
            "a boy with a red balloon and a girl with a blue kite",
            "a boy with a blue kite and a girl with a red balloon",
        )
        == "role_mismatch: balloon with boy vs balloon with girl"
    )
    assert (
        reason(
            "a man with a dog and a woman with a cat in a park",
            "a man with a cat and a woman with a dog in a park",
        )
        == "role_mismatch: dog with man vs dog with woman"
    )
    # the two people in the other order keep what they have, and so does a list of things
    assert (
        reason(
            "a boy with a balloon and a girl with a kite",
            "a girl with a kite and a boy with a balloon",
        )
        is None
    )
    assert reason("a woman with a hat and a scarf", "a woman with a scarf and a hat") is None
    # a tool the parser hangs on a thing rather than a person is not compared so
    assert (
        reason(
            "drops of dye are added to a beaker by a student with a pipette",
            "a student adds drops of dye to a beaker with a pipette",
        )
        is None
    )


@pytest.mark.parametrize(
    ("done", "traded", "said"),
    [
        (
            "a woman wearing a hat holding an umbrella",
            "a woman wearing an umbrella holding a hat",
            "role_mismatch: umbrella patient of holding vs umbrella patient of wearing",
        ),
        (
            "a nurse carrying a tray and pushing a cart",
            "a nurse carrying a cart and pushing a tray",
            "role_mismatch: tray patient of carrying vs tray patient of pushing",
        ),
    ],
)
def test_two_actions_trading_what_they_are_done_to_are_refused(
    done: str, traded: str, said: str
) -> None:
    assert reason(done, traded) == said


def test_two_actions_said_in_the_other_order_keep_their_objects() -> None:
    assert (
        reason(
            "a nurse carrying a tray and pushing a cart",
            "a nurse pushing a cart and carrying a tray",
        )
        is None
    )


@pytest.mark.parametrize(
    ("listed", "reordered"),
    [
        (
            "golden light, barn in background, chickens pecking at grain",
            "chickens pecking at grain, barn in background, golden light",
        ),
        (
            "minimalist product shot, white background, wireless earbuds, soft shadows, rotating",
            "wireless earbuds rotating, soft shadows, white background, minimalist product shot",
        ),
        (
            "businessman riding the elevator up a glass office tower, city lights outside",
            "businessman riding the lift up a glass office tower, city lights outside",
        ),
    ],
)
def test_the_parts_of_a_list_take_no_roles_in_each_other(listed: str, reordered: str) -> None:
    assert GUARD.check(listed, reordered).accepted


@pytest.mark.parametrize(
    ("request_text", "swapped", "reason"),
    [
        # a participle clause opening the prompt and the noun after it
        (
            "chased by a dog, a cat runs across the yard",
            "chased by a cat, a dog runs across the yard",
            "role_mismatch: dog agent of chased vs cat agent of chased",
        ),
        # the subject of a finite verb, across a parenthesis
        (
            "an old man, tired after his walk, feeds a pigeon",
            "a pigeon, tired after his walk, feeds an old man",
            "role_mismatch: man agent of feeds vs man patient of feeds",
        ),
        # a participle clause and the noun it hangs on
        (
            "a chef, wearing an apron, chops onions",
            "an apron, wearing a chef, chops onions",
            "role_mismatch: chef agent of wearing vs chef patient of wearing",
        ),
        # a role swap inside one part of a list
        (
            "park, sunny, a dog chasing a cat",
            "a cat chasing a dog, park, sunny",
            "role_mismatch: dog agent of chasing vs dog patient of chasing",
        ),
    ],
)
def test_a_role_across_a_comma_that_the_grammar_gives_is_compared(
    request_text: str, swapped: str, reason: str
) -> None:
    assert GUARD.check(request_text, swapped).reason == reason


def test_the_noun_after_a_fronted_participle_clause_is_the_one_it_describes() -> None:
    opening = "surrounded by pine trees, a small cabin with smoke rising from the chimney"
    assert GUARD.check(
        "a small cabin with smoke rising from the chimney, surrounded by pine trees", opening
    ).accepted
    assert not GUARD.check(opening, "pine trees surrounded by a small cabin").accepted
