"""The stock voice's text pieces: the first audio leaves after the first clause, not the sentence."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize("text, pieces", [
    ("Great question, let me think about that for a second.", ["Great question,", "let me think about that for a second."]),
    ("Wow, ten gifted subs, you are amazing.", ["Wow, ten gifted subs,", "you are amazing."]),  # "Wow," alone: too short
    ("Well, that went well.", ["Well, that went well."]),  # the rest would be too short to bother
    ("Hi. How are you? Fine, thanks, and you?", ["Hi.", "How are you?", "Fine, thanks, and you?"]),  # only the first is cut
    ("It costs 3.14 dollars, e.g. not much.", ["It costs 3.14 dollars,", "e.g. not much."]),
    ("Ask Dr. Smith. He knows.", ["Ask Dr. Smith.", "He knows."]),
    ("大家好。欢迎来到直播间！", ["大家好。", "欢迎来到直播间！"]),
    ("   ", []),
])
def test_pieces(stock_engine: Any, text: str, pieces: list[str]) -> None:
    assert stock_engine.pieces(text) == pieces


async def test_stream_yields_one_chunk_per_piece(stock_engine: Any) -> None:
    chunks = [c async for c in stock_engine.stream("Great question, let me think about that for a second.")]
    assert [c.text for c in chunks] == ["Great question,", "let me think about that for a second."]
    assert chunks[0].duration < 1.2 < chunks[1].duration  # the short clause goes first
