"""GPT-SoVITS v2 text frontend against the official golden phone sequences, plus rule-level tests.

Every golden sentence the official code produced (failed and skipped runs excluded) must match
phones, word2ph, norm_text and ids exactly. The whole module runs with sockets disabled, so any
dictionary or model that tried to download would fail the tests.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(os.environ.get("VOXROOM_GOLDEN", Path(__file__).resolve().parents[3] / "shared" / "golden"))
FRONTEND_JSON = GOLDEN / "frontend" / "frontend_v2.json"

# The golden Japanese run used Debian's Open JTalk NAIST-jdic (open-jtalk-mecab-naist-jdic). When
# that package is installed we point pyopenjtalk-plus at it so accents can match; otherwise the
# dictionary bundled with pyopenjtalk-plus is used and one sentence's accents differ (xfail below).
DEBIAN_NAIST_JDIC = Path("/var/lib/mecab/dic/open-jtalk/naist-jdic")
if DEBIAN_NAIST_JDIC.is_dir() and "pyopenjtalk" not in sys.modules:
    os.environ.setdefault("OPEN_JTALK_DICT_DIR", str(DEBIAN_NAIST_JDIC))
USING_DEBIAN_DICT = os.environ.get("OPEN_JTALK_DICT_DIR") == str(DEBIAN_NAIST_JDIC)

from voxroom.models.gpt_sovits.text import (  # noqa: E402  (environment must be set first)
    SYMBOLS_V2,
    mixed_text_to_phones,
    preload,
    split_sentences,
    text_to_phones,
)
from voxroom.models.gpt_sovits.text.chinese import pinyin_to_symbols  # noqa: E402
from voxroom.models.gpt_sovits.text.language_split import split_for_mode  # noqa: E402
from voxroom.models.gpt_sovits.text.segmentation import cut1, cut2, cut3, cut4, cut5  # noqa: E402
from voxroom.models.gpt_sovits.text.zh_normalize import normalize  # noqa: E402

# Known, explained differences from the golden data (each is an xfail with this reason).
KNOWN_MISMATCHES = {
    "今日は2024年3月15日です。": (
        "pyopenjtalk-plus applies its own numeral accent rules (4 and 15 get other pitch marks than "
        "pyopenjtalk 0.4.1); both packages install the same 'pyopenjtalk' module, so we cannot use both"
    ),
}
if not USING_DEBIAN_DICT:
    KNOWN_MISMATCHES["東京タワーの高さは333メートルです！"] = (
        "pyopenjtalk-plus's bundled dictionary accents 高さ differently from the Debian NAIST-jdic used "
        "for the golden run (apt-get install open-jtalk-mecab-naist-jdic to match)"
    )


def _golden() -> dict[str, Any]:
    if not FRONTEND_JSON.is_file():
        pytest.skip(f"golden frontend vectors not found at {FRONTEND_JSON}")
    return json.loads(FRONTEND_JSON.read_text(encoding="utf-8"))


def _golden_sentences() -> list[Any]:
    if not FRONTEND_JSON.is_file():
        return []
    cases = []
    for run_name, run in json.loads(FRONTEND_JSON.read_text(encoding="utf-8"))["runs"].items():
        for item in run.get("items", []):
            if "phones" not in item:
                continue  # failed or skipped official run: nothing to compare with
            marks = []
            if item["text"] in KNOWN_MISMATCHES:
                marks.append(pytest.mark.xfail(reason=KNOWN_MISMATCHES[item["text"]], strict=True))
            cases.append(pytest.param(item, id=f"{run_name}:{item['text']}", marks=marks))
    return cases


def _golden_segments() -> list[Any]:
    if not FRONTEND_JSON.is_file():
        return []
    run = json.loads(FRONTEND_JSON.read_text(encoding="utf-8"))["runs"]["mixed_manual_segments"]
    return [
        pytest.param(segment, id=f"{segment['lang']}:{segment['text']}")
        for item in run["items"]
        for segment in item["segment_results"]
    ]


@pytest.fixture(autouse=True, scope="module")
def no_network() -> Any:
    """Fail any attempt to open a network connection while this module runs."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args!r}")

    saved = (socket.socket.connect, socket.getaddrinfo, socket.create_connection)
    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.getaddrinfo = refuse  # type: ignore[assignment]
    socket.create_connection = refuse  # type: ignore[assignment]
    yield
    socket.socket.connect, socket.getaddrinfo, socket.create_connection = saved  # type: ignore[method-assign]


def test_network_guard_is_active() -> None:
    with pytest.raises(AssertionError, match="network access attempted"):
        socket.create_connection(("example.com", 80))


# --- golden vectors ---------------------------------------------------------------------------------


def test_symbol_table_matches_golden() -> None:
    golden = _golden()
    assert SYMBOLS_V2 == golden["symbols_v2"]
    assert len(SYMBOLS_V2) == 732
    assert SYMBOLS_V2.index("UNK") == 86 and SYMBOLS_V2.index("SP") == 77 and SYMBOLS_V2.index("_") == 95
    assert SYMBOLS_V2[322:324] == ["[", "]"]


@pytest.mark.parametrize("item", _golden_sentences())
def test_golden_sentence(item: dict[str, Any]) -> None:
    result = text_to_phones(item["text"], item["lang"])
    assert result.norm_text == item["norm_text"]
    assert result.phones == item["phones"]
    assert result.word2ph == item["word2ph"]
    assert result.ids == item["ids"]


@pytest.mark.parametrize("segment", _golden_segments())
def test_golden_mixed_segment(segment: dict[str, Any]) -> None:
    result = text_to_phones(segment["text"], segment["lang"])
    assert (result.norm_text, result.phones, result.word2ph, result.ids) == (
        segment["norm_text"], segment["phones"], segment["word2ph"], segment["ids"],
    )


def test_golden_mixed_sentences_through_language_split() -> None:
    """Our script-based splitter gives the same ids as the official per-segment path."""
    run = _golden()["runs"]["mixed_manual_segments"]
    for item in run["items"]:
        chunks = mixed_text_to_phones(item["text"], item["lang"])
        ids = [i for _, phones in chunks for i in phones.ids]
        assert ids == item["ids_concat"], item["text"]
        languages = [lang for lang, _ in chunks]
        expected = [s["lang"] for s in item["segments"]]
        # The official hand segmentation keeps a final "。" as its own chunk; ours joins it to the
        # chunk before, which yields the same phone.
        assert languages == expected[: len(languages)], item["text"]


def test_golden_failed_runs_are_documented() -> None:
    """The runs we do not compare against really are failed/skipped official runs."""
    runs = _golden()["runs"]
    assert runs["zh_g2pw_real"]["n_ok"] == 0 and runs["en_plain"]["n_ok"] == 0
    skipped = [i for i in runs["en_minnltk_posstub"]["items"] if "skipped" in i]
    assert [i["text"] for i in skipped] == ["I read the book yesterday, and I will read it again."]


# --- Chinese rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pinyin", "expected"),
    [
        ("zhi", ("zh", "ir")), ("si", ("s", "i0")), ("ju", ("j", "v")), ("xuan", ("x", "van")),
        ("yan", ("y", "En")), ("ye", ("y", "E")), ("yu", ("y", "v")), ("er", ("EE", "er")),
        ("a", ("AA", "a")), ("ou", ("OO", "ou")), ("wo", ("w", "o")), ("lve", ("l", "ve")),
        ("chui", ("ch", "ui")),
    ],
)
def test_pinyin_to_symbols(pinyin: str, expected: tuple[str, str]) -> None:
    assert pinyin_to_symbols(pinyin) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("下午3:30开会", "下午三点半开会"),
        ("1/2的人", "二分之一的人"),
        ("气温-3度", "气温零下三度"),
        ("3.20元", "三点二零元"),
        ("2个人", "两个人"),
        ("10~20岁", "十到二十岁"),
        ("10-20岁", "十减二十岁"),  # official quirk: arithmetic is matched before ranges
        ("2023-05-01", "二零二三年五月一日"),
        ("x²", "x的二次方"),
        ("电话01012345678", "电话零幺零幺二三四五六七八"),
        ("拨打010-12345678", "拨打零幺零减幺二三四五六七八"),  # arithmetic rule wins over the phone rule
        ("版本1.2.3", "版本一点二点三"),
        ("105", "幺零五"),
        ("长度5cm", "长度五厘米"),
    ],
)
def test_zh_normalization(text: str, expected: str) -> None:
    assert "".join(normalize(text)) == expected


def test_zh_special_pause_symbols() -> None:
    result = text_to_phones("你好^我们走", "zh")
    assert "SP3" in result.phones and "," not in result.phones
    assert len(result.phones) == sum(result.word2ph)


def test_zh_word2ph_covers_norm_text() -> None:
    result = text_to_phones("我们在2024年一起去了北京，玩得很开心！", "zh")
    assert len(result.word2ph) == len(result.norm_text)
    assert sum(result.word2ph) == len(result.phones) == len(result.ids)


def test_traditional_characters_are_simplified() -> None:
    assert text_to_phones("這個東西", "zh").norm_text == "这个东西"


# --- English rules -----------------------------------------------------------------------------------


def test_en_short_input_gets_leading_comma() -> None:
    result = text_to_phones("Hi", "en")
    assert result.phones == [",", "HH", "AY1"]


def test_en_oov_word_uses_neural_fallback() -> None:
    phones = text_to_phones("Zorblaxian", "en").phones
    assert len(phones) >= 6 and all(p in SYMBOLS_V2 and p != "UNK" for p in phones)


def test_en_possessive_and_hot_words() -> None:
    assert text_to_phones("json", "en").phones == ["JH", "EY1", "S", "AH0", "N"]
    assert text_to_phones("Smith's", "en").phones == ["S", "M", "IH1", "TH", "S"]


def test_en_homographs_use_the_previous_word() -> None:
    assert text_to_phones("I will read it", "en").phones[4:7] == ["R", "IY1", "D"]
    assert text_to_phones("I read it yesterday", "en").phones[1:4] == ["R", "EH1", "D"]
    assert text_to_phones("the record", "en").phones[2:] == ["R", "EH1", "K", "ER0", "D"]
    assert text_to_phones("to record", "en").phones[2:] == ["R", "IH0", "K", "AO1", "R", "D"]


# --- other languages -----------------------------------------------------------------------------------


def test_unknown_language_reads_as_blank_english() -> None:
    result = text_to_phones("whatever", "xx")
    assert result.norm_text == " " and result.phones == [","]


def test_korean_latin_letters_are_spelled() -> None:
    phones = text_to_phones("AI 기술", "ko").phones
    assert phones[:3] == ["ㅇ", "ㅔ", "ㅇ"]


def test_japanese_question_keeps_mark() -> None:
    phones = text_to_phones("本当？", "ja").phones
    assert phones[-1] == "?"


# --- language split ------------------------------------------------------------------------------------


def test_split_modes() -> None:
    assert split_for_mode("Hello 世界", "en") == [("Hello 世界", "en")]
    assert split_for_mode("我爱Python编程", "all_zh") == [("我爱", "zh"), ("Python", "en"), ("编程", "zh")]
    assert split_for_mode("我哋去飲茶", "auto_yue") == [("我哋去飲茶", "yue")]
    assert split_for_mode("안녕하세요, hello!", "auto") == [("안녕하세요, ", "ko"), ("hello!", "en")]
    assert split_for_mode("こんにちは世界", "zh") == [("こんにちは世界", "zh")]
    assert split_for_mode("東京に行きます", "auto") == [("東京に行きます", "ja")]
    # A full-width comma after English goes to the Chinese chunk, where it stays a pause phone.
    assert split_for_mode("Hello，世界", "auto") == [("Hello", "en"), ("，世界", "zh")]
    assert text_to_phones("，世界", "zh").phones[0] == ","
    with pytest.raises(ValueError):
        split_for_mode("x", "klingon")


def test_short_mixed_text_is_redone_with_a_leading_stop() -> None:
    chunks = mixed_text_to_phones("好", "zh")
    assert [(lang, p.phones, p.norm_text) for lang, p in chunks] == [("zh", [".", "h", "ao3"], ".好")]
    long_enough = mixed_text_to_phones("你好世界", "zh")
    assert long_enough[0][1].norm_text == "你好世界"


def test_preload_then_every_language_works() -> None:
    preload()
    for lang, text in (("zh", "好"), ("en", "ok"), ("ja", "はい"), ("ko", "네"), ("yue", "係")):
        assert text_to_phones(text, lang).ids


def test_digits_follow_their_neighbours() -> None:
    assert split_for_mode("I have 3 apples", "auto") == [("I have 3 apples", "en")]
    assert split_for_mode("我有3个苹果", "auto") == [("我有3个苹果", "zh")]


# --- sentence segmentation --------------------------------------------------------------------------------

FOUR_SENTENCES = "你好，我是小明。你好，我是小红。你好，我是小刚。你好，我是小张。"


def test_cut5_splits_every_punctuation_but_keeps_decimals() -> None:
    assert cut5("价格是3.5元，很便宜。") == "价格是3.5元，\n很便宜。"


def test_cut4_splits_on_periods_not_decimals() -> None:
    assert cut4("It costs 3.50 dollars. Cheap.") == "It costs 3.50 dollars\n Cheap"
    assert cut4("Pi is 3.14. Next.") == "Pi is 3.14. Next"  # a period right after a digit is kept


def test_cut3_and_cut1_and_cut2() -> None:
    assert cut3(FOUR_SENTENCES).split("\n") == ["你好，我是小明", "你好，我是小红", "你好，我是小刚", "你好，我是小张"]
    # 8 clauses -> two groups of four would be expected, but the official index quirk makes one group.
    assert cut1(FOUR_SENTENCES) == FOUR_SENTENCES
    nine = FOUR_SENTENCES + "好。"
    assert cut1(nine).split("\n") == ["你好，我是小明。你好，我是小红。", "你好，我是小刚。你好，我是小张。好。"]
    long = "这是一个比较长的句子，" * 8
    assert all(len(piece) > 50 for piece in cut2(long).split("\n"))


def test_split_sentences_rules() -> None:
    assert split_sentences(FOUR_SENTENCES, "cut5") == [
        "你好，我是小明。", "你好，我是小红。", "你好，我是小刚。", "你好，我是小张。",
    ]
    # A very short first clause gets a leading full stop; a piece without end punctuation gets one.
    assert split_sentences("好的，我们明天见", "cut0") == ["。好的，我们明天见。"]
    assert split_sentences("Hi there, how are you", "cut0", lang="en") == ["Hi there, how are you."]
    # Pieces shorter than 5 characters are merged into the previous piece.
    assert split_sentences("今天天气很好。是的。", "cut3") == ["今天天气很好是的。"]
    # Repeated punctuation collapses before splitting; empty input gives nothing.
    assert split_sentences("真的是吗???是的!!!", "cut0") == ["真的是吗?是的!"]
    assert split_sentences("\n\n", "cut5") == []
    with pytest.raises(ValueError):
        split_sentences("x", "cut9")


def test_split_sentences_hard_limit() -> None:
    text = "，".join(["这是一段很长很长的文字"] * 80) + "。"
    pieces = split_sentences(text, "cut0")
    assert len(pieces) > 1 and all(len(piece) <= 510 for piece in pieces)
    assert "".join(pieces).replace("。", "") == text.replace("。", "")
