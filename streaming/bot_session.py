"""The I/O layer of WebSocket protocol v1: moves bytes between a socket and `protocol`.

One `BotSession` per connection. A `say` without a room is synthesized straight to this client
as fast as the engine goes (a bot using voxroom as its voice); a `say` with a room is queued in
that room's playout and the client receives its frames as they go on air. Every bad message gets
an `error` and the loop keeps reading; a vanished client cancels its own speeches and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from voxroom.models.engine import Engine, SynthesisError, Voice
from voxroom.streaming import protocol
from voxroom.streaming.accounts import Account, Accounts, AuthError
from voxroom.streaming.audio import to_pcm16
from voxroom.streaming.playout import Speech, synthesize_frames
from voxroom.streaming.rooms import RoomError, Rooms

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 1500  # 30 s of frames: a client this far behind is gone or broken
VoiceLookup = Callable[[str | None, Account], Voice | None]
ChatHandler = Callable[[str, dict[str, Any], Account], Awaitable[None]]


class BotSession:
    def __init__(
        self,
        ws: WebSocket,
        accounts: Accounts,
        rooms: Rooms,
        engine: Engine,
        voices: VoiceLookup,
        chat: ChatHandler | None = None,
    ) -> None:
        self.ws = ws
        self.accounts = accounts
        self.rooms = rooms
        self.engine = engine
        self.voices = voices
        self.chat = chat
        self.id = secrets.token_urlsafe(8)
        self.state = protocol.ConnectionState()
        self.account: Account | None = None
        self._outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue(maxsize=OUTBOX_LIMIT)
        self._direct: dict[str, asyncio.Task[None]] = {}
        self._room_speeches: dict[str, tuple[Speech, Any]] = {}
        self._seq: dict[str, int] = {}
        self._overflowed = False

    # -- outgoing ---------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        self._put(protocol.encode(message))

    def _put(self, item: str | bytes) -> None:
        try:
            self._outbox.put_nowait(item)
        except asyncio.QueueFull:
            self._overflowed = True  # the writer closes the connection

    def _frame_bytes(self, speech_id: str, frame: np.ndarray) -> bytes:
        seq = self._seq.get(speech_id, 0)
        self._seq[speech_id] = seq + 1
        return protocol.encode_audio(speech_id, seq, to_pcm16(frame))

    async def _writer(self) -> None:
        while True:
            item = await self._outbox.get()
            if item is None or self._overflowed:
                if self._overflowed:
                    with contextlib.suppress(Exception):
                        await self.ws.close(code=1008, reason="client is not reading its audio")
                return
            if isinstance(item, bytes):
                await self.ws.send_bytes(item)
            else:
                await self.ws.send_text(item)

    # -- SpeechListener, for speeches queued in a room ----------------------------------------
    def speech_started(self, speech: Speech) -> None:
        self.send({"type": "speech.started", "id": speech.id})

    def speech_frame(self, speech: Speech, frame: np.ndarray) -> None:
        self._put(self._frame_bytes(speech.id, frame))

    def speech_ended(self, speech: Speech) -> None:
        self._room_speeches.pop(speech.id, None)
        self._ended(speech.id, speech.state, speech.frames_played, speech.error)

    def _ended(self, speech_id: str, reason: str, frames: int, error: str | None = None) -> None:
        self.state.speech_finished(speech_id)
        self._seq.pop(speech_id, None)
        msg: dict[str, Any] = {"type": "speech.ended", "id": speech_id, "reason": reason, "frames": frames}
        if error:
            msg["error"] = error
        self.send(msg)

    # -- incoming ---------------------------------------------------------------------------
    async def run(self) -> None:
        await self.ws.accept()
        writer = asyncio.create_task(self._writer())
        try:
            while not writer.done():
                received = await self.ws.receive()
                if received["type"] == "websocket.disconnect":
                    break
                data = received.get("text")
                if data is None:
                    data = received.get("bytes") or b""
                try:
                    await self._handle(self.state.receive(data))
                except protocol.ProtocolError as exc:
                    self.send(exc.to_message())
        except WebSocketDisconnect:
            pass
        finally:
            await self._cleanup(writer)

    async def _handle(self, msg: protocol.ClientMessage) -> None:
        if isinstance(msg, protocol.Hello):
            try:
                self.account = self.accounts.by_token(msg.token)
            except AuthError as exc:
                raise protocol.ProtocolError("unauthorized", str(exc)) from None
            self.state.accept_hello()
            self.send(protocol.welcome(self.id, self.account.id))
        elif isinstance(msg, protocol.Ping):
            self.send({"type": "pong", **({"id": msg.id} if msg.id else {})})
        elif isinstance(msg, protocol.Say):
            self._say(msg)
        elif isinstance(msg, protocol.Cancel):
            self._cancel(msg.id)
        elif isinstance(msg, protocol.Chat):
            await self._chat(msg)

    def _say(self, msg: protocol.Say) -> None:
        assert self.account is not None
        try:
            voice = self.voices(msg.voice, self.account)
        except LookupError as exc:
            self.state.speech_finished(msg.id)
            raise protocol.ProtocolError("unknown_voice", str(exc), msg.id) from None
        if msg.room is None:
            self.send({"type": "speech.queued", "id": msg.id})
            self._direct[msg.id] = asyncio.create_task(self._speak_direct(msg, voice))
            return
        try:
            room = self.rooms.owned(msg.room, self.account.id)
            speech = Speech(id=msg.id, text=msg.text, voice=voice, lang=msg.lang, speed=msg.speed, listener=self)
            room.playout.say(speech)
        except (RoomError, SynthesisError) as exc:
            self.state.speech_finished(msg.id)
            code = "unknown_room" if isinstance(exc, RoomError) else "busy"
            raise protocol.ProtocolError(code, str(exc), msg.id) from None
        self._room_speeches[msg.id] = (speech, room)
        self.send({"type": "speech.queued", "id": msg.id, "room": room.id})

    async def _speak_direct(self, msg: protocol.Say, voice: Voice | None) -> None:
        frames, reason, error = 0, "done", None
        try:
            async for frame, _piece in synthesize_frames(self.engine, msg.text, voice, lang=msg.lang, speed=msg.speed):
                if frames == 0:
                    self.send({"type": "speech.started", "id": msg.id})
                self._put(self._frame_bytes(msg.id, frame))
                frames += 1
                while self._outbox.qsize() > OUTBOX_LIMIT // 2:  # back-pressure from the socket
                    await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            reason = "cancelled"
        except SynthesisError as exc:
            reason, error = "failed", str(exc)
        except Exception as exc:
            log.exception("direct speech %s failed", msg.id)
            reason, error = "failed", f"synthesis failed: {exc}"
        finally:
            self._direct.pop(msg.id, None)
            self._ended(msg.id, reason, frames, error)

    def _cancel(self, speech_id: str) -> None:
        task = self._direct.get(speech_id)
        if task is not None:
            task.cancel()
            return
        entry = self._room_speeches.get(speech_id)
        if entry is not None:
            speech, room = entry
            room.playout.cancel(speech)

    async def _chat(self, msg: protocol.Chat) -> None:
        assert self.account is not None
        if self.chat is None:
            raise protocol.ProtocolError("not_supported", "this server does not take chat events")
        try:
            await self.chat(msg.room, msg.event, self.account)
        except RoomError as exc:
            raise protocol.ProtocolError("unknown_room", str(exc)) from None
        except ValueError as exc:
            raise protocol.ProtocolError("invalid_event", str(exc)) from None

    async def _cleanup(self, writer: asyncio.Task[None]) -> None:
        for task in list(self._direct.values()):
            task.cancel()
        for speech, room in list(self._room_speeches.values()):
            speech.listener = None  # nobody to tell any more
            room.playout.cancel(speech)
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
