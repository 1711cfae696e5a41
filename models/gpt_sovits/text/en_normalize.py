"""English text normalisation for the GPT-SoVITS frontend (numbers, money, times, units...).

Follows the official ``en_normalization`` rules and their order: list ordinals, arithmetic,
negative numbers, thousands separators, clock times (read with a.m./p.m.), measurement units,
pounds and dollars, decimals, fractions, ordinals, years and plain numbers; then accents are
stripped, "%" is spoken, unknown characters are dropped and runs of capitals are spelled out.
"""

from __future__ import annotations

import functools
import re
import unicodedata

_MEASUREMENTS = {
    "m": ("meter", "meters"), "km": ("kilometer", "kilometers"),
    "km/h": ("kilometer per hour", "kilometers per hour"), "ft": ("feet", "feet"), "L": ("liter", "liters"),
    "tbsp": ("tablespoon", "tablespoons"), "tsp": ("teaspoon", "teaspoons"), "h": ("hour", "hours"),
    "min": ("minute", "minutes"), "s": ("second", "seconds"),
    "°C": ("degree celsius", "degrees celsius"), "°F": ("degree fahrenheit", "degrees fahrenheit"),
}

_LIST_ORDINAL = re.compile(r"\b([0-9]+)\. ")
_COMMA_NUMBER = re.compile(r"([0-9][0-9\,]+[0-9])")
_TIME = re.compile(r"\b([01]?[0-9]|2[0-3]):([0-5][0-9])\b")
_MEASUREMENT = re.compile(r"\b([0-9]+(\.[0-9]+)?(m|km|km/h|ft|L|tbsp|tsp|h|min|s|°C|°F))\b")
_POUNDS_BEFORE = re.compile(r"£([0-9\.\,]*[0-9]+)")
_POUNDS_AFTER = re.compile(r"([0-9\.\,]*[0-9]+)£")
_DOLLARS_BEFORE = re.compile(r"\$([0-9\.\,]*[0-9]+)")
_DOLLARS_AFTER = re.compile(r"([(0-9\.\,]*[0-9]+)\$")
_DECIMAL = re.compile(r"([0-9]+\.\s*[0-9]+)")
_FRACTION = re.compile(r"([0-9]+/[0-9]+)")
_ORDINAL = re.compile(r"[0-9]+(st|nd|rd|th)")
_NUMBER = re.compile(r"[0-9]+")

_POWERS = "⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ"
_OPERAND = rf"((-?)((\d+)(\.\d+)?[{_POWERS}]*)|(\.\d+[{_POWERS}]*)|([A-Za-z][{_POWERS}]*))"
_ARITHMETIC = re.compile(_OPERAND + r"\s+([\+\-\×÷=])\s+" + _OPERAND)
_ARITHMETIC_WORDS = {"+": " plus ", "-": " minus ", "×": " times ", "÷": " divided by ", "=": " Equals "}
_NEGATIVE = re.compile(r"(?:^|\s+)(-)(\d+)")


@functools.cache
def _inflect():
    import inflect

    return inflect.engine()


def _list_ordinal(match: re.Match[str]) -> str:
    return _inflect().ordinal(match.group(1)) + ", "


def _time(match: re.Match[str]) -> str:
    hours, minutes = int(match.group(1)), int(match.group(2))
    period = "a.m." if hours < 12 else "p.m."
    if hours > 12:
        hours -= 12
    hour_words = _inflect().number_to_words(hours)
    if minutes == 0:
        return f"{hour_words} o'clock {period}"
    return f"{hour_words} {_inflect().number_to_words(minutes)} {period}"


def _measurement(match: re.Match[str]) -> str:
    unit = match.group(3)
    number = int(match.group(1).replace(unit, "").replace(".", ""))
    # Singular only for an exact integer 1 ("1 meter", but "1.0 meters").
    plural = 0 if match.group(2) is None and number == 1 else 1
    return match.group(1).replace(unit, " " + _MEASUREMENTS[unit][plural])


def _money(amount: str, major: tuple[str, str], minor: tuple[str, str], zero: str) -> str:
    parts = amount.split(".")
    if len(parts) > 2:
        return amount + " " + major[1]
    whole = int(parts[0]) if parts[0] else 0
    cents = int(parts[1].ljust(2, "0")) if len(parts) > 1 and parts[1] else 0
    major_unit = major[0] if whole == 1 else major[1]
    minor_unit = minor[0] if cents == 1 else minor[1]
    if whole and cents:
        return f"{whole} {major_unit} and {cents} {minor_unit}"
    if whole:
        return f"{whole} {major_unit}"
    if cents:
        return f"{cents} {minor_unit}"
    return zero


def _pounds(match: re.Match[str]) -> str:
    return _money(match.group(1), ("pound", "pounds"), ("penny", "pence"), "zero pounds")


def _dollars(match: re.Match[str]) -> str:
    return _money(match.group(1), ("dollar", "dollars"), ("cent", "cents"), "zero dollars")


def _decimal(match: re.Match[str]) -> str:
    whole, decimals = match.group(1).split(".")[:2]
    return whole + " point " + " ".join(decimals)


def _fraction(match: re.Match[str]) -> str:
    numerator, denominator = (int(x) for x in match.group(0).split("/"))
    numerator_words = _inflect().number_to_words(numerator)
    if denominator == 1:
        return numerator_words
    if denominator == 2:
        denominator_words = "half" if numerator == 1 else "halves"
    else:
        denominator_words = _inflect().ordinal(_inflect().number_to_words(denominator))
        if numerator > 1:
            denominator_words += "s"
    return f"{numerator_words} {denominator_words}"


def _ordinal(match: re.Match[str]) -> str:
    return _inflect().number_to_words(match.group(0))


def _number(match: re.Match[str]) -> str:
    number = int(match.group(0))
    if 1000 < number < 3000:  # years are read in pairs: 1999 -> nineteen ninety-nine
        if number == 2000:
            return "two thousand"
        if 2000 < number < 2010:
            return "two thousand " + _inflect().number_to_words(number % 100)
        if number % 100 == 0:
            return _inflect().number_to_words(number // 100) + " hundred"
        return _inflect().number_to_words(number, andword="", zero="oh", group=2).replace(", ", " ")
    return _inflect().number_to_words(number, andword="")


def _arithmetic(match: re.Match[str]) -> str:
    return match.group(1) + _ARITHMETIC_WORDS[match.group(8)] + match.group(9)


def _negative(match: re.Match[str]) -> str:
    return f"negative {match.group(2)}"


def normalize(text: str) -> str:
    """Spell out numbers and symbols; keep only letters, spaces and ' . , ? ! -."""
    text = _LIST_ORDINAL.sub(_list_ordinal, text)
    while _ARITHMETIC.search(text):
        text = _ARITHMETIC.sub(_arithmetic, text)
    text = _NEGATIVE.sub(_negative, text)
    text = _COMMA_NUMBER.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _TIME.sub(_time, text)
    text = _MEASUREMENT.sub(_measurement, text)
    text = _POUNDS_BEFORE.sub(_pounds, text)
    text = _POUNDS_AFTER.sub(_pounds, text)
    text = _DOLLARS_BEFORE.sub(_dollars, text)
    text = _DOLLARS_AFTER.sub(_dollars, text)
    text = _DECIMAL.sub(_decimal, text)
    text = _FRACTION.sub(_fraction, text)
    text = _ORDINAL.sub(_ordinal, text)
    text = _NUMBER.sub(_number, text)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    text = text.replace("%", " percent")
    text = re.sub(r"[^ A-Za-z'.,?!\-]", "", text)
    text = re.sub(r"(?i)i\.e\.", "that is", text)
    text = re.sub(r"(?i)e\.g\.", "for example", text)
    # Split capitals inside a word: "NASA" -> "N A S A", "ChatGPT" -> "Chat G P T".
    return re.sub(r"(?<!^)(?<![\s])([A-Z])", r" \1", text)
