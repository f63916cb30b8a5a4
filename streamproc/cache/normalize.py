"""Prompt normalisation: the text the guard parses, and the base of the text the cache keys.

:func:`normalize_prompt` folds case, Unicode and spacing and drops the words that describe
the request or the medium rather than the scene: a request clause at the start ("can you
make me a 5 second video of", "text to video:", "ad video:", or request, medium and quality
words in any order: "need a short, realistic 4k clip for my blog of") and trailing parts of
quality or mood tags (", 4k, highly detailed, trending on artstation", ", epic, moody") or of
what the video is for, its genre, overlays or a request ("- it's for a tiktok post", ",
nature documentary", ", no text or watermark", "- can you generate this?"), with
trailing hashtags, which label a post rather than describe the scene ("#wildlife", "#heron"
after "a heron", "#4k"); one that names a detail a viewer sees — a colour, time of day,
weather, season, style, era or playback speed ("#sunset", "#rain") — or holds a number
("#2cats") stays, unless it repeats the prompt. The guard parses this text
(:mod:`streamproc.cache.scene`); the cache keys and embeds it after
:func:`~streamproc.cache.words.canonical_text` has put every word in one canonical form
(:func:`streamproc.cache.base.match_text`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from streamproc.cache.lexicon.synonyms import DETAIL_GROUPS

# -- the request clause at the start -----------------------------------------------------------
#
# Its shape: [request] [determiner] [neutral modifiers] MEDIUM CONNECTOR scene. The request is
# a polite or modal lead-in and a verb of making ("could you please generate", "i'd like to see",
# "make me"); the modifiers say how long or how good, never what is shown ("short", "5 second",
# "10s", "4k", "cinematic"); the medium is the thing asked for ("video", "clip", "footage");
# the connector introduces the scene ("of", "showing", "where", ":"). When a modifier that
# changes the picture stands in the way ("a slow motion video of"), only the request goes and
# the rest stays for the guard to compare.
_POLITE: Final = r"(?:please|pls|kindly|(?:hey|hi|hello|ok|okay|so|yo)\b,?)"
_MODAL: Final = r"(?:can|could|would|will)\s+(?:you|u)"
_WANT: Final = (
    r"(?:i|we)(?:'d|\s+would|\s+want|\s+need|\s+wanna)(?:\s+(?:really|just|so))?"
    r"(?:\s+(?:like|love))?"
    r"(?:\s+(?:to\s+(?:see|get|have|watch)|you\s+to))?"
)
_MAKE: Final = (
    r"(?:generate|create|make|do|render|produce|show|give|film|shoot|animate|draw\s+up|"
    r"let\s+me\s+see|let's\s+see|put\s+together|whip\s+up|cook\s+up|mock\s+up|"
    r"visuali[sz]e|bring\s+to\s+life|help\s+(?:me|us)\s+make)"
)
_REQUEST: Final = (
    rf"(?:{_POLITE}\s+)?(?:{_MODAL}\s+)?(?:{_POLITE}\s+)?(?:{_WANT}\s+)?(?:{_POLITE}\s+)?"
    rf"(?:{_MAKE}(?:\s+(?:me|us))?\s+)?(?:{_POLITE}\s+)?"
)
_DETERMINER: Final = r"(?:a|an|one|the|some)"
_NUMBER: Final = (
    r"(?:\d+(?:\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|fifteen|twenty|thirty)"
)
_NEUTRAL_MODIFIER: Final = (
    rf"(?:{_NUMBER}[- ]?(?:seconds?|secs?|s|minutes?|mins?)(?:[- ]long)?|"
    r"short|brief|quick|little|cinematic|high[- ]quality|hq|hd|uhd|full[- ]hd|"
    r"\d+k|\d{3,4}p|\d+fps|stock|video)"
)
_MEDIUM: Final = (
    r"(?:video|vid|clip|footage|movie|film|cinematic\s+shot|shot|scene|sequence|reel|gif|"
    r"b-?\s?roll)"
)
_CONNECTOR: Final = r"(?:of|showing|depicting|featuring|about|where|in\s+which|that\s+shows|with)"
#: Request, medium and connector with only neutral modifiers between: all of it goes.
_CLAUSE: Final = re.compile(
    rf"(?P<request>{_REQUEST})(?:{_DETERMINER}\s+)?(?:{_NEUTRAL_MODIFIER}\s+)*"
    rf"(?P<medium>{_MEDIUM})\s*(?:(?P<connector>{_CONNECTOR}),?\s+|:\s*)(?=\w)"
)
# Without a request, a few media words are scenes ("a shot of espresso", "a film of dust",
# "a clip with pearls"): they count as framing only after a request verb.
_ASKED_ONLY: Final = frozenset({"shot", "film"})
#: A request verb ahead of a medium with a modifier of its own ("make a slow motion video
#: of"): the request alone goes.
_REQUEST_ONLY: Final = re.compile(
    rf"(?:{_POLITE}\s+)?(?:{_MODAL}\s+|{_WANT}\s+)?(?:{_POLITE}\s+)?{_MAKE}(?:\s+(?:me|us))?"
    rf"\s+(?=(?:{_DETERMINER}\s+)?(?:[\w-]+\s+){{1,4}}?{_MEDIUM}\s+{_CONNECTOR}\s+\w)"
)
#: A label before a colon: "text to video:", "prompt:", "t2v:".
_LABEL: Final = re.compile(
    r"(?:(?:text|txt)[- ]?(?:to|2)[- ]?(?:video|vid)|t2v|prompt|video\s+prompt|"
    r"description|caption|title\s*:\s*[^.:]{1,40}\.|"
    r"(?:working\s+)?title\s*:?\s*[\"\u201c\u201d'][^\"\u201c\u201d]{1,60}[\"\u201c\u201d']"
    r"\s*(?:[-:,.\u2013\u2014]+\s*)?)\s*:?\s*(?=[\w\"\u201c])"
)
#: A leading part ended by a colon, a comma or a full stop ("video request:", "generate:",
#: "4k, cinematic:", "short video,", "masterpiece.") goes when every word of it is one of these: words about the request, the
#: medium or its quality, never about the scene.
_FRAMING: Final = """
    generate create make render produce animate give show please pls kindly asap urgent
    urgently need needed hi hey hello title slide shot video vid clip tiktok instagram youtube
    facebook shorts
    footage movie film gif reel sequence request prompt prompts tag tags keywords keyword
    description caption idea concept brief product promo promotional commercial stock short
    quick text txt t2v ad ads advert advertisement advertising req generation demo
    visualize visualise whip put together help bring see watch this
"""
#: Words that may stand in a framing part but do not make one on their own.
_FRAMING_GLUE: Final = (
    "to 2 me us a an the for my our new could can would will you u this that it i we of one"
    " there folks team guys really just like love see watch want wanna these up life ai scene"
    " following"  # "generate the following:"
)
_FRAMING_ANCHORS: Final = frozenset(_FRAMING.split())
_FRAMING_WORDS: Final = _FRAMING_ANCHORS | frozenset(_FRAMING_GLUE.split())
_LEADING_PART: Final = re.compile(
    r"(?P<part>[^,:;.!?|>]{1,60}?)(?:\s*[,:;|]|[.!?]+(?=\s)|\s+(?:--?|\u2014|\u2013)(?=\s)|"
    r"\s*(?:->|=>|>>))\s*(?=[\w\"\u201c])"
)
#: A leading label of what the video is for: "for our instagram reel:", "for a client:",
#: "instagram reel for the farm shop page -", "video request for our client -".
_PURPOSE_LABEL: Final = re.compile(
    r"(?:(?:[\w-]+\s+){0,2}(?:video|vid|clip|reel|ad|spot|b-roll|post|short|story|request|"
    r"prompt)\s+|"
    r"(?:i\s+|we\s+)?(?:need|want)\s+(?:this|it)\s+)?"
    r"for\s+(?:(?:our|my|a|an|the|this)\s+|(?=(?:instagram|tiktok|youtube|reels|client)\b))"
    r"[^,:;.!?\u2013\u2014-]{1,40}?"
    r"(?:\s*[:,]|\s+(?:--?|\u2013|\u2014))\s*(?=\w)"
)
#: A request verb right before the scene, with no medium: "please generate a fox in the snow".
_BARE_REQUEST: Final = re.compile(
    rf"(?:{_POLITE}\s+)?(?:{_MODAL}\s+|{_WANT}\s+)?(?:{_POLITE}\s+)?"
    r"(?:generate|create|render|produce|animate|visuali[sz]e|put\s+together|whip\s+up|"
    r"bring\s+to\s+life)"
    r"(?:\s+(?:me|us))?\s+"
    rf"(?={_DETERMINER}\s|\d|{_NUMBER}\s|[a-z]+s\s)"
)
#: "make" asked for with a modal or a wish ("can u make a penguin waddling …"); alone, "make
#: a cake" is a scene.
_ASKED_MAKE: Final = re.compile(
    rf"(?:{_POLITE}\s+)?(?:{_MODAL}|{_WANT})\s+(?:{_POLITE}\s+)?make(?:\s+(?:me|us))?\s+"
    rf"(?={_DETERMINER}\s|\d|{_NUMBER}\s)"
)
#: A wish to see the scene: "i'd like to see a fox …", "i would love to watch a witch …",
#: "would really like to see this: a barn owl …".
_WISH_TO_SEE: Final = re.compile(
    rf"(?:{_POLITE}\s+)?(?:(?:i|we)(?:'d|\s+would|\s+want|\s+wanna)|would)"
    r"(?:\s+(?:really|just|so))?(?:\s+(?:like|love))?\s+to\s+(?:see|watch)(?:\s+this)?\s*:?\s+"
    rf"(?={_DETERMINER}\s|\d|{_NUMBER}\s)"
)

# -- quality tags at the end ---------------------------------------------------------------------
#
# A trailing comma-separated part made only of these words is dropped; "in", "and", "on" and
# "with" may join them ("trending on artstation", "in 4k") but are not tags on their own.
_TAGS: Final = """
    4k 8k 16k hd uhd fhd hdr qhd 1080p 720p 2160p resolution res hi-res high-res quality hq
    definition fidelity masterpiece masterful detailed detail details intricate ultra-detailed
    hyperdetailed focus clarity cinematic cinematography trending artstation award
    award-winning professional stunning beautiful gorgeous amazing breathtaking please
    realistic photorealistic photoreal hyperrealistic hyper-realistic lifelike epic
    atmospheric aesthetic moody clean sleek polished crisp viral dramatic octane unreal pls plz
    duration length resolution aspect ratio seed steps seconds second secs sec watermark
    guidance cfg fps smooth artifacts artefacts bitrate premium output maximum max worthy
    best-in-class pristine razor-sharp ultra-real ultrareal possible
    instagram tiktok youtube linkedin facebook snapchat pinterest vimeo lol haha lmao tack
    settings setting format thx ty tysm
"""
_TAG_WORDS: Final = frozenset(_TAGS.split())
#: Words that are tags only beside another tag ("high quality", "sharp focus", "cinematic
#: shot"; "full" alone may be a full moon).
_MODIFIERS: Final = (
    "high ultra super full best top highly hyper sharp winning very extremely rated"
    " shot footage video clip"  # "cinematic shot", "4k footage"; "wide shot" stays
    " camera"  # "shot on a professional camera"; "handheld camera" stays
    " style render rendering engine"  # "realistic style", "octane render"; "anime style" stays
    " good nice great"  # "good quality", "nice realistic video"; "a good dog" stays
    " motion"  # "smooth motion"; "slow motion" stays
    " e-commerce ecommerce"  # "e-commerce quality"
    " take real more"  # "take 2", "make it look like real footage", "more detail please"
    " s version"  # "duration: 6 s", "tiktok version"
    " reel reels shorts short post story stories feed vertical horizontal"  # "for a TikTok
    # story", "YouTube Shorts, vertical 9:16": where the video goes, not what it shows
)
_TAG_MODIFIERS: Final = frozenset(_MODIFIERS.split())
#: A trailing request around tags ("make it look cinematic") is as much filler as the tags.
_TAG_JOINERS: Final = frozenset(
    {"in", "and", "on", "with", "of", "at", "make", "it", "look", "like", "no", "approx"}
    | {"about", "if"}
    | {"for", "a", "an", "our", "my", "the"}
)
#: "4k", "60fps", "16:9", "8s" (seconds), "v2" (a version), "--ar" (a generator flag),
#: "seed=555".
_TAG_PATTERN: Final = re.compile(
    r"\d+(?:k|p|fps)\d*|[\d.:x]*\d|\ds|v\d{1,2}|--[a-z]+|(?:seed|fps|steps|cfg)=\d+"
)
#: Where a trailing part starts: a comma, semicolon, sentence end, pipe or dash between spaces.
_SEPARATOR: Final = re.compile(
    r"[,;]|[.?!]\s|\s*\|\s*|\s*::\s*|\s+//?\s+|\s+~\s+|\s*(?:>>|<<|->|=>)\s*|"
    r"\s+(?:--?|\u2014|\u2013)\s+"
)
_THANKS_WORDS: Final = (
    r"(?:please|pls|plz|pretty\s+please|thanks(?:\s+a\s+bunch|\s+heaps)?|many\s+thanks|"
    r"thank\s+(?:you|u)(?:\s+kindly)?|thx|ty|cheers(?:\s+mate)?|ta|gracias|much\s+appreciated|"
    r"(?:i\s+)?appreciate\s+it)"
)
#: Thanks or a "please" closing the prompt after a punctuation mark ("… ? thanks!"); "a
#: man saying thank you" keeps its words.
_THANKS: Final = re.compile(
    rf"\s*[,.!?;:|]+\s*{_THANKS_WORDS}(?:\s+(?:and|&)\s+{_THANKS_WORDS})?"
    r"(?:\s+(?:so\s+much|a\s+lot|in\s+advance|very\s+much))?[\s.!?]*$"
)
#: What the video is for, said at the end: "... ? it's for a school project".
_PURPOSE: Final = re.compile(
    r"\s*[,.!?;:]+\s*(?:it'?s|it\s+is|this\s+is|(?:i|we)?\s*need(?:ed)?\s+it)\s+for\s+"
    r"(?:a|an|my|our|the)\s+[^,.!?;:]{1,60}[\s.!?]*$"
)
#: What the video is for, as a trailing part of its own: ", for a product ad", ", for a
#: healthcare explainer video", ", for our renewable energy presentation". The last word
#: names a medium or an occasion for one, never something in the scene.
_PURPOSE_PART: Final = re.compile(
    r"for\s+(?:a|an|the|our|my|your|their|this)\s+(?:[\w'&-]+\s+){0,4}"
    r"(?:ad|ads|advert|advertisement|commercial|promo|video|presentation|explainer|campaign|"
    r"reel|post|story|website|pitch|deck|slideshow|webinar|course|lesson|tutorial|vlog|"
    r"trailer|newsletter|brochure|intro|outro|blog|channel|page|app|listing|e-card|podcast|"
    r"instagram|tiktok|youtube|class|lecture|documentary)"
)
#: The nouns that end a purpose said anywhere in a trailing part ("it's for a tiktok post",
#: "to use in a corporate presentation") or, after a request at the start, at the very end
#: ("… for a school project"): a medium, a place it is shown, or the work it is made for.
_PURPOSE_NOUNS: Final = (
    r"(?:ad|ads|advert|advertisement|commercial|promo|video|clip|presentation|explainer|"
    r"campaign|reel|reels|post|story|website|site|pitch|deck|slideshow|webinar|course|lesson|"
    r"tutorial|vlog|blog|intro|outro|trailer|newsletter|brochure|page|channel|feed|account|"
    r"project|assignment|client|montage|compilation|class|lecture|app|listing|e-card|"
    r"segment|b-roll|podcast|demo|showcase|portfolio|banner|thumbnail|documentary|homepage|"
    r"header|psa|recap|board|moodboard|background|instagram|tiktok|youtube|reels|facebook)"
)
_PURPOSE_IN_PART: Final = re.compile(
    r"(?:(?:it'?s|it\s+is|this\s+is|(?:(?:i|we)\s+)?need(?:ed)?(?:\s+it)?|(?:to\s+)?use(?:d)?|"
    r"to\s+be\s+used)\s+)?(?:for|in|on|as)\s+(?:(?:a|an|the|our|my|your|their|this)\s+)?"
    rf"(?:[\w'-]+\s+){{0,3}}?{_PURPOSE_NOUNS}(?:\s+{_PURPOSE_NOUNS})?\b"
)
#: A purpose right at the end with no separator, filler only after a request at the start
#: ("hey, I need a video of a butterfly on a sunflower for a school project").
_PURPOSE_AT_END: Final = re.compile(
    rf"\s+for\s+(?:a|an|my|our|the|this|your)\s+(?:[\w'-]+\s+){{0,2}}?{_PURPOSE_NOUNS}$"
)
#: A purpose at the very end without a request before it: the asker's own ("… for my biology
#: class", "… for our studio's instagram") or a medium ("… for a holiday e-card", "… for a
#: seasonal ad"). "waiting for a bus", "a table set for six people" and "preparing for a
#: presentation" name no medium and no asker, and stay.
_UNASKED_PURPOSE_AT_END: Final = re.compile(
    rf"\s+for\s+(?:(?:my|our)\s+(?:[\w'-]+\s+){{0,3}}?{_PURPOSE_NOUNS}|"
    r"(?:a|an|the)\s+(?:[\w'-]+\s+){0,3}?(?:ad|ads|advert|advertisement|commercial|promo|reel|"
    r"website|blog|vlog|channel|intro|outro|trailer|newsletter|brochure|slideshow|listing|"
    r"e-card|b-roll|podcast|thumbnail|banner|instagram|tiktok|youtube))$"
)
#: A generation instruction about overlays: "no text or watermark", "without logos".
_OVERLAY: Final = (
    r"(?:on-?screen\s+)?(?:text|watermarks?|logos?|subtitles|captions|overlays?|branding)"
)
_NO_OVERLAY: Final = re.compile(
    rf"\b(?:no|without)\s+{_OVERLAY}(?:\s*(?:,|or|and|/|&)\s*{_OVERLAY})*\b"
)
#: A request standing as a trailing part: "can you generate this", "please make this video",
#: "make a 5 second clip".
_TRAILING_REQUEST: Final = re.compile(
    rf"(?:(?:please|pls)\s+)?(?:{_MODAL}\s+(?:please\s+)?)?(?:generate|make|create|render|produce)"
    r"(?:\s+(?:this|it|that|me|us|a|an|one))*"
    rf"(?:\s+{_NUMBER}[- ]?(?:seconds?|secs?|s)(?:[- ]long)?)?(?:\s+(?:short|quick|brief))?"
    r"(?:\s+(?:video|clip|footage|one|version))?(?:\s+(?:please|pls))?"
)
#: The genre of the medium as a tag ("nature documentary", "food commercial shot", "travel
#: vlog intro"): at most four words, none a determiner or a verb form, ending in one of these
#: and perhaps the medium.
_GENRE: Final = re.compile(
    r"(?:[a-z][\w-]*\s+){0,3}?(?:documentary|commercial|promo|advert|ad|vlog|trailer|explainer|"
    r"b-roll|broll|brochure|loop|prompt|request|demo|mood\s+board|moodboard|[a-z]*photography)"
    r"(?:\s+(?:intro|outro|shot|footage|video|clip|request|prompt))?"
)
_NOT_IN_GENRE: Final = frozenset({"a", "an", "the", "of", "my", "our", "this", "that", "for"})


def _is_genre_tag(part: str) -> bool:
    words = [
        w
        for w in part.split()
        if w not in _TAG_WORDS and w not in _TAG_MODIFIERS and not _TAG_PATTERN.fullmatch(w)
    ]
    return (
        bool(_GENRE.fullmatch(" ".join(words)))
        and len(words) <= 4
        and not any(w in _NOT_IN_GENRE or w.endswith(("ing", "ed")) for w in words)
    )


#: What a label of the medium ends in: "nature footage", "interior shot", "cute video",
#: "epic fantasy video", "ultra detailed sci-fi shot".
_MEDIUM_ENDINGS: Final = frozenset(
    {"video", "clip", "footage", "shot", "reel", "render", "rendering", "quality", "grade"}
)
#: Words of camera work and of the picture's look, which change it ("wide shot", "drone
#: footage", "aerial shot", "slow motion clip", "grainy black and white footage"): a label
#: holding one stays.
_CAMERA: Final = """
    wide close close-up closeup aerial drone overhead tracking macro slow motion panning pan
    zoom zooming handheld static low angle pov first-person timelapse time-lapse long medium
    establishing top-down bird's-eye birds-eye dolly crane fisheye tilt split-screen
    underwater b-roll gopro vertical horizontal black white grey gray sepia grainy
"""
_CAMERA_WORDS: Final = frozenset(_CAMERA.split())


def _is_medium_label(part: str) -> bool:
    """A label of the medium: at most five words ending in a medium word or "quality",
    the words before it saying how good or what kind ("hd sports footage", "beautiful
    interior shot", "magazine quality"), none a determiner, a verb form, a number or era
    ("1950s"; "4k" is a tag), camera work or the picture's look, or a detail a viewer sees
    (a colour, time, weather, season, style or era)."""
    words = _split_words(part)
    if not 2 <= len(words) <= 5 or words[-1] not in _MEDIUM_ENDINGS:
        return False
    if not _CAMERA_WORDS.isdisjoint(part.split()):  # "top-down", "close-up" as written
        return False
    phrases = (" ".join(words[i : i + n]) for n in (2, 3) for i in range(len(words) - n + 1))
    if any(_names_a_detail(phrase) for phrase in phrases):
        return False
    return not any(
        w in _NOT_IN_GENRE
        or w in _CAMERA_WORDS
        or _names_a_detail(w)
        or (w.endswith(("ing", "ed")) and w not in _TAG_WORDS)
        or (any(c.isdigit() for c in w) and not _TAG_PATTERN.fullmatch(w))  # "1950s"
        for w in words[:-1]
    )


#: Hopes about the result: "hope this works", "hopefully this one works!", "hope it's better
#: this time".
_NEED_IT: Final = re.compile(
    r"(?:i\s+|we\s+)?need\s+(?:this|it)(?:\s+(?:asap|soon|today|urgently))?"
)
_HOPE: Final = re.compile(
    r"(?:i\s+)?hop(?:e|efully)\s+(?:this|it|that)(?:\s+one)?(?:'s|\s+is|\s+works|\s+will\s+work)?"
    r"(?:\s+(?:better|ok|okay|good|right))?(?:\s+this\s+time)?[\s!.]*"
)


def _is_filler_part(part: str, after_filler: bool) -> bool:
    """Whether a trailing part says nothing about the scene: a list of quality tags, the
    video's purpose, genre or overlays, or a request to make it — alone or together
    ("realistic, no text or watermark", "to use in a corporate presentation, professional
    quality", "can you generate this"). After another filler part, modifiers alone go too."""
    if _is_tag_list(part) or _intensified(part) or _is_genre_tag(part) or _is_medium_label(part):
        return True
    if _TRAILING_REQUEST.fullmatch(part) or _HOPE.fullmatch(part) or _NEED_IT.fullmatch(part):
        return True
    rest = _NO_OVERLAY.sub(" ", _PURPOSE_IN_PART.sub(" ", part))
    rest = " ".join(rest.split())
    if rest == part:
        return after_filler and _only_modifiers(part)
    return not rest or _is_tag_list(rest) or _only_modifiers(rest) or _is_genre_tag(rest)


#: A bare "please" at the end, filler only after a request at the start ("make me a clip
#: of … please").
_BARE_PLEASE: Final = re.compile(r"\s+(?:please|pls|plz)[\s.!?]*$")
#: Generator parameters at the end ("--ar 16:9 --v 6").
_PARAMETERS: Final = re.compile(r"(?:\s+--[a-z]+(?:\s+[\w:.]+)?)+$")
#: A bracketed group ("[4k]", "(high quality)"): filler when its words are.
_BRACKETED: Final = re.compile(r"[\[(]([^\[\]()]{1,60})[\])]")
_TRENDING: Final = re.compile(r"^trending\s+on\s.*$")
#: A draft's number in a leading label ("concept #3", "take #2").
_SERIAL: Final = re.compile(r"#\d+")
#: Intensifiers that make a part of tag modifiers alone a quality tag ("ultra sharp",
#: "super crisp"); "sharp" alone may describe a thing.
_INTENSIFIERS: Final = frozenset({"ultra", "super", "hyper", "highly", "extremely"})
_RESOLUTION_TAGS: Final = frozenset(["4k", "8k", "hd", "uhd", "1080p", "720p"])
# NFKC and case folding can each undo the other's fixed point for a few code points, so
# both are repeated until the text is stable; real text settles in one or two passes.
_MAX_PASSES: Final = 8


def _is_edge_char(ch: str) -> bool:
    # Punctuation, and symbols such as emoji, decorate the ends ("… thanks a lot 🙏").
    return ch.isspace() or unicodedata.category(ch)[0] in "PS" or ch in _EMOJI_JOINERS


#: What joins or varies an emoji at an edge (zero-width joiner, variation selectors).
_EMOJI_JOINERS: Final = frozenset({"\u200d", "\ufe0e", "\ufe0f"})


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


def _is_tag_list(part: str) -> bool:
    # "trending on <any site>" is a tag whatever the site ("artstation", "social media");
    # "seed: 48213", "aspect ratio 9:16", "(approx 8 seconds)": generation settings.
    part = _TRENDING.sub("trending", part)
    words = [w.strip(":=()") for w in part.split()]
    words = [w for w in words if w and w not in _TAG_JOINERS]
    tags = [w for w in words if w in _TAG_WORDS or _TAG_PATTERN.fullmatch(w)]
    return bool(tags) and all(w in _TAG_MODIFIERS for w in words if w not in tags)


def _split_words(part: str) -> list[str]:
    """The words of ``part``, hyphenated and slashed ones apart ("ultra-detailed" -> 2)."""
    return [w for w in re.split(r"[\s/-]+", part) if w]


def _is_framing(part: str) -> bool:
    words = _split_words(part)
    framing = [
        w
        for w in words
        if w in _FRAMING_WORDS
        or w in _TAG_WORDS
        or w in _TAG_MODIFIERS
        or _TAG_PATTERN.fullmatch(w)
        or _SERIAL.fullmatch(w)  # "ad concept #3:"
    ]
    anchored = any(w in _FRAMING_ANCHORS or w in _TAG_WORDS or _VERSION.fullmatch(w) for w in words)
    return anchored and len(framing) == len(words) and len(words) <= 5


#: A draft's version: "v2 -", "v3:".
_VERSION: Final = re.compile(r"v\d{1,2}")

#: What a label before a colon ends with when it names the medium ("bakery promo video:").
_LABEL_ENDINGS: Final = frozenset(
    {"video", "vid", "clip", "ad", "promo", "reel", "footage", "post"}
)


def _labels_a_medium(match: re.Match[str]) -> bool:
    return match.group(0).rstrip().endswith(":") and _names_a_medium(match.group("part").split())


def _names_a_medium(words: list[str]) -> bool:
    """A short label ending in the medium: "bakery promo video", "sports promo", "ad"."""
    return 0 < len(words) <= 4 and words[-1] in _LABEL_ENDINGS


#: A length inside a leading bracketed label beside a medium label ("10s", "15 sec", "30
#: seconds"); "20s" to "90s" written so may be an era ("[90s, ad]") and stay.
_DURATION: Final = re.compile(r"\d{1,3}\s?(?:sec|secs|seconds?)|(?![2-9]0s)\d{1,3}s")


#: Words a request ahead of the medium may hold in any order, besides quality tags and the
#: framing words: who asks, how politely, what for and how long ("hey there, I need a short,
#: high-resolution video of", "could you make a realistic clip showing").
_REQUESTING: Final = """
    i i'd i'm we we'd we're you u me us my our could can would will please pls kindly just
    need needs want wants wanna like love looking see get have there hey hi hello ok okay so
    generate create make render produce animate give show do a an one the some this that
    short brief quick little long second seconds sec secs s minute minutes min mins
    documentary commercial promo advert vlog trailer explainer
"""
_REQUEST_WORDS: Final = frozenset(_REQUESTING.split())
#: The media a request prefix must name; "shot", "film" and "scene" only after a request
#: verb ("a shot of espresso", "a film of dust").
_PREFIX_MEDIA: Final = frozenset({"video", "vid", "clip", "footage", "movie", "reel", "gif"})
_PREFIX_CONNECTORS: Final = frozenset({"of", "showing", "depicting", "featuring", "where"})
_PREFIX_VERBS: Final = frozenset({"generate", "create", "make", "render", "produce", "animate"})
_NUMBERS: Final = "one two three four five six seven eight nine ten fifteen twenty thirty"
_NUMBER_WORDS: Final = frozenset(_NUMBERS.split())
#: What the video is for, closing a request prefix: "for my nature blog", "for our bakery's
#: facebook page".
_PREFIX_PURPOSE: Final = re.compile(
    r"\s+for\s+(?:my|our|a|an|the|this|your|their)(?:\s+[\w'-]+){1,4}$"
)


def _in_request_prefix(word: str) -> bool:
    # A word a request prefix may hold (see _drop_request_prefix); not the guard's
    # request_word, which judges a word left over on its own.
    return (
        word in _REQUEST_WORDS
        or word in _FRAMING_WORDS
        or word in _TAG_WORDS
        or word in _TAG_MODIFIERS
        or word in _NUMBER_WORDS
        or bool(_TAG_PATTERN.fullmatch(word))
    )


def _drop_request_prefix(text: str) -> str:
    """``text`` without a leading request made only of request, medium and quality words,
    in any order, up to the first word that introduces the scene ("of", "showing",
    "depicting", "featuring", "where"): "please create a high quality, photorealistic 4k
    video of", "need a clip for my nature blog of". The prefix must name a medium; a word of
    the scene in it ("a slow motion video of", "a black and white clip of") keeps it all."""
    words = text.split()
    for i, word in enumerate(words[:16]):
        if word not in _PREFIX_CONNECTORS:
            continue
        prefix = re.sub(r"[,;:!?.()]", " ", " ".join(words[:i]))
        prefix = _PREFIX_PURPOSE.sub("", " " + prefix)
        tokens = _split_words(prefix)
        media = [w for w in tokens if w in _PREFIX_MEDIA or w in _ASKED_ONLY or w == "scene"]
        asked = not _PREFIX_VERBS.isdisjoint(tokens)
        if (
            media
            and (asked or any(w in _PREFIX_MEDIA for w in media))
            and all(_in_request_prefix(w) or w in media for w in tokens)
            and i + 1 < len(words)
        ):
            return _strip_edges(" ".join(words[i + 1 :]))
        return text
    return text


def _drop_leading(text: str) -> str:
    match = _LABEL.match(text) or _PURPOSE_LABEL.match(text)
    if match is not None:
        return _strip_edges(text[match.end() :])
    match = _LEADING_PART.match(text)
    if match is not None and (
        _is_framing(match.group("part"))
        or _labels_a_medium(match)
        or _is_medium_label(match.group("part"))
        or _is_genre_tag(match.group("part"))  # "real estate promo:", "cooking b-roll:"
    ):
        return _strip_edges(text[match.end() :])
    match = _BARE_REQUEST.match(text) or _WISH_TO_SEE.match(text) or _ASKED_MAKE.match(text)
    if match is not None:
        return _strip_edges(text[match.end() :])
    match = _CLAUSE.match(text)
    if match is not None:
        asked = bool(match.group("request").strip())
        medium = match.group("medium")
        shot = medium == "shot" and "cinematic" in text[: match.start("medium")]
        bare = (medium not in _ASKED_ONLY or shot) and match.group("connector") != "with"
        if asked or bare:
            return _strip_edges(text[match.end() :])
    match = _REQUEST_ONLY.match(text)
    if match is not None:
        return _strip_edges(text[match.end() :])
    return _drop_request_prefix(text)


def _stem(word: str) -> str:
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def _repeats(tag: str, words: list[str]) -> bool:
    """Whether hashtag ``tag`` (without its #) says again a word of the prompt ("#cars" after
    "a car", "#drift" after "drifting") or is a quality tag ("#4k")."""
    if tag in _TAG_WORDS or _TAG_PATTERN.fullmatch(tag):
        return True
    tag = _stem(tag)
    if any(
        _stem(w) == tag or (len(tag) >= 4 and w.startswith(tag) and w[len(tag) :] in _INFLECTIONS)
        for w in words
    ):
        return True
    # Neighbouring words run together ("#mantaray" after "manta ray") or their initials
    # ("#nyc" after "new york city").
    for size in (2, 3, 4):
        for i in range(len(words) - size + 1):
            run = words[i : i + size]
            if _stem("".join(run)) == tag or (len(tag) >= 3 and "".join(w[0] for w in run) == tag):
                return True
    return False


#: What may follow a hashtag's word in the prompt's word ("#drift" / "drifting"), not
#: another word that starts alike ("#rain" / "rainbow").
_INFLECTIONS: Final = frozenset({"s", "es", "ing", "ed", "er", "ers"})


def _drop_hashtags(text: str) -> str:
    # Trailing hashtags label the post ("a sports car drifting #cars #drift #automotive"): a
    # detail the viewer would see ("#sunset") or a number stays for the guard to compare,
    # unless the prompt already says it.
    words = text.split()
    end = len(words)
    while end > 1 and words[end - 1].startswith("#"):
        end -= 1
    if end == len(words):
        return text
    return _strip_edges(" ".join(words[:end] + _kept_hashtags(words[end:], words[:end])))


def _kept_hashtags(tags: list[str], prompt: list[str]) -> list[str]:
    """The hashtags of ``tags`` that stay beside the prompt's words: a detail or a number
    the prompt does not already say."""
    body = [w for part in prompt for w in _split_words(part.strip(",.;:!"))]
    return [
        tag
        for tag in tags
        if (_names_a_detail(tag.strip("#,.;:!")) or _TAG_NUMBER.search(tag))
        and not _repeats(tag.strip("#,.;:!"), body)
    ]


def _names_a_detail(tag: str) -> bool:
    return tag in _DETAILS or _stem(tag) in _DETAILS


def _detail_words() -> frozenset[str]:
    # Every member of the detail groups, a phrase also run together ("#slowmotion").
    members = (m.lstrip("~") for group in DETAIL_GROUPS for m in group.split("|"))
    return frozenset(form for m in members for form in (m, m.replace(" ", "")))


_DETAILS: Final = _detail_words()
_TAG_NUMBER: Final = re.compile(r"\d")


def _only_modifiers(part: str) -> bool:
    words = [w for w in part.split() if w not in _TAG_JOINERS]
    return bool(words) and all(w in _TAG_MODIFIERS for w in words)


def _intensified(part: str) -> bool:
    """A quality tag of modifiers alone, one of them an intensifier: "ultra sharp"."""
    words = part.split()
    return len(words) >= 2 and _only_modifiers(part) and not _INTENSIFIERS.isdisjoint(words)


def _last_part(text: str) -> tuple[str, str] | None:
    """``text`` split at its last part separator (comma, semicolon, sentence end, a pipe or
    a free-standing dash), or None."""
    last = None
    for found in _SEPARATOR.finditer(text):
        last = found
    if last is None or last.start() == 0:
        return None
    return text[: last.start()], text[last.end() :].strip().lstrip("-\u2013\u2014 ")


def _drop_trailing(text: str, asked: bool = False) -> str:
    # Politeness at the end ("… please", "? thanks!", ". thank you.") goes first. Then the last
    # part after a separator that is only tags goes; then the one before it, and there a part
    # of tag modifiers alone goes too (", sharp, 4k": "sharp" only describes the picture next
    # to other tags).
    for _ in range(2):  # "… ? it's for a school project, thank you so much."
        text = _PURPOSE.sub("", _THANKS.sub("", text))
    text = _PARAMETERS.sub("", text)
    text = _strip_edges(_BARE_PLEASE.sub("", text) if asked else text)
    text = _drop_hashtags(text)
    dropped = False
    while True:
        split = _last_part(text)
        if split is None:
            break
        head, tail = split
        if head.strip() and (bool(_PURPOSE_PART.fullmatch(tail)) or _is_filler_part(tail, dropped)):
            text, dropped = _strip_edges(head), True
            continue
        break
    if asked and _PURPOSE_AT_END.search(text):
        text, dropped = _strip_edges(_PURPOSE_AT_END.sub("", text)), True
    elif _UNASKED_PURPOSE_AT_END.search(text):
        text, dropped = _strip_edges(_UNASKED_PURPOSE_AT_END.sub("", text)), True
    if dropped:
        return text
    words = text.split()
    # Tags at the very end with no separator, around a resolution: "… 4k", "… in 4k", "… in
    # stunning 4k resolution".
    cut = len(words)
    while cut > 1 and len(words) - cut < 4 and _is_tag_word(words[cut - 1]):
        cut -= 1
    if cut < len(words) and any(w in _RESOLUTION_TAGS for w in words[cut:]):
        if cut > 1 and words[cut - 1] == "in":
            cut -= 1
        return _strip_edges(" ".join(words[:cut]))
    return text


def _is_tag_word(word: str) -> bool:
    return word in _TAG_WORDS or word in _RESOLUTION_TAGS or bool(_TAG_PATTERN.fullmatch(word))


def _drop_brackets(text: str) -> str:
    # "[high quality] [4k] a potter …", "… (best quality)": a bracketed tag list or request.
    # At the very start a bracket may also label the medium and its length ("[sports promo,
    # 10s]", "(ad, 15 sec)").
    def drop(match: re.Match[str]) -> str:
        inner = match.group(1).strip()
        parts = [p.strip() for p in re.split(r"[,;|]", inner.casefold())]
        filler = all(
            p
            and (
                _is_tag_list(p)
                or _is_framing(p)
                or _PURPOSE_PART.fullmatch(p)
                or _is_genre_tag(p)
                or all(request_word(w) is not None for w in p.split())  # "(due friday)"
            )
            for p in parts
        )
        if not filler and match.start() == 0:
            labels = [p for p in parts if _names_a_medium(p.split())]
            filler = bool(labels) and all(
                p in labels or _is_tag_list(p) or _is_framing(p) or _DURATION.fullmatch(p)
                for p in parts
            )
        return " " if filler else match.group(0)

    return _BRACKETED.sub(drop, text)


def _drop_leading_hashtags(text: str) -> str:
    # "#cozy #rainyday rain trickling down …": hashtags in front label the post as those at
    # the end do (the same rule: a visible detail or a number stays).
    words = text.split()
    start = 0
    while start < len(words) - 1 and words[start].startswith("#"):
        start += 1
    if start == 0:
        return text
    return _strip_edges(" ".join(_kept_hashtags(words[:start], words[start:]) + words[start:]))


def _drop_filler(text: str) -> str:
    # Each round removes something or ends the loop; stacked filler ("a clip of footage of",
    # ", 4k, hd, trending") goes entirely.
    asked = False
    while True:
        before = text
        leading = _drop_leading(text)
        asked = asked or leading != text
        text = _drop_trailing(leading, asked)
        if text == before:
            return text


#: "fall" before a word of the season's scene is the American "autumn" ("fall leaves", "a
#: fall morning"); read so, "leaves" stays a word of its own.
_FALL: Final = re.compile(
    r"\bfall(?=\s+(?:leaves|leaf|foliage|colou?rs|trees?|day|days|morning|afternoon|evening|"
    r"sunshine|light|breeze|season|festival|harvest|woods|forest|landscape|scenery|sky)\b)"
)


#: Words of a chat around the request that never name a thing of the scene: greetings,
#: thanks, hedges, deadlines, file formats.
_CHATTING: Final = """
    lol lmao idk tbh btw pls plz thx ty tysm thanks thank cheers heaps hey heyy heyyy yo ugh
    hmm haha hahaha appreciated appreciate gracias asap deadline mp4 mov highres bitrate
"""
#: Words about the request that may also be the scene's ("a man giving a presentation", "a
#: kid doing a project"): taken as the request's only where nothing of the scene is done
#: to them or placed by them (see the guard).
_ASKING: Final = """
    ok okay hope hoping works try trying tried again retry version previous test testing
    idea concept request requests gen due budget rush hurry urgent help guess info know let
    output format wallpaper banner portfolio reddit discord etsy listing podcast slideshow
    channel intro outro app tool ai excited fancy possible highest higher res attention
    subject want wants wanted need needs needed would like love prompt prompts please kindly
    boss client clients deck pitch presentation project assignment blog vlog website site
    page post story feed account server hero section launch monday tuesday wednesday
    class lecture lesson course tutorial e-card brochure newsletter b-roll broll segment
    demo showcase thumbnail campaign promo trailer visualize visualise
    thursday friday video clip footage reel gif render rendering generate create produce
    animate instagram tiktok youtube linkedin facebook snapchat pinterest vimeo viral
"""
_CHAT_WORDS: Final = frozenset(_CHATTING.split())
_ASKING_WORDS: Final = frozenset(_ASKING.split())
#: Tags that never describe a thing of the scene (unlike "sharp", "clean", "full",
#: "horizontal" or "beautiful", which may: "a knife, sharp", "a horizontal bar").
_PICTURE_TAGS: Final = """
    4k 8k 16k hd uhd fhd hdr qhd 1080p 720p 2160p resolution hi-res high-res quality hq
    definition fidelity masterpiece detailed ultra-detailed hyperdetailed hyper-detailed
    cinematic cinematography trending artstation award-winning realistic photorealistic
    photoreal hyperrealistic hyper-realistic octane unreal watermark fps cfg ultra super
    highly hyper best very extremely rated
"""
_SAFE_TAGS: Final = frozenset(_PICTURE_TAGS.split())


def request_word(word: str) -> str | None:
    """What ``word`` (a word or a hyphenated one) says about the request rather than the
    scene: ``"tag"`` for words that never name a thing of the scene — quality and format
    tags ("8k", "hdr", "hyper-detailed", "60fps"), chat ("pls", "lol", "deadline");
    ``"asking"`` for words about the request that may also be the scene's (media and
    platforms, "a fox watching a video", "scrolling tiktok"; "presentation", "project",
    "need"); None otherwise. Words that may describe a thing ("sharp", "clean", "little")
    and detail words (colours, times of day, weather, seasons, styles, eras) are None."""
    parts = _split_words(word.strip(".,;:!?()[]<>\"'~*#/\\"))
    if not parts or any(_names_a_detail(part) for part in parts):
        return None
    if all(p in _CHAT_WORDS or p in _SAFE_TAGS or _TAG_PATTERN.fullmatch(p) for p in parts):
        return "tag"
    if all(
        p in _ASKING_WORDS or p in _CHAT_WORDS or p in _SAFE_TAGS or _TAG_PATTERN.fullmatch(p)
        for p in parts
    ):
        return "asking"
    return None


#: What a negative prompt lists is what the video must not show: it goes with its label.
_NEGATIVE: Final = re.compile(r"(?:^|(?<=[\s|(\[,;.]))negative(?:\s+prompts?)?\s*:[^\n|]*")
#: Markdown and markup around the scene: bold and italics, headings, closing tags.
_MARKUP: Final = re.compile(r"\*\*|__|^\s*#{1,6}\s+|\[/\w+\]", re.MULTILINE)
#: "w/" is "with".
_WITH: Final = re.compile(r"\bw/(?=\s)")


_PIPE: Final = re.compile(r"\s*\|[\s|]*")


#: Pictographs, flags, dingbats and their joiners and skin tones; not "°", "©" or "™".
_EMOJI: Final = re.compile(
    "[\u2300-\u23ff\u25a0-\u27bf\u2b00-\u2bff\u200d\ufe0e\ufe0f\U0001f000-\U0010ffff]+"
)


def _unmark(text: str) -> str:
    """Line breaks and emoji become part separators ("… a dog 🐶 pls", "prompt:\\n…"),
    markdown and a negative prompt go, "w/" is "with"."""
    text = _NEGATIVE.sub(" ", _MARKUP.sub(" ", text))
    text = _WITH.sub("with", text)
    text = _EMOJI.sub(" | ", text)
    return re.sub(r"\s*\n[\s\n]*", " | ", text.strip())


def normalize_prompt(text: str, *, drop_filler: bool = True) -> str:
    """The prompt as the guard reads it.

    Unicode NFKC, case-folded, whitespace collapsed to single spaces, punctuation stripped
    from both ends and (when ``drop_filler``) a leading request clause ("could you make me a
    short video of", "text to video:") and trailing quality tags (", 4k, highly detailed")
    removed; with ``drop_filler`` a line break or an emoji first separates parts as "|" does
    (one left inside the scene becomes a comma) and markdown and a negative prompt go.
    Deterministic and idempotent; inner punctuation and word order are kept.
    """
    if drop_filler:
        # Before the edges are stripped: they may hold a bracket or a hashtag's "#".
        folded = " ".join(_unmark(unicodedata.normalize("NFKC", text).casefold()).split())
        text = _drop_leading_hashtags(_drop_brackets(folded))
    text = _FALL.sub("autumn", _canonical_text(text))
    if not drop_filler:
        return text
    # A separator left inside the scene (an emoji there, a pipe between its parts) is a comma.
    return _PIPE.sub(", ", _drop_filler(text))
