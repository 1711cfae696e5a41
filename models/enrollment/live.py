"""Live coaching while someone records their enrollment: advice within half a second of a problem.

The browser streams the microphone to the server in small PCM chunks; `LiveCoach.push` returns a
level-meter value and any advice events the chunk caused ("too quiet", "clipping", "background
noise"); `start_sentence` (the console moved to the next script sentence) returns the pace advice
("speak a little slower") for the sentence just read, since pace can only be judged on a whole one. Work per 32 ms frame is a few numpy reductions and one Silero
VAD step (~0.1 ms), so one coach per recording costs next to nothing. Time is audio time (samples
pushed), never the wall clock, so tests are exact and a slow network does not fake silence.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from voxroom.models.enrollment.messages import advice
from voxroom.models.enrollment.scripts import expected_seconds
from voxroom.models.pcm import from_pcm16
from voxroom.models.vad import FRAME, SAMPLE_RATE, StreamingVad

FRAME_S = FRAME / SAMPLE_RATE
QUIET_DB = -40.0  # speech below this level (frame RMS) is too quiet to clone well
NOISE_SNR_DB = 20.0  # speech less than this far above the pauses is too noisy
NOISE_FLOOR_DB = -38.0  # pauses this loud are noise whatever the speech level
BABBLE_FLOOR_REL_DB = -22.0  # quietest frame of 1.5 s against the speech level (clean reading: < -25)
HF_FLOOR_REL_DB = -36.0  # 4-8 kHz floor against the speech level (white noise at ~22 dB SNR)
# Pace: a sentence's expected reading time (scripts.expected_seconds) over the speech it took.
FAST_PACE, SLOW_PACE = 1.35, 0.6
COOLDOWN_S = 4.0  # the same advice is not repeated sooner than this


@dataclass(frozen=True)
class Advice:
    code: str  # messages.CATALOGUE key: too_quiet, clipping, noise, too_fast
    message: dict[str, str]  # {"en": ..., "zh": ...}
    time: float  # audio seconds since the recording started, at the end of the frame that decided it
    value: float = 0.0  # the measurement behind it (dBFS, clipped %, SNR dB or pace ratio)


@dataclass
class CoachUpdate:
    level: float  # 0..1 meter value (peak level, -60..0 dBFS, fast attack and slow release)
    level_db: float
    speaking: bool
    advice: list[Advice] = field(default_factory=list)


_WINDOW = np.hanning(FRAME)
_HF_BIN = 128  # 4 kHz in a 512-point spectrum at 16 kHz


class LiveCoach:
    """Push 16 kHz mono PCM (float32 in [-1, 1], or int16 bytes) as it arrives; read the advice."""

    def __init__(self, *, cooldown_s: float = COOLDOWN_S) -> None:
        self.cooldown_s = cooldown_s
        self.vad = StreamingVad(start_frames=1, hangover_s=0.25)
        self._pending = np.zeros(0, np.float32)
        self.frames = 0
        self._meter_db = -60.0
        self._hf: deque[float] = deque(maxlen=int(0.4 / FRAME_S))  # 4-8 kHz level, for the floor between syllables
        self._levels: deque[float] = deque(maxlen=int(1.5 / FRAME_S))  # frame levels, for the babble floor
        self._recent: deque[tuple[float, bool]] = deque(maxlen=int(1.0 / FRAME_S))  # (level, is a pause)
        self._speech_levels: deque[float] = deque(maxlen=int(3.0 / FRAME_S))  # frames surely speech
        self._noise_db = -100.0
        self._sentence_expected: float | None = None
        self._sentence_frames = 0
        self.last_pace: float | None = None  # expected / actual reading time of the last judged sentence
        self._clip_frames: deque[bool] = deque(maxlen=int(0.5 / FRAME_S))
        self._noisy_frames = 0
        self._last: dict[str, float] = {}
        self.given: list[Advice] = []  # every piece of advice so far: the final report repeats it

    @property
    def time(self) -> float:
        return self.frames * FRAME_S

    def push(self, pcm: np.ndarray | bytes) -> CoachUpdate:
        if isinstance(pcm, bytes | bytearray | memoryview):
            x = from_pcm16(bytes(pcm))
        else:
            x = np.asarray(pcm, np.float32).reshape(-1)
        buf = np.concatenate([self._pending, x])
        n = len(buf) // FRAME
        self._pending = buf[n * FRAME :]
        events: list[Advice] = []
        for frame in buf[: n * FRAME].reshape(n, FRAME):
            events += self._frame(frame)
        return CoachUpdate(
            level=(self._meter_db + 60.0) / 60.0, level_db=self._meter_db, speaking=self.vad.speaking, advice=events
        )

    def _frame(self, frame: np.ndarray) -> list[Advice]:
        self.vad.push_frame(frame)
        self.frames += 1
        f64 = frame.astype(np.float64)
        rms_db = float(10 * np.log10(np.mean(f64**2) + 1e-10))
        spectrum = np.abs(np.fft.rfft(f64 * _WINDOW)) ** 2
        hf_db = float(10 * np.log10(spectrum[_HF_BIN:].sum() / FRAME**2 + 1e-12))
        peak = float(np.abs(frame).max())
        peak_db = max(-60.0, 20 * np.log10(peak + 1e-10))
        # Meter: jump up at once, fall 20 dB per second, like a hardware peak meter.
        self._meter_db = max(peak_db, self._meter_db - 20.0 * FRAME_S)
        p = self.vad.probability
        speech = p >= 0.7  # frames that are surely speech (the VAD's hangover frames are not)
        self._hf.append(hf_db)
        self._levels.append(rms_db)
        self._recent.append((rms_db, p < 0.3))
        if speech:
            self._speech_levels.append(rms_db)
        near = np.abs(frame) >= 0.99
        self._clip_frames.append(bool((near[:-2] & near[1:-1] & near[2:]).any()))

        out: list[Advice] = []
        # Clipping: three frames with a flattened top within half a second (one or two can be a plosive).
        if sum(self._clip_frames) >= 3:
            out += self._emit("clipping", clipped_pct=100 * float(near.mean()))
        speech_ref = float(np.percentile(self._speech_levels, 90)) if len(self._speech_levels) >= 5 else -20.0
        # Too quiet: the loud part of the last ~0.4 s of speech (VAD keeps the breath after a phrase as speech) is still under the threshold.
        if speech and len(self._speech_levels) >= 12:
            recent = np.array(list(self._speech_levels)[-12:])
            if np.percentile(recent, 90) < QUIET_DB:
                out += self._emit("too_quiet", level_db=float(recent.mean()))
        if self._noisy(speech_ref):
            self._noisy_frames += 1
            if self._noisy_frames >= 2:
                out += self._emit("noise", snr_db=speech_ref - self._noise_db)
        else:
            self._noisy_frames = 0
        if p >= 0.5:
            self._sentence_frames += 1
        return out

    def _noisy(self, speech_ref: float) -> bool:
        """Broadband noise shows between syllables as a high-frequency floor that speech never has (its
        4-8 kHz energy drops in every vowel); other noise shows in the pauses."""
        if len(self._hf) == self._hf.maxlen:
            hf_floor = sorted(self._hf)[1]
            if hf_floor - speech_ref > HF_FLOOR_REL_DB:
                self._noise_db = hf_floor
                return True
        pauses = [db for db, is_pause in self._recent if is_pause]
        if len(pauses) >= 4:
            self._noise_db = float(np.median(pauses[-8:]))
            return self._noise_db > NOISE_FLOOR_DB or speech_ref - self._noise_db < NOISE_SNR_DB
        # Other voices (babble) keep the VAD saying "speech" through the pauses; a reader alone still dips
        # far below their own level within 1.5 s, a reader over a crowd does not.
        if len(self._levels) == self._levels.maxlen and len(self._speech_levels) >= 15:
            floor = min(self._levels)
            if floor - speech_ref > BABBLE_FLOOR_REL_DB:
                self._noise_db = floor
                return True
        return False

    def start_sentence(self, text: str, lang: str = "en") -> list[Advice]:
        """The console now shows `text`: speech from here on reads it. Returns the pace advice for the
        sentence before it, which is complete now (pace needs a whole sentence to judge fairly)."""
        out = self._judge_pace()
        self._sentence_expected = expected_seconds(text, lang)
        self._sentence_frames = 0
        return out

    def finish(self) -> list[Advice]:
        """The recording ended: judge the last sentence's pace."""
        out = self._judge_pace()
        self._sentence_expected = None
        return out

    def _judge_pace(self) -> list[Advice]:
        if not self._sentence_expected:
            return []
        spoken = self._sentence_frames * FRAME_S
        if spoken < 0.5:
            return []  # skipped or not read: nothing to judge
        ratio = self._sentence_expected / spoken
        self.last_pace = ratio
        if ratio > FAST_PACE:
            return self._emit("too_fast", ratio=ratio)
        if ratio < SLOW_PACE:
            return self._emit("too_slow", ratio=ratio)
        return []

    def _emit(self, code: str, **values: float) -> list[Advice]:
        last = self._last.get(code)
        if last is not None and self.time - last < self.cooldown_s:
            return []
        self._last[code] = self.time
        value = next(iter(values.values()), 0.0)
        given = Advice(code, {lang: advice(code, lang, **values) for lang in ("en", "zh")}, self.time, value)
        self.given.append(given)
        return [given]
