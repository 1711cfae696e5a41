"""The stock voice's text pieces: the first audio leaves after the first clause, not the sentence."""

from __future__ import annotations

from typing import Any

import numpy as np
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


LETTER = "lˌɛɾɚ"  # espeak-ng's "letter", as in "Chinese letter": what the stock voice must never say


@pytest.mark.parametrize("text", ["大家好，欢迎来到直播间！", "こんにちは、みなさん。", "谢谢 Anna 送的火箭！",
                                  "안녕하세요 여러분", "Привет всем, как дела?", "مرحبا بالجميع", "สวัสดีครับ ทุกคน",
                                  "Καλησπέρα σε όλους", "नमस्ते दोस्तों"])
async def test_stock_voice_refuses_text_not_written_in_latin_letters(stock_engine: Any, text: str) -> None:
    from voxroom.models.engine import SynthesisError
    from voxroom.models.piper_voice import ENGLISH_ONLY

    with pytest.raises(SynthesisError, match="English only") as refused:
        _ = [c async for c in stock_engine.stream(text)]
    assert str(refused.value) == ENGLISH_ONLY


@pytest.mark.parametrize("text, said", [
    ("Thanks Дмитрий for the raid!", "Thanks for the raid!"),
    ("Welcome سارة and ธนา to the stream", "Welcome and to the stream"),
    ("Café crème for José, très bien", "Café crème for José, très bien"),  # accented Latin stays
])
def test_names_in_other_scripts_are_left_out_and_latin_accents_kept(stock_engine: Any, text: str, said: str) -> None:
    from voxroom.models.piper_voice import english_part

    assert english_part(text) == said
    assert LETTER not in "".join(stock_engine.phonemes(said))


def test_mixed_text_speaks_its_english_only_when_english_was_asked_for() -> None:
    from voxroom.models.engine import LanguageNotSupported
    from voxroom.models.piper_voice import english_part

    text = "Hello 大家 everyone, welcome!"
    assert english_part(text, "en") == english_part(text, "auto") == "Hello everyone, welcome!"
    with pytest.raises(LanguageNotSupported):
        english_part(text, "zh")  # the caller asked for Chinese: the English words alone are not that
    assert english_part("Plain English.", "zh") == "Plain English."  # nothing it cannot read


async def test_a_chinese_word_in_english_is_left_out_not_read_as_letters(stock_engine: Any) -> None:
    from voxroom.models.piper_voice import english_part

    text = "Thank you 小明 for the follow, welcome in!"
    assert LETTER in "".join(stock_engine.phonemes(text))  # what espeak would have said
    said = english_part(text)
    assert said == "Thank you for the follow, welcome in!"
    assert LETTER not in "".join(stock_engine.phonemes(said))
    chunks = [c async for c in stock_engine.stream(text)]
    assert "".join(c.text for c in chunks).replace(" ", "") == said.replace(" ", "")


def test_a_chinese_line_for_a_stock_voice_room_is_refused_with_the_note_and_no_audio(live_server: Any) -> None:
    from voxroom.models.piper_voice import ENGLISH_ONLY

    _, room = live_server.json("POST", "/api/rooms", {"name": "cjk"})
    text = "欢迎大家来到今天的直播间"
    status, body = live_server.json("POST", f"/api/rooms/{room['id']}/say", {"text": text})
    assert status == 422 and body == {"error": ENGLISH_ONLY, "code": "language_not_supported"}
    assert not any(live_server.engine.produced.get(t) for t in (text, text + "。"))
    assert live_server.json("DELETE", f"/api/rooms/{room['id']}")[0] == 200  # the shared server caps rooms


def test_a_long_piece_leaves_no_memory_behind(stock_engine: Any) -> None:
    """ONNX Runtime's memory arena would keep what the longest piece ever needed (+550 MB for this
    one); the stock voice's sessions run without it, so the memory goes back once it is said."""
    from voxroom.streaming.native_memory import release_free_memory, resident_bytes

    if resident_bytes() is None:
        pytest.skip("reads the resident size from /proc (Linux)")

    def rss_mb() -> float:
        release_free_memory()
        return (resident_bytes() or 0) / 2**20

    stock_engine.synthesize("A short line first.")
    before = rss_mb()
    audio = stock_engine.synthesize_phonemes(stock_engine.phonemes("spam " * 80))
    assert audio.size > 10 * stock_engine.sample_rate  # it was said: 80 words
    assert rss_mb() - before < 200


def test_the_reference_rendering_is_the_same_every_time_and_live_speech_varies(stock_engine) -> None:
    """Tests build recordings from `synthesize`: its audio must not change from run to run (sampled
    prosody once made the recognizer miss a sentence on CI). Live speech keeps the voice's variation."""
    line = "A little further along, a woman sells warm bread from a blue wooden cart."
    assert np.array_equal(stock_engine.synthesize(line), stock_engine.synthesize(line))
    phonemes = stock_engine.phonemes(line)
    assert not np.array_equal(stock_engine.synthesize_phonemes(phonemes), stock_engine.synthesize_phonemes(phonemes))


async def test_a_closed_router_refuses_speech_instead_of_waiting() -> None:
    """`voxroom serve` closes its engines after the rooms: the stock voice's threads stop, and a speech
    that comes late fails with a SynthesisError (no thread left to wait for)."""
    from voxroom.models.engine import EngineRouter, SynthesisError
    from voxroom.models.piper_voice import PiperVoiceEngine

    stock = PiperVoiceEngine(sessions=1)
    router = EngineRouter(stock)
    said = [chunk async for chunk in router.stream("Hello there.")]
    assert said and said[0].samples.size > 0
    router.close()
    with pytest.raises(SynthesisError, match="closed"):
        [chunk async for chunk in router.stream("Hello again.")]


async def test_first_words_on_an_idle_engine_use_every_core_and_queued_speech_does_not(stock_engine) -> None:
    """A room waiting for its first words, with nothing else being made, gets the session spread over
    every core; a piece whose room has seconds of audio queued stays on a single-threaded session."""
    if stock_engine.sessions + 1 > len(stock_engine._voices):
        pytest.skip("one core: no session spread over cores")
    worker = stock_engine._worker
    before = worker.jobs_solo
    # A first clause of ~2 s of audio: the second piece is asked for with well over 0.25 s still to play.
    chunks = [c async for c in stock_engine.stream("Thanks so much for all of the support tonight, and welcome in.")]
    assert len(chunks) == 2 and worker.jobs_solo == before + 1  # the first piece only: the second is not urgent
    before = worker.jobs_solo
    chunks = [c async for c in stock_engine.stream("Great question, let me think.", queued_s=3.0)]
    assert chunks and worker.jobs_solo == before
