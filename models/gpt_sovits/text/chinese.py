"""Mandarin frontend of GPT-SoVITS v2: normalised text -> initial/final phones and word2ph.

Pipeline: normalise (numbers, punctuation), cut into clauses, jieba part-of-speech segmentation,
re-merge for tone sandhi, pypinyin initials + toned finals per word, sandhi, erhua, then map each
syllable to the opencpop-style (initial, final) symbol pair. Every Hanzi gives two phones and every
punctuation mark one; word2ph records that per character of the normalised text.

The official v2 code picks polyphone readings with the g2pW neural model. That model is not
available offline, so (like the golden test vectors) pypinyin's own phrase-based choice is used.
"""

from __future__ import annotations

import functools
import logging
import re

from pypinyin import Style, lazy_pinyin

from . import tone_sandhi
from .symbols import PUNCTUATION
from .zh_normalize import normalize

_PUNCTUATION_CLASS = "".join(re.escape(p) for p in PUNCTUATION)

# Chinese and full-width punctuation folded onto the six punctuation phones.
_PUNCTUATION_MAP = {
    "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",", "、": ",",
    "...": "…", "$": ".", "/": ",", "—": "-", "~": "…", "～": "…",
}
_PUNCTUATION_PATTERN = re.compile("|".join(re.escape(p) for p in _PUNCTUATION_MAP))
_NOT_HANZI_OR_PUNCTUATION = re.compile(f"[^\u4e00-\u9fa5{''.join(PUNCTUATION)}]+")
_REPEATED_PUNCTUATION = re.compile(f"([{_PUNCTUATION_CLASS}])([{_PUNCTUATION_CLASS}])+")

# Words whose final 儿 is a separate syllable, and words that always take erhua.
_MUST_ERHUA = frozenset("小院儿 胡同儿 范儿 老汉儿 撒欢儿 寻老礼儿 妥妥儿 媳妇儿".split())
_NOT_ERHUA = frozenset(
    """
    虐儿 为儿 护儿 瞒儿 救儿 替儿 有儿 一儿 我儿 俺儿 妻儿 拐儿 聋儿 乞儿 患儿 幼儿 孤儿 婴儿 婴幼儿 连体儿
    脑瘫儿 流浪儿 体弱儿 混血儿 蜜雪儿 舫儿 祖儿 美儿 应采儿 可儿 侄儿 孙儿 侄孙儿 女儿 男儿 红孩儿 花儿 虫儿
    马儿 鸟儿 猪儿 猫儿 狗儿 少儿
    """.split()
)

_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r", "z",
             "c", "s", "y", "w")
_ZERO_INITIAL_BY_VOWEL = {"a": "AA", "e": "EE", "o": "OO"}


@functools.cache
def pinyin_to_symbols(syllable: str) -> tuple[str, str]:
    """Map a toneless pinyin syllable to the opencpop-strict (initial, final) pair.

    Rules: zero-initial syllables take the pseudo-initials AA/EE/OO; zhi/chi/shi/ri use the final
    "ir" and zi/ci/si "i0"; after j/q/x/y the letter u is ü ("v"); yan -> y En, ye -> y E.
    """
    syllable = syllable.replace("ü", "v")
    initial = next((i for i in _INITIALS if syllable.startswith(i) and len(syllable) > len(i)), "")
    final = syllable[len(initial):]
    if not initial:
        return _ZERO_INITIAL_BY_VOWEL.get(final[0], final[0].upper() * 2), final
    if final == "i" and initial in ("zh", "ch", "sh", "r"):
        return initial, "ir"
    if final == "i" and initial in ("z", "c", "s"):
        return initial, "i0"
    if initial in ("j", "q", "x", "y") and final.startswith("u"):
        final = "v" + final[1:]
    if initial == "y" and final in ("an", "e"):
        final = {"an": "En", "e": "E"}[final]
    return initial, final


def replace_punctuation(text: str) -> str:
    """Fold punctuation onto the phone set and drop everything that is not Hanzi or punctuation."""
    text = text.replace("嗯", "恩").replace("呣", "母")
    text = _PUNCTUATION_PATTERN.sub(lambda m: _PUNCTUATION_MAP[m.group()], text)
    return _NOT_HANZI_OR_PUNCTUATION.sub("", text)


def text_normalize(text: str) -> str:
    """Normalised Mandarin text: spoken numbers, ASCII punctuation, no Latin letters."""
    normalized = "".join(replace_punctuation(clause) for clause in normalize(text))
    return _REPEATED_PUNCTUATION.sub(r"\1", normalized)


def _merge_erhua(initials: list[str], finals: list[str], word: str, pos: str) -> tuple[list[str], list[str]]:
    # A word-final 儿 read er1 by pypinyin is er2.
    if finals and word[len(finals) - 1:len(finals)] == "儿" and finals[-1] == "er1":
        finals[-1] = "er2"
    if word not in _MUST_ERHUA and (word in _NOT_ERHUA or pos in {"a", "j", "nr"}):
        return initials, finals
    if len(finals) != len(word):
        return initials, finals
    new_finals: list[str] = []
    for i, final in enumerate(finals):
        if (i == len(finals) - 1 and word[i] == "儿" and final in {"er2", "er5"}
                and word[-2:] not in _NOT_ERHUA and new_finals):
            # The 儿 syllable copies the tone of the syllable it attaches to.
            final = "er" + new_finals[-1][-1]
        new_finals.append(final)
    return initials, new_finals


@functools.cache
def _posseg():
    import jieba_fast
    import jieba_fast.posseg

    jieba_fast.setLogLevel(logging.CRITICAL)
    return jieba_fast.posseg


def _clause_initials_finals(clause: str) -> tuple[list[str], list[str]]:
    segments = [(pair.word, pair.flag) for pair in _posseg().lcut(clause)]
    initials: list[str] = []
    finals: list[str] = []
    for word, pos in tone_sandhi.pre_merge_for_modify(segments):
        if pos == "eng":
            continue
        word_initials = lazy_pinyin(word, neutral_tone_with_five=True, style=Style.INITIALS)
        word_finals = lazy_pinyin(word, neutral_tone_with_five=True, style=Style.FINALS_TONE3)
        word_finals = tone_sandhi.modified_tone(word, pos, word_finals)
        word_initials, word_finals = _merge_erhua(word_initials, word_finals, word, pos)
        initials += word_initials
        finals += word_finals
    return initials, finals


def _syllable_phones(initial: str, final: str) -> list[str]:
    if initial == final:  # pypinyin echoes punctuation in both styles
        return [initial]
    bare, tone = final[:-1], final[-1]
    if tone not in "12345":
        raise ValueError(f"no tone on final {final!r}")
    if initial:
        # pypinyin's strict finals spell the full vowel; the table uses the written short forms.
        bare = {"uei": "ui", "iou": "iu", "uen": "un"}.get(bare, bare)
        pinyin = initial + bare
    else:
        pinyin = {"ing": "ying", "i": "yi", "in": "yin", "u": "wu"}.get(bare, "")
        if not pinyin:
            pinyin = {"v": "yu", "e": "e", "i": "y", "u": "w"}.get(bare[0], bare[0]) + bare[1:]
    symbol_initial, symbol_final = pinyin_to_symbols(pinyin)
    return [symbol_initial, symbol_final + tone]


def g2p(norm_text: str) -> tuple[list[str], list[int]]:
    """Phones and per-character phone counts for normalised Mandarin text."""
    clauses = [c for c in re.split(f"(?<=[{_PUNCTUATION_CLASS}])\\s*", norm_text) if c.strip()]
    phones: list[str] = []
    word2ph: list[int] = []
    for clause in clauses:
        initials, finals = _clause_initials_finals(re.sub("[a-zA-Z]+", "", clause))
        for initial, final in zip(initials, finals, strict=True):
            syllable = _syllable_phones(initial, final)
            phones += syllable
            word2ph.append(len(syllable))
    return phones, word2ph
