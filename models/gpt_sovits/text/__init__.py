"""GPT-SoVITS text frontend: text -> phone symbols and ids, offline.

Public entry points:

- ``text_to_phones(text, lang, version="v2") -> Phones``: one language chunk through the
  language's normaliser and G2P (the official ``clean_text`` + ``cleaned_text_to_sequence``).
  ``lang`` is one of zh, en, ja, ko, yue; mixed-text modes (auto, auto_yue, all_zh, ...) go through
  ``mixed_text_to_phones`` which splits the text by language first.
- ``split_sentences(text, method)``: the official cut0..cut5 segmentation plus the pre/post rules
  used before synthesis, so long text becomes sentence-sized pieces.

Language modules are imported lazily: each pulls in its own dictionaries (jieba, pyopenjtalk,
mecab-ko...), and a caller that only speaks English should not pay for Japanese.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from .segmentation import SPLIT_METHODS, split_sentences
from .symbols import SYMBOLS_V2, phones_to_ids, symbols_for

__all__ = [
    "LANGUAGES",
    "MIXED_MODES",
    "Phones",
    "SPLIT_METHODS",
    "SYMBOLS_V2",
    "mixed_text_to_phones",
    "preload",
    "split_sentences",
    "text_to_phones",
]

LANGUAGES = ("zh", "en", "ja", "ko", "yue")
MIXED_MODES = ("auto", "auto_yue", "all_zh", "all_ja", "all_yue", "all_ko", "zh", "ja", "yue", "ko", "en")

_MODULES = {"zh": "chinese", "en": "english", "ja": "japanese", "ko": "korean", "yue": "cantonese"}
_MODULES_V1 = {"zh": "chinese", "en": "english", "ja": "japanese"}
# In Chinese text these characters are explicit pauses: they become the pause symbols SP2 / SP3.
_SPECIAL_PAUSES = {"￥": "SP2", "^": "SP3"}


@dataclass(frozen=True)
class Phones:
    """Frontend output for one chunk.

    phones: symbol strings; ids: their ids in the version's symbol table; norm_text: the normalised
    text; word2ph: phones per character of norm_text for zh/yue (None for other languages).
    """

    phones: list[str]
    word2ph: list[int] | None
    norm_text: str
    ids: list[int]


def _language_module(lang: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{_MODULES[lang]}")


def _clean_special(text: str, pause: str, symbol: str, lang: str) -> tuple[list[str], list[int] | None, str]:
    module = _language_module(lang)
    norm_text = module.text_normalize(text.replace(pause, ","))
    phones, word2ph = module.g2p(norm_text)
    return [symbol if phone == "," else phone for phone in phones], word2ph, norm_text


def clean_text(text: str, lang: str, version: str = "v2") -> tuple[list[str], list[int] | None, str]:
    """Official ``clean_text``: (phones, word2ph, norm_text) with unknown phones mapped to UNK."""
    modules = _MODULES_V1 if version == "v1" else _MODULES
    if lang not in modules:
        # Unknown languages are read as English with empty text, like the official cleaner.
        lang, text = "en", " "
    for pause, symbol in _SPECIAL_PAUSES.items():
        if pause in text and lang == "zh":
            return _clean_special(text, pause, symbol, lang)
    module = _language_module(lang)
    norm_text = module.text_normalize(text)
    word2ph: list[int] | None = None
    if lang in ("zh", "yue"):
        phones, word2ph = module.g2p(norm_text)
        if len(phones) != sum(word2ph) or len(norm_text) != len(word2ph):
            raise ValueError(f"word2ph does not cover the text: {norm_text!r}")
    else:
        phones = module.g2p(norm_text)
        if lang == "en" and len(phones) < 4:
            # Very short English input gets a leading pause so the model has enough context.
            phones = [","] + phones
    table = set(symbols_for(version))
    return ["UNK" if phone not in table else phone for phone in phones], word2ph, norm_text


def text_to_phones(text: str, lang: str, version: str = "v2") -> Phones:
    """Phones, word2ph, normalised text and ids of one single-language chunk."""
    phones, word2ph, norm_text = clean_text(text, lang, version)
    return Phones(phones=phones, word2ph=word2ph, norm_text=norm_text, ids=phones_to_ids(phones, version))


def mixed_text_to_phones(text: str, mode: str, version: str = "v2") -> list[tuple[str, Phones]]:
    """Split text by language as the official ``get_phones_and_bert`` does, then convert each chunk.

    Returns (language, Phones) per chunk; concatenate ``ids`` for the model input (zh chunks carry
    the word2ph the BERT features need). Like the official code, a result with fewer than 6
    phones is redone once with "." in front of the text, so the model gets a little context.
    """
    from .language_split import split_for_mode

    chunks = [(lang, text_to_phones(chunk, lang, version)) for chunk, lang in split_for_mode(text, mode)]
    if sum(len(phones.ids) for _, phones in chunks) < 6:
        chunks = [(lang, text_to_phones(chunk, lang, version)) for chunk, lang in split_for_mode("." + text, mode)]
    return chunks


def preload(languages: tuple[str, ...] = LANGUAGES) -> None:
    """Load the dictionaries of the given languages now (seconds for en) instead of on first use."""
    warm_up_text = {"zh": "你好。", "en": "Hello, supercalifragilisticexpialidocious.", "ja": "こんにちは。",
                    "ko": "안녕하세요.", "yue": "你好。"}
    for lang in languages:
        text_to_phones(warm_up_text[lang], lang)
