"""Property: whatever chat, host voice, skips, cancels, policy and voice changes and host lines arrive, in
whatever order, once they stop every accepted event ends (spoken, skipped, dropped or expired) within a
bounded virtual time, the co-host is idle and no speech or waiter is left behind."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_fakes import ToneEngine
from voxroom.agent.clock import VirtualClock
from voxroom.agent.lifecycle import (
    EventAccepted,
    EventBus,
    EventDropped,
    LifecycleEvent,
    ReplyFinished,
    SpeechEnded,
    SpeechQueued,
    SpeechStarted,
)
from voxroom.agent.speech import SpeakerBusy
from voxroom.agent.turns import TurnTaking
from voxroom.models.engine import Voice
from voxroom.streaming.config import ServerConfig
from voxroom.streaming.playout import Playout
from voxroom.streaming.room_cohost import RoomCoHost

QUIET_LIMIT = 300.0  # virtual seconds for everything to settle after the last action

words = st.sampled_from(["hello", "what a stream", "how are you today", "is this thing on", "gg",
                         "a much longer message that keeps the co-host talking for a while"])
actions = st.one_of(
    st.tuples(st.just("chat"), st.sampled_from(["message", "question", "gift", "follow"]), words),
    st.tuples(st.just("host"), st.booleans()),
    st.tuples(st.just("skip")),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    st.tuples(st.just("policy"), st.sampled_from(["resume", "duck", "drop"])),
    st.tuples(st.just("voice"), st.booleans()),
    st.tuples(st.just("line"), words),
    st.tuples(st.just("wait"), st.floats(0.0, 2.0)),
)


async def run_scenario(steps: list[tuple[Any, ...]]) -> None:
    clock = VirtualClock()
    events = EventBus("room")
    turns = TurnTaking(clock, resume_after=0.3)
    playout = Playout(ToneEngine(clock, seconds_per_char=0.02), clock, events=events, turns=turns)
    cohost = RoomCoHost("room", playout, turns, events, clock, ServerConfig())
    seen: list[LifecycleEvent] = []
    events.subscribe(seen.append)
    playout.start()
    cohost.start()
    ids: list[str] = []
    users = iter(range(10**6))
    try:
        for step in steps:
            kind = step[0]
            if kind == "chat":
                event: dict[str, Any] = {"type": step[1], "user": f"u{next(users)}", "text": step[2]}
                if step[1] == "gift":
                    event.update(gift="rose", amount=1)
                cohost.submit(event)
            elif kind == "host":
                cohost.set_host_speaking(step[1])
            elif kind == "skip":
                cohost.agent.skip_current()
            elif kind == "cancel" and ids:
                cohost.agent.cancel(ids[step[1] % len(ids)]) or (
                    (h := playout.find(ids[step[1] % len(ids)])) is not None and h.cancel())
            elif kind == "policy":
                cohost.update({"policy": step[1]})
            elif kind == "voice":
                cohost.update({}, Voice(id="v1", name="v", engine="tone") if step[1] else None)
            elif kind == "line":
                try:
                    ids.append(cohost.agent.say(step[1]))
                except SpeakerBusy:
                    pass
            elif kind == "wait":
                await clock.advance(step[1])
            for e in seen:
                if isinstance(e, SpeechStarted) and e.id not in ids:
                    ids.append(e.id)
        cohost.set_host_speaking(False)
        waited = 0.0
        while waited < QUIET_LIMIT and (cohost.agent.state != "idle" or len(cohost.agent.queue)
                                        or playout.queued()):
            await clock.advance(0.5)
            waited += 0.5
        await clock.advance(0.5)

        accepted = {e.id for e in seen if isinstance(e, EventAccepted) and e.outcome == "queued"}
        answered = {e.id for e in seen if isinstance(e, ReplyFinished)}
        dropped = {e.id for e in seen if isinstance(e, EventDropped)}
        assert accepted <= answered | dropped, accepted - answered - dropped
        assert cohost.agent.state == "idle" and cohost.agent.current is None
        assert playout.queued() == [] and len(cohost.agent.queue) == 0
        started = {e.id for e in seen if isinstance(e, SpeechStarted)}
        queued_lines = {e.id for e in seen if isinstance(e, SpeechQueued)}
        ended = {e.id for e in seen if isinstance(e, SpeechEnded)}
        assert started <= ended and queued_lines <= ended | answered
        assert clock.pending_sleepers <= 1  # the pacer's next tick, and nothing else
    finally:
        await cohost.close()
        await playout.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(actions, min_size=1, max_size=25))
def test_every_accepted_event_ends_and_nothing_waits(steps: list[tuple[Any, ...]]) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run_scenario(steps))
    finally:
        loop.close()
