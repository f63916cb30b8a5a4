"""Corrections to the small parser's tags and lemmas, made before a scene is read.

``en_core_web_sm`` is fast but misreads a few shapes that prompts use all the time. Each
correction below rewrites the parsed :class:`~spacy.tokens.Doc` in place, from the parse itself
and the lemmatiser's own tables, before :mod:`~streamproc.cache.scene` reads it:

* **verb lemmas** of "-ing" and "-ed" forms: the lemmatiser reads "riding" as "rid" and
  "shining" as "shin"; English spelling decides it ("rid" would be "ridding"), so a stem that
  ends consonant-vowel-consonant takes its "e" back when the verb exists;
* **participles tagged as adjectives** ("a wave ridden by a surfer" with "ridden" as an
  adjective): a past participle is a verb, with the verb's lemma ("ride"), irregular ones
  from the lemmatiser's exceptions;
* **verbs tagged as plural nouns** after a reordered clause ("in the morning, a fox trots"
  read as the noun "fox trots"): a plural noun cannot take "a", so it is the verb and the
  noun before it its subject; its verb lemma comes from the verb tables ("buries", which
  the noun lemmatiser makes "burie", is "bury"), and an object the tagger made plural
  beside it ("… buries the mountain hut", "hut" plural) takes back the number its form says;
* **a sentence read as one noun phrase** ("the little girl spoons soup into a bowl" with
  "girl spoons soup" a compound): with no verb in the sentence, a verb form compounded onto
  the noun right after it, with a determined noun right before it, is the verb, that noun
  its subject and the next its object;
* **-ing words tagged as nouns** that modify a noun ("a sailboat gliding") are verbs, and
  so is one that heads a noun phrase after a person or an animal ("a knight kneeling before
  a queen" read as a "knight kneeling"), or a verb the tagger gave such a noun as a
  compound ("a puppy barking from …"): the person or animal heads the phrase and the -ing
  form is a clause on it;
* **"can" tagged as a modal** without a verb to help ("a soda can") is a noun;
* **nouns tagged as adjectives** with a determiner of their own ("a kitten sleeping" with
  "kitten" an adjective) are nouns when the lemmatiser knows the word as a noun only;
* **subjects of "as"/"while"/"when" clauses read as prepositional objects** ("waves crashing
  as a surfer rides the swell" with "surfer" the object of "as" and "waves" the subject of
  "rides"): a noun right after such a word and right before a finite verb is that verb's
  subject, and a subject the verb had from before the conjunction is detached;
* **the sentence's verb read inside a prepositional phrase** ("a knight on horseback chases
  a dragon" with "horseback chases" a noun, "a dog with a bone chases a cat" with "bone" the
  subject): with no other verb in the sentence, a verb form right before a determined noun
  takes the noun its phrase hangs on as subject and the noun after it as object;
* **subjects after the verb** ("into a puddle jumps a girl" with "girl" the object): a verb
  without a subject, preceded only by place phrases, has the noun after it as subject;
* **passive phrases** ("a rock is pushed up a hill by a man" with "up" a particle and
  "hill" its object, "torn off a farmhouse by a tornado" with the "by" phrase on
  "farmhouse"): in the passive a particle before an object is a preposition, and a "by"
  phrase further in is the agent when the verb has none;
* **objects read as appositives** ("a dragon chases a knight" with "knight" an appositive
  of "chases"): a noun after a finite verb without an object is its object;
* **clauses read as noun phrases** ("a seagull stealing chips from a child" with "stealing
  chips" a kind of chips): a determined noun before an -ing form that modifies the next
  word heads the phrase, the -ing form is a clause on it and the next word its object or,
  for an adjective, its complement ("a jellyfish glowing blue"); never where the two words
  are one noun in WordNet ("a hotel swimming pool");
* **subjects read as objects after a fronted clause** ("drifting in the dark ocean, a
  jellyfish ..." with "jellyfish" the object of "drifting"): a comma does not separate a
  verb from its object, so the noun after it is the subject.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Final

from streamproc.cache.lexicon.relations import PICTURE_NOUNS

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc, Token

__all__ = ["Lemmas", "correct"]

_VOWELS: Final = frozenset("aeiou")
_SINGULAR_DETERMINERS: Final = frozenset({"a", "an", "one", "this", "that", "each", "every"})
_VERB_DEPENDENCIES: Final = frozenset({"acl", "relcl", "advcl"})


class Lemmas:
    """Verb lemmas read with the parser's own lemmatiser tables."""

    def __init__(
        self,
        verbs: Collection[str],
        irregular: Mapping[str, list[str]],
        nouns: Collection[str] = (),
        adjectives: Collection[str] = (),
        compounds: Collection[str] = (),
        being: Callable[[str], bool] | None = None,
    ) -> None:
        self._verbs = frozenset(verbs)
        self._irregular = irregular
        self._nouns = frozenset(nouns)
        self._adjectives = frozenset(adjectives)
        self._compounds = frozenset(compounds)
        self._being = being

    @classmethod
    def of(
        cls,
        parser: Language,
        compounds: Collection[str] = (),
        being: Callable[[str], bool] | None = None,
    ) -> Lemmas:
        """The tables of ``parser``'s rule lemmatiser (empty when it has none), and from a
        lexical database the two-word nouns ``compounds`` ("swimming pool") and ``being``,
        whether a noun lemma names a person or an animal."""
        try:
            lookups = parser.get_pipe("lemmatizer").lookups  # type: ignore[attr-defined]
            index = lookups.get_table("lemma_index")
            verbs = index["verb"]
            irregular = lookups.get_table("lemma_exc")["verb"]
            nouns, adjectives = index["noun"], index["adj"]
        except (KeyError, AttributeError):
            return cls((), {}, compounds=compounds, being=being)
        return cls(verbs, irregular, nouns, adjectives, compounds, being)

    def is_being(self, lemma: str) -> bool:
        """Whether the noun ``lemma`` names a person or an animal (False without a database)."""
        return self._being is not None and self._being(lemma)

    def is_noun(self, form: str) -> bool:
        """Whether ``form`` is a noun the lemmatiser knows."""
        return form in self._nouns

    def only_noun(self, form: str) -> bool:
        """Whether ``form`` is a noun the lemmatiser knows and no adjective it knows."""
        return form in self._nouns and form not in self._adjectives

    def only_adjective(self, form: str) -> bool:
        """Whether ``form`` is an adjective the lemmatiser knows and no noun it knows."""
        return form in self._adjectives and form not in self._nouns

    def is_adjective(self, form: str) -> bool:
        """Whether ``form`` is an adjective the lemmatiser knows."""
        return form in self._adjectives

    def is_compound(self, first: str, second: str) -> bool:
        """Whether "``first`` ``second``" is one noun ("swimming pool", "sleeping bag")."""
        return f"{first} {second}" in self._compounds

    def is_verb(self, lemma: str) -> bool:
        """Whether ``lemma`` is a verb the lemmatiser knows."""
        return lemma in self._verbs

    def verb(self, form: str) -> str | None:
        """The lemma of ``form`` read as a verb ("riding" -> "ride"), or None."""
        if form in self._irregular:
            return self._irregular[form][0]
        for suffix in ("ing", "ed"):
            if form.endswith(suffix) and len(form) > len(suffix) + 1:
                found = self._from_stem(form[: -len(suffix)], suffix)
                if found is not None:
                    return found
        return form if form in self._verbs else None

    def present(self, form: str) -> str | None:
        """The lemma of a third-person present form ("buries" -> "bury", "watches" ->
        "watch", "lies" -> "lie"), or None."""
        for cut, add in (("ies", "y"), ("es", ""), ("s", "")):
            if form.endswith(cut) and len(form) > len(cut) + 1:
                stem = form[: -len(cut)] + add
                if stem in self._verbs:
                    return stem
        return None

    def _from_stem(self, stem: str, suffix: str) -> str | None:
        known = self._verbs
        if suffix == "ed" and stem.endswith("i") and stem[:-1] + "y" in known:
            return stem[:-1] + "y"  # carried
        lying = suffix == "ing" and stem.endswith("y") and stem not in known
        if lying and stem[:-1] + "ie" in known:
            return stem[:-1] + "ie"
        doubled = len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in _VOWELS
        if doubled and stem not in known and stem[:-1] in known:
            return stem[:-1]  # running, chopped
        if _ends_cvc(stem) and not doubled and stem + "e" in known:
            return stem + "e"  # riding, shining, baked
        if stem in known:
            return stem
        if stem + "e" in known:
            return stem + "e"  # paddling
        return None


def _ends_cvc(stem: str) -> bool:
    if len(stem) < 2:
        return False
    last, vowel = stem[-1], stem[-2]
    before = stem[-3] if len(stem) > 2 else ""
    return (
        last not in _VOWELS
        and last not in "wxy"
        and vowel in _VOWELS
        and (not before or before not in _VOWELS)
    )


def correct(doc: Doc, lemmas: Lemmas) -> Doc:
    """Apply the corrections of the module docstring to ``doc`` (in place) and return it."""
    for token in doc:
        _clause_read_as_compound(token, lemmas)
    for token in doc:
        _gerund_read_as_noun(token, lemmas)
    _verb_in_a_noun_chain(doc, lemmas)
    for token in doc:
        _retag(token, lemmas)
    for token in doc:
        _subordinate_subject(token)
    for token in doc:
        _verb_inside_a_phrase(token, lemmas)
    for token in doc:
        _appositive_object(token)
    for token in doc:
        _inverted_subject(token)
    for token in doc:
        _subject_after_comma(token)
    for token in doc:
        _fronted_clause_appositive(token)
    for token in doc:
        _manner_by(token)
    for token in doc:
        _passive_phrases(token)
    for token in doc:
        if token.pos_ == "VERB" and token.lower_.endswith(("ing", "ed")):
            lemma = lemmas.verb(token.lower_)
            if lemma is not None:
                token.lemma_ = lemma
    return doc


def _clause_read_as_compound(token: Token, lemmas: Lemmas) -> None:
    # "a seagull stealing chips from a child", "a waiter serving soup to a chef", "a jellyfish
    # glowing blue": the noun, the -ing form and the word after it read as one noun phrase
    # headed by the last word ("stealing chips" a kind of chips, "seagull" its modifier). A
    # determined noun right before an -ing form that modifies the next word heads the phrase
    # instead: the -ing form is a clause on it and the next word the clause's object, or its
    # complement when that word is an adjective too ("glowing blue"). Not where the -ing
    # form and the next word are one noun ("a hotel swimming pool", "a baby sleeping bag").
    doc = token.doc
    if (
        token.tag_ != "VBG"
        or token.dep_ not in ("amod", "compound")
        or not 2 <= token.i < len(doc) - 1
    ):
        return
    noun, word, det = doc[token.i - 1], doc[token.i + 1], doc[token.i - 2]
    verb = lemmas.verb(token.lower_)
    if (
        token.head.i != word.i
        or noun.head.i not in (token.i, word.i)
        or det.tag_ != "DT"
        or det.head.i not in (noun.i, word.i)
        or verb is None
        or lemmas.is_compound(token.lower_, word.lemma_.lower())
        or word.pos_ not in ("NOUN", "PROPN", "ADJ")
    ):
        return
    form = noun.lower_
    if not (
        lemmas.only_noun(form)
        if noun.pos_ == "ADJ"
        else noun.pos_ == "NOUN" and lemmas.is_noun(noun.lemma_.lower())
    ):
        return
    moved = [c for c in word.children if c.i > word.i and c.dep_ not in ("conj", "cc")]
    if word.dep_ == "ROOT" or word.head.i == word.i:
        noun.head, noun.dep_ = noun, "ROOT"
    else:
        noun.head, noun.dep_ = word.head, word.dep_
    if noun.pos_ == "ADJ":
        noun.pos_, noun.tag_ = "NOUN", "NN"
    det.head, det.dep_ = noun, "det"
    token.head, token.dep_ = noun, "acl"
    _make_verb(token, verb, "VBG")
    if lemmas.is_adjective(word.lower_) and word.tag_ != "NNS":
        word.head, word.dep_, word.pos_, word.tag_ = token, "acomp", "ADJ", "JJ"
    else:
        word.head, word.dep_ = token, "dobj"
    for child in moved:
        # Its place, source or receiver belongs to the clause; a clause of its own, to the noun.
        child.head = token if child.dep_ in ("prep", "dative", "advmod", "npadvmod") else noun


def _gerund_read_as_noun(token: Token, lemmas: Lemmas) -> None:
    # "a knight kneeling before a queen" read as one noun, "knight kneeling" (a kneeling of
    # the knight's kind) before the queen: an -ing form tagged as a singular noun that heads
    # its phrase, with a compound right before it that names a person or an animal, is a
    # clause on that noun, which heads the phrase instead. Modifiers before the -ing form
    # ("a", "tired") go to the noun; what follows it (place, object) stays with the verb.
    # The same when the tagger got the verb but hung the noun on it as a compound ("a puppy
    # barking from in front of a fence"), so both readings give one scene.
    doc = token.doc
    if token.tag_ not in ("NN", "VBG") or token.dep_ == "compound" or token.i == 0:
        return
    if token.lemma_.lower() in PICTURE_NOUNS:  # "a horse drawing": a drawing of a horse
        return
    noun = doc[token.i - 1]
    verb = lemmas.verb(token.lower_) if token.lower_.endswith("ing") else None
    if (
        verb is None
        or noun.dep_ != "compound"
        or noun.head.i != token.i
        or noun.pos_ != "NOUN"
        or not lemmas.is_being(noun.lemma_.lower())
    ):
        return
    if token.head.i == token.i:
        noun.head, noun.dep_ = noun, "ROOT"
    else:
        noun.head, noun.dep_ = token.head, token.dep_
    for child in list(token.children):
        if child.i < noun.i:
            child.head = noun
    token.head, token.dep_ = noun, "acl"
    _make_verb(token, verb, "VBG")


def _verb_in_a_noun_chain(doc: Doc, lemmas: Lemmas) -> None:
    # "the little girl spoons soup into a bowl", "a man ships boxes to his son": a sentence
    # read as one noun phrase, the verb a compound ("girl spoons soup"). With no verb in the
    # sentence, a plural-noun or verb form that the lemmatiser knows as a verb, compounded
    # onto the noun after it, with a determined noun before it, is the verb: the noun before
    # it its subject, the noun after it its object.
    if any(t.pos_ in ("VERB", "AUX") and t.dep_ != "compound" for t in doc):
        return
    for token in doc:
        obj = token.head
        if (
            token.dep_ != "compound"
            or token.tag_ not in ("NNS", "VBZ")
            or obj.i != token.i + 1
            or obj.pos_ != "NOUN"
            or (verb := _verb_lemma(token, lemmas)) is None
        ):
            continue
        subject = doc[token.i - 1] if token.i > 0 else None
        if subject is None or subject.pos_ not in ("NOUN", "PROPN"):
            continue
        start = subject.i
        while start > 0 and doc[start - 1].pos_ in ("ADJ", "NOUN", "PROPN", "NUM"):
            start -= 1
        determiner = doc[start - 1] if start > 0 else None
        if determiner is None or determiner.dep_ != "det":
            continue
        for modifier in doc[determiner.i : subject.i]:
            if modifier.head.i == obj.i:  # "the", "little" of "the little girl" hung on "soup"
                modifier.head = subject
        for before in doc[: determiner.i]:
            if before.head.i == obj.i:  # a fronted place phrase: "in a kitchen, the girl ..."
                before.head = token
        token.head, token.dep_ = (obj.head if obj.head.i != obj.i else token), obj.dep_
        if token.dep_ == "ROOT":
            token.head = token
        subject.head, subject.dep_ = token, "nsubj"
        obj.head, obj.dep_ = token, "dobj"
        _make_verb(token, verb, "VBZ")
        return


def _retag(token: Token, lemmas: Lemmas) -> None:
    form = token.lower_
    participle = token.tag_ == "VBN" or (form.endswith(("ed", "en")) and _has_agent(token))
    if token.pos_ == "ADJ" and participle:
        _make_verb(token, lemmas.verb(form), "VBN")
    elif token.tag_ == "NNS" and _finite_verb(token, lemmas):
        # The noun nearest the verb: "a large ship sails" is the ship's, not "large"'s.
        subject = max(
            (c for c in token.children if _before_as_noun(c, token, lemmas)), key=lambda c: c.i
        )
        subject.dep_ = "nsubj"
        if subject.pos_ == "ADJ":
            subject.pos_, subject.tag_ = "NOUN", "NN"
        for child in token.children:
            # "a squirrel buries an acorn" with "acorn" the noun's "subject": after the verb,
            # it is the object.
            if child.dep_ == "nsubj" and child.i > token.i:
                child.dep_ = "dobj"
        _make_verb(token, _verb_lemma(token, lemmas), "VBZ")
    elif token.tag_ == "NNS" and _has_subject(token) and (verb := _verb_lemma(token, lemmas)):
        # "an eagle strikes at a snake" read as the noun "strikes" with a subject: only a
        # verb has one.
        _make_verb(token, verb, "VBZ")
    elif (
        token.pos_ in ("NOUN", "ADJ")
        and form.endswith("ing")
        and token.dep_ in _VERB_DEPENDENCIES
        and token.head.pos_ in ("NOUN", "PROPN")
    ):
        _make_verb(token, lemmas.verb(form), "VBG")
    elif token.pos_ == "ADJ" and _determined(token) and lemmas.only_noun(form):
        # "a kitten sleeping" with "kitten" read as an adjective: a word that is only a noun
        # and has its own determiner is the noun.
        token.pos_, token.tag_ = "NOUN", "NN"
    elif (
        token.pos_ == "NOUN"
        and token.dep_ in ("compound", "amod")
        and token.head.i > token.i
        and token.head.pos_ == "NOUN"
        and lemmas.only_adjective(form)
    ):
        # "a powdery slope" with "powdery" a compound noun: a word the lemmatiser knows only
        # as an adjective, before its noun, is the adjective.
        token.pos_, token.tag_ = "ADJ", "JJ"
    elif token.pos_ == "AUX" and token.dep_ not in ("aux", "auxpass"):
        helps = token.head.pos_ in ("VERB", "AUX") and token.head.i != token.i
        if not helps and not any(c.pos_ == "VERB" for c in token.children):
            token.pos_, token.tag_ = "NOUN", "NN"


def _subordinate_subject(token: Token) -> None:
    # "waves crashing as a surfer rides the swell" read with "as" a preposition, "surfer" its
    # object and "waves" the subject of "rides": a noun right after a conjunction that
    # opens a clause, followed by a finite verb, is that verb's subject.
    following = token.doc[token.i + 1] if token.i + 1 < len(token.doc) else None
    if (
        token.dep_ == "pobj"
        and token.pos_ in ("NOUN", "PROPN")
        and token.head.lower_ in _SUBORDINATORS
        and following is not None
        and following.tag_ in _FINITE
        and not any(c.dep_ == "nsubj" and c.i > token.i for c in following.children)
    ):
        for other in following.children:
            if other.dep_ == "nsubj" and other.i < token.head.i:
                other.dep_ = "dep"
        token.head, token.dep_ = following, "nsubj"


def _verb_inside_a_phrase(token: Token, lemmas: Lemmas) -> None:
    # "a knight on horseback chases a dragon", "a girl with pigtails hugs a puppy", "a dog
    # with a bone chases a cat": the verb read as the object of the preposition ("horseback
    # chases" a plural noun, or "a bone chases" a clause inside "with") and the sentence
    # left without one. A verb form right before a determined noun, in a phrase on the
    # first noun, in a sentence with no other verb, is the sentence's verb: the noun the
    # phrase hangs on its subject, the noun after it its object, the noun before it the
    # preposition's object. An intransitive one ("a boy on a bicycle rolls down the hill")
    # counts where the tagger already read a verb.
    doc = token.doc
    prep = token.head
    following = doc[token.i + 1] if token.i + 1 < len(doc) else None
    if (
        token.dep_ != "pobj"
        or token.tag_ not in ("NNS", "VBZ")
        or (verb := _verb_lemma(token, lemmas)) is None
        or prep.dep_ != "prep"
        or prep.lower_ in _SUBORDINATORS  # "watching as an apprentice repairs a tyre"
        or following is None
    ):
        return
    obj: Token | None
    if following.tag_ == "DT" and following.head.i > token.i:
        obj = following.head  # "... chases a dragon"
        if following.head.pos_ not in ("NOUN", "PROPN"):
            return
    elif following.dep_ == "prep" and following.head.i == token.i and token.tag_ == "VBZ":
        obj = None  # "a boy on a bicycle rolls down the hill"
    else:
        return
    subject = prep.head
    if subject.pos_ not in ("NOUN", "PROPN") or subject.i > prep.i:
        return
    if any(t.pos_ in ("VERB", "AUX") and t.i != token.i for t in doc):
        return
    inner = [c for c in token.children if prep.i < c.i < token.i and c.pos_ in ("NOUN", "PROPN")]
    if not inner:
        return
    phrase_object = max(inner, key=lambda c: c.i)
    token.head, token.dep_ = token, "ROOT"
    if obj is not None:
        obj.head, obj.dep_ = token, "dobj"
    subject.head, subject.dep_ = token, "nsubj"
    phrase_object.head, phrase_object.dep_ = prep, "pobj"
    for child in list(token.children):
        if prep.i < child.i < token.i and child.i != phrase_object.i:
            child.head = phrase_object
    _make_verb(token, verb, "VBZ")


def _appositive_object(token: Token) -> None:
    # "a dragon chases a knight" read with "knight" an appositive of "chases": a noun after
    # a finite verb that has no object is its object.
    head = token.head
    if (
        token.dep_ == "appos"
        and token.pos_ in ("NOUN", "PROPN")
        and head.pos_ == "VERB"
        and head.tag_ in _FINITE
        and token.i > head.i
        and not any(c.dep_ in ("dobj", "obj") for c in head.children)
    ):
        token.dep_ = "dobj"
        if token.tag_ == "NNS" and token.lemma_.lower() == token.lower_ and token.lower_[-1] != "s":
            # "… buries the mountain hut" with "hut" tagged plural beside the misread verb.
            token.tag_ = "NN"
            token.set_morph("Number=Sing")  # type: ignore[attr-defined]  # in spaCy, not its stubs


def _inverted_subject(token: Token) -> None:
    # "into a puddle jumps a girl", "through the forest walk a wizard and his owl": a place
    # written first and the subject after the verb (locative inversion), read as the verb's
    # object. A verb without a subject whose words before it all belong to place phrases
    # has its subject after it.
    if token.pos_ != "VERB" or any(
        c.dep_ in ("nsubj", "nsubjpass", "expl") for c in token.children
    ):
        return
    fronted = [c for c in token.children if c.dep_ == "prep" and c.i < token.i]
    objects = [c for c in token.children if c.dep_ == "dobj" and c.i > token.i]
    if not fronted or len(objects) != 1:
        return
    last = fronted[-1]
    stranded = [c for c in token.children if c.dep_ == "compound" and last.i < c.i < token.i]
    if stranded and not any(c.dep_ == "pobj" for c in last.children):
        # "through an enchanted forest walk ..." read as the compound "forest walk".
        stranded[-1].head, stranded[-1].dep_ = last, "pobj"
    placed = {t.i for p in fronted for t in p.subtree}
    if any(t.i not in placed and not t.is_punct for t in token.doc[: token.i]):
        return
    objects[0].dep_ = "nsubj"


def _subject_after_comma(token: Token) -> None:
    # "drifting in the dark ocean, a jellyfish glowing blue" read with "jellyfish" the object
    # of "drifting": an object is not set off from its verb by a comma, so a noun after a
    # comma that closes a fronted participle clause is the one the clause describes.
    # "carved from ice, a swan": after a past participle, the one acted on.
    verb = token.head
    if (
        token.dep_ not in ("dobj", "npadvmod")
        or token.pos_ not in ("NOUN", "PROPN")
        or verb.tag_ not in ("VBG", "VBN")
        or token.i < verb.i
        or any(c.dep_ in ("nsubj", "nsubjpass") for c in verb.children)
        or not any(c.text == "," and c.i < token.i for c in verb.children)
    ):
        return
    token.dep_ = "nsubj" if verb.tag_ == "VBG" else "nsubjpass"


def _fronted_clause_appositive(token: Token) -> None:
    # "surrounded by pine trees, a small cabin with smoke rising" read with "cabin" an
    # appositive of "trees": the noun after the comma that closes a participle clause opening
    # the prompt is the one the clause describes (the one acted on, after a past participle),
    # not another name for the noun inside the clause.
    inner = token.head
    verb = inner.head.head
    if (
        token.dep_ != "appos"
        or token.pos_ not in ("NOUN", "PROPN")
        or inner.dep_ != "pobj"
        or inner.head.dep_ not in ("agent", "prep")
        or verb.tag_ not in ("VBG", "VBN")
        or verb.i != 0
        or any(c.dep_ in ("nsubj", "nsubjpass") for c in verb.children)
        or not any(t.text == "," for t in token.doc[inner.i : token.i])
    ):
        return
    token.head = verb
    token.dep_ = "nsubj" if verb.tag_ == "VBG" else "nsubjpass"


def _manner_by(token: Token) -> None:
    # "watered by hand", "travelling by night": a bare singular noun of these idioms after
    # "by" says how or when, not who.
    if token.dep_ == "agent" and _says_how(token):
        token.dep_ = "prep"


def _says_how(by: Token) -> bool:
    return by.lower_ == "by" and any(
        c.dep_ == "pobj" and c.lower_ in _MANNER_BY and not list(c.children) for c in by.children
    )


#: Nouns that make "by" a manner or time, not an agent, when they stand bare after it.
_MANNER_BY: Final = frozenset({"hand", "foot", "night", "day", "accident", "mistake", "chance"})


def _passive_phrases(token: Token) -> None:
    # "a rock is pushed up a hill by a man" read with "up" a particle and "hill" the object,
    # "the roof is torn off a farmhouse by a tornado" with "by a tornado" on "farmhouse": in
    # the passive the subject is what is acted on, so a particle followed by an object is a
    # preposition with its object, and a "by" phrase further in is the verb's agent.
    if token.pos_ != "VERB" or not any(c.dep_ == "auxpass" for c in token.children):
        return
    for particle in [c for c in token.children if c.dep_ == "prt"]:
        obj = next((c for c in token.children if c.dep_ == "dobj" and c.i > particle.i), None)
        if obj is not None:
            obj.head, obj.dep_ = particle, "pobj"
        # ... or "knocked off the table" with the table already the particle's object
        if any(c.dep_ == "pobj" for c in particle.children):
            particle.dep_, particle.pos_, particle.tag_ = "prep", "ADP", "IN"
    if any(c.dep_ == "agent" for c in token.children):
        return
    for by in token.subtree:
        if (
            by.lower_ == "by"
            and by.dep_ == "prep"
            and not _says_how(by)
            and by.i > token.i
            and any(c.dep_ == "pobj" and c.pos_ in ("NOUN", "PROPN") for c in by.children)
        ):
            by.head, by.dep_ = token, "agent"
            return


#: Words that open a clause but that the parser also reads as prepositions.
_SUBORDINATORS: Final = frozenset({"as", "while", "whilst", "when", "because", "until", "till"})
_FINITE: Final = frozenset({"VBZ", "VBP", "VBD"})


def _determined(token: Token) -> bool:
    return any(c.dep_ == "det" and c.i < token.i for c in token.children)


def _has_subject(token: Token) -> bool:
    return any(c.dep_ == "nsubj" and c.i < token.i for c in token.children)


def _has_agent(token: Token) -> bool:
    return any(c.dep_ == "agent" or c.lower_ == "by" for c in token.children)


def _finite_verb(token: Token, lemmas: Lemmas) -> bool:
    # "a fox trots": a singular determiner on a plural noun with a noun before it. The
    # determiner may hang on that noun ("an apprentice repairs a tyre"), and the noun may be
    # read as an adjective ("a mechanic repairs", "mechanic" an adjective).
    before = [c for c in token.children if _before_as_noun(c, token, lemmas)]
    singular = any(
        c.dep_ == "det" and c.lower_ in _SINGULAR_DETERMINERS
        for t in (token, *before)
        for c in t.children
    )
    return singular and bool(before) and _verb_lemma(token, lemmas) is not None


def _before_as_noun(child: Token, token: Token, lemmas: Lemmas) -> bool:
    if child.i >= token.i:
        return False
    if child.dep_ == "compound" and child.pos_ in ("NOUN", "PROPN"):
        return True
    return child.dep_ == "amod" and lemmas.is_noun(child.lower_)


def _verb_lemma(token: Token, lemmas: Lemmas) -> str | None:
    """The verb a word tagged as a plural noun would be ("buries", lemmatised as the noun
    "burie", is "bury"), or None when it is no verb."""
    found = lemmas.present(token.lower_)
    if found is not None:
        return found
    lemma = token.lemma_.lower()
    return lemma if lemmas.is_verb(lemma) else None


def _make_verb(token: Token, lemma: str | None, tag: str) -> None:
    token.pos_, token.tag_ = "VERB", tag
    if lemma:
        token.lemma_ = lemma
