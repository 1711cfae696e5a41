"""Stand-ins for the co-host's surroundings in tests and benchmarks: a tone engine and a recording sink.

`ToneEngine` is a real `Engine` (the protocol from voxroom.models.engine): it yields sine-tone
chunks whose count grows with the text, optionally taking virtual synthesis time per chunk.
`make_cohost` builds a co-host that speaks through a real `Playout` on a virtual clock; `OnAir` records
what the playout put on air, frame by frame.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxroom.agent.clock import Clock, VirtualClock
from voxroom.agent.cohost import CoHost
from voxroom.agent.lifecycle import EventBus, LifecycleEvent, PieceOnAir, SpeechEnded
from voxroom.agent.replies import ReadAloud
from voxroom.agent.turns import TurnTaking
from voxroom.models.engine import AudioChunk, SynthesisError, Voice
from voxroom.streaming.playout import Playout


class ToneEngine:
    name = "tone"
    can_clone = False

    def __init__(self, clock: Clock, *, sample_rate: int = 16000, chunk_seconds: float = 0.1,
                 seconds_per_char: float = 0.05, synth_seconds_per_chunk: float = 0.0,
                 fail_on: str | None = None) -> None:
        self.clock = clock
        self.sample_rate = sample_rate
        self.chunk_seconds = chunk_seconds
        self.seconds_per_char = seconds_per_char
        self.synth_seconds_per_chunk = synth_seconds_per_chunk
        self.fail_on = fail_on
        self.texts: list[str] = []
        self.queued: list[float] = []  # queued_s the agent passed with each text
        self.closed_early = 0

    def chunk_count(self, text: str) -> int:
        return max(1, round(len(text) * self.seconds_per_char / self.chunk_seconds))

    async def stream(self, text: str, voice: Voice | None = None, *, lang: str = "auto",
                     speed: float = 1.0, queued_s: float = 0.0) -> AsyncIterator[AudioChunk]:
        self.texts.append(text)
        self.queued.append(queued_s)
        if self.fail_on is not None and self.fail_on in text:
            raise SynthesisError(f"cannot say {text!r}")
        n = int(self.sample_rate * self.chunk_seconds)
        t = np.arange(n, dtype=np.float32) / self.sample_rate
        count = self.chunk_count(text)
        finished = False
        try:
            for i in range(count):
                if self.synth_seconds_per_chunk:
                    await self.clock.sleep(self.synth_seconds_per_chunk)
                tone = 0.3 * np.sin(2 * np.pi * (220 + 20 * i) * t).astype(np.float32)
                yield AudioChunk(tone, self.sample_rate, text)
            finished = True
        finally:
            if not finished:
                self.closed_early += 1


@dataclass
class PlayedFrame:
    started: float
    text: str  # the piece on air
    duration: float
    peak: float


class OnAir:
    """A playout frame sink + event subscriber: every 20 ms frame with sound, when it played and the
    piece it belongs to; `flushes` are the times a speech was cut (cancelled or interrupted)."""

    def __init__(self, clock: Clock, events: EventBus) -> None:
        self.clock = clock
        self.played: list[PlayedFrame] = []
        self.flushes: list[float] = []
        self.piece = ""
        events.subscribe(self.observe)

    def observe(self, event: LifecycleEvent) -> None:
        if isinstance(event, PieceOnAir):
            self.piece = event.piece
        elif isinstance(event, SpeechEnded) and event.state in ("cancelled", "interrupted"):
            self.flushes.append(event.at)

    def __call__(self, frame: np.ndarray) -> None:
        peak = float(np.max(np.abs(frame))) if frame.size else 0.0
        if peak > 1e-3:
            self.played.append(PlayedFrame(self.clock.now(), self.piece, len(frame) / 48000, peak))

    def texts(self) -> list[str]:
        out: list[str] = []
        for frame in self.played:
            if not out or out[-1] != frame.text:
                out.append(frame.text)
        return out

    def seconds(self, text: str | None = None) -> float:
        return sum(f.duration for f in self.played if text is None or f.text == text)


@dataclass
class Setup:
    cohost: CoHost
    clock: Clock
    engine: ToneEngine
    air: OnAir
    playout: Playout


def make_cohost(clock: Clock | None = None, *, paced: bool = True, turns: TurnTaking | None = None,
                engine: Any = None, **kw: Any) -> Setup:
    """A co-host speaking through a real `Playout` (tone engine), on a virtual clock unless told otherwise."""
    clock = clock if clock is not None else VirtualClock()
    events = EventBus("test")
    turns = turns if turns is not None else TurnTaking(clock)
    engine = engine if engine is not None else ToneEngine(clock)
    playout = Playout(engine, clock, name="test", events=events, turns=turns, paced=paced)
    air = OnAir(clock, events)
    playout.sinks.append(air)
    cohost = CoHost(speaker=playout, replies=kw.pop("replies", None) or ReadAloud(), clock=clock, turns=turns,
                    events=events, **kw)
    return Setup(cohost, clock, engine, air, playout)


@contextlib.asynccontextmanager
async def running(setup: Setup) -> AsyncIterator[asyncio.Task[None]]:
    setup.playout.start()
    task = asyncio.ensure_future(setup.cohost.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await setup.playout.close()
