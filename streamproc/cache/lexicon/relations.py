"""Closed-class words the parser's output is read with: relations, particles, numbers.

These are grammatical words, not vocabulary: English has a few dozen spatial prepositions and
they do not grow with the prompts. Each relation maps to the *classes* of picture it can
describe; two relations contradict when their classes are disjoint. A preposition absent
here (with, of, at, through, along, across ...) never decides anything on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: Preposition (or a preposition + relational noun, "in front") -> classes of picture.
RELATION_CLASSES: Final[Mapping[str, frozenset[str]]] = {
    key: frozenset(value.split())
    for key, value in {
        "above": "above",
        "over": "above",
        "overhead": "above",
        "atop": "on",
        "on": "on",
        "onto": "on",
        "upon": "on",
        "on top": "on",
        "top": "on",
        "below": "below",
        "under": "below",
        "beneath": "below",
        "underneath": "below",
        "bottom": "below",
        "in": "in",
        "into": "in",
        "inside": "in",
        "within": "in",
        "middle": "in",
        "center": "in",
        "out": "out",
        "outside": "out",
        "off": "off",
        "behind": "behind",
        "back": "behind",
        "front": "front",
        "ahead": "front",
        "beside": "beside",
        "alongside": "beside",
        "next": "beside",
        "near": "beside",
        "close": "beside",
        "by": "beside",
        "left": "left",
        "right": "right",
        "toward": "toward",
        "towards": "toward",
        "away": "away",
        "up": "up",
        "down": "down",
    }.items()
}

#: Classes whose relation reads the same with its two ends exchanged ("a cup next to a mug").
SYMMETRIC: Final = frozenset({"beside"})

#: A class and the class of the same relation read from the other end ("X below Y" is
#: "Y above X"): relations are stored in the direction of the first class of each pair.
CONVERSE: Final[Mapping[str, str]] = {"below": "above", "behind": "front", "right": "left"}

#: Nouns that turn a preposition into a relation ("in front of", "to the left of").
RELATIONAL_NOUNS: Final = frozenset(
    {"front", "back", "left", "right", "top", "bottom", "side", "middle", "center", "centre"}
)

#: Particles and bare prepositions that state where something is or goes ("lights on",
#: "zoom in", "leaning back"), by the direction they name; pairs of directions exclude each
#: other. Without an opposite ("around", "along", "together") a particle is no word at all.
PARTICLES: Final[Mapping[str, str]] = {
    "on": "on",
    "off": "off",
    "in": "in",
    "inside": "in",
    "inward": "in",
    "inwards": "in",
    "out": "out",
    "outside": "out",
    "outward": "out",
    "outwards": "out",
    "up": "up",
    "upward": "up",
    "upwards": "up",
    "uphill": "up",
    "upstairs": "up",
    "down": "down",
    "downward": "down",
    "downwards": "down",
    "downhill": "down",
    "downstairs": "down",
    "forward": "forward",
    "forwards": "forward",
    "ahead": "forward",
    "onward": "forward",
    "onwards": "forward",
    "back": "back",
    "backward": "back",
    "backwards": "back",
    "toward": "toward",
    "towards": "toward",
    "away": "away",
    "over": "over",
    "under": "under",
    "around": "around",
    "round": "around",
    "about": "around",
    "along": "along",
    "across": "across",
    "through": "through",
    "past": "past",
    "by": "past",
    "aside": "aside",
    "apart": "apart",
    "together": "together",
}
#: Particle states a prompt must agree on even when only one side states them ("a lamp" is
#: no "lamp turned on"); other directions clash only with their opposite ("climbing up a
#: ladder" is "climbing a ladder", not "climbing down").
STATES: Final = frozenset({"on", "off", "in", "out"})
OPPOSITE: Final[Mapping[str, str]] = {
    "on": "off",
    "off": "on",
    "in": "out",
    "out": "in",
    "up": "down",
    "down": "up",
    "forward": "back",
    "back": "forward",
    "toward": "away",
    "away": "toward",
    "over": "under",
    "under": "over",
}
#: Verbs whose "on", "off", "in" or "out" right after them is a particle even before an
#: object ("turning on the lamp", "taking off a coat").
SWITCHING_VERBS: Final = frozenset({"turn", "switch", "put", "take", "shut", "power", "flick"})
#: Directions read even with an object: "moving up a staircase" goes up whether the parser
#: makes "up" a particle or a preposition.
MOTIONS: Final = frozenset(
    {"up", "down", "toward", "towards", "away", "upward", "downward", "forward", "back"}
)

#: Number words the tagger marks NUM; digits are read directly.
NUMBER_WORDS: Final[Mapping[str, int]] = {
    word: value
    for value, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
} | {
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "thousand": 1000,
    "dozen": 12,
    "single": 1,
    "lone": 1,
    "pair": 2,
    "couple": 2,
}

#: Nouns that only count what follows them ("a pair of horses" is two horses).
COUNTING_NOUNS: Final = frozenset({"pair", "couple", "dozen"})

#: Lemmas that carry no picture of their own: auxiliaries and pro-forms the tagger may
#: still mark as content words.
LIGHT_LEMMAS: Final = frozenset(
    [
        "be",
        "have",
        "do",
        "there",
        "here",
        "very",
        "really",
        "just",
        "also",
        "so",
        "too",
        "then",
        "now",
        "as",
        "such",
        "own",
        "other",
        "another",
        "some",
        "any",
        "each",
        "every",
        "all",
        "both",
        "many",
        "much",
        "more",
        "most",
        "few",
        "several",
        "lot",
        "various",
        "which",
        "that",
        "who",
        "whom",
        "whose",
        "what",
        "it",
        "one",
    ]
)

#: Verbs that add no picture of their own to a scene ("a car going through a tunnel" is "a
#: car driving through a tunnel"; "a kitchen featuring marble counters"): read as light.
NEUTRAL_VERBS: Final = frozenset(
    [
        "look",
        "feature",
        "appear",
        "fill",
        "surround",
        "drift",
        "do",
        "filter",
        "float",
        "move",
        "travel",
        "prepare",
        "show",
        "go",
        "stream",
        "cover",
        "coat",  # "frost coating the grass" is frost covering it
        "encircle",
        "display",  # "a watch displayed on a stand" is a watch on a stand
        "showcase",
        "cruise",
        "pass",
        "reveal",
        "take",
        "shine",
        "see",
        "get",
        "glide",
        "wait",
        "make",
        "come",
        "use",  # "using a trowel" is "with a trowel"
        "wear",  # "wearing a silver cloak" is "in a silver cloak"
    ]
)

#: Verbs of posture that say only where a thing is when no person or animal does them ("a
#: piano stands in the corner", "a cabin sits on a hill", "a village nestled in a valley");
#: said of a being they are what it does ("a man sitting" / "a man standing"). "lie" is left
#: out: "a bicycle lying on the grass" is not "a bicycle standing on the grass".
STILL_POSTURES: Final = frozenset({"stand", "sit", "rest", "nestle", "perch", "tower", "loom"})
#: Verbs of posture: a still posture left over with one of these left over on the other side
#: is a difference ("a statue standing" / "a statue kneeling").
POSTURES: Final = STILL_POSTURES | frozenset(
    {"lie", "kneel", "crouch", "lean", "hang", "squat", "lay"}
)

#: Verbs neutral without an object ("a car driving through a tunnel" is a car going through
#: it) but not with one ("a woman driving a bus" is no passenger).
NEUTRAL_INTRANSITIVE: Final = frozenset({"drive"})

#: Participles that state what a thing is seen with rather than an action ("a street lit by
#: lanterns" is a street with lanterns; "an alley shrouded in mist" an alley in mist).
NEUTRAL_PARTICIPLES: Final = frozenset(
    ["light", "illuminate", "shroud", "bathe", "blanket", "drape", "line", "dot", "strew"]
)

#: Nouns that name the medium, not the scene: "footage of X" at the head of a prompt is X.
MEDIA_NOUNS: Final = frozenset(
    ["video", "clip", "footage", "shot", "scene", "view", "movie", "sequence", "gif"]
)

#: Nouns of a picture made of someone or something: their "of"-object is what is shown and
#: whoever takes, paints or draws them makes it ("a tourist taking a photo of a monk").
PICTURE_NOUNS: Final = frozenset(
    [
        "picture",
        "photo",
        "photograph",
        "pic",
        "snapshot",
        "selfie",
        "portrait",
        "painting",
        "drawing",
        "sketch",
        "image",
        "caricature",
        "statue",
        "sculpture",
        "video",
        "film",
        "footage",
        "recording",
    ]
)

#: Ends a motion or a line can run between ("left to right", "from top to bottom"): the
#: order of two of them is a direction, whatever the parser makes of the words.
ENDPOINTS: Final = frozenset(
    [
        "left",
        "right",
        "top",
        "bottom",
        "front",
        "back",
        "north",
        "south",
        "east",
        "west",
        "inside",
        "outside",
        "up",
        "down",
        "near",
        "far",
        "start",
        "end",
    ]
)
