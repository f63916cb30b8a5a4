"""English plurals and verb forms, enough to expand the vocabulary's base forms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from streamproc.cache.lexicon import words

_IRREGULAR_PLURALS: Final[Mapping[str, str]] = {
    "man": "men",
    "woman": "women",
    "child": "children",
    "person": "people",
    "mouse": "mice",
    "goose": "geese",
    "foot": "feet",
    "tooth": "teeth",
    "ox": "oxen",
    "cactus": "cacti",
    "octopus": "octopuses",
    "fungus": "fungi",
    "leaf": "leaves",
    "wolf": "wolves",
    "knife": "knives",
    "shelf": "shelves",
    "calf": "calves",
    "elf": "elves",
    "loaf": "loaves",
    "thief": "thieves",
    "wife": "wives",
    "life": "lives",
    "half": "halves",
    "hoof": "hooves",
    "scarf": "scarves",
    "fireman": "firemen",
    "fisherman": "fishermen",
    "policeman": "policemen",
    "spaceman": "spacemen",
    "businessman": "businessmen",
    "gentleman": "gentlemen",
    "cattle": "cattle",
    "tomato": "tomatoes",
    "potato": "potatoes",
    "volcano": "volcanoes",
    "tornado": "tornadoes",
    "hero": "heroes",
    "mosquito": "mosquitoes",
    "buffalo": "buffaloes",
}
# Same spelling in singular and plural: grammatical number is unknowable.
_INVARIANT_NOUNS: Final = words(
    "fish sheep deer moose salmon tuna bison aircraft spacecraft jellyfish clownfish "
    "starfish goldfish shrimp squid reindeer elk swine offspring people cattle"
)


def _plural(word: str) -> str:
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    if word in _INVARIANT_NOUNS:
        return word
    if word.endswith(("s", "sh", "ch", "x", "z")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def plural_phrase(phrase: str) -> str:
    """The plural of a noun phrase ("sea turtle" -> "sea turtles")."""
    # The head noun of an English noun phrase is its last word ("sea turtle" -> "sea turtles").
    head, _, last = phrase.rpartition(" ")
    return f"{head} {_plural(last)}".strip()


# Verbs whose final consonant doubles before -ing / -ed.
_DOUBLING: Final = words(
    "run swim jog chop drop stop sit skip hop grab hug pat trot spin flip cut hit set nap "
    "sob slip wrap scrub rub dig tap clap step drip plan stir spar dip jam shop chat wag "
    "beg trim swap bat pop rip begin shut win fan split put let quit knit pet hum"
)
_IRREGULAR_VERBS: Final[Mapping[str, tuple[str, ...]]] = {
    "run": ("ran",),
    "swim": ("swam", "swum"),
    "fly": ("flew", "flown"),
    "ride": ("rode", "ridden"),
    "drive": ("drove", "driven"),
    "fall": ("fell", "fallen"),
    "sit": ("sat",),
    "stand": ("stood",),
    "eat": ("ate", "eaten"),
    "drink": ("drank", "drunk"),
    "catch": ("caught",),
    "fight": ("fought",),
    "lie": ("lay", "lain"),
    "sleep": ("slept",),
    "hit": (),
    "cut": (),
    "set": (),
    "shut": (),
    "burst": (),
    "sing": ("sang", "sung"),
    "throw": ("threw", "thrown"),
    "blow": ("blew", "blown"),
    "build": ("built",),
    "dive": ("dove",),
    "grow": ("grew", "grown"),
    "spin": ("spun",),
    "break": ("broke", "broken"),
    "hold": ("held",),
    "feed": ("fed",),
    "read": (),
    "write": ("wrote", "written"),
    "swing": ("swung",),
    "strike": ("struck",),
    "sweep": ("swept",),
    "creep": ("crept",),
    "weep": ("wept",),
    "hang": ("hung",),
    "dig": ("dug",),
    "shake": ("shook", "shaken"),
    "wake": ("woke", "woken"),
    "bite": ("bit", "bitten"),
    "hide": ("hid", "hidden"),
    "wear": ("wore", "worn"),
    "tear": ("tore", "torn"),
    "leap": ("leapt",),
    "win": ("won",),
    "begin": ("began", "begun"),
    "slide": ("slid",),
    "kneel": ("knelt",),
    "split": (),
    "put": (),
    "let": (),
    "quit": (),
    "seek": ("sought",),
    "bring": ("brought",),
    "light": ("lit",),
    "sew": ("sewn",),
    "spit": ("spat",),
    "sink": ("sank", "sunk"),
    "freeze": ("froze", "frozen"),
    "shoot": (),
    "sting": ("stung",),
    "cling": ("clung",),
    "dream": ("dreamt",),
    "teach": ("taught",),
    "draw": ("drew", "drawn"),
}


def verb_forms(base: str) -> tuple[str, ...]:
    """Base, third person, -ing and past forms of a one-word verb."""
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        third = base + "es"
    elif base.endswith("y") and base[-2] not in "aeiou":
        third = base[:-1] + "ies"
    else:
        third = base + "s"
    if base.endswith("ie"):
        ing = base[:-2] + "ying"
    elif base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        ing = base[:-1] + "ing"
    elif base in _DOUBLING:
        ing = base + base[-1] + "ing"
    else:
        ing = base + "ing"
    if base in _IRREGULAR_VERBS:
        past: tuple[str, ...] = _IRREGULAR_VERBS[base]
    elif base.endswith("e"):
        past = (base + "d",)
    elif base.endswith("y") and base[-2] not in "aeiou":
        past = (base[:-1] + "ied",)
    elif base in _DOUBLING:
        past = (base + base[-1] + "ed",)
    else:
        past = (base + "ed",)
    return (base, third, ing, *past)


# Verbs whose base and -s forms are more often nouns in a prompt ("a park", "plants",
# "a photo shoot"): only their -ing and past forms count as actions.
_NOUNLIKE_VERBS: Final = words(
    "park plant film record toast point bow saw sail row shoot hammer stroke pet drink swing lift"
)
# Verbs whose base form is more often a noun ("a bread roll") but whose -s form is a verb.
_NOUNLIKE_BASES: Final = words("roll land punch sink clear")


def verb_phrase_forms(phrase: str) -> tuple[str, ...]:
    """The forms of a verb or phrasal verb that count as that action in a prompt."""
    # Only the first word of a phrasal verb inflects ("take off" -> "taking off").
    first, _, rest = phrase.partition(" ")
    forms = verb_forms(first)
    if first in _NOUNLIKE_VERBS and not rest:
        forms = forms[2:]
    elif first in _NOUNLIKE_BASES and not rest:
        forms = forms[1:]
    return tuple(f"{form} {rest}".strip() for form in forms)
