"""Sentence segmentation before synthesis: the official cut0..cut5 methods and the rules around them.

GPT-SoVITS synthesises long text piece by piece. ``split_sentences`` reproduces the text side of
the official TextPreprocessor: collapse repeated punctuation, prepend a full stop when the first
clause is very short, cut with the chosen method, drop empty or punctuation-only pieces, merge
pieces shorter than 5 characters into the previous one, end every piece with punctuation and
hard-split pieces longer than 510 characters.

Methods: cut0 no split; cut1 every 4 clauses; cut2 about 50 characters; cut3 at "。";
cut4 at "." (not between digits); cut5 at every punctuation mark (decimal points kept).
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Clause-ending characters used by the splitters and the pre/post rules.
SPLITS = frozenset("，。？！,.?!~:：—…")
_PUNCTUATION_ONLY = frozenset("!?…,.- ")
_REPEATABLE = "!?…,.-"
_REPEATED = re.compile(f"([{re.escape(_REPEATABLE)}])([{re.escape(_REPEATABLE)}])+")
_CUT5_MARKS = frozenset(",.;?!、，。？！;：…")
MAX_PIECE_CHARS = 510
MIN_PIECE_CHARS = 5


def _is_punctuation_only(text: str) -> bool:
    return set(text).issubset(_PUNCTUATION_ONLY)


def _clauses(text: str) -> list[str]:
    """Cut after every clause mark (the text is first given a final 。 if it lacks one)."""
    text = text.replace("……", "。").replace("——", "，")
    if text[-1] not in SPLITS:
        text += "。"
    clauses: list[str] = []
    start = 0
    for i, char in enumerate(text):
        if char in SPLITS:
            clauses.append(text[start:i + 1])
            start = i + 1
    return clauses


def cut0(text: str) -> str:
    return "\n" if _is_punctuation_only(text) else text


def cut1(text: str) -> str:
    text = text.strip("\n")
    if not text:
        return text
    clauses = _clauses(text)
    bounds = list(range(0, len(clauses), 4))
    if len(bounds) > 1:
        # Groups of four clauses; the official code ends the last group at the text's end, so it
        # absorbs the remainder (5-7 clauses).
        bounds[-1] = len(clauses)
        pieces = ["".join(clauses[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    else:
        pieces = [text]
    return "\n".join(p for p in pieces if not _is_punctuation_only(p))


def cut2(text: str) -> str:
    text = text.strip("\n")
    if not text:
        return text
    clauses = _clauses(text)
    if len(clauses) < 2:
        return text
    pieces: list[str] = []
    length = 0
    current = ""
    for clause in clauses:
        length += len(clause)
        current += clause
        if length > 50:
            pieces.append(current)
            length, current = 0, ""
    if current:
        pieces.append(current)
    if len(pieces) > 1 and len(pieces[-1]) < 50:
        pieces[-2:] = [pieces[-2] + pieces[-1]]
    return "\n".join(p for p in pieces if not _is_punctuation_only(p))


def cut3(text: str) -> str:
    pieces = text.strip("\n").strip("。").split("。")
    return "\n".join(p for p in pieces if not _is_punctuation_only(p))


def cut4(text: str) -> str:
    pieces = re.split(r"(?<!\d)\.(?!\d)", text.strip("\n").strip("."))
    return "\n".join(p for p in pieces if not _is_punctuation_only(p))


def cut5(text: str) -> str:
    text = text.strip("\n")
    pieces: list[str] = []
    current = ""
    for i, char in enumerate(text):
        current += char
        if char not in _CUT5_MARKS:
            continue
        if char == "." and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit():
            continue  # decimal point
        pieces.append(current)
        current = ""
    if current:
        pieces.append(current)
    return "\n".join(p for p in pieces if not set(p).issubset(_CUT5_MARKS))


SPLIT_METHODS: dict[str, Callable[[str], str]] = {
    "cut0": cut0, "cut1": cut1, "cut2": cut2, "cut3": cut3, "cut4": cut4, "cut5": cut5,
}


def _first_clause(text: str) -> str:
    return re.split("[" + "".join(re.escape(s) for s in SPLITS) + "]", text)[0].strip()


def _merge_short(pieces: list[str], threshold: int) -> list[str]:
    if len(pieces) < 2:
        return pieces
    merged: list[str] = []
    current = ""
    for piece in pieces:
        current += piece
        if len(current) >= threshold:
            merged.append(current)
            current = ""
    if current:
        if merged:
            merged[-1] += current
        else:
            merged.append(current)
    return merged


def split_long_piece(text: str, max_len: int = MAX_PIECE_CHARS) -> list[str]:
    """Cut a piece longer than max_len at clause marks (a single clause may still exceed it)."""
    parts = re.split("([" + "".join(re.escape(s) for s in SPLITS) + "])", text)
    result: list[str] = []
    current = ""
    for part in parts:
        if len(current + part) > max_len:
            result.append(current)
            current = part
        else:
            current += part
    if current:
        result.append(current)
    return result


def split_sentences(text: str, method: str = "cut5", lang: str = "zh") -> list[str]:
    """Cut text into synthesis pieces with an official method (cut0..cut5) and the official rules.

    lang only chooses the full stop that is added ("." for en, "。" otherwise).
    """
    if method not in SPLIT_METHODS:
        raise ValueError(f"unknown split method {method!r}; expected one of {sorted(SPLIT_METHODS)}")
    stop = "." if lang == "en" else "。"
    text = _REPEATED.sub(r"\1", text).strip("\n")
    if not text:
        return []
    if text[0] not in SPLITS and len(_first_clause(text)) < 4:
        text = stop + text
    text = SPLIT_METHODS[method](text)
    pieces = [p for p in re.sub("\n+", "\n", text).split("\n") if p not in (" ", "")]
    result: list[str] = []
    for piece in _merge_short(pieces, MIN_PIECE_CHARS):
        if not piece.strip() or not re.sub(r"\W+", "", piece):
            continue
        if piece[-1] not in SPLITS:
            piece += stop
        result.extend(split_long_piece(piece) if len(piece) > MAX_PIECE_CHARS else [piece])
    return result
