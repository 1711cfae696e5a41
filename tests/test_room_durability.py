"""Rooms survive the server: `kill -9`, then a new `voxroom serve` on the same data directory brings the
room back under its id, with its settings, and a listener link minted before the crash still works."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import sqlite3
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import start_server
from tests.test_cli_signals import call, serving
from tests.test_whep_admission import offer_that_never_connects

SETTINGS = {
    "policy": "duck",
    "idle_after": 120,
    "blocked_words": ["spoiler", "refund"],
    "templates": {"en": {"message": "{user} asks: {text}"}},
}


def test_room_settings_and_grants_survive_kill_9(tmp_path: Path) -> None:
    with serving(tmp_path) as (proc, base, token):
        room = call(base, token, "POST", "/api/rooms", {"name": "Friday show"})
        call(base, token, "PATCH", f"/api/rooms/{room['id']}/cohost", SETTINGS)
        grant = call(base, token, "POST", f"/api/rooms/{room['id']}/grants", {"role": "listener", "ttl": 86400})
        links = call(base, token, "GET", f"/api/rooms/{room['id']}/links")
        gone = call(base, token, "POST", "/api/rooms", {"name": "deleted"})
        call(base, token, "DELETE", f"/api/rooms/{gone['id']}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    with serving(tmp_path) as (_, base, token):
        rooms = call(base, token, "GET", "/api/rooms")["rooms"]
        assert [(r["id"], r["name"]) for r in rooms] == [(room["id"], "Friday show")]
        settings = rooms[0]["cohost"]
        assert settings["policy"] == "duck"
        assert settings["idle_after"] == 120
        assert sorted(settings["blocked_words"]) == ["refund", "spoiler"]
        assert settings["templates"]["en"]["message"] == "{user} asks: {text}"
        assert settings["voice"] == "stock"
        # Both the link handed out at creation and the one minted later still open the room.
        for listener in (room["listener_grant"], grant["grant"]):
            chat = call(base, listener, "POST", f"/api/rooms/{room['id']}/chat", {"type": "message", "user": "ana", "text": "still here?"})
            assert chat["outcome"]
        # The same links are handed out, and a listener page's WHEP offer with the old link is answered.
        assert call(base, token, "GET", f"/api/rooms/{room['id']}/links") == links
        offer = asyncio.run(offer_that_never_connects())
        request = urllib.request.Request(f"{base}/rooms/{room['id']}/whep", data=offer.encode(), method="POST",
                                         headers={"Authorization": f"Bearer {room['listener_grant']}",
                                                  "Content-Type": "application/sdp"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 201 and answer.read().startswith(b"v=0")
        # The restored room keeps writing through: a change now survives the next start too.
        call(base, token, "PATCH", f"/api/rooms/{room['id']}/cohost", {"policy": "drop"})

    assert stat.S_IMODE((tmp_path / "grant.key").stat().st_mode) == 0o600  # the key the links are signed with
    db = sqlite3.connect(tmp_path / "voxroom.sqlite3")
    assert db.execute("SELECT json_extract(settings, '$.policy') FROM rooms").fetchall() == [("drop",)]


def test_a_deleted_room_stays_deleted(tmp_path: Path) -> None:
    with serving(tmp_path) as (_, base, token):
        room = call(base, token, "POST", "/api/rooms", {"name": "short-lived"})
        call(base, token, "DELETE", f"/api/rooms/{room['id']}")
    with serving(tmp_path) as (_, base, token):
        assert call(base, token, "GET", "/api/rooms")["rooms"] == []
        try:
            call(base, room["listener_grant"], "POST", f"/api/rooms/{room['id']}/chat", {"type": "message", "user": "a", "text": "hi"})
        except urllib.error.HTTPError as err:
            assert err.code == 404
        else:
            raise AssertionError("a deleted room's link still works")


def test_chat_connectors_resume_with_their_room(tmp_path: Path, stock_engine: Any) -> None:
    with contextlib.contextmanager(start_server)(tmp_path, stock_engine) as first:
        _, room = first.json("POST", "/api/rooms", {"name": "with chat"})
        _, gone = first.json("POST", "/api/rooms", {"name": "deleted"})
        for room_id in (room["id"], gone["id"]):
            status, _ = first.json("POST", f"/api/rooms/{room_id}/connectors",
                                   {"platform": "twitch", "channel": "somebody", "url": "ws://127.0.0.1:9"})
            assert status == 201
        first.server.rooms.store.delete(gone["id"])  # as if the room row were lost, not its connector
    with contextlib.contextmanager(start_server)(tmp_path, stock_engine) as second:
        status, listing = second.json("GET", f"/api/rooms/{room['id']}/connectors")
        assert status == 200
        [connector] = listing["connectors"]
        assert connector["channel"] == "somebody"
        assert connector["status"]["state"] != "stopped"  # running again: connecting or waiting to retry
        assert [r.room_id for r in second.server.connectors.store.all()] == [room["id"]]


def test_listener_links_may_last_30_days_and_host_grants_a_week(live_server: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "long links"})
    grants = f"/api/rooms/{room['id']}/grants"
    status, body = live_server.json("POST", grants, {"role": "listener", "ttl": 30 * 86400})
    assert status == 201
    assert live_server.server.accounts.check_grant(body["grant"]).expires > time.time() + 29.9 * 86400
    for bad in ({"role": "listener", "ttl": 31 * 86400}, {"role": "listener", "ttl": 59},
                {"role": "host", "ttl": 8 * 86400}, {"role": "bot", "ttl": 30 * 86400}):
        status, body = live_server.json("POST", grants, bad)
        assert status == 400 and body["code"] and "ttl" in body["error"], bad
    # The overlay link handed out at creation is the room's link: it has no end, only a rotation.
    overlay_grant = room["overlay_url"].split("grant=", 1)[1]
    assert live_server.server.accounts.check_grant(overlay_grant).expires == math.inf
    assert live_server.json("DELETE", f"/api/rooms/{room['id']}")[0] == 200  # the shared server caps rooms


def test_rotated_links_stay_rotated_across_a_restart(tmp_path: Path, stock_engine: Any) -> None:
    running = contextlib.contextmanager(start_server)
    with running(tmp_path, stock_engine) as first:
        _, kept = first.json("POST", "/api/rooms", {"name": "kept links"})
        _, rotated = first.json("POST", "/api/rooms", {"name": "rotated links"})
        _, new = first.json("POST", f"/api/rooms/{rotated['id']}/links/rotate")
    with running(tmp_path, stock_engine) as second:
        def chat(room_id: str, credential: str) -> tuple[int, Any]:
            return second.json("POST", f"/api/rooms/{room_id}/chat", {"type": "message", "user": "a", "text": "hi"},
                               token=credential)
        assert chat(kept["id"], kept["listener_grant"])[0] == 202
        assert second.json("GET", f"/api/rooms/{kept['id']}/links")[1]["overlay_url"] == kept["overlay_url"]
        status, body = chat(rotated["id"], rotated["listener_grant"])
        assert (status, body["code"]) == (403, "link_revoked")
        assert chat(rotated["id"], new["listener_grant"])[0] == 202
        assert second.json("GET", f"/api/rooms/{rotated['id']}/links")[1] == new


def test_a_room_stored_before_room_links_gets_a_link_key(tmp_path: Path, stock_engine: Any) -> None:
    db = sqlite3.connect(tmp_path / "voxroom.sqlite3")
    with contextlib.closing(db):
        from voxroom.streaming.accounts import SCHEMA
        db.executescript(SCHEMA)
        db.execute("INSERT INTO accounts VALUES ('a1', 'owner', 0)")
        db.execute("CREATE TABLE rooms (id TEXT PRIMARY KEY, owner TEXT NOT NULL REFERENCES accounts(id) "
                   "ON DELETE CASCADE, name TEXT NOT NULL, created REAL NOT NULL, settings TEXT NOT NULL DEFAULT '{}')")
        db.execute("INSERT INTO rooms VALUES ('old-room', 'a1', 'from before', 1, '{}')")
        db.commit()
    running = contextlib.contextmanager(start_server)
    with running(tmp_path, stock_engine) as first:
        link = first.server.rooms.get("old-room").link_key
        assert link
    with running(tmp_path, stock_engine) as second:
        assert second.server.rooms.get("old-room").link_key == link  # stored at the first start


def test_a_room_keeps_its_voice_and_forgets_it_when_deleted(tmp_path: Path, stock_engine: Any) -> None:
    from test_voices_server import SPEECH, recording, upload

    if not (SPEECH / "README.md").is_file():
        pytest.skip("../shared/speech is not here")
    running = contextlib.contextmanager(start_server)
    with running(tmp_path, stock_engine) as first:
        status, made = upload(first, recording()[0])
        assert status == 201, made
        voice_id = made["voice"]["id"]
        _, room = first.json("POST", "/api/rooms", {"name": "my voice"})
        assert first.json("PATCH", f"/api/rooms/{room['id']}/cohost", {"voice": voice_id})[0] == 200
    with running(tmp_path, stock_engine) as second:
        assert second.json("GET", f"/api/rooms/{room['id']}/cohost")[1]["settings"]["voice"] == voice_id
        assert second.json("DELETE", f"/api/voices/{voice_id}")[0] == 200
        assert second.json("GET", f"/api/rooms/{room['id']}/cohost")[1]["settings"]["voice"] == "stock"
    with running(tmp_path, stock_engine) as third:
        assert third.json("GET", f"/api/rooms/{room['id']}/cohost")[1]["settings"]["voice"] == "stock"


def test_only_changed_templates_are_stored(tmp_path: Path, stock_engine: Any) -> None:
    with contextlib.contextmanager(start_server)(tmp_path, stock_engine) as server:
        _, room = server.json("POST", "/api/rooms", {"name": "templates"})
        server.json("PATCH", f"/api/rooms/{room['id']}/cohost", {"templates": {"zh": {"gift": "谢谢{user}！"}}})
        [stored] = server.server.rooms.store.all()
        assert stored.settings["templates"] == {"zh": {"gift": "谢谢{user}！"}}


def test_sfu_endpoints_publish_again_after_a_restart(tmp_path: Path, stock_engine: Any, live_server: Any) -> None:
    """A room's SFU endpoints (its WHIP URL and sealed token) are stored with it: a restarted server
    publishes into them again. The "SFU" is a room's WHIP ingest on the tests' other server."""
    _, sink = live_server.json("POST", "/api/rooms", {"name": "sfu sink"})
    sink_room = live_server.server.rooms.get(sink["id"])
    endpoint = {"url": f"{live_server.base}/rooms/{sink['id']}/whip", "token": live_server.token}

    def wait_for(condition: Any, what: str) -> None:
        for _ in range(300):
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"never {what}")

    with contextlib.contextmanager(start_server)(tmp_path, stock_engine) as first:
        _, room = first.json("POST", "/api/rooms", {"name": "published"})
        assert first.json("PUT", f"/api/rooms/{room['id']}/sfu", {"endpoints": [endpoint]})[0] == 200
        wait_for(lambda: sink_room.host_mic is not None, "published before the restart")
    wait_for(lambda: sink_room.host_mic is None, "unpublished when the first server stopped")
    with contextlib.contextmanager(start_server)(tmp_path, stock_engine) as second:
        wait_for(lambda: sink_room.host_mic is not None, "published again after the restart")
        status, view = second.json("GET", f"/api/rooms/{room['id']}/sfu")
        assert status == 200 and [e["url"] for e in view["endpoints"]] == [endpoint["url"]]
        assert live_server.token not in json.dumps(view)  # the token stays write-only
        restored = second.server.rooms.get(room["id"])
        wait_for(lambda: restored.sfu[0].state == "publishing", "publishing (ICE and DTLS up)")
        assert restored.sfu[0].publishes == 1
