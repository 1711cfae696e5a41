"""The GPT-SoVITS `Engine`: cloned-voice speech, streamed while the tokens are still coming.

    text ─► sentence pieces (official cut5) ─► per piece, on the caller's loop (frontend in a thread):
        frontend phones (+ BERT for zh) ─► a T2S session, submitted to the engine's T2SScheduler
                                              │ one worker thread decodes every stream's sessions as
                                              │ one batch (scheduler.py); each token, in that thread:
                                              ▼
                                 VocoderJob.push ─► the engine's VocoderStage (vocoder_stage.py): its
                                              │ one thread renders each stream's StreamingDecoder
                                              │ windows while the T2S goes on stepping
                                              ▼
                                 real-time gate (realtime.py) ─► 32 kHz audio
                                              │
        the caller's asyncio queue ◄──────────┘   (call_soon_threadsafe)  ─► AudioChunk to the caller

Each stream has its own seeded generators (T2S sampling, SoVITS noise), gate and decoder; no voice
state is shared. A piece ends when its last window has been handed over. At most
`max_batch` streams decode at once and `max_queue` wait for a slot; beyond that `stream()` raises
EngineBusy (a models.engine.Busy: the server answers 429 / `busy`). Closing the async iterator cancels
the stream's session, which leaves the batch before the scheduler's next step. Weights and caches
live on the engine's device (cpu or cuda, `devices.py`); voice prompts and audio stay on the CPU,
and seeded random draws are made there, so a seed gives the same draws on every device.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxroom.models.engine import AudioChunk, Busy, SynthesisError, Voice

from . import text as frontend
from .bert import BertFeatureExtractor, load_bert, zero_phone_features
from .devices import resolve_device
from .fbank import resample_sinc
from .hubert import HubertModel, load_hubert, reference_ssl_content
from .precision_choice import PrecisionChoice
from .precision_choice import choose as choose_precisions
from .realtime import PieceGate, RealtimeGate
from .scheduler import DEFAULT_MAX_BATCH, PRIORITY_STEPS, T2SScheduler, Utterance
from .sovits import SAMPLES_PER_TOKEN, SoVITSModel, Timbre, load_sovits
from .sovits_streaming import StreamingDecoder, StreamingSchedule
from .speaker_verification import ERes2NetV2, load_eres2netv2, v2pro_speaker_embedding
from .spectrogram import reference_spectrogram
from .t2s_generate import generate_stream
from .t2s_model import T2SModel, load_t2s
from .t2s_quantize import pack_weights, quantize_int8, to_dtype
from .vocoder_stage import StageClosed, VocoderJob, VocoderStage
from .voice_prompt import VoicePrompt

log = logging.getLogger(__name__)


def bf16_is_native() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX); without it, bf16 is emulated."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


SAMPLE_RATE = 32_000
MIN_REFERENCE_S, MAX_REFERENCE_S = 3.0, 10.0  # the official limits on a reference clip
ENGINE_NAME = "gpt-sovits"
_LANG_MODES = {"auto": "auto", "en": "en", "zh": "zh", "ja": "ja", "ko": "ko", "yue": "yue"}


@dataclass(frozen=True)
class SynthesisOptions:
    """Official sampling defaults (api_v2), plus our streaming schedule."""

    top_k: int = 15
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.35
    noise_scale: float = 0.5
    split_method: str = "cut5"
    pause_s: float = 0.3  # silence between sentence pieces (official fragment_interval)
    seed: int | None = None
    schedule: StreamingSchedule = StreamingSchedule()
    # Start a piece only once the rest can follow without a gap (realtime.py); off: first chunk at once.
    realtime_start: bool = True
    # Streams decoded together (scheduler slots), and streams that may wait for a slot; beyond both,
    # stream() raises EngineBusy (the server answers 429 / `busy`).
    max_batch: int = DEFAULT_MAX_BATCH
    max_queue: int = 8


class GPTSoVITSEngine:
    name = ENGINE_NAME
    can_clone = True
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        t2s: T2SModel,
        sovits: SoVITSModel,
        hubert: HubertModel,
        bert: BertFeatureExtractor | None = None,
        speaker: ERes2NetV2 | None = None,
        *,
        options: SynthesisOptions | None = None,
        precision: str | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        """precision None: fp16 on CUDA, fp32 on CPU. device: cpu, cuda, cuda:N or auto (see devices.py);
        every network and cache lives there, while voice prompts and audio stay on the CPU."""
        if sovits.config.is_pro and speaker is None:
            raise ValueError(f"SoVITS {sovits.config.version} needs the ERes2NetV2 speaker model")
        # int8 exists only on the CPU, so `auto` with int8 means the CPU rather than an error.
        self.device = resolve_device("cpu" if precision == "int8" and str(device) == "auto" else device)
        for network in (t2s, sovits, hubert, speaker, bert.model if bert is not None else None):
            if network is not None:
                network.to(self.device)
        self.t2s, self.sovits, self.hubert, self.bert, self.speaker = t2s, sovits, hubert, bert, speaker
        self.options = options or SynthesisOptions()
        self.version = sovits.config.version
        self.symbol_version = "v1" if sovits.config.version == "v1" else "v2"
        self._lock = threading.Lock()  # one voice prompt computation at a time
        # Synthesis goes through one T2S scheduler (scheduler.py), built for the current model.
        self._scheduler: T2SScheduler | None = None
        self._scheduler_lock = threading.Lock()
        self._open_streams = 0
        self._closed = False
        # SoVITS windows of every stream are rendered by one stage, off the scheduler's thread.
        self.vocoder = VocoderStage()
        self._frontend_lock = threading.Lock()
        # Learns how fast this machine makes audio; holds a piece's start when it could not keep up.
        self.realtime = RealtimeGate(SAMPLE_RATE)
        self.set_precision(precision or ("fp16" if self.device.type == "cuda" else "fp32"))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_files(
        cls,
        gpt: Path,
        sovits: Path,
        hubert_dir: Path,
        bert_dir: Path | None = None,
        speaker: Path | None = None,
        **kwargs: Any,
    ) -> GPTSoVITSEngine:
        """Load official files unchanged (each loader raises a clear error for a wrong file)."""
        sovits_model, info = load_sovits(sovits)
        log.info("loaded SoVITS %s (%s) from %s", info.model_version, info.info, sovits)
        return cls(
            load_t2s(gpt),
            sovits_model,
            load_hubert(hubert_dir),
            load_bert(bert_dir) if bert_dir is not None else None,
            load_eres2netv2(speaker) if speaker is not None and sovits_model.config.is_pro else None,
            **kwargs,
        )

    @classmethod
    def from_models_dir(cls, models_dir: Path, **kwargs: Any) -> GPTSoVITSEngine:
        """The best complete set `voxroom models pull` put in `models_dir`."""
        from voxroom.models.weights import best_installed

        found = best_installed(models_dir)
        model_set = found.model_set
        return cls.from_files(
            found.path(model_set.gpt),
            found.path(model_set.sovits),
            found.path("chinese-hubert-base"),
            found.path("chinese-roberta-wwm-ext-large"),
            found.path(model_set.speaker) if model_set.speaker else None,
            **kwargs,
        )

    def set_precision(self, precision: str) -> None:
        """fp32 (default on CPU: official numerics, weights prepacked for oneDNN), fp16 (the T2S in the
        checkpoint's own fp16 weights), bf16 (T2S and vocoder in bfloat16), int8 (dynamic-quantized
        T2S), or auto: each network's fastest here, timed now (precision_choice.py; a few seconds).
        bench/gpt_sovits.py prints each one's speed and drift against fp32."""
        if precision == "auto":
            choice = choose_precisions(self.t2s, self.sovits, bf16_native=self.device.type == "cpu" and bf16_is_native())
            log.info("precision auto: %s", choice.reason)
            self._convert_t2s(choice.t2s)
            if choice.sovits == "bf16":
                self.sovits.use_bf16_vocoder(True)
            self.precision_choice: PrecisionChoice | None = choice
            self.precision = f"auto: T2S {choice.t2s}, SoVITS {choice.sovits}"
            return
        if precision not in ("fp32", "fp16", "bf16", "int8"):
            raise ValueError(f"precision must be fp32, fp16, bf16, int8 or auto, not {precision!r}")
        if precision == "bf16":
            if self.device.type == "cpu" and not bf16_is_native():
                log.warning("bf16 on this CPU (%s) has no hardware bfloat16, so it runs several times slower "
                            "than fp32; prefer fp32, or int8 for speed", torch.backends.cpu.get_cpu_capability())
            self.sovits.use_bf16_vocoder(True)
        self._convert_t2s(precision)
        self.precision_choice = None
        self.precision = precision

    def _convert_t2s(self, precision: str) -> None:
        if precision == "fp32":
            pack_weights(self.t2s)  # a no-op off the CPU
        elif precision == "fp16":
            self.t2s = to_dtype(self.t2s, torch.float16)
        elif precision == "bf16":
            self.t2s = to_dtype(self.t2s, torch.bfloat16)
        elif precision == "int8":
            if self.device.type != "cpu":
                raise ValueError(f"int8 runs on the CPU only (torch's dynamic quantization), not on {self.device}")
            self.t2s = quantize_int8(self.t2s)

    def warm_up(self, languages: Sequence[str] = frontend.LANGUAGES) -> None:
        """Load the text dictionaries now (seconds for English) so the first speech is not slow."""
        frontend.preload(tuple(languages))

    # -- voices --------------------------------------------------------------------------------
    def prepare_voice(
        self,
        reference: np.ndarray,
        sample_rate: int,
        transcript: str = "",
        lang: str = "auto",
        aux_references: Sequence[tuple[np.ndarray, int]] = (),
    ) -> VoicePrompt:
        """Compute a voice's prompt once (blocking: seconds on a CPU; run it in a thread).

        `reference` is 3-10 s of mono speech; `transcript` what it says (empty: reference-free
        mode). Auxiliary references only add timbre (their embeddings are averaged in).
        """
        duration = len(reference) / sample_rate
        if not MIN_REFERENCE_S <= duration <= MAX_REFERENCE_S:
            raise SynthesisError(f"the reference clip must be 3-10 s of speech, not {duration:.1f} s")
        with self._lock, torch.inference_mode():
            wav = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))
            wav16 = resample_sinc(wav, sample_rate, 16_000)
            codes = self.sovits.extract_latent(reference_ssl_content(self.hubert, wav16.to(self.device))).cpu()
            specs, sv_embs = [], []
            for audio, rate in [(reference, sample_rate), *aux_references]:
                wav32 = resample_sinc(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), rate, SAMPLE_RATE)
                specs.append(reference_spectrogram(wav32).to(self.device))
                if self.speaker is not None:
                    peak = float(wav32.abs().max())
                    sv_in = wav32 / min(2.0, peak) if peak > 1.0 else wav32
                    sv_embs.append(v2pro_speaker_embedding(self.speaker, sv_in, SAMPLE_RATE))
            on_device = self.sovits.reference_embedding(specs, sv_embs or None)
            # Voice prompts are stored and serialized, so they hold CPU tensors whatever the device.
            timbre = Timbre(ge=on_device.ge.cpu(), ge_text=on_device.ge_text.cpu())
            transcript = transcript.strip()
            if transcript:
                if transcript[-1] not in "。.!?！？,，…~":
                    transcript += "." if lang == "en" else "。"
                phones, bert = self._phones_and_bert(transcript, lang)
                tokens: torch.Tensor | None = codes[0, 0].clone()
            else:
                phones, bert, tokens = torch.zeros(0, dtype=torch.long), zero_phone_features(0), None
        return VoicePrompt(self.version, tokens, phones, bert, timbre, transcript, lang)

    def _prompt_of(self, voice: Voice | None) -> VoicePrompt:
        if voice is None or voice.engine != self.name:
            raise SynthesisError("GPT-SoVITS speaks only with a cloned voice; this one has no prompt")
        prompt = voice.prompt
        if isinstance(prompt, bytes | bytearray):
            prompt = voice.prompt = VoicePrompt.from_bytes(bytes(prompt))  # decoded once, then cached
        if not isinstance(prompt, VoicePrompt):
            raise SynthesisError(f"voice {voice.name!r} has no GPT-SoVITS prompt yet")
        if prompt.model_version != self.version:
            raise SynthesisError(
                f"voice {voice.name!r} was prepared for SoVITS {prompt.model_version}, the server runs "
                f"{self.version}; re-create the voice from its recording"
            )
        return prompt

    # -- text ----------------------------------------------------------------------------------
    def _phones_and_bert(self, text: str, lang: str) -> tuple[torch.Tensor, torch.Tensor]:
        # One text at a time: the g2p libraries (pyopenjtalk, jieba's lazy dictionaries) were never
        # promised to be thread-safe, and streams now prepare their pieces concurrently.
        with self._frontend_lock:
            return self._phones_and_bert_unlocked(text, lang)

    def _phones_and_bert_unlocked(self, text: str, lang: str) -> tuple[torch.Tensor, torch.Tensor]:
        mode = _LANG_MODES.get(lang, "auto")
        ids: list[int] = []
        features: list[torch.Tensor] = []
        for chunk_lang, phones in frontend.mixed_text_to_phones(text, mode, self.symbol_version):
            ids += phones.ids
            if chunk_lang == "zh" and self.bert is not None and phones.word2ph is not None:
                features.append(self.bert.phone_features(phones.norm_text, phones.word2ph).cpu())
            else:
                features.append(zero_phone_features(len(phones.ids)))
        if not ids:
            raise SynthesisError("nothing speakable in this text")
        return torch.tensor(ids, dtype=torch.long), torch.cat(features, dim=1)

    def pieces(self, text: str, lang: str) -> list[str]:
        split_lang = "en" if lang == "en" else "zh"
        with self._frontend_lock:
            return [p for p in frontend.split_sentences(text, self.options.split_method, split_lang) if p.strip()]

    # -- synthesis -----------------------------------------------------------------------------
    @property
    def scheduler(self) -> T2SScheduler:
        """The one T2S scheduler of the current model (a new precision or max_batch makes a new one;
        anything still decoding on the old one fails with a SynthesisError)."""
        with self._scheduler_lock:
            old = current = self._scheduler
            if current is None or current.model is not self.t2s or current.max_batch != self.options.max_batch:
                # Running newcomers alone speeds their first audio where a step's cost grows with the
                # batch (CPUs); on a GPU a step of 1 costs about what a step of 16 does, so it would
                # only slow the others down.
                priority = 0 if self.device.type == "cuda" else PRIORITY_STEPS
                current = self._scheduler = T2SScheduler(self.t2s, max_batch=self.options.max_batch,
                                                         priority_steps=priority)
                if old is not None:
                    old.close(SynthesisError("the speech engine was reconfigured mid-sentence"))
            return current

    def kv_cache_bytes_per_stream(self) -> int:
        """KV-cache memory one speaking stream holds (its scheduler slot, at full capacity)."""
        return self.scheduler.bytes_per_slot()

    def close(self) -> None:
        """Stop both stages; every stream still speaking fails with a SynthesisError (none waits forever)."""
        reason = SynthesisError("the speech engine was closed")
        with self._scheduler_lock:
            self._closed = True
            scheduler = self._scheduler
        # The vocoder stage first: a piece starting meanwhile is then refused before it reaches the scheduler.
        self.vocoder.close(reason)
        if scheduler is not None:
            scheduler.close(reason)

    def _admit(self) -> None:
        """Count a new stream in, or refuse it: at most max_batch speaking plus max_queue waiting."""
        opts = self.options
        with self._scheduler_lock:
            if self._closed:
                raise SynthesisError("the speech engine was closed")
            if self._open_streams >= opts.max_batch + opts.max_queue:
                raise EngineBusy(
                    f"GPT-SoVITS is busy: {self._open_streams} streams are speaking or waiting "
                    f"(at most {opts.max_batch} at once and {opts.max_queue} in line); try again shortly"
                )
            self._open_streams += 1

    def _leave(self) -> None:
        with self._scheduler_lock:
            self._open_streams -= 1

    def synthesize_blocking(
        self,
        text: str,
        prompt: VoicePrompt,
        *,
        lang: str = "auto",
        speed: float = 1.0,
        emit: Callable[[np.ndarray, str], None],
        stop: threading.Event | None = None,
        queued_s: float = 0.0,
    ) -> None:
        """Synthesize `text`, calling `emit(audio_32k, piece)` (from the scheduler's thread) whenever
        audio is ready (`queued_s`: audio still playing before it, which the real-time start gate counts)."""
        stop = stop or threading.Event()
        self._admit()
        try:
            ended = threading.Event()
            failures: list[BaseException] = []

            def piece_done(error: BaseException | None) -> None:
                if error is not None:
                    failures.append(error)
                ended.set()

            speech = _Speech(self, prompt, speed, queued_s, emit, piece_done, stop)
            for n, piece in enumerate(self.pieces(text, lang)):
                phones, bert = self._phones_and_bert(piece, lang)
                ended.clear()
                speech.start_piece(n, piece, phones, bert)
                while not ended.wait(0.02):
                    if stop.is_set():
                        speech.stop()
                        return
                if failures:
                    speech.stop()
                    raise failures[0]
        finally:
            self._leave()

    async def stream(
        self, text: str, voice: Voice | None = None, *, lang: str = "auto", speed: float = 1.0,
        queued_s: float = 0.0,
    ) -> AsyncIterator[AudioChunk]:
        prompt = self._prompt_of(voice)
        if not 0.5 <= speed <= 2.0:
            raise SynthesisError("speed must be between 0.5 and 2.0")
        self._admit()
        loop = asyncio.get_running_loop()
        # Audio (with its piece), a piece's end (None), or its failure; put from the scheduler thread.
        queue: asyncio.Queue[tuple[np.ndarray, str] | BaseException | None] = asyncio.Queue()

        def emit(audio: np.ndarray, piece: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (audio.astype(np.float32, copy=False), piece))

        def piece_done(error: BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, error)

        speech: _Speech | None = None
        try:
            speech = _Speech(self, prompt, speed, queued_s, emit, piece_done, threading.Event())
            pieces = await asyncio.to_thread(self.pieces, text, lang)
            for n, piece in enumerate(pieces):
                try:
                    phones, bert = await asyncio.to_thread(self._phones_and_bert, piece, lang)
                    speech.start_piece(n, piece, phones, bert)
                except SynthesisError:
                    raise
                except ValueError as exc:  # e.g. a piece too long for a cache slot
                    raise SynthesisError(str(exc)) from exc
                while True:
                    item = await queue.get()
                    if item is None:
                        break
                    if isinstance(item, SynthesisError):
                        raise item
                    if isinstance(item, BaseException):
                        raise SynthesisError(f"GPT-SoVITS failed: {item}") from item
                    audio, label = item
                    yield AudioChunk(samples=audio, sample_rate=SAMPLE_RATE, text=label)
        finally:
            if speech is not None:
                speech.stop()  # frees its scheduler slot before the next step
            self._leave()


class EngineBusy(Busy):
    """Every T2S slot is taken and the line is full (SynthesisOptions.max_batch / max_queue)."""


class _Speech:
    """One stream's synthesis: its seeded generators, real-time gate and pieces. The caller starts
    each piece when the previous one has ended; its tokens arrive in the scheduler's thread, which
    passes them to the piece's job in the vocoder stage; that stage's thread decodes them to audio
    (StreamingDecoder), puts it through the gate and hands it on through `emit`."""

    def __init__(self, engine: GPTSoVITSEngine, prompt: VoicePrompt, speed: float, queued_s: float,
                 emit: Callable[[np.ndarray, str], None], piece_done: Callable[[BaseException | None], None],
                 stop: threading.Event) -> None:
        self.engine, self.prompt, self.speed = engine, prompt, speed
        self.emit, self.piece_done, self.stopped = emit, piece_done, stop
        opts = engine.options
        # A CPU generator on every device: the same seed then draws the same numbers on CPU and CUDA.
        self.generator = torch.Generator().manual_seed(opts.seed) if opts.seed is not None else None
        # SoVITS noise has a generator of its own, seeded from the first: T2S sampling and SoVITS run in
        # two threads, and each stream's draws must not depend on how the two interleave.
        self.noise_generator = None
        if self.generator is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            self.noise_generator = torch.Generator().manual_seed(seed)
        device = engine.device
        self.timbre = Timbre(ge=prompt.timbre.ge.to(device), ge_text=prompt.timbre.ge_text.to(device))
        self.label = ""
        self.utterance = engine.realtime.utterance(
            self._hand_over, queued_s, enabled=opts.realtime_start,
            chunk_plan=tuple(n * SAMPLES_PER_TOKEN for n in opts.schedule.emitted_tokens()))
        self.current: Utterance | None = None
        self.job: VocoderJob | None = None
        self.piece_gate: PieceGate | None = None  # the current piece's, until its audio has ended

    def _hand_over(self, audio: np.ndarray) -> None:
        self.emit(np.clip(audio, -1.0, 1.0), self.label)

    def start_piece(self, n: int, piece: str, phones: torch.Tensor, bert: torch.Tensor) -> None:
        engine, opts, prompt = self.engine, self.engine.options, self.prompt
        self.label = piece
        all_phones = torch.cat([prompt.prompt_phones, phones])
        all_bert = torch.cat([prompt.prompt_bert, bert], dim=1)
        with torch.inference_mode():
            session = generate_stream(
                engine.t2s, all_phones, all_bert, prompt.prompt_tokens, top_k=opts.top_k, top_p=opts.top_p,
                temperature=opts.temperature, repetition_penalty=opts.repetition_penalty, generator=self.generator,
            )
        decoder = StreamingDecoder(engine.sovits, phones, self.timbre, schedule=opts.schedule,
                                   noise_scale=opts.noise_scale, speed=self.speed, generator=self.noise_generator)
        if n:  # the previous piece has handed over its last audio, so nothing else touches the gate now
            self.utterance.hand_over(np.zeros(int(opts.pause_s * SAMPLE_RATE), dtype=np.float32))
        gate = self.piece_gate = self.utterance.piece(len(phones), self.speed)

        def audio_done(error: BaseException | None) -> None:  # in the vocoder stage's thread
            self.piece_gate = None
            try:
                if error is None:
                    gate.finish(complete=True)
                elif self.current is not None:
                    self.current.cancel()  # its audio failed: the T2S stops too
            finally:
                self.piece_done(error)

        try:
            # The first piece waits for its first audio; later ones follow audio already playing.
            job = self.job = engine.vocoder.open(decoder, deliver=gate.push, on_end=audio_done, first_audio=n == 0)
        except StageClosed as exc:
            raise SynthesisError("the speech engine was closed") from exc

        def on_step(token: int | None, finished: bool) -> None:  # in the scheduler's thread
            if token is not None:
                job.push(token)
            if finished:
                job.finish()

        def t2s_failed(error: BaseException) -> None:  # in the scheduler's thread
            job.cancel()
            self.piece_done(error)

        first = opts.schedule.first_chunk_tokens if n == 0 else 0
        # The T2S runs at most two full windows ahead of this piece's audio: tokens beyond that only
        # take CPU from windows that are due (here, and in every other stream).
        backlog_limit = 2 * opts.schedule.max_chunk_tokens + opts.schedule.lookahead_tokens
        self.current = engine.scheduler.submit(session, on_step=on_step, on_error=t2s_failed,
                                               first_audio_tokens=first,
                                               may_step=lambda: job.ended or job.backlog < backlog_limit)

    def stop(self) -> None:
        self.stopped.set()
        if self.current is not None:
            self.current.cancel()
        if self.job is not None:
            self.job.cancel()  # after this the stage delivers nothing more, so the gate is ours
        if self.piece_gate is not None:
            # A piece stopped mid-way still shows how fast this machine made its audio: the next
            # stream's gate can then start it without first waiting for a second chunk.
            self.piece_gate.finish(complete=False)
            self.piece_gate = None
