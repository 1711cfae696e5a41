"""The I/O side of bot protocol v1: a pump between one WebSocket and its `protocol.BotConnection`.

It changes no protocol state itself: every message in goes through `BotConnection.receive`, every
message out is made by a `send_*` call on the connection, and this module moves the results and
acts on the events. A `say` with a room becomes a line for that room's co-host (its priority,
moderation and host policies apply; the room's playout says it and this client also receives its
frames); a `say` without a room is said by the session's own unpaced playout, as fast as the engine
goes (a bot using voxroom as its voice). Either way the playout's lifecycle events drive
`speech.started` / `speech.ended`, so every open speech id is freed when its speech ends, whatever
ends it. A vanished client cancels its own speeches and nothing else.
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

from voxroom.agent.clock import Clock
from voxroom.agent.cohost import HostLine
from voxroom.agent.lifecycle import EventBus, LifecycleEvent, SpeechEnded, SpeechStarted
from voxroom.agent.speech import SpeakerBusy, SpeechHandle
from voxroom.models.engine import Busy, Engine, LanguageNotSupported, Voice, VoiceRef
from voxroom.models.pcm import to_pcm16_bytes
from voxroom.models.piper_voice import english_part
from voxroom.streaming import protocol
from voxroom.streaming.accounts import Account, Accounts, AuthError
from voxroom.streaming.playout import Playout
from voxroom.streaming.rooms import Room, RoomError, Rooms

log = logging.getLogger(__name__)

# A bot's direct `say` arrives a quarter of a second ahead of real time at most: a cushion against
# jitter, and few enough frames (12) that websockets' default 16-message receive queue never fills,
# so a bot that closes mid-speech sees the server's close frame at once (unpaced: 10 s and 1006).
DIRECT_LEAD_S = 0.25
OUTBOX_LIMIT = 1500  # 30 s of frames: a client this far behind is gone or broken
VoiceLookup = Callable[[VoiceRef, Account], Voice | None]
ChatHandler = Callable[[str, dict[str, Any], Account], Awaitable[None]]


class BotSession:
    def __init__(self, ws: WebSocket, accounts: Accounts, rooms: Rooms, engine: Engine, clock: Clock,
                 voices: VoiceLookup, chat: ChatHandler | None = None) -> None:
        self.ws = ws
        self.accounts = accounts
        self.rooms = rooms
        self.engine = engine
        self.clock = clock
        self.voices = voices
        self.chat = chat
        self.id = secrets.token_urlsafe(8)
        self.conn = protocol.BotConnection()
        self.account: Account | None = None
        self._outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue(maxsize=OUTBOX_LIMIT)
        self._drained = asyncio.Event()
        self._drained.set()
        self._overflowed = False
        self._direct: Playout | None = None
        self._speeches: dict[str, SpeechHandle | Room] = {}  # open speech id -> its handle or its room
        self._unsubscribe: dict[str, Callable[[], None]] = {}  # bus name -> unsubscribe

    # -- moving messages --------------------------------------------------------------------------
    def _flush(self) -> None:
        for item in self.conn.data_to_send():
            try:
                self._outbox.put_nowait(item)
            except asyncio.QueueFull:
                self._overflowed = True  # the writer closes the connection
        if self._outbox.qsize() >= OUTBOX_LIMIT // 2:
            self._drained.clear()

    async def _writer(self) -> None:
        while True:
            item = await self._outbox.get()
            if self._outbox.qsize() < OUTBOX_LIMIT // 2:
                self._drained.set()
            if item is None or self._overflowed:
                if self._overflowed:
                    with contextlib.suppress(Exception):
                        await self.ws.close(code=1008, reason="client is not reading its audio")
                return
            if isinstance(item, bytes):
                await self.ws.send_bytes(item)
            else:
                await self.ws.send_text(item)

    # -- what the playouts tell us (FrameListener and event-bus subscriber) ------------------------
    def speech_frame(self, handle: SpeechHandle, frame: np.ndarray) -> None:
        self.conn.send_audio(handle.id, to_pcm16_bytes(frame))
        self._flush()

    async def writable(self) -> None:
        """Back-pressure for direct speech: the unpaced playout waits while the socket is behind."""
        await self._drained.wait()

    def _watch(self, source: SpeechHandle | Room | None) -> Callable[[LifecycleEvent], None]:
        def on_event(event: LifecycleEvent) -> None:
            if not isinstance(event, SpeechStarted | SpeechEnded):
                return
            owner = self._speeches.get(event.id)
            ours = owner is source if source is not None else isinstance(owner, SpeechHandle)
            if owner is None or not ours:
                return
            if isinstance(event, SpeechStarted):
                self.conn.send_started(event.id)
            else:
                self._speeches.pop(event.id, None)
                self.conn.send_ended(event.id, event.state, event.frames, event.error)
            self._flush()
        return on_event

    def _follow(self, bus: EventBus, source: Room | None) -> None:
        if bus.name not in self._unsubscribe:
            self._unsubscribe[bus.name] = bus.subscribe(self._watch(source))

    # -- the loop ---------------------------------------------------------------------------------
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
                msg = self.conn.receive(data)
                if msg is not None:
                    await self._act(msg)
                self._flush()
        except WebSocketDisconnect:
            pass
        finally:
            await self._cleanup(writer)

    async def _act(self, msg: protocol.ClientMessage) -> None:
        if isinstance(msg, protocol.Hello):
            try:
                self.account = self.accounts.by_token(msg.token)
            except AuthError as exc:
                self.conn.send_error(protocol.ProtocolError("unauthorized", str(exc)))
                return
            self.conn.send_welcome(self.id, self.account.id)
        elif isinstance(msg, protocol.Ping):
            self.conn.send_pong(msg.id)
        elif isinstance(msg, protocol.Say):
            self._say(msg)
        elif isinstance(msg, protocol.Cancel):
            self._cancel(msg.id)
        elif isinstance(msg, protocol.Chat):
            await self._chat(msg)

    def _say(self, msg: protocol.Say) -> None:
        assert self.account is not None
        try:
            voice = self.voices(msg.voice, self.account) if msg.voice is not None else None
        except LookupError as exc:
            self.conn.send_refused(msg.id, protocol.ProtocolError("unknown_voice", str(exc), msg.id))
            return
        except Busy as exc:  # the voice is still being prepared
            self.conn.send_refused(msg.id, protocol.ProtocolError("busy", str(exc), msg.id))
            return
        room: Room | None = None
        if msg.room is not None:
            try:
                room = self.rooms.owned(msg.room, self.account.id)
            except RoomError as exc:
                self.conn.send_refused(msg.id, protocol.ProtocolError("unknown_room", str(exc), msg.id))
                return
        speaking = voice if msg.voice is not None or room is None else room.cohost.agent.voice
        if speaking is None:
            try:
                english_part(msg.text, msg.lang)
            except LanguageNotSupported as exc:
                self.conn.send_refused(msg.id, protocol.ProtocolError(exc.code, str(exc), msg.id))
                return
        if room is None:
            playout = self._direct_playout()
            handle = SpeechHandle(id=msg.id, voice=voice, lang=msg.lang, speed=msg.speed, source="bot",
                                  listener=self)
            self._speeches[msg.id] = handle
            try:
                playout.speak(handle.say(msg.text))
            except SpeakerBusy as exc:
                self._speeches.pop(msg.id, None)
                self.conn.send_refused(msg.id, protocol.ProtocolError("busy", str(exc), msg.id))
                return
            self.conn.send_queued(msg.id)
            return
        self._follow(room.events, room)
        self._speeches[msg.id] = room
        line = HostLine(voice=voice if msg.voice is not None else False, lang=msg.lang, speed=msg.speed,
                        listener=self, source="bot")
        try:
            room.cohost.agent.say(msg.text, speech_id=msg.id, line=line)
        except (SpeakerBusy, ValueError) as exc:
            self._speeches.pop(msg.id, None)
            self.conn.send_refused(msg.id, protocol.ProtocolError("busy", str(exc), msg.id))
            return
        self.conn.send_queued(msg.id, room.id)

    def _direct_playout(self) -> Playout:
        if self._direct is None:
            self._direct = Playout(self.engine, self.clock, name=f"bot-{self.id}", paced=False, lead=DIRECT_LEAD_S)
            self._follow(self._direct.events, None)
            self._direct.start()
        return self._direct

    def _cancel(self, speech_id: str) -> None:
        owner = self._speeches.get(speech_id)
        if isinstance(owner, SpeechHandle):
            owner.cancel()
        elif owner is not None:
            cancel_in_room(owner, speech_id)

    async def _chat(self, msg: protocol.Chat) -> None:
        assert self.account is not None
        if self.chat is None:
            self.conn.send_error(protocol.ProtocolError("not_supported", "this server does not take chat events"))
            return
        try:
            await self.chat(msg.room, msg.event, self.account)
        except RoomError as exc:
            self.conn.send_error(protocol.ProtocolError("unknown_room", str(exc)))
        except ValueError as exc:
            self.conn.send_error(protocol.ProtocolError("invalid_event", str(exc)))

    async def _cleanup(self, writer: asyncio.Task[None]) -> None:
        for unsubscribe in self._unsubscribe.values():
            unsubscribe()  # nobody to tell any more
        for speech_id, owner in list(self._speeches.items()):
            if isinstance(owner, SpeechHandle):
                owner.listener = None
                owner.cancel()
            else:
                cancel_in_room(owner, speech_id)
        self._speeches.clear()
        if self._direct is not None:
            await self._direct.close()
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer


def cancel_in_room(room: Room, speech_id: str) -> bool:
    """Cancel a speech of a room by id: a line still waiting in its co-host, or one its playout holds."""
    if room.cohost.agent.cancel(speech_id):
        return True
    handle = room.playout.find(speech_id)
    if handle is None:
        return False
    handle.cancel()
    return True
