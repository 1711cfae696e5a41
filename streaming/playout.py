"""The one synthesis driver: speech handles in, 48 kHz 20 ms frames out, paced on the room's clock.

    speak(handle) ──► waiting handles ──► synthesis task ──► bounded frame queue ──► pacer (every 20 ms) ──► sinks
                      (in order)          Engine.stream per   (2 s ahead, paced:      turn-taking acts here:   (Opus fan-out)
                                          piece ─► FrameMaker  back-pressure)          hold, duck, drop         + the handle's listener

Every word voxroom says passes through a `Playout`: a room has one (paced: real time, silence when
idle), and a bot's `say` without a room, an API request or a voice sample uses an unpaced one
(frames leave as fast as the engine makes them and the consumer takes them; a bot's stays at most
`lead` seconds ahead of real time, so a bot that reads as it plays never has a backlog of unread
audio in front of the server's close frame). It is the only caller
of `Engine.stream`, the only place where the host's voice acts on audio (it reads the room's
`TurnTaking` at every tick: hold while the host talks, duck to the configured gain, or drop the
speech on air), and the one that reports what was actually played, on the room's event bus.

Cancelling a handle (a skip, a DELETE, a bot's cancel, a vanished client, the host's voice under
the drop policy) stops its synthesis, drops its queued frames, plays the frame that was due once
more with a 20 ms fade, and ends the handle, which releases everyone waiting on it. Nothing here
waits on anything that cannot be released: the synthesis task waits on the frame queue, which the
pacer drains every tick, and on the handle's text, which ends when the handle does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voxroom.agent.clock import Clock
from voxroom.agent.lifecycle import EventBus, PieceOnAir, SpeechEnded, SpeechStarted
from voxroom.agent.speech import SpeakerBusy, SpeechHandle, SpeechState
from voxroom.agent.turns import HostSpeechPolicy, TurnTaking
from voxroom.models.engine import Busy, Engine, SynthesisError, Voice
from voxroom.streaming.audio import FRAME_SECONDS, SILENCE, FrameMaker, ramp

log = logging.getLogger(__name__)

AHEAD_FRAMES = 25  # unpaced: at most 500 ms made ahead of what the consumer took
# Paced (a room): at most 2 s made ahead of playback. The next piece's synthesis starts when the one
# before is all queued, so this is the time it has to be ready: several rooms taking turns at a busy
# CPU need more than half a second, and 2 s of frames cost 375 KB.
PACED_AHEAD_FRAMES = 100
BUSY_PATIENCE_S = 5.0  # a room's piece waits this long for a place in a busy engine before it is given up
BUSY_RETRY_S = 0.1
MAX_QUEUED_SPEECHES = 32
TICK = FRAME_SECONDS

FrameSink = Callable[[np.ndarray], None]
# A queued frame: the handle, the frame (None marks the handle's end), and (piece number, piece text).
QueuedFrame = tuple[SpeechHandle, np.ndarray | None, tuple[int, str]]
_END: tuple[int, str] = (0, "")


class FrameQueue:
    """Frames made but not yet played, at most `limit` (the synthesis waits for room: back-pressure)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[QueuedFrame] = deque()
        self._room = asyncio.Event()
        self._filled = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: QueuedFrame) -> None:
        while len(self._items) >= self.limit:
            self._room.clear()
            await self._room.wait()
        self._items.append(item)
        self._filled.set()

    def peek(self) -> QueuedFrame | None:
        return self._items[0] if self._items else None

    def pop(self) -> QueuedFrame | None:
        if not self._items:
            return None
        self._room.set()
        return self._items.popleft()

    async def get(self) -> QueuedFrame:
        while not self._items:
            self._filled.clear()
            await self._filled.wait()
        item = self.pop()
        assert item is not None
        return item


@dataclass
class PacerStats:
    ticks: int = 0
    late_ticks: int = 0  # a tick that ran more than one frame behind its schedule
    underruns: int = 0  # a speech was playing but its next frame was not ready
    max_lag_ms: float = 0.0


class Playout:
    """Says speech handles one after another; see the module docstring."""

    def __init__(self, engine: Engine, clock: Clock, *, name: str = "room", events: EventBus | None = None,
                 turns: TurnTaking | None = None, paced: bool = True, lead: float | None = None,
                 max_speeches: int = MAX_QUEUED_SPEECHES) -> None:
        self.engine = engine
        self.clock = clock
        self.name = name
        self.events = events if events is not None else EventBus(name)
        self.turns = turns
        self.paced = paced
        self.lead = lead  # unpaced only: how far a frame may leave ahead of real time (None: no limit)
        self.max_speeches = max_speeches
        self.sinks: list[FrameSink] = []
        self.stats = PacerStats()
        self._waiting: deque[SpeechHandle] = deque()
        self._wake = asyncio.Event()
        self._frames = FrameQueue(PACED_AHEAD_FRAMES if paced else AHEAD_FRAMES)
        self._failed: set[SpeechHandle] = set()  # nothing of it could be said (read at its end marker)
        self._current: SpeechHandle | None = None  # being synthesized
        self._synth_task: asyncio.Task[None] | None = None
        self._playing: SpeechHandle | None = None  # on air
        self._piece: dict[SpeechHandle, int] = {}  # the piece number last on air, per playing handle
        self._fading: tuple[SpeechHandle, SpeechState] | None = None
        self._gain = 1.0  # the gain the last frame ended on
        self._held = False
        self._seen_interruptions = turns.interruptions if turns is not None else 0
        self._tasks: list[asyncio.Task[None]] = []

    # -- control -------------------------------------------------------------------------------
    def start(self) -> None:
        if not self._tasks:
            output = self._pacer() if self.paced else self._deliver()
            self._tasks = [
                asyncio.create_task(self._synthesis_loop(), name=f"{self.name}-synthesis"),
                asyncio.create_task(output, name=f"{self.name}-{'pacer' if self.paced else 'delivery'}"),
            ]

    async def close(self) -> None:
        """Fade out what is playing (one frame), end every handle, stop the tasks."""
        playing = self._playing
        if playing is not None and self.paced and self._tasks and not self._held:
            playing.cancel()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(playing.wait_played(), 0.1)
        for handle in self.queued():
            self._end(handle, SpeechState.CANCELLED)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def speak(self, handle: SpeechHandle) -> SpeechHandle:
        if handle.finished:
            return handle
        if len(self.queued()) >= self.max_speeches:
            raise SpeakerBusy(f"{self.name}: {self.max_speeches} speeches already queued")
        handle.attach(self._cancel, self.clock.now())
        self._waiting.append(handle)
        self._wake.set()
        return handle

    def queued(self) -> list[SpeechHandle]:
        """Every handle not yet ended, in playing order."""
        out: list[SpeechHandle] = []
        for handle in (self._playing, self._current, *self._waiting):
            if handle is not None and not handle.finished and handle not in out:
                out.append(handle)
        return out

    @property
    def held(self) -> bool:
        """True while turn-taking holds the room's audio (the host is talking)."""
        return self._held

    def find(self, speech_id: str) -> SpeechHandle | None:
        return next((h for h in self.queued() if h.id == speech_id), None)

    def cancel_all(self) -> None:
        for handle in self.queued():
            handle.cancel()

    def cushion_seconds(self) -> float:
        """Audio made but not yet played: what an engine that paces its start may count on."""
        return len(self._frames) * TICK if self.paced else 0.0

    def _cancel(self, handle: SpeechHandle, reason: SpeechState) -> None:
        """The handles' cancel hook: stop synthesis now; a speech on air fades on the next tick."""
        if handle in self._waiting:
            self._waiting.remove(handle)
        if handle is self._current and self._synth_task is not None:
            self._synth_task.cancel()
        if handle is self._playing and self.paced and self._tasks and not self._held:
            self._fading = (handle, reason)
        else:
            self._end(handle, reason)

    def _end(self, handle: SpeechHandle, state: SpeechState, error: str | None = None) -> None:
        if handle.finished:
            return
        if handle is self._playing:
            self._playing = None
        self._piece.pop(handle, None)
        handle.end(state, error if error is not None else handle.error, self.clock.now())
        self.events.publish(SpeechEnded(
            id=handle.id, text=handle.text, state=str(handle.state), source=handle.source,
            reply_to=handle.reply_to, frames=handle.frames_played, played_text=" ".join(handle.played_text),
            error=handle.error, at=self.clock.now()))

    # -- synthesis ------------------------------------------------------------------------------
    async def _synthesis_loop(self) -> None:
        while True:
            while not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            handle = self._waiting.popleft()
            if handle.finished:
                continue
            self._current = handle
            task = asyncio.create_task(self._synthesize(handle), name=f"{self.name}-{handle.id}")
            self._synth_task = task
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:  # the playout is closing: take the speech's task with it
                task.cancel()
                raise
            finally:
                self._current, self._synth_task = None, None
            if not task.cancelled() and task.exception() is not None:
                log.error("%s: synthesis of %s stopped: %r", self.name, handle.id, task.exception())
            if not task.cancelled() and not handle.finished:
                await self._frames.put((handle, None, _END))  # played in order, after its last frame

    async def _synthesize(self, handle: SpeechHandle) -> None:
        maker: FrameMaker | None = None
        number, produced, errors = 0, 0, []
        while (piece := await handle.next_piece()) is not None:
            number += 1
            label = (number, piece.text)
            # A live room waits a little for a busy engine (API callers may fill it; the room comes first)
            # before it gives the piece up; an unpaced caller hears `busy` at once and may retry itself.
            patience = self.clock.now() + BUSY_PATIENCE_S if self.paced else -1.0
            made_before = produced
            while True:
                stream = self.engine.stream(piece.text, handle.voice, lang=piece.lang, speed=handle.speed,
                                            queued_s=self.cushion_seconds())
                try:
                    async for chunk in stream:
                        if chunk.text and chunk.text != label[1]:  # the engine says which part of the piece it is
                            number += 1
                            label = (number, chunk.text)
                        if maker is not None and maker.input_rate != chunk.sample_rate:
                            for frame in maker.flush():
                                await self._frames.put((handle, frame, label))
                            maker = None
                        if maker is None:
                            maker = FrameMaker(chunk.sample_rate)
                        for frame in maker.push(chunk.samples):
                            produced += 1
                            await self._frames.put((handle, frame, label))
                except Busy as exc:  # refused before it began: nothing of the piece was made
                    if produced == made_before and self.clock.now() < patience and not handle.finished:
                        await self.clock.sleep(BUSY_RETRY_S)
                        continue
                    log.info("%s: %s could not say %r: %s", self.name, handle.id, piece.text[:60], exc)
                    errors.append(str(exc))
                except SynthesisError as exc:  # this piece cannot be said; the others still can
                    log.info("%s: %s could not say %r: %s", self.name, handle.id, piece.text[:60], exc)
                    errors.append(str(exc))
                except Exception as exc:  # an engine bug must not take the room down
                    log.exception("%s: synthesis of %s failed", self.name, handle.id)
                    errors.append(f"synthesis failed: {exc}")
                finally:
                    aclose = getattr(stream, "aclose", None)
                    if aclose is not None:
                        await aclose()
                break
            if maker is not None and handle.pending_pieces == 0:
                # No more text is ready (an LLM still writing): let the tail out now instead of holding
                # it until the next piece.
                for frame in maker.flush():
                    produced += 1
                    await self._frames.put((handle, frame, label))
                maker = None
        if errors:
            handle.error = errors[0]
            if produced == 0:
                self._failed.add(handle)

    # -- playback -------------------------------------------------------------------------------
    def _take(self, item: QueuedFrame) -> np.ndarray | None:
        """Account for one queued item; the frame to play, or None (an end marker, a dropped frame)."""
        handle, frame, (number, piece) = item
        if handle.finished:
            self._failed.discard(handle)
            return None  # cancelled: never reaches the air
        if frame is None:
            failed = handle in self._failed
            self._failed.discard(handle)
            self._end(handle, SpeechState.FAILED if failed else SpeechState.DONE)
            return None
        now = self.clock.now()
        if handle is not self._playing:
            self._playing = handle
            handle.state = SpeechState.SPEAKING
            handle.started_at = now
            self.events.publish(SpeechStarted(id=handle.id, text=handle.text, state=str(handle.state),
                                              source=handle.source, reply_to=handle.reply_to, at=now))
        handle.frames_played += 1
        handle.played_seconds += TICK
        if self._piece.get(handle) != number:
            self._piece[handle] = number
            handle.played_text.append(piece)
            self.events.publish(PieceOnAir(id=handle.id, text=handle.text, state=str(handle.state), piece=piece,
                                           source=handle.source, at=now))
        if handle.listener is not None:
            try:
                handle.listener.speech_frame(handle, frame)
            except Exception:
                log.exception("%s: listener of %s failed; detaching it", self.name, handle.id)
                handle.listener = None
        return frame

    def _next_frame(self) -> np.ndarray | None:
        while (item := self._frames.pop()) is not None:
            frame = self._take(item)
            if frame is not None:
                return frame
        return None

    def _pop_frame_of(self, handle: SpeechHandle) -> np.ndarray | None:
        """The next queued frame if it belongs to `handle` (the one to fade out on a cut)."""
        item = self._frames.peek()
        if item is None or item[0] is not handle or item[1] is None:
            return None
        self._frames.pop()
        return self._take(item)

    def _turn_effect(self) -> tuple[bool, float]:
        """Read the room's turn-taking once per tick: (hold the audio, gain). Drops act here too."""
        turns = self.turns
        if turns is None:
            return False, 1.0
        if turns.interruptions != self._seen_interruptions:
            self._seen_interruptions = turns.interruptions
            playing = self._playing
            if turns.policy is HostSpeechPolicy.DROP and playing is not None and self._fading is None:
                playing.cancel(SpeechState.INTERRUPTED)
        return turns.holds_audio(), turns.gain()

    def _tick(self) -> np.ndarray:
        held, gain = self._turn_effect()
        if self._fading is not None:
            handle, reason = self._fading
            self._fading = None
            frame = self._pop_frame_of(handle)
            self._end(handle, reason)
            if frame is not None and not self._held:
                return ramp(frame, self._gain, 0.0)
            return SILENCE
        if held:
            playing = self._playing
            if not self._held and playing is not None:
                self._held = True
                playing.state = SpeechState.PAUSED
                frame = self._pop_frame_of(playing)
                if frame is not None:  # glide into the pause instead of cutting
                    return ramp(frame, self._gain, 0.0)
            self._held = True
            return SILENCE
        was_held, self._held = self._held, False
        if was_held and self._playing is not None and not self._playing.finished:
            self._playing.state = SpeechState.SPEAKING
        frame = self._next_frame()
        if frame is None:
            if self._playing is not None:
                self.stats.underruns += 1
            return SILENCE
        start = 0.0 if was_held else self._gain
        self._gain = gain
        return ramp(frame, start, gain)

    def _to_sinks(self, frame: np.ndarray) -> None:
        for sink in list(self.sinks):
            try:
                sink(frame)
            except Exception:  # one broken consumer must not stop the room's audio for the others
                log.exception("%s: frame sink failed; removing it", self.name)
                self.sinks.remove(sink)

    async def _pacer(self) -> None:
        deadline = self.clock.now()
        while True:
            self._to_sinks(self._tick())
            self.stats.ticks += 1
            deadline += TICK
            lag = self.clock.now() - deadline
            if lag > TICK:
                self.stats.late_ticks += 1
                self.stats.max_lag_ms = max(self.stats.max_lag_ms, lag * 1000)
                if lag > 10 * TICK:  # the loop was stalled: resynchronize instead of bursting
                    deadline = self.clock.now()
            await self.clock.sleep(deadline - self.clock.now())

    async def _deliver(self) -> None:
        """Unpaced: each frame goes to its handle's listener as soon as the listener can take it, and,
        with `lead`, no sooner than `lead` seconds before its time counted from the speech's first frame."""
        first: tuple[SpeechHandle, float] | None = None  # the speech being delivered, and when it began
        while True:
            item = await self._frames.get()
            handle = item[0]
            if self.lead is not None and item[1] is not None and not handle.finished:
                if first is None or first[0] is not handle:
                    first = (handle, self.clock.now())
                wait = first[1] + handle.frames_played * TICK - self.lead - self.clock.now()
                if wait > 0:
                    await self.clock.sleep(wait)
            frame = self._take(item)
            if frame is None:
                continue
            self._to_sinks(frame)
            listener = handle.listener
            writable = getattr(listener, "writable", None)
            if writable is not None:
                await writable()


class FrameCollector:
    """A `FrameListener` that keeps every frame (a voice sample, a whole response body)."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def speech_frame(self, handle: SpeechHandle, frame: np.ndarray) -> None:
        self.frames.append(frame)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.frames) if self.frames else np.zeros(0, np.float32)


async def render_speech(engine: Engine, clock: Clock, text: str, voice: Voice | None, *, lang: str = "auto",
                        speed: float = 1.0, source: str = "sample") -> np.ndarray:
    """All of `text` as 48 kHz audio, said through an unpaced playout (SynthesisError if none of it could be)."""
    playout = Playout(engine, clock, name=source, paced=False)
    collector = FrameCollector()
    handle = SpeechHandle(voice=voice, lang=lang, speed=speed, source=source, listener=collector).say(text)
    playout.start()
    try:
        state = await playout.speak(handle).wait_played()
    finally:
        await playout.close()
    if state is SpeechState.FAILED:
        raise SynthesisError(handle.error or "nothing could be said")
    return collector.audio()
