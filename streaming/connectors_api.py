"""Chat connectors per room: stored in SQLite (credentials encrypted), run as tasks, served over REST.

- `ConnectorStore`: table `connectors` (id, room id, platform, channel, url, credentials). The
  credentials (API keys, OAuth tokens, cookies) are sealed with AES-GCM under a server key kept in
  `DATA_DIR/connectors.key` (0600, outside the database), bound to the connector's id, room and
  platform. They are write-only: no answer ever contains them.
- `ConnectorRuntime`: starts and stops `voxroom.agent.connectors` connectors, each feeding a room's
  `submit`.
- `ConnectorsApi`: Starlette handlers for POST/GET `/api/rooms/{room}/connectors` and
  DELETE `/api/rooms/{room}/connectors/{connector}`. They take their dependencies
  (`room_for(request, room_id)`, which raises when the caller may not use the room, and
  `submit_for(room)`), so the app mounts each in one line.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from voxroom.agent.connectors.base import Connector, Submit
from voxroom.agent.connectors.bilibili import BilibiliConnector
from voxroom.agent.connectors.twitch import TwitchConnector
from voxroom.agent.connectors.youtube import YouTubeConnector
from voxroom.streaming.http_errors import guard, json_body

log = logging.getLogger("voxroom.connectors")

# platform -> (credential fields it accepts, the ones it requires)
CREDENTIALS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "twitch": (frozenset({"nick", "token"}), frozenset()),
    "youtube": (frozenset({"api_key", "access_token", "refresh_token", "client_id", "client_secret"}), frozenset()),
    "bilibili": (frozenset({"cookie", "uid"}), frozenset()),
    "tiktok": (frozenset(), frozenset()),
}
MAX_PER_ROOM = 8
URL_SCHEMES = ("ws://", "wss://", "http://", "https://")


class ConnectorRequestError(ValueError):
    """A request body the API cannot use; the message says which field and why."""


@dataclass(frozen=True)
class ConnectorRecord:
    id: str
    room_id: str
    platform: str
    channel: str
    url: str
    created: float

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "room": self.room_id, "platform": self.platform, "channel": self.channel,
                "url": self.url, "created": self.created}


def load_key(path: Path) -> bytes:
    """The 256-bit server key in `path`, made on first use with mode 0600."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s was readable by others (mode %o); setting it to 0600", path, mode)
            path.chmod(0o600)
        key = path.read_bytes()
        if len(key) != 32:
            raise ValueError(f"{path} does not hold a 256-bit key") from None
        return key
    key = AESGCM.generate_key(bit_length=256)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


class ConnectorStore:
    def __init__(self, db: sqlite3.Connection, key_path: Path) -> None:
        self.db = db
        self._aead = AESGCM(load_key(key_path))
        db.execute("""CREATE TABLE IF NOT EXISTS connectors (
            id TEXT PRIMARY KEY, room_id TEXT NOT NULL, platform TEXT NOT NULL, channel TEXT NOT NULL,
            url TEXT NOT NULL DEFAULT '', credentials BLOB, created REAL NOT NULL)""")
        db.execute("CREATE INDEX IF NOT EXISTS connectors_room ON connectors (room_id)")

    @staticmethod
    def _aad(record: ConnectorRecord) -> bytes:
        return f"voxroom-connector:{record.id}:{record.room_id}:{record.platform}".encode()

    def add(self, room_id: str, platform: str, channel: str, url: str, credentials: Mapping[str, Any]) -> ConnectorRecord:
        record = ConnectorRecord(f"con_{secrets.token_hex(8)}", room_id, platform, channel, url, time.time())
        sealed = None
        if credentials:
            nonce = secrets.token_bytes(12)
            sealed = nonce + self._aead.encrypt(nonce, json.dumps(dict(credentials)).encode(), self._aad(record))
        self.db.execute("INSERT INTO connectors VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (record.id, room_id, platform, channel, url, sealed, record.created))
        return record

    def _record(self, row: tuple[Any, ...]) -> ConnectorRecord:
        return ConnectorRecord(row[0], row[1], row[2], row[3], row[4], row[5])

    def for_room(self, room_id: str) -> list[ConnectorRecord]:
        rows = self.db.execute("SELECT id, room_id, platform, channel, url, created FROM connectors "
                               "WHERE room_id = ? ORDER BY created", (room_id,)).fetchall()
        return [self._record(row) for row in rows]

    def all(self) -> list[ConnectorRecord]:
        rows = self.db.execute("SELECT id, room_id, platform, channel, url, created FROM connectors "
                               "ORDER BY created").fetchall()
        return [self._record(row) for row in rows]

    def get(self, room_id: str, connector_id: str) -> ConnectorRecord:
        row = self.db.execute("SELECT id, room_id, platform, channel, url, created FROM connectors "
                              "WHERE id = ? AND room_id = ?", (connector_id, room_id)).fetchone()
        if row is None:
            raise LookupError("no such connector")
        return self._record(row)

    def credentials(self, record: ConnectorRecord) -> dict[str, Any]:
        row = self.db.execute("SELECT credentials FROM connectors WHERE id = ?", (record.id,)).fetchone()
        if row is None or row[0] is None:
            return {}
        sealed = bytes(row[0])
        try:
            plain = self._aead.decrypt(sealed[:12], sealed[12:], self._aad(record))
        except InvalidTag:
            raise ValueError(f"connector {record.id}: its credentials do not open with this server's key") from None
        value: dict[str, Any] = json.loads(plain)
        return value

    def has_credentials(self, record: ConnectorRecord) -> bool:
        row = self.db.execute("SELECT credentials IS NOT NULL FROM connectors WHERE id = ?", (record.id,)).fetchone()
        return bool(row and row[0])

    def delete(self, record: ConnectorRecord) -> None:
        self.db.execute("DELETE FROM connectors WHERE id = ?", (record.id,))

    def prune(self, room_ids: set[str]) -> int:
        """Forget connectors of rooms not in `room_ids` (at start: the rooms that came back from the store)."""
        gone = [r for r in self.all() if r.room_id not in room_ids]
        for record in gone:
            self.delete(record)
        return len(gone)

    def delete_room(self, room_id: str) -> list[ConnectorRecord]:
        records = self.for_room(room_id)
        self.db.execute("DELETE FROM connectors WHERE room_id = ?", (room_id,))
        return records


def make_connector(record: ConnectorRecord, credentials: Mapping[str, Any], submit: Submit,
                   **options: Any) -> Connector:
    """The platform's connector for a stored record; `options` go to every connector (question rules)."""
    url = {"url": record.url} if record.url else {}
    if record.platform == "twitch":
        return TwitchConnector(submit, channel=record.channel, nick=str(credentials.get("nick", "")),
                               token=str(credentials.get("token", "")), **url, **options)
    if record.platform == "youtube":
        # A relay or test server given as `url` also answers the OAuth token requests, at {url}/oauth2/token.
        token_url = {"token_url": record.url.rstrip("/") + "/oauth2/token"} if record.url else {}
        oauth = {k: str(credentials.get(k, "")) for k in ("access_token", "refresh_token", "client_id", "client_secret")}
        return YouTubeConnector(submit, channel=record.channel, api_key=str(credentials.get("api_key", "")),
                                **oauth, **url, **token_url, **options)
    if record.platform == "bilibili":
        return BilibiliConnector(submit, channel=record.channel, cookie=str(credentials.get("cookie", "")),
                                 uid=int(credentials.get("uid", 0) or 0), **url, **options)
    if record.platform == "tiktok":
        from voxroom.agent.connectors.tiktok import TikTokConnector

        return TikTokConnector(submit, channel=record.channel, **options)
    raise ValueError(f"unknown platform {record.platform!r}")


class ConnectorRuntime:
    """The running connectors, by id."""

    def __init__(self, factory: Callable[..., Connector] = make_connector, **options: Any) -> None:
        self.factory = factory
        self.options = options
        self.running: dict[str, Connector] = {}

    def start(self, record: ConnectorRecord, credentials: Mapping[str, Any], submit: Submit) -> Connector:
        connector = self.factory(record, credentials, submit, **self.options)
        self.running[record.id] = connector
        connector.start()
        return connector

    async def stop(self, connector_id: str) -> None:
        connector = self.running.pop(connector_id, None)
        if connector is not None:
            await connector.stop()

    def status(self, connector_id: str) -> dict[str, Any]:
        connector = self.running.get(connector_id)
        if connector is None:
            return {"state": "stopped", "message": "", "next_retry_at": None, "counters": {}}
        return connector.status.as_dict()

    async def resume(self, store: ConnectorStore, submit_for_room: Callable[[str], Submit | None]) -> int:
        """Start every stored connector whose room exists (`submit_for_room` None: skipped); at server start."""
        started = 0
        for record in store.all():
            submit = submit_for_room(record.room_id)
            if submit is not None and record.id not in self.running:
                try:
                    credentials = store.credentials(record)
                except ValueError as exc:  # sealed under another key: this one stays stopped, the rest run
                    log.warning("%s; not started", exc)
                    continue
                self.start(record, credentials, submit)
                started += 1
        return started

    async def close(self) -> None:
        for connector_id in list(self.running):
            await self.stop(connector_id)


def parse_body(body: Any) -> tuple[str, str, str, dict[str, Any]]:
    """(platform, channel, url, credentials) from a POST body; raises ConnectorRequestError."""
    if not isinstance(body, dict):
        raise ConnectorRequestError("the body must be a JSON object")
    platform = body.get("platform")
    if platform not in CREDENTIALS:
        raise ConnectorRequestError(f"'platform' must be one of {', '.join(CREDENTIALS)}")
    channel = body.get("channel")
    if not isinstance(channel, str) or not 0 < len(channel.strip()) <= 200:
        raise ConnectorRequestError("'channel' must be text of 1 to 200 characters")
    url = body.get("url") or ""
    if not isinstance(url, str) or len(url) > 500 or (url and not url.startswith(URL_SCHEMES)):
        raise ConnectorRequestError("'url' must be a ws://, wss://, http:// or https:// address")
    allowed, required = CREDENTIALS[platform]
    unknown = set(body) - {"platform", "channel", "url"} - allowed
    if unknown:
        raise ConnectorRequestError(f"{platform} takes no {', '.join(sorted(unknown))}; it takes "
                                    f"{', '.join(sorted(allowed)) or 'no credentials'}")
    missing = required - {k for k in required if body.get(k)}
    if missing:
        raise ConnectorRequestError(f"{platform} needs {', '.join(sorted(missing))}")
    credentials: dict[str, Any] = {}
    for name in allowed & set(body):
        value = body[name]
        if name == "uid":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConnectorRequestError("'uid' must be a non-negative integer")
        elif not isinstance(value, str) or len(value) > 4096:
            raise ConnectorRequestError(f"{name!r} must be text of at most 4096 characters")
        if value:
            credentials[name] = value
    if platform == "youtube" and not (credentials.get("api_key") or credentials.get("access_token") or all(
            credentials.get(k) for k in ("refresh_token", "client_id", "client_secret"))):
        raise ConnectorRequestError("youtube needs api_key, or OAuth: access_token, or refresh_token with "
                                    "client_id and client_secret")
    if platform == "twitch" and credentials.get("token") and not credentials.get("nick"):
        raise ConnectorRequestError("a Twitch token needs 'nick', the account it belongs to")
    if platform == "tiktok" and url:
        raise ConnectorRequestError("tiktok takes no url: the TikTokLive package connects to TikTok itself")
    if platform == "bilibili" and not channel.strip().isdigit():
        raise ConnectorRequestError("a Bilibili channel is the live room's number")
    return platform, channel.strip(), url, credentials


class ConnectorsApi:
    """The REST handlers; mount each with one `Route` (see the module docstring)."""

    def __init__(self, store: ConnectorStore, runtime: ConnectorRuntime,
                 room_for: Callable[[Request, str], Any], submit_for: Callable[[Any], Submit]) -> None:
        self.store = store
        self.runtime = runtime
        self.room_for = room_for
        self.submit_for = submit_for

    def _view(self, record: ConnectorRecord) -> dict[str, Any]:
        return {**record.public(), "has_credentials": self.store.has_credentials(record),
                "status": self.runtime.status(record.id)}

    async def _guard(self, run: Callable[[], Awaitable[Response]]) -> Response:
        """Errors the caller caused become JSON answers, mapped where every route's are (http_errors)."""
        return await guard(run)

    async def create(self, request: Request) -> Response:
        async def run() -> Response:
            room_id = request.path_params["room"]
            room = self.room_for(request, room_id)
            body = await json_body(request)
            platform, channel, url, credentials = parse_body(body)
            if len(self.store.for_room(room_id)) >= MAX_PER_ROOM:
                raise ConnectorRequestError(f"a room has at most {MAX_PER_ROOM} connectors")
            record = self.store.add(room_id, platform, channel, url, credentials)
            try:
                self.runtime.start(record, credentials, self.submit_for(room))
            except Exception:
                self.store.delete(record)
                raise
            return JSONResponse({"id": record.id, "status": self.runtime.status(record.id)}, 201)

        return await self._guard(run)

    async def list(self, request: Request) -> Response:
        async def run() -> Response:
            room_id = request.path_params["room"]
            self.room_for(request, room_id)
            return JSONResponse({"connectors": [self._view(r) for r in self.store.for_room(room_id)]})

        return await self._guard(run)

    async def delete(self, request: Request) -> Response:
        async def run() -> Response:
            room_id = request.path_params["room"]
            self.room_for(request, room_id)
            record = self.store.get(room_id, request.path_params["connector"])
            await self.runtime.stop(record.id)
            self.store.delete(record)
            return Response(status_code=204)

        return await self._guard(run)

    async def room_closed(self, room_id: str) -> None:
        """A room was deleted: stop and forget its connectors."""
        for record in self.store.delete_room(room_id):
            await self.runtime.stop(record.id)

