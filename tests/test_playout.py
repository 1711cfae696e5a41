"""Playout: order, pacing, back-pressure, and cancellation that fades instead of clicking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from voxroom.models.engine import AudioChunk, SynthesisError, Voice
from voxroom.streaming.audio import FRAME_SAMPLES
from voxroom.streaming.playout import AHEAD_FRAMES, Playout, Speech


class ToneEngine:
    """A real Engine: each word of the text is 100 ms of a tone at 24 kHz, yielded per word."""

    name = "tone"
    sample_rate = 24000
    can_clone = False

    def __init__(self) -> None:
        self.chunks_made = 0

    async def stream(self, text: str, voice: Voice | None = None, *, lang: str = "auto",
                     speed: float = 1.0, queued_s: float = 0.0) -> AsyncIterator[AudioChunk]:
        if "boom" in text:
            raise SynthesisError("cannot say boom")
        for word in text.split():
            t = np.arange(2400) / self.sample_rate
            self.chunks_made += 1
            yield AudioChunk((0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), self.sample_rate, word)
            await asyncio.sleep(0)


class Recorder:
    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.events: list[tuple[str, str]] = []

    def __call__(self, frame: np.ndarray) -> None:
        self.frames.append(frame)

    def observe(self, kind: str, speech: Speech) -> None:
        self.events.append((kind, speech.id))

    def audio(self) -> np.ndarray:
        return np.concatenate(self.frames)


@pytest.fixture
async def playout() -> AsyncIterator[tuple[Playout, Recorder, ToneEngine]]:
    engine = ToneEngine()
    p = Playout(engine, name="test")
    rec = Recorder()
    p.sinks.append(rec)
    p.observers.append(rec.observe)
    p.start()
    yield p, rec, engine
    await p.close()


async def test_speeches_play_in_order_with_silence_when_idle(playout: tuple[Playout, Recorder, ToneEngine]) -> None:
    p, rec, _ = playout
    a = p.say(Speech(id="a", text="one two"))
    b = p.say(Speech(id="b", text="three"))
    await asyncio.wait_for(b.ended.wait(), 5)
    assert (a.state, b.state) == ("done", "done")
    assert [e for e in rec.events if e[0] != "piece"] == [("started", "a"), ("ended", "a"), ("started", "b"),
                                                          ("ended", "b")]
    assert rec.events.count(("piece", "a")) == 2  # "one", then "two" went on air
    assert a.frames_played == 10 and b.frames_played == 5  # 200 ms and 100 ms of 20 ms frames
    assert a.played_text == ["one", "two"]
    await asyncio.sleep(0.1)
    assert np.all(rec.frames[-1] == 0)  # idle: silence keeps flowing
    assert p.stats.ticks >= 20


async def test_cancel_mid_speech_fades_and_drops_the_rest(playout: tuple[Playout, Recorder, ToneEngine]) -> None:
    p, rec, _ = playout
    speech = p.say(Speech(id="long", text=" ".join(["w"] * 50)))  # 5 s
    while speech.frames_played < 10:
        await asyncio.sleep(0.01)
    p.cancel(speech)
    await asyncio.wait_for(speech.ended.wait(), 1)
    assert speech.state == "cancelled"
    assert speech.frames_played < 30
    audio = rec.audio()
    loud = np.flatnonzero(np.abs(audio) > 1e-4)
    end = loud[-1]
    # the last frame before silence fades to zero: no sample-to-sample jump bigger than the tone's own
    max_step = 0.5 * 2 * np.pi * 300 / 48000 * 1.5
    assert np.max(np.abs(np.diff(audio[: end + 2]))) < max_step
    assert np.max(np.abs(audio[end - FRAME_SAMPLES // 10 : end + 1])) < 0.1
    await asyncio.sleep(0.1)
    assert np.max(np.abs(rec.audio()[end + 1 :])) < 1e-4  # nothing of it plays afterwards


async def test_cancel_queued_speech_never_plays(playout: tuple[Playout, Recorder, ToneEngine]) -> None:
    p, rec, _ = playout
    first = p.say(Speech(id="first", text="a b"))
    second = p.say(Speech(id="second", text="c d"))
    p.cancel(second)
    assert second.state == "cancelled" and second.ended.is_set()
    await asyncio.wait_for(first.ended.wait(), 3)
    await asyncio.sleep(0.1)
    assert ("started", "second") not in rec.events


async def test_synthesis_runs_only_a_little_ahead_of_playback(playout: tuple[Playout, Recorder, ToneEngine]) -> None:
    p, _, engine = playout
    speech = p.say(Speech(id="long", text=" ".join(["w"] * 100)))  # 10 s of audio
    await asyncio.sleep(0.3)
    # 100 ms per chunk = 5 frames; at most AHEAD_FRAMES queued plus what was played plus one chunk in hand
    played_chunks = speech.frames_played / 5
    assert engine.chunks_made <= played_chunks + AHEAD_FRAMES / 5 + 2
    p.cancel(speech)


async def test_engine_error_fails_one_speech_and_the_room_goes_on(playout: tuple[Playout, Recorder, ToneEngine]) -> None:
    p, _, _ = playout
    bad = p.say(Speech(id="bad", text="say boom"))
    good = p.say(Speech(id="good", text="fine"))
    await asyncio.wait_for(good.ended.wait(), 3)
    assert bad.state == "failed" and "boom" in (bad.error or "")
    assert good.state == "done"


async def test_pause_holds_frames_and_resume_continues(playout: tuple[Playout, Recorder, ToneEngine]) -> None:
    p, _, _ = playout
    speech = p.say(Speech(id="s", text="a b c d e"))
    while speech.frames_played < 3:
        await asyncio.sleep(0.005)
    p.paused = True
    held = speech.frames_played
    await asyncio.sleep(0.15)
    assert speech.frames_played == held
    p.paused = False
    await asyncio.wait_for(speech.ended.wait(), 3)
    assert speech.frames_played == 25 and speech.state == "done"


async def test_the_cohost_sink_knows_how_much_is_still_to_play(playout: tuple[Playout, Recorder, ToneEngine]) -> None:
    """What the co-host passes to the engine as `queued_s` between the pieces of one reply."""
    from voxroom.streaming.room_cohost import PlayoutSink

    p, _, _ = playout
    sink = PlayoutSink(p)
    assert sink.queued_seconds() == 0.0
    tone = (0.2 * np.sin(np.arange(2400) / 24000 * 2 * np.pi * 300)).astype(np.float32)
    for _ in range(15):  # 1.5 s in 100 ms chunks, as the agent hands them over (back-pressure paces this)
        await sink.play(AudioChunk(tone, 24000, "piece"))
    ahead, played = sink.queued_seconds(), sink.speech.frames_played if sink.speech else 0
    assert 0.3 < ahead <= 0.8  # the playout's 500 ms of frames plus the chunk the sink holds
    async with asyncio.timeout(2):
        while sink.speech is not None and sink.speech.frames_played < played + 10:
            await asyncio.sleep(0.005)
    assert sink.speech is not None
    drained = (sink.speech.frames_played - played) * 0.02
    assert sink.queued_seconds() == pytest.approx(ahead - drained)  # it drains as frames go on air
    await sink.flush()
    assert sink.queued_seconds() == 0.0
