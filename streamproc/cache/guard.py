"""Verification guard for semantic-cache hits.

Cosine similarity of MiniLM embeddings is blunt about the details that make two videos
different: "a kitten on grass" and "a kitten on grass at night" score 0.87, "two horses"
and "three horses" 0.84. This module extracts the attributes a viewer would notice
(counts, colours, time of day, weather, season, subjects, actions, camera, direction,
size, material, style, negation ...) from both prompts and refuses a cached candidate
whose attributes differ from the request's. It is pure Python: no I/O, no model.

Design decisions (documented because they decide which pairs are "the same scene"):

* Attributes come from a closed vocabulary; a synonym outside the synonym tables turns a
  paraphrase into a miss (a slow answer, never a wrong one). Words outside the vocabulary
  count in one way only: when the prompts align word by word and one unknown word stands
  where another stood ("mango" / "papaya", "Lisbon" / "Prague"), the candidate is
  rejected. An unknown word added or dropped on one side is left to the cosine threshold.
* Symmetric: an attribute present in one prompt and absent in the other rejects
  ("a kitten on grass" never serves "a kitten on grass at night", nor the reverse).
* Synonyms are merged only when the picture is the same: dusk = sunset = sundown,
  dawn = sunrise, snowy = snow-covered, drone shot = aerial footage, cab = taxi,
  plane = airplane, kids = children, sea = ocean. Young animals are distinct subjects
  (kitten != cat, puppy != dog) because the video looks different.
* For people, animals and vehicles the grammatical number counts ("a dog" != "dogs");
  for other nouns it is ignored ("waves" / "a wave" rarely changes the clip).
* Negation is scoped to the few words after "without" / "no" / "not"; a negated word
  does not count as present, and "without people" means the same as "empty".
* English only: a prompt in another language yields no attributes (only the word-swap
  check applies), and MiniLM's cosine across languages is near zero, so a prompt and its
  translation are a miss.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "AttributeGuard",
    "GuardVerdict",
    "HitPolicy",
    "HitQuality",
    "extract_attributes",
    "hit_quality",
    "lexical_overlap",
    "normalize_prompt",
]

# --------------------------------------------------------------------------------------
# Prompt normalisation
# --------------------------------------------------------------------------------------

# Leading framing words that describe the medium, not the scene. Longest first so that
# "a cinematic shot of" wins over "cinematic shot of". "a shot of" is deliberately absent:
# "a shot of espresso" is a scene.
_FILLER_PREFIXES: Final[tuple[str, ...]] = tuple(
    sorted(
        {
            "a video of",
            "video of",
            "a short video of",
            "short video of",
            "a video showing",
            "video showing",
            "a clip of",
            "clip of",
            "a short clip of",
            "short clip of",
            "footage of",
            "video footage of",
            "stock footage of",
            "footage showing",
            "a cinematic shot of",
            "cinematic shot of",
            "a cinematic video of",
            "cinematic video of",
            "cinematic footage of",
        },
        key=len,
        reverse=True,
    )
)
# NFKC and case folding can each undo the other's fixed point for a few code points, so
# both are repeated until the text is stable; real text settles in one or two passes.
_MAX_PASSES: Final = 8


def _is_edge_char(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def _strip_edges(text: str) -> str:
    start, end = 0, len(text)
    while start < end and _is_edge_char(text[start]):
        start += 1
    while end > start and _is_edge_char(text[end - 1]):
        end -= 1
    return text[start:end]


def _canonical_text(text: str) -> str:
    for _ in range(_MAX_PASSES):
        following = unicodedata.normalize("NFKC", text)
        following = unicodedata.normalize("NFKC", following.casefold())
        following = _strip_edges(" ".join(following.split()))
        if following == text:
            break
        text = following
    return text


def _drop_leading_filler(text: str) -> str:
    # Each round removes a prefix, so the loop ends; stacked filler ("a clip of footage of")
    # goes entirely.
    while True:
        for prefix in _FILLER_PREFIXES:
            if text.startswith(prefix + " "):
                text = _strip_edges(text[len(prefix) + 1 :])
                break
        else:
            return text


def normalize_prompt(text: str, *, drop_filler: bool = True) -> str:
    """The prompt as the cache keys and embeds it.

    Unicode NFKC, case-folded, whitespace collapsed to single spaces, punctuation stripped
    from both ends and (when ``drop_filler``) leading framing words such as "a video of"
    removed. Deterministic and idempotent; inner punctuation and word order are kept.
    """
    text = _canonical_text(text)
    return _drop_leading_filler(text) if drop_filler else text


# --------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------

_TOKEN_RE: Final = re.compile(r"[^\W_]+|[,;:.!?()]")
_PUNCT_TOKENS: Final = frozenset(",;:.!?()")


def _tokens(text: str) -> list[str]:
    """Lower-case word tokens without accents; hyphens split words; clause punctuation kept."""
    text = normalize_prompt(text, drop_filler=False)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"\bb\s*[&/]\s*w\b", " monochrome ", text)
    text = text.replace("&", " and ")
    text = re.sub(r"'s\b", "", text).replace("'", "")
    return _TOKEN_RE.findall(text)


# --------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------

Attr = tuple[str, str]  # (family, canonical value)


def _words(spec: str) -> frozenset[str]:
    return frozenset(spec.split())


# Families in the order a rejection reports them.
FAMILIES: Final[tuple[str, ...]] = (
    "negation",
    "number",
    "subject",
    "plurality",
    "action",
    "colour",
    "time_of_day",
    "weather",
    "season",
    "location",
    "camera",
    "playback",
    "pace",
    "direction",
    "size",
    "age",
    "material",
    "style",
    "era",
    "setting",
    "mood",
    "intensity",
    "temperature",
    "position",
    "wording",
)

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
_INVARIANT_NOUNS: Final = _words(
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


def _plural_phrase(phrase: str) -> str:
    # The head noun of an English noun phrase is its last word ("sea turtle" -> "sea turtles").
    head, _, last = phrase.rpartition(" ")
    return f"{head} {_plural(last)}".strip()


# Verbs whose final consonant doubles before -ing / -ed.
_DOUBLING: Final = _words(
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


def _verb_forms(base: str) -> tuple[str, ...]:
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
_NOUNLIKE_VERBS: Final = _words(
    "park plant film record toast point bow saw sail row shoot hammer stroke pet drink swing lift"
)
# Verbs whose base form is more often a noun ("a bread roll") but whose -s form is a verb.
_NOUNLIKE_BASES: Final = _words("roll land punch sink clear")


def _verb_phrase_forms(phrase: str) -> tuple[str, ...]:
    # Only the first word of a phrasal verb inflects ("take off" -> "taking off").
    first, _, rest = phrase.partition(" ")
    forms = _verb_forms(first)
    if first in _NOUNLIKE_VERBS and not rest:
        forms = forms[2:]
    elif first in _NOUNLIKE_BASES and not rest:
        forms = forms[1:]
    return tuple(f"{form} {rest}".strip() for form in forms)


def _alts(spec: str) -> list[str]:
    return [part.strip() for part in spec.split("|") if part.strip()]


# Counted nouns: people, animals, vehicles. Singular forms; plurals are derived and also
# recorded in the "plurality" family.
_COUNTED_NOUNS: Final[Mapping[str, str]] = {
    # people
    "person": "person|someone|somebody|human|individual|pedestrian|passerby|shopper|commuter"
    "|tourist|traveler|traveller|visitor|spectator",
    "man": "man|guy|gentleman|male",
    "woman": "woman|lady|female",
    "boy": "boy",
    "girl": "girl",
    "child": "child|kid",
    "baby": "baby|infant|newborn",
    "teenager": "teenager|teen|adolescent",
    "family": "family",
    "friend": "friend",
    "chef": "chef|cook",
    "barista": "barista",
    "waiter": "waiter|waitress",
    "doctor": "doctor",
    "nurse": "nurse",
    "soldier": "soldier",
    "knight": "knight",
    "wizard": "wizard|sorcerer|mage",
    "witch": "witch",
    "astronaut": "astronaut|spaceman|cosmonaut",
    "dancer": "dancer|ballerina",
    "musician": "musician",
    "guitarist": "guitarist",
    "drummer": "drummer",
    "pianist": "pianist",
    "singer": "singer|vocalist",
    "dj": "dj|disc jockey",
    "athlete": "athlete",
    "runner": "runner|jogger",
    "cyclist": "cyclist|bicyclist",
    "swimmer": "swimmer",
    "surfer": "surfer",
    "skier": "skier",
    "snowboarder": "snowboarder",
    "skateboarder": "skateboarder|skater",
    "climber": "climber|rock climber",
    "boxer": "boxer",
    "player": "player",
    "goalkeeper": "goalkeeper|goalie",
    "diver": "diver|scuba diver",
    "fisherman": "fisherman|angler",
    "farmer": "farmer",
    "worker": "worker|construction worker|builder|labourer|laborer",
    "student": "student|pupil",
    "teacher": "teacher",
    "police officer": "police officer|policeman|cop",
    "firefighter": "firefighter|fireman",
    "pilot": "pilot",
    "bride": "bride",
    "groom": "groom|bridegroom",
    "king": "king",
    "queen": "queen",
    "prince": "prince",
    "princess": "princess",
    "pirate": "pirate",
    "ninja": "ninja",
    "samurai": "samurai",
    "cowboy": "cowboy",
    "monk": "monk",
    "robot": "robot|android|droid",
    "alien": "alien|extraterrestrial",
    "ghost": "ghost",
    "zombie": "zombie",
    "vampire": "vampire",
    "troll": "troll",
    "goblin": "goblin",
    "fairy": "fairy",
    "mermaid": "mermaid",
    # animals
    "cat": "cat|house cat|housecat|kitty",
    "kitten": "kitten",
    "dog": "dog|doggy|hound|pooch",
    "puppy": "puppy|pup",
    "golden retriever": "golden retriever",
    "labrador": "labrador",
    "horse": "horse|stallion|mare",
    "pony": "pony",
    "foal": "foal",
    "cow": "cow",
    "bull": "bull",
    "calf": "calf",
    "lamb": "lamb",
    "goat": "goat",
    "pig": "pig|hog",
    "chicken": "chicken|hen",
    "rooster": "rooster",
    "duck": "duck",
    "duckling": "duckling",
    "goose": "goose",
    "swan": "swan",
    "bird": "bird",
    "eagle": "eagle",
    "hawk": "hawk",
    "falcon": "falcon",
    "owl": "owl",
    "parrot": "parrot",
    "pigeon": "pigeon",
    "dove": "dove",
    "seagull": "seagull|gull",
    "penguin": "penguin",
    "flamingo": "flamingo",
    "hummingbird": "hummingbird",
    "crow": "crow|raven",
    "peacock": "peacock",
    "shark": "shark",
    "whale": "whale|humpback|humpback whale",
    "orca": "orca|killer whale",
    "dolphin": "dolphin",
    "seal": "seal",
    "sea lion": "sea lion",
    "otter": "otter",
    "turtle": "turtle|sea turtle",
    "tortoise": "tortoise",
    "octopus": "octopus",
    "crab": "crab",
    "lobster": "lobster",
    "seahorse": "seahorse",
    "manta ray": "manta ray|manta",
    "stingray": "stingray",
    "lion": "lion",
    "lioness": "lioness",
    "tiger": "tiger",
    "leopard": "leopard",
    "cheetah": "cheetah",
    "jaguar": "jaguar",
    "elephant": "elephant",
    "giraffe": "giraffe",
    "zebra": "zebra",
    "rhino": "rhino|rhinoceros",
    "hippo": "hippo|hippopotamus",
    "bear": "bear|grizzly|grizzly bear|brown bear",
    "polar bear": "polar bear",
    "panda": "panda",
    "fox": "fox",
    "wolf": "wolf",
    "rabbit": "rabbit|bunny",
    "hare": "hare",
    "squirrel": "squirrel",
    "hamster": "hamster",
    "mouse": "mouse",
    "rat": "rat",
    "monkey": "monkey",
    "gorilla": "gorilla",
    "chimpanzee": "chimpanzee|chimp",
    "kangaroo": "kangaroo",
    "koala": "koala",
    "camel": "camel",
    "buffalo": "buffalo",
    "butterfly": "butterfly",
    "bee": "bee|honeybee|bumblebee",
    "ant": "ant",
    "spider": "spider",
    "snake": "snake|serpent",
    "lizard": "lizard",
    "frog": "frog|toad",
    "crocodile": "crocodile",
    "alligator": "alligator",
    "dinosaur": "dinosaur",
    "dragon": "dragon",
    "unicorn": "unicorn",
    "phoenix": "phoenix",
    "deer": "deer",
    "moose": "moose",
    "elk": "elk",
    "reindeer": "reindeer|caribou",
    "sheep": "sheep",
    "fish": "fish",
    "goldfish": "goldfish",
    "salmon": "salmon",
    "tuna": "tuna",
    "trout": "trout",
    "koi": "koi",
    "jellyfish": "jellyfish",
    "clownfish": "clownfish",
    "starfish": "starfish|sea star",
    "shrimp": "shrimp|prawn",
    "squid": "squid",
    "bison": "bison",
    "llama": "llama|alpaca",
    "donkey": "donkey",
    "mule": "mule",
    "ostrich": "ostrich",
    "heron": "heron|egret",
    "pelican": "pelican",
    "woodpecker": "woodpecker",
    "bat": "bat",
    "hedgehog": "hedgehog",
    "raccoon": "raccoon",
    "beaver": "beaver",
    "badger": "badger",
    "owlet": "owlet",
    "cub": "cub",
    "lion cub": "lion cub",
    "bear cub": "bear cub",
    "ladybug": "ladybug|ladybird",
    "dragonfly": "dragonfly",
    "firefly": "firefly",
    "moth": "moth",
    "caterpillar": "caterpillar",
    "snail": "snail",
    "worm": "worm",
    "scorpion": "scorpion",
    "mosquito": "mosquito",
    "housefly": "housefly",
    "walrus": "walrus",
    "narwhal": "narwhal",
    "eel": "eel",
    "pufferfish": "pufferfish",
    "griffin": "griffin",
    "centaur": "centaur",
    "werewolf": "werewolf",
    "elf": "elf",
    "dwarf": "dwarf",
    "ogre": "ogre",
    "golem": "golem",
    "mech": "mech|mecha",
    "cyborg": "cyborg",
    "superhero": "superhero",
    "clown": "clown",
    "magician": "magician",
    "juggler": "juggler",
    "acrobat": "acrobat",
    "painter": "painter|artist",
    "photographer": "photographer",
    "scientist": "scientist",
    "mechanic": "mechanic",
    "carpenter": "carpenter",
    "blacksmith": "blacksmith",
    "gardener": "gardener",
    "hiker": "hiker|backpacker",
    "golfer": "golfer",
    "gymnast": "gymnast",
    "wrestler": "wrestler",
    "referee": "referee|umpire",
    "jockey": "jockey",
    "sailor": "sailor",
    "captain": "captain",
    "grandmother": "grandmother|grandma|granny",
    "grandfather": "grandfather|grandpa",
    "mother": "mother|mom|mum",
    "father": "father|dad",
    "son": "son",
    "daughter": "daughter",
    "brother": "brother",
    "sister": "sister",
    "husband": "husband",
    "wife": "wife",
    "grandson": "grandson",
    "granddaughter": "granddaughter",
    "uncle": "uncle",
    "aunt": "aunt",
    "newlyweds": "newlyweds|newlywed",
    "jet ski": "jet ski|jetski",
    "snowmobile": "snowmobile",
    "bulldozer": "bulldozer",
    "excavator": "excavator|digger",
    "crane": "crane",
    "forklift": "forklift",
    "police car": "police car|squad car",
    "race horse": "racehorse|race horse",
    "rowboat": "rowboat|rowing boat",
    "gondola": "gondola",
    "cruise ship": "cruise ship|cruise liner|ocean liner",
    "speedboat": "speedboat|motorboat",
    "glider": "glider",
    "blimp": "blimp|airship|zeppelin",
    "satellite": "satellite",
    "space station": "space station",
    "cable car": "cable car",
    "carriage": "carriage|horse drawn carriage|stagecoach",
    "skateboard": "skateboard",
    "surfboard": "surfboard",
    "wheelchair": "wheelchair",
    "stroller": "stroller|pram|pushchair",
    # vehicles
    "car": "car|automobile",
    "sports car": "sports car|supercar|race car|racecar",
    "convertible": "convertible",
    "taxi": "taxi|cab|taxicab|taxi cab",
    "truck": "truck|lorry",
    "pickup truck": "pickup truck|pickup",
    "van": "van",
    "bus": "bus",
    "tram": "tram|streetcar|trolley",
    "train": "train|locomotive|steam train|steam locomotive|steam engine",
    "subway train": "subway|subway train|metro|metro train|underground train",
    "bicycle": "bicycle|bike",
    "motorcycle": "motorcycle|motorbike",
    "scooter": "scooter",
    "boat": "boat",
    "sailboat": "sailboat|sailing boat",
    "yacht": "yacht",
    "ship": "ship|vessel",
    "cargo ship": "cargo ship|container ship|freighter",
    "ferry": "ferry",
    "canoe": "canoe",
    "kayak": "kayak",
    "submarine": "submarine",
    "airplane": "airplane|aeroplane|plane|jet|airliner",
    "helicopter": "helicopter|chopper",
    "hot air balloon": "hot air balloon",
    "rocket": "rocket",
    "spaceship": "spaceship|space ship|starship|spacecraft",
    "ufo": "ufo|flying saucer",
    "tractor": "tractor",
    "tank": "tank",
    "ambulance": "ambulance",
    "fire truck": "fire truck|fire engine",
    "limousine": "limousine|limo",
}

# Things and places whose grammatical number is not tracked.
_OBJECT_NOUNS: Final[Mapping[str, str]] = {
    # food and drink
    "pizza": "pizza",
    "burger": "burger|hamburger|cheeseburger",
    "sandwich": "sandwich",
    "sushi": "sushi",
    "nigiri": "nigiri",
    "sashimi": "sashimi",
    "ramen": "ramen",
    "noodle": "noodle",
    "pasta": "pasta|spaghetti",
    "salad": "salad",
    "steak": "steak",
    "bread": "bread|loaf",
    "cake": "cake",
    "birthday cake": "birthday cake",
    "cupcake": "cupcake",
    "cookie": "cookie|biscuit",
    "pancake": "pancake",
    "waffle": "waffle",
    "croissant": "croissant",
    "donut": "donut|doughnut",
    "ice cream": "ice cream",
    "chocolate": "chocolate",
    "honey": "honey",
    "syrup": "syrup|maple syrup",
    "coffee": "coffee|espresso|cappuccino",
    "latte art": "latte art",
    "tea": "tea",
    "milk": "milk",
    "juice": "juice",
    "lemonade": "lemonade",
    "cola": "cola",
    "soda": "soda|soft drink",
    "beer": "beer",
    "wine": "wine",
    "champagne": "champagne",
    "whiskey": "whiskey|whisky",
    "cocktail": "cocktail",
    "egg": "egg",
    "bacon": "bacon",
    "cheese": "cheese",
    "fruit": "fruit",
    "apple": "apple",
    "banana": "banana",
    "strawberry": "strawberry",
    "lemon": "lemon",
    "tomato": "tomato",
    "vegetable": "vegetable|veggie",
    "curry": "curry",
    "soup": "soup",
    "dumpling": "dumpling",
    "taco": "taco",
    "olive oil": "olive oil",
    "salt": "salt",
    "popcorn": "popcorn",
    "candy": "candy|sweet",
    # objects
    "watch": "watch|wristwatch|timepiece",
    "perfume": "perfume|fragrance",
    "bottle": "bottle",
    "can": "can",
    "jar": "jar",
    "cup": "cup|mug",
    "vase": "vase",
    "bowl": "bowl",
    "plate": "plate",
    "pan": "pan|frying pan|skillet",
    "pot": "pot",
    "wok": "wok",
    "oven": "oven",
    "smartphone": "smartphone|phone|mobile phone|cellphone|cell phone",
    "laptop": "laptop",
    "computer": "computer|desktop computer",
    "tablet": "tablet",
    "typewriter": "typewriter",
    "headphones": "headphones|headphone|headset|earphones",
    "sneakers": "sneakers|sneaker|trainers|running shoes",
    "boots": "boots|boot",
    "shoes": "shoes|shoe",
    "lipstick": "lipstick",
    "face cream": "face cream|moisturizer|moisturiser",
    "handbag": "handbag|purse",
    "sunglasses": "sunglasses",
    "book": "book",
    "guitar": "guitar",
    "violin": "violin|fiddle",
    "piano": "piano",
    "drums": "drums|drum kit",
    "umbrella": "umbrella",
    "kite": "kite",
    "ball": "ball",
    "frisbee": "frisbee",
    "punching bag": "punching bag|heavy bag|boxing bag",
    "candle": "candle",
    "fireplace": "fireplace|hearth",
    "campfire": "campfire|bonfire",
    "fire": "fire|flames|flame",
    "table": "table",
    "dining table": "dining table",
    "coffee table": "coffee table",
    "desk": "desk",
    "chair": "chair",
    "bench": "bench|park bench",
    "sofa": "sofa|couch",
    "bed": "bed",
    "bathtub": "bathtub|tub|bath",
    "shower": "shower|walk in shower",
    "window": "window|windowpane|window pane",
    "windowsill": "windowsill|window sill|window ledge",
    "windshield": "windshield|windscreen",
    "door": "door",
    "mirror": "mirror",
    "lamp": "lamp",
    "bookshelf": "bookshelf|bookcase",
    "plant": "plant|houseplant",
    "staircase": "staircase|stairs|stairway|stair",
    "countertop": "countertop|counter|worktop",
    "axe": "axe|ax",
    "chainsaw": "chainsaw",
    "hammer": "hammer",
    "knife": "knife",
    "net": "net",
    "leash": "leash|lead",
    "collar": "collar",
    "firework": "firework|fireworks",
    "lantern": "lantern",
    "balloon": "balloon",
    "flag": "flag",
    "sign": "sign",
    "neon": "neon|neon light|neon sign",
    "screen": "screen",
    "portal": "portal",
    "sword": "sword",
    "wheel": "wheel|exercise wheel",
    "bubble": "bubble",
    "tent": "tent",
    "paper": "paper",
    # nature things
    "tree": "tree",
    "pine": "pine|pine tree",
    "palm": "palm|palm tree",
    "flower": "flower|blossom|bloom",
    "rose": "rose",
    "sunflower": "sunflower",
    "wildflower": "wildflower",
    "tulip": "tulip",
    "cherry blossom": "cherry blossom|sakura",
    "mushroom": "mushroom",
    "leaf": "leaf|foliage",
    "petal": "petal",
    "grass": "grass|grassy|lawn",
    "wheat": "wheat",
    "rock": "boulder",
    "wave": "wave",
    "sunlight": "sunlight|sunbeam|sun ray|ray of sunlight|ray of sun|sunshine|light ray",
    "star": "star|starry",
    "moon": "moon|full moon|lunar|lunar surface",
    "sun": "sun",
    "rainbow": "rainbow",
    "lightning": "lightning|lightning bolt",
    "aurora": "aurora|northern lights|aurora borealis|southern lights",
    "lava": "lava|magma",
    "ash": "ash",
    "smoke": "smoke",
    "steam": "steam",
    "dust": "dust",
    "pollen": "pollen",
    "nectar": "nectar",
    "water": "water",
    "ice cube": "ice cube",
    "anemone": "anemone|sea anemone",
    "shipwreck": "shipwreck|wreck|sunken ship",
    "planet": "planet",
    "glass": "glass",
    "basketball": "basketball",
    "soccer": "soccer",
    "football": "football",
    "tennis": "tennis",
    "golf": "golf",
    "baseball": "baseball",
    "hockey": "hockey|ice hockey",
    "volleyball": "volleyball",
    "rugby": "rugby",
    "badminton": "badminton",
    "bowling": "bowling",
    "ballet": "ballet",
    "tango": "tango",
    "salsa": "salsa",
    "breakdance": "breakdance|breakdancing|breakdancer",
    "karate": "karate",
    "kung fu": "kung fu",
    "judo": "judo",
    "fencing": "fencing",
    "archery": "archery",
    "marathon": "marathon",
    "trumpet": "trumpet",
    "saxophone": "saxophone|sax",
    "cello": "cello",
    "flute": "flute",
    "harp": "harp",
    "accordion": "accordion",
    "microphone": "microphone|mic",
    "teapot": "teapot",
    "kettle": "kettle",
    "spoon": "spoon",
    "fork": "fork",
    "chopsticks": "chopsticks|chopstick",
    "basket": "basket",
    "box": "box",
    "gift": "gift|present",
    "suitcase": "suitcase|luggage",
    "backpack": "backpack|rucksack",
    "hat": "hat|cap",
    "dress": "dress|gown",
    "jacket": "jacket|coat",
    "scarf": "scarf",
    "glove": "glove",
    "ring": "ring",
    "necklace": "necklace",
    "television": "television|tv",
    "clock": "clock",
    "key": "key",
    "newspaper": "newspaper",
    "map": "map",
    "letter": "letter",
    "drill": "drill",
    "saw": "handsaw",
    "shovel": "shovel|spade",
    "broom": "broom",
    "log": "log",
    "firewood": "firewood",
    "cactus": "cactus",
    "moss": "moss",
    "fern": "fern",
    "vine": "vine|ivy",
    "seaweed": "seaweed|kelp",
    "pebble": "pebble",
    "shell": "shell|seashell",
    "feather": "feather",
    "nest": "nest",
    "spider web": "spider web|cobweb|web",
    "iceberg": "iceberg",
    "geyser": "geyser",
    "crater": "crater",
    "asteroid": "asteroid|meteor|meteorite",
    "comet": "comet",
    "galaxy": "galaxy|milky way",
    "nebula": "nebula",
    "black hole": "black hole",
    "tornado": "tornado|twister",
    "hurricane": "hurricane|typhoon|cyclone",
    "sandstorm": "sandstorm|dust storm",
    "avalanche": "avalanche",
    "lighthouse": "lighthouse",
    "windmill": "windmill|wind turbine",
    "statue": "statue|sculpture",
    "fountain": "fountain",
    "pyramid": "pyramid",
    "ruins": "ruins|ruin",
    "sandcastle": "sandcastle|sand castle",
    "throne": "throne",
    "treasure": "treasure",
    "crown": "crown",
    "wand": "wand",
    "shield": "shield",
    "potion": "potion",
    "hologram": "hologram",
    "laser": "laser",
}

_PLACE_NOUNS: Final[Mapping[str, str]] = {
    "beach": "beach|shore|seashore|seaside",
    "coast": "coast|coastline|coastal",
    "ocean": "ocean|sea|open sea|open ocean",
    "bay": "bay",
    "lake": "lake",
    "pond": "pond",
    "river": "river",
    "stream": "stream|brook|creek",
    "waterfall": "waterfall",
    "pool": "pool|swimming pool",
    "puddle": "puddle",
    "forest": "forest|woods|woodland",
    "jungle": "jungle|rainforest",
    "mountain": "mountain|mountain range|mountaintop|mountain top",
    "hill": "hill|hillside|hilltop",
    "valley": "valley",
    "canyon": "canyon|gorge",
    "cliff": "cliff|cliff face",
    "desert": "desert|dunes|sand dune",
    "field": "field",
    "meadow": "meadow",
    "savanna": "savanna|savannah",
    "plains": "plains|plain|prairie",
    "cave": "cave|cavern",
    "glacier": "glacier",
    "volcano": "volcano",
    "island": "island",
    "reef": "reef|coral reef|coral",
    "seabed": "seabed|sea floor|seafloor|ocean floor",
    "sand": "sand|sandy",
    "city": "city|urban|downtown",
    "skyline": "skyline",
    "skyscraper": "skyscraper|high rise|tower block|office tower",
    "street": "street",
    "road": "road",
    "highway": "highway|freeway|motorway",
    "intersection": "intersection|crossroads",
    "crosswalk": "crosswalk|zebra crossing|pedestrian crossing",
    "alley": "alley|alleyway",
    "square": "square|plaza|piazza",
    "park": "park",
    "skate park": "skate park|skatepark",
    "market": "market|marketplace|bazaar|night market|street market",
    "bridge": "bridge",
    "tunnel": "tunnel",
    "station": "station|train station|railway station|subway station",
    "airport": "airport",
    "runway": "runway|airstrip",
    "harbor": "harbor|harbour|port",
    "pier": "pier|dock|jetty|wharf",
    "stadium": "stadium|arena",
    "gym": "gym",
    "court": "court",
    "finish line": "finish line",
    "stage": "stage",
    "slope": "slope|ski slope",
    "rooftop": "rooftop|roof",
    "helipad": "helipad",
    "mall": "mall|shopping mall|shopping centre|shopping center",
    "cafe": "cafe|coffee shop|coffeehouse",
    "restaurant": "restaurant|diner",
    "bar": "bar|pub",
    "library": "library",
    "kitchen": "kitchen",
    "bedroom": "bedroom",
    "bathroom": "bathroom",
    "living room": "living room|lounge|sitting room",
    "office": "office",
    "attic": "attic|loft",
    "basement": "basement|cellar",
    "mansion": "mansion",
    "castle": "castle",
    "factory": "factory",
    "warehouse": "warehouse",
    "church": "church|cathedral",
    "temple": "temple",
    "museum": "museum",
    "classroom": "classroom",
    "hospital": "hospital",
    "farm": "farm",
    "garden": "garden|backyard",
    "space": "space|outer space",
    "sky": "sky|skies",
    "countryside": "countryside",
    "village": "village",
    "concert": "concert|gig",
    "festival": "festival",
    "wedding": "wedding",
    "barn": "barn|stable",
    "cabin": "cabin|log cabin|hut",
    "igloo": "igloo",
    "apartment": "apartment|flat",
    "balcony": "balcony",
    "hallway": "hallway|corridor",
    "elevator": "elevator|lift",
    "escalator": "escalator",
    "bus stop": "bus stop",
    "parking lot": "parking lot|car park",
    "gas station": "gas station|petrol station",
    "supermarket": "supermarket|grocery store",
    "bakery": "bakery",
    "bookstore": "bookstore|bookshop",
    "hotel": "hotel",
    "lobby": "lobby",
    "spa": "spa",
    "sauna": "sauna",
    "playground": "playground",
    "zoo": "zoo",
    "aquarium": "aquarium",
    "circus": "circus",
    "carnival": "carnival|fairground|funfair",
    "ferris wheel": "ferris wheel",
    "roller coaster": "roller coaster|rollercoaster",
    "vineyard": "vineyard",
    "orchard": "orchard",
    "rice field": "rice field|rice paddy|paddy field",
    "greenhouse": "greenhouse",
    "ranch": "ranch",
    "marina": "marina",
    "canal": "canal",
    "dam": "dam",
    "lagoon": "lagoon",
    "fjord": "fjord",
    "swamp": "swamp|marsh|bog",
    "tundra": "tundra",
    "oasis": "oasis",
    "mine": "mine",
    "palace": "palace",
    "tower": "tower",
    "dungeon": "dungeon",
    "laboratory": "laboratory|lab",
    "studio": "studio",
    "theater": "theater|theatre|cinema",
    "nightclub": "nightclub|club",
    "school": "school",
    "university": "university|campus",
    "prison": "prison|jail",
    "airport terminal": "terminal",
    "train track": "train track|railway|railroad|rail track",
    "path": "path|trail|footpath",
    "sidewalk": "sidewalk|pavement",
    "rooftop garden": "rooftop garden",
    "space station interior": "space station interior",
    "moon base": "moon base|lunar base",
    "alien planet": "alien planet|exoplanet",
    "earth": "earth",
    "venus": "venus",
    "everest": "everest|mount everest",
    "grand canyon": "grand canyon",
    "amazon": "amazon",
    "africa": "africa",
    "japan": "japan",
    "china": "china",
    "india": "india",
    "italy": "italy",
    "france": "france",
    "mexico": "mexico",
    "norway": "norway",
    "scotland": "scotland",
    "hawaii": "hawaii",
    "arctic": "arctic|antarctic|antarctica",
    "tokyo": "tokyo",
    "london": "london",
    "paris": "paris",
    "new york": "new york|nyc|new york city",
    "manhattan": "manhattan",
    "amsterdam": "amsterdam",
    "bangkok": "bangkok",
    "rome": "rome",
    "venice": "venice",
    "berlin": "berlin",
    "dubai": "dubai",
    "hong kong": "hong kong",
    "shanghai": "shanghai",
    "seoul": "seoul",
    "sydney": "sydney",
    "san francisco": "san francisco",
    "los angeles": "los angeles",
    "chicago": "chicago",
    "las vegas": "las vegas",
    "istanbul": "istanbul",
    "cairo": "cairo",
    "barcelona": "barcelona",
    "kyoto": "kyoto",
    "iceland": "iceland",
    "sahara": "sahara",
    "alps": "alps",
    "himalayas": "himalayas",
    "mars": "mars|red planet",
    "jupiter": "jupiter",
    "saturn": "saturn",
    "eiffel tower": "eiffel tower",
    "big ben": "big ben",
    "statue of liberty": "statue of liberty",
    "golden gate bridge": "golden gate bridge|golden gate",
}

# Verbs: canonical -> base forms that inflect; synonyms share one canonical.
_VERBS: Final[Mapping[str, str]] = {
    "walk": "walk|stroll|wander|amble|march|hike",
    "run": "run|sprint|dash",
    "jog": "jog",
    "gallop": "gallop",
    "trot": "trot",
    "swim": "swim",
    "fly": "fly|soar",
    "hover": "hover",
    "jump": "jump|leap|hop",
    "climb": "climb|scale",
    "rappel": "rappel|abseil",
    "dive": "dive|plunge",
    "fall": "fall|drop|tumble",
    "sit": "sit|sit down",
    "stand": "stand",
    "rest": "rest|lie|lie down|lounge|relax",
    "sleep": "sleep|nap|doze",
    "eat": "eat|munch|chew",
    "drink": "drink|sip",
    "graze": "graze",
    "hunt": "hunt|stalk",
    "chase": "chase|pursue",
    "catch": "catch",
    "fetch": "fetch",
    "dance": "dance",
    "sing": "sing",
    "play": "play",
    "read": "read",
    "write": "write",
    "type": "type",
    "cut": "cut|chop|slice|dice|split",
    "cook": "cook|fry|saute|sear",
    "grill": "grill|barbecue",
    "bake": "bake",
    "simmer": "simmer|boil|bubble",
    "sizzle": "sizzle",
    "pour": "pour",
    "drip": "drip",
    "melt": "melt",
    "crash": "crash|smash",
    "shatter": "shatter",
    "explode": "explode|burst|blow up",
    "erupt": "erupt|spew",
    "land": "land|touch down|alight",
    "take off": "take off|lift off|launch",
    "arrive": "arrive|pull in",
    "leave": "depart|pull out",
    "open": "open",
    "close": "close|shut",
    "ride": "ride",
    "drive": "drive",
    "fight": "fight|battle|spar",
    "punch": "punch|hit|strike",
    "kick": "kick",
    "throw": "throw",
    "flip": "flip|toss",
    "score": "score",
    "serve": "serve",
    "dunk": "dunk",
    "surf": "surf",
    "ski": "ski",
    "skate": "skate|skateboard",
    "swing": "swing",
    "rotate": "rotate|spin|revolve|twirl|orbit",
    "smile": "smile",
    "laugh": "laugh|giggle",
    "cry": "cry|weep|sob",
    "talk": "talk|chat|speak",
    "kiss": "kiss",
    "hug": "hug|embrace",
    "wave at": "wave at|wave to",
    "bloom": "bloom|blossom",
    "grow": "grow|sprout",
    "burn": "burn|blaze|crackle",
    "flicker": "flicker",
    "wear": "wear",
    "hold": "hold|carry|grip",
    "push": "push|knock|shove",
    "pull": "pull|drag",
    "lift": "lift|pick up|raise",
    "feed": "feed",
    "pet": "pet|stroke",
    "wash": "wash|clean|scrub",
    "paint": "paint",
    "build": "build|construct|put up",
    "repair": "repair|fix|mend",
    "blow": "blow|blow out",
    "splash": "splash",
    "breach": "breach",
    "circle": "circle",
    "crawl": "crawl|creep",
    "hide": "hide",
    "sway": "sway",
    "reflect": "reflect|mirror",
    "shake": "shake",
    "wake up": "wake up|wake",
    "roll": "roll",
    "collect": "collect|gather",
    "cast": "cast",
    "cheer": "cheer|applaud|clap",
    "bark": "bark",
    "roar": "roar",
    "sail": "sail",
    "row": "row|paddle",
    "fish": "fish",
    "shop": "shop",
    "rise": "rise",
    "set": "set",
    "clear": "clear",
    "turn": "turn",
    "perform": "perform",
    "practice yoga": "practice yoga|practise yoga|do yoga",
    "meditate": "meditate",
    "paddleboard": "paddleboard",
    "miss": "miss",
    "knit": "knit|crochet",
    "sew": "sew|stitch",
    "mix": "mix|stir|whisk",
    "knead": "knead",
    "photograph": "photograph|snap a photo",
    "sculpt": "sculpt|carve",
    "hammer": "hammer",
    "saw": "saw",
    "dig": "dig",
    "plant seeds": "plant",
    "harvest": "harvest|pick fruit",
    "mow": "mow",
    "sweep": "sweep",
    "vacuum": "vacuum|hoover",
    "fold": "fold",
    "pack": "pack",
    "wrap": "wrap",
    "unwrap": "unwrap",
    "juggle": "juggle",
    "bounce": "bounce",
    "dribble": "dribble",
    "shoot": "shoot",
    "tackle": "tackle",
    "stretch": "stretch",
    "lift weights": "lift weights|weightlift",
    "pedal": "pedal",
    "park": "park",
    "honk": "honk",
    "brake": "brake",
    "skid": "skid",
    "overtake": "overtake|pass by",
    "tow": "tow",
    "sink": "sink",
    "capsize": "capsize",
    "howl": "howl",
    "meow": "meow",
    "chirp": "chirp|tweet",
    "peck": "peck",
    "hatch": "hatch",
    "pounce": "pounce",
    "prowl": "prowl",
    "perch": "perch",
    "lick": "lick",
    "sniff": "sniff",
    "wag": "wag",
    "scratch": "scratch",
    "cuddle": "cuddle|snuggle|nuzzle",
    "yawn": "yawn",
    "point": "point",
    "nod": "nod",
    "shout": "shout|yell|scream",
    "whisper": "whisper",
    "argue": "argue|quarrel",
    "kneel": "kneel",
    "pray": "pray",
    "bow": "bow",
    "salute": "salute",
    "protest": "protest",
    "celebrate": "celebrate",
    "toast": "toast|clink glasses",
    "propose": "propose",
    "film": "film|record",
    "sing along": "sing along",
    "wave flag": "wave a flag",
    "drown": "drown",
    "rescue": "rescue|save",
    "attack": "attack",
    "bite": "bite",
    "sting": "sting",
    "freeze": "freeze",
    "thaw": "thaw",
    "evaporate": "evaporate",
    "fade": "fade",
    "transform": "transform|morph",
    "teleport": "teleport",
    "levitate": "levitate",
    "disappear": "disappear|vanish",
    "appear": "appear|materialize|materialise",
}

# Non-verb surfaces that carry the same action ("asleep" ~ sleeping).
_ACTION_EXTRAS: Final[Mapping[str, str]] = {
    "sleep": "asleep",
    "practice yoga": "yoga",
    "take off": "takeoff|liftoff",
}

# Everything else: family -> canonical -> literal surfaces.
_LITERALS: Final[Mapping[str, Mapping[str, str]]] = {
    "colour": {
        "red": "red|crimson|scarlet",
        "orange": "orange",
        "yellow": "yellow",
        "green": "green|emerald",
        "blue": "blue|azure|navy|cobalt",
        "turquoise": "turquoise|teal|cyan|aqua",
        "purple": "purple|violet|lavender|magenta",
        "pink": "pink",
        "brown": "brown",
        "black": "black",
        "white": "white",
        "grey": "grey|gray",
        "silver": "silver",
        "gold": "gold|golden",
        "beige": "beige",
        "multicolour": "colourful|colorful|multicoloured|multicolored|rainbow coloured"
        "|rainbow colored",
    },
    "time_of_day": {
        "sunrise": "sunrise|dawn|daybreak|first light|break of day|at daybreak",
        "sunset": "sunset|dusk|sundown|twilight|nightfall",
        "golden hour": "golden hour",
        "blue hour": "blue hour",
        "morning": "morning|in the morning|early morning",
        "noon": "noon|midday|high noon|middle of the day",
        "afternoon": "afternoon",
        "evening": "evening|in the evening",
        "night": "night|nighttime|night time|at night|after dark|nocturnal|midnight|by night"
        "|moonlit|moonlight|nightlife",
        "day": "daytime|day time|during the day|in daylight|broad daylight|by day|daylight",
    },
    "weather": {
        "rain": "rain|rainy|raining|rains|rained|downpour|drizzle|drizzling|raindrop|raindrops"
        "|rainstorm|rainfall",
        "snow": "snow|snowy|snowing|snows|snowfall|snowflake|snowflakes|snow covered"
        "|covered in snow|covered with snow|snowstorm|blizzard|snow capped|snowcapped",
        "fog": "fog|foggy|mist|misty|haze|hazy",
        "storm": "storm|stormy|thunderstorm|thunder|storm clouds",
        "cloud": "cloud|clouds|cloudy|overcast|storm clouds",
        "wind": "wind|windy|breeze|breezy|gust|gusty|windswept",
        "sunny": "sunny|clear sky|clear skies|cloudless|sunny day",
        "ice": "ice|icy|frozen|frost|frosty|ice floe|ice floes|sea ice",
    },
    "season": {
        "spring": "spring|springtime|spring day",
        "summer": "summer|summertime|summery|summer day",
        "autumn": "autumn|autumnal|in the fall|in fall|fall foliage|fall colors|fall colours"
        "|fall leaves|autumn day",
        "winter": "winter|wintertime|wintry|wintery|winter day",
    },
    "camera": {
        "aerial": "aerial|aerial view|aerial shot|aerial footage|drone|drone shot|drone footage"
        "|drone view|birds eye|birds eye view|bird eye view|from above|seen from above"
        "|overhead|overhead shot|overhead view|top down|top down view|from the air",
        "close-up": "close up|closeup|close up shot|macro|macro shot|extreme close up|up close",
        "wide": "wide shot|wide angle|establishing shot|long shot|panoramic|panorama",
        "low angle": "low angle|from below|seen from below|worms eye|looking up at",
        "high angle": "high angle|looking down at|looking down on",
        "pov": "pov|first person|point of view",
        "tracking": "tracking shot|tracking|dolly shot|following shot",
        "handheld": "handheld|hand held|shaky cam",
        "pan": "pan|panning|pans|panned",
        "static": "static shot|locked off|tripod shot",
    },
    "playback": {
        "slow motion": "slow motion|slow mo|slowmo|in slow motion|super slow motion",
        "timelapse": "timelapse|time lapse|sped up|hyperlapse",
        "real time": "real time|normal speed|realtime",
    },
    "pace": {
        "fast": "fast|quickly|rapidly|speeding|speed|speeds|sped|racing|race|races|high speed"
        "|swift|swiftly|zoom|zooming|rushing|rush|rushes|hurry|hurrying|hurries",
        "slow": "slow|slowly|leisurely|sluggish",
    },
    "direction": {
        "left": "left|leftward|leftwards|to the left",
        "right": "right|rightward|rightwards|to the right",
        "up": "up|upward|upwards|uphill|upstairs|ascend|ascends|ascending|ascended",
        "down": "down|downward|downwards|downhill|downstairs|descend|descends|descending|descended",
        "in": "into|going into|goes into|go into|entering|enters|enter",
        "out": "out of|coming out|comes out|come out|exiting|exits|exit|emerging|emerges",
        "forward": "forward|forwards",
        "backward": "backward|backwards|in reverse",
        "clockwise": "clockwise",
        "counterclockwise": "counterclockwise|anticlockwise|counter clockwise|anti clockwise",
        "toward camera": "toward the camera|towards the camera|at the camera",
        "away from camera": "away from the camera",
        "upside down": "upside down",
    },
    "size": {
        "small": "small|tiny|miniature|mini|petite|little",
        "large": "large|big|huge|giant|enormous|massive|gigantic|colossal|immense",
        "tall": "tall|towering",
        "short": "short",
    },
    "age": {
        "old": "old|elderly|aged|senior|older",
        "young": "young|youthful",
    },
    "material": {
        "wood": "wood|wooden|timber|made of wood",
        "metal": "metal|metallic|steel|iron|aluminium|aluminum|chrome|copper|brass",
        "crystal": "crystal",
        "stone": "stone|rock|rocky|stony",
        "marble": "marble",
        "brick": "brick",
        "concrete": "concrete",
        "plastic": "plastic",
        "cardboard": "cardboard",
        "ceramic": "ceramic|porcelain",
        "clay": "clay",
        "leather": "leather",
        "wool": "wool|woollen|woolen|knitted",
        "cotton": "cotton",
        "silk": "silk",
        "rubber": "rubber",
        "bamboo": "bamboo",
        "velvet": "velvet",
    },
    "style": {
        "monochrome": "black and white|monochrome|grayscale|greyscale|noir|film noir",
        "colour": "in colour|in color|full colour|full color",
        "anime": "anime|manga",
        "cartoon": "cartoon|animated|animation|2d animation",
        "pixel art": "pixel art|8 bit|pixelated",
        "watercolour": "watercolour|watercolor",
        "oil painting": "oil painting",
        "sketch": "sketch|pencil drawing|charcoal drawing",
        "stop motion": "stop motion|claymation",
        "3d render": "3d|3d render|cgi|3d animation",
        "photorealistic": "photorealistic|photo realistic|hyperrealistic|realistic",
        "sepia": "sepia",
        "film grain": "film grain|8mm|16mm|super 8|vhs",
    },
    "era": {
        "vintage": "vintage|retro|classic|antique|old fashioned",
        "modern": "modern|contemporary",
        "futuristic": "futuristic|sci fi|scifi|science fiction",
        "medieval": "medieval",
        "ancient": "ancient",
        "victorian": "victorian",
        "cyberpunk": "cyberpunk",
        "steampunk": "steampunk",
    },
    "setting": {
        "indoor": "indoor|indoors|inside|interior",
        "outdoor": "outdoor|outdoors|outside|open air|alfresco",
    },
    "mood": {
        "calm": "calm|tranquil|peaceful|serene|still|quiet",
        "busy": "busy|bustling|crowded|crowd|packed|hectic|rush hour|full of people",
        "empty": "empty|deserted|abandoned|desolate|vacant|nobody|no one|unoccupied",
    },
    "intensity": {
        "heavy": "heavy|heavily|intense|torrential",
        "gentle": "gentle|gently|light rain|light snow",
    },
    "temperature": {
        "hot": "hot|steaming|warm",
        "cold": "cold|chilled|freezing",
    },
    "position": {
        "below": "under|beneath|underneath|below",
        "on top": "on top of|atop",
    },
    "location": {
        "underwater": "underwater|undersea|under water|under the sea|beneath the waves"
        "|below the surface|under the ocean",
    },
}

# Numbers.
_UNITS: Final[Mapping[str, int]] = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS: Final[Mapping[str, int]] = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_NUMBER_PHRASES: Final[Mapping[str, str]] = {
    "1": "single|lone|solitary|a single|alone",
    "2": "pair of|a pair of|couple of|a couple of|double|twin|twins|both",
    "3": "triple|trio of|a trio of",
    "12": "dozen|a dozen",
    "few": "a few|few|several|handful of|a handful of",
    "many": "many|dozens|hundreds|thousands|countless|numerous|lots of|a lot of|swarm of"
    "|a swarm of",
}

_NEGATORS: Final = frozenset({("without",), ("no",), ("not",), ("never",), ("free", "of")})
# Words that end a negation's scope.
_SCOPE_BREAKS: Final = _words(
    "and or but with in on at while near through across along from to into by during as "
    "that which under over above beside next"
)
_DETERMINERS: Final = frozenset(
    {"a", "an", "the", "any", "its", "his", "her", "their", "some", "of", "my", "our"}
)
_NEGATION_SCOPE: Final = 3
_EMPTY: Final[Attr] = ("mood", "empty")
_PEOPLE_VALUES: Final = frozenset({"person", "man", "woman", "child", "busy"})

# Phrases that would otherwise be read as attributes but are not ("lit up" is no direction).
_NEUTRAL: Final = (
    "lit up|light up|lights up|lighting up|close to|close by|set up|sets up|setting up"
    "|slow down|slows down|calm down|shut down|give up|make up|made up|looks like|look like"
    "|right now|all right|left behind|no longer|at once|one of|every one|each one"
)


def _add(
    lexicon: dict[tuple[str, ...], tuple[Attr, ...]], surface: str, attrs: Iterable[Attr]
) -> None:
    key = tuple(_tokens(surface))
    if not key:
        raise ValueError(f"empty surface for {attrs!r}")
    merged = tuple(dict.fromkeys((*lexicon.get(key, ()), *attrs)))
    lexicon[key] = merged


def _build_lexicon() -> dict[tuple[str, ...], tuple[Attr, ...]]:
    lexicon: dict[tuple[str, ...], tuple[Attr, ...]] = {}
    for value, spec in _COUNTED_NOUNS.items():
        for surface in _alts(spec):
            _add(lexicon, surface, [("subject", value)])
            plural = _plural_phrase(surface)
            if plural != surface:
                _add(lexicon, plural, [("subject", value), ("plurality", value)])
    # "people" and "children" are listed above via irregular plurals; collective words:
    _add(lexicon, "couple", [("subject", "person"), ("plurality", "person"), ("number", "2")])
    _add(lexicon, "couples", [("subject", "person"), ("plurality", "person"), ("number", "many")])
    _add(lexicon, "kids", [("subject", "child"), ("plurality", "child")])
    _add(lexicon, "cattle", [("subject", "cow"), ("plurality", "cow")])
    for family, table in (("subject", _OBJECT_NOUNS), ("location", _PLACE_NOUNS)):
        for value, spec in table.items():
            for surface in _alts(spec):
                _add(lexicon, surface, [(family, value)])
                _add(lexicon, _plural_phrase(surface), [(family, value)])
    for value, spec in _VERBS.items():
        for base in _alts(spec):
            for form in _verb_phrase_forms(base):
                _add(lexicon, form, [("action", value)])
    for value, spec in _ACTION_EXTRAS.items():
        for surface in _alts(spec):
            _add(lexicon, surface, [("action", value)])
    for family, table in _LITERALS.items():
        for value, spec in table.items():
            for surface in _alts(spec):
                _add(lexicon, surface, [(family, value)])
    for value, spec in _NUMBER_PHRASES.items():
        for surface in _alts(spec):
            _add(lexicon, surface, [("number", value)])
    return lexicon


def _build_overrides() -> dict[tuple[str, ...], tuple[Attr, ...]]:
    # Exact readings that replace whatever the parts would mean.
    overrides: dict[tuple[str, ...], tuple[Attr, ...]] = {}
    for surface in _alts(_NEUTRAL):
        overrides[tuple(_tokens(surface))] = ()
    fixed: dict[str, tuple[Attr, ...]] = {
        # A snowfall is snow that falls; "snow falling" must match it.
        "snowfall": (("weather", "snow"), ("action", "fall")),
        "rainfall": (("weather", "rain"), ("action", "fall")),
        "heavy bag": (("subject", "punching bag"),),
        "golden retriever": (("subject", "golden retriever"),),
        "golden retrievers": (("subject", "golden retriever"), ("plurality", "golden retriever")),
        "golden hour": (("time_of_day", "golden hour"),),
        "golden gate": (("location", "golden gate bridge"),),
        "golden gate bridge": (("location", "golden gate bridge"),),
        "white water": (("subject", "rapids"),),
        "whitewater": (("subject", "rapids"),),
        "red planet": (("location", "mars"),),
        "fall leaves": (("season", "autumn"), ("subject", "leaf")),
        "autumn leaves": (("season", "autumn"), ("subject", "leaf")),
        "leaves": (("subject", "leaf"),),
        "left": (("direction", "left"),),
        "rock climber": (("subject", "climber"),),
        "rock climbers": (("subject", "climber"), ("plurality", "climber")),
        "rock climbing": (("action", "climb"),),
        "ice cream": (("subject", "ice cream"),),
        "ice cube": (("subject", "ice cube"),),
        "ice cubes": (("subject", "ice cube"),),
        "cook": (("subject", "chef"),),
        # A boy or child is young already; "young"/"little" adds nothing visible.
        **{
            f"{mod} {noun}": (("subject", value),)
            for mod in ("young", "little", "small")
            for noun, value in (
                ("boy", "boy"),
                ("girl", "girl"),
                ("child", "child"),
                ("kid", "child"),
            )
        },
        **{
            f"{mod} {noun}": (("subject", value), ("plurality", value))
            for mod in ("young", "little", "small")
            for noun, value in (
                ("boys", "boy"),
                ("girls", "girl"),
                ("children", "child"),
                ("kids", "child"),
            )
        },
        "toddler": (("subject", "child"),),
        "toddlers": (("subject", "child"), ("plurality", "child")),
        "cooks": (("subject", "chef"), ("plurality", "chef")),
        "champagne glasses": (("subject", "champagne"), ("subject", "glass")),
        "wine glasses": (("subject", "wine"), ("subject", "glass")),
        "sea turtle": (("subject", "turtle"),),
        "sea turtles": (("subject", "turtle"), ("plurality", "turtle")),
        "sea ice": (("weather", "ice"),),
        "sea lion": (("subject", "sea lion"),),
        "sea lions": (("subject", "sea lion"), ("plurality", "sea lion")),
        "sea floor": (("location", "seabed"),),
        "steam train": (("subject", "train"),),
        "steam locomotive": (("subject", "train"),),
        "steam engine": (("subject", "train"),),
        "bride and groom": (("subject", "newlyweds"),),
        "newlyweds": (("subject", "newlyweds"),),
        "wood fired": (),
        "close up": (("camera", "close-up"),),
        "looking up at": (("camera", "low angle"),),
        "sun rays": (("subject", "sunlight"),),
        "rays of sunlight": (("subject", "sunlight"),),
        "full moon": (("subject", "moon"),),
        "night sky": (("time_of_day", "night"), ("location", "sky")),
        "night market": (("time_of_day", "night"), ("location", "market")),
        "new york": (("location", "new york"),),
        "time lapse": (("playback", "timelapse"),),
        "slow motion": (("playback", "slow motion"),),
        "first steps": (("action", "walk"),),
        "hot air balloon": (("subject", "hot air balloon"),),
        "hot air balloons": (("subject", "hot air balloon"), ("plurality", "hot air balloon")),
        "stream": (("location", "stream"),),
        "streams": (("location", "stream"),),
        "streaming": (),
        "shot": (),
        "shots": (),
        "saw": (),
        "set": (),
        "sets": (),
        "rose": (("subject", "rose"),),
        "roses": (("subject", "rose"),),
        "wave": (("subject", "wave"),),
        "waves": (("subject", "wave"),),
        "waving": (("action", "wave at"),),
        "fish": (("subject", "fish"),),
        "fishing": (("action", "fish"),),
        "lying": (("action", "rest"),),
        "lie": (("action", "rest"),),
        "race car": (("subject", "sports car"),),
        "race cars": (("subject", "sports car"), ("plurality", "sports car")),
        "skateboard": (("subject", "skateboard"),),
        "skateboarding": (("action", "skate"),),
        "flying cars": (("subject", "car"), ("plurality", "car"), ("action", "fly")),
        "flying car": (("subject", "car"), ("action", "fly")),
        "can of": (("subject", "can"),),
        "lead": (("subject", "leash"),),
        "counter": (("subject", "countertop"),),
        "counters": (("subject", "countertop"),),
        "orbit": (("action", "rotate"),),
        "cast": (("action", "cast"),),
        "casts": (("action", "cast"),),
        "sunny day": (("weather", "sunny"),),
        "storm clouds": (("weather", "storm"), ("weather", "cloud")),
        "starry": (("subject", "star"),),
        "stars": (("subject", "star"),),
        "coral reef": (("location", "reef"),),
    }
    for surface, attrs in fixed.items():
        overrides[tuple(_tokens(surface))] = attrs
    return overrides


_LEXICON: Final[Mapping[tuple[str, ...], tuple[Attr, ...]]] = {
    **_build_lexicon(),
    **_build_overrides(),
}
_MAX_PHRASE: Final = max(len(key) for key in _LEXICON)


def _read_number(tokens: Sequence[str], i: int) -> tuple[int, int] | None:
    """A number starting at ``tokens[i]``: (value, tokens consumed), or None."""
    token = tokens[i]
    if token.isdigit():
        return int(token), 1
    if token in _TENS:
        value, used = _TENS[token], 1
        if i + 1 < len(tokens) and tokens[i + 1] in _UNITS and _UNITS[tokens[i + 1]] < 10:
            value, used = value + _UNITS[tokens[i + 1]], 2
    elif token in _UNITS:
        value, used = _UNITS[token], 1
    else:
        return None
    if i + used < len(tokens) and tokens[i + used] in ("hundred", "thousand"):
        value *= 100 if tokens[i + used] == "hundred" else 1000
        used += 1
    return value, used


@dataclass(frozen=True)
class _Found:
    attr: Attr
    surface: str


def _match(tokens: Sequence[str], i: int) -> tuple[tuple[Attr, ...], int] | None:
    """The longest lexicon phrase starting at ``tokens[i]``."""
    for length in range(min(_MAX_PHRASE, len(tokens) - i), 0, -1):
        attrs = _LEXICON.get(tuple(tokens[i : i + length]))
        if attrs is not None:
            return attrs, length
    return None


def _negator_width(tokens: Sequence[str], i: int) -> int:
    """Tokens taken by a negator at ``tokens[i]`` (0 when there is none)."""
    if tuple(tokens[i : i + 2]) in _NEGATORS:
        return 2
    if (tokens[i],) in _NEGATORS:
        phrase = _match(tokens, i)
        # A longer fixed phrase ("no one", "no longer") is not a negation of what follows.
        return 1 if phrase is None or phrase[1] == 1 else 0
    return 0


def _scan_negation(tokens: Sequence[str], start: int) -> tuple[list[_Found], int]:
    """Attributes in the scope of a negation beginning at ``start``; returns (found, end)."""
    while start < len(tokens) and tokens[start] in _DETERMINERS:
        start += 1
    limit = min(start + _NEGATION_SCOPE, len(tokens))
    found: list[_Found] = []
    j = start
    while j < limit and tokens[j] not in _PUNCT_TOKENS and tokens[j] not in _SCOPE_BREAKS:
        hit = _match(tokens, j)
        if hit is None:
            j += 1
            continue
        if found and any(family == "action" for family, _ in hit[0]):
            break  # "without a hat walking": the walking is not negated
        found.extend(_Found(attr, " ".join(tokens[j : j + hit[1]])) for attr in hit[0])
        j += hit[1]
    if not found and start < j:
        # An unknown negated word still distinguishes "with X" from "without X".
        word = tokens[start]
        found.append(_Found(("negation", word.removesuffix("s")), word))
    return found, j


def _scan(tokens: Sequence[str]) -> list[tuple[_Found, bool]]:
    """Attributes in reading order, each flagged True when it sits in a negation's scope."""
    found: list[tuple[_Found, bool]] = []
    i = 0
    while i < len(tokens):
        width = _negator_width(tokens, i)
        if width:
            negated, end = _scan_negation(tokens, i + width)
            found.extend((item, True) for item in negated)
            i = max(end, i + width)
            continue
        number = _read_number(tokens, i)
        phrase = _match(tokens, i)
        if number is not None and (phrase is None or phrase[1] <= number[1]):
            value, used = number
            surface = " ".join(tokens[i : i + used])
            found.append((_Found(("number", str(value)), surface), False))
            i += used
        elif phrase is not None:
            attrs, used = phrase
            surface = " ".join(tokens[i : i + used])
            found.extend((_Found(attr, surface), False) for attr in attrs)
            i += used
        else:
            i += 1
    return found


Attributes = dict[str, dict[str, str]]


def extract_attributes(text: str) -> Attributes:
    """Family -> canonical value -> the words that produced it, for one prompt."""
    result: Attributes = {}
    for item, negated in _scan(_tokens(text)):
        family, value = item.attr
        if negated:
            if family == "plurality":
                continue
            if family == "negation":
                attr = item.attr
            elif value in _PEOPLE_VALUES and family in ("subject", "mood"):
                attr = _EMPTY  # "without people" shows the same as "an empty ..."
            else:
                attr = ("negation", f"{family}:{value}")
        else:
            attr = item.attr
        result.setdefault(attr[0], {}).setdefault(attr[1], item.surface)
    return result


# --------------------------------------------------------------------------------------
# Words outside the vocabulary
# --------------------------------------------------------------------------------------

_STOPWORDS: Final = _words(
    "a an the of in on at to with and or by for from into onto over above under its his her"
    " their is are be being been as up down through across along near some this that it"
    " while was were who whose there itself them they he she very so just own around off out"
    " about after before then than all each every what where when how"
)


# Verbs of plain motion or making that carry no checked attribute ("floating" and
# "drifting" show the same balloon); known, so swapping one for another is no swap.
_NEUTRAL_VERBS: Final = _words(
    "glide drift float move go travel pass cruise make prepare do take get show see look "
    "appear feature surround fill cover stream shine filter reveal wait"
)
# British spellings that differ from American by more than a regular rule.
_US_SPELLING: Final[Mapping[str, str]] = {
    "plough": "plow",
    "ploughing": "plowing",
    "ploughed": "plowed",
    "cosy": "cozy",
    "cosier": "cozier",
    "tyre": "tire",
    "tyres": "tires",
    "kerb": "curb",
    "aeroplane": "airplane",
    "jewellery": "jewelry",
    "pyjamas": "pajamas",
    "moustache": "mustache",
    "doughnut": "donut",
    "centre": "center",
    "theatre": "theater",
    "metre": "meter",
    "fibre": "fiber",
    "grey": "gray",
    "mould": "mold",
    "catalogue": "catalog",
}

_KNOWN_TOKENS: Final = (
    frozenset(token for key in _LEXICON for token in key)
    | frozenset([*_UNITS, *_TENS, "hundred", "thousand"])
    | frozenset(form for verb in _NEUTRAL_VERBS for form in _verb_forms(verb))
)


def _is_unknown_word(token: str) -> bool:
    return (
        token not in _KNOWN_TOKENS
        and token not in _STOPWORDS
        and token not in _PUNCT_TOKENS
        and not token.isdigit()
    )


def _stem(word: str) -> str:
    """A rough stem that also folds British spellings ("flavourful" ~ "flavorful")."""
    word = _US_SPELLING.get(word, word)
    # -our -> -or (colour, flavour, harbour); words like "pour" and "four" only merge with
    # nonsense, which is harmless here.
    word = re.sub(r"(?<=[a-z]{2})our(?=(s|ed|ing|ful|ite|able)?$)", "or", word)
    # travelling -> traveling; merging "filling" with "filing" is an accepted cost.
    word = re.sub(r"(?<=[aeiou])ll(?=(ing|ed|er)$)", "l", word)
    # Crude, but keeps "grinds" and "grinding" from looking like a swap.
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _unknown_word_swap(request: str, candidate: str) -> tuple[str, str] | None:
    """Unknown words standing in the same place in both prompts ("mango" / "papaya").

    The vocabulary cannot name every fruit, breed or city, and MiniLM scores such swaps
    in otherwise identical long prompts above 0.85. When the prompts align word by word
    and an aligned stretch holds a different unknown word on each side, the change is
    treated as a different scene. An unknown word on one side only (a paraphrase adding
    "shrouded") is not a swap.
    """
    left = [t for t in _tokens(request) if t not in _STOPWORDS and t not in _PUNCT_TOKENS]
    right = [t for t in _tokens(candidate) if t not in _STOPWORDS and t not in _PUNCT_TOKENS]
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "replace":
            continue
        mine = {_stem(t): t for t in left[i1:i2] if _is_unknown_word(t)}
        theirs = {_stem(t): t for t in right[j1:j2] if _is_unknown_word(t)}
        if not mine or not theirs or mine.keys() == theirs.keys():
            continue
        # "clawfoot" / "claw-foot", "watering hole" / "waterhole" are one word written twice.
        joined_left = "".join(map(_stem, left[i1:i2]))
        if "".join(mine) == "".join(theirs) or joined_left == "".join(map(_stem, right[j1:j2])):
            continue
        return _describe(mine), _describe(theirs)
    return None


# --------------------------------------------------------------------------------------
# Guard
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardVerdict:
    """Whether a cached candidate may answer a request, and why not when it may not."""

    accepted: bool
    reason: str | None = None


def _describe(values: Mapping[str, str]) -> str:
    if not values:
        return "none"
    return "+".join(values[key] for key in sorted(values))


class AttributeGuard:
    """Rejects a candidate whose visible attributes differ from the request's."""

    def __init__(self, families: Iterable[str] = FAMILIES) -> None:
        self._families = tuple(families)
        unknown = set(self._families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown attribute families: {sorted(unknown)}")

    def check(self, request: str, candidate: str) -> GuardVerdict:
        """Accept when every checked family has the same values in both prompts."""
        wanted = extract_attributes(request)
        offered = extract_attributes(candidate)
        for family in self._families:
            if family == "wording":
                swap = _unknown_word_swap(request, candidate)
                if swap is not None:
                    return GuardVerdict(False, f"wording_mismatch: {swap[0]} vs {swap[1]}")
                continue
            mine = wanted.get(family, {})
            theirs = offered.get(family, {})
            if mine.keys() != theirs.keys():
                return GuardVerdict(
                    False, f"{family}_mismatch: {_describe(mine)} vs {_describe(theirs)}"
                )
        return GuardVerdict(True)


# --------------------------------------------------------------------------------------
# Hit decision and its quality
# --------------------------------------------------------------------------------------


def lexical_overlap(a: str, b: str) -> float:
    """Jaccard overlap of content words, after mapping known synonyms to one word.

    Used only as a second-stage check for candidates between the lower and the main
    threshold: a paraphrase below 0.85 cosine usually still shares its key words.
    """

    def bag(text: str) -> set[str]:
        tokens = _tokens(text)
        words: set[str] = set()
        i = 0
        while i < len(tokens):
            hit = _match(tokens, i)
            if hit is not None and hit[0]:
                words.update(f"{fam}:{val}" for fam, val in hit[0] if fam != "plurality")
                i += hit[1]
                continue
            token = tokens[i]
            if token not in _STOPWORDS and token not in _PUNCT_TOKENS:
                words.add(token)
            i += 1
        return words

    left, right = bag(a), bag(b)
    if not left and not right:
        return 1.0
    return len(left & right) / len(left | right)


@dataclass(frozen=True)
class HitPolicy:
    """When a nearest neighbour may answer a request.

    ``similarity_threshold`` is ``cache.similarity_threshold``. A candidate at or above it
    is a hit when the guard accepts. With ``verified_threshold`` set below it
    (``cache.verified_threshold``), a candidate in between is also a hit when the guard
    accepts and the prompts share at least ``min_overlap`` of their content words
    (``cache.min_lexical_overlap``).
    """

    similarity_threshold: float = 0.85
    use_guard: bool = True
    verified_threshold: float | None = None
    min_overlap: float = 0.0

    def is_hit(
        self, cosine: float, request: str, candidate: str, guard: AttributeGuard | None = None
    ) -> bool:
        """The decision for one (request, nearest candidate) pair with its cosine."""
        floor = self.similarity_threshold
        if self.verified_threshold is not None:
            floor = min(floor, self.verified_threshold)
        if cosine < floor:
            return False
        if self.use_guard and not (guard or AttributeGuard()).check(request, candidate).accepted:
            return False
        if cosine >= self.similarity_threshold:
            return True
        return lexical_overlap(request, candidate) >= self.min_overlap


@dataclass(frozen=True)
class HitQuality:
    """Confusion counts of hit decisions against same-scene labels."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        """Share of hits that were the same scene (1.0 when there are no hits)."""
        hits = self.tp + self.fp
        return self.tp / hits if hits else 1.0

    @property
    def recall(self) -> float:
        """Share of same-scene pairs that were hits."""
        positives = self.tp + self.fn
        return self.tp / positives if positives else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def hit_quality(decisions: Sequence[bool], labels: Sequence[bool]) -> HitQuality:
    """Compare hit decisions with ground-truth labels (True = same scene)."""
    if len(decisions) != len(labels):
        raise ValueError("decisions and labels differ in length")
    tp = sum(1 for d, y in zip(decisions, labels, strict=True) if d and y)
    fp = sum(1 for d, y in zip(decisions, labels, strict=True) if d and not y)
    fn = sum(1 for d, y in zip(decisions, labels, strict=True) if not d and y)
    return HitQuality(tp=tp, fp=fp, fn=fn, tn=len(labels) - tp - fp - fn)
