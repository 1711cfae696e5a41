"""WHIP egress (RFC 9725): a room publishes its co-host into an SFU, so rooms outgrow one machine.

A `WhipPublisher` is one WHIP client for one endpoint. Its outgoing track is fed by the room's
`OpusFanout` like any listener's: the same Opus packets, encoded once. Publishing is an HTTP
exchange — `POST` the SDP offer (`Content-Type: application/sdp`, `Authorization: Bearer TOKEN`), the
`201` answer names the session in `Location` (resolved against the endpoint URL, so relative and
absolute both work) and may list ICE servers in `Link: <stun:…>; rel="ice-server"` headers — and a
`DELETE` of that location stops it.

aiortc gathers every candidate before it writes an offer, so ICE servers learnt from an answer's
`Link` headers are used from the next peer connection on (every re-publish), not for the first.

The publisher re-publishes by itself, after a capped, jittered delay, whenever publishing fails:
the endpoint refuses or cannot be reached, ICE never connects, or the connection fails. An SFU that
was killed and restarted has forgotten us without a word: when it sent RTCP receiver reports, their
silence tells within RTCP_SILENCE_S; otherwise (Janus sends none to an audio-only WHIP publisher)
ICE consent expiry does, after about 30 s. Its state is always readable with `status()`.

`SfuStore` keeps each room's endpoints in SQLite (`sfu_endpoints`), tokens sealed with AES-GCM
under the server key file; `SfuApi` serves `PUT/GET/DELETE /api/rooms/{room}/sfu`, and
`GET /rooms/{room}/playback`, which tells a listener page where to play from: an endpoint's Janus
(its HTTP API URL and VideoRoom room, given with the endpoint as `"playback"`) while that endpoint is
publishing — several publishing endpoints are handed out in turn (round robin per room) — or
voxroom's own WHEP otherwise. The page finds the co-host's feed id in the VideoRoom itself
(`listparticipants`): simple-whip-server does not tell its publisher which id Janus gave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx2
from aiortc import RTCIceServer, RTCPeerConnection, RTCSessionDescription
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.requests import Request
from starlette.responses import Response

from voxroom.streaming.connectors_api import load_key
from voxroom.streaming.http_errors import guard, json_body
from voxroom.streaming.webrtc import ListenerTrack, OpusFanout, filter_remote_candidates, new_peer_connection

log = logging.getLogger("voxroom.sfu")

MAX_ENDPOINTS_PER_ROOM = 4
RETRY_FIRST_S = 1.0
RETRY_CAP_S = 30.0
HTTP_TIMEOUT_S = 10.0
DELETE_TIMEOUT_S = 3.0  # best effort: a room being deleted does not wait long on a dead SFU
CONNECT_TIMEOUT_S = 15.0  # from the answer to ICE + DTLS connected
RTCP_SILENCE_S = 6.0  # no receiver report for this long after the first one: the SFU is gone
# Answers that will not change by asking again soon (a wrong token, URL or media type); still retried,
# at the capped delay, since the operator may fix the SFU side without touching voxroom.
REFUSALS = frozenset({400, 401, 403, 404, 405, 406, 410, 415})


class WhipError(Exception):
    """Publishing failed; the message is what the room's state shows."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class JanusPlayback:
    """Where listeners subscribe to what this endpoint publishes: Janus' HTTP API and the VideoRoom room."""

    janus: str
    room: int

    def as_dict(self) -> dict[str, Any]:
        return {"janus": self.janus, "room": self.room}


@dataclass(frozen=True)
class SfuEndpoint:
    url: str
    token: str = ""
    playback: JanusPlayback | None = None


def retry_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before re-publishing after `attempt` failures in a row (1, 2, 3, ...): doubles
    from RETRY_FIRST_S up to RETRY_CAP_S, each drawn between half and all of it so that many rooms
    that lost the same SFU do not come back at the same instant."""
    ceiling = min(RETRY_CAP_S, RETRY_FIRST_S * 2 ** max(0, attempt - 1))
    return ceiling * (0.5 + 0.5 * rng())


_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")
_PARAM = re.compile(r";\s*([\w-]+)\s*=\s*(\"[^\"]*\"|[^;,\s]+)")


def ice_servers_from_links(values: list[str]) -> list[RTCIceServer]:
    """The `rel="ice-server"` entries of `Link` header values (one header may hold several links)."""
    servers = []
    for value in values:
        for uri, params_text in _LINK.findall(value):
            params = {k.lower(): v.strip('"') for k, v in _PARAM.findall(params_text)}
            if "ice-server" not in params.get("rel", "").split():
                continue
            if not uri.startswith(("stun:", "stuns:", "turn:", "turns:")):
                continue
            servers.append(RTCIceServer(urls=uri, username=params.get("username"),
                                        credential=params.get("credential")))
    return servers


def check_endpoint_url(url: Any) -> str:
    if not isinstance(url, str) or len(url) > 500:
        raise ValueError("'url' must be an http:// or https:// address of at most 500 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("'url' must be an http:// or https:// address")
    return url


class WhipPublisher:
    """Publishes a room's co-host to one WHIP endpoint until closed, re-publishing when it fails."""

    def __init__(self, fanout: OpusFanout, endpoint: SfuEndpoint, name: str = "room",
                 rng: Callable[[], float] = random.random) -> None:
        self.fanout = fanout
        self.endpoint = endpoint
        self.name = name
        self.state = "connecting"  # connecting | publishing | retrying | error | stopped
        self.error = ""
        self.next_retry_at: float | None = None  # Unix time
        self.since = time.time()  # when the current state began
        self.publishes = 0  # successful publishes, the first and every re-publish
        self.resource: str | None = None
        self.ice_servers: list[RTCIceServer] = []
        self._rng = rng
        self._pc: RTCPeerConnection | None = None
        self._track: ListenerTrack | None = None
        self._task: asyncio.Task[None] | None = None
        self._http = httpx2.AsyncClient(timeout=HTTP_TIMEOUT_S)

    def status(self) -> dict[str, Any]:
        """What the room summary and GET /api/rooms/{room}/sfu show (never the token)."""
        playback = self.endpoint.playback.as_dict() if self.endpoint.playback else None
        return {"url": self.endpoint.url, "has_token": bool(self.endpoint.token), "state": self.state,
                "error": self.error or None,
                "next_retry_at": self.next_retry_at, "since": self.since, "publishes": self.publishes,
                "playback": playback}

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"whip-{self.name}")

    def _set(self, state: str, error: str = "", next_retry_at: float | None = None) -> None:
        if state != self.state:
            self.since = time.time()
        self.state, self.error, self.next_retry_at = state, error, next_retry_at

    async def _run(self) -> None:
        failures = 0
        while True:
            self._set("connecting")
            try:
                await self._publish()
                failures = 0
                self.publishes += 1
                self._set("publishing")
                log.info("%s: publishing to %s", self.name, self.endpoint.url)
                reason = await self._until_lost()
                raise WhipError(reason)
            except WhipError as exc:
                failures += 1
                delay = RETRY_CAP_S * (0.5 + 0.5 * self._rng()) if exc.refused else retry_delay(failures, self._rng)
                self._set("error" if exc.refused else "retrying", str(exc), time.time() + delay)
                log.warning("%s: %s; publishing again in %.1f s", self.name, exc, delay)
            except Exception as exc:  # a bug or a library surprise: keep its traceback, keep trying
                failures += 1
                delay = retry_delay(failures, self._rng)
                self._set("retrying", f"unexpected error: {exc}", time.time() + delay)
                log.exception("%s: publishing failed unexpectedly; trying again in %.1f s", self.name, delay)
            await self._teardown()
            await asyncio.sleep(delay)

    async def _publish(self) -> None:
        pc = self._pc = new_peer_connection(self.ice_servers)  # the endpoint's Link servers, else the configured
        track = self._track = ListenerTrack()
        pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Content-Type": "application/sdp"}
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        try:
            answer = await self._http.post(self.endpoint.url, content=pc.localDescription.sdp.encode(),
                                           headers=headers)
        except httpx2.HTTPError as exc:
            raise WhipError(f"cannot reach the WHIP endpoint: {exc or type(exc).__name__}") from None
        if answer.status_code != 201:
            raise WhipError(f"the WHIP endpoint answered {answer.status_code}: {answer.text[:200].strip()}",
                            refused=answer.status_code in REFUSALS)
        location = answer.headers.get("location")
        if location:
            self.resource = urljoin(self.endpoint.url, location)
        links = ice_servers_from_links(answer.headers.get_list("link"))
        if links:
            self.ice_servers = links
        if not location:
            raise WhipError("the WHIP endpoint's answer has no Location header")
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=filter_remote_candidates(answer.text),
                                                                type="answer"))
        except Exception as exc:  # aiortc's own SDP errors: the endpoint sent something we cannot use
            raise WhipError(f"cannot use the WHIP endpoint's answer: {exc}") from None
        self.fanout.tracks.add(track)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                while pc.connectionState != "connected":
                    if pc.connectionState in ("failed", "closed"):
                        raise WhipError("the connection to the SFU failed (ICE or DTLS)")
                    await _state_change(pc)
        except TimeoutError:
            raise WhipError(f"the SFU did not connect within {CONNECT_TIMEOUT_S:.0f} s") from None

    async def _until_lost(self) -> str:
        """Wait while publishing works; say why it stopped."""
        pc = self._pc
        assert pc is not None
        heard: datetime | None = None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await _state_change(pc)
            if pc.connectionState in ("failed", "closed"):
                return "the connection to the SFU was lost"
            last = await _last_receiver_report(pc)
            if last is not None:
                heard = last
            if heard is not None and (datetime.now(UTC) - heard).total_seconds() > RTCP_SILENCE_S:
                return f"the SFU sent no receiver report for {RTCP_SILENCE_S:.0f} s (did it restart?)"

    async def _teardown(self) -> None:
        """Forget the current session: DELETE its resource (best effort), close the peer connection."""
        if self._track is not None:
            self.fanout.tracks.discard(self._track)
            self._track.stop()
            self._track = None
        if self.resource is not None:
            resource, self.resource = self.resource, None
            headers = {"Authorization": f"Bearer {self.endpoint.token}"} if self.endpoint.token else {}
            with contextlib.suppress(httpx2.HTTPError):
                await self._http.delete(resource, headers=headers, timeout=DELETE_TIMEOUT_S)
        if self._pc is not None:
            pc, self._pc = self._pc, None
            await pc.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._teardown()
        await self._http.aclose()
        self._set("stopped")


async def _state_change(pc: RTCPeerConnection) -> None:
    changed = asyncio.Event()
    pc.once("connectionstatechange", changed.set)
    try:
        await changed.wait()
    finally:
        pc.remove_listener("connectionstatechange", changed.set)


async def _last_receiver_report(pc: RTCPeerConnection) -> datetime | None:
    for sender in pc.getSenders():
        report = await sender.getStats()
        for stats in report.values():
            if stats.type == "remote-inbound-rtp":
                stamp: datetime = stats.timestamp
                return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return None


# -- storage -----------------------------------------------------------------------------------------
class SfuStore:
    """Table `sfu_endpoints`: each room's WHIP endpoints in order; tokens sealed (AES-GCM), bound to
    the room and the endpoint's place in it."""

    def __init__(self, db: sqlite3.Connection, key_path: Path) -> None:
        self.db = db
        self._aead = AESGCM(load_key(key_path))
        db.execute("""CREATE TABLE IF NOT EXISTS sfu_endpoints (
            room_id TEXT NOT NULL, position INTEGER NOT NULL, url TEXT NOT NULL, token BLOB,
            playback TEXT, created REAL NOT NULL, PRIMARY KEY (room_id, position))""")

    @staticmethod
    def _aad(room_id: str, position: int, url: str) -> bytes:
        return f"voxroom-sfu:{room_id}:{position}:{url}".encode()

    def replace(self, room_id: str, endpoints: list[SfuEndpoint]) -> None:
        now = time.time()
        with self.db:
            self.db.execute("DELETE FROM sfu_endpoints WHERE room_id = ?", (room_id,))
            for position, endpoint in enumerate(endpoints):
                sealed = None
                if endpoint.token:
                    nonce = secrets.token_bytes(12)
                    sealed = nonce + self._aead.encrypt(nonce, endpoint.token.encode(),
                                                        self._aad(room_id, position, endpoint.url))
                playback = json.dumps(endpoint.playback.as_dict()) if endpoint.playback else None
                self.db.execute("INSERT INTO sfu_endpoints VALUES (?, ?, ?, ?, ?, ?)",
                                (room_id, position, endpoint.url, sealed, playback, now))

    def for_room(self, room_id: str) -> list[SfuEndpoint]:
        rows = self.db.execute("SELECT position, url, token, playback FROM sfu_endpoints WHERE room_id = ? "
                               "ORDER BY position", (room_id,)).fetchall()
        endpoints = []
        for position, url, sealed, playback in rows:
            token = ""
            if sealed is not None:
                blob = bytes(sealed)
                try:
                    token = self._aead.decrypt(blob[:12], blob[12:], self._aad(room_id, position, url)).decode()
                except InvalidTag:
                    raise ValueError(f"room {room_id}: an SFU token does not open with this server's key") from None
            endpoints.append(SfuEndpoint(url, token, JanusPlayback(**json.loads(playback)) if playback else None))
        return endpoints

    def delete_room(self, room_id: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM sfu_endpoints WHERE room_id = ?", (room_id,))

    def prune(self, room_ids: set[str]) -> None:
        """Forget endpoints of rooms not in `room_ids` (at start: the rooms that were restored)."""
        with self.db:
            for (room_id,) in self.db.execute("SELECT DISTINCT room_id FROM sfu_endpoints").fetchall():
                if room_id not in room_ids:
                    self.db.execute("DELETE FROM sfu_endpoints WHERE room_id = ?", (room_id,))


def parse_endpoints(body: dict[str, Any], stored_tokens: dict[str, str] | None = None) -> list[SfuEndpoint]:
    """The endpoints of a PUT body; `"token": null` keeps the token `stored_tokens` holds for that url
    (the console sends it for an endpoint whose token it never saw)."""
    endpoints = body.get("endpoints")
    if not isinstance(endpoints, list) or not 1 <= len(endpoints) <= MAX_ENDPOINTS_PER_ROOM:
        raise ValueError(f"'endpoints' must be a list of 1 to {MAX_ENDPOINTS_PER_ROOM} {{\"url\", \"token\"}} objects")
    parsed = []
    for entry in endpoints:
        if not isinstance(entry, dict) or set(entry) - {"url", "token", "playback"}:
            raise ValueError("each endpoint is an object with 'url', an optional 'token' and an optional "
                             "'playback' {\"janus\", \"room\"}")
        url = check_endpoint_url(entry.get("url"))
        token = entry.get("token", "")
        if token is None:
            token = (stored_tokens or {}).get(url, "")
        if not isinstance(token, str) or len(token) > 4096:
            raise ValueError("'token' must be text of at most 4096 characters")
        parsed.append(SfuEndpoint(url, token, _parse_playback(entry.get("playback"))))
    if len({e.url for e in parsed}) != len(parsed):
        raise ValueError("each endpoint URL may appear once")
    return parsed


def _parse_playback(value: Any) -> JanusPlayback | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"janus", "room"}:
        raise ValueError("'playback' must be {\"janus\": Janus' HTTP API URL, \"room\": its VideoRoom room number}")
    room = value["room"]
    if isinstance(room, bool) or not isinstance(room, int) or not 0 < room < 2**53:
        raise ValueError("'playback.room' must be a positive integer (a Janus VideoRoom room)")
    try:
        janus = check_endpoint_url(value["janus"])
    except ValueError:
        raise ValueError("'playback.janus' must be the http:// or https:// address of Janus' HTTP API") from None
    return JanusPlayback(janus, room)


# -- REST ----------------------------------------------------------------------------------------
@dataclass
class SfuApi:
    """PUT / GET / DELETE /api/rooms/{room}/sfu. `room_for(request, room_id)` raises unless the caller
    is the room's host; a room's publishers live in `room.sfu`."""

    store: SfuStore
    room_for: Callable[[Request, str], Any]  # the room's host only
    listener_room_for: Callable[[Request, str], Any]  # anyone who may listen
    _turn: dict[str, int] = field(default_factory=dict)  # room id -> listeners handed a Janus so far
    # The server's default endpoints for new rooms (config `sfu_endpoints`; `{room}` in a url: the room id)
    defaults: list[SfuEndpoint] = field(default_factory=list)
    page_ice: Callable[[], dict[str, Any]] = dict  # ICE servers and policy for the pages' peers

    async def put(self, request: Request) -> Response:
        async def run() -> Any:
            room = self.room_for(request, request.path_params["room"])
            stored = {e.url: e.token for e in self.store.for_room(room.id)}
            endpoints = parse_endpoints(await json_body(request), stored)
            await self.stop(room)
            self.store.replace(room.id, endpoints)
            self.publish(room, endpoints)
            return self.view(room)
        return await guard(run)

    def room_created(self, room: Any) -> None:
        """A new room publishes to the server's default endpoints, stored as if PUT for it."""
        if not self.defaults:
            return
        endpoints = [SfuEndpoint(e.url.replace("{room}", room.id), e.token, e.playback) for e in self.defaults]
        self.store.replace(room.id, endpoints)
        self.publish(room, endpoints)

    @staticmethod
    def publish(room: Any, endpoints: list[SfuEndpoint]) -> None:
        for endpoint in endpoints:
            publisher = WhipPublisher(room.fanout, endpoint, name=f"room-{room.id}")
            room.sfu.append(publisher)
            publisher.start()

    async def get(self, request: Request) -> Response:
        return await guard(lambda: self.view(self.room_for(request, request.path_params["room"])))

    async def delete(self, request: Request) -> Response:
        async def run() -> Any:
            room = self.room_for(request, request.path_params["room"])
            await self.stop(room)
            self.store.delete_room(room.id)
            self._turn.pop(room.id, None)
            return self.view(room)
        return await guard(run)

    async def playback(self, request: Request) -> Response:
        """Where this listener should play from (see the module docstring)."""
        def run() -> Any:
            room = self.listener_room_for(request, request.path_params["room"])
            return self.choose_playback(room)
        return await guard(run)

    def choose_playback(self, room: Any) -> dict[str, Any]:
        whep = {"kind": "whep", "url": f"/rooms/{room.id}/whep"}
        live = [p.endpoint.playback for p in room.sfu if p.state == "publishing" and p.endpoint.playback]
        if not live:
            return {**whep, **self.page_ice()}
        turn = self._turn.get(room.id, 0)
        self._turn[room.id] = turn + 1
        chosen = live[turn % len(live)]
        return {"kind": "janus", **chosen.as_dict(), "fallback": whep, **self.page_ice()}

    def resume(self, rooms: list[Any]) -> int:
        """At start: publish again every restored room that has endpoints stored; how many publishers."""
        started = 0
        for room in rooms:
            try:
                endpoints = self.store.for_room(room.id)
            except ValueError as exc:  # a token sealed under another key: that room stays unpublished
                log.warning("%s", exc)
                continue
            self.publish(room, endpoints)
            started += len(endpoints)
        return started

    def room_deleted(self, room_id: str) -> None:
        """Forget a deleted room's endpoints (its publishers close with the room)."""
        self.store.delete_room(room_id)
        self._turn.pop(room_id, None)

    @staticmethod
    def view(room: Any) -> dict[str, Any]:
        return {"room": room.id, "endpoints": [p.status() for p in room.sfu]}

    @staticmethod
    async def stop(room: Any) -> None:
        publishers, room.sfu[:] = list(room.sfu), []
        await asyncio.gather(*(p.close() for p in publishers))
