"""Voices over HTTP and WebSocket: enrollment (upload or live recording with coaching), the
owner's voice list, reference and sample playback, rename, delete, and the voice lookup every
speaking path (REST, bot protocol, rooms) goes through.

Every call names an owner; the store answers "no such voice" for anyone else's. Model work
(decoding, analysis, the GPT-SoVITS prompt) runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from voxroom.agent.clock import Clock
from voxroom.models.audio_decode import AudioDecodeError, DecodeLimits, decode_audio, encode_wav
from voxroom.models.engine import Busy, Engine, EngineRouter, Voice, VoiceRef
from voxroom.models.enrollment.analysis import EnrollmentAnalysis, analyse_upload
from voxroom.models.enrollment.live import Advice, LiveCoach
from voxroom.models.enrollment.scripts import SCRIPTS, script_for
from voxroom.models.pcm import from_pcm16
from voxroom.models.voice_store import Consent, VoiceRecord, VoiceStore, load_server_key
from voxroom.streaming import protocol
from voxroom.streaming.accounts import Account, AuthError
from voxroom.streaming.audio import SAMPLE_RATE
from voxroom.streaming.playout import render_speech

log = logging.getLogger(__name__)

STORE_RATE = 32_000  # kept at the GPT-SoVITS rate: its reference spectrogram reaches 16 kHz
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
MAX_LIVE_SECONDS = 15 * 60
# An analysis holds the upload, its decoded audio at two rates and the VAD's work: ~0.5 GB and a core
# for a long file. Two at once per account lets a person retry without waiting; the server-wide cap
# keeps many accounts from exhausting memory together.
MAX_ANALYSES_PER_ACCOUNT = 2
MAX_ANALYSES = 4
BUSY_RETRY_AFTER_S = 5
CONSENT_STATEMENT = "I am the person whose voice this is, and I agree to it being cloned for my co-host."
SAMPLE_TEXT = "Hi everyone, this is my co-host voice. Thanks for hanging out in the stream today!"
CLONING_ENGINE = "gpt-sovits"


class UploadError(Exception):
    """An enrollment call refused before analysis: `code` for programs, the message for people."""

    def __init__(self, code: str, message: str, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.headers = code, message, status, headers or {}


class AnalysisSlots:
    """Counts running enrollment analyses, per account and in all, and refuses past the caps
    (a caller over them is told to retry; nothing of theirs is lost)."""

    def __init__(self, per_account: int = MAX_ANALYSES_PER_ACCOUNT, total: int = MAX_ANALYSES) -> None:
        self.per_account, self.total = per_account, total
        self._running: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, account: Account) -> Iterator[None]:
        mine = self._running.get(account.id, 0)
        if mine >= self.per_account or sum(self._running.values()) >= self.total:
            which = f"{self.per_account} recordings of yours are" if mine >= self.per_account else "the server is"
            raise UploadError("busy", f"{which} being analysed already; try again in a few seconds.", 429,
                              {"Retry-After": str(BUSY_RETRY_AFTER_S)})
        self._running[account.id] = mine + 1
        try:
            yield
        finally:
            left = self._running[account.id] - 1
            if left:
                self._running[account.id] = left
            else:
                del self._running[account.id]


class Voices:
    """The server's voices: the encrypted store, in-memory `Voice`s, and the enrollment pipeline."""

    def __init__(self, data_dir: Any, engine: Engine, clock: Clock, models_dir: Path | None = None) -> None:
        key = load_server_key(data_dir / "voice-store.key")  # beside, never inside, the database
        self.store = VoiceStore(data_dir / "voxroom.sqlite3", data_dir, key)
        self.engine = engine
        self.clock = clock
        engines = engine.engines if isinstance(engine, EngineRouter) else getattr(engine, "engines", None) \
            or {engine.name: engine}
        self.cloning = engines.get(CLONING_ENGINE)
        self._cache: dict[str, Voice] = {}
        self._preparing: dict[str, asyncio.Task[None]] = {}
        self.on_deleted: list[Callable[[str], None]] = []
        self.store.on_delete(self._forget)
        self.analyses = AnalysisSlots()
        self.asr_models = models_dir or data_dir / "models"  # where `voxroom models pull asr` puts its model

    # -- lookup -------------------------------------------------------------------------------
    def voice(self, ref: VoiceRef, account: Account) -> Voice | None:
        """The `Voice` to speak with; None is the stock voice. LookupError for anything not the caller's."""
        if ref.id is None:
            return None
        voice_id = ref.id
        record = self.store.get(account.id, voice_id)  # VoiceNotFound (a LookupError) for other owners
        if self.cloning is None:
            return None  # no cloning engine: the voice's owner hears the stock voice (the console says so)
        cached = self._cache.get(voice_id)
        if cached is not None:
            return cached
        prompt = self.store.get_prompt(account.id, voice_id, CLONING_ENGINE)
        if prompt is None:
            self._prepare_later(account.id, record)
            raise Busy(f"voice {record.name!r} is still being prepared for GPT-SoVITS; try again shortly")
        voice = Voice(id=voice_id, name=record.name, engine=CLONING_ENGINE, prompt=prompt)
        self._cache[voice_id] = voice
        return voice

    def _forget(self, voice_id: str) -> None:
        self._cache.pop(voice_id, None)
        task = self._preparing.pop(voice_id, None)
        if task is not None:
            task.cancel()
        for callback in self.on_deleted:
            callback(voice_id)

    # -- GPT-SoVITS prompt --------------------------------------------------------------------
    def _prepare_blocking(self, owner: str, record: VoiceRecord) -> None:
        assert self.cloning is not None
        audio, rate = self.store.load_audio(owner, record.id)
        ref = record.reference
        scale = rate / ref["sample_rate"]

        def clip(span: dict[str, Any]) -> np.ndarray:
            return audio[int(span["start"] * scale) : int(span["end"] * scale)]

        aux = [(clip(span), rate) for span in ref.get("auxiliary", [])]
        prompt = self.cloning.prepare_voice(clip(ref["main"]), rate, ref["main"].get("transcript") or "",  # type: ignore[attr-defined]
                                            record.meta.get("lang", "auto"), aux)
        self.store.put_prompt(owner, record.id, prompt.to_bytes(), CLONING_ENGINE)

    def _prepare_later(self, owner: str, record: VoiceRecord) -> None:
        if record.id in self._preparing:
            return

        async def run() -> None:
            try:
                await asyncio.to_thread(self._prepare_blocking, owner, record)
            except Exception:
                log.exception("could not prepare voice %s for GPT-SoVITS", record.id)
            finally:
                self._preparing.pop(record.id, None)

        self._preparing[record.id] = asyncio.create_task(run())

    # -- enrollment ---------------------------------------------------------------------------
    def enroll_blocking(self, account: Account, upload: bytes, *, filename: str | None, name: str, lang: str,
                        sentences: list[str] | None, transcript: str | None,
                        live_advice: Sequence[Advice] = ()) -> tuple[EnrollmentAnalysis, VoiceRecord | None]:
        """Analyse an upload; store it as a voice unless the verdict is re-record. Nothing half-made is kept."""
        analysis = analyse_upload(upload, filename=filename, lang=lang, sentences=sentences,
                                  typed_transcript=transcript, limits=DecodeLimits(max_bytes=MAX_UPLOAD_BYTES),
                                  live_advice=live_advice, models_dir=self.asr_models)
        if analysis.report.verdict == "rerecord" or analysis.reference is None:
            return analysis, None
        stored = decode_audio(upload, sample_rate=STORE_RATE, limits=DecodeLimits(max_bytes=MAX_UPLOAD_BYTES),
                              filename=filename)
        reference = analysis.reference.to_dict()
        record = self.store.create(
            account.id, name, stored.samples, STORE_RATE, reference, reference["main"].get("transcript") or "",
            Consent(who=account.name, statement=CONSENT_STATEMENT),
            meta={"lang": lang, "verdict": analysis.report.verdict, "source": filename or "recording"},
        )
        if self.cloning is not None:
            try:
                self._prepare_blocking(account.id, record)
            except Exception:
                self.store.delete(account.id, record.id)  # a voice that cannot speak is not kept
                raise
        return analysis, record

    def info(self, account: Account, record: VoiceRecord) -> dict[str, Any]:
        return {
            "id": record.id, "name": record.name, "duration": round(record.duration, 2),
            "created_at": record.created_at, "reference": record.reference, "transcript": record.transcript,
            "engine": CLONING_ENGINE if self.cloning is not None else "stock",
            "can_clone": self.cloning is not None,
            "consent": {"who": record.consent.who, "at": record.consent.at, "statement": record.consent.statement},
        }


def message_lang(ui: str | None, script_lang: str) -> str:
    """The language advice and reports are written in: the page's (`ui`), else the script's."""
    return "zh" if (ui or script_lang).lower().startswith("zh") else "en"


def report_json(analysis: EnrollmentAnalysis, msg_lang: str) -> dict[str, Any]:
    report = analysis.report
    return {
        "verdict": report.verdict,
        "problems": [{"code": p.code, "severity": p.severity, "message": p.message.get(msg_lang, p.message["en"]),
                      "value": p.value, "said_at": list(p.said_at)} for p in report.problems],
        "duration_s": round(report.duration_s, 2), "speech_s": round(report.speech_s, 2),
        "snr_db": report.snr_db, "level_db": report.level_db, "loudness_lufs": report.loudness_lufs,
        "clipped_fraction": report.clipped_fraction, "bandwidth_hz": report.bandwidth_hz,
        "music_score": report.music_score, "speaker_mismatch": report.speaker_mismatch,
        "speaker_similarity": report.speaker_similarity,
        "other_voice": [[round(v.start, 2), round(v.end, 2)] for v in report.other_voice],
        "rate_ratio": report.rate_ratio,
        "reference": analysis.reference.to_dict() if analysis.reference is not None else None,
    }


async def read_upload(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit`: by its declared length before
    reading anything, and by what arrived while streaming (a length can be absent or wrong)."""
    too_big = UploadError("too_big", f"the upload is larger than {limit // (1024 * 1024)} MB; "
                          "one or two minutes of recording is plenty", 413)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


class VoicesAPI:
    """Route handlers; `server` supplies auth (`account`), JSON/body helpers and errors."""

    def __init__(self, server: Any, voices: Voices) -> None:
        self.server = server
        self.voices = voices

    async def scripts(self, request: Request) -> Response:
        def run() -> Any:
            self.server.account(request)
            lang = request.query_params.get("lang", "en")
            if lang not in SCRIPTS:
                raise ValueError(f"scripts exist for {sorted(SCRIPTS)}")
            script = script_for(lang)
            return {"lang": lang, "title": script.title, "sentences": list(script.sentences)}
        return await self.server.guard(request, run)

    async def list(self, request: Request) -> Response:
        def run() -> Any:
            account = self.server.account(request)
            own = [self.voices.info(account, r) for r in self.voices.store.list(account.id)]
            stock = {"id": "stock", "name": "Joe (stock voice, en-US)", "engine": "stock", "duration": None}
            can_clone = self.voices.cloning is not None
            return {"voices": [stock, *own], "can_clone": can_clone,
                    "advice": None if can_clone else "The stock voice cannot clone. This server has no GPT-SoVITS models, so voices are recorded "
                    "and kept but speak with the stock voice for now. Run `voxroom models pull v2pro` and start "
                    "`voxroom serve --models DIR` to hear them cloned."}
        return await self.server.guard(request, run)

    async def create(self, request: Request) -> Response:
        """Every refusal carries a stable `code`; what went wrong inside is logged, not sent."""
        try:
            account = self.server.account(request)
            params = request.query_params
            name = (params.get("name") or "my voice").strip()[:80]
            lang = params.get("lang", "en")
            if lang not in SCRIPTS:
                raise UploadError("bad_request", f"'lang' must be one of {sorted(SCRIPTS)}", 400)
            if params.get("consent") != "true":
                raise UploadError("consent_required", "creating a voice needs consent=true: " + CONSENT_STATEMENT, 400)
            with self.voices.analyses.hold(account):  # before the body: a waiting upload holds memory too
                body = await read_upload(request, MAX_UPLOAD_BYTES)
                analysis, record = await asyncio.to_thread(
                    self.voices.enroll_blocking, account, body, filename=request.headers.get("x-filename"),
                    name=name, lang=lang, sentences=None, transcript=params.get("transcript") or None)
        except UploadError as exc:
            return JSONResponse({"error": exc.message, "code": exc.code}, exc.status, headers=exc.headers)
        except AudioDecodeError as exc:
            return JSONResponse({"error": exc.message, "code": exc.code}, 413 if exc.code == "too_big" else 400)
        except AuthError as exc:
            return JSONResponse({"error": str(exc), "code": "forbidden" if exc.status == 403 else "unauthorized"},
                                exc.status)
        except ClientDisconnect:  # the uploader went away mid-body: nobody to answer, nothing kept
            return JSONResponse({"error": "the upload was interrupted", "code": "interrupted"}, 400)
        except Exception:
            log.exception("enrollment upload failed")
            return JSONResponse({"error": "the recording could not be analysed; nothing was kept", "code": "internal"},
                                500)
        report = report_json(analysis, message_lang(params.get("ui"), lang))
        if record is None:
            return JSONResponse({"error": "this recording is not usable for cloning; please re-record",
                                 "code": "rerecord", "report": report}, 422)
        return JSONResponse({"voice": self.voices.info(account, record), "report": report}, 201)

    async def rename(self, request: Request) -> Response:
        async def run() -> Any:
            account = self.server.account(request)
            body = await self.server.json_body(request)
            name = body.get("name")
            if not isinstance(name, str) or not 0 < len(name.strip()) <= 80:
                raise ValueError("'name' must be 1-80 characters")
            record = self.voices.store.rename(account.id, request.path_params["voice"], name.strip())
            self.voices._cache.pop(record.id, None)
            return self.voices.info(account, record)
        return await self.server.guard(request, run)

    async def delete(self, request: Request) -> Response:
        async def run() -> Any:
            account = self.server.account(request)
            voice_id = request.path_params["voice"]
            await asyncio.to_thread(self.voices.store.delete, account.id, voice_id)
            return {"deleted": voice_id}
        return await self.server.guard(request, run)

    async def replace_reference(self, request: Request) -> Response:
        """The owner picks another main clip: {"start": s, "end": s, "transcript": text} (seconds)."""
        async def run() -> Any:
            account = self.server.account(request)
            voice_id = request.path_params["voice"]
            record = self.voices.store.get(account.id, voice_id)
            body = await self.server.json_body(request)
            start, end, transcript = body.get("start"), body.get("end"), body.get("transcript", "")
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (start, end)):
                raise ValueError("'start' and 'end' are seconds into the recording")
            if not isinstance(transcript, str) or len(transcript) > 500:
                raise ValueError("'transcript' is the text spoken in the clip (at most 500 characters)")
            if not 3.0 <= end - start <= 10.0 or start < 0 or end > record.duration:
                raise ValueError(f"the clip must be 3-10 s inside the {record.duration:.1f} s recording")
            reference = dict(record.reference)
            rate = reference["sample_rate"]
            reference["main"] = {**reference["main"], "start": int(start * rate), "end": int(end * rate),
                                 "transcript": transcript, "score": None, "complete_sentences": None}
            reference["transcript_source"] = "typed" if transcript else "none"
            reference["transcript_check"], reference["heard"] = "unverified", ""  # the owner's word, not checked
            updated = self.voices.store.set_reference(account.id, voice_id, reference, transcript)
            self.voices._cache.pop(voice_id, None)
            if self.voices.cloning is not None:
                await asyncio.to_thread(self.voices._prepare_blocking, account.id, updated)
            return self.voices.info(account, updated)
        return await self.server.guard(request, run)

    async def reference_wav(self, request: Request) -> Response:
        async def run() -> Response:
            account = self.server.account(request)
            voice_id = request.path_params["voice"]
            record = self.voices.store.get(account.id, voice_id)
            audio, rate = await asyncio.to_thread(self.voices.store.load_audio, account.id, voice_id)
            which = request.query_params.get("clip", "main")
            spans = [record.reference["main"], *record.reference.get("auxiliary", [])]
            index = 0 if which == "main" else int(which) if which.isdigit() else -1
            if not 0 <= index < len(spans):
                raise LookupError("no such reference clip")
            scale = rate / record.reference["sample_rate"]
            clip = audio[int(spans[index]["start"] * scale) : int(spans[index]["end"] * scale)]
            return Response(encode_wav(clip, rate), media_type="audio/wav", headers={"Cache-Control": "no-store"})
        return await self.server.guard(request, run)

    async def sample_wav(self, request: Request) -> Response:
        async def run() -> Response:
            account = self.server.account(request)
            voice = self.voices.voice(VoiceRef.parse(request.path_params["voice"]), account)
            engine_name = voice.engine if voice is not None else "stock"
            audio = await render_speech(self.voices.engine, self.voices.clock, SAMPLE_TEXT, voice, lang="en")
            return Response(encode_wav(audio, SAMPLE_RATE), media_type="audio/wav",
                            headers={"X-Voxroom-Engine": engine_name, "Cache-Control": "no-store"})
        return await self.server.guard(request, run)

    async def live(self, ws: WebSocket) -> None:
        """Live recording with coaching: JSON control frames, binary PCM16 16 kHz audio."""
        try:
            account = self.server.account(ws)
        except Exception as exc:
            await ws.close(code=4401, reason=str(exc)[:120])
            return
        await ws.accept()
        session = LiveEnrollment(self, account, ws)
        try:
            await session.run()
        except WebSocketDisconnect:
            pass


class LiveEnrollment:
    def __init__(self, api: VoicesAPI, account: Account, ws: WebSocket) -> None:
        self.api, self.account, self.ws = api, account, ws
        self.coach = LiveCoach()
        self.pcm = bytearray()
        self.lang = "en"
        self.msg_lang = "en"
        self.name = "my voice"
        self.sentences: list[str] = []
        self.read_up_to = -1
        self._level_at = 0

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(message, ensure_ascii=False))

    async def error(self, code: str, message: str) -> None:
        await self.send({"type": "error", "code": code, "message": message})

    async def run(self) -> None:
        started = False
        while True:
            received = await self.ws.receive()
            if received["type"] == "websocket.disconnect":
                return  # a vanished recorder leaves nothing behind: nothing was stored yet
            if received.get("bytes") is not None:
                if not started:
                    await self.error("not_started", "send {'type': 'start', ...} before audio")
                    continue
                await self.audio(received["bytes"])
                continue
            try:
                msg = protocol.loads_bounded(received.get("text") or "")
                kind = msg["type"]
            except (ValueError, KeyError, TypeError, RecursionError):
                await self.error("bad_message", "control messages are JSON objects with a 'type'")
                continue
            try:
                protocol.check_encodable(msg)  # a name with a lone surrogate could never be sealed or shown
            except protocol.ProtocolError as exc:
                await self.error(exc.code, exc.message)
                continue
            if kind == "start":
                lang = msg.get("lang", "en")
                if lang not in SCRIPTS or msg.get("consent") is not True:
                    await self.error("invalid_start", f"'lang' must be one of {sorted(SCRIPTS)} and 'consent' true: "
                                     + CONSENT_STATEMENT)
                    continue
                self.lang, self.name = lang, str(msg.get("name") or "my voice")[:80]
                ui = msg.get("ui")
                self.msg_lang = message_lang(ui if isinstance(ui, str) else None, lang)
                self.sentences = list(script_for(lang).sentences)
                self.coach, self.pcm, self.read_up_to, started = LiveCoach(), bytearray(), -1, True
            elif kind == "sentence" and started:
                index = msg.get("index")
                if not isinstance(index, int) or not 0 <= index < len(self.sentences):
                    await self.error("invalid_sentence", "'index' must be a sentence of the script")
                    continue
                self.read_up_to = max(self.read_up_to, index)
                for advice in self.coach.start_sentence(self.sentences[index], self.lang):
                    await self.advice(advice)
            elif kind == "cancel":
                self.pcm, started = bytearray(), False
                await self.send({"type": "cancelled"})
            elif kind == "finish" and started:
                for advice in self.coach.finish():
                    await self.advice(advice)
                started = not await self.finish()  # a busy server keeps the take for another `finish`
            else:
                await self.error("unknown_type", f"unexpected message {kind!r}")

    async def audio(self, data: bytes) -> None:
        if len(data) % 2:
            data = data[:-1]
        if len(self.pcm) + len(data) > MAX_LIVE_SECONDS * 16000 * 2:
            await self.error("too_long", f"a recording may be at most {MAX_LIVE_SECONDS // 60} minutes")
            return
        self.pcm += data
        update = self.coach.push(data)
        for advice in update.advice:
            await self.advice(advice)
        samples = len(self.pcm) // 2
        if samples - self._level_at >= 1600:  # a meter value every 100 ms of audio
            self._level_at = samples
            await self.send({"type": "level", "level": round(update.level, 3), "level_db": round(update.level_db, 1),
                             "speaking": update.speaking})

    async def advice(self, advice: Any) -> None:
        await self.send({"type": "advice", "code": advice.code,
                         "message": advice.message.get(self.msg_lang, advice.message["en"]),
                         "time": round(advice.time, 2)})

    async def finish(self) -> bool:
        """Analyse the take; False when the server was too busy and the take is kept."""
        pcm = from_pcm16(bytes(self.pcm))
        upload = encode_wav(pcm, 16000)
        read = self.sentences[: self.read_up_to + 1] if self.read_up_to >= 0 else None
        try:
            with self.api.voices.analyses.hold(self.account):
                analysis, record = await asyncio.to_thread(
                    self.api.voices.enroll_blocking, self.account, upload, filename="recording.wav", name=self.name,
                    lang=self.lang, sentences=read, transcript=None, live_advice=list(self.coach.given))
        except UploadError as exc:
            await self.error(exc.code, exc.message)
            return False
        except AudioDecodeError as exc:
            await self.error(exc.code, exc.message)
            return True
        except Exception:
            log.exception("live enrollment failed")
            await self.error("internal", "could not make a voice from this recording; nothing was kept")
            return True
        voice = self.api.voices.info(self.account, record) if record is not None else None
        self.pcm = bytearray()
        await self.send({"type": "result", "report": report_json(analysis, self.msg_lang), "voice": voice})
        return True
