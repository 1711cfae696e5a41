"""WebRTC signalling over HTTP: WHEP playback for listeners, WHIP ingest of the host's microphone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voxroom.streaming.accounts import AuthError
from voxroom.streaming.http_errors import error_response, guard, read_body
from voxroom.streaming.rooms import RoomError

if TYPE_CHECKING:
    from voxroom.streaming.app import VoxroomServer


class WebRTCAPI:
    def __init__(self, server: VoxroomServer) -> None:
        self.server = server
        self.access = server.access

    def routes(self) -> list[Any]:
        return [
            Route("/rooms/{room}/whep", self.whep_offer, methods=["POST"]),
            Route("/rooms/{room}/whep/{session}", self.whep_leave, methods=["DELETE"]),
            Route("/rooms/{room}/whip", self.whip_offer, methods=["POST"]),
            Route("/rooms/{room}/whip/{session}", self.whip_stop, methods=["DELETE"]),
        ]

    async def whep_offer(self, request: Request) -> Response:
        return await self.sdp_exchange(request, "whep", ("listener", "host", "bot"))

    async def whip_offer(self, request: Request) -> Response:
        """The host's microphone (WHIP-style ingest), for turn-taking."""
        return await self.sdp_exchange(request, "whip", ("host",))

    async def sdp_exchange(self, request: Request, kind: str, roles: tuple[str, ...]) -> Response:
        rooms = self.server.rooms
        try:
            room = self.access.room_for(request, request.path_params["room"], roles)
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/sdp":
                return JSONResponse({"error": "offers are sent as application/sdp"}, 415)
            offer = (await read_body(request)).decode("utf-8", "replace")
            if kind == "whep":  # pending listeners are counted per credential and per address
                session, answer = await rooms.join(room, offer, grant=self.access.credential(request),
                                                   address=request.client.host if request.client else None)
            else:
                session, answer = await rooms.ingest(room, offer)
        except (AuthError, RoomError, ValueError) as exc:
            return error_response(exc)
        location = f"/rooms/{room.id}/{kind}/{session.id}"
        return Response(answer, 201, media_type="application/sdp", headers={"Location": location})

    async def whip_stop(self, request: Request) -> Response:
        async def run() -> Any:
            room = self.access.room_for(request, request.path_params["room"], ("host",))
            await self.server.rooms.stop_ingest(room, request.path_params["session"])
            return {"stopped": request.path_params["session"]}
        return await guard(run)

    async def whep_leave(self, request: Request) -> Response:
        async def run() -> Any:
            room = self.access.room_for(request, request.path_params["room"], ("listener", "host", "bot"))
            await self.server.rooms.leave(room, request.path_params["session"])
            return {"left": request.path_params["session"]}
        return await guard(run)
