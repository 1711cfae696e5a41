"""Speech recognition, to check what was actually said in an enrollment take, and word error rates.

English runs offline on pocketsphinx, whose US English model ships inside the package. Chinese,
Japanese, Korean and Cantonese use faster-whisper (the `asr` extra: CTranslate2, int8 on the CPU)
with the multilingual Whisper model that `voxroom models pull asr` puts in the models directory.
faster-whisper rather than FunASR: one model covers all four languages (FunASR's Paraformer, which
the official GPT-SoVITS tools use, is Chinese only and they switch to faster-whisper for the
others), it gives word times, and it needs two small wheels instead of FunASR's stack. Without
the package or the model, `recognizer_for` returns None and callers must say the words are
unverified. Audio is 16 kHz mono float32.

Recognition runs in one worker process of its own, at the lowest CPU priority: pocketsphinx holds
the GIL for the whole of a decode (16 s for 54 s of speech on a 2-core Zen 4, during which a
thread of the same process ran 10 times instead of ~15,000), which in the server's process would
stop every room's pacer; and a process of its own lets the system give the rooms the CPU first.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voxroom.models.pcm import to_pcm16_bytes

SAMPLE_RATE = 16000
ASR_REPO = "Systran/faster-whisper-small"  # CTranslate2 conversion of openai/whisper-small (MIT)
ASR_DIR = "faster-whisper-small"  # under the models directory
ASR_FILES = ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt")
WHISPER_LANGS = {"zh": "zh", "ja": "ja", "ko": "ko", "yue": "zh"}  # whisper-small has no Cantonese token


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds into the audio given
    end: float


class Recognizer(Protocol):
    name: str

    def words(self, samples: np.ndarray) -> list[Word]:
        """The words heard in 16 kHz mono `samples`, with their times."""
        ...


class PocketSphinx:
    """US English, pocketsphinx's own acoustic model, dictionary and language model."""

    name = "pocketsphinx"
    _FRAMES_PER_S = 100

    def words(self, samples: np.ndarray) -> list[Word]:
        return recognize(_pocketsphinx_words, to_pcm16_bytes(samples))


def _pocketsphinx_words(pcm16: bytes) -> list[Word]:
    """In the recognition process."""
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")  # one per call: decoders are not thread-safe
    decoder.start_utt()
    decoder.process_raw(pcm16, full_utt=True)
    decoder.end_utt()
    out = []
    for seg in decoder.seg():
        word = re.sub(r"\(\d+\)$", "", seg.word)  # "the(2)": an alternative pronunciation
        if re.fullmatch(r"[a-z0-9']+", word):  # not <s>, <sil>, [NOISE] and other fillers
            out.append(Word(word, seg.start_frame / PocketSphinx._FRAMES_PER_S, seg.end_frame / PocketSphinx._FRAMES_PER_S))
    return out


def _lowest_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(19)


_process: ProcessPoolExecutor | None = None
_process_lock = threading.Lock()


class RecognitionFailed(RuntimeError):
    """The recognition process died mid-job (killed, out of memory): the words stay unverified."""


def _recognition_process() -> ProcessPoolExecutor:
    """The one recognition worker process (started on first use, again after one died; stopped at exit)."""
    global _process
    with _process_lock:
        if _process is None:
            _process = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_lowest_priority)
            atexit.register(_process.shutdown, cancel_futures=True)
        return _process


def recognize(fn: Callable[..., list[Word]], *args: Any) -> list[Word]:
    """`fn(*args)` in the recognition process. RecognitionFailed when that process died; the next
    call starts a new one (a broken pool would refuse every later job)."""
    global _process
    pool = _recognition_process()
    try:
        return pool.submit(fn, *args).result()
    except BrokenProcessPool as exc:
        with _process_lock:
            if _process is pool:
                _process = None
        pool.shutdown(wait=False, cancel_futures=True)
        raise RecognitionFailed(f"the speech recognition process stopped: {exc}") from None


class FasterWhisper:
    """Whisper through CTranslate2, for the languages pocketsphinx has no model for."""

    name = "faster-whisper"

    def __init__(self, model_dir: Path, lang: str) -> None:
        self._model_dir = str(model_dir)
        self._lang = WHISPER_LANGS[lang]

    def words(self, samples: np.ndarray) -> list[Word]:
        samples = np.asarray(samples, np.float32)
        return recognize(_whisper_words, self._model_dir, self._lang, samples)


def _whisper_words(model_dir: str, lang: str, samples: np.ndarray) -> list[Word]:
    """In the recognition process (one transcription at a time: it uses every thread it has)."""
    segments, _ = _whisper_model(model_dir).transcribe(samples, language=lang, beam_size=5, word_timestamps=True,
                                                       condition_on_previous_text=False)
    return [Word(w.word.strip(), float(w.start), float(w.end)) for s in segments for w in (s.words or [])]


@cache
def _whisper_model(path: str) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(path, device="cpu", compute_type="int8")


def asr_model_dir(models_dir: Path) -> Path:
    return models_dir / ASR_DIR


def recognizer_for(lang: str, models_dir: Path | None = None) -> Recognizer | None:
    """The recognizer for `lang`, or None when none is installed (the words then stay unverified)."""
    base = lang.split("-")[0].lower()
    if base == "en":
        try:
            import pocketsphinx  # noqa: F401
        except ImportError:
            return None
        return PocketSphinx()
    if base in WHISPER_LANGS and models_dir is not None:
        path = asr_model_dir(models_dir)
        if all((path / name).is_file() for name in ASR_FILES):
            try:
                import faster_whisper  # noqa: F401
            except ImportError:
                return None
            return FasterWhisper(path, base)
    return None


def tokens(text: str, lang: str = "en") -> list[str]:
    """What word error rates count: lower-case words for English (hyphens split, punctuation gone),
    single characters for Chinese, Japanese, Korean and Cantonese (their word spacing varies)."""
    if lang.split("-")[0].lower() in ("zh", "ja", "ko", "yue"):
        return re.findall(r"[^\W_]", text.lower())
    return re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))


def _edit_table(reference: list[str], hypothesis: list[str]) -> list[list[int]]:
    """cost[i][j]: edits turning the first i reference tokens into the first j hypothesis tokens."""
    cost = [list(range(len(hypothesis) + 1))]
    for i, r in enumerate(reference, 1):
        row = [i]
        for j, h in enumerate(hypothesis, 1):
            row.append(min(cost[i - 1][j] + 1, row[j - 1] + 1, cost[i - 1][j - 1] + (r != h)))
        cost.append(row)
    return cost


def alignment(reference: list[str], hypothesis: list[str]) -> list[int | None]:
    """For each reference token, the index of the hypothesis token it was heard as (equal tokens only),
    or None; from the edit-distance alignment (substitution, insertion and deletion cost 1)."""
    cost = _edit_table(reference, hypothesis)
    matched: list[int | None] = [None] * len(reference)
    i, j = len(reference), len(hypothesis)
    while i > 0 and j > 0:  # among equally short paths, prefer the one with the most matches
        if reference[i - 1] == hypothesis[j - 1] and cost[i][j] == cost[i - 1][j - 1]:
            matched[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif cost[i][j] == cost[i][j - 1] + 1:
            j -= 1
        elif cost[i][j] == cost[i - 1][j] + 1:
            i -= 1
        else:
            i, j = i - 1, j - 1
    return matched


def word_error_rate(reference: str, hypothesis: str, lang: str = "en") -> float:
    """(substitutions + deletions + insertions) / reference tokens; characters for zh/ja/ko/yue."""
    ref, hyp = tokens(reference, lang), tokens(hypothesis, lang)
    return _edit_table(ref, hyp)[len(ref)][len(hyp)] / max(1, len(ref))
