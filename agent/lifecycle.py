"""One typed event stream for everything said in a room, and the one way to watch it.

The playout reports what the audio did (a speech started, a piece went on air, it ended and why);
the co-host reports what the chat did (an event was accepted, dropped or moderated, a reply started
or finished with its timings, its state, the host's voice). Captions, the host console, bot
sessions and metrics are all subscribers of one `EventBus` per room: none of them sits in the audio
path, and a subscriber that fails is logged and never breaks what it watches.

Each event's `type` and `as_dict()` are its JSON form on the room's caption socket
(`speech.started`, `cohost.reply_finished`, …), which pages and outside scripts read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LifecycleEvent:
    TYPE: ClassVar[str] = ""

    @property
    def type(self) -> str:
        return self.TYPE

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, **asdict(self)}


# -- speech (reported by the playout, except `SpeechQueued` for lines waiting in the co-host) ----
@dataclass(frozen=True)
class SpeechQueued(LifecycleEvent):
    TYPE: ClassVar[str] = "speech.queued"
    id: str
    text: str
    state: str = "queued"
    source: str = "host"


@dataclass(frozen=True)
class SpeechStarted(LifecycleEvent):
    """The speech's first frame is on air now."""

    TYPE: ClassVar[str] = "speech.started"
    id: str
    text: str
    state: str
    source: str
    reply_to: str | None
    at: float


@dataclass(frozen=True)
class PieceOnAir(LifecycleEvent):
    TYPE: ClassVar[str] = "speech.piece"
    id: str
    text: str
    state: str
    piece: str
    source: str
    at: float


@dataclass(frozen=True)
class SpeechEnded(LifecycleEvent):
    TYPE: ClassVar[str] = "speech.ended"
    id: str
    text: str
    state: str  # done, cancelled, interrupted, failed: the reason it ended
    source: str
    reply_to: str | None
    frames: int
    played_text: str
    error: str | None
    at: float


# -- the co-host ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventAccepted(LifecycleEvent):
    """A chat event was offered to the co-host; `outcome` says whether it was queued and, if not, why."""

    TYPE: ClassVar[str] = "cohost.event"
    id: str
    kind: str
    user: str
    outcome: str


@dataclass(frozen=True)
class EventDropped(LifecycleEvent):
    """A queued event left the queue without a reply (skipped, stale, evicted, cleared, …)."""

    TYPE: ClassVar[str] = "cohost.dropped"
    id: str
    kind: str
    user: str
    text: str
    reason: str


@dataclass(frozen=True)
class Moderated(LifecycleEvent):
    TYPE: ClassVar[str] = "cohost.moderated"
    entry: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, **self.entry}


@dataclass(frozen=True)
class ReplyStarted(LifecycleEvent):
    TYPE: ClassVar[str] = "cohost.reply_started"
    id: str
    kind: str
    user: str
    text: str
    queue_wait: float


@dataclass(frozen=True)
class ReplyPiece(LifecycleEvent):
    """A piece of a reply passed output moderation and was handed to the speech."""

    TYPE: ClassVar[str] = "cohost.piece"
    id: str
    text: str


@dataclass(frozen=True)
class ReplyFinished(LifecycleEvent):
    """A reply ended; `first_audio` is from the reply's start to its first frame on air."""

    TYPE: ClassVar[str] = "cohost.reply_finished"
    id: str
    kind: str
    outcome: str
    text: str
    queue_wait: float
    llm_first_token: float | None
    first_audio: float | None
    total: float
    source: str
    audio_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CoHostState(LifecycleEvent):
    TYPE: ClassVar[str] = "cohost.state"
    state: str


@dataclass(frozen=True)
class HostSpeaking(LifecycleEvent):
    TYPE: ClassVar[str] = "cohost.host_speaking"
    speaking: bool


Subscriber = Callable[[LifecycleEvent], None]


class EventBus:
    """Publish/subscribe, synchronous and in order: a subscriber sees events in the order they happened."""

    def __init__(self, name: str = "room") -> None:
        self.name = name
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Start watching; call the returned function to stop."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
        return unsubscribe

    def publish(self, event: LifecycleEvent) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # watchers never break what they watch
                log.exception("%s: subscriber failed on %s", self.name, event.type)

    def __len__(self) -> int:
        return len(self._subscribers)
