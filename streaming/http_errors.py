"""How the HTTP API answers what callers get wrong: one mapping from errors to JSON responses.

Every REST handler runs its body through `guard`, so an error a caller can cause (a bad token, a
room that is not theirs, a malformed body, a full queue) becomes a clear JSON answer with a status,
and nothing a caller sends prints a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from voxroom.models.engine import Busy, SynthesisError
from voxroom.models.voice_store import VoiceStoreError
from voxroom.streaming import protocol
from voxroom.streaming.accounts import AuthError
from voxroom.streaming.rooms import RoomError

MAX_BODY_BYTES = 256 * 1024
RETRY_AFTER_S = 2  # what a 429 says when its cause does not know better (a full queue empties quickly)
CALLER_ERRORS: tuple[type[Exception], ...] = (AuthError, RoomError, protocol.ProtocolError, LookupError,
                                              SynthesisError, ValueError, VoiceStoreError)


_CODE_BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                   405: "method_not_allowed", 413: "too_big", 415: "bad_media_type", 422: "cannot_say",
                   429: "busy", 500: "internal", 503: "full"}


def error_response(exc: Exception) -> JSONResponse:
    """Every error answer: {"error": plain words, "code": a stable code}; 429 says when to retry."""
    if isinstance(exc, protocol.ProtocolError):
        return _answer(exc.message, 413 if exc.code == "text_too_long" else 400, exc.code)
    if isinstance(exc, AuthError | RoomError):
        status = exc.status
    elif isinstance(exc, LookupError):
        status = 404
    elif isinstance(exc, Busy):
        status = 429
    elif isinstance(exc, SynthesisError):
        status = 422  # this text cannot be said (retrying will not help)
    elif isinstance(exc, VoiceStoreError):
        status = 500
    else:
        status = getattr(exc, "status", 400) if isinstance(getattr(exc, "status", None), int) else 400
    return _answer(str(exc), status, getattr(exc, "code", None) or _CODE_BY_STATUS.get(status, "error"), exc)


def retry_after(exc: Exception | None) -> str:
    """Whole seconds a refused caller should wait: the refusal's own `retry_after` (a rate limit knows
    when its next place frees), else RETRY_AFTER_S."""
    seconds = getattr(exc, "retry_after", None)
    return str(max(1, math.ceil(seconds)) if isinstance(seconds, int | float) else RETRY_AFTER_S)


def _answer(message: str, status: int, code: str, exc: Exception | None = None) -> JSONResponse:
    retry = status == 429 and getattr(exc, "retry_helps", True)
    headers = {"Retry-After": retry_after(exc)} if retry else None
    return JSONResponse({"error": message, "code": code}, status, headers=headers)


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
        body = protocol.loads_bounded(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, out-of-range numbers
        raise ValueError(f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    protocol.check_encodable(body)
    return body


async def not_routed(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (no such route or method), in the same shape as every other error."""
    status = getattr(exc, "status_code", 404)
    message = "no such route" if status == 404 else "this route does not take that method"
    return _answer(message, status, _CODE_BY_STATUS.get(status, "error"))
