"""A small typed Python client for voxroom (`from voxroom.streaming.sdk import Voxroom, BotClient`).

`Voxroom` speaks the REST API with the standard library only (rooms, say, cancel, chat, voices, and
OpenAI-compatible speech as bytes). `BotClient` speaks the bot protocol (docs/protocol.md) over one
WebSocket: `say()` returns a `BotSpeech` whose audio is an async iterator of PCM16 frames (48 kHz
mono, 20 ms each) and whose `reason` says how it ended. Documented in docs/sdk.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from voxroom.streaming import protocol


class VoxroomError(Exception):
    """A refusal from the server: HTTP status (0 for the bot protocol), stable code, message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


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


class Voxroom:
    """The REST API with an account's API token: `Voxroom("http://127.0.0.1:8080", "vxr_…")`."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # -- plumbing --------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        raw = self._request(method, path, body)
        return json.loads(raw) if raw else None

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}"})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                return bytes(res.read())
        except urllib.error.HTTPError as err:
            raise _http_error(err.code, err.read()) from None

    @staticmethod
    def _segment(value: str) -> str:
        return urllib.parse.quote(value, safe="")

    # -- rooms -----------------------------------------------------------------------------------
    def create_room(self, name: str = "room") -> Room:
        room = self._call("POST", "/api/rooms", {"name": name})
        return Room(room["id"], room["name"], room.get("listen_url"), room.get("listener_grant"))

    def rooms(self) -> list[Room]:
        return [Room(r["id"], r["name"]) for r in self._call("GET", "/api/rooms")["rooms"]]

    def delete_room(self, room_id: str) -> None:
        self._call("DELETE", f"/api/rooms/{self._segment(room_id)}")

    # -- speech in a room ------------------------------------------------------------------------
    def say(self, room_id: str, text: str, *, voice: str | None = None, lang: str = "auto", speed: float = 1.0,
            speech_id: str | None = None) -> str:
        """Queue a host line in a room (first in line); returns the speech id to cancel it with."""
        body: dict[str, Any] = {"text": text, "lang": lang, "speed": speed}
        if voice is not None:
            body["voice"] = voice
        if speech_id is not None:
            body["id"] = speech_id
        return str(self._call("POST", f"/api/rooms/{self._segment(room_id)}/say", body)["id"])

    def cancel(self, room_id: str, speech_id: str) -> None:
        self._call("DELETE", f"/api/rooms/{self._segment(room_id)}/speeches/{self._segment(speech_id)}")

    def chat(self, room_id: str, user: str, text: str = "", *, kind: str = "message",
             **fields: Any) -> str:
        """A chat event for the room's co-host; returns its outcome (queued, dropped, moderated…)."""
        event = {"type": kind, "user": user, **({"text": text} if text else {}), **fields}
        return str(self._call("POST", f"/api/rooms/{self._segment(room_id)}/chat", event)["outcome"])

    # -- voices and direct speech ----------------------------------------------------------------
    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(v["id"], v["name"], v["engine"]) for v in self._call("GET", "/api/voices")["voices"]]

    def speech(self, text: str, *, voice: str = "stock", response_format: str = "pcm", speed: float = 1.0) -> bytes:
        """The whole of `text` as audio through `/v1/audio/speech` (pcm: 24 kHz PCM16 mono)."""
        return self._request("POST", "/v1/audio/speech", {"model": "voxroom-tts", "input": text, "voice": voice,
                                                          "response_format": response_format, "speed": speed})

    def bot(self) -> BotClient:
        ws = "ws" + self.base_url[4:] if self.base_url.startswith("http") else self.base_url
        return BotClient(ws + "/ws", self.token)


def _http_error(status: int, raw: bytes) -> VoxroomError:
    try:
        body = json.loads(raw)
    except ValueError:
        return VoxroomError(status, "error", raw.decode(errors="replace")[:200])
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):  # the /v1 routes answer in OpenAI's shape
        return VoxroomError(status, str(error.get("code") or error.get("type")), str(error.get("message")))
    return VoxroomError(status, str(body.get("code", "error")), str(error or body.get("message")))


_END = object()


@dataclass(eq=False)
class BotSpeech:
    """One `say` on a bot connection: iterate it for PCM16 frames; `reason` is set once it has ended."""

    id: str
    client: BotClient
    reason: str | None = None
    error: str | None = None
    frames: int = 0
    _queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[bytes]:
        while (item := await self._queue.get()) is not _END:
            self.frames += 1
            yield item
        if self.reason == "refused":
            raise VoxroomError(0, self.error or "refused", f"speech {self.id} was refused")

    async def audio(self) -> bytes:
        """Every frame until the speech ends, joined."""
        return b"".join([frame async for frame in self])

    async def cancel(self) -> None:
        await self.client.cancel(self.id)


class BotClient:
    """The bot protocol over one WebSocket: `async with BotClient(url, token) as bot: speech = await bot.say(…)`."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.session: str | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._speeches: dict[str, BotSpeech] = {}
        self._ids = itertools.count(1)

    async def __aenter__(self) -> BotClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        self._ws = await connect(self.url, max_size=16 * 1024 * 1024)
        await self._ws.send(json.dumps({"type": "hello", "version": protocol.PROTOCOL_VERSION, "token": self.token}))
        welcome = json.loads(await self._ws.recv())
        if welcome.get("type") != "welcome":
            await self._ws.close()
            raise VoxroomError(0, welcome.get("code", "unauthorized"), welcome.get("message", "not welcomed"))
        self.session = welcome["session"]
        self._reader = asyncio.create_task(self._read())

    async def say(self, text: str, *, voice: str | None = None, room: str | None = None, lang: str = "auto",
                  speed: float = 1.0, speech_id: str | None = None) -> BotSpeech:
        """Send a `say`; its frames arrive on the returned `BotSpeech` (in a room too: that room's audio)."""
        ws = self._connected()
        speech = BotSpeech(speech_id or f"sdk-{next(self._ids)}", self)
        self._speeches[speech.id] = speech
        message: dict[str, Any] = {"type": "say", "id": speech.id, "text": text, "lang": lang, "speed": speed}
        if voice is not None:
            message["voice"] = voice
        if room is not None:
            message["room"] = room
        await ws.send(json.dumps(message))
        return speech

    async def cancel(self, speech_id: str) -> None:
        await self._connected().send(json.dumps({"type": "cancel", "id": speech_id}))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self._end_all("closed")

    def _connected(self) -> ClientConnection:
        if self._ws is None:
            raise RuntimeError("connect() first (or use `async with`)")
        return self._ws

    def _end(self, speech_id: str, reason: str, error: str | None = None) -> None:
        speech = self._speeches.pop(speech_id, None)
        if speech is not None:
            speech.reason, speech.error = reason, error
            speech._queue.put_nowait(_END)

    def _end_all(self, reason: str) -> None:
        for speech_id in list(self._speeches):
            self._end(speech_id, reason)

    async def _read(self) -> None:
        ws = self._connected()
        try:
            async for data in ws:
                if isinstance(data, bytes):
                    frame = protocol.decode_audio(data)
                    speech = self._speeches.get(frame.speech_id)
                    if speech is not None:
                        speech._queue.put_nowait(frame.pcm16)
                    continue
                msg = json.loads(data)
                if msg.get("type") == "speech.ended":
                    self._end(msg["id"], msg["reason"], msg.get("error"))
                elif msg.get("type") == "error" and msg.get("ref") in self._speeches:
                    self._end(msg["ref"], "refused", msg.get("code"))
        except Exception:  # the connection dropped: every open speech ends
            pass
        finally:
            self._end_all("closed")
