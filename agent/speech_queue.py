"""The speech queue: which chat event the co-host answers next.

Gifts outrank questions, questions outrank messages (follows and joins come last). Within a
priority the oldest goes first; the host can pin an event to the front, skip one or clear all.
The queue keeps chat from drowning the room: repeated messages are dropped, each user gets a rate
limit, events older than their maximum age are dropped instead of answered late, and when the
queue is full the lowest-priority, oldest event is evicted. Nothing is dropped silently: every
drop is reported to `on_drop` with a reason.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from voxroom.agent.clock import Clock
from voxroom.agent.events import ChatEvent, EventKind

DEFAULT_PRIORITY: dict[EventKind, int] = {
    EventKind.HOST: 4,
    EventKind.GIFT: 3,
    EventKind.QUESTION: 2,
    EventKind.MESSAGE: 1,
    EventKind.FOLLOW: 0,
    EventKind.JOIN: 0,
    EventKind.IDLE: 0,
}
# Thanks for a gift is still welcome a few minutes late; a chat line is not.
DEFAULT_MAX_AGE: dict[EventKind, float] = {EventKind.GIFT: 300.0}


class Outcome(StrEnum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"
    FULL = "full"  # the new event was the lowest priority in a full queue
    EVICTED = "evicted"  # an older, lower-priority event made room for a new one
    STALE = "stale"
    SKIPPED = "skipped"
    CLEARED = "cleared"


@dataclass
class QueuedEvent:
    event: ChatEvent
    priority: int
    enqueued_at: float
    order: int
    pinned: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def _dedupe_key(text: str) -> str:
    # "LOL!!", "lol" and "l o l" are the same message for the purpose of not reading it twice.
    normalized = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\W_]+", "", normalized) or normalized


class SpeechQueue:
    def __init__(
        self,
        clock: Clock,
        *,
        max_length: int = 50,
        max_age: float = 60.0,
        max_age_by_kind: Mapping[EventKind, float] | None = None,
        dedupe_window: float = 30.0,
        user_limit: int = 3,
        user_window: float = 30.0,
        priorities: Mapping[EventKind, int] | None = None,
        on_drop: Callable[[ChatEvent, Outcome], None] | None = None,
    ) -> None:
        self.clock = clock
        self.max_length = max_length
        self.max_age = max_age
        self.max_age_by_kind = dict(DEFAULT_MAX_AGE if max_age_by_kind is None else max_age_by_kind)
        self.dedupe_window = dedupe_window
        self.user_limit = user_limit
        self.user_window = user_window
        self.priorities = dict(DEFAULT_PRIORITY if priorities is None else priorities)
        self.on_drop = on_drop
        self._items: list[QueuedEvent] = []
        self._order = itertools.count()
        self._recent_texts: dict[str, float] = {}
        self._user_times: dict[str, deque[float]] = {}
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def _drop(self, event: ChatEvent, outcome: Outcome) -> Outcome:
        if self.on_drop is not None:
            self.on_drop(event, outcome)
        return outcome

    def _age_limit(self, kind: EventKind) -> float:
        return self.max_age_by_kind.get(kind, self.max_age)

    def put(self, event: ChatEvent) -> Outcome:
        """Offer an event; the outcome says whether it was queued and, if not, why."""
        now = self.clock.now()
        rate_limited = event.kind in (EventKind.MESSAGE, EventKind.QUESTION)  # never refuse a gift
        if rate_limited:
            key = _dedupe_key(event.text)
            seen = self._recent_texts.get(key)
            if seen is not None and now - seen < self.dedupe_window:
                return self._drop(event, Outcome.DUPLICATE)
            times = self._user_times.setdefault(event.user.casefold(), deque())
            while times and now - times[0] >= self.user_window:
                times.popleft()
            if len(times) >= self.user_limit:
                return self._drop(event, Outcome.RATE_LIMITED)
        priority = self.priorities.get(event.kind, 0)
        if len(self._items) >= self.max_length:
            victims = [q for q in self._items if not q.pinned]
            victim = min(victims, key=lambda q: (q.priority, q.order), default=None)
            if victim is None or victim.priority > priority or (
                victim.priority == priority and event.kind is not EventKind.GIFT
            ):
                # Among equals the older event keeps its place: first come, first answered.
                return self._drop(event, Outcome.FULL)
            self._items.remove(victim)
            self._drop(victim.event, Outcome.EVICTED)
        if rate_limited:
            self._recent_texts[key] = now
            times.append(now)
            if len(self._recent_texts) > 4 * self.max_length:
                self._recent_texts = {
                    k: t for k, t in self._recent_texts.items() if now - t < self.dedupe_window
                }
        self._items.append(QueuedEvent(event, priority, now, next(self._order)))
        self._changed.set()
        return Outcome.QUEUED

    def _drop_stale(self) -> None:
        now = self.clock.now()
        for item in list(self._items):
            if not item.pinned and now - item.enqueued_at > self._age_limit(item.event.kind):
                self._items.remove(item)
                self._drop(item.event, Outcome.STALE)

    def _ranked(self) -> list[QueuedEvent]:
        return sorted(self._items, key=lambda q: (not q.pinned, -q.priority, q.order))

    def get_nowait(self) -> QueuedEvent | None:
        """The next event to answer (stale ones are dropped first), or None when empty."""
        self._drop_stale()
        ranked = self._ranked()
        if not ranked:
            self._changed.clear()
            return None
        self._items.remove(ranked[0])
        return ranked[0]

    async def get(self) -> QueuedEvent:
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            await self._changed.wait()

    async def wait_for_event(self) -> None:
        """Return as soon as the queue holds something (for callers racing it against a timer)."""
        while not self._items:
            self._changed.clear()
            await self._changed.wait()

    # Host console operations.
    def skip(self, event_id: str) -> bool:
        for item in self._items:
            if item.event.id == event_id:
                self._items.remove(item)
                self._drop(item.event, Outcome.SKIPPED)
                return True
        return False

    def pin(self, event_id: str) -> bool:
        """Answer this event next (pinned events are never evicted or dropped as stale)."""
        for item in self._items:
            if item.event.id == event_id:
                item.pinned = True
                item.order = -next(self._order)  # the latest pin goes first among pins
                return True
        return False

    def clear(self) -> int:
        dropped = list(self._items)
        self._items.clear()
        for item in dropped:
            self._drop(item.event, Outcome.CLEARED)
        return len(dropped)

    def snapshot(self) -> list[dict[str, Any]]:
        """The queue in answer order, as JSON-ready dicts for the host console."""
        now = self.clock.now()
        return [
            {
                "id": q.event.id,
                "kind": str(q.event.kind),
                "user": q.event.user,
                "text": q.event.text,
                "platform": q.event.platform,
                "amount": q.event.amount,
                "priority": q.priority,
                "pinned": q.pinned,
                "waiting_s": round(now - q.enqueued_at, 3),
            }
            for q in self._ranked()
        ]
