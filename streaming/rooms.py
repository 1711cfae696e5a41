"""Rooms: a host (the owner account), listeners over WebRTC, and the co-host's voice.

A room owns one `Playout` (its voice, paced in real time on the server's clock), one
`OpusFanout` (its WebRTC encoding), its turn-taking state and its event bus. Captions are a
subscriber of that bus: every lifecycle event becomes a JSON caption event for the room's caption
sockets (listener pages, the OBS overlay, the console), with a short history for late joiners.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voxroom.agent.clock import Clock, SystemClock
from voxroom.agent.lifecycle import EventBus, LifecycleEvent
from voxroom.agent.speech import SpeechHandle
from voxroom.agent.turns import TurnTaking
from voxroom.models.engine import Engine, Voice
from voxroom.streaming.config import LLMSettings, ServerConfig
from voxroom.streaming.host_input import AudioCallback, HostMicrophone
from voxroom.streaming.playout import Playout
from voxroom.streaming.room_cohost import RoomCoHost
from voxroom.streaming.room_store import RoomStore, StoredRoom, new_link_key
from voxroom.streaming.webrtc import ListenerSession, OpusFanout

if TYPE_CHECKING:  # whip_egress imports the HTTP error mapping, which imports this module
    from voxroom.streaming.whip_egress import WhipPublisher

log = logging.getLogger(__name__)

MAX_LISTENERS_PER_ROOM = 200
MAX_ROOMS_PER_ACCOUNT = 20
# WHEP admission. A listener is pending from its offer until ICE and DTLS connect (well under a second
# on a working network); pending ones cost a peer connection and a room slot while nobody listens, so
# they are capped and expire fast. One listener link is shared by a whole audience, so the cap per
# grant is above the cap per address; the room cap keeps most of the room for connected listeners.
MAX_PENDING_LISTENERS_PER_ROOM = 50
MAX_PENDING_LISTENERS_PER_GRANT = 20
MAX_PENDING_LISTENERS_PER_ADDRESS = 4
PENDING_LISTENER_TIMEOUT_S = 5.0

SFU_STATES = ("connecting", "publishing", "retrying", "error")
Subscriber = Callable[[dict[str, Any]], None]


class RoomError(Exception):
    """A refusal about rooms: HTTP `status`, and a `code` of its own where the status's is not enough;
    `retry_helps` False for a limit that waiting does not lift (no Retry-After then)."""

    def __init__(self, message: str, status: int = 400, *, code: str | None = None, retry_helps: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_helps = retry_helps


@dataclass(eq=False)
class Room:
    id: str
    name: str
    owner: str  # account id
    playout: Playout
    fanout: OpusFanout
    cohost: RoomCoHost
    events: EventBus
    created: float = field(default_factory=time.time)
    link_key: str = field(default_factory=new_link_key)  # its listener/overlay links carry it (rotate: new one)
    # Called when the links are rotated: one per caption socket opened with the old link.
    link_holders: set[Callable[[], None]] = field(default_factory=set)
    listeners: dict[str, ListenerSession] = field(default_factory=dict)
    subscribers: set[Subscriber] = field(default_factory=set)
    history: list[dict[str, Any]] = field(default_factory=list)  # recent caption events
    host_mic: HostMicrophone | None = None
    host_audio: list[AudioCallback] = field(default_factory=list)  # 16 kHz mono consumers (VAD)
    sfu: list[WhipPublisher] = field(default_factory=list)  # WHIP egress, one per configured SFU endpoint

    def caption(self, event: LifecycleEvent) -> None:
        """The bus subscriber behind the caption sockets."""
        self.publish(event.as_dict())

    def publish(self, event: dict[str, Any]) -> None:
        self.history = [*self.history[-49:], event]
        for subscriber in list(self.subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("room %s: subscriber failed; removing it", self.id)
                self.subscribers.discard(subscriber)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "listeners": len(self.listeners),
            "host_mic": self.host_mic is not None,
            "queue": [speech_summary(s) for s in self.playout.queued()] + self.cohost.agent.pending_lines(),
            "cohost": self.cohost.settings(),
            "pacer": vars(self.playout.stats),
            "sfu": [p.status() for p in self.sfu],
        }


def speech_summary(speech: SpeechHandle) -> dict[str, Any]:
    return speech.summary()


def _admission_keys(grant: str | None, address: str | None) -> tuple[str, ...]:
    """What a joining listener is counted by; a grant is kept only as a hash (it is a credential)."""
    keys = []
    if grant:
        keys.append("grant:" + hashlib.sha256(grant.encode()).hexdigest()[:32])
    if address:
        keys.append("address:" + address)
    return tuple(keys)


def _admit(room: Room, admitted_as: tuple[str, ...]) -> None:
    """Refuse a listener the room has no place for, or whose grant or address already has too many
    listeners still connecting (429: they free their slots within PENDING_LISTENER_TIMEOUT_S)."""
    if len(room.listeners) >= MAX_LISTENERS_PER_ROOM:
        raise RoomError("this room is full; push it to an SFU with WHIP for larger audiences", 503)
    pending = [s for s in room.listeners.values() if s.pending]
    if len(pending) >= MAX_PENDING_LISTENERS_PER_ROOM:
        raise RoomError("too many listeners are connecting to this room right now; try again in a few seconds", 429)
    for key in admitted_as:
        cap = MAX_PENDING_LISTENERS_PER_GRANT if key.startswith("grant:") else MAX_PENDING_LISTENERS_PER_ADDRESS
        if sum(key in s.admitted_as for s in pending) >= cap:
            which = "this link" if key.startswith("grant:") else "your address"
            raise RoomError(f"too many listeners from {which} are still connecting; try again in a few seconds", 429)


class Rooms:
    def __init__(self, engine: Engine, config: ServerConfig, clock: Clock | None = None,
                 store: RoomStore | None = None) -> None:
        """`store`: where rooms are kept across restarts (None: in memory only)."""
        self.engine = engine
        self.config = config
        self.clock = clock if clock is not None else SystemClock()
        self.store = store
        # The LLM endpoint a room answers with, by (owner, room id): the app sets the console's (the room's
        # own, else its account's, else the server's).
        self.llm_for: Callable[[str, str], LLMSettings | None] = lambda owner, room: config.llm_settings()
        self._rooms: dict[str, Room] = {}

    def create(self, owner: str, name: str) -> Room:
        if sum(r.owner == owner for r in self._rooms.values()) >= MAX_ROOMS_PER_ACCOUNT:
            raise RoomError(f"an account may have at most {MAX_ROOMS_PER_ACCOUNT} rooms; delete one to make "
                            "another", 429, code="room_limit", retry_helps=False)
        room = self._open(secrets.token_urlsafe(8), owner, name[:100] or "room", time.time())
        self.save(room)
        return room

    async def rotate_links(self, room: Room, old_link: str) -> None:
        """A new link key for the room: its old listener and overlay links stop working now. Caption
        sockets and WHEP listeners that came in with the old link (`old_link`, the credential) are
        closed; the key is on disk before this returns."""
        room.link_key = new_link_key()
        self.save(room)
        holders, room.link_holders = room.link_holders, set()
        for revoke in holders:
            revoke()
        revoked = _admission_keys(old_link, None)[0]
        for session in [s for s in room.listeners.values() if revoked in s.admitted_as]:
            await session.close()

    def restore(self, voice_for: Callable[[str, str], Voice | None]) -> list[Room]:
        """Bring back every stored room (at server start, on the running loop). `voice_for(owner,
        voice_ref)`: the room's voice (None: it sounds like the stock voice for now); LookupError or
        ValueError for one that is gone, and the room goes back to the stock voice."""
        if self.store is None:
            return []
        restored = []
        for stored in self.store.all():
            if stored.id in self._rooms:
                continue
            room = self._open(stored.id, stored.owner, stored.name, stored.created)
            room.link_key = stored.link_key
            settings, voice = stored.settings, None
            ref = settings.get("voice")
            if isinstance(ref, str):
                try:
                    voice = voice_for(stored.owner, ref)
                except (LookupError, ValueError) as exc:
                    log.warning("room %s: its voice %s is gone (%s); it speaks with the stock voice", room.id, ref, exc)
                    settings = {**settings, "voice": "stock"}
            room.cohost.restore(settings, voice)
            self.save(room)
            restored.append(room)
        return restored

    def save(self, room: Room) -> None:
        """Write a room's name and settings through to the store (after every change)."""
        if self.store is not None and room.id in self._rooms:
            self.store.save(StoredRoom(room.id, room.owner, room.name, room.created, room.cohost.stored_settings(),
                                       room.link_key))

    def use_llm(self, owner: str, room_id: str | None = None) -> None:
        """An LLM setting changed (an owner's, or with `room_id` one room's): each room concerned answers
        with what `llm_for` says now from its next reply."""
        for room in self.for_owner(owner):
            if room_id is None or room.id == room_id:
                room.cohost.use_llm(self.llm_for(owner, room.id))

    def _open(self, room_id: str, owner: str, name: str, created: float) -> Room:
        events = EventBus(f"room-{room_id}")
        turns = TurnTaking(self.clock)
        playout = Playout(self.engine, self.clock, name=f"room-{room_id}", events=events, turns=turns)
        fanout = OpusFanout()
        playout.sinks.append(fanout)
        cohost = RoomCoHost(room_id, playout, turns, events, self.clock, self.config, self.llm_for(owner, room_id))
        room = Room(id=room_id, name=name, owner=owner, playout=playout, fanout=fanout,
                    cohost=cohost, events=events, created=created)
        events.subscribe(room.caption)
        room.host_audio.append(cohost.host_audio)
        cohost.start()
        self._rooms[room_id] = room
        playout.start()
        return room

    def get(self, room_id: str) -> Room:
        room = self._rooms.get(room_id)
        if room is None:
            raise RoomError("no such room", 404)
        return room

    def owned(self, room_id: str, account: str) -> Room:
        """The room, if `account` owns it; other accounts get 'no such room' (no existence leak)."""
        room = self._rooms.get(room_id)
        if room is None or room.owner != account:
            raise RoomError("no such room", 404)
        return room

    def all(self) -> list[Room]:
        return list(self._rooms.values())

    def for_owner(self, account: str) -> list[Room]:
        return [r for r in self._rooms.values() if r.owner == account]

    async def join(self, room: Room, offer_sdp: str, *, grant: str | None = None,
                   address: str | None = None) -> tuple[ListenerSession, str]:
        """A WHEP listener joins. `grant`: the join grant or token the caller presented; `address`:
        the caller's IP address. Each, when given, caps how many of its listeners may be pending."""
        admitted_as = _admission_keys(grant, address)
        _admit(room, admitted_as)
        session = ListenerSession(room.fanout, lambda s: room.listeners.pop(s.id, None), admitted_as)
        room.listeners[session.id] = session
        try:
            answer = await session.answer(offer_sdp)
        except Exception as exc:
            await session.close()
            raise RoomError(f"cannot use this SDP offer: {exc}") from None
        session.close_unless_connected(PENDING_LISTENER_TIMEOUT_S)
        return session, answer

    async def ingest(self, room: Room, offer_sdp: str) -> tuple[HostMicrophone, str]:
        """The host's microphone joins (replacing an earlier one: the host reconnected)."""
        if room.host_mic is not None:
            await room.host_mic.close()

        def closed(mic: HostMicrophone) -> None:
            if room.host_mic is mic:
                room.host_mic = None

        mic = HostMicrophone(room.host_audio, closed)
        room.host_mic = mic
        try:
            answer = await mic.answer(offer_sdp)
        except Exception as exc:
            await mic.close()
            raise RoomError(f"cannot use this SDP offer: {exc}") from None
        return mic, answer

    async def stop_ingest(self, room: Room, session_id: str) -> None:
        if room.host_mic is None or room.host_mic.id != session_id:
            raise RoomError("no such host microphone session", 404)
        await room.host_mic.close()

    async def leave(self, room: Room, session_id: str) -> None:
        session = room.listeners.get(session_id)
        if session is None:
            raise RoomError("no such listener session", 404)
        await session.close()

    async def delete(self, room: Room) -> None:
        self._rooms.pop(room.id, None)
        if self.store is not None:
            self.store.delete(room.id)
        await self._shutdown(room)

    async def close(self) -> None:
        rooms, self._rooms = list(self._rooms.values()), {}
        await asyncio.gather(*(self._shutdown(r) for r in rooms), return_exceptions=True)

    async def _shutdown(self, room: Room) -> None:
        publishers, room.sfu[:] = list(room.sfu), []
        await asyncio.gather(*(p.close() for p in publishers), return_exceptions=True)
        for session in list(room.listeners.values()):
            await session.close()
        if room.host_mic is not None:
            await room.host_mic.close()
        await room.cohost.close()
        await room.playout.close()


ConnectorStates = Callable[[str], list[dict[str, Any]]]  # room id -> [{"platform", "state"}, ...]


def render_room_health(rooms: list[Room], connector_states: ConnectorStates | None = None,
                       prefix: str = "voxroom_room") -> str:
    """Prometheus text for each room's health: pacing (late ticks, underruns), listeners (connected and
    still connecting), speeches waiting, chat connectors by state, WHIP egress to SFUs by state."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, values: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {prefix}_{name} {help_text}")
        lines.append(f"# TYPE {prefix}_{name} {kind}")
        for labels, value in values:
            body = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{prefix}_{name}{{{body}}} {value:g}")

    family("late_ticks_total", "counter", "Pacer ticks that ran more than one frame late.",
           [({"room": r.id}, r.playout.stats.late_ticks) for r in rooms])
    family("underruns_total", "counter", "Ticks where a speech was on air but its next frame was not ready.",
           [({"room": r.id}, r.playout.stats.underruns) for r in rooms])
    family("listeners", "gauge", "WebRTC listeners, connected or still connecting.",
           [({"room": r.id, "state": state}, sum(s.pending == (state == "connecting") for s in r.listeners.values()))
            for r in rooms for state in ("connected", "connecting")])
    family("speeches_waiting", "gauge", "Speeches queued or being synthesized, and host lines waiting.",
           [({"room": r.id}, len(r.playout.queued()) + len(r.cohost.agent.pending_lines())) for r in rooms])
    family("chat_queue", "gauge", "Chat events waiting for the co-host.",
           [({"room": r.id}, len(r.cohost.agent.queue)) for r in rooms])
    family("sfu", "gauge", "WHIP egress to SFU endpoints by state (connecting, publishing, retrying, error).",
           [({"room": r.id, "endpoint": str(i), "state": state}, float(p.state == state))
            for r in rooms for i, p in enumerate(r.sfu) for state in SFU_STATES])
    family("sfu_publishes_total", "counter", "Successful WHIP publishes to an SFU endpoint, re-publishes included.",
           [({"room": r.id, "endpoint": str(i)}, p.publishes) for r in rooms for i, p in enumerate(r.sfu)])
    if connector_states is not None:
        counts: dict[tuple[str, str, str], int] = {}
        for room in rooms:
            for state in connector_states(room.id):
                key = (room.id, str(state.get("platform", "")), str(state.get("state", "")))
                counts[key] = counts.get(key, 0) + 1
        family("connectors", "gauge", "Chat connectors by platform and state.",
               [({"room": k[0], "platform": k[1], "state": k[2]}, n) for k, n in sorted(counts.items())])
    return "\n".join(lines) + "\n"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
