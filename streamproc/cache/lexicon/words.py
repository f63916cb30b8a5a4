"""Every other family, numbers, negation, fixed readings and stopwords. Pure data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from streamproc.cache.lexicon import Attr, words

# Everything else: family -> canonical -> literal surfaces.
LITERALS: Final[Mapping[str, Mapping[str, str]]] = {
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
UNITS: Final[Mapping[str, int]] = {
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
TENS: Final[Mapping[str, int]] = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
NUMBER_PHRASES: Final[Mapping[str, str]] = {
    "1": "single|lone|solitary|a single|alone",
    "2": "pair of|a pair of|couple of|a couple of|double|twin|twins|both",
    "3": "triple|trio of|a trio of",
    "12": "dozen|a dozen",
    "few": "a few|few|several|handful of|a handful of",
    "many": "many|dozens|hundreds|thousands|countless|numerous|lots of|a lot of|swarm of"
    "|a swarm of",
}

NEGATORS: Final = frozenset({("without",), ("no",), ("not",), ("never",), ("free", "of")})
# Words that end a negation's scope.
SCOPE_BREAKS: Final = words(
    "and or but with in on at while near through across along from to into by during as "
    "that which under over above beside next"
)
DETERMINERS: Final = frozenset(
    {"a", "an", "the", "any", "its", "his", "her", "their", "some", "of", "my", "our"}
)

# Phrases that would otherwise be read as attributes but are not ("lit up" is no direction).
NEUTRAL_PHRASES: Final = (
    "lit up|light up|lights up|lighting up|close to|close by|set up|sets up|setting up"
    "|slow down|slows down|calm down|shut down|give up|make up|made up|looks like|look like"
    "|right now|all right|left behind|no longer|at once|one of|every one|each one"
)

# Exact readings of whole phrases that replace whatever their parts would mean.
FIXED_READINGS: Final[Mapping[str, tuple[Attr, ...]]] = {
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

STOPWORDS: Final = words(
    "a an the of in on at to with and or by for from into onto over above under its his her"
    " their is are be being been as up down through across along near some this that it"
    " while was were who whose there itself them they he she very so just own around off out"
    " about after before then than all each every what where when how"
)

# British spellings that differ from American by more than a regular rule.
US_SPELLING: Final[Mapping[str, str]] = {
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
