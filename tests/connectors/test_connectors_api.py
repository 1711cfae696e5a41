"""The connectors REST surface, mounted the way streaming/app.py will mount it, with a Twitch connector
joining a local IRC server; credentials are sealed at rest and never answered."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from websockets.asyncio.server import ServerConnection

from tests.connectors.test_twitch import login, privmsg
from tests.connectors.wire import Collected, wait_until, ws_server
from voxroom.agent.connectors.twitch import TwitchConnector
from voxroom.streaming.accounts import AuthError
from voxroom.streaming.connectors_api import ConnectorRuntime, ConnectorsApi, ConnectorStore, parse_body


class Rooms:
    """Stands in for the app: room "r1" belongs to the caller with token "owner"."""

    def __init__(self) -> None:
        self.chat: dict[str, Collected] = {"r1": Collected()}

    def room_for(self, request: Request, room_id: str) -> str:
        if request.headers.get("authorization") != "Bearer owner":
            raise AuthError("this call needs an API token")
        if room_id not in self.chat:
            raise LookupError("no such room")
        return room_id

    def submit_for(self, room: str) -> Collected:
        return self.chat[room]


def build(tmp_path: Path, rooms: Rooms) -> tuple[Starlette, ConnectorsApi, sqlite3.Connection]:
    db = sqlite3.connect(tmp_path / "voxroom.sqlite3", isolation_level=None)
    store = ConnectorStore(db, tmp_path / "connectors.key")
    api = ConnectorsApi(store, ConnectorRuntime(), rooms.room_for, rooms.submit_for)
    app = Starlette(routes=[
        Route("/api/rooms/{room}/connectors", api.create, methods=["POST"]),
        Route("/api/rooms/{room}/connectors", api.list, methods=["GET"]),
        Route("/api/rooms/{room}/connectors/{connector}", api.delete, methods=["DELETE"]),
    ])
    return app, api, db


async def test_create_list_delete_a_twitch_connector_that_reads_a_local_server(tmp_path: Path) -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await login(ws)
        await ws.send("\r\n".join(privmsg(i) for i in range(3)))
        await ws.wait_closed()

    rooms = Rooms()
    app, api, db = build(tmp_path, rooms)
    owner = {"authorization": "Bearer owner"}
    async with ws_server(handler) as url, httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                                             base_url="http://test") as http:
        body = {"platform": "twitch", "channel": "Chan", "url": url, "nick": "mybot", "token": "oauth:s3cret-token"}
        created = await http.post("/api/rooms/r1/connectors", json=body, headers=owner)
        assert created.status_code == 201, created.text
        connector_id = created.json()["id"]
        assert created.json()["status"]["state"] in ("connecting", "live")
        await wait_until(lambda: len(rooms.chat["r1"].events) == 3)

        listed = await http.get("/api/rooms/r1/connectors", headers=owner)
        (view,) = listed.json()["connectors"]
        assert view["id"] == connector_id and view["platform"] == "twitch" and view["has_credentials"]
        assert view["status"]["state"] == "live" and view["status"]["counters"]["submitted"] == 3
        assert "s3cret" not in listed.text and "token" not in view

        raw = db.execute("SELECT credentials FROM connectors").fetchone()[0]
        assert b"s3cret" not in bytes(raw)
        assert stat.S_IMODE((tmp_path / "connectors.key").stat().st_mode) == 0o600
        running = api.runtime.running[connector_id]
        assert isinstance(running, TwitchConnector) and running.token == "oauth:s3cret-token"

        assert (await http.delete(f"/api/rooms/r1/connectors/{connector_id}", headers=owner)).status_code == 204
        assert api.runtime.running == {}
        assert (await http.get("/api/rooms/r1/connectors", headers=owner)).json() == {"connectors": []}
        assert (await http.delete(f"/api/rooms/r1/connectors/{connector_id}", headers=owner)).status_code == 404


async def test_auth_and_validation_errors_are_clear(tmp_path: Path) -> None:
    app, api, _ = build(tmp_path, Rooms())
    owner = {"authorization": "Bearer owner"}
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as http:
        nobody = await http.get("/api/rooms/r1/connectors")
        assert nobody.status_code == 401 and "API token" in nobody.json()["error"]
        assert (await http.get("/api/rooms/elsewhere/connectors", headers=owner)).status_code == 404
        for body, message in [
            ({"platform": "myspace", "channel": "x"}, "platform"),
            ({"platform": "youtube", "channel": "abc"}, "api_key"),
            ({"platform": "twitch", "channel": ""}, "channel"),
            ({"platform": "twitch", "channel": "c", "url": "file:///etc/passwd"}, "url"),
            ({"platform": "twitch", "channel": "c", "api_key": "k"}, "takes no api_key"),
            ({"platform": "bilibili", "channel": "not-a-number"}, "room's number"),
            ({"platform": "youtube", "channel": "abc", "refresh_token": "r", "client_id": "c"}, "client_secret"),
            ({"platform": "twitch", "channel": "c", "token": "oauth:abc"}, "needs 'nick'"),
            ({"platform": "tiktok", "channel": "@someone", "url": "ws://127.0.0.1:9"}, "tiktok takes no url"),
        ]:
            answer = await http.post("/api/rooms/r1/connectors", json=body, headers=owner)
            assert answer.status_code == 400 and message in answer.json()["error"], (body, answer.text)
        assert (await http.post("/api/rooms/r1/connectors", content=b"{", headers=owner)).status_code == 400
    assert api.runtime.running == {}


async def test_stored_connectors_resume_with_their_credentials_after_a_restart(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    store = ConnectorStore(db, tmp_path / "connectors.key")
    record = store.add("r1", "youtube", "Cg0KC2xpdmVjaGF0aWQ", "http://127.0.0.1:9/youtube/v3", {"api_key": "AIza-key"})
    store2 = ConnectorStore(db, tmp_path / "connectors.key")  # a new process: the key file is read back
    assert store2.credentials(record) == {"api_key": "AIza-key"}
    runtime = ConnectorRuntime()
    started = await runtime.resume(store2, lambda room: Collected() if room == "r1" else None)
    assert started == 1 and runtime.running[record.id].platform == "youtube"
    await runtime.close()
    other = store.add("r2", "twitch", "chan", "", {})
    assert store.prune({"r1"}) == 1 and [r.id for r in store.all()] == [record.id] and other.id != record.id
    (tmp_path / "connectors.key").write_bytes(b"\x00" * 32)  # a different key cannot open them
    with pytest.raises(ValueError, match="do not open"):
        ConnectorStore(db, tmp_path / "connectors.key").credentials(record)


def test_parse_body_keeps_only_the_platforms_credentials() -> None:
    platform, channel, url, credentials = parse_body({"platform": "bilibili", "channel": " 398668 ", "uid": 7,
                                                      "cookie": "SESSDATA=x; buvid3=y"})
    assert (platform, channel, url) == ("bilibili", "398668", "")
    assert credentials == {"uid": 7, "cookie": "SESSDATA=x; buvid3=y"}
    anything: Any = {"platform": "tiktok", "channel": "@someone"}
    assert parse_body(anything)[3] == {}
    oauth = parse_body({"platform": "youtube", "channel": "dQw4w9WgXcQ", "refresh_token": "1//r",
                        "client_id": "id.apps.googleusercontent.com", "client_secret": "s"})
    assert oauth[3] == {"refresh_token": "1//r", "client_id": "id.apps.googleusercontent.com", "client_secret": "s"}
    assert parse_body({"platform": "twitch", "channel": "c", "nick": "mybot", "token": "oauth:abc"})[3] == {
        "nick": "mybot", "token": "oauth:abc"}
