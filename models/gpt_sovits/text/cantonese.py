"""Cantonese (yue) frontend of GPT-SoVITS v2: text -> Jyutping-based phones and word2ph.

Normalisation reuses the Chinese number rules (so Cantonese numbers are read with Mandarin-style
characters, then pronounced in Cantonese), folds punctuation, and keeps only Hanzi and punctuation.
ToJyutping gives one Jyutping syllable per character; each syllable becomes a "Y"-prefixed initial
and a toned final so the Cantonese phones never collide with Mandarin ones.
"""

from __future__ import annotations

import re

import ToJyutping

from .symbols import PUNCTUATION
from .zh_normalize import normalize

_PUNCTUATION_SET = frozenset(PUNCTUATION)
_PUNCTUATION_CLASS = re.escape("".join(PUNCTUATION))

_PUNCTUATION_MAP = {
    "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",", "、": ",",
    "...": "…", "$": ".", "“": "'", "”": "'", '"': "'", "‘": "'", "’": "'", "（": "'", "）": "'",
    "(": "'", ")": "'", "《": "'", "》": "'", "【": "'", "】": "'", "[": "'", "]": "'", "—": "-",
    "～": "-", "~": "-", "「": "'", "」": "'",
}
_PUNCTUATION_PATTERN = re.compile("|".join(re.escape(p) for p in _PUNCTUATION_MAP))
_NOT_HANZI_OR_PUNCTUATION = re.compile(f"[^\u4e00-\u9fa5{''.join(PUNCTUATION)}]+")

# Candidate initials, tried in this order; a syllable takes the first one it starts with. Some
# "initials" are whole vowel-initial syllable heads (aa, ong...): the official split is kept as is.
_INITIALS = (
    "aa aai aak aap aat aau ai au ap at ak a p b e ts t dz d kw k gw g f h l m ng n s y w c z j "
    "ong on ou oi ok o uk ung sp spl spn sil"
).split()

_JYUTPING_RUN = re.compile(r"^([a-z]+[1-6]+[ ]?)+$")


def replace_punctuation(text: str) -> str:
    text = _PUNCTUATION_PATTERN.sub(lambda m: _PUNCTUATION_MAP[m.group()], text)
    return _NOT_HANZI_OR_PUNCTUATION.sub("", text)


def text_normalize(text: str) -> str:
    """Normalised Cantonese text (simplified characters, spoken numbers, ASCII punctuation)."""
    return "".join(replace_punctuation(clause) for clause in normalize(text))


def _jyutping_syllables(text: str) -> list[str]:
    punctuation_only = re.compile(f"^[{_PUNCTUATION_CLASS}]+$")
    syllables: list[str] = []
    for word, jyutping in ToJyutping.get_jyutping_list(text):
        if punctuation_only.match(word):
            syllables += [p for p in re.split(f"([{_PUNCTUATION_CLASS}])", word) if p]
            continue
        if not jyutping or not _JYUTPING_RUN.match(jyutping):
            raise ValueError(f"failed to convert {word!r} to Jyutping: {jyutping!r}")
        syllables.append(jyutping)
    return syllables


def _syllable_to_phones(syllable: str) -> list[str]:
    if syllable in _PUNCTUATION_SET or syllable == "_":
        return [syllable]
    try:
        tone = int(syllable[-1])
        bare = syllable[:-1]
    except ValueError:
        tone, bare = 0, syllable
    for initial in _INITIALS:
        if bare.startswith(initial):
            if bare.startswith("nga"):
                head, final = bare[:2], bare[2:] or bare[-1]
            else:
                head, final = initial, bare[len(initial):] or initial[-1]
            toned_final = f"{final}{tone}" if tone not in (-1, 0) else final
            return ["Y" + head, toned_final if toned_final in _PUNCTUATION_SET else "Y" + toned_final]
    # A syllable no initial matches yields no phones (the official loop silently skips it).
    return []


def g2p(norm_text: str) -> tuple[list[str], list[int]]:
    """Phones and per-character phone counts for normalised Cantonese text."""
    phones: list[str] = []
    word2ph: list[int] = []
    for syllable in _jyutping_syllables(norm_text):
        syllable_phones = _syllable_to_phones(syllable)
        if syllable_phones:
            phones += syllable_phones
            word2ph.append(len(syllable_phones))
    return phones, word2ph
