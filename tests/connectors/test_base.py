"""The shared connector machinery: backoff, remembered ids, intake shedding, status."""

from __future__ import annotations

import asyncio
import random

from tests.connectors.wire import Collected, wait_until
from voxroom.agent.connectors.base import Backoff, Connector, ConnectorState, RecentIds, RetryableError
from voxroom.agent.connectors.value import to_usd
from voxroom.agent.events import ChatEvent, EventKind


class Scripted(Connector):
    platform = "test"

    def __init__(self, *args: object, sessions: list[list[ChatEvent] | Exception], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sessions = sessions

    async def session(self) -> None:
        step = self.sessions.pop(0) if self.sessions else []
        if isinstance(step, Exception):
            raise step
        self.mark_live()
        for event in step:
            self.emit(event)
        if not self.sessions:  # the last session stays connected; earlier ones end (server closed)
            await asyncio.Event().wait()


def ev(kind: EventKind, n: int) -> ChatEvent:
    return ChatEvent(kind, f"u{n}", "t", "test", 0.0, f"id{n}")


def test_backoff_doubles_up_to_the_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert len({round(d, 6) for d in delays}) == 6  # jittered: no two alike
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_recent_ids_forget_the_oldest() -> None:
    recent = RecentIds(size=3)
    assert all(recent.add(i) for i in "abc")
    assert not recent.add("a")
    assert recent.add("d") and recent.add("b")  # "b" was the oldest after "a" was touched
    assert len(recent) == 3


def test_a_full_intake_sheds_joins_then_follows_then_messages_never_gifts_first() -> None:
    connector = Scripted(Collected(), sessions=[], intake_limit=3)
    join, follow, message, gift, question = (ev(EventKind.JOIN, 1), ev(EventKind.FOLLOW, 2),
                                             ev(EventKind.MESSAGE, 3), ev(EventKind.GIFT, 4),
                                             ev(EventKind.QUESTION, 5))
    for event in (join, follow, message, gift, question):
        connector.emit(event)
    assert list(connector._intake) == [message, gift, question] and connector.counters.shed == 2
    connector.emit(ev(EventKind.MESSAGE, 6))  # the new message is the least valuable: it goes
    assert connector.counters.shed == 3 and len(connector._intake) == 3
    connector.emit(ev(EventKind.GIFT, 7))
    assert [e.kind for e in connector._intake] == [EventKind.GIFT, EventKind.QUESTION, EventKind.GIFT]


async def test_retryable_errors_reconnect_and_events_reach_submit_once() -> None:
    got = Collected()
    connector = Scripted(got, sessions=[RetryableError("boom"), [ev(EventKind.MESSAGE, 1)],
                                        [ev(EventKind.MESSAGE, 1), ev(EventKind.MESSAGE, 2)]],
                         backoff=Backoff(base=0.01, cap=0.02))
    connector.start()
    await wait_until(lambda: len(got.events) == 2)
    assert connector.status.state is ConnectorState.LIVE
    assert connector.counters.reconnects == 2 and connector.counters.duplicates == 1
    await connector.stop()
    assert connector.status.as_dict()["state"] == "stopped"


def test_values_in_usd() -> None:
    assert to_usd(500, "bits") == 5.0
    assert to_usd(1000, "JPY") == 6.7 and to_usd(1000, "jpy") == 6.7
    assert to_usd(5, "zorkmids") == 0.0
