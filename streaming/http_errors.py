"""How the HTTP API answers what callers get wrong: one mapping from errors to JSON responses.

Every REST handler runs its body through `guard`, so an error a caller can cause (a bad token, a
room that is not theirs, a malformed body, a full queue) becomes a clear JSON answer with a status,
and nothing a caller sends prints a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from voxroom.agent.speech import SpeakerBusy
from voxroom.models.engine import SynthesisError
from voxroom.models.voice_store import VoiceStoreError
from voxroom.streaming import protocol
from voxroom.streaming.accounts import AuthError
from voxroom.streaming.rooms import RoomError

MAX_BODY_BYTES = 256 * 1024
CALLER_ERRORS = (AuthError, RoomError, protocol.ProtocolError, LookupError, SynthesisError, ValueError,
                 VoiceStoreError)


def error_response(exc: Exception) -> JSONResponse:
    if isinstance(exc, AuthError | RoomError):
        return JSONResponse({"error": str(exc)}, exc.status)
    if isinstance(exc, protocol.ProtocolError):
        return JSONResponse({"error": exc.message, "code": exc.code}, 413 if exc.code == "text_too_long" else 400)
    if isinstance(exc, LookupError):
        return JSONResponse({"error": str(exc)}, 404)
    if isinstance(exc, SpeakerBusy | SynthesisError):
        return JSONResponse({"error": str(exc), "code": "busy"}, 429, headers={"Retry-After": "2"})
    if isinstance(exc, VoiceStoreError):
        return JSONResponse({"error": str(exc)}, 500)
    return JSONResponse({"error": str(exc)}, 400)


async def guard(run: Callable[[], Any], status: int = 200) -> Response:
    """Run a handler body; turn the errors callers can cause into clear JSON answers."""
    try:
        result = run()
        if hasattr(result, "__await__"):
            result = await result
    except CALLER_ERRORS as exc:
        return error_response(exc)
    return result if isinstance(result, Response) else JSONResponse(result, status)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ValueError(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request) -> dict[str, Any]:
    raw = await read_body(request)
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body
