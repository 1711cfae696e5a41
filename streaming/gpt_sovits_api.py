"""GPT-SoVITS' `api_v2.py` interface, and SillyTavern's GPT-SoVITS-V2 provider on top of it.

Tools written for a local GPT-SoVITS server (Open-LLM-VTuber's `gpt_sovits_tts`, AI-Vtuber, SillyTavern)
can point at voxroom instead:

    GET  /tts?text=…&text_lang=…&ref_audio_path=…&prompt_lang=…[&media_type=wav|raw|ogg|aac][&streaming_mode=…]
    POST /tts   the same fields as a JSON object
    GET  /speakers, POST /           SillyTavern: the caller's voices, and its POST body (api_v2's fields)

`ref_audio_path` names one of the caller's voices: its file name without directory or extension is
matched against the voice ids, then the names (`voices/Mia.wav` → the voice called "Mia"; `stock`
is the stock voice). `prompt_text`, `prompt_lang` and the sampling fields are accepted and not
used: a voxroom voice carries its own reference and transcript. These clients cannot set headers,
so the API token may come as `?token=`, as `Authorization: Bearer`, or (SillyTavern, which only
takes a base URL) in the path: `/st/TOKEN/speakers`, `POST /st/TOKEN/`. Refusals are api_v2's:
a status (400, or 401/403/429) with `{"message": …}`. Audio is 32 kHz mono, GPT-SoVITS' own rate.

api_v2's switches answer per caller (the account whose token came), never for the whole process:

    GET /set_refer_audio?refer_audio_path=…   this caller's default voice for /tts calls without ref_audio_path
    GET /set_gpt_weights?weights_path=…       200 for the weights this server runs, else 400 saying which
    GET /set_sovits_weights?weights_path=…    (one model set serves every caller; a voice is its reference)
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voxroom.models.engine import Busy, SynthesisError
from voxroom.models.weights import WeightsError, best_installed
from voxroom.streaming import http_errors, protocol
from voxroom.streaming.access import Access
from voxroom.streaming.accounts import Account, AuthError
from voxroom.streaming.api_speech import ApiSpeaker, SpeechResponse, SpeechStream, find_voice, voice_ref
from voxroom.streaming.audio_encoding import PcmEncoder, encoder_for, wav_header
from voxroom.streaming.reference_files import ReferenceFiles

if TYPE_CHECKING:
    from voxroom.streaming.app import VoxroomServer

SOVITS_RATE = 32_000
MEDIA_TYPES = ("wav", "raw", "ogg", "aac")
# api_v2's languages (v2 models) -> voxroom's; "all_xx" means "only xx", auto_yue "auto, Cantonese for Chinese"
LANGS = {"auto": "auto", "auto_yue": "auto", "en": "en", "zh": "zh", "ja": "ja", "yue": "yue", "ko": "ko",
         "all_zh": "zh", "all_ja": "ja", "all_yue": "yue", "all_ko": "ko",
         # the names GPT-SoVITS' web UI shows, which some clients (AI-Vtuber) send as they are
         "中文": "zh", "英文": "en", "日文": "ja", "粤语": "yue", "韩文": "ko", "中英混合": "auto", "日英混合": "auto",
         "粤英混合": "auto", "韩英混合": "auto", "多语种混合": "auto", "多语种混合(粤语)": "auto"}
SPLIT_METHODS = frozenset({"cut0", "cut1", "cut2", "cut3", "cut4", "cut5"})  # accepted; voxroom cuts its own way
MAX_TEXT_CHARS = 4096
AUDIO_SUFFIX = re.compile(r"\.(wav|mp3|flac|ogg|opus|m4a|aac|webm)$", re.IGNORECASE)
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type"}


class SovitsError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class TtsRequest:
    text: str
    lang: str
    voice_name: str
    media_type: str = "wav"
    streaming: bool = False
    speed: float = 1.0
    ref_audio_path: str = ""  # as given: a file in the operator's reference directory, if it names no voice
    prompt_text: str = ""
    prompt_lang: str = "auto"


def _flag(value: Any, name: str) -> bool | int:
    """A bool or int as api_v2's FastAPI parses it from JSON or a query string."""
    if isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "yes", "on"):
            return True
        if low in ("false", "no", "off"):
            return False
        if low.lstrip("-").isdigit() and len(low) < 4:
            return int(low)
    raise SovitsError(f"{name}: must be true/false or an integer")


def _text_field(fields: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = fields.get(name)
    if value is None or value == "":
        if default is not None:
            return default
        raise SovitsError(f"{name} is required")
    if not isinstance(value, str):
        raise SovitsError(f"{name} must be a string")
    return value


def parse_tts(fields: Mapping[str, Any], default_ref: str | None = None) -> TtsRequest:
    """api_v2's checks, in its order and words; unknown and unused fields are ignored as it does.
    `default_ref`: the caller's voice from /set_refer_audio, used when ref_audio_path is left out."""
    def text_field(name: str) -> str:
        return _text_field(fields, name)

    ref = _text_field(fields, "ref_audio_path", default_ref)
    text = text_field("text")
    if len(text) > MAX_TEXT_CHARS:
        raise SovitsError(f"text is longer than {MAX_TEXT_CHARS} characters")
    text_lang = text_field("text_lang").lower()
    if text_lang not in LANGS:
        raise SovitsError(f"text_lang: {text_lang} is not supported (use one of {', '.join(list(LANGS)[:11])})")
    prompt_lang = text_field("prompt_lang").lower()
    if prompt_lang not in LANGS:
        raise SovitsError(f"prompt_lang: {prompt_lang} is not supported (use one of {', '.join(list(LANGS)[:11])})")
    media_type = fields.get("media_type") or "wav"
    if media_type not in MEDIA_TYPES:
        raise SovitsError(f"media_type: {media_type} is not supported")
    split = fields.get("text_split_method") or "cut5"
    if split not in SPLIT_METHODS:
        raise SovitsError(f"text_split_method:{split} is not supported")
    mode = _flag(fields.get("streaming_mode", False), "streaming_mode")
    if mode not in (0, 1, 2, 3):  # True == 1, False == 0
        raise SovitsError("the value of streaming_mode must be 0, 1, 2, 3(int) or true/false(bool)")
    speed = fields.get("speed_factor", 1.0)
    try:
        speed = float(speed)
    except (TypeError, ValueError):
        raise SovitsError("speed_factor must be a number") from None
    if not math.isfinite(speed) or speed <= 0:
        raise SovitsError("speed_factor must be a positive number")
    prompt_text = fields.get("prompt_text")
    return TtsRequest(text=text, lang=LANGS[text_lang], voice_name=voice_name_of(ref), media_type=media_type,
                      streaming=bool(mode), speed=speed, ref_audio_path=ref,
                      prompt_text=prompt_text if isinstance(prompt_text, str) else "", prompt_lang=LANGS[prompt_lang])


def voice_name_of(ref_audio_path: str) -> str:
    """`./参考音频/Mia.wav` -> `Mia`: the file name without directory or audio extension."""
    base = re.split(r"[\\/]", ref_audio_path.strip())[-1]
    return AUDIO_SUFFIX.sub("", base).strip() or ref_audio_path.strip()


def sovits_error(exc: Exception) -> JSONResponse:
    """api_v2's error answer: a status and {"message": …}."""
    if isinstance(exc, SovitsError):
        status, message = exc.status, exc.message
    elif isinstance(exc, Busy):
        status, message = 429, str(exc)
    elif isinstance(exc, SynthesisError):
        status, message = 400, f"tts failed: {exc}"
    elif isinstance(exc, AuthError):
        status, message = exc.status, str(exc)
    elif isinstance(exc, protocol.ProtocolError):
        status, message = 400, exc.message
    else:
        status, message = http_errors.error_response(exc).status_code, str(exc)
        status = 400 if status == 404 else status  # api_v2 answers 400 for a reference it cannot use
    headers = {**CORS, "Retry-After": http_errors.retry_after(exc)} if status == 429 else CORS
    return JSONResponse({"message": message}, status, headers=headers)


async def sovits_guard(run: Callable[[], Awaitable[Response]]) -> Response:
    try:
        response = await run()
    except (SovitsError, *http_errors.CALLER_ERRORS) as exc:
        return sovits_error(exc)
    response.headers.update(CORS)
    return response


class GptSovitsAPI:
    def __init__(self, server: VoxroomServer, speaker: ApiSpeaker) -> None:
        self.server = server
        self.speaker = speaker
        self.refer: dict[str, str] = {}  # account id -> its default voice (id, or "stock"), from /set_refer_audio
        directory = server.config.api_v2_reference_dir
        self.reference_files = ReferenceFiles(directory, server.engine) if directory is not None else None

    def routes(self) -> list[Route]:
        return [
            Route("/tts", self.tts_get, methods=["GET"]),
            Route("/tts", self.tts_post, methods=["POST"]),
            Route("/tts", self.preflight, methods=["OPTIONS"]),
            Route("/speakers", self.speakers, methods=["GET"]),
            Route("/", self.tts_post, methods=["POST"]),
            Route("/", self.preflight, methods=["OPTIONS"]),
            Route("/st/{token}/speakers", self.speakers, methods=["GET"]),
            Route("/st/{token}/", self.tts_post, methods=["POST"]),
            Route("/st/{token}/", self.preflight, methods=["OPTIONS"]),
            Route("/set_refer_audio", self.set_refer_audio, methods=["GET"]),
            Route("/set_gpt_weights", self.set_gpt_weights, methods=["GET"]),
            Route("/set_sovits_weights", self.set_sovits_weights, methods=["GET"]),
        ]

    def account(self, request: Request) -> Account:
        """The API token from the path (SillyTavern), `?token=` or `Authorization: Bearer`."""
        token = request.path_params.get("token") or Access.credential(request)
        if not token:
            raise AuthError("this call needs an API token: ?token=vxr_… or Authorization: Bearer vxr_…")
        if token.startswith("vxg_"):
            raise AuthError("this call needs an API token, not a join grant", 403)
        return self.server.accounts.by_token(token)

    async def preflight(self, request: Request) -> Response:
        return Response(status_code=204, headers=CORS)

    async def speakers(self, request: Request) -> Response:
        """SillyTavern's voice list: [{name, voice_id}], the stock voice first."""
        async def run() -> Response:
            account = self.account(request)
            own = [{"name": r.name, "voice_id": r.id, "lang": r.meta.get("lang", "auto")}
                   for r in self.server.voices.store.list(account.id)]
            return JSONResponse([{"name": "stock", "voice_id": "stock", "lang": "en"}, *own])
        return await sovits_guard(run)

    async def tts_get(self, request: Request) -> Response:
        return await sovits_guard(lambda: self._tts(request, dict(request.query_params)))

    async def tts_post(self, request: Request) -> Response:
        async def run() -> Response:
            self.account(request)  # before reading the body
            return await self._tts(request, await http_errors.json_body(request))
        return await sovits_guard(run)

    async def set_refer_audio(self, request: Request) -> Response:
        """This caller's default voice: later /tts calls of the same account without ref_audio_path
        speak with it. Other callers are not affected."""
        async def run() -> Response:
            account = self.account(request)
            self.speaker.admit(account.id)
            path = _text_field(request.query_params, "refer_audio_path")
            try:
                ref = voice_ref(self.server, account, voice_name_of(path))
            except LookupError as exc:
                return JSONResponse({"message": "set refer audio failed", "Exception": str(exc)}, 400)
            self.refer[account.id] = str(ref)
            return JSONResponse({"message": "success"})
        return await sovits_guard(run)

    async def set_gpt_weights(self, request: Request) -> Response:
        return await sovits_guard(lambda: self._set_weights(request, "gpt"))

    async def set_sovits_weights(self, request: Request) -> Response:
        return await sovits_guard(lambda: self._set_weights(request, "sovits"))

    async def _set_weights(self, request: Request, kind: str) -> Response:
        """Nothing to switch: one model set serves every caller at once (a voice is its reference clip).
        The weights this server runs (by file name) are a success; any other is api_v2's 400, saying
        which weights there are."""
        account = self.account(request)
        self.speaker.admit(account.id)
        wanted = voice_name_of(_text_field(request.query_params, "weights_path"))
        running = self.weights_files()
        have = running.get(kind)
        if have is not None and wanted.casefold() in (have.casefold(), have.rsplit(".", 1)[0].casefold()):
            return JSONResponse({"message": "success"})
        if running:
            why = (f"this server runs {running['gpt']} and {running['sovits']} for every caller; other weights "
                   "cannot be loaded per caller (a voice's own reference clip makes it sound like its speaker)")
        else:
            why = "this server runs no GPT-SoVITS weights (start it with --models DIR); every voice uses the stock voice"
        label = "gpt weight" if kind == "gpt" else "sovits weight"
        return JSONResponse({"message": f"change {label} failed", "Exception": why}, 400)

    def weights_files(self) -> dict[str, str]:
        """{"gpt": file name, "sovits": file name} of the model set the cloning engine was loaded from."""
        models_dir = self.server.config.models_dir
        if models_dir is None or not self.server.engine.can_clone:
            return {}
        try:
            model_set = best_installed(models_dir).model_set
        except WeightsError:
            return {}
        return {"gpt": model_set.gpt.rsplit("/", 1)[-1], "sovits": model_set.sovits.rsplit("/", 1)[-1]}

    async def _tts(self, request: Request, fields: Mapping[str, Any]) -> Response:
        account = self.account(request)
        req = parse_tts(fields, self.refer.get(account.id))
        try:
            voice = find_voice(self.server, account, req.voice_name)
        except LookupError:
            if self.reference_files is None:
                raise
            voice = await self.reference_files.voice(req.ref_audio_path, req.prompt_text, req.prompt_lang)
        stream = self.speaker.speak(req.text, voice, account_id=account.id, lang=req.lang, speed=req.speed,
                                    source="api")
        headers = {"X-Voxroom-Voice": voice.id if voice is not None else "stock"}
        try:
            await stream.first_frame()
            if not req.streaming:
                return await self._whole(stream, req.media_type, headers)
        except BaseException:
            stream.release()
            raise
        encoder = encoder_for(req.media_type, SOVITS_RATE)
        return SpeechResponse(stream, encoder, headers=headers, media_type=f"audio/{req.media_type}")

    async def _whole(self, stream: SpeechStream, media_type: str, headers: dict[str, str]) -> Response:
        """streaming_mode off: one complete file (a WAV with its real sizes), as api_v2 answers."""
        if media_type == "wav":
            pcm = await stream.collect(PcmEncoder(SOVITS_RATE))
            body = wav_header(SOVITS_RATE, len(pcm)) + pcm
        else:
            body = await stream.collect(encoder_for(media_type, SOVITS_RATE))
        return Response(body, media_type=f"audio/{media_type}", headers=headers)

