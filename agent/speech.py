"""Speech handles: text goes in; state, what was played, `wait_played()` and `cancel()` come out.

Whoever wants something said — the co-host's reply, a line the host typed, a bot's `say`, an API
call, a voice sample — makes a `SpeechHandle`, hands it to a `Speaker` (a room's playout), pushes
text pieces into it and closes its input. The speaker is the only code that turns text into audio:
it moves the handle through its states, records which pieces actually went on air, and ends it
with a reason. Ending releases every waiter, whatever the reason: nothing waits on a handle forever.

    queued ──► speaking ◄──► paused        (paused: held by turn-taking while the host talks)
       │          │
       └──────────┴──► done | cancelled | interrupted | failed
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from voxroom.models.engine import Busy, Voice

MAX_PIECES = 400  # pieces one handle may hold unplayed: a reply is a few, a 2,000-character say ~20


class SpeechState(StrEnum):
    QUEUED = "queued"
    SPEAKING = "speaking"
    PAUSED = "paused"
    DONE = "done"  # everything pushed was played
    CANCELLED = "cancelled"  # someone called cancel(): a skip, a DELETE, a bot's cancel, a vanished client
    INTERRUPTED = "interrupted"  # the host started talking and the room's policy is drop
    FAILED = "failed"  # the engine could not say it (the error says why)


ENDED = frozenset({SpeechState.DONE, SpeechState.CANCELLED, SpeechState.INTERRUPTED, SpeechState.FAILED})


class SpeakerBusy(Busy):
    """The speaker holds as many speeches as it takes; try again later (HTTP 429, protocol `busy`)."""


class FrameListener(Protocol):
    """Who wants a speech's audio itself (a bot connection, an API response), besides the room."""

    def speech_frame(self, handle: SpeechHandle, frame: np.ndarray) -> None: ...


@dataclass(frozen=True)
class Piece:
    text: str
    lang: str


_ids = itertools.count(1)


@dataclass(eq=False)
class SpeechHandle:
    """One thing to say. Made by whoever asks; driven by the speaker it is handed to."""

    id: str = field(default_factory=lambda: f"speech-{next(_ids)}")
    voice: Voice | None = None  # None: the stock voice
    lang: str = "auto"
    speed: float = 1.0
    source: str = "bot"  # reply, host, bot, api, sample: who asked (captions and metrics tell them apart)
    reply_to: str | None = None  # the chat event this answers, if any
    listener: FrameListener | None = None
    state: SpeechState = SpeechState.QUEUED
    error: str | None = None
    text: str = ""  # everything pushed so far
    played_text: list[str] = field(default_factory=list)  # pieces that reached the air, in order
    frames_played: int = 0
    played_seconds: float = 0.0
    queued_at: float | None = None  # on the speaker's clock
    started_at: float | None = None  # first frame on air
    ended_at: float | None = None

    def __post_init__(self) -> None:
        self._pieces: deque[Piece] = deque()
        self._input_closed = False
        self._text_ready = asyncio.Event()
        self._ended = asyncio.Event()
        self._cancel_hook: Callable[[SpeechHandle, SpeechState], None] | None = None

    # -- for whoever asks -----------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.state in ENDED

    @property
    def pending_pieces(self) -> int:
        """Pieces pushed and not yet taken by the speaker."""
        return len(self._pieces)

    @property
    def input_closed(self) -> bool:
        return self._input_closed

    def push(self, text: str, lang: str | None = None) -> bool:
        """Add a piece to say after the earlier ones; False once the speech has ended (stop pushing)."""
        if self.finished:
            return False
        if self._input_closed:
            raise RuntimeError(f"speech {self.id}: push after end_input")
        if len(self._pieces) >= MAX_PIECES:
            raise SpeakerBusy(f"speech {self.id} already holds {MAX_PIECES} unplayed pieces")
        text = text.strip()
        if text:
            self._pieces.append(Piece(text, lang or self.lang))
            self.text = f"{self.text} {text}".strip()
            self._text_ready.set()
        return True

    def end_input(self) -> None:
        """No more text follows: the speech ends once what was pushed has been played."""
        self._input_closed = True
        self._text_ready.set()

    def say(self, text: str, lang: str | None = None) -> SpeechHandle:
        """push + end_input: the whole text at once."""
        self.push(text, lang)
        self.end_input()
        return self

    def cancel(self, reason: SpeechState = SpeechState.CANCELLED) -> None:
        """Stop wherever it is: queued text is dropped, a playing speech fades out within a frame."""
        if self.finished:
            return
        self._input_closed = True
        self._text_ready.set()
        if self._cancel_hook is not None:
            self._cancel_hook(self, reason)
        else:  # not handed to a speaker yet: nothing to stop
            self.end(reason)

    async def wait_played(self) -> SpeechState:
        """Return (with the final state) once the speech has ended, for whatever reason."""
        await self._ended.wait()
        return self.state

    # -- for the speaker ------------------------------------------------------------------------
    def attach(self, cancel_hook: Callable[[SpeechHandle, SpeechState], None], now: float) -> None:
        self._cancel_hook = cancel_hook
        self.queued_at = now

    async def next_piece(self) -> Piece | None:
        """The next piece to synthesize; None when the input is closed and drained or the speech ended."""
        while True:
            if self.finished:
                return None
            if self._pieces:
                return self._pieces.popleft()
            if self._input_closed:
                return None
            self._text_ready.clear()
            await self._text_ready.wait()

    def end(self, state: SpeechState, error: str | None = None, now: float | None = None) -> None:
        if self.finished:
            return
        self.state = state
        self.error = error
        self.ended_at = now
        self._pieces.clear()
        self._text_ready.set()
        self._ended.set()

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "state": str(self.state)}


class Speaker(Protocol):
    """Takes speech handles and says them (a room's playout)."""

    def speak(self, handle: SpeechHandle) -> SpeechHandle:
        """Accept a handle (raises SpeakerBusy when full); it plays after those accepted before it."""
        ...

    def cushion_seconds(self) -> float:
        """Audio made but not yet played, in seconds."""
        ...
