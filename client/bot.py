"""The bot protocol side of the client (docs/protocol.md): `BotClient` over one WebSocket.

`say()` returns a `BotSpeech` whose audio is an async iterator of PCM16 frames (48 kHz mono, 20 ms
each) and whose `reason` says how it ended; `events()` yields every JSON message the server sends
(speech.queued, speech.started, speech.ended, error, pong); `chat()` forwards a chat event into a
room. The wire format comes from `voxroom.streaming.protocol`, the server's own sans-I/O codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from voxroom.client.errors import VoxroomError
from voxroom.streaming import protocol

EVENT_BACKLOG = 1000  # events kept for `events()`; past it the oldest are dropped
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
        self._events: asyncio.Queue[Any] = asyncio.Queue()

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

    async def chat(self, room: str, user: str, text: str = "", *, kind: str = "message", **fields: Any) -> None:
        """A chat event for a room of this account's co-host (any platform's: pass `platform=`, …).
        A refusal comes back as an `error` event."""
        event = {"type": kind, "user": user, **({"text": text} if text else {}), **fields}
        await self._connected().send(json.dumps({"type": "chat", "room": room, "event": event}))

    async def ping(self, ping_id: str | None = None) -> None:
        await self._connected().send(json.dumps({"type": "ping", **({"id": ping_id} if ping_id else {})}))

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every JSON message from the server, in order, until the connection ends (the last
        `EVENT_BACKLOG` are kept for a reader that comes late)."""
        while (event := await self._events.get()) is not _END:
            yield event

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
                if self._events.qsize() >= EVENT_BACKLOG:
                    self._events.get_nowait()
                self._events.put_nowait(msg)
                if msg.get("type") == "speech.ended":
                    self._end(msg["id"], msg["reason"], msg.get("error"))
                elif msg.get("type") == "error" and msg.get("ref") in self._speeches:
                    self._end(msg["ref"], "refused", msg.get("code"))
        except Exception:  # the connection dropped: every open speech ends
            pass
        finally:
            self._end_all("closed")
            self._events.put_nowait(_END)
