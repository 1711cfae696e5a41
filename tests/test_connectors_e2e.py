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


async def test_twitch_question_and_cheer_reach_a_listener_cheer_first(live_server: RunningServer) -> None:
    release = asyncio.Event()

    async def twitch(ws: ServerConnection, n: int) -> None:
        got: list[str] = []
        while not any(str(line).startswith("JOIN") for line in got):
            got.extend(str(await ws.recv()).split("\r\n"))
        await ws.send(":tmi.twitch.tv 001 justinfan12345 :Welcome, GLHF!")
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
