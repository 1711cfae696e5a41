"""The speech queue: which chat event the co-host answers next.

Gifts outrank questions, questions outrank messages (follows and joins come last). Within a
priority the oldest goes first; the host can pin an event to the front, skip one or clear all.
The queue keeps chat from drowning the room: repeated messages are dropped, each user gets a rate
limit, events older than their maximum age are dropped instead of answered late, and when the
queue is full the lowest-priority, oldest event is evicted. Nothing is dropped silently: every
drop is reported to `on_drop` with a reason.

With `paid_rules` (agent/paid_rules.py), paid events take lanes: those worth enough are answered
first and read in full; small ones wait `batch_window_s` and become one thanks per gift name
(`ChatEvent.others` lists the further gifters), and after `max_thanks_in_row` such thanks a waiting
question or message is answered before the next.
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
from voxroom.agent.paid_rules import PaidEventRules

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
    BATCHED = "batched"  # a small paid event held to be thanked together with others
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


@dataclass
class _Batch:
    """Small paid events of one gift name, summed as they come (a flood keeps only the names)."""

    first: ChatEvent
    users: dict[str, None] = field(default_factory=dict)  # in order of their first gift
    events: int = 0
    count: int = 0
    value_usd: float = 0.0

    def add(self, event: ChatEvent) -> None:
        self.users[event.user] = None
        self.events += 1
        self.count += event.count
        self.value_usd += event.value_usd

    def thanks(self, event_id: str) -> ChatEvent:
        users = list(self.users)
        first = self.first
        return ChatEvent(kind=EventKind.GIFT, user=users[0], text="", platform=first.platform,
                         timestamp=first.timestamp, id=event_id, amount=float(self.count), currency=first.currency,
                         gift=first.gift, tier=first.tier, value_usd=round(self.value_usd, 2), count=self.count,
                         others=tuple(users[1:]))


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
        paid_rules: PaidEventRules | None = None,
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
        self.paid_rules = paid_rules
        self._batches: dict[str, _Batch] = {}  # gift name -> the small paid events waiting for thanks
        self._batch_started: dict[str, float] = {}
        self._batch_ids = itertools.count(1)
        self._thanks_in_row = 0

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
        if self.paid_rules is not None and self.paid_rules.batches(event):
            key = event.gift.casefold()
            self._batches.setdefault(key, _Batch(event)).add(event)
            self._batch_started.setdefault(key, now)
            self._changed.set()  # a waiting getter learns the new deadline
            return Outcome.BATCHED
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
        lane = ""
        if self.paid_rules is not None and self.paid_rules.reads_in_full(event):
            lane = "paid"
        elif self.paid_rules is not None and event.kind is EventKind.GIFT and event.others:
            lane = "thanks"  # thanks a connector batched already (TikTok likes)
        self._items.append(QueuedEvent(event, priority, now, next(self._order), meta={"lane": lane} if lane else {}))
        self._changed.set()
        return Outcome.QUEUED

    # -- small paid events, thanked in batches -------------------------------------------------
    def _batch_deadline(self) -> float | None:
        if not self._batch_started or self.paid_rules is None:
            return None
        return min(self._batch_started.values()) + self.paid_rules.batch_window_s

    def _flush_batches(self) -> None:
        if self.paid_rules is None or not self._batches:
            return
        now = self.clock.now()
        for key, started in list(self._batch_started.items()):
            if now < started + self.paid_rules.batch_window_s:  # the same sum as _batch_deadline()
                continue
            batch = self._batches.pop(key)
            del self._batch_started[key]
            self._items.append(QueuedEvent(batch.thanks(f"thanks-{next(self._batch_ids)}"),
                                           self.priorities.get(EventKind.GIFT, 0), now, next(self._order),
                                           meta={"lane": "thanks", "batched": batch.events}))

    @property
    def batched(self) -> int:
        """Small paid events waiting for their batch thanks."""
        return sum(batch.events for batch in self._batches.values())

    async def _wait_changed(self) -> None:
        """Until something is put, or until the next batch is due."""
        deadline = self._batch_deadline()
        if deadline is None:
            await self._changed.wait()
            return
        waiters = [asyncio.ensure_future(self._changed.wait()),
                   asyncio.ensure_future(self.clock.sleep(deadline - self.clock.now()))]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

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
        self._flush_batches()
        self._drop_stale()
        ranked = self._ranked()
        if not ranked:
            self._changed.clear()
            return None
        chosen = ranked[0]
        if chosen.meta.get("lane") == "thanks" and not chosen.pinned and self.paid_rules is not None \
                and self._thanks_in_row >= self.paid_rules.max_thanks_in_row:
            chat = (q for q in ranked if q.event.kind in (EventKind.QUESTION, EventKind.MESSAGE))
            chosen = next(chat, chosen)
        self._thanks_in_row = self._thanks_in_row + 1 if chosen.meta.get("lane") == "thanks" else 0
        self._items.remove(chosen)
        return chosen

    async def get(self) -> QueuedEvent:
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            await self._wait_changed()

    async def wait_for_event(self) -> None:
        """Return as soon as the queue holds something (for callers racing it against a timer)."""
        self._flush_batches()
        while not self._items:
            self._changed.clear()
            await self._wait_changed()
            self._flush_batches()

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
        dropped = list(self._items) + [QueuedEvent(b.thanks("cleared"), 0, 0.0, 0) for b in self._batches.values()]
        self._items.clear()
        self._batches.clear()
        self._batch_started.clear()
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
