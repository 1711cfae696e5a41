"""The ASGI app: pages, REST, WHEP playback and the WebSocket protocol, on one port.

Every route but the pages and /api/health checks its caller: an API token (Authorization: Bearer,
or ?token= for pages' first load) for an account, or a join grant scoped to one room and role.
Rooms and voices answer "no such room" to anyone but their owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from voxroom.agent.metrics import render_prometheus
from voxroom.models.engine import Engine, SynthesisError, Voice
from voxroom.models.voice_store import VoiceStoreError
from voxroom.streaming import protocol
from voxroom.streaming.accounts import Account, Accounts, AuthError, Grant, open_database
from voxroom.streaming.bot_session import BotSession
from voxroom.streaming.config import ServerConfig
from voxroom.streaming.playout import Speech
from voxroom.streaming.rooms import Room, RoomError, Rooms
from voxroom.streaming.voices_api import Voices, VoicesAPI
from voxroom.streaming.webrtc import configure_ice_addresses

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
STATIC_DIR = Path(str(files("voxroom.web").joinpath("static")))


@dataclass
class Caller:
    account: Account | None = None
    grant: Grant | None = None


class VoxroomServer:
    """Everything one server process holds; `app` is its ASGI application."""

    def __init__(self, config: ServerConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = open_database(config.data_dir / "voxroom.sqlite3")
        self.accounts = Accounts(self.db)
        self.owner_token = self._ensure_owner()
        self.rooms = Rooms(engine, config)
        self.voices = Voices(config.data_dir, engine)
        self.voices.on_deleted.append(self._voice_deleted)
        self.voices_api = VoicesAPI(self, self.voices)
        configure_ice_addresses(config.ice_addresses)
        self.app = Starlette(routes=self._routes(), lifespan=self._lifespan)
        self.app.state.server = self

    def _ensure_owner(self) -> str:
        """First run: one owner account; its token is kept (0600) so every start can print the URL."""
        token_file = self.config.data_dir / "owner-token"
        if self.accounts.count() == 0 or not token_file.exists():
            if self.accounts.count() == 0:
                _, token = self.accounts.create("owner")
            else:
                owner = self.accounts.get(self.db.execute("SELECT id FROM accounts ORDER BY created LIMIT 1").fetchone()[0])
                assert owner is not None
                token = self.accounts.new_token(owner)
            token_file.touch(mode=0o600)
            token_file.write_text(token + "\n")
        return token_file.read_text().strip()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        await self.rooms.close()
        self.db.close()

    def console_url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.config.port}/console#token={self.owner_token}"

    # -- auth -------------------------------------------------------------------------------
    def caller(self, request: Request | WebSocket) -> Caller:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.query_params.get("token", "")
        if not token:
            raise AuthError("this call needs an API token or a join grant (Authorization: Bearer ...)")
        if token.startswith("vxg_"):
            return Caller(grant=self.accounts.check_grant(token))
        return Caller(account=self.accounts.by_token(token))

    def account(self, request: Request) -> Account:
        caller = self.caller(request)
        if caller.account is None:
            raise AuthError("this call needs an API token, not a join grant", 403)
        return caller.account

    def room_for(self, request: Request, room_id: str, roles: tuple[str, ...]) -> Room:
        """The room, if the caller owns it or holds a grant for it in one of `roles`."""
        caller = self.caller(request)
        if caller.account is not None:
            return self.rooms.owned(room_id, caller.account.id)
        assert caller.grant is not None
        if caller.grant.room != room_id or caller.grant.role not in roles:
            raise AuthError("this join grant is for another room or role", 403)
        room = self.rooms.get(room_id)
        if room.owner != caller.grant.account:
            raise RoomError("no such room", 404)
        return room

    def voice(self, voice_id: str | None, account: Account) -> Voice | None:
        """The voice to speak with, if `account` owns it (LookupError otherwise; None = stock)."""
        return self.voices.voice(voice_id, account)

    def _voice_deleted(self, voice_id: str) -> None:
        for room in self.rooms.all():
            if room.cohost.agent.voice is not None and room.cohost.agent.voice.id == voice_id:
                room.cohost.agent.voice = None

    # -- routes -----------------------------------------------------------------------------
    def _routes(self) -> list[Any]:
        return [
            Route("/", lambda r: RedirectResponse("/console")),
            Route("/console", self.page("console.html")),
            Route("/r/{room}", self.page("room.html")),
            Route("/obs/{room}", self.page("overlay.html")),
            Route("/api/health", self.health),
            Route("/api/me", self.me),
            Route("/api/voices", self.voices_api.list, methods=["GET"]),
            Route("/api/rooms", self.list_rooms, methods=["GET"]),
            Route("/api/rooms", self.create_room, methods=["POST"]),
            Route("/api/rooms/{room}", self.get_room, methods=["GET"]),
            Route("/api/rooms/{room}", self.delete_room, methods=["DELETE"]),
            Route("/api/rooms/{room}/say", self.say, methods=["POST"]),
            Route("/api/rooms/{room}/speeches/{speech}", self.cancel_speech, methods=["DELETE"]),
            Route("/api/rooms/{room}/grants", self.mint_grant, methods=["POST"]),
            Route("/api/rooms/{room}/chat", self.chat, methods=["POST"]),
            Route("/api/rooms/{room}/cohost", self.cohost_state, methods=["GET"]),
            Route("/api/rooms/{room}/cohost", self.cohost_update, methods=["PATCH"]),
            Route("/api/rooms/{room}/cohost/skip", self.cohost_skip, methods=["POST"]),
            Route("/api/rooms/{room}/queue", self.queue_clear, methods=["DELETE"]),
            Route("/api/rooms/{room}/queue/{event}/{action}", self.queue_action, methods=["POST"]),
            Route("/api/rooms/{room}/host-speaking", self.host_speaking, methods=["POST"]),
            Route("/metrics", self.metrics),
            Route("/enroll", self.page("enroll.html")),
            Route("/api/enroll/scripts", self.voices_api.scripts),
            WebSocketRoute("/api/enroll/live", self.voices_api.live),
            Route("/api/voices", self.voices_api.create, methods=["POST"]),
            Route("/api/voices/{voice}", self.voices_api.rename, methods=["PATCH"]),
            Route("/api/voices/{voice}", self.voices_api.delete, methods=["DELETE"]),
            Route("/api/voices/{voice}/reference.wav", self.voices_api.reference_wav),
            Route("/api/voices/{voice}/reference", self.voices_api.replace_reference, methods=["PUT"]),
            Route("/api/voices/{voice}/sample.wav", self.voices_api.sample_wav),
            Route("/rooms/{room}/whep", self.whep_offer, methods=["POST"]),
            Route("/rooms/{room}/whep/{session}", self.whep_leave, methods=["DELETE"]),
            Route("/rooms/{room}/whip", self.whip_offer, methods=["POST"]),
            Route("/rooms/{room}/whip/{session}", self.whip_stop, methods=["DELETE"]),
            WebSocketRoute("/ws", self.bot_socket),
            WebSocketRoute("/rooms/{room}/events", self.room_events),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ]

    def page(self, name: str) -> Any:
        async def serve(request: Request) -> Response:
            return FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-store"})
        return serve

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "engine": self.engine.name, "can_clone": self.engine.can_clone})

    async def me(self, request: Request) -> Response:
        return await self.guard(request, lambda: {"id": self.account(request).id, "name": self.account(request).name,
                                                    "engine": self.engine.name, "can_clone": self.engine.can_clone})

    async def list_rooms(self, request: Request) -> Response:
        return await self.guard(request, lambda: {"rooms": [r.summary() for r in self.rooms.for_owner(self.account(request).id)]})

    async def create_room(self, request: Request) -> Response:
        async def run() -> Any:
            account = self.account(request)
            body = await self.json_body(request)
            name = body.get("name", "room")
            if not isinstance(name, str):
                raise ValueError("'name' must be a string")
            room = self.rooms.create(account.id, name)
            grant = self.accounts.mint_grant(account, room.id, "listener")
            return {**room.summary(), "listen_url": f"/r/{room.id}?grant={grant}",
                    "overlay_url": f"/obs/{room.id}?grant={grant}", "listener_grant": grant}
        return await self.guard(request, run, status=201)

    async def get_room(self, request: Request) -> Response:
        return await self.guard(request, lambda: self.room_for(request, request.path_params["room"], ("host",)).summary())

    async def delete_room(self, request: Request) -> Response:
        async def run() -> Any:
            room = self.rooms.owned(request.path_params["room"], self.account(request).id)
            await self.rooms.delete(room)
            return {"deleted": room.id}
        return await self.guard(request, run)

    async def say(self, request: Request) -> Response:
        async def run() -> Any:
            room = self.room_for(request, request.path_params["room"], ("host", "bot"))
            body = await self.json_body(request)
            body.setdefault("id", "web-" + secrets.token_hex(4))
            msg = protocol.parse_client_message(json.dumps({**body, "type": "say"}))
            assert isinstance(msg, protocol.Say)
            owner = self.accounts.get(room.owner)
            assert owner is not None
            voice = self.voice(msg.voice, owner)
            speech = room.playout.say(Speech(id=msg.id, text=msg.text, voice=voice, lang=msg.lang, speed=msg.speed))
            room.publish({"type": "speech.queued", "id": speech.id, "text": speech.text, "state": speech.state})
            return {"id": speech.id, "state": speech.state}
        return await self.guard(request, run, status=202)

    async def cancel_speech(self, request: Request) -> Response:
        def run() -> Any:
            room = self.room_for(request, request.path_params["room"], ("host",))
            for speech in room.playout.queued():
                if speech.id == request.path_params["speech"]:
                    room.playout.cancel(speech)
                    return {"id": speech.id, "state": speech.state}
            raise RoomError("no such speech in this room", 404)
        return await self.guard(request, run)

    async def mint_grant(self, request: Request) -> Response:
        async def run() -> Any:
            account = self.account(request)
            room = self.rooms.owned(request.path_params["room"], account.id)
            body = await self.json_body(request)
            role = body.get("role", "listener")
            ttl = body.get("ttl", 6 * 3600)
            if not isinstance(ttl, int | float) or not 60 <= ttl <= 7 * 24 * 3600:
                raise ValueError("'ttl' must be between 60 s and 7 days")
            return {"grant": self.accounts.mint_grant(account, room.id, role, ttl), "role": role}
        return await self.guard(request, run, status=201)

    # -- the co-host ---------------------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        """A chat event: the room's web chat (listener grant), a bot or connector, the host."""
        async def run() -> Any:
            room = self.room_for(request, request.path_params["room"], ("listener", "bot", "host"))
            caller = self.caller(request)
            body = await self.json_body(request)
            listener = caller.grant is not None and caller.grant.role == "listener"
            if listener:
                body["platform"] = "web"
            return {"outcome": room.cohost.submit(body, from_listener=listener)}
        return await self.guard(request, run, status=202)

    async def chat_from_bot(self, room_id: str, event: dict[str, Any], account: Account) -> None:
        self.rooms.owned(room_id, account.id).cohost.submit(event)

    async def cohost_state(self, request: Request) -> Response:
        def run() -> Any:
            room = self.room_for(request, request.path_params["room"], ("host",))
            return {"settings": room.cohost.settings(), **room.cohost.agent.snapshot(),
                    "metrics": room.cohost.agent.metrics.render()}
        return await self.guard(request, run)

    async def cohost_update(self, request: Request) -> Response:
        async def run() -> Any:
            room = self.room_for(request, request.path_params["room"], ("host",))
            body = await self.json_body(request)
            voice: Voice | None | bool = False
            if "voice" in body:
                if not isinstance(body["voice"], str):
                    raise ValueError("'voice' must be a voice id or 'stock'")
                owner = self.accounts.get(room.owner)
                assert owner is not None
                voice = self.voice(body["voice"], owner)
            room.cohost.update(body, voice)
            return room.cohost.settings()
        return await self.guard(request, run)

    async def cohost_skip(self, request: Request) -> Response:
        def run() -> Any:
            room = self.room_for(request, request.path_params["room"], ("host",))
            return {"skipped": room.cohost.agent.skip_current()}
        return await self.guard(request, run)

    async def queue_clear(self, request: Request) -> Response:
        def run() -> Any:
            room = self.room_for(request, request.path_params["room"], ("host",))
            return {"cleared": room.cohost.agent.queue.clear()}
        return await self.guard(request, run)

    async def queue_action(self, request: Request) -> Response:
        def run() -> Any:
            room = self.room_for(request, request.path_params["room"], ("host",))
            action, event_id = request.path_params["action"], request.path_params["event"]
            if action not in ("skip", "pin"):
                raise ValueError("queue actions are skip and pin")
            queue = room.cohost.agent.queue
            done = queue.skip(event_id) if action == "skip" else queue.pin(event_id)
            if not done:
                raise RoomError("no such event in the queue", 404)
            return {action: event_id}
        return await self.guard(request, run)

    async def host_speaking(self, request: Request) -> Response:
        """The host-speaking signal from outside (a VAD elsewhere, a push-to-talk key, tests)."""
        async def run() -> Any:
            room = self.room_for(request, request.path_params["room"], ("host",))
            body = await self.json_body(request)
            if not isinstance(body.get("speaking"), bool):
                raise ValueError("'speaking' must be true or false")
            room.cohost.set_host_speaking(body["speaking"])
            return {"speaking": body["speaking"], "state": room.cohost.agent.state}
        return await self.guard(request, run)

    async def metrics(self, request: Request) -> Response:
        """Prometheus text format, for the caller's rooms (scrape with a bearer token)."""
        try:
            account = self.account(request)
        except AuthError as exc:
            return self.error(exc)
        rooms = {r.id: r.cohost.agent.metrics for r in self.rooms.for_owner(account.id)}
        return PlainTextResponse(render_prometheus(rooms), media_type="text/plain; version=0.0.4")

    async def whep_offer(self, request: Request) -> Response:
        return await self.sdp_exchange(request, "whep", ("listener", "host", "bot"))

    async def whip_offer(self, request: Request) -> Response:
        """The host's microphone (WHIP-style ingest), for turn-taking."""
        return await self.sdp_exchange(request, "whip", ("host",))

    async def sdp_exchange(self, request: Request, kind: str, roles: tuple[str, ...]) -> Response:
        try:
            room = self.room_for(request, request.path_params["room"], roles)
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/sdp":
                return JSONResponse({"error": "offers are sent as application/sdp"}, 415)
            offer = (await self.read_body(request)).decode("utf-8", "replace")
            session, answer = await (self.rooms.join(room, offer) if kind == "whep" else self.rooms.ingest(room, offer))
        except (AuthError, RoomError, ValueError) as exc:
            return self.error(exc)
        location = f"/rooms/{room.id}/{kind}/{session.id}"
        return Response(answer, 201, media_type="application/sdp", headers={"Location": location})

    async def whip_stop(self, request: Request) -> Response:
        async def run() -> Any:
            room = self.room_for(request, request.path_params["room"], ("host",))
            await self.rooms.stop_ingest(room, request.path_params["session"])
            return {"stopped": request.path_params["session"]}
        return await self.guard(request, run)

    async def whep_leave(self, request: Request) -> Response:
        async def run() -> Any:
            room = self.room_for(request, request.path_params["room"], ("listener", "host", "bot"))
            await self.rooms.leave(room, request.path_params["session"])
            return {"left": request.path_params["session"]}
        return await self.guard(request, run)

    async def bot_socket(self, ws: WebSocket) -> None:
        await BotSession(ws, self.accounts, self.rooms, self.engine, self.voice, self.chat_from_bot).run()

    async def room_events(self, ws: WebSocket) -> None:
        """Captions and queue changes for one room (listener page, OBS overlay, console)."""
        try:
            room = self.room_for(ws, ws.path_params["room"], ("listener", "host", "bot"))  # type: ignore[arg-type]
        except (AuthError, RoomError) as exc:
            await ws.close(code=4403 if isinstance(exc, AuthError) else 4404, reason=str(exc)[:120])
            return
        await ws.accept()
        outbox: list[dict[str, Any]] = list(room.history[-10:])
        wake = asyncio.Event()

        def push(event: dict[str, Any]) -> None:
            if len(outbox) < 500:
                outbox.append(event)
            wake.set()

        room.subscribers.add(push)
        reader = asyncio.create_task(ws.receive())
        try:
            await ws.send_json({"type": "room", **room.summary()})
            while not reader.done():
                while outbox:
                    await ws.send_json(outbox.pop(0))
                wake.clear()
                waiter = asyncio.create_task(wake.wait())
                await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            room.subscribers.discard(push)
            reader.cancel()

    # -- plumbing ---------------------------------------------------------------------------
    async def read_body(self, request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ValueError(f"request body larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def json_body(self, request: Request) -> dict[str, Any]:
        raw = await self.read_body(request)
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        return body

    def error(self, exc: Exception) -> JSONResponse:
        if isinstance(exc, AuthError | RoomError):
            return JSONResponse({"error": str(exc)}, exc.status)
        if isinstance(exc, protocol.ProtocolError):
            return JSONResponse({"error": exc.message, "code": exc.code}, 413 if exc.code == "text_too_long" else 400)
        if isinstance(exc, LookupError):
            return JSONResponse({"error": str(exc)}, 404)
        if isinstance(exc, SynthesisError):
            return JSONResponse({"error": str(exc)}, 429)
        if isinstance(exc, VoiceStoreError):
            return JSONResponse({"error": str(exc)}, 500)
        return JSONResponse({"error": str(exc)}, 400)

    async def guard(self, request: Request, run: Any, status: int = 200) -> Response:
        """Run a handler body; turn the errors callers can cause into clear JSON answers."""
        try:
            result = run()
            if hasattr(result, "__await__"):
                result = await result
        except (AuthError, RoomError, protocol.ProtocolError, LookupError, SynthesisError, ValueError,
                VoiceStoreError) as exc:
            return self.error(exc)
        return result if isinstance(result, Response) else JSONResponse(result, status)
