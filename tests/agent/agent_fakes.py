"""Stand-ins for the co-host's surroundings in tests and benchmarks: a tone engine and a recording sink.

`ToneEngine` is a real `Engine` (the protocol from voxroom.models.engine): it yields sine-tone
chunks whose count grows with the text, optionally taking virtual synthesis time per chunk.
`RecordingSink` plays chunks in (virtual) real time and records when each one started.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from voxroom.agent.clock import Clock
from voxroom.models.engine import AudioChunk, SynthesisError, Voice


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
class PlayedChunk:
    started: float
    text: str
    duration: float
    peak: float


@dataclass
class RecordingSink:
    clock: Clock
    realtime: bool = True  # play() takes the chunk's duration on the clock, like a real output
    played: list[PlayedChunk] = field(default_factory=list)
    flushes: list[float] = field(default_factory=list)

    async def play(self, chunk: AudioChunk) -> None:
        self.played.append(PlayedChunk(self.clock.now(), chunk.text, chunk.duration,
                                       float(np.max(np.abs(chunk.samples))) if len(chunk.samples) else 0.0))
        if self.realtime:
            await self.clock.sleep(chunk.duration)

    async def flush(self, fade: bool = True) -> None:
        self.flushes.append(self.clock.now())

    async def wait_played(self) -> None:
        return None

    def queued_seconds(self) -> float:
        return 0.0  # play() returns once a chunk has been heard (or at once, when not real time)

    def texts(self) -> list[str]:
        out: list[str] = []
        for chunk in self.played:
            if not out or out[-1] != chunk.text:
                out.append(chunk.text)
        return out
