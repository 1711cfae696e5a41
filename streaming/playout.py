"""A room's voice: speeches queued in order, synthesized ahead, played out in real time.

    say() ──► speech queue ──► synthesis task ──► bounded frame queue ──► pacer (every 20 ms) ──► sinks
                               (engine.stream → FrameMaker)   (back-pressure)     (Opus fan-out, WS clients)

The synthesis task runs at most `AHEAD_FRAMES` ahead of what has been played, so a long text never
fills memory and a cancelled speech wastes little work. The pacer ticks on the event loop's
clock, sends silence when there is nothing to say, and counts late ticks and underruns.

Cancellation is one path for every reason (a client's cancel, the host talking, a moderator's
skip): the speech's synthesis is cancelled, its queued frames are dropped, and the frame that was
about to play goes out once more as a 20 ms fade to zero, so the cut never clicks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from voxroom.models.engine import AudioChunk, Engine, SynthesisError, Voice
from voxroom.streaming.audio import FRAME_MS, SILENCE, FrameMaker, fade_out

log = logging.getLogger(__name__)

AHEAD_FRAMES = 25  # synthesize at most 500 ms ahead of playback
MAX_QUEUED_SPEECHES = 32
TICK = FRAME_MS / 1000


async def synthesize_frames(
    engine: Engine, text: str, voice: Voice | None = None, *, lang: str = "auto", speed: float = 1.0
) -> AsyncIterator[tuple[np.ndarray, str]]:
    """48 kHz 20 ms frames of `text`, each with the text piece it belongs to, as soon as they exist."""
    async for item in chunk_frames(engine.stream(text, voice, lang=lang, speed=speed)):
        yield item


async def chunk_frames(chunks: AsyncIterator[AudioChunk]) -> AsyncIterator[tuple[np.ndarray, str]]:
    """Engine chunks (any rate) -> 48 kHz 20 ms frames with the text piece each belongs to."""
    maker: FrameMaker | None = None
    piece = ""
    async for chunk in chunks:
        if maker is not None and maker.input_rate != chunk.sample_rate:  # another engine took over
            for frame in maker.flush():
                yield frame, piece
            maker = None
        if maker is None:
            maker = FrameMaker(chunk.sample_rate)
        piece = chunk.text
        for frame in maker.push(chunk.samples):
            yield frame, piece
    if maker is not None:
        for frame in maker.flush():
            yield frame, piece


class SpeechListener(Protocol):
    """Who asked for a speech and wants to hear about it (a WebSocket session, the co-host)."""

    def speech_started(self, speech: Speech) -> None: ...
    def speech_frame(self, speech: Speech, frame: np.ndarray) -> None: ...
    def speech_ended(self, speech: Speech) -> None: ...


@dataclass(eq=False)
class Speech:
    id: str
    text: str
    voice: Voice | None = None
    lang: str = "auto"
    speed: float = 1.0
    listener: SpeechListener | None = None
    # Audio made elsewhere (the co-host agent synthesizes its own pieces): played instead of
    # asking the engine to speak `text`.
    source: AsyncIterator[AudioChunk] | None = None
    state: str = "queued"  # queued -> speaking -> done | cancelled | failed
    error: str | None = None
    frames_played: int = 0
    played_text: list[str] = field(default_factory=list)  # pieces that actually reached the air
    queued_at: float = field(default_factory=time.monotonic)
    first_frame_at: float | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "cancelled", "failed")


FrameSink = Callable[[np.ndarray], None]
# Observers see every speech start and end without being in the audio path (captions, metrics).
SpeechObserver = Callable[[str, "Speech"], None]

_END = None  # frame-queue marker: the speech's last frame has been queued
QueuedFrame = tuple["Speech", tuple[np.ndarray, str] | None]


@dataclass
class PacerStats:
    ticks: int = 0
    late_ticks: int = 0  # a tick that ran more than one frame behind its schedule
    underruns: int = 0  # a speech was playing but its next frame was not ready
    max_lag_ms: float = 0.0


class Playout:
    """Plays speeches one after another into frame sinks, paced in real time."""

    def __init__(self, engine: Engine, *, name: str = "room") -> None:
        self.engine = engine
        self.name = name
        self.sinks: list[FrameSink] = []
        self.observers: list[SpeechObserver] = []
        self.stats = PacerStats()
        self.paused = False
        self.gain = 1.0  # ducking: the host talks, the co-host goes quiet but keeps going
        self._speeches: deque[Speech] = deque()
        self._wake = asyncio.Event()
        self._frames: asyncio.Queue[QueuedFrame] = asyncio.Queue(maxsize=AHEAD_FRAMES)
        self._current: Speech | None = None  # being synthesized
        self._playing: Speech | None = None  # being played
        self._synth_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ids = itertools.count(1)

    # -- control -------------------------------------------------------------------------
    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._synthesis_loop(), name=f"{self.name}-synthesis"),
                asyncio.create_task(self._pacer(), name=f"{self.name}-pacer"),
            ]

    async def close(self) -> None:
        for speech in [*self._speeches, self._current, self._playing]:
            if speech is not None and not speech.finished:
                self._finish(speech, "cancelled")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def say(self, speech: Speech) -> Speech:
        if len(self._speeches) >= MAX_QUEUED_SPEECHES:
            raise SynthesisError(f"{self.name}: {MAX_QUEUED_SPEECHES} speeches already queued")
        self._speeches.append(speech)
        self._wake.set()
        return speech

    def queued(self) -> list[Speech]:
        return [s for s in (self._playing, self._current) if s is not None and not s.finished] + [
            s for s in self._speeches if s not in (self._playing, self._current)
        ]

    def cancel(self, speech: Speech) -> None:
        """Stop a speech wherever it is; a playing one fades out over one frame."""
        if speech.finished:
            return
        if speech in self._speeches:
            self._speeches.remove(speech)
            self._finish(speech, "cancelled")
            return
        speech.state = "cancelled"  # the pacer fades and finishes it; synthesis stops now
        if speech is self._current and self._synth_task is not None:
            self._synth_task.cancel()
        if speech is not self._playing and speech is not self._current:
            self._finish(speech, "cancelled")

    def cancel_all(self) -> None:
        for speech in self.queued():
            self.cancel(speech)

    # -- synthesis -----------------------------------------------------------------------
    async def _synthesis_loop(self) -> None:
        while True:
            while not self._speeches:
                self._wake.clear()
                await self._wake.wait()
            speech = self._speeches.popleft()
            self._current = speech
            self._synth_task = asyncio.create_task(self._synthesize(speech))
            with contextlib.suppress(asyncio.CancelledError):
                await self._synth_task
            # Hand over the end marker even when cancelled: the pacer finishes the speech
            # after its fade, in playback order.
            await self._frames.put((speech, _END))
            self._current = None

    async def _synthesize(self, speech: Speech) -> None:
        try:
            if speech.source is not None:
                frames = chunk_frames(speech.source)
            else:
                frames = synthesize_frames(self.engine, speech.text, speech.voice, lang=speech.lang, speed=speech.speed)
            async for frame, piece in frames:
                await self._frames.put((speech, (frame, piece)))
        except SynthesisError as exc:
            speech.state, speech.error = "failed", str(exc)
        except Exception as exc:  # an engine bug must not take the room down
            log.exception("%s: synthesis of %r failed", self.name, speech.id)
            speech.state, speech.error = "failed", f"synthesis failed: {exc}"

    # -- playback ------------------------------------------------------------------------
    def _next_frame(self) -> np.ndarray:
        if self.paused:
            return SILENCE
        while True:
            try:
                speech, item = self._frames.get_nowait()
            except asyncio.QueueEmpty:
                if self._playing is not None:
                    self.stats.underruns += 1
                return SILENCE
            if item is None:  # _END
                self._playing = None
                if not speech.finished:
                    self._finish(speech, speech.state if speech.state in ("cancelled", "failed") else "done")
                continue
            frame, piece = item
            if speech.state == "cancelled":
                if speech is self._playing:  # the one frame that fades the cut
                    self._playing = None
                    self._finish(speech, "cancelled")
                    return fade_out(frame) * self.gain
                continue  # dropped: never reached the air
            if speech is not self._playing:
                self._playing = speech
                speech.state = "speaking"
                speech.first_frame_at = time.monotonic()
                self._notify("started", speech)
            speech.frames_played += 1
            if not speech.played_text or speech.played_text[-1] != piece:
                speech.played_text.append(piece)
                self._notify("piece", speech)
            if speech.listener is not None:
                speech.listener.speech_frame(speech, frame)
            return frame * self.gain if self.gain != 1.0 else frame

    def _finish(self, speech: Speech, state: str) -> None:
        speech.state = state
        speech.ended.set()
        self._notify("ended", speech)

    def _notify(self, kind: str, speech: Speech) -> None:
        callbacks: list[SpeechObserver] = list(self.observers)
        if speech.listener is not None:
            listener = speech.listener
            callbacks.append(lambda k, s: listener.speech_started(s) if k == "started"
                             else listener.speech_ended(s) if k == "ended" else None)
        for callback in callbacks:
            try:
                callback(kind, speech)
            except Exception:
                log.exception("%s: speech %s callback failed", self.name, kind)

    async def _pacer(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            frame = self._next_frame()
            for sink in list(self.sinks):
                try:
                    sink(frame)
                except Exception:
                    log.exception("%s: frame sink failed; removing it", self.name)
                    self.sinks.remove(sink)
            self.stats.ticks += 1
            deadline += TICK
            lag = loop.time() - deadline
            if lag > TICK:
                self.stats.late_ticks += 1
                self.stats.max_lag_ms = max(self.stats.max_lag_ms, lag * 1000)
                if lag > 10 * TICK:  # the loop was stalled: resynchronize instead of bursting
                    deadline = loop.time()
            await asyncio.sleep(max(0.0, deadline - loop.time()))
