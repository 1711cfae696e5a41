"""Moderation (input and output, the log) and cutting reply text into speakable pieces."""

from __future__ import annotations

import pytest

from voxroom.agent.clock import VirtualClock
from voxroom.agent.events import ChatEvent, EventKind
from voxroom.agent.moderation import Direction, Moderator
from voxroom.models.text_pieces import Segmenter, clean_for_speech, split_text


def msg(text: str, user: str = "viewer") -> ChatEvent:
    return ChatEvent(EventKind.MESSAGE, user, text, "test", 0.0, "m1")


def test_block_list_refuses_input_and_logs_it() -> None:
    clock = VirtualClock(5.0)
    seen = []
    mod = Moderator(clock, blocked_words=["badword", "坏词"], on_entry=seen.append)
    assert mod.check_input(msg("what a BadWord!")) is None
    assert mod.check_input(msg("这是坏词吗")) is None
    assert mod.check_input(msg("hello", user="badword_fan")) is not None  # whole words only in Latin script
    assert mod.check_input(msg("bad\u200bword")) is None  # zero-width tricks do not hide it
    assert mod.check_input(msg("a good word")) is not None
    assert [e.direction for e in mod.log] == [Direction.INPUT] * 3
    assert seen == list(mod.log)
    assert mod.log[0].at == 5.0 and mod.log[0].text == "what a BadWord!" and "badword" in mod.log[0].reason


def test_long_input_is_cut_and_logged() -> None:
    mod = Moderator(VirtualClock(), max_input_chars=10)
    out = mod.check_input(msg("x" * 50))
    assert out is not None and out.text == "x" * 10 + "…"
    assert mod.log[-1].action == "truncated"


def test_output_filter_uses_the_same_list() -> None:
    mod = Moderator(VirtualClock(), blocked_words=["secret"])
    assert mod.check_output("All fine here.") == "All fine here."
    assert mod.check_output("The SECRET is out.", event_id="e9") is None
    entry = mod.log[-1]
    assert (entry.direction, entry.event_id, entry.action) == (Direction.OUTPUT, "e9", "blocked")
    mod.unblock("secret")
    assert mod.check_output("The secret is out.") is not None
    assert mod.snapshot()[-1]["direction"] == "output"


def stream(text: str, step: int = 1) -> tuple[list[str], list[int]]:
    """Pieces from feeding `text` in `step`-character deltas, and the delta index each came out at."""
    seg = Segmenter()
    pieces: list[str] = []
    at: list[int] = []
    for i in range(0, len(text), step):
        out = seg.feed(text[i:i + step])
        pieces += out
        at += [i] * len(out)
    pieces += seg.flush()
    return pieces, at


def test_first_piece_is_a_clause_later_ones_sentences() -> None:
    text = "Thanks so much Anna, that is a lovely question, really. Here is more, with commas, inside."
    pieces, at = stream(text)
    assert pieces == ["Thanks so much Anna,", "that is a lovely question, really.",
                      "Here is more, with commas, inside."]
    assert at[0] == text.index(",") + 1  # out as soon as the space after the comma arrives


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Pi is 3.14 today. Yes.", ["Pi is 3.14 today.", "Yes."]),
        ("Ask Dr. Smith about it. Or Mr. Brown.", ["Ask Dr. Smith about it.", "Or Mr. Brown."]),
        ("Use fruit, e.g. apples. Fine.", ["Use fruit, e.g. apples.", "Fine."]),
        ("Wait... what happened? Nothing!", ["Wait... what happened?", "Nothing!"]),
        ("He said \"go.\" Then left.", ["He said \"go.\"", "Then left."]),
        ("谢谢你的礼物！我们聊聊天吧。好的", ["谢谢你的礼物！", "我们聊聊天吧。", "好的"]),
        ("ありがとう、みなさん。今日はいい天気ですね！", ["ありがとう、みなさん。", "今日はいい天気ですね！"]),
        ("Check https://example.com/page?x=1 for it. Bye.", ["Check for it.", "Bye."]),
        ("Visit example.com. It is great 😀🎉!", ["Visit.", "It is great!"]),
        ("🎉🎉 https://x.io", []),
    ],
)
def test_pieces_in_every_script(text: str, expected: list[str]) -> None:
    assert split_text(text) == expected
    assert stream(text)[0] == expected or len(stream(text)[0]) >= len(expected)  # streamed may cut a clause


def test_streamed_decimal_split_across_deltas_stays_whole() -> None:
    seg = Segmenter()
    assert seg.feed("The answer is 3.") == []
    assert seg.feed("14 exactly") == []
    assert seg.feed(". Next") == ["The answer is 3.14 exactly."]
    assert seg.flush() == ["Next"]


def test_long_text_without_punctuation_is_cut() -> None:
    seg = Segmenter(max_chars=40)
    pieces = seg.feed("word " * 30) + seg.flush()
    assert len(pieces) > 2 and all(len(p) <= 40 for p in pieces)
    assert " ".join(pieces).split() == ["word"] * 30


def test_clean_for_speech_drops_markdown_urls_and_emoji() -> None:
    assert clean_for_speech("**Bold** move 👍 see www.site.org/a") == "Bold move see"
    assert clean_for_speech("👍") == ""


def test_whole_text_keeps_sentences_whole_streamed_text_cuts_a_first_clause() -> None:
    text = "Be right back, grabbing some water."
    assert split_text(text) == [text]
    seg = Segmenter()
    assert seg.feed(text) == ["Be right back,"]  # more may follow: say the clause now
    assert seg.flush() == ["grabbing some water."]
