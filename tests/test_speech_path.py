"""The one speech path, end to end: a room's real `Playout` and `RoomCoHost` (tone engine, virtual time)
under each host policy, with the host speaking at the start of, during and between replies; cancel
from REST, the console and the bot protocol in the real server. After every scenario the co-host is
idle and answers the next chat; nothing is left waiting."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect

from agent_fakes import ToneEngine
from conftest import RunningServer
from voxroom.agent.clock import VirtualClock
from voxroom.agent.lifecycle import EventBus, LifecycleEvent, ReplyFinished, SpeechStarted
from voxroom.agent.turns import TurnTaking
from voxroom.streaming.config import ServerConfig
from voxroom.streaming.playout import Playout
from voxroom.streaming.room_cohost import RoomCoHost


@dataclass
class Room:
    clock: VirtualClock
    playout: Playout
    cohost: RoomCoHost
    frames: list[tuple[float, np.ndarray]]
    finished: list[ReplyFinished]

    def rms(self, start: float, end: float) -> list[float]:
        return [float(np.sqrt(np.mean(f ** 2))) for t, f in self.frames if start <= t < end and np.any(f)]


async def make_room(policy: str, duck_gain: float = 0.3) -> Room:
    clock = VirtualClock()
    events = EventBus("room")
    turns = TurnTaking(clock, policy=policy, duck_gain=duck_gain, resume_after=0.3)
    playout = Playout(ToneEngine(clock, seconds_per_char=0.04), clock, events=events, turns=turns)
    cohost = RoomCoHost("room", playout, turns, events, clock, ServerConfig())
    frames: list[tuple[float, np.ndarray]] = []
    finished: list[ReplyFinished] = []
    playout.sinks.append(lambda frame: frames.append((clock.now(), frame)))
    events.subscribe(lambda e: finished.append(e) if isinstance(e, ReplyFinished) else None)
    playout.start()
    cohost.start()
    return Room(clock, playout, cohost, frames, finished)


async def answer_next_and_close(room: Room) -> None:
    """The invariant after every scenario: idle, nothing queued, and the next chat is answered."""
    before = len(room.finished)
    room.cohost.submit({"type": "message", "user": "next", "text": "are you still there"})
    for _ in range(2000):
        await room.clock.advance(0.05)
        if len(room.finished) > before and room.cohost.agent.state == "idle":
            break
    assert room.finished[-1].outcome == "spoken" and "still there" in room.finished[-1].text
    assert room.cohost.agent.state == "idle" and room.cohost.agent.current is None
    assert room.playout.queued() == [] and len(room.cohost.agent.queue) == 0
    await room.cohost.close()
    await room.playout.close()


LONG = "a long message that takes a good few seconds to read out loud"


@pytest.mark.parametrize("policy", ["resume", "duck", "drop"])
@pytest.mark.parametrize("when", ["start", "during", "between"])
async def test_host_policies_at_every_moment_leave_the_cohost_answering(policy: str, when: str) -> None:
    room = await make_room(policy)
    cohost = room.cohost
    if when == "start":
        cohost.set_host_speaking(True)
        cohost.submit({"type": "message", "user": "anna", "text": LONG})
        await room.clock.advance(1.0)
        host = (0.0, 1.0)
        cohost.set_host_speaking(False)
    elif when == "during":
        cohost.submit({"type": "message", "user": "anna", "text": LONG})
        await room.clock.advance(0.5)
        cohost.set_host_speaking(True)
        await room.clock.advance(1.0)
        host = (0.5, 1.5)
        cohost.set_host_speaking(False)
    else:
        cohost.submit({"type": "message", "user": "anna", "text": "short one"})
        for _ in range(200):
            await room.clock.advance(0.05)
            if room.finished:
                break
        t0 = room.clock.now()
        cohost.set_host_speaking(True)
        cohost.submit({"type": "message", "user": "bo", "text": LONG})
        await room.clock.advance(1.0)
        host = (t0, t0 + 1.0)
        cohost.set_host_speaking(False)
    for _ in range(400):
        await room.clock.advance(0.05)
        if room.cohost.agent.state == "idle" and len(room.cohost.agent.queue) == 0:
            break
    outcomes = [f.outcome for f in room.finished]
    audible_while_host = room.rms(host[0] + 0.045, host[1])
    if policy == "duck":
        assert "interrupted" not in outcomes
        if when != "start" or audible_while_host:
            # what plays while the host talks plays at the duck gain, measured on the frames
            full = max(room.rms(host[1] + 0.05, host[1] + 1.0) or room.rms(0, host[0]))
            assert all(r == pytest.approx(0.3 * full, rel=0.05) for r in audible_while_host), audible_while_host
    else:
        assert audible_while_host == []  # held (resume) or dropped (drop): silent while the host talks
        expect_cut = policy == "drop" and when == "during"
        assert ("interrupted" in outcomes) == expect_cut, outcomes
        if not expect_cut:
            assert outcomes[-1] == "spoken"
    await answer_next_and_close(room)


# -- cancel from REST, the console and the bot protocol, in the real server ----------------------

def create_room(server: RunningServer, name: str) -> tuple[str, Any]:
    status, room = server.json("POST", "/api/rooms", {"name": name})
    assert status == 201
    return room["id"], server.server.rooms.get(room["id"])


async def reply_speech_id(server_room: Any, timeout: float = 20.0) -> str:
    started: list[str] = []
    unsubscribe = server_room.events.subscribe(
        lambda e: started.append(e.id) if isinstance(e, SpeechStarted) and e.source == "reply" else None)
    try:
        for _ in range(int(timeout / 0.02)):
            if started:
                return started[0]
            await asyncio.sleep(0.02)
    finally:
        unsubscribe()
    raise AssertionError("no reply went on air")


async def wait_idle_then_answer(server: RunningServer, room_id: str, server_room: Any) -> None:
    finished: list[LifecycleEvent] = []
    server_room.events.subscribe(lambda e: finished.append(e) if isinstance(e, ReplyFinished) else None)
    status, _ = await asyncio.to_thread(server.json, "POST", f"/api/rooms/{room_id}/chat",
                                        {"type": "message", "user": "later", "text": "one more thing"})
    assert status == 202
    for _ in range(1000):
        if any(isinstance(e, ReplyFinished) and "one more thing" in e.text for e in finished):
            break
        await asyncio.sleep(0.02)
    done = [e for e in finished if isinstance(e, ReplyFinished) and "one more thing" in e.text]
    assert done and done[0].outcome == "spoken"
    for _ in range(100):
        if server_room.cohost.agent.state == "idle":
            break
        await asyncio.sleep(0.02)
    assert server_room.cohost.agent.state == "idle" and server_room.playout.queued() == []
    await asyncio.to_thread(server.json, "DELETE", f"/api/rooms/{room_id}")


LONG_CHAT = {"type": "message", "user": "anna", "text": " ".join(["this chat message is long on purpose"] * 4)}


async def test_rest_delete_of_a_cohost_speech_does_not_wedge_the_cohost(live_server: RunningServer) -> None:
    room_id, server_room = create_room(live_server, "rest cancel")
    await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room_id}/chat", LONG_CHAT)
    speech_id = await reply_speech_id(server_room)
    status, body = await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{room_id}/speeches/{speech_id}")
    assert status == 200 and body["id"] == speech_id
    await wait_idle_then_answer(live_server, room_id, server_room)
    outcomes = [e["outcome"] for e in server_room.history if e["type"] == "cohost.reply_finished"]
    assert outcomes[0] == "skipped"


async def test_console_skip_and_typed_line_cancel(live_server: RunningServer) -> None:
    room_id, server_room = create_room(live_server, "console cancel")
    await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room_id}/chat", LONG_CHAT)
    await reply_speech_id(server_room)
    status, body = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room_id}/cohost/skip")
    assert status == 200 and body == {"skipped": True}
    # A typed line is an agent event: cancellable by its id like any speech, queued or on air.
    status, line = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room_id}/say",
                                           {"text": " ".join(["The host typed a long line."] * 6)})
    assert status == 202 and line["state"] == "queued"
    for _ in range(500):
        if server_room.playout.find(line["id"]) is not None and server_room.playout.find(line["id"]).started_at:
            break
        await asyncio.sleep(0.02)
    status, _ = await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{room_id}/speeches/{line['id']}")
    assert status == 200
    await wait_idle_then_answer(live_server, room_id, server_room)
    ended = [e for e in server_room.history if e["type"] == "speech.ended" and e["id"] == line["id"]]
    assert ended and ended[0]["state"] == "cancelled"


async def test_bot_say_into_a_room_then_cancel_frees_its_slot(live_server: RunningServer) -> None:
    room_id, server_room = create_room(live_server, "bot cancel")
    async with connect(live_server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "token": live_server.token}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        for i in range(12):  # more than the 8 open speeches a connection may have: each cancel frees its slot
            await ws.send(json.dumps({"type": "say", "id": f"s{i}", "text": "Hello there, room.", "room": room_id}))
            await ws.send(json.dumps({"type": "cancel", "id": f"s{i}"}))
            seen: list[dict[str, Any]] = []
            while not seen or seen[-1]["type"] != "speech.ended":
                message = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(message, str):
                    seen.append(json.loads(message))
            assert seen[0]["type"] == "speech.queued" and seen[-1]["reason"] == "cancelled", seen
        # and direct speech (no room): say + cancel at once, many times
        for i in range(12):
            await ws.send(json.dumps({"type": "say", "id": f"d{i}", "text": "Direct words."}))
            await ws.send(json.dumps({"type": "cancel", "id": f"d{i}"}))
            while True:
                message = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(message, str) and json.loads(message)["type"] in ("speech.ended", "error"):
                    assert json.loads(message)["type"] == "speech.ended"
                    break
    await wait_idle_then_answer(live_server, room_id, server_room)


async def test_a_bot_line_that_moderation_removes_still_ends(live_server: RunningServer) -> None:
    room_id, server_room = create_room(live_server, "moderated line")
    status, _ = await asyncio.to_thread(live_server.json, "PATCH", f"/api/rooms/{room_id}/cohost",
                                        {"blocked_words": ["forbidden"]})
    assert status == 200
    async with connect(live_server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "token": live_server.token}))
        await ws.recv()
        for i in range(10):  # more than the connection's 8 open speeches: each one must end
            await ws.send(json.dumps({"type": "say", "id": f"m{i}", "text": "This is forbidden.", "room": room_id}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message["type"] in ("speech.ended", "error"):
                    break
            assert message == {"type": "speech.ended", "id": f"m{i}", "reason": "moderated", "frames": 0}
    await wait_idle_then_answer(live_server, room_id, server_room)
