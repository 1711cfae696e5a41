"""Playout, the one synthesis driver: order, pacing, back-pressure, cancellation that fades instead of
clicking and always releases its waiters, turn-taking applied on the frames, unpaced delivery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from voxroom.agent.clock import SystemClock, VirtualClock
from voxroom.agent.lifecycle import LifecycleEvent, SpeechEnded
from voxroom.agent.speech import SpeakerBusy, SpeechHandle, SpeechState
from voxroom.agent.turns import TurnTaking
from voxroom.models.engine import AudioChunk, Busy, SynthesisError, Voice
from voxroom.streaming.audio import FRAME_SAMPLES
from voxroom.streaming.playout import (
    BUSY_PATIENCE_S,
    BUSY_RETRY_S,
    PACED_AHEAD_FRAMES,
    FrameCollector,
    Playout,
    render_speech,
)


def Speech(id: str, text: str) -> SpeechHandle:  # noqa: N802 - reads like the old constructor
    return SpeechHandle(id=id).say(text)


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

    def observe(self, event: LifecycleEvent) -> None:
        kind = event.type.split(".")[1]
        self.events.append((kind, event.as_dict()["id"]))

    def audio(self) -> np.ndarray:
        return np.concatenate(self.frames)


@pytest.fixture
async def playout() -> AsyncIterator[tuple[Playout, Recorder, ToneEngine]]:
    engine = ToneEngine()
    p = Playout(engine, SystemClock(), name="test")
    rec = Recorder()
    p.sinks.append(rec)
    p.events.subscribe(rec.observe)
    p.start()
    yield p, rec, engine
    await p.close()


async def test_speeches_play_in_order_with_silence_when_idle(playout: tuple[Playout, Recorder, ToneEngine]) -> None:
    p, rec, _ = playout
    a = p.speak(Speech(id="a", text="one two"))
    b = p.speak(Speech(id="b", text="three"))
    await asyncio.wait_for(b.wait_played(), 5)
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
    speech = p.speak(Speech(id="long", text=" ".join(["w"] * 50)))  # 5 s
    while speech.frames_played < 10:
        await asyncio.sleep(0.01)
    speech.cancel()
    await asyncio.wait_for(speech.wait_played(), 1)
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
    first = p.speak(Speech(id="first", text="a b"))
    second = p.speak(Speech(id="second", text="c d"))
    second.cancel()
    assert second.state == "cancelled" and second.finished
    await asyncio.wait_for(first.wait_played(), 3)
    await asyncio.sleep(0.1)
    assert ("started", "second") not in rec.events


async def test_synthesis_runs_only_a_little_ahead_of_playback(playout: tuple[Playout, Recorder, ToneEngine]) -> None:
    p, _, engine = playout
    speech = p.speak(Speech(id="long", text=" ".join(["w"] * 100)))  # 10 s of audio
    await asyncio.sleep(0.3)
    # 100 ms per chunk = 5 frames; at most PACED_AHEAD_FRAMES queued plus what was played plus one chunk in hand
    played_chunks = speech.frames_played / 5
    assert engine.chunks_made <= played_chunks + PACED_AHEAD_FRAMES / 5 + 2
    assert 0.3 <= p.cushion_seconds() <= PACED_AHEAD_FRAMES * 0.02  # what it tells the engine is queued
    speech.cancel()


class SlowPieceEngine(ToneEngine):
    """Each sentence ("a b c." = 0.3 s a word) takes `think` seconds of the clock before its audio
    comes, as a busy CPU shared by several rooms makes it."""

    def __init__(self, clock: VirtualClock, think: float) -> None:
        super().__init__()
        self.clock, self.think = clock, think

    async def stream(self, text: str, voice: Voice | None = None, *, lang: str = "auto",
                     speed: float = 1.0, queued_s: float = 0.0) -> AsyncIterator[AudioChunk]:
        for sentence in text.split("."):
            if sentence.strip():
                await self.clock.sleep(self.think)
                for word in sentence.split():
                    async for chunk in super().stream(f"{word} {word} {word}"):
                        yield chunk


async def test_a_room_has_two_seconds_for_its_next_sentence() -> None:
    """A room's next sentence is made while the one before plays, with up to 2 s to be ready: 1.5 s of
    synthesis per sentence (four other rooms ahead of it at a busy CPU) leaves no hole."""
    clock = VirtualClock()
    p = Playout(SlowPieceEngine(clock, think=1.5), clock, name="t")
    p.start()
    speech = p.speak(Speech("s", "one two three four five six seven. " * 4))  # 4 sentences of 6.3 s
    await clock.run_until(speech.wait_played(), limit=60)
    assert speech.state == "done" and speech.frames_played == 4 * 7 * 15
    assert p.stats.underruns == 0
    await p.close()


async def test_engine_error_fails_one_speech_and_the_room_goes_on(playout: tuple[Playout, Recorder, ToneEngine]) -> None:
    p, _, _ = playout
    bad = p.speak(Speech(id="bad", text="say boom"))
    good = p.speak(Speech(id="good", text="fine"))
    await asyncio.wait_for(good.wait_played(), 3)
    assert bad.state == "failed" and "boom" in (bad.error or "")
    assert good.state == "done"


async def test_host_speaking_holds_frames_and_resume_continues() -> None:
    clock = VirtualClock()
    turns = TurnTaking(clock, policy="resume", resume_after=0.3)
    p = Playout(ToneEngine(), clock, name="t", turns=turns)
    p.start()
    speech = p.speak(Speech("s", "a b c d e"))
    await clock.advance(0.07)
    turns.set_host_speaking(True)
    await clock.advance(0.02)
    held = speech.frames_played
    await clock.advance(1.0)
    assert speech.frames_played == held and speech.state == "paused" and p.held
    turns.set_host_speaking(False)
    await clock.advance(0.2)
    assert speech.frames_played == held  # waits resume_after before speaking again
    await clock.run_until(speech.wait_played())
    assert speech.frames_played == 25 and speech.state == "done"
    await p.close()


async def test_cancel_while_held_ends_at_once_and_releases_waiters() -> None:
    """The drop/resume deadlock of old: a held speech that is cancelled still ends, and so does its waiter."""
    clock = VirtualClock()
    turns = TurnTaking(clock, policy="resume")
    p = Playout(ToneEngine(), clock, name="t", turns=turns)
    p.start()
    speech = p.speak(SpeechHandle(id="s"))  # input still open: a reply whose LLM is still writing
    speech.push("a b c d e f g h i j")
    await clock.advance(0.1)
    turns.set_host_speaking(True)
    await clock.advance(0.5)
    waiter = asyncio.ensure_future(speech.wait_played())
    speech.cancel()
    await clock.advance(0.02)
    assert waiter.done() and waiter.result() is SpeechState.CANCELLED
    after = p.speak(Speech("next", "k"))
    turns.set_host_speaking(False)
    await clock.run_until(after.wait_played(), limit=5)
    assert after.state == "done"
    await p.close()


async def test_drop_policy_fades_the_speech_on_air_and_holds_the_next() -> None:
    clock = VirtualClock()
    turns = TurnTaking(clock, policy="drop", resume_after=0.3)
    p = Playout(ToneEngine(), clock, name="t", turns=turns)
    rec = Recorder()
    p.sinks.append(rec)
    p.start()
    first = p.speak(Speech("first", " ".join(["w"] * 30)))
    second = p.speak(Speech("second", "x y"))
    await clock.advance(0.2)
    turns.set_host_speaking(True)
    await clock.advance(0.04)
    assert first.state == "interrupted" and first.frames_played < 15
    await clock.advance(1.0)
    assert second.state == "queued"  # held while the host talks
    turns.set_host_speaking(False)
    await clock.run_until(second.wait_played(), limit=5)
    assert second.state == "done" and second.frames_played == 10
    await p.close()


async def test_duck_gain_is_applied_once_on_the_frames() -> None:
    clock = VirtualClock()
    turns = TurnTaking(clock, policy="duck", duck_gain=0.3)
    p = Playout(ToneEngine(), clock, name="t", turns=turns)
    rec = Recorder()
    p.sinks.append(rec)
    p.start()
    speech = p.speak(Speech("s", " ".join(["w"] * 20)))
    await clock.advance(0.3)
    turns.set_host_speaking(True)
    await clock.advance(0.02)  # the frame that glides down
    start = len(rec.frames)
    await clock.advance(0.6)
    ducked = rec.frames[start:]
    turns.set_host_speaking(False)
    released = len(rec.frames)
    await clock.run_until(speech.wait_played(), limit=5)
    full = rec.frames[5]

    def ratio(f: np.ndarray) -> float:
        return float(np.sqrt(np.mean(f ** 2)) / np.sqrt(np.mean(full ** 2)))

    assert ducked and all(ratio(f) == pytest.approx(0.3, rel=0.02) for f in ducked)
    # Back to full level once the host stops: one frame glides up, the next is whole again (the bug
    # kept 0.3 for ~0.4 s after).
    after = rec.frames[released + 1:released + 20]
    assert after and all(ratio(f) == pytest.approx(1.0, rel=0.02) for f in after), [round(ratio(f), 2) for f in after]
    await p.close()


async def test_too_many_speeches_is_busy_not_a_wait() -> None:
    p = Playout(ToneEngine(), VirtualClock(), name="t", max_speeches=2)
    p.speak(Speech("a", "x"))
    p.speak(Speech("b", "y"))
    with pytest.raises(SpeakerBusy):
        p.speak(Speech("c", "z"))
    await p.close()
    assert p.queued() == []


async def test_unpaced_playout_delivers_as_fast_as_the_listener_takes() -> None:
    clock = SystemClock()
    audio = await render_speech(ToneEngine(), clock, " ".join(["w"] * 50), None)  # 5 s of audio
    assert audio.size == 50 * 4800
    p = Playout(ToneEngine(), clock, name="direct", paced=False)
    ended: list[SpeechEnded] = []
    p.events.subscribe(lambda e: ended.append(e) if isinstance(e, SpeechEnded) else None)
    p.start()
    collector = FrameCollector()
    handle = SpeechHandle(id="d", listener=collector)
    handle.push("one two")
    handle.say("boom")  # a piece the engine refuses: the rest is still said
    await asyncio.wait_for(p.speak(handle).wait_played(), 2)
    assert handle.state == "done" and len(collector.frames) == 10 and "boom" in (handle.error or "")
    assert [e.state for e in ended] == ["done"]
    await p.close()


class BusyEngine(ToneEngine):
    """A ToneEngine whose first `busy_for` calls are refused as busy (API callers hold every place)."""

    def __init__(self, busy_for: int) -> None:
        super().__init__()
        self.busy_for, self.calls = busy_for, 0

    async def stream(self, text: str, voice: Voice | None = None, *, lang: str = "auto",
                     speed: float = 1.0, queued_s: float = 0.0) -> AsyncIterator[AudioChunk]:
        self.calls += 1
        if self.calls <= self.busy_for:
            raise Busy("every place is taken")
        async for chunk in super().stream(text, voice, lang=lang, speed=speed, queued_s=queued_s):
            yield chunk


async def test_a_room_waits_a_little_for_a_busy_engine_instead_of_skipping() -> None:
    clock = VirtualClock()
    engine = BusyEngine(busy_for=10)  # one second of refusals: within the room's patience
    p = Playout(engine, clock, name="room")
    p.start()
    speech = p.speak(Speech("s", "a b c"))
    await clock.run_until(speech.wait_played())
    assert speech.state == "done" and speech.frames_played == 15 and engine.calls == 11
    # refused for longer than BUSY_PATIENCE_S: the piece is given up, with the reason, and the room goes on
    engine.busy_for, engine.calls = 10_000, 0
    given_up = p.speak(Speech("g", "d e"))
    await clock.run_until(given_up.wait_played())
    assert given_up.state == "failed" and "every place is taken" in (given_up.error or "")
    assert BUSY_PATIENCE_S / BUSY_RETRY_S - 2 <= engine.calls <= BUSY_PATIENCE_S / BUSY_RETRY_S + 2
    await p.close()


async def test_an_unpaced_caller_hears_busy_at_once() -> None:
    engine = BusyEngine(busy_for=1)
    with pytest.raises(SynthesisError, match="every place is taken"):
        await render_speech(engine, SystemClock(), "a b", None)
    assert engine.calls == 1
