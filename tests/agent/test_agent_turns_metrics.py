"""Turn-taking on a virtual clock, the Prometheus rendering, and the co-host's intake and console views."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from agent_fakes import make_cohost
from voxroom.agent.clock import VirtualClock
from voxroom.agent.events import EventError
from voxroom.agent.metrics import AgentMetrics, ReplyMetrics, render_prometheus
from voxroom.agent.moderation import Moderator
from voxroom.agent.speech_queue import SpeechQueue
from voxroom.agent.turns import HostSpeechPolicy, TurnTaking


async def test_wait_host_quiet_restarts_when_the_host_talks_again() -> None:
    clock = VirtualClock()
    turns = TurnTaking(clock, resume_after=0.5)
    turns.set_host_speaking(True)
    assert turns.must_yield() and turns.interruptions == 1
    waiter = asyncio.ensure_future(turns.wait_host_quiet())
    await clock.advance(1.0)
    turns.set_host_speaking(False)
    await clock.advance(0.3)
    turns.set_host_speaking(True)  # a breath, then more words: not yet the co-host's turn
    await clock.advance(0.4)
    assert not waiter.done()
    turns.set_host_speaking(False)
    await clock.advance(0.49)
    assert not waiter.done()
    await clock.advance(0.02)
    assert waiter.done()
    assert turns.interruptions == 2


def test_duck_policy_never_yields_but_lowers_gain() -> None:
    turns = TurnTaking(VirtualClock(), policy=HostSpeechPolicy.DUCK, duck_gain=0.2)
    assert turns.gain() == 1.0
    turns.set_host_speaking(True)
    assert not turns.must_yield() and turns.gain() == 0.2
    with pytest.raises(ValueError):
        TurnTaking(VirtualClock(), policy="shout")


def test_histogram_buckets_are_cumulative() -> None:
    metrics = AgentMetrics()
    for first_audio in (0.04, 0.25, 0.25, 7.0):
        metrics.observe_reply(ReplyMetrics("e", "message", "llm", queue_wait=0.0, llm_first_token=0.1,
                                           first_audio=first_audio, total=1.0, audio_seconds=2.0))
    text = metrics.render()
    assert "voxroom_agent_first_audio_seconds_bucket{le=\"0.05\"} 1" in text
    assert "voxroom_agent_first_audio_seconds_bucket{le=\"0.2\"} 1" in text
    assert "voxroom_agent_first_audio_seconds_bucket{le=\"0.3\"} 3" in text
    assert "voxroom_agent_first_audio_seconds_bucket{le=\"5\"} 3" in text
    assert "voxroom_agent_first_audio_seconds_bucket{le=\"+Inf\"} 4" in text
    assert "voxroom_agent_first_audio_seconds_sum 7.54" in text
    assert "voxroom_agent_audio_seconds_total 8" in text
    assert 'voxroom_agent_replies_total{kind="message",source="llm",outcome="spoken"} 4' in text
    assert text.count("# TYPE voxroom_agent_first_audio_seconds histogram") == 1


def test_two_rooms_share_headers_and_label_values_are_escaped() -> None:
    a, b = AgentMetrics(), AgentMetrics()
    a.count_event("message", "queued")
    b.count_event("gift", "queued")
    text = render_prometheus({"a": a, 'we"ird\nroom': b})
    assert text.count("# HELP voxroom_agent_events_total") == 1
    assert 'voxroom_agent_events_total{room="a",kind="message",outcome="queued"} 1' in text
    assert 'voxroom_agent_events_total{room="we\\"ird\\nroom",kind="gift",outcome="queued"} 1' in text


async def test_submit_dict_snapshot_and_bad_input() -> None:
    clock = VirtualClock()
    cohost = make_cohost(clock, queue=SpeechQueue(clock, max_length=2),
                         moderator=Moderator(clock, blocked_words=["spam"]), cohost_names=["vox"]).cohost
    assert cohost.submit_dict({"type": "message", "user": "a", "text": "@vox how are you?", "id": "q1"}) == "queued"
    assert cohost.submit_dict({"type": "message", "user": "b", "text": "buy spam now"}) == "moderated"
    assert cohost.submit_dict({"type": "gift", "user": "c", "gift": "rose", "amount": 1, "id": "g1"}) == "queued"
    assert cohost.submit_dict({"type": "message", "user": "d", "text": "plain chat"}) == "full"
    with pytest.raises(EventError):
        cohost.submit_dict({"type": "message", "user": "e"})
    snap = cohost.snapshot()
    assert snap["state"] == "idle" and snap["current"] is None and not snap["host_speaking"]
    assert [(q["id"], q["kind"]) for q in snap["queue"]] == [("g1", "gift"), ("q1", "question")]
    assert snap["moderation"][0]["text"] == "buy spam now"
    assert dict(cohost.metrics.events) == {("message", "moderated"): 1, ("question", "queued"): 1,
                                           ("gift", "queued"): 1, ("message", "full"): 1}


async def test_cancelling_the_loop_mid_reply_closes_synthesis() -> None:
    t = make_cohost()
    # Six seconds of audio: longer than the playout keeps synthesized ahead (2 s), so synthesis
    # is still running when the loop is cancelled.
    line = "a rather long line to read out loud, long enough to outlast the playout's cushion"
    t.cohost.submit_dict({"type": "message", "user": "a", "text": line})
    t.playout.start()
    task = asyncio.ensure_future(t.cohost.run())
    await t.clock.advance(0.3)
    assert t.cohost.state == "speaking"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await t.clock.advance(0.1)
    assert t.engine.closed_early == 1 and t.cohost.state == "idle" and not t.playout.queued()
    assert t.cohost.metrics.recent[-1].outcome == "skipped"
    await t.playout.close()


async def test_subscriber_errors_never_break_the_cohost() -> None:
    t = make_cohost()

    def broken(event: object) -> None:
        raise RuntimeError("console went away")

    t.cohost.events.subscribe(broken)
    t.cohost.submit_dict({"type": "follow", "user": "newbie"})
    t.playout.start()
    task = asyncio.ensure_future(t.cohost.run())
    await t.clock.advance(3.0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await t.playout.close()
    assert t.air.texts() == ["Thanks for the follow, newbie!"]


async def test_a_line_cancelled_before_its_reply_task_runs_still_ends() -> None:
    """A bot's say + cancel in one breath: the cancel can land before the reply's task has run at all.
    The line must still end for its asker (its protocol slot) and the loop must go on."""
    from voxroom.agent.lifecycle import ReplyFinished, SpeechEnded

    t = make_cohost()
    seen: list[object] = []
    t.cohost.events.subscribe(seen.append)
    line_id = t.cohost.say("Hello there, room.")
    item = t.cohost.queue.get_nowait()
    assert item is not None and item.event.id == line_id
    answering = asyncio.ensure_future(t.cohost.answer(item))
    await asyncio.sleep(0)  # answer() has started its reply task, which has not run yet
    assert t.cohost.cancel(line_id)
    metrics = await answering  # no CancelledError escapes into the co-host loop
    assert metrics.outcome == "skipped"
    ended = [e for e in seen if isinstance(e, SpeechEnded) and e.id == line_id]
    assert len(ended) == 1 and ended[0].state == "cancelled"
    assert any(isinstance(e, ReplyFinished) and e.id == line_id and e.outcome == "skipped" for e in seen)
    t.playout.start()
    task = asyncio.ensure_future(t.cohost.run())
    t.cohost.submit_dict({"type": "message", "user": "ann", "text": "still there?"})
    await t.clock.advance(3.0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await t.playout.close()
    assert t.air.texts() == ["ann says: still there?"]
