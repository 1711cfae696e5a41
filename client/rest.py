"""The REST side of the client: `Voxroom` with an account's API token, `RoomBot` with a room's bot grant.

Every call is a coroutine; the HTTP request itself runs in a worker thread with the standard library
(`urllib`), so the client needs no HTTP package. Room events (captions, queue changes, speech states)
come over the room's event WebSocket as dicts.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from voxroom.client.bot import BotClient
from voxroom.client.errors import VoxroomError, http_error


@dataclass(frozen=True)
class Room:
    id: str
    name: str
    listen_url: str | None = None  # only when just created: carries a listener grant
    listener_grant: str | None = None


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    name: str
    engine: str


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _ws_base(base_url: str) -> str:
    return "ws" + base_url[4:] if base_url.startswith("http") else base_url


class _Http:
    """JSON over HTTP with one bearer credential (an API token or a join grant)."""

    def __init__(self, base_url: str, credential: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.credential = credential
        self.timeout = timeout

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        raw = await self.request(method, path, body)
        return json.loads(raw) if raw else None

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        return await asyncio.to_thread(self._blocking, method, path, body)

    def _blocking(self, method: str, path: str, body: dict[str, Any] | None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.credential}"})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                return bytes(res.read())
        except urllib.error.HTTPError as err:
            raise http_error(err.code, err.read()) from None

    async def say(self, room_id: str, text: str, voice: str | None, lang: str, speed: float,
                  speech_id: str | None) -> str:
        body: dict[str, Any] = {"text": text, "lang": lang, "speed": speed}
        if voice is not None:
            body["voice"] = voice
        if speech_id is not None:
            body["id"] = speech_id
        return str((await self.call("POST", f"/api/rooms/{_segment(room_id)}/say", body))["id"])

    async def chat(self, room_id: str, user: str, text: str, kind: str, fields: dict[str, Any]) -> str:
        event = {"type": kind, "user": user, **({"text": text} if text else {}), **fields}
        return str((await self.call("POST", f"/api/rooms/{_segment(room_id)}/chat", event))["outcome"])

    async def events(self, room_id: str) -> AsyncIterator[dict[str, Any]]:
        url = f"{_ws_base(self.base_url)}/rooms/{_segment(room_id)}/events?token={_segment(self.credential)}"
        async with connect(url) as ws:
            try:
                async for data in ws:
                    yield json.loads(data)
            except ConnectionClosed:
                pass
            if ws.close_code not in (None, 1000, 1001):  # 4403 / 4404: refused, with the reason
                raise VoxroomError(0, "forbidden" if ws.close_code == 4403 else "not_found", ws.close_reason or "")


class Voxroom:
    """The REST API with an account's API token: `vx = Voxroom("http://127.0.0.1:8080", "vxr_…")`."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self._http = _Http(base_url, token, timeout)
        self.base_url, self.token = self._http.base_url, token

    # -- rooms -----------------------------------------------------------------------------------
    async def create_room(self, name: str = "room") -> Room:
        room = await self._http.call("POST", "/api/rooms", {"name": name})
        return Room(room["id"], room["name"], room.get("listen_url"), room.get("listener_grant"))

    async def rooms(self) -> list[Room]:
        return [Room(r["id"], r["name"]) for r in (await self._http.call("GET", "/api/rooms"))["rooms"]]

    async def delete_room(self, room_id: str) -> None:
        await self._http.call("DELETE", f"/api/rooms/{_segment(room_id)}")

    async def grant(self, room_id: str, role: str = "bot", ttl: float = 6 * 3600) -> str:
        """A join grant (`vxg_…`) for one room and role (listener, host, bot), to hand to someone else."""
        body = {"role": role, "ttl": ttl}
        return str((await self._http.call("POST", f"/api/rooms/{_segment(room_id)}/grants", body))["grant"])

    # -- speech and chat in a room ---------------------------------------------------------------
    async def say(self, room_id: str, text: str, *, voice: str | None = None, lang: str = "auto",
                  speed: float = 1.0, speech_id: str | None = None) -> str:
        """Queue a host line in a room (first in line); returns the speech id to cancel it with."""
        return await self._http.say(room_id, text, voice, lang, speed, speech_id)

    async def cancel(self, room_id: str, speech_id: str) -> None:
        await self._http.call("DELETE", f"/api/rooms/{_segment(room_id)}/speeches/{_segment(speech_id)}")

    async def chat(self, room_id: str, user: str, text: str = "", *, kind: str = "message", **fields: Any) -> str:
        """A chat event for the room's co-host; returns its outcome (queued, dropped, moderated…)."""
        return await self._http.chat(room_id, user, text, kind, fields)

    def events(self, room_id: str) -> AsyncIterator[dict[str, Any]]:
        """The room's events as they happen: `room` first, then captions, queue and speech changes."""
        return self._http.events(room_id)

    # -- voices and direct speech ----------------------------------------------------------------
    async def voices(self) -> list[VoiceInfo]:
        listing = await self._http.call("GET", "/api/voices")
        return [VoiceInfo(v["id"], v["name"], v["engine"]) for v in listing["voices"]]

    async def speech(self, text: str, *, voice: str = "stock", response_format: str = "pcm",
                     speed: float = 1.0) -> bytes:
        """The whole of `text` as audio through `/v1/audio/speech` (pcm: 24 kHz PCM16 mono)."""
        return await self._http.request("POST", "/v1/audio/speech", {
            "model": "voxroom-tts", "input": text, "voice": voice, "response_format": response_format,
            "speed": speed})

    # -- other ways in ---------------------------------------------------------------------------
    def bot(self) -> BotClient:
        """The bot protocol with the same token (`async with vx.bot() as bot: …`)."""
        return BotClient(_ws_base(self.base_url) + "/ws", self.token)

    def join(self, room_id: str, grant: str) -> RoomBot:
        """A room as a bot with a join grant someone gave you (no API token needed)."""
        return RoomBot(self.base_url, room_id, grant, self._http.timeout)


class RoomBot:
    """One room, as a bot holding a join grant (`role` bot): say lines, send chat events, read events.

    `RoomBot("http://127.0.0.1:8080", room_id, "vxg_…")`; a grant for another room or role is refused
    with `VoxroomError` 403."""

    def __init__(self, base_url: str, room_id: str, grant: str, timeout: float = 30.0) -> None:
        self._http = _Http(base_url, grant, timeout)
        self.room_id = room_id

    async def say(self, text: str, *, voice: str | None = None, lang: str = "auto", speed: float = 1.0,
                  speech_id: str | None = None) -> str:
        """A line for the room's co-host to say (through its moderation and host policies)."""
        return await self._http.say(self.room_id, text, voice, lang, speed, speech_id)

    async def chat(self, user: str, text: str = "", *, kind: str = "message", **fields: Any) -> str:
        return await self._http.chat(self.room_id, user, text, kind, fields)

    def events(self) -> AsyncIterator[dict[str, Any]]:
        return self._http.events(self.room_id)
