"""Japanese frontend of GPT-SoVITS v2: text -> phones with prosody marks (pyopenjtalk).

Runs of Japanese/alphanumeric characters go through Open JTalk (pyopenjtalk-plus, which bundles
its dictionary, so nothing is downloaded); the full-context labels are turned into phones plus
the ESPnet-style prosody marks: "[" pitch rise, "]" pitch fall, "#" accent-phrase boundary,
"_" pause, "?" for a question ending. Unvoiced vowels come out lower-case. Other characters
(punctuation) are kept as separate phones. "#" is not in the v2 symbol table, so the cleaner turns
it into UNK: that is what the official model was trained with.
"""

from __future__ import annotations

import re

from .symbols import PUNCTUATION

_PUNCTUATION_CLASS = "".join(re.escape(p) for p in PUNCTUATION)
_REPEATED_PUNCTUATION = re.compile(f"([{_PUNCTUATION_CLASS}])([{_PUNCTUATION_CLASS}])+")

_JAPANESE_CHARS = (
    r"A-Za-z\d\u3005\u3040-\u30ff\u4e00-\u9fff\uff11-\uff19\uff21-\uff3a\uff41-\uff5a\uff66-\uff9d"
)
_JAPANESE = re.compile(f"[{_JAPANESE_CHARS}]")
_NOT_JAPANESE = re.compile(f"[^{_JAPANESE_CHARS}]")

_PHONE_MAP = {"：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",", "、": ",",
              "...": "…"}


def text_normalize(text: str) -> str:
    """Japanese text is only de-duplicated in punctuation; Open JTalk reads numbers itself."""
    return _REPEATED_PUNCTUATION.sub(r"\1", text)


def _label_number(pattern: str, label: str) -> int:
    match = re.search(pattern, label)
    return int(match.group(1)) if match else -50


def prosody_phones(text: str) -> list[str]:
    """Phones and prosody marks of one Japanese run, including the "^" start and "$"/"?" end marks."""
    import pyopenjtalk

    labels = pyopenjtalk.make_label(pyopenjtalk.run_frontend(text))
    phones: list[str] = []
    for n, label in enumerate(labels):
        current = re.search(r"\-(.*?)\+", label)
        if current is None:
            raise ValueError(f"unexpected Open JTalk label: {label!r}")
        phone = current.group(1)
        if phone in "AEIOU":
            phone = phone.lower()  # unvoiced vowel
        if phone == "sil":
            if n == 0:
                phones.append("^")
            elif n == len(labels) - 1:
                ending = _label_number(r"!(\d+)_", label)
                if ending == 0:
                    phones.append("$")
                elif ending == 1:
                    phones.append("?")
            continue
        if phone == "pau":
            phones.append("_")
            continue
        phones.append(phone)
        # Accent features: a1 = mora position relative to the accent nucleus, a2/a3 = mora index
        # from the start/end of the accent phrase, f1 = accent-phrase length in morae.
        a1 = _label_number(r"/A:([0-9\-]+)\+", label)
        a2 = _label_number(r"\+(\d+)\+", label)
        a3 = _label_number(r"\+(\d+)/", label)
        f1 = _label_number(r"/F:(\d+)_", label)
        a2_next = _label_number(r"\+(\d+)\+", labels[n + 1])
        if a3 == 1 and a2_next == 1 and phone in "aeiouAEIOUNcl":
            phones.append("#")
        elif a1 == 0 and a2_next == a2 + 1 and a2 != f1:
            phones.append("]")
        elif a2 == 1 and a2_next == 2:
            phones.append("[")
    return phones


def g2p(norm_text: str) -> list[str]:
    """Phones of normalised Japanese text (runs through Open JTalk, marks kept in between)."""
    text = norm_text.replace("％", "パーセント").lower()
    runs = _NOT_JAPANESE.split(text)
    marks = _NOT_JAPANESE.findall(text)
    phones: list[str] = []
    for i, run in enumerate(runs):
        if _JAPANESE.match(run):
            phones += prosody_phones(run)[1:-1]
        if i < len(marks) and marks[i] != " ":
            phones.append(marks[i])
    return [_PHONE_MAP.get(phone, phone) for phone in phones]
