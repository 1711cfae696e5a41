"""REST for a room's co-host: chat in, settings, skip, the queue, the host-speaking signal, metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from voxroom.agent.metrics import render_prometheus
from voxroom.models.engine import Voice, VoiceRef
from voxroom.streaming.accounts import Account, AuthError
from voxroom.streaming.http_errors import error_response, guard, json_body
from voxroom.streaming.rooms import RoomError, render_room_health

if TYPE_CHECKING:
    from voxroom.streaming.app import VoxroomServer


class CoHostAPI:
    def __init__(self, server: VoxroomServer) -> None:
        self.server = server
        self.access = server.access

    def routes(self) -> list[Any]:
        return [
            Route("/api/rooms/{room}/chat", self.chat, methods=["POST"]),
            Route("/api/rooms/{room}/cohost", self.state, methods=["GET"]),
            Route("/api/rooms/{room}/cohost", self.update, methods=["PATCH"]),
            Route("/api/rooms/{room}/cohost/skip", self.skip, methods=["POST"]),
            Route("/api/rooms/{room}/queue", self.queue_clear, methods=["DELETE"]),
            Route("/api/rooms/{room}/queue/{event}/{action}", self.queue_action, methods=["POST"]),
            Route("/api/rooms/{room}/host-speaking", self.host_speaking, methods=["POST"]),
            Route("/metrics", self.metrics),
        ]

    async def chat(self, request: Request) -> Response:
        """A chat event: the room's web chat (listener grant), a bot or connector, the host."""
        async def run() -> Any:
            room = self.access.room_for(request, request.path_params["room"], ("listener", "bot", "host"))
            caller = self.access.caller(request)
            body = await json_body(request)
            listener = caller.grant is not None and caller.grant.role == "listener"
            if listener:
                body["platform"] = "web"
            return {"outcome": room.cohost.submit(body, from_listener=listener)}
        return await guard(run, status=202)

    async def chat_from_bot(self, room_id: str, event: dict[str, Any], account: Account) -> None:
        self.server.rooms.owned(room_id, account.id).cohost.submit(event)

    async def state(self, request: Request) -> Response:
        def run() -> Any:
            room = self.access.room_for(request, request.path_params["room"], ("host",))
            return {"settings": room.cohost.settings(), **room.cohost.agent.snapshot(),
                    "metrics": room.cohost.agent.metrics.render()}
        return await guard(run)

    async def update(self, request: Request) -> Response:
        async def run() -> Any:
            room = self.access.room_for(request, request.path_params["room"], ("host",))
            body = await json_body(request)
            voice: Voice | None | bool = False
            if "voice" in body:
                voice = self.server.voice(VoiceRef.parse(body["voice"]), self.access.owner_of(room))
            try:
                room.cohost.update(body, voice)
            finally:  # a body refused halfway has still changed what came before the bad field
                self.server.rooms.save(room)
            return room.cohost.settings()
        return await guard(run)

    async def skip(self, request: Request) -> Response:
        def run() -> Any:
            room = self.access.room_for(request, request.path_params["room"], ("host",))
            return {"skipped": room.cohost.agent.skip_current()}
        return await guard(run)

    async def queue_clear(self, request: Request) -> Response:
        def run() -> Any:
            room = self.access.room_for(request, request.path_params["room"], ("host",))
            return {"cleared": room.cohost.agent.queue.clear()}
        return await guard(run)

    async def queue_action(self, request: Request) -> Response:
        def run() -> Any:
            room = self.access.room_for(request, request.path_params["room"], ("host",))
            action, event_id = request.path_params["action"], request.path_params["event"]
            if action not in ("skip", "pin"):
                raise ValueError("queue actions are skip and pin")
            queue = room.cohost.agent.queue
            done = queue.skip(event_id) if action == "skip" else queue.pin(event_id)
            if not done:
                raise RoomError("no such event in the queue", 404)
            return {action: event_id}
        return await guard(run)

    async def host_speaking(self, request: Request) -> Response:
        """The host-speaking signal from outside (a VAD elsewhere, a push-to-talk key, tests)."""
        async def run() -> Any:
            room = self.access.room_for(request, request.path_params["room"], ("host",))
            body = await json_body(request)
            if not isinstance(body.get("speaking"), bool):
                raise ValueError("'speaking' must be true or false")
            room.cohost.set_host_speaking(body["speaking"])
            return {"speaking": body["speaking"], "state": room.cohost.agent.state}
        return await guard(run)

    async def metrics(self, request: Request) -> Response:
        """Prometheus text format, for the caller's rooms (scrape with a bearer token): the co-hosts'
        counters and timings, then each room's health."""
        try:
            account = self.access.account(request)
        except AuthError as exc:
            return error_response(exc)
        owned = self.server.rooms.for_owner(account.id)
        agents = render_prometheus({r.id: r.cohost.agent.metrics for r in owned})
        connectors = self.server.connectors

        def connector_states(room_id: str) -> list[dict[str, Any]]:
            return [{"platform": record.platform, **connectors.runtime.status(record.id)}
                    for record in connectors.store.for_room(room_id)]

        health = render_room_health(owned, connector_states)
        return PlainTextResponse(agents + health, media_type="text/plain; version=0.0.4")
