"""Prompt filler recognised by its shape: labels, leading tag lists, bare requests, trailing
requests around tags. Sentences written for these tests (none from a labelled pair file)."""

from __future__ import annotations

import pytest

from streamproc.cache.guard import AttributeGuard
from streamproc.cache.normalize import normalize_prompt

GUARD = AttributeGuard()


@pytest.mark.parametrize(
    "framed",
    [
        # a label of request, medium or quality words before a colon
        "Render request: a heron wading through a marsh at dawn",
        "promo clip please: a heron wading through a marsh at dawn",
        "Create: a heron wading through a marsh at dawn",
        "8k, hdr: a heron wading through a marsh at dawn",
        # the same before a comma
        "quick clip, a heron wading through a marsh at dawn",
        # a request verb with no medium
        "could you please render a heron wading through a marsh at dawn",
        # tags and a request around them at the end
        "a heron wading through a marsh at dawn, hyperrealistic, 4k",
        "a heron wading through a marsh at dawn, make it look cinematic please",
        "a heron wading through a marsh at dawn, cinematic shot",
    ],
)
def test_filler_of_a_known_shape_goes(framed: str) -> None:
    assert normalize_prompt(framed) == "a heron wading through a marsh at dawn"
    assert GUARD.check(framed, "A heron wading through a marsh at dawn").accepted


@pytest.mark.parametrize(
    "scene",
    [
        # a label that names the scene stays, and so does a part with a scene word
        "winter night: a fox crossing an empty road",
        "a fox, crossing an empty road",
        "rain, a fox crossing an empty road",
        # "make" and "show" before a determiner are not requests on their own
        "make a wish over a birthday cake",
        # a trailing part with a scene word stays; a medium word alone or with a framing
        # that changes the picture stays too
        "a fox crossing an empty road, make it snow",
        "a fox crossing an empty road, wide shot",
    ],
)
def test_a_part_with_a_scene_word_stays(scene: str) -> None:
    assert normalize_prompt(scene) == scene


def test_what_the_filler_dropped_is_not_compared_but_the_scene_still_is() -> None:
    verdict = GUARD.check(
        "Render request: a heron wading through a marsh", "a stork wading through a marsh"
    )
    assert verdict.reason == "word_mismatch: heron vs stork"


@pytest.mark.parametrize(
    "framed",
    [
        # an advert's framing words and trailing mood/quality tags
        "ad video: a heron wading through a marsh at dawn",
        "a heron wading through a marsh at dawn, epic, moody",
        "a heron wading through a marsh at dawn, clean and crisp",
        # trailing hashtags that say the scene again, or are quality tags
        "a heron wading through a marsh at dawn #heron #marsh",
        "a heron wading through a marsh at dawn #herons #wading #4k",
    ],
)
def test_advert_framing_mood_tags_and_repeating_hashtags_go(framed: str) -> None:
    assert normalize_prompt(framed) == "a heron wading through a marsh at dawn"
    assert GUARD.check(framed, "a heron wading through a marsh at dawn").accepted


@pytest.mark.parametrize(
    ("tagged", "kept"),
    [
        # a hashtag that names something the prompt does not is part of the scene
        ("a heron wading through a marsh #sunset", "a heron wading through a marsh #sunset"),
        # a word that only starts like the hashtag is not a repeat of it
        ("a rainbow over a marsh #rain", "a rainbow over a marsh #rain"),
        # a repeat goes, the new one stays
        ("a heron wading through a marsh #heron #fog", "a heron wading through a marsh #fog"),
    ],
)
def test_a_hashtag_that_adds_to_the_scene_stays(tagged: str, kept: str) -> None:
    assert normalize_prompt(tagged) == kept


def test_a_new_hashtag_is_compared_by_the_guard() -> None:
    assert not GUARD.check(
        "a heron wading through a marsh #sunset", "a heron wading through a marsh"
    ).accepted


@pytest.mark.parametrize(
    "framed",
    [
        # a tag list over several commas, with a picture modifier alone in its part
        "an otter floating on its back in a kelp forest, detailed, crisp, 8k, stunning",
        "an otter floating on its back in a kelp forest, sharp, 4k",
        # quality tags after the sentence's full stop
        "An otter floating on its back in a kelp forest. High quality.",
        # hashtags running the prompt's words together or giving their initials
        "an otter floating on its back in a kelp forest #kelpforest",
        "an otter floating on its back in a kelp forest #otters #kelp #kelpforest",
        # a tag sentence in front, and "trending on" whatever site
        "Masterpiece. An otter floating on its back in a kelp forest. 8K.",
        "an otter floating on its back in a kelp forest, trending on youtube, 4k",
        "an otter floating on its back in a kelp forest, trending on tiktok",
    ],
)
def test_tag_lists_after_commas_and_full_stops_and_joined_hashtags_go(framed: str) -> None:
    assert normalize_prompt(framed) == "an otter floating on its back in a kelp forest"


@pytest.mark.parametrize(
    "kept",
    [
        "a knife on a board, sharp",  # a modifier with no tag after it describes the scene
        "a fox in the snow. very still",
        "a sign that reads 4.5 miles",
        "a harbour at dusk #fog",  # two letters are no initials
        "mr. smith walks a dog at dawn",  # an abbreviation's stop ends no part
        "a dog, trending in the park",  # "trending on/in" a place is no site
    ],
)
def test_what_is_no_tag_list_stays(kept: str) -> None:
    assert normalize_prompt(kept) == kept


def test_a_detail_hashtag_that_repeats_the_prompt_goes_and_initials_repeat() -> None:
    # "#night" repeats the prompt (a detail that stays only when it is new).
    assert normalize_prompt("a quiet freeway #night #freeways") == "a quiet freeway #night"
    assert normalize_prompt("a quiet freeway at night #night #freeways") == (
        "a quiet freeway at night"
    )
    assert normalize_prompt("a new york city taxi at night #nyc") == "a new york city taxi at night"


@pytest.mark.parametrize(
    ("tagged", "kept"),
    [
        # labels of the post go: topics, moods, the subject's category
        (
            "a lynx stalking through deep snow #wildlife #nature",
            "a lynx stalking through deep snow",
        ),
        (
            "a lynx stalking through deep snow #cute #viral #fyp",
            "a lynx stalking through deep snow",
        ),
        # a detail a viewer sees stays, as does a number
        ("a lynx stalking through deep snow #dusk", "a lynx stalking through deep snow #dusk"),
        ("a lynx in deep snow #wildlife #blackandwhite", "a lynx in deep snow #blackandwhite"),
        ("a lynx in deep snow #3lynxes", "a lynx in deep snow #3lynxes"),
    ],
)
def test_hashtags_that_label_the_post_go_and_visible_details_stay(tagged: str, kept: str) -> None:
    assert normalize_prompt(tagged) == kept


def test_a_hashtag_with_another_detail_is_still_refused() -> None:
    assert not GUARD.check(
        "a lynx stalking through deep snow #dusk", "a lynx stalking through deep snow #dawn"
    ).accepted
    assert GUARD.check(
        "a lynx stalking through deep snow #wildlife", "a lynx stalking through deep snow"
    ).accepted


def test_a_request_clause_ended_by_a_comma_goes() -> None:
    assert normalize_prompt("a video depicting, under a streetlamp, a man waiting in the rain") == (
        "under a streetlamp, a man waiting in the rain"
    )
    assert GUARD.check(
        "a clip showing, under a streetlamp, a man waiting in the rain",
        "a man waiting in the rain under a streetlamp",
    ).accepted


@pytest.mark.parametrize(
    "framed",
    [
        # thanks and politeness closing the prompt
        "a heron wading through reeds at dawn. thanks!",
        "can you make a clip of a heron wading through reeds at dawn? thank you so much",
        "make me a video of a heron wading through reeds at dawn please",
        # tags between pipes and after a free-standing dash, bracketed tags, parameters
        "a heron wading through reeds at dawn | ultra hd | best quality",
        "a heron wading through reeds at dawn -- masterpiece, 8k",
        "[4k] [high quality] a heron wading through reeds at dawn",
        "a heron wading through reeds at dawn (best quality)",
        "a heron wading through reeds at dawn --ar 16:9 --v 6",
        # ratings and fidelity are quality tags; "trending on" a site of two words
        "a heron wading through reeds at dawn, top rated, high fidelity, trending on social media",
        # a request with a pronoun before its colon, and leading hashtags that label the post
        "could you render this: a heron wading through reeds at dawn",
        "#birds #nature a heron wading through reeds at dawn",
        # labels before a dash, what the clip is for, urgency, several tags in one bracket
        "Prompt - a heron wading through reeds at dawn",
        "uhd - a heron wading through reeds at dawn",
        "For our client deck: a heron wading through reeds at dawn",
        "a heron wading through reeds at dawn? It's for a school project, thanks a lot.",
        "Need this asap!! a heron wading through reeds at dawn",
        "pls make a vid of a heron wading through reeds at dawn",
        "a heron wading through reeds at dawn (high quality, 1080p)",
        "a heron wading through reeds at dawn, please and thank you",
        # labels naming the medium, numbered shots, titles, platform labels
        "TikTok ad: a heron wading through reeds at dawn",
        "Nature promo video: a heron wading through reeds at dawn",
        "Shot 2 of 5: a heron wading through reeds at dawn",
        "Title: Still Water. a heron wading through reeds at dawn",
        "Instagram reel for the wetland trust - a heron wading through reeds at dawn",
        "hey can u do a vid of a heron wading through reeds at dawn",
        # generation settings at the end
        "a heron wading through reeds at dawn, seed: 1234, steps: 30",
        "a heron wading through reeds at dawn, aspect ratio 9:16, 5 seconds",
        "a heron wading through reeds at dawn. Duration: 8 seconds. Resolution: 1080p.",
        "a heron wading through reeds at dawn, hd, 60fps, no watermark",
        "a heron wading through reeds at dawn (approx 6 seconds)",
    ],
)
def test_politeness_separators_brackets_and_leading_hashtags_go(framed: str) -> None:
    assert normalize_prompt(framed) == "a heron wading through reeds at dawn"


@pytest.mark.parametrize(
    "kept",
    [
        "a man saying thank you",  # words a person says are the scene
        "a girl saying please",
        "a dog (a terrier) barking",  # a bracket with scene words stays
        "a sign that says thanks, in neon",
        "tom - a cat - sleeping",
        "for dinner: a roast chicken",
        "a man - tired - walks home",
        "beach scene: waves rolling in",  # "scene" is no label ending
        "a beach, no people",
        "a clock showing 10:30",
    ],
)
def test_politeness_and_brackets_that_are_the_scene_stay(kept: str) -> None:
    assert normalize_prompt(kept) == kept


def test_a_leading_hashtag_that_names_a_detail_stays_for_the_guard() -> None:
    # (its "#" goes with the edge punctuation; the word stays)
    assert normalize_prompt("#sunset #birds a heron wading through reeds") == (
        "sunset a heron wading through reeds"
    )


@pytest.mark.parametrize(
    "framed",
    [
        # a leading bracket that labels the medium, with its length
        "[Bakery promo, 15s] a baker dusting flour over fresh loaves",
        "(tiktok ad, 20 sec) a baker dusting flour over fresh loaves",
        # a working title in quotes, and a numbered draft label
        'Working title "Morning Rise" - a baker dusting flour over fresh loaves',
        "Concept #4: a baker dusting flour over fresh loaves",
        # generator settings after a full stop, intensified quality tags, a frame rate
        "a baker dusting flour over fresh loaves. Seed: 5521, steps: 40, guidance 6",
        "a baker dusting flour over fresh loaves, super crisp",
        "a baker dusting flour over fresh loaves, 24 fps",
        # a request that says what it is for, closed by thanks and an emoji
        "Hey, could you make this one: a baker dusting flour over fresh loaves? "
        "Need it for a client pitch on Friday morning, thanks so much 🙏",
    ],
)
def test_labels_settings_and_purposes_of_other_shapes_go(framed: str) -> None:
    assert normalize_prompt(framed) == "a baker dusting flour over fresh loaves"
    assert GUARD.check(framed, "A baker dusting flour over fresh loaves").accepted


@pytest.mark.parametrize(
    ("framed", "kept"),
    [
        # an era in a leading bracket is a detail, even beside a medium label
        ("[1950s] a baker dusting flour over fresh loaves", "1950s"),
        ("[80s, ad] a baker dusting flour over fresh loaves", "80s"),
        # one modifier alone may describe the scene; a modifier with a scene word too
        ("a baker dusting flour over fresh loaves, sharp", "sharp"),
        ("a baker dusting flour over fresh loaves, ultra wide", "wide"),
        # guidance as the scene's own word
        ("a baker giving guidance to an apprentice", "guidance"),
    ],
)
def test_details_near_the_new_filler_shapes_stay(framed: str, kept: str) -> None:
    assert kept in normalize_prompt(framed)
    # The prompt without that detail is another video.
    plain = normalize_prompt(framed).replace(kept, "").replace("[", "").replace("]", "")
    assert not GUARD.check(framed, " ".join(plain.replace(",", " ").split())).accepted


@pytest.mark.parametrize(
    "tagged",
    [
        # where the video goes: a platform and its format, an orientation and aspect ratio
        "a potter shaping a bowl on a wheel. TikTok story.",
        "a potter shaping a bowl on a wheel - for Instagram Reels, vertical 9:16",
        "a potter shaping a bowl on a wheel, for our Facebook feed",
        # a motion-quality tag among the others
        "a potter shaping a bowl on a wheel, hq, smooth motion",
        # a label naming the prompt itself
        "Another prompt for the campaign - a potter shaping a bowl on a wheel",
    ],
)
def test_where_the_video_goes_is_filler(tagged: str) -> None:
    assert normalize_prompt(tagged) == "a potter shaping a bowl on a wheel"


def test_words_of_the_scene_beside_those_tags_stay() -> None:
    # slow motion changes the video; a horizontal bar is in it; "for the kids" is no platform
    assert not GUARD.check("a gymnast on a horizontal bar", "a gymnast on a bar").accepted
    assert not GUARD.check("a skier, slow motion", "a skier").accepted
    assert not GUARD.check("a puppet show, for the kids", "a puppet show").accepted


@pytest.mark.parametrize(
    "tagged",
    [
        # what the video is for, as a part of its own at the end
        "a glassblower shaping a vase in a workshop, for a homeware brand ad",
        "a glassblower shaping a vase in a workshop, for our craft fair presentation",
        "a glassblower shaping a vase in a workshop, for a museum explainer video",
        # popularity and equipment tags
        "a glassblower shaping a vase in a workshop, trending on tiktok, viral video",
        "a glassblower shaping a vase in a workshop, shot on a professional camera, 4k",
    ],
)
def test_what_the_video_is_for_and_how_it_was_shot_are_filler(tagged: str) -> None:
    assert normalize_prompt(tagged) == "a glassblower shaping a vase in a workshop"
    assert GUARD.check(tagged, "A glassblower shaping a vase in a workshop").accepted


@pytest.mark.parametrize(
    ("framed", "kept"),
    [
        # a purpose inside the scene, or one that names no medium, is compared
        ("a girl at a desk, making a poster for a school presentation", "poster"),
        ("a boy at a stop, waiting for a bus", "bus"),
        ("a glassblower shaping a vase, for a wedding", "wedding"),
        # a camera that is seen, or a kind of camera work
        ("a glassblower shaping a vase, filmed with a handheld camera", "handheld"),
        ("a reporter holding a camera in the rain", "camera"),
    ],
)
def test_a_purpose_or_camera_that_is_part_of_the_scene_stays(framed: str, kept: str) -> None:
    assert kept in normalize_prompt(framed)


@pytest.mark.parametrize(
    "framed",
    [
        # a request of request, medium and quality words in any order, up to the connector
        "Please produce a brief, ultra-detailed clip of a farrier shoeing a horse in a barn",
        "need some hd footage for our stable's website showing a farrier shoeing a horse in a barn",
        "I'd love a photorealistic 8k video where a farrier shoeing a horse in a barn",
        # what the video is for, its genre, its overlays or a request, as trailing parts
        "a farrier shoeing a horse in a barn - it's for an instagram post",
        "a farrier shoeing a horse in a barn, to use in a training course, crisp",
        "a farrier shoeing a horse in a barn. Lifelike, no logos or subtitles.",
        "a farrier shoeing a horse in a barn, rural documentary, 8k",
        "a farrier shoeing a horse in a barn - could you make this?",
        "a farrier shoeing a horse in a barn, render a 10 second clip",
        # after a request at the start, a purpose at the very end needs no separator
        "hi, could you make a video of a farrier shoeing a horse in a barn for my history project",
    ],
)
def test_requests_purposes_and_genres_of_any_order_go(framed: str) -> None:
    assert normalize_prompt(framed) == "a farrier shoeing a horse in a barn"
    assert GUARD.check(framed, "A farrier shoeing a horse in a barn").accepted


@pytest.mark.parametrize(
    "kept",
    [
        # a word of the scene in the request keeps it whole
        "a slow motion video of a farrier shoeing a horse",
        "a grainy black and white clip of a farrier shoeing a horse",
        "a shot of whisky on a bar",
        # a part with a word of the scene around a purpose, a genre or a request
        "a film crew, shooting a documentary",
        "a farrier at a forge, making horseshoes for a history project",
        "a farrier shoeing a horse, make it rain",
        # without a request at the start, a purpose at the end is the scene's
        "a boy building a volcano for a school project",
    ],
)
def test_a_request_purpose_or_genre_holding_a_scene_word_stays(kept: str) -> None:
    assert normalize_prompt(kept) == kept


@pytest.mark.parametrize(
    "framed",
    [
        # a label of the medium: how good or what kind, then a medium word or "quality"
        "a beekeeper lifting a frame from a hive, hd farm footage",
        "a beekeeper lifting a frame from a hive, lovely rural video",
        "Cute nature clip - a beekeeper lifting a frame from a hive",
        "a beekeeper lifting a frame from a hive, broadcast quality",
        # quality words with a look-neutral modifier, after a double colon too
        "a beekeeper lifting a frame from a hive :: photoreal, octane render, good quality pls",
        "a beekeeper lifting a frame from a hive, realistic style, dramatic",
        "A gorgeous documentary-style video of a beekeeper lifting a frame from a hive",
    ],
)
def test_labels_of_the_medium_and_render_tags_go(framed: str) -> None:
    assert normalize_prompt(framed) == "a beekeeper lifting a frame from a hive"
    assert GUARD.check(framed, "A beekeeper lifting a frame from a hive").accepted


@pytest.mark.parametrize(
    "kept",
    [
        # camera work, the picture's look, an era or a style in the label keeps it
        "a beekeeper at a hive, wide shot",
        "a beekeeper at a hive, top-down shot",
        "a beekeeper at a hive, grainy black and white footage",
        "a beekeeper at a hive, 1970s footage",
        "a beekeeper at a hive, anime style",
        "a beekeeper at a hive, slow motion clip",
        # a determiner or a verb form makes it a part of the scene
        "a beekeeper at a hive, watching the footage",
    ],
)
def test_a_medium_label_with_camera_work_a_look_or_the_scene_stays(kept: str) -> None:
    assert normalize_prompt(kept) == kept


def test_fall_before_a_word_of_the_season_is_autumn() -> None:
    assert (
        normalize_prompt("fall leaves drifting onto a path") == "autumn leaves drifting onto a path"
    )
    assert GUARD.check(
        "fall leaves drifting onto a path", "autumn leaves drifting onto a path"
    ).accepted
    # a verb stays a verb
    assert normalize_prompt("leaves fall onto a path") == "leaves fall onto a path"


@pytest.mark.parametrize(
    "wrapped",
    [
        # request and chat words, quality tags with no comma, left over by the filler rules
        "a lighthouse keeper climbing a spiral staircase 8k uhd hdr",
        "a lighthouse keeper climbing a spiral staircase lol thx",
        "a lighthouse keeper climbing a spiral staircase deadline friday pls",
    ],
)
def test_request_words_on_one_side_only_are_accepted(wrapped: str) -> None:
    assert GUARD.check("a lighthouse keeper climbing a spiral staircase", wrapped).accepted
    assert GUARD.check(wrapped, "a lighthouse keeper climbing a spiral staircase").accepted


def test_request_words_are_refused_beside_a_scene_word_or_as_what_is_acted_on() -> None:
    plain = "a lighthouse keeper climbing a spiral staircase"
    # another word of the scene beside them
    assert not GUARD.check(plain, f"{plain} 8k uhd at night").accepted
    # a word that may be the scene's ("sharp", "little", "clean") is not a request word
    assert not GUARD.check("a knife on a board", "a sharp knife on a board").accepted
    assert not GUARD.check("a boy with a kite", "a little boy with a kite").accepted
    # what an action is done to is the scene's, whatever the word
    assert GUARD.check("a man presenting a slideshow", "a man presenting").reason == (
        "word_mismatch: slideshow vs none"
    )


@pytest.mark.parametrize(
    "framed",
    [
        # more ways of asking (a development set of filler pairs a helper wrote)
        "Could you bring to life a heron wading through a marsh at dawn? ty",
        "could you put together a clip of a heron wading through a marsh at dawn",
        "yo make a vid of a heron wading through a marsh at dawn plz",
        "Hi! Could you produce a heron wading through a marsh at dawn? Much appreciated.",
        "visualize a heron wading through a marsh at dawn, thanks a bunch!",
        # a purpose at the very end: the asker's own, or a medium
        "a heron wading through a marsh at dawn for my biology class",
        "a heron wading through a marsh at dawn for a nature documentary intro",
        "a heron wading through a marsh at dawn for a holiday e-card",
    ],
)
def test_more_requests_and_purposes_go(framed: str) -> None:
    assert normalize_prompt(framed) == "a heron wading through a marsh at dawn"


@pytest.mark.parametrize(
    "scene",
    [
        # "for" with no medium and no asker is the scene's
        "a dog waiting for a bus",
        "a table set for six people",
        "a man preparing for a presentation",
        # a numbered scene is no label of the medium
        "scene 4: a castle",
    ],
)
def test_a_purpose_of_the_scene_stays(scene: str) -> None:
    assert normalize_prompt(scene) == scene


@pytest.mark.parametrize(
    "framed",
    [
        "I would love to watch a heron wading through a marsh at dawn",
        "would really like to see this: a heron wading through a marsh at dawn",
        "a heron wading through a marsh at dawn (for a nature documentary intro)",
        "a heron wading through a marsh at dawn in stunning 4k resolution",
        "need this for a product page: a heron wading through a marsh at dawn, 10 seconds",
        "a heron wading through a marsh at dawn. For my D&D campaign intro, please!",
        "a heron wading through a marsh at dawn // sharp, detailed, hd",
        "a heron wading through a marsh at dawn, high quality, if possible",
        "a heron wading through a marsh at dawn - premium quality output",
    ],
)
def test_wishes_bracketed_purposes_and_more_tags_go(framed: str) -> None:
    assert normalize_prompt(framed) == "a heron wading through a marsh at dawn"


def test_bare_plural_after_a_request_verb_is_the_scene() -> None:
    assert normalize_prompt("could you generate skiers riding a chairlift") == (
        "skiers riding a chairlift"
    )
    # a part with a scene word and a bracket that is no purpose stay
    assert normalize_prompt("a garden, full of life") == "a garden, full of life"
    assert normalize_prompt("a dog (a terrier) running") == "a dog (a terrier) running"


@pytest.mark.parametrize(
    ("prompt", "scene"),
    [
        # a genre label at the start or end: an ad, a promo, b-roll, a kind of photography
        ("real estate promo: a loft with tall windows", "a loft with tall windows"),
        ("travel channel b-roll: a ferry leaving port", "a ferry leaving port"),
        ("a ferry leaving port, fitness ad, high quality", "a ferry leaving port"),
        ("a heron in the reeds, award-winning wildlife photography", "a heron in the reeds"),
        ("a heron in the reeds (wildlife photography, ultra realistic)", "a heron in the reeds"),
        ("sci-fi video prompt: a rover on a red dune", "a rover on a red dune"),
        # generator settings and quality chatter
        ("a ferry leaving port, seed: 7, duration 8s", "a ferry leaving port"),
        ("a ferry leaving port | ad quality, tack sharp", "a ferry leaving port"),
    ],
)
def test_genre_labels_and_settings_are_filler(prompt: str, scene: str) -> None:
    assert normalize_prompt(prompt) == scene


@pytest.mark.parametrize(
    "prompt",
    ["a man reading an ad on a bus", "a black and white photography exhibition", "a 1950s diner"],
)
def test_those_words_inside_a_scene_stay(prompt: str) -> None:
    assert normalize_prompt(prompt) == prompt


@pytest.mark.parametrize(
    ("prompt", "scene"),
    [
        # line breaks and emoji separate parts; markdown, quotes and negative prompts go
        ("**a heron in the reeds**\n**Format:** 16:9, 1080p", "a heron in the reeds"),
        ("## Prompt\na heron in the reeds\n## Settings\n--ar 16:9, 24fps", "a heron in the reeds"),
        ('Prompt: "a heron in the reeds" --ar 16:9', "a heron in the reeds"),
        ("a heron in the reeds 🐦✨ ultra detailed, 4k", "a heron in the reeds"),
        ("a heron in the reeds | negative prompt: blurry, extra limbs", "a heron in the reeds"),
        ("a heron in the reeds\nNegative: blurry, text", "a heron in the reeds"),
        # versions, hopes, settings, arrows and other separators
        ("v2 - a heron in the reeds, ultra HD", "a heron in the reeds"),
        ("a heron in the reeds. hope this works!", "a heron in the reeds"),
        ("a heron in the reeds (duration: 6 s, fps 24)", "a heron in the reeds"),
        ("a heron in the reeds, seed=555", "a heron in the reeds"),
        ("generate video >> a heron in the reeds << ultra hd", "a heron in the reeds"),
        ("prompt -> a heron in the reeds", "a heron in the reeds"),
        ("a heron in the reeds / for kickstarter page / 16:9 / 4k", "a heron in the reeds"),
        ("a heron in the reeds ~ 9:16 vertical for reels ~ 6s", "a heron in the reeds"),
        # requests and purposes of other shapes
        ("b-roll of a heron in the reeds, sharp focus", "a heron in the reeds"),
        ("can u make a heron in the reeds 🐦 pls and thank u", "a heron in the reeds"),
        ("ad spot for instagram: a heron in the reeds", "a heron in the reeds"),
        ("a heron in the reeds. Needed for Amazon listing.", "a heron in the reeds"),
        (
            "a heron in the reeds -- for our restaurant's menu board -- 4k -- thx!",
            "a heron in the reeds",
        ),
        (
            "home office w/ a standing desk — need this for a youtube intro, thx",
            "home office with a standing desk",
        ),
    ],
)
def test_markup_settings_and_chat_around_the_scene_go(prompt: str, scene: str) -> None:
    assert normalize_prompt(prompt) == scene


@pytest.mark.parametrize(
    "prompt",
    [
        "a man making a cake",
        "for dinner: a roast chicken",
        "a sign reading x -> y",
        "a room at 20°c with a © sign",
        "a negative of a photograph on a lightbox",
    ],
)
def test_scenes_that_look_like_that_markup_stay(prompt: str) -> None:
    assert normalize_prompt(prompt) == prompt


def test_emoji_within_a_scene_do_not_change_its_words() -> None:
    verdict = GUARD.check("a dog 🐶 chasing a ball in a park", "a dog chasing a ball in a park")
    assert verdict.accepted
    assert not GUARD.check("a dog 🐶 chasing a ball, 4k", "a cat chasing a ball, 4k").accepted
