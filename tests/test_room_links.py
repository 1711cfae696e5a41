"""A room's listener and OBS overlay links last until the host rotates them; rotating refuses the old
ones at once (`link_revoked`) for REST, WHEP and the caption socket, cuts off a caption socket and a WHEP
listener that came in with them, and leaves short-lived grants alone. Real server, real aiortc peer."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.test_webrtc import join


def chat(server: Any, room_id: str, credential: str) -> tuple[int, Any]:
    return server.json("POST", f"/api/rooms/{room_id}/chat", {"type": "message", "user": "ana", "text": "hi"},
                       token=credential)


def events_url(server: Any, room_id: str, credential: str) -> str:
    return server.base.replace("http", "ws", 1) + f"/rooms/{room_id}/events?token={quote(credential)}"


async def closed_with(ws: Any) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason


def test_links_are_stable_until_rotated_and_the_old_ones_are_refused(live_server: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "linked"})
    rid = room["id"]
    try:
        status, links = live_server.json("GET", f"/api/rooms/{rid}/links")
        assert status == 200
        # The same links every time they are asked for: the console can show them again after a reload.
        assert links == {k: room[k] for k in ("listen_url", "overlay_url", "listener_grant")}
        old = links["listener_grant"]
        assert links["overlay_url"] == f"/obs/{rid}?grant={old}"
        assert chat(live_server, rid, old)[0] == 202
        _, bot = live_server.json("POST", f"/api/rooms/{rid}/grants", {"role": "listener", "ttl": 3600})

        # A link is not a host: it cannot rotate, nor read the links.
        assert live_server.json("POST", f"/api/rooms/{rid}/links/rotate", token=old)[0] == 403
        assert live_server.json("GET", f"/api/rooms/{rid}/links", token=old)[0] == 403

        status, new = live_server.json("POST", f"/api/rooms/{rid}/links/rotate")
        assert status == 200
        assert new["listener_grant"] != old
        assert new["listen_url"] == f"/r/{rid}?grant={new['listener_grant']}"
        assert live_server.json("GET", f"/api/rooms/{rid}/links")[1] == new

        status, body = chat(live_server, rid, old)
        assert (status, body["code"]) == (403, "link_revoked"), body
        assert "rotated" in body["error"]
        status, _, raw = live_server.request("POST", f"/rooms/{rid}/whep", token=old, content_type="application/sdp",
                                             raw=b"v=0\r\n")
        assert (status, json.loads(raw)["code"]) == (403, "link_revoked")
        assert chat(live_server, rid, new["listener_grant"])[0] == 202
        assert chat(live_server, rid, bot["grant"])[0] == 202  # short-lived grants are not room links

        async def old_socket() -> tuple[int, str]:
            async with connect(events_url(live_server, rid, old)) as ws:
                return await closed_with(ws)
        code, reason = asyncio.run(old_socket())
        assert code == 4403 and reason.startswith("link_revoked:"), (code, reason)
    finally:
        assert live_server.json("DELETE", f"/api/rooms/{rid}")[0] == 200


async def test_rotating_cuts_off_what_came_in_with_the_old_link(live_server: Any) -> None:
    _, room = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "cut off"})
    rid, old = room["id"], room["listener_grant"]
    _, bot = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{rid}/grants", {"role": "listener"})
    try:
        old_pc, _, old_frames = await join(live_server, rid, old)
        bot_pc, _, _ = await join(live_server, rid, bot["grant"])
        await asyncio.wait_for(old_frames.get(), 10)  # it is listening
        async with connect(events_url(live_server, rid, old)) as old_ws, \
                connect(events_url(live_server, rid, live_server.token)) as host_ws:
            assert json.loads(await old_ws.recv())["type"] == "room"
            assert json.loads(await host_ws.recv())["type"] == "room"
            server_room = live_server.server.rooms.get(rid)
            assert len(server_room.listeners) == 2
            status, _ = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{rid}/links/rotate")
            assert status == 200
            code, reason = await closed_with(old_ws)
            assert code == 4403 and reason.startswith("link_revoked:")
            # The old link's WHEP listener is gone; the grant's listener and the host's socket stay.
            async with asyncio.timeout(10):
                while len(server_room.listeners) != 1:
                    await asyncio.sleep(0.05)
            await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{rid}/say", {"text": "Still here."})
            async with asyncio.timeout(10):
                while json.loads(await host_ws.recv())["type"] != "speech.queued":
                    pass
        await old_pc.close()
        await bot_pc.close()
    finally:
        assert (await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{rid}"))[0] == 200


def test_a_link_signed_for_another_key_or_tampered_is_refused(live_server: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "forged"})
    rid = room["id"]
    try:
        accounts = live_server.server.accounts
        owner = live_server.server.rooms.get(rid).owner
        guessed = accounts.room_link(owner, rid, "guessed-key")
        status, body = chat(live_server, rid, guessed)
        assert (status, body["code"]) == (403, "link_revoked")
        link = room["listener_grant"]
        tampered = link[:-2] + ("AA" if not link.endswith("AA") else "BB")
        assert chat(live_server, rid, tampered)[0] == 401
    finally:
        assert live_server.json("DELETE", f"/api/rooms/{rid}")[0] == 200
