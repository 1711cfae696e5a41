"""Chinese text normalisation (the rules of GPT-SoVITS' zh_normalization TextNormalizer).

Turns written Chinese with digits and symbols into speakable characters: dates, clock times,
ranges, temperatures, units, fractions, percentages, phone numbers, signed and decimal numbers,
Greek letters and arithmetic signs. The rules run in a fixed order, which matters (a date must be
read before its digits are taken as a plain number). Used by both the Mandarin and the Cantonese
frontends.
"""

from __future__ import annotations

import functools
import re
import string
from pathlib import Path

from .zh_numbers import read_cardinal, read_clock_number, read_digits, read_number

_SENTENCE_SPLITTER = re.compile(r"([：、，；。？！,;?!][”’]?)")

_FULLWIDTH_TO_ASCII = {ord(c) + 0xFEE0: ord(c) for c in string.ascii_letters + string.digits}
_FULLWIDTH_TO_ASCII[0x3000] = ord(" ")

# Traditional characters the official table simplifies differently from OpenCC's first choice.
_TRADITIONAL_OVERRIDES = {"著": "着", "瞭": "了", "藉": "借", "祇": "只", "綵": "彩", "傢": "家"}


@functools.cache
def _traditional_to_simplified_table() -> dict[int, str]:
    """Character map built from OpenCC's TSCharacters dictionary (first candidate of each entry)."""
    import opencc

    path = Path(opencc.__file__).parent / "dictionary" / "TSCharacters.txt"
    table: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "\t" not in line:
            continue
        source, targets = line.split("\t", 1)
        target = targets.split()[0]
        if len(source) == 1 and source != target:
            table[ord(source)] = target
    for source, target in _TRADITIONAL_OVERRIDES.items():
        table[ord(source)] = target
    return table


def traditional_to_simplified(text: str) -> str:
    """Character-by-character traditional -> simplified conversion."""
    return text.translate(_traditional_to_simplified_table())


# --- dates and times -------------------------------------------------------------------------------

_DATE = re.compile(r"(\d{4}|\d{2})年((0?[1-9]|1[0-2])月)?(((0?[1-9])|((1|2)[0-9])|30|31)([日号]))?")
_DATE_NUMERIC = re.compile(r"(\d{4})([- /.])(0[1-9]|1[012])\2(0[1-9]|[12][0-9]|3[01])")
_CLOCK = r"([0-1]?[0-9]|2[0-3]):([0-5][0-9])(:([0-5][0-9]))?"
_TIME = re.compile(_CLOCK)
_TIME_RANGE = re.compile(_CLOCK + r"(~|-)" + _CLOCK)


def _date(match: re.Match[str]) -> str:
    year, month, day = match.group(1), match.group(3), match.group(5)
    result = f"{read_digits(year)}年"
    if month:
        result += f"{read_cardinal(month)}月"
    if day:
        result += f"{read_cardinal(day)}{match.group(9)}"
    return result


def _date_numeric(match: re.Match[str]) -> str:
    year, month, day = match.group(1), match.group(3), match.group(4)
    return f"{read_digits(year)}年{read_cardinal(month)}月{read_cardinal(day)}日"


def _clock(hour: str, minute: str, second: str | None, half_from: str) -> str:
    result = f"{read_number(hour)}点"
    if minute.lstrip("0"):
        # The official range code tests the *first* minute for 半 on both ends; half_from mirrors that.
        result += "半" if int(half_from) == 30 else f"{read_clock_number(minute)}分"
    if second and second.lstrip("0"):
        result += f"{read_clock_number(second)}秒"
    return result


def _time(match: re.Match[str]) -> str:
    groups = match.groups()
    result = _clock(groups[0], groups[1], groups[3], groups[1])
    if len(groups) > 5:
        result += "至" + _clock(groups[5], groups[6], groups[8], groups[1])
    return result


# --- numbers with units, ranges, fractions ---------------------------------------------------------

_SIGNED = r"(-?)((\d+)(\.\d+)?)|(\.(\d+))"
_UNIT_SUFFIX = r"(%|°C|℃|度|摄氏度|cm2|cm²|cm3|cm³|cm|db|ds|kg|km|m2|m²|m³|m3|ml|m|mm|s)"
_TO_RANGE = re.compile(f"({_SIGNED}){_UNIT_SUFFIX}[~]({_SIGNED}){_UNIT_SUFFIX}")
_TEMPERATURE = re.compile(r"(-?)(\d+(\.\d+)?)(°C|℃|度|摄氏度)")
# Insertion order matters: "cm2" must be replaced before "cm", "m2" before "m".
_MEASURES = {
    "cm2": "平方厘米", "cm²": "平方厘米", "cm3": "立方厘米", "cm³": "立方厘米", "cm": "厘米",
    "db": "分贝", "ds": "毫秒", "kg": "千克", "km": "千米", "m2": "平方米", "m²": "平方米",
    "m³": "立方米", "m3": "立方米", "ml": "毫升", "m": "米", "mm": "毫米", "s": "秒",
}

_POWER_CHARS = "⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ"
_OPERAND = rf"((-?)((\d+)(\.\d+)?[{_POWER_CHARS}]*)|(\.\d+[{_POWER_CHARS}]*)|([A-Za-z][{_POWER_CHARS}]*))"
_ARITHMETIC = re.compile(_OPERAND + r"([\+\-\×÷=])" + _OPERAND)
_ARITHMETIC_WORDS = {"+": "加", "-": "减", "×": "乘", "÷": "除", "=": "等于"}
_POWER = re.compile(f"[{_POWER_CHARS}]+")
_POWER_TO_ASCII = str.maketrans(_POWER_CHARS, "0123456789xyn")

_FRACTION = re.compile(r"(-?)(\d+)/(\d+)")
_PERCENT = re.compile(r"(-?)(\d+(\.\d+)?)%")
_MOBILE = re.compile(r"(?<!\d)((\+?86 ?)?1([38]\d|5[0-35-9]|7[678]|9[89])\d{8})(?!\d)")
_TELEPHONE = re.compile(r"(?<!\d)((0(10|2[1-3]|[3-9]\d{2})-?)?[1-9]\d{6,7})(?!\d)")
_SERVICE_NUMBER = re.compile(r"(400)(-)?\d{3}(-)?\d{4}")
_RANGE = re.compile(r"(?<![\d\+\-\×÷=])((-?)((\d+)(\.\d+)?))[-~]((-?)((\d+)(\.\d+)?))(?![\d\+\-\×÷=])")
_NEGATIVE = re.compile(r"(-)(\d+)")
_VERSION = re.compile(r"((\d+)(\.\d+)(\.\d+)?(\.\d+)+)")
_DECIMAL = re.compile(r"(-?)((\d+)(\.\d+))|(\.(\d+))")
_NUMBER = re.compile(_SIGNED)
_LONG_DIGITS = re.compile(r"\d{3}\d*")

# Measure words after which a number is a count (and 二 becomes 两).
_QUANTIFIERS = (
    "(处|台|架|枚|趟|幅|平|方|堵|间|床|株|批|项|例|列|篇|栋|注|亩|封|艘|把|目|套|段|人|所|朵|匹|张|座|回|场|尾|条|"
    "个|首|阙|阵|网|炮|顶|丘|棵|只|支|袭|辆|挑|担|颗|壳|窠|曲|墙|群|腔|砣|座|客|贯|扎|捆|刀|令|打|手|罗|坡|山|岭|"
    "江|溪|钟|队|单|双|对|出|口|头|脚|板|跳|枝|件|贴|针|线|管|名|位|身|堂|课|本|页|家|户|层|丝|毫|厘|分|钱|两|斤|"
    "担|铢|石|钧|锱|忽|(千|毫|微)克|毫|厘|(公)分|分|寸|尺|丈|里|寻|常|铺|程|(千|分|厘|毫|微)米|米|撮|勺|合|升|斗|"
    "石|盘|碗|碟|叠|桶|笼|盆|盒|杯|钟|斛|锅|簋|篮|盘|桶|罐|瓶|壶|卮|盏|箩|箱|煲|啖|袋|钵|年|月|日|季|刻|时|周|天|"
    "秒|分|小时|旬|纪|岁|世|更|夜|春|夏|秋|冬|代|伏|辈|丸|泡|粒|颗|幢|堆|条|根|支|道|面|片|张|颗|块|元|"
    "(亿|千万|百万|万|千|百)|(亿|千万|百万|万|千|百|美|)元|(亿|千万|百万|万|千|百|十|)吨|(亿|千万|百万|万|千|百|)块|"
    "角|毛|分)"
)
_COUNTED = re.compile(r"(\d+)([多余几\+])?" + _QUANTIFIERS)


def _to_range(match: re.Match[str]) -> str:
    return match.group(0).replace("~", "至")


def _temperature(match: re.Match[str]) -> str:
    sign = "零下" if match.group(1) else ""
    unit = "摄氏度" if match.group(4) == "摄氏度" else "度"
    return f"{sign}{read_number(match.group(2))}{unit}"


def _replace_measures(sentence: str) -> str:
    for notation, spoken in _MEASURES.items():
        sentence = sentence.replace(notation, spoken)
    return sentence


def _arithmetic(match: re.Match[str]) -> str:
    return match.group(1) + _ARITHMETIC_WORDS[match.group(8)] + match.group(9)


def _power(match: re.Match[str]) -> str:
    return "的" + match.group(0).translate(_POWER_TO_ASCII) + "次方"


def _fraction(match: re.Match[str]) -> str:
    sign = "负" if match.group(1) else ""
    return f"{sign}{read_number(match.group(3))}分之{read_number(match.group(2))}"


def _percent(match: re.Match[str]) -> str:
    sign = "负" if match.group(1) else ""
    return f"{sign}百分之{read_number(match.group(2))}"


def _mobile(match: re.Match[str]) -> str:
    parts = match.group(0).strip("+").split()
    return "，".join(read_digits(part, alt_one=True) for part in parts)


def _telephone(match: re.Match[str]) -> str:
    return "，".join(read_digits(part, alt_one=True) for part in match.group(0).split("-"))


def _signed_number(match: re.Match[str]) -> str:
    if match.group(5):
        return read_number(match.group(5))
    sign = "负" if match.group(1) else ""
    return f"{sign}{read_number(match.group(2))}"


def _range(match: re.Match[str]) -> str:
    first = _NUMBER.sub(_signed_number, match.group(1))
    second = _NUMBER.sub(_signed_number, match.group(6))
    return f"{first}到{second}"


def _negative(match: re.Match[str]) -> str:
    return f"负{read_number(match.group(2))}"


def _version(match: re.Match[str]) -> str:
    return "".join("点" if c == "." else read_number(c) for c in match.group(1))


def _counted(match: re.Match[str]) -> str:
    approx = "多" if match.group(2) == "+" else (match.group(2) or "")
    number = read_number(match.group(1))
    if number == "二":
        number = "两"
    return f"{number}{approx}{match.group(3)}"


def _long_digits(match: re.Match[str]) -> str:
    return read_digits(match.group(0), alt_one=True)


_GREEK = {
    "α": "阿尔法", "β": "贝塔", "γ": "伽玛", "Γ": "伽玛", "δ": "德尔塔", "Δ": "德尔塔", "ε": "艾普西龙",
    "ζ": "捷塔", "η": "依塔", "θ": "西塔", "Θ": "西塔", "ι": "艾欧塔", "κ": "喀帕", "λ": "拉姆达",
    "Λ": "拉姆达", "μ": "缪", "ν": "拗", "ξ": "克西", "Ξ": "克西", "ο": "欧米克伦", "π": "派", "Π": "派",
    "ρ": "肉", "ς": "西格玛", "Σ": "西格玛", "σ": "西格玛", "τ": "套", "υ": "宇普西龙", "φ": "服艾",
    "Φ": "服艾", "χ": "器", "ψ": "普赛", "Ψ": "普赛", "ω": "欧米伽", "Ω": "欧米伽",
}
_CIRCLED = {chr(0x2460 + i): c for i, c in enumerate("一二三四五六七八九十")}
_LEFTOVER_SIGNS = {"+": "加", "-": "减", "×": "乘", "÷": "除", "=": "等"}
_DROP_IN_SPLIT = re.compile(r"[——《》【】<>{}()（）#&@“”^_|\\]")
_DROP_AFTER = re.compile(r"[-——《》【】<=>{}()（）#&@“”^_|\\]")


def _post_replace(sentence: str) -> str:
    sentence = sentence.replace("/", "每")
    for table in (_CIRCLED, _GREEK, _LEFTOVER_SIGNS):
        for source, spoken in table.items():
            sentence = sentence.replace(source, spoken)
    return _DROP_AFTER.sub("", sentence)


def normalize_sentence(sentence: str) -> str:
    """Apply all rewriting rules to one clause, in the official order."""
    sentence = traditional_to_simplified(sentence).translate(_FULLWIDTH_TO_ASCII)
    sentence = _DATE.sub(_date, sentence)
    sentence = _DATE_NUMERIC.sub(_date_numeric, sentence)
    sentence = _TIME_RANGE.sub(_time, sentence)
    sentence = _TIME.sub(_time, sentence)
    sentence = _TO_RANGE.sub(_to_range, sentence)
    sentence = _TEMPERATURE.sub(_temperature, sentence)
    sentence = _replace_measures(sentence)
    while _ARITHMETIC.search(sentence):
        sentence = _ARITHMETIC.sub(_arithmetic, sentence)
    sentence = _POWER.sub(_power, sentence)
    sentence = _FRACTION.sub(_fraction, sentence)
    sentence = _PERCENT.sub(_percent, sentence)
    sentence = _MOBILE.sub(_mobile, sentence)
    sentence = _TELEPHONE.sub(_telephone, sentence)
    sentence = _SERVICE_NUMBER.sub(_telephone, sentence)
    sentence = _RANGE.sub(_range, sentence)
    sentence = _NEGATIVE.sub(_negative, sentence)
    sentence = _VERSION.sub(_version, sentence)
    sentence = _DECIMAL.sub(_signed_number, sentence)
    sentence = _COUNTED.sub(_counted, sentence)
    sentence = _LONG_DIGITS.sub(_long_digits, sentence)
    sentence = _NUMBER.sub(_signed_number, sentence)
    return _post_replace(sentence)


def split_clauses(text: str) -> list[str]:
    """Cut text after clause punctuation; spaces and bracket-like symbols are dropped first."""
    text = _DROP_IN_SPLIT.sub("", text.replace(" ", ""))
    text = _SENTENCE_SPLITTER.sub(r"\1\n", text).strip()
    return [clause.strip() for clause in re.split(r"\n+", text)]


def normalize(text: str) -> list[str]:
    """Normalise Chinese text; returns the normalised clauses (joined by the caller)."""
    return [normalize_sentence(clause) for clause in split_clauses(text)]
