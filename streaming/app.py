"""The ASGI app: everything one server process holds, and its routes, one module per resource.

    rooms_api.py    rooms, join grants, what to say, the caption socket
    cohost_api.py   a room's co-host: chat, settings, queue, host speaking, /metrics
    voices_api.py   voices and enrollment
    webrtc_api.py   WHEP playback, WHIP ingest of the host's microphone
    whip_egress.py  publishing a room into SFUs over WHIP, and where listeners play from
    bot_session.py  the bot protocol (/ws)

Who may call what is decided in `access.py`; how errors become answers in `http_errors.py`.
Every route but the pages and /api/health checks its caller.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from voxroom.agent.clock import Clock, SystemClock
from voxroom.models.engine import Engine, Voice, VoiceRef
from voxroom.models.voice_store import VoiceNotFound, VoiceStoreError
from voxroom.streaming import http_errors, ice_servers
from voxroom.streaming.access import Access
from voxroom.streaming.accounts import Account, Accounts, open_database
from voxroom.streaming.bot_session import BotSession
from voxroom.streaming.cohost_api import CoHostAPI
from voxroom.streaming.compat_api import CompatAPI
from voxroom.streaming.config import ServerConfig
from voxroom.streaming.connectors_api import ConnectorRuntime, ConnectorsApi, ConnectorStore
from voxroom.streaming.llm_api import LLMApi, LLMStore
from voxroom.streaming.native_memory import MemoryTrimmer
from voxroom.streaming.room_store import RoomStore
from voxroom.streaming.rooms import Room, Rooms
from voxroom.streaming.rooms_api import RoomsAPI
from voxroom.streaming.voices_api import Voices, VoicesAPI
from voxroom.streaming.webrtc import configure_ice_addresses, configure_ice_servers
from voxroom.streaming.webrtc_api import WebRTCAPI
from voxroom.streaming.whip_egress import SfuApi, SfuStore, parse_endpoints

log = logging.getLogger(__name__)

STATIC_DIR = Path(str(files("voxroom.web").joinpath("static")))


class VoxroomServer:
    """Everything one server process holds; `app` is its ASGI application."""

    def __init__(self, config: ServerConfig, engine: Engine, clock: Clock | None = None) -> None:
        self.config = config
        self.engine = engine
        self.clock = clock if clock is not None else SystemClock()  # the one clock: pacers, turn-taking, agents
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = open_database(config.data_dir / "voxroom.sqlite3")
        self.accounts = Accounts(self.db)
        self.owner_token = self._ensure_owner()
        self.rooms = Rooms(engine, config, self.clock, RoomStore(self.db))
        self.access = Access(self.accounts, self.rooms)
        self.voices = Voices(config.data_dir, engine, self.clock, config.models_dir)
        self.voices.on_deleted.append(self._voice_deleted)
        self.voices_api = VoicesAPI(self, self.voices)
        self.cohost_api = CoHostAPI(self)
        self.compat = CompatAPI(self)
        self.connectors = ConnectorsApi(
            ConnectorStore(self.db, config.data_dir / "connectors.key"),
            ConnectorRuntime(cohost_names=["cohost", "voxroom"], question_prefixes=["?", "Q:", "问"]),
            room_for=lambda request, room_id: self.access.room_for(request, room_id, ("host",)),
            submit_for=lambda room: room.cohost.agent.submit)
        self.llm = LLMApi(self, LLMStore(self.db, config.data_dir / "llm.key"), config.llm_settings(),
                          apply=self.rooms.use_llm)
        self.rooms.llm_for = self.llm.effective
        ice = ice_servers.parse_ice_servers(config.ice_servers)
        self.sfu = SfuApi(SfuStore(self.db, config.data_dir / "connectors.key"),
                          room_for=lambda request, room_id: self.access.room_for(request, room_id, ("host",)),
                          listener_room_for=lambda request, room_id: self.access.room_for(
                              request, room_id, ("listener", "host", "bot")),
                          defaults=parse_endpoints({"endpoints": config.sfu_endpoints}) if config.sfu_endpoints else [],
                          page_ice=lambda: ice_servers.for_pages(ice, config.ice_transport_policy))
        configure_ice_addresses(config.ice_addresses)
        configure_ice_servers(ice)
        self.memory = MemoryTrimmer(clock=self.clock)  # hands the allocator's free pages back every half minute
        self.app = Starlette(routes=self._routes(), lifespan=self._lifespan,
                             exception_handlers={404: http_errors.not_routed, 405: http_errors.not_routed})
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
        await self.start()
        yield
        await self.close()

    async def start(self) -> None:
        """Bring back the stored rooms, their chat connectors and their SFU publishers (on the server's
        loop, before the first request); what belonged to rooms that are gone is forgotten."""
        restored = self.rooms.restore(self._stored_voice)
        if restored:
            log.info("restored %d room(s) from the database", len(restored))
        self.connectors.store.prune({room.id for room in self.rooms.all()})

        def submit_for_room(room_id: str) -> Any:
            room = next((r for r in self.rooms.all() if r.id == room_id), None)
            return room.cohost.agent.submit if room is not None else None  # same as ConnectorsApi.submit_for

        await self.connectors.runtime.resume(self.connectors.store, submit_for_room)
        self.sfu.store.prune({room.id for room in self.rooms.all()})
        self.sfu.resume(self.rooms.all())
        self.memory.start()

    def _stored_voice(self, owner_id: str, ref: str) -> Voice | None:
        """A restored room's voice (VoiceNotFound, a LookupError, when it was deleted). One still being
        prepared for GPT-SoVITS sounds like the stock voice until the host picks it again."""
        owner = self.accounts.get(owner_id)
        if owner is None:
            raise LookupError("the room's owner is gone")
        parsed = VoiceRef.parse(ref)
        if parsed.id is None:
            return None
        try:
            self.voices.store.get(owner.id, parsed.id)
            return self.voices.voice(parsed, owner)
        except VoiceNotFound:
            raise  # the voice was deleted: the room goes back to the stock voice
        except (LookupError, VoiceStoreError) as exc:  # not ready, or unreadable now: the choice is kept
            log.warning("a restored room's voice %s cannot speak yet (%s); the stock voice speaks for now", ref, exc)
            return None

    async def close(self) -> None:
        """Stop the chat connectors, fade out and close every room (peers, tasks), then flush and close
        the database."""
        await self.memory.close()
        await self.connectors.runtime.close()
        await self.compat.speaker.close()
        await self.rooms.close()
        with contextlib.suppress(Exception):
            self.db.commit()
        self.db.close()

    async def delete_room(self, room: Room) -> None:
        """Stop the room's chat connectors and SFU publishers, then close and forget the room."""
        await self.connectors.room_closed(room.id)
        self.sfu.room_deleted(room.id)
        await self.rooms.delete(room)

    def replies_banner(self) -> str:
        """The start-up lines that say how the owner's rooms answer chat: the default, then each room
        that has its own endpoint."""
        owner = self.accounts.by_token(self.owner_token)
        lines = ["Replies: " + self.llm.describe(owner.id)]
        for room in self.rooms.for_owner(owner.id):
            if self.llm.store.readable(room.id, "room") is not None:
                lines.append(f"  room {room.name!r} ({room.id}): {self.llm.describe(owner.id, room.id)}")
        return "\n".join(lines)

    def console_url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.config.port}/console#token={self.owner_token}"

    # -- what the resource modules share ------------------------------------------------------------
    def account(self, request: HTTPConnection) -> Account:
        return self.access.account(request)

    def voice(self, ref: VoiceRef, account: Account) -> Voice | None:
        """The voice to speak with, if `account` owns it (LookupError otherwise; None = stock)."""
        return self.voices.voice(ref, account)

    async def guard(self, request: Request, run: Callable[[], Any], status: int = 200) -> Response:
        return await http_errors.guard(run, status)

    async def read_body(self, request: Request, limit: int = http_errors.MAX_BODY_BYTES) -> bytes:
        return await http_errors.read_body(request, limit)

    async def json_body(self, request: Request) -> dict[str, Any]:
        return await http_errors.json_body(request)

    def error(self, exc: Exception) -> JSONResponse:
        return http_errors.error_response(exc)

    def _voice_deleted(self, voice_id: str) -> None:
        for room in self.rooms.all():
            if room.cohost.voice_choice.id == voice_id or (
                    room.cohost.agent.voice is not None and room.cohost.agent.voice.id == voice_id):
                room.cohost.agent.voice = None
                room.cohost.voice_choice = VoiceRef()
                self.rooms.save(room)

    # -- routes -----------------------------------------------------------------------------------
    def _routes(self) -> list[Any]:
        voices = self.voices_api
        return [
            Route("/", lambda r: RedirectResponse("/console")),
            Route("/console", self.page("console.html")),
            Route("/r/{room}", self.page("room.html")),
            Route("/obs/{room}", self.page("overlay.html")),
            Route("/enroll", self.page("enroll.html")),
            Route("/api/health", self.health),
            Route("/api/me", self.me),
            *RoomsAPI(self).routes(),
            *self.cohost_api.routes(),
            *WebRTCAPI(self).routes(),
            *self.llm.routes(),
            Route("/api/rooms/{room}/connectors", self.connectors.create, methods=["POST"]),
            Route("/api/rooms/{room}/connectors", self.connectors.list, methods=["GET"]),
            Route("/api/rooms/{room}/connectors/{connector}", self.connectors.delete, methods=["DELETE"]),
            *(Route("/api/rooms/{room}/sfu", h, methods=[m]) for m, h in
              (("PUT", self.sfu.put), ("GET", self.sfu.get), ("DELETE", self.sfu.delete))),
            Route("/rooms/{room}/playback", self.sfu.playback),
            Route("/api/voices", voices.list, methods=["GET"]),
            Route("/api/enroll/scripts", voices.scripts),
            WebSocketRoute("/api/enroll/live", voices.live),
            Route("/api/voices", voices.create, methods=["POST"]),
            Route("/api/voices/{voice}", voices.rename, methods=["PATCH"]),
            Route("/api/voices/{voice}", voices.delete, methods=["DELETE"]),
            Route("/api/voices/{voice}/reference.wav", voices.reference_wav),
            Route("/api/voices/{voice}/reference", voices.replace_reference, methods=["PUT"]),
            Route("/api/voices/{voice}/sample.wav", voices.sample_wav),
            WebSocketRoute("/ws", self.bot_socket),
            *self.compat.routes(),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ]

    def page(self, name: str) -> Any:
        async def serve(request: Request) -> Response:
            return FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-store"})
        return serve

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "engine": self.engine.name, "can_clone": self.engine.can_clone})

    async def me(self, request: Request) -> Response:
        def run() -> Any:
            account = self.access.account(request)
            return {"id": account.id, "name": account.name, "engine": self.engine.name,
                    "can_clone": self.engine.can_clone}
        return await http_errors.guard(run)

    async def bot_socket(self, ws: WebSocket) -> None:
        await BotSession(ws, self.accounts, self.rooms, self.engine, self.clock, self.voice,
                         self.cohost_api.chat_from_bot).run()
