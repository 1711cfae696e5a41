"""The routes that speak other tools' languages, mounted together: OpenAI's speech API
(`openai_api.py`), GPT-SoVITS' api_v2 and SillyTavern (`gpt_sovits_api.py`), and the machine-readable
contracts: the OpenAPI document of the whole REST API (`openapi.py`) and the bot protocol's JSON
Schema (`protocol_schema.py`). Their speech goes through one `api_speech.ApiSpeaker`:
a playout per request, per-account fair use, and a server-wide limit of half the engine's places."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voxroom.streaming.api_speech import MAX_API_SPEECHES, ApiSpeaker, FairUse
from voxroom.streaming.gpt_sovits_api import GptSovitsAPI
from voxroom.streaming.openai_api import OpenAIAPI
from voxroom.streaming.openapi import openapi_document
from voxroom.streaming.protocol_schema import protocol_schema

if TYPE_CHECKING:
    from voxroom.streaming.app import VoxroomServer


class CompatAPI:
    def __init__(self, server: VoxroomServer) -> None:
        self.server = server
        config = server.config
        # at most half of what the engine takes at once (its batch and its line): rooms come first
        most = max(1, min(MAX_API_SPEECHES, (config.max_batch + config.max_queue) // 2))
        self.speaker = ApiSpeaker(server.engine, server.clock, most,
                                  FairUse(config.api_speeches_per_account, config.api_requests_per_min))

    def routes(self) -> list[Route]:
        return [
            *OpenAIAPI(self.server, self.speaker).routes(),
            *GptSovitsAPI(self.server, self.speaker).routes(),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/protocol.json", self.protocol, methods=["GET"]),
        ]

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def protocol(self, request: Request) -> Response:
        return JSONResponse(protocol_schema(), media_type="application/schema+json")
