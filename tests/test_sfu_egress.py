"""WHIP egress without an SFU: the pure parts (backoff, Link headers, bodies, sealed tokens), and a room
publishing into another room's WHIP ingest on the same server (a real aiortc peer on each side)."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from test_webrtc import SENTENCE, join, mono
from voxroom.streaming.whip_egress import (
    RETRY_CAP_S,
    SfuEndpoint,
    SfuStore,
    ice_servers_from_links,
    parse_endpoints,
    retry_delay,
)


def test_retry_delay_doubles_is_capped_and_jittered() -> None:
    assert [retry_delay(n, lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(50, lambda: 1.0) == RETRY_CAP_S
    assert retry_delay(50, lambda: 0.0) == RETRY_CAP_S / 2
    assert retry_delay(1, lambda: 0.0) == 0.5


def test_ice_servers_come_from_link_headers_with_rel_ice_server() -> None:
    servers = ice_servers_from_links([
        '<stun:stun.example.net>; rel="ice-server"',
        '<turn:turn.example.net?transport=udp>; rel="ice-server"; username="u"; credential="p"; '
        'credential-type="password", <https://example.net/doc>; rel="help"',
        '<stun:ignored.example.net>; rel="next"',
    ])
    assert [s.urls for s in servers] == ["stun:stun.example.net", "turn:turn.example.net?transport=udp"]
    assert (servers[1].username, servers[1].credential) == ("u", "p")


@pytest.mark.parametrize("body", [
    {}, {"endpoints": []}, {"endpoints": [{"url": "ftp://x"}]}, {"endpoints": [{"url": "http://"}]},
    {"endpoints": [{"url": "http://a/whip", "token": 5}]}, {"endpoints": [{"url": "http://a", "extra": 1}]},
    {"endpoints": [{"url": "http://a"}, {"url": "http://a"}]}, {"endpoints": [{"url": "http://a"}] * 5},
])
def test_bad_endpoint_bodies_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        parse_endpoints(body)


def test_tokens_are_sealed_at_rest(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    store = SfuStore(db, tmp_path / "server.key")
    assert stat.S_IMODE((tmp_path / "server.key").stat().st_mode) == 0o600
    endpoints = [SfuEndpoint("http://127.0.0.1:1/whip/a", "secret-token-1"), SfuEndpoint("https://sfu.example/w")]
    store.replace("room1", endpoints)
    db.commit()
    assert store.for_room("room1") == endpoints
    assert b"secret-token-1" not in (tmp_path / "db.sqlite3").read_bytes()
    db.execute("UPDATE sfu_endpoints SET room_id = 'room2' WHERE position = 0")  # a sealed token moved elsewhere
    with pytest.raises(ValueError):
        store.for_room("room2")
    store.prune(set())
    assert store.for_room("room1") == []


async def _wait_for(predicate: Any, what: str, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.1)


async def test_unreachable_sfu_shows_an_error_and_the_room_keeps_its_listeners(live_server: Any) -> None:
    _, room = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "sfu-down"})
    room_path = f"/api/rooms/{room['id']}"
    pc, _, frames = await join(live_server, room["id"], room["listener_grant"])
    try:
        closed_port = "http://127.0.0.1:9/whip/endpoint/nobody"  # discard port: nothing listens
        status, view = await asyncio.to_thread(live_server.json, "PUT", room_path + "/sfu",
                                               {"endpoints": [{"url": closed_port, "token": "tok-never-shown"}]})
        assert status == 200, view
        server_room = live_server.server.rooms.get(room["id"])
        await _wait_for(lambda: server_room.sfu[0].state == "retrying", "retrying")
        _, summary = await asyncio.to_thread(live_server.json, "GET", room_path)
        sfu = summary["sfu"][0]
        assert sfu["state"] == "retrying" and "cannot reach" in sfu["error"] and sfu["next_retry_at"] > 0
        status, raw_headers, raw = await asyncio.to_thread(live_server.request, "GET", room_path + "/sfu")
        assert status == 200 and b"tok-never-shown" not in raw
        _, _, metrics = await asyncio.to_thread(live_server.request, "GET", "/metrics")
        assert f'voxroom_room_sfu{{room="{room["id"]}",endpoint="0",state="retrying"}} 1' in metrics.decode()

        # the room's own listener still hears the co-host
        status, _ = await asyncio.to_thread(live_server.json, "POST", room_path + "/say", {"text": SENTENCE})
        assert status == 202
        loud = 0
        async with asyncio.timeout(15):
            while loud < 20:
                chunk = mono(await frames.get())
                loud += float((chunk**2).mean() ** 0.5) > 0.01
    finally:
        await pc.close()
    status, view = await asyncio.to_thread(live_server.json, "DELETE", room_path + "/sfu")
    assert status == 200 and view["endpoints"] == [] and not server_room.sfu
    await asyncio.to_thread(live_server.json, "DELETE", room_path)  # the shared server caps rooms per account


async def test_a_room_publishes_into_a_whip_endpoint_and_stops_with_delete(live_server: Any) -> None:
    """voxroom's own WHIP ingest stands in for an SFU: bearer token, relative Location, DELETE."""
    _, source = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "sfu-source"})
    _, sink = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "sfu-sink"})
    sink_room = live_server.server.rooms.get(sink["id"])
    source_room = live_server.server.rooms.get(source["id"])
    whip_url = f"{live_server.base}/rooms/{sink['id']}/whip"
    status, view = await asyncio.to_thread(live_server.json, "PUT", f"/api/rooms/{source['id']}/sfu",
                                           {"endpoints": [{"url": whip_url, "token": "wrong-token"}]})
    assert status == 200
    await _wait_for(lambda: source_room.sfu[0].state == "error", "refused")
    assert "401" in source_room.sfu[0].error and sink_room.host_mic is None

    status, view = await asyncio.to_thread(live_server.json, "PUT", f"/api/rooms/{source['id']}/sfu",
                                           {"endpoints": [{"url": whip_url, "token": live_server.token}]})
    assert status == 200
    await _wait_for(lambda: source_room.sfu and source_room.sfu[0].state == "publishing", "publishing")
    assert source_room.sfu[0].resource == f"{live_server.base}/rooms/{sink['id']}/whip/{sink_room.host_mic.id}"
    assert source_room.sfu[0].publishes == 1
    assert len(source_room.fanout.tracks) == 1  # fed by the room's one encoder, like a listener

    status, _ = await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{source['id']}/sfu")
    assert status == 200
    await _wait_for(lambda: sink_room.host_mic is None, "the WHIP session deleted")
    assert not source_room.fanout.tracks
    for room in (source, sink):
        await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{room['id']}")


def test_playback_is_whep_until_an_endpoint_with_janus_publishes_then_round_robin() -> None:
    from types import SimpleNamespace

    from voxroom.streaming.whip_egress import JanusPlayback, SfuApi

    def publisher(state: str, janus: str | None) -> Any:
        playback = JanusPlayback(janus, 7) if janus else None
        return SimpleNamespace(state=state, endpoint=SfuEndpoint("http://sfu/whip", "", playback))

    api = SfuApi(store=None, room_for=None, listener_room_for=None)  # type: ignore[arg-type]
    room = SimpleNamespace(id="r1", sfu=[publisher("retrying", "http://a/janus"), publisher("publishing", None)])
    assert api.choose_playback(room) == {"kind": "whep", "url": "/rooms/r1/whep"}
    room.sfu += [publisher("publishing", "http://b/janus"), publisher("publishing", "http://c/janus")]
    picks = [api.choose_playback(room)["janus"] for _ in range(4)]
    assert picks == ["http://b/janus", "http://c/janus", "http://b/janus", "http://c/janus"]
    assert api.choose_playback(room)["fallback"] == {"kind": "whep", "url": "/rooms/r1/whep"}


def test_listener_page_falls_back_to_whep_when_janus_is_unreachable(live_server: Any) -> None:
    from conftest import chromium

    _, source = live_server.json("POST", "/api/rooms", {"name": "janus-down"})
    _, sink = live_server.json("POST", "/api/rooms", {"name": "janus-down-sink"})
    source_room = live_server.server.rooms.get(source["id"])
    status, _ = live_server.json("PUT", f"/api/rooms/{source['id']}/sfu", {"endpoints": [{
        "url": f"{live_server.base}/rooms/{sink['id']}/whip", "token": live_server.token,
        "playback": {"janus": "http://127.0.0.1:9/janus", "room": 1234}}]})
    assert status == 200
    live_server.call(_wait_for(lambda: source_room.sfu[0].state == "publishing", "publishing"))
    _, plan = live_server.json("GET", f"/rooms/{source['id']}/playback", token=source["listener_grant"])
    assert plan["kind"] == "janus" and plan["janus"] == "http://127.0.0.1:9/janus"
    with chromium() as browser:
        page = browser.new_page()
        page.goto(live_server.base + source["listen_url"] + "&autojoin=1")
        page.wait_for_function("window.voxroomStats.state === 'connected'", timeout=20000)
        stats = page.evaluate("window.voxroomStats")
        assert stats["source"] == "whep" and stats["janusError"], stats
        live_server.json("POST", f"/api/rooms/{source['id']}/say", {"text": "Still here, without Janus."})
        page.wait_for_function("window.voxroomStats.loudFrames > 10", timeout=15000)
    for room in (source, sink):
        live_server.json("DELETE", f"/api/rooms/{room['id']}")
