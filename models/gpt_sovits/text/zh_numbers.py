"""Spelling out numbers in Chinese characters, as the GPT-SoVITS (PaddleSpeech-derived) normaliser does.

Small pure functions shared by the Chinese and Cantonese normalisers: cardinals with 十/百/千/万/亿,
digit-by-digit reading (optionally with 幺 for 1), decimals, and the time-of-day reading.
"""

from __future__ import annotations

DIGIT_CHARS = "零一二三四五六七八九"
# Unit characters keyed by how many digits they stand for (10^n); 万 and 亿 restart grouping.
_UNITS = ((8, "亿"), (4, "万"), (3, "千"), (2, "百"), (1, "十"))


def read_digits(digits: str, alt_one: bool = False) -> str:
    """Read every digit on its own: "2024" -> 二零二四; alt_one uses 幺 for 1 (phone numbers)."""
    spoken = "".join(DIGIT_CHARS[int(d)] for d in digits)
    return spoken.replace("一", "幺") if alt_one else spoken


def _cardinal_parts(digits: str, use_zero: bool = True) -> list[str]:
    stripped = digits.lstrip("0")
    if not stripped:
        return []
    if len(stripped) == 1:
        # A lone digit after dropped zeros is read with a 零 in front ("105" -> 一百零五).
        if use_zero and len(stripped) < len(digits):
            return [DIGIT_CHARS[0], DIGIT_CHARS[int(stripped)]]
        return [DIGIT_CHARS[int(stripped)]]
    power, unit = next((p, u) for p, u in _UNITS if p < len(stripped))
    high, low = digits[:-power], digits[-power:]
    return _cardinal_parts(high) + [unit] + _cardinal_parts(low)


def read_cardinal(digits: str) -> str:
    """Read an integer string as a Chinese cardinal: "3999" -> 三千九百九十九, "10" -> 十."""
    if not digits:
        return ""
    digits = digits.lstrip("0")
    if not digits:
        return DIGIT_CHARS[0]
    parts = _cardinal_parts(digits)
    if len(parts) >= 2 and parts[0] == "一" and parts[1] == "十":
        parts = parts[1:]
    return "".join(parts)


def read_number(value: str) -> str:
    """Read "12.50" style numbers: cardinal integer part, then 点 and the decimals digit by digit."""
    pieces = value.split(".")
    if len(pieces) > 2:
        raise ValueError(f"number with more than one point: {value!r}")
    integer = pieces[0]
    decimal = pieces[1] if len(pieces) == 2 else ""
    result = read_cardinal(integer)
    # Trailing zeros are dropped except that one is kept when the decimals end in 0 ("3.20" -> 三点二零).
    decimal = decimal.rstrip("0") + "0" if decimal.endswith("0") else decimal.rstrip("0")
    if decimal:
        result = (result or DIGIT_CHARS[0]) + "点" + read_digits(decimal)
    return result


def read_clock_number(value: str) -> str:
    """Minutes/seconds: a leading zero is spoken ("05" -> 零五)."""
    spoken = read_number(value.lstrip("0"))
    return DIGIT_CHARS[0] + spoken if value.startswith("0") else spoken
