"""The speech queue: priorities, de-duplication, rate limits, staleness, eviction, console operations."""

from __future__ import annotations

import asyncio
import itertools

from voxroom.agent.clock import VirtualClock
from voxroom.agent.events import ChatEvent, EventKind
from voxroom.agent.speech_queue import Outcome, SpeechQueue

_ids = itertools.count()


def ev(kind: EventKind, user: str = "u", text: str = "", amount: float = 0.0) -> ChatEvent:
    return ChatEvent(kind, user, text or f"text {next(_ids)}", "test", 0.0, f"e{next(_ids)}", amount)


def drain(queue: SpeechQueue) -> list[ChatEvent]:
    out = []
    while (item := queue.get_nowait()) is not None:
        out.append(item.event)
    return out


def test_gifts_before_questions_before_messages_then_oldest_first() -> None:
    queue = SpeechQueue(VirtualClock())
    m1, m2 = ev(EventKind.MESSAGE, "a"), ev(EventKind.MESSAGE, "b")
    q = ev(EventKind.QUESTION, "c")
    g = ev(EventKind.GIFT, "d", amount=5)
    f = ev(EventKind.FOLLOW, "e")
    for e in (f, m1, q, m2, g):
        assert queue.put(e) is Outcome.QUEUED
    assert drain(queue) == [g, q, m1, m2, f]


def test_duplicates_dropped_within_window_and_reported() -> None:
    clock = VirtualClock()
    dropped: list[tuple[str, Outcome]] = []
    queue = SpeechQueue(clock, dedupe_window=30.0, on_drop=lambda e, o: dropped.append((e.user, o)))
    assert queue.put(ev(EventKind.MESSAGE, "a", "LOL!!")) is Outcome.QUEUED
    assert queue.put(ev(EventKind.MESSAGE, "b", "lol")) is Outcome.DUPLICATE
    assert dropped == [("b", Outcome.DUPLICATE)]
    clock._now = 31.0
    assert queue.put(ev(EventKind.MESSAGE, "c", "lol")) is Outcome.QUEUED


def test_gifts_are_never_deduplicated_or_rate_limited() -> None:
    queue = SpeechQueue(VirtualClock(), user_limit=1)
    for _ in range(3):
        assert queue.put(ev(EventKind.GIFT, "whale", "rose", amount=1)) is Outcome.QUEUED


def test_per_user_rate_limit_on_virtual_clock() -> None:
    clock = VirtualClock()
    queue = SpeechQueue(clock, user_limit=2, user_window=10.0)
    assert queue.put(ev(EventKind.MESSAGE, "spam")) is Outcome.QUEUED
    assert queue.put(ev(EventKind.MESSAGE, "Spam")) is Outcome.QUEUED
    assert queue.put(ev(EventKind.MESSAGE, "spam")) is Outcome.RATE_LIMITED
    assert queue.put(ev(EventKind.MESSAGE, "other")) is Outcome.QUEUED
    clock._now = 10.0
    assert queue.put(ev(EventKind.MESSAGE, "spam")) is Outcome.QUEUED


def test_stale_events_dropped_gifts_live_longer_pins_never_stale() -> None:
    clock = VirtualClock()
    dropped: list[Outcome] = []
    queue = SpeechQueue(clock, max_age=60.0, on_drop=lambda e, o: dropped.append(o))
    old, pinned, gift = ev(EventKind.MESSAGE, "a"), ev(EventKind.MESSAGE, "b"), ev(EventKind.GIFT, "c")
    for e in (old, pinned, gift):
        queue.put(e)
    queue.pin(pinned.id)
    clock._now = 61.0
    fresh = ev(EventKind.MESSAGE, "d")
    queue.put(fresh)
    assert drain(queue) == [pinned, gift, fresh]
    assert dropped == [Outcome.STALE]


def test_full_queue_evicts_lowest_priority_oldest_first() -> None:
    dropped: list[tuple[str, Outcome]] = []
    queue = SpeechQueue(VirtualClock(), max_length=3, on_drop=lambda e, o: dropped.append((e.user, o)))
    m1, m2, q = ev(EventKind.MESSAGE, "m1"), ev(EventKind.MESSAGE, "m2"), ev(EventKind.QUESTION, "q")
    for e in (m1, m2, q):
        queue.put(e)
    assert queue.put(ev(EventKind.MESSAGE, "m3")) is Outcome.FULL  # equal priority: first come keeps its place
    assert queue.put(ev(EventKind.GIFT, "g", amount=1)) is Outcome.QUEUED
    assert ("m1", Outcome.EVICTED) in dropped
    assert queue.put(ev(EventKind.QUESTION, "q2")) is Outcome.QUEUED
    assert [e.user for e in drain(queue)] == ["g", "q", "q2"]


def test_skip_pin_clear_and_snapshot() -> None:
    clock = VirtualClock()
    queue = SpeechQueue(clock)
    a, b, c = ev(EventKind.MESSAGE, "a"), ev(EventKind.MESSAGE, "b"), ev(EventKind.GIFT, "c")
    for e in (a, b, c):
        queue.put(e)
    assert queue.pin(b.id) and not queue.pin("nope")
    clock._now = 2.5
    snap = queue.snapshot()
    assert [s["user"] for s in snap] == ["b", "c", "a"]
    assert snap[0]["pinned"] and snap[0]["waiting_s"] == 2.5 and snap[1]["kind"] == "gift"
    assert queue.skip(a.id) and not queue.skip(a.id)
    assert queue.clear() == 2 and len(queue) == 0


async def test_get_waits_for_an_event() -> None:
    queue = SpeechQueue(VirtualClock())
    waiter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    e = ev(EventKind.MESSAGE)
    queue.put(e)
    assert (await asyncio.wait_for(waiter, 1)).event is e
