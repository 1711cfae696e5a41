"""A streamer's chat end to end: a local server speaking Twitch's IRC-over-WebSocket sends a question
and a 500-bit cheer; the room's connector (added over REST) feeds the co-host, which thanks the
cheer first, then answers the question, into a room an aiortc listener hears."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection

from conftest import RunningServer
from test_webrtc import join, mono
from tests.connectors.wire import ws_server

QUESTION = "@id=q-1;display-name=Quinn :quinn!quinn@quinn.tmi.twitch.tv PRIVMSG #show :?what game is this"
CHEER = "@id=c-1;bits=500;display-name=Bea :bea!bea@bea.tmi.twitch.tv PRIVMSG #show :cheer500 great stream"


async def welcome_after_join(ws: ServerConnection) -> None:
    """Twitch's side of a login: read until the client joins its channel, then welcome it."""
    got: list[str] = []
    while not any(str(line).startswith("JOIN") for line in got):
        got.extend(str(await ws.recv()).split("\r\n"))
    await ws.send(":tmi.twitch.tv 001 justinfan12345 :Welcome, GLHF!")


async def test_twitch_question_and_cheer_reach_a_listener_cheer_first(live_server: RunningServer) -> None:
    release = asyncio.Event()

    async def twitch(ws: ServerConnection, n: int) -> None:
        await welcome_after_join(ws)
        await release.wait()
        await ws.send(QUESTION)
        await ws.send(CHEER)
        await ws.wait_closed()

    _, room = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "twitch show"})
    server_room = live_server.server.rooms.get(room["id"])
    pc, _, frames = await join(live_server, room["id"], room["listener_grant"])
    async with ws_server(twitch) as url:
        status, connector = await asyncio.to_thread(
            live_server.json, "POST", f"/api/rooms/{room['id']}/connectors",
            {"platform": "twitch", "channel": "show", "url": url})
        assert status == 201, connector
        for _ in range(250):
            status, listing = await asyncio.to_thread(live_server.json, "GET", f"/api/rooms/{room['id']}/connectors")
            if listing["connectors"][0]["status"]["state"] == "live":
                break
            await asyncio.sleep(0.02)
        assert listing["connectors"][0]["status"]["state"] == "live", listing
        # Keep the co-host busy while the chat arrives, so the queue decides the order.
        status, _ = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room['id']}/say",
                                            {"text": "Welcome back everyone, give me one second."})
        assert status == 202
        release.set()
        loud = 0
        async with asyncio.timeout(60):
            while len([e for e in server_room.history if e["type"] == "cohost.reply_finished"]) < 3:
                chunk = mono(await frames.get())
                loud += float(np.sqrt(np.mean(chunk ** 2))) > 0.01
        status, _ = await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{room['id']}")
    finished: list[dict[str, Any]] = [e for e in server_room.history if e["type"] == "cohost.reply_finished"]
    assert [e["kind"] for e in finished] == ["host", "gift", "question"], finished
    assert "Bea" in finished[1]["text"] and "500" in finished[1]["text"]
    assert "what game is this" in finished[2]["text"]
    assert all(e["outcome"] == "spoken" for e in finished)
    assert loud * 0.02 > 2.0  # the listener heard seconds of it
    await pc.close()


async def test_a_flood_of_1000_messages_a_second_for_10_s_sheds_chat_first_and_the_room_keeps_time(
        live_server: RunningServer) -> None:
    """10 s of 1,000 chat lines a second from a local Twitch server into a room whose co-host is
    speaking: every line is read, the full queue sheds plain messages (never a cheer), and the
    room's pacer runs on time throughout (0 late ticks, 0 underruns)."""
    seconds, per_batch, every = 10, 20, 0.02
    batches = int(seconds / every)

    def batch(b: int) -> list[str]:
        lines = [f"@id=m-{b}-{j};display-name=viewer{(b * per_batch + j) % 700} :v!v@v.tmi.twitch.tv "
                 f"PRIVMSG #show :message {b}-{j} about the stream" for j in range(per_batch - 2)]
        if b % 50 == 0:  # once a second a cheer and a question, from people not seen before
            lines.append(f"@id=c-{b};bits=100;display-name=Cheerer{b} :c!c@c.tmi.twitch.tv PRIVMSG #show "
                         f":cheer100 number {b}")
            lines.append(f"@id=q-{b};display-name=Asker{b} :q!q@q.tmi.twitch.tv PRIVMSG #show :?question {b}")
        return lines

    total = sum(len(batch(b)) for b in range(batches))
    release = asyncio.Event()

    async def twitch(ws: ServerConnection, n: int) -> None:
        await welcome_after_join(ws)
        await release.wait()
        loop = asyncio.get_running_loop()
        due = loop.time()
        for b in range(batches):
            await ws.send("\r\n".join(batch(b)))
            due += every
            await asyncio.sleep(max(0.0, due - loop.time()))
        await ws.wait_closed()

    _, room = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "flooded show"})
    server_room = live_server.server.rooms.get(room["id"])
    try:
        async with ws_server(twitch) as url:
            status, added = await asyncio.to_thread(
                live_server.json, "POST", f"/api/rooms/{room['id']}/connectors",
                {"platform": "twitch", "channel": "show", "url": url})
            assert status == 201, added
            connector = live_server.server.connectors.runtime.running[added["id"]]
            async with asyncio.timeout(10):
                while connector.status.state != "live":
                    await asyncio.sleep(0.02)
            status, _ = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room['id']}/say",
                                                {"text": "Hold on, the chat is going wild tonight, let me catch up."})
            async with asyncio.timeout(10):
                while server_room.cohost.agent.state != "speaking":
                    await asyncio.sleep(0.01)
            stats = server_room.playout.stats
            late, underruns = stats.late_ticks, stats.underruns
            release.set()
            async with asyncio.timeout(seconds + 20):
                while connector.counters.received < total:
                    await asyncio.sleep(0.05)
            late, underruns = stats.late_ticks - late, stats.underruns - underruns
            counters = connector.counters
    finally:
        await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{room['id']}")
    events = server_room.cohost.agent.metrics.events
    assert counters.received == total and counters.malformed == 0
    assert events[("message", "full")] + events[("message", "evicted")] > 0, events  # the queue was full
    assert not any(kind == "gift" and outcome in ("full", "evicted", "stale") for kind, outcome in events), events
    assert sum(n for (kind, _), n in events.items() if kind == "gift") == seconds  # every cheer reached it
    assert (late, underruns) == (0, 0), (late, underruns)
