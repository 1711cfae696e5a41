"""OpenAI's speech API, so tools built for it (the `openai` client, pipecat's OpenAITTSService, LiveKit
Agents' openai.TTS) can use voxroom as their voice: `POST /v1/audio/speech`, `GET /v1/models`.

The caller's API token is the bearer key. `voice` is one of the caller's voices (id or name) or the
stock voice, which OpenAI's voice names (alloy, echo, …) also mean. The body is streamed as it is
synthesized through the server's shared API playout (`api_speech.ApiSpeaker`). Errors come in
OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, mapped from voxroom's own once,
in `openai_error`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voxroom.models.engine import Busy, SynthesisError
from voxroom.streaming import http_errors
from voxroom.streaming.api_speech import ApiSpeaker, SpeechResponse, clamp_speed, find_voice
from voxroom.streaming.audio_encoding import encoder_for

if TYPE_CHECKING:
    from voxroom.streaming.app import VoxroomServer

MODELS = ("voxroom-tts", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")  # all say text the same way
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
                           "verse", "marin", "cedar"})  # OpenAI's own names: the stock voice here
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MAX_INPUT_CHARS = 4096
OPENAI_RATE = 24_000  # OpenAI's output rate; pcm is 24 kHz 16-bit mono little-endian (opus: 48 kHz)
MODELS_CREATED = 1_764_633_600  # 2025-12-02: a fixed date for the model list


class OpenAIError(Exception):
    """A refusal in OpenAI's terms: which parameter, which code."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.param, self.code = message, status, param, code


_TYPE_BY_STATUS = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def openai_error(exc: Exception) -> JSONResponse:
    """Any error a /v1 caller can cause, in OpenAI's error shape (voxroom's status and code kept)."""
    if isinstance(exc, OpenAIError):
        status, message, param, code = exc.status, exc.message, exc.param, exc.code
    elif isinstance(exc, SynthesisError) and not isinstance(exc, Busy):  # the text, not the load
        status, message, param, code = 400, f"the input could not be said: {exc}", "input", "synthesis_failed"
    else:
        answer = http_errors.error_response(exc)
        body = json.loads(bytes(answer.body))
        status, message, param, code = answer.status_code, body["error"], None, body["code"]
    kind = _TYPE_BY_STATUS.get(status, "server_error" if status >= 500 else "invalid_request_error")
    headers = {"Retry-After": http_errors.retry_after(exc)} if status == 429 else None
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status,
                        headers=headers)


async def openai_guard(run: Callable[[], Awaitable[Any]]) -> Response:
    try:
        result = await run()
    except (OpenAIError, *http_errors.CALLER_ERRORS) as exc:
        return openai_error(exc)
    return result if isinstance(result, Response) else JSONResponse(result)


def _field(body: dict[str, Any], name: str, kinds: type | tuple[type, ...], required: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise OpenAIError(f"'{name}' is required", param=name, code="missing_required_parameter")
        return None
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise OpenAIError(f"'{name}' has the wrong type", param=name, code="invalid_type")
    return value


class OpenAIAPI:
    def __init__(self, server: VoxroomServer, speaker: ApiSpeaker) -> None:
        self.server = server
        self.speaker = speaker

    def routes(self) -> list[Route]:
        return [
            Route("/v1/audio/speech", self.speech, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
        ]

    async def models(self, request: Request) -> Response:
        async def run() -> Any:
            self.server.access.account(request)
            return {"object": "list", "data": [{"id": m, "object": "model", "created": MODELS_CREATED,
                                                "owned_by": "voxroom"} for m in MODELS]}
        return await openai_guard(run)

    async def speech(self, request: Request) -> Response:
        async def run() -> Response:
            account = self.server.access.account(request)
            body = await http_errors.json_body(request)
            model = _field(body, "model", str, required=True)
            if model not in MODELS:
                raise OpenAIError(f"model {model[:80]!r} does not exist; use one of {', '.join(MODELS)}",
                                  param="model", code="model_not_found")
            text = _field(body, "input", str, required=True)
            if not text.strip():
                raise OpenAIError("'input' is empty", param="input", code="invalid_value")
            if len(text) > MAX_INPUT_CHARS:
                raise OpenAIError(f"'input' is longer than {MAX_INPUT_CHARS} characters", param="input",
                                  code="string_above_max_length")
            voice_name = _field(body, "voice", (str, dict), required=True)
            if isinstance(voice_name, dict):  # {"id": "..."}: a custom voice by id
                voice_name = voice_name.get("id")
                if not isinstance(voice_name, str):
                    raise OpenAIError("'voice.id' must be a string", param="voice", code="invalid_type")
            response_format = _field(body, "response_format", str) or "mp3"
            if response_format not in FORMATS:
                raise OpenAIError(f"'response_format' must be one of {', '.join(FORMATS)}",
                                  param="response_format", code="invalid_value")
            speed = _field(body, "speed", (int, float))
            speed = 1.0 if speed is None else float(speed)
            if not math.isfinite(speed) or not 0.25 <= speed <= 4.0:
                raise OpenAIError("'speed' must be between 0.25 and 4.0", param="speed", code="invalid_value")
            _field(body, "instructions", str)  # accepted, not used: the voice's own style is kept
            stream_format = _field(body, "stream_format", str)
            if stream_format not in (None, "audio"):
                raise OpenAIError("only stream_format 'audio' is supported", param="stream_format",
                                  code="invalid_value")
            try:
                voice = find_voice(self.server, account, voice_name, OPENAI_VOICES)
            except LookupError as exc:
                raise OpenAIError(str(exc), 404, "voice", "voice_not_found") from None
            stream = self.speaker.speak(text, voice, account_id=account.id, speed=speed, source="api")
            try:
                await stream.first_frame()
            except BaseException:
                stream.release()
                raise
            effective = clamp_speed(speed)
            return SpeechResponse(stream, encoder_for(response_format, OPENAI_RATE), headers={
                "X-Voxroom-Voice": voice.id if voice is not None else "stock",
                "X-Voxroom-Speed": f"{effective:g}",
            })
        return await openai_guard(run)

