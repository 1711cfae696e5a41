"""The routes that speak other tools' languages, mounted together: OpenAI's speech API
(`openai_api.py`), GPT-SoVITS' api_v2 and SillyTavern (`gpt_sovits_api.py`), and the OpenAPI
document of the whole REST API (`openapi.py`). Their speech shares one playout and one limit
(`api_speech.ApiSpeaker`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voxroom.streaming.api_speech import ApiSpeaker
from voxroom.streaming.gpt_sovits_api import GptSovitsAPI
from voxroom.streaming.openai_api import OpenAIAPI
from voxroom.streaming.openapi import openapi_document

if TYPE_CHECKING:
    from voxroom.streaming.app import VoxroomServer


class CompatAPI:
    def __init__(self, server: VoxroomServer) -> None:
        self.server = server
        self.speaker = ApiSpeaker(server.engine, server.clock)

    def routes(self) -> list[Route]:
        return [
            *OpenAIAPI(self.server, self.speaker).routes(),
            *GptSovitsAPI(self.server, self.speaker).routes(),
            Route("/openapi.json", self.openapi, methods=["GET"]),
        ]

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())
