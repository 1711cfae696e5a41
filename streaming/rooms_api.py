"""REST for rooms: create, list, read, delete, join grants, what to say, and the caption socket."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from voxroom.agent.cohost import HostLine
from voxroom.models.piper_voice import english_part
from voxroom.streaming import protocol
from voxroom.streaming.accounts import AuthError
from voxroom.streaming.bot_session import cancel_in_room
from voxroom.streaming.http_errors import guard, json_body
from voxroom.streaming.rooms import Room, RoomError

if TYPE_CHECKING:
    from voxroom.streaming.app import VoxroomServer

# A room's own listener and overlay links last until the host rotates them; a short-lived listener grant
# may last a month, host and bot grants carry more power and stay within a week.
MAX_LISTENER_GRANT_TTL_S = 30 * 24 * 3600
MAX_GRANT_TTL_S = 7 * 24 * 3600
CAPTION_BACKLOG = 500  # events a caption socket may fall behind before it drops new ones


class RoomsAPI:
    def __init__(self, server: VoxroomServer) -> None:
        self.server = server
        self.access = server.access

    def routes(self) -> list[Any]:
        return [
            Route("/api/rooms", self.list_rooms, methods=["GET"]),
            Route("/api/rooms", self.create_room, methods=["POST"]),
            Route("/api/rooms/{room}", self.get_room, methods=["GET"]),
            Route("/api/rooms/{room}", self.delete_room, methods=["DELETE"]),
            Route("/api/rooms/{room}/say", self.say, methods=["POST"]),
            Route("/api/rooms/{room}/speeches/{speech}", self.cancel_speech, methods=["DELETE"]),
            Route("/api/rooms/{room}/grants", self.mint_grant, methods=["POST"]),
            Route("/api/rooms/{room}/links", self.get_links, methods=["GET"]),
            Route("/api/rooms/{room}/links/rotate", self.rotate_links, methods=["POST"]),
            WebSocketRoute("/rooms/{room}/events", self.room_events),
        ]

    async def list_rooms(self, request: Request) -> Response:
        return await guard(lambda: {"rooms": [r.summary() for r in
                                              self.server.rooms.for_owner(self.access.account(request).id)]})

    async def create_room(self, request: Request) -> Response:
        async def run() -> Any:
            account = self.access.account(request)
            body = await json_body(request)
            name = body.get("name", "room")
            if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
                raise ValueError("'name' must be a string of 1-100 characters")
            room = self.server.rooms.create(account.id, name)
            self.server.sfu.room_created(room)
            return {**room.summary(), **self.links(room)}
        return await guard(run, status=201)

    def links(self, room: Room) -> dict[str, str]:
        """The room's listener page and OBS overlay links: valid until the host rotates them."""
        link = self.server.accounts.room_link(room.owner, room.id, room.link_key)
        return {"listen_url": f"/r/{room.id}?grant={link}", "overlay_url": f"/obs/{room.id}?grant={link}",
                "listener_grant": link}

    async def get_links(self, request: Request) -> Response:
        return await guard(lambda: self.links(self.server.rooms.owned(request.path_params["room"],
                                                                      self.access.account(request).id)))

    async def rotate_links(self, request: Request) -> Response:
        """New listener and overlay links; the old ones are refused from now on (`link_revoked`), and the
        pages and listeners that came in with them are cut off."""
        async def run() -> Any:
            room = self.server.rooms.owned(request.path_params["room"], self.access.account(request).id)
            old = self.server.accounts.room_link(room.owner, room.id, room.link_key)
            await self.server.rooms.rotate_links(room, old)
            return self.links(room)
        return await guard(run)

    async def get_room(self, request: Request) -> Response:
        return await guard(lambda: self.access.room_for(request, request.path_params["room"], ("host",)).summary())

    async def delete_room(self, request: Request) -> Response:
        async def run() -> Any:
            room = self.server.rooms.owned(request.path_params["room"], self.access.account(request).id)
            await self.server.delete_room(room)
            return {"deleted": room.id}
        return await guard(run)

    async def say(self, request: Request) -> Response:
        """A line for the room's co-host to say: the host's (console, REST) or a bot's, said through the
        co-host like any reply (first in line, output moderation, the host policies)."""
        async def run() -> Any:
            room = self.access.room_for(request, request.path_params["room"], ("host", "bot"))
            body = await json_body(request)
            body.setdefault("id", "web-" + secrets.token_hex(4))
            msg = protocol.parse_client_message(json.dumps({**body, "type": "say"}))
            assert isinstance(msg, protocol.Say)
            voice = self.server.voice(msg.voice, self.access.owner_of(room)) if msg.voice is not None else False
            if (room.cohost.agent.voice if voice is False else voice) is None:
                english_part(msg.text, msg.lang)  # the stock voice: LanguageNotSupported now, not silence later
            speech_id = room.cohost.agent.say(msg.text, speech_id=msg.id,
                                              line=HostLine(voice=voice, lang=msg.lang, speed=msg.speed))
            return {"id": speech_id, "state": "queued"}
        return await guard(run, status=202)

    async def cancel_speech(self, request: Request) -> Response:
        def run() -> Any:
            room = self.access.room_for(request, request.path_params["room"], ("host",))
            speech_id = request.path_params["speech"]
            if not cancel_in_room(room, speech_id):
                raise RoomError("no such speech in this room", 404)
            return {"id": speech_id, "state": "cancelled"}
        return await guard(run)

    async def mint_grant(self, request: Request) -> Response:
        async def run() -> Any:
            account = self.access.account(request)
            room = self.server.rooms.owned(request.path_params["room"], account.id)
            body = await json_body(request)
            role = body.get("role", "listener")
            ttl = body.get("ttl", 6 * 3600)
            longest = MAX_LISTENER_GRANT_TTL_S if role == "listener" else MAX_GRANT_TTL_S
            if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 60 <= ttl <= longest:
                raise ValueError(f"'ttl' must be between 60 s and {longest // 86400} days for a {role} grant")
            return {"grant": self.server.accounts.mint_grant(account, room.id, role, ttl), "role": role}
        return await guard(run, status=201)

    async def room_events(self, ws: WebSocket) -> None:
        """Captions and queue changes for one room (listener page, OBS overlay, console)."""
        try:
            room = self.access.room_for(ws, ws.path_params["room"], ("listener", "host", "bot"))
        except (AuthError, RoomError) as exc:
            # Accepted first, so the page gets the code and the reason (a refused handshake is only
            # "1006" to a browser) and can say why instead of retrying.
            await ws.accept()
            await close_refused(ws, exc)
            return
        await ws.accept()
        outbox: list[dict[str, Any]] = list(room.history[-10:])
        wake = asyncio.Event()
        revoked = False  # the room's links were rotated and this socket came in with one

        def revoke() -> None:
            nonlocal revoked
            revoked = True
            wake.set()

        if self.access.link_of(ws) is not None:
            room.link_holders.add(revoke)

        def push(event: dict[str, Any]) -> None:
            if len(outbox) < CAPTION_BACKLOG:
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
                if revoked:
                    await close_refused(ws, AuthError("this link was revoked: the host rotated the room's links",
                                                      403, "link_revoked"))
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            room.subscribers.discard(push)
            room.link_holders.discard(revoke)
            reader.cancel()


async def close_refused(ws: WebSocket, exc: AuthError | RoomError) -> None:
    """Close a caption socket the caller may not (or no longer) hold: 4403 or 4404, and a reason that
    starts with the stable error code ("link_revoked: …") so the page can say which it is."""
    code = getattr(exc, "code", None) or {401: "unauthorized", 403: "forbidden"}.get(exc.status, "not_found")
    await ws.close(code=4403 if isinstance(exc, AuthError) else 4404, reason=f"{code}: {exc}"[:120])
