"""Voice activity detection with the Silero VAD model shipped inside the silero-vad package.

The ONNX export is run directly with onnxruntime and numpy (no torch): it is about twice as fast
as the TorchScript model on one core and needs no torch threads. Two uses:

- `speech_segments(samples)`: speech spans of a whole recording (enrollment analysis);
- `StreamingVad`: push 16 kHz audio as it arrives, know at every 32 ms frame whether someone is
  speaking, with a hangover so short pauses between words do not end an utterance (the host
  microphone, live enrollment coaching).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import resources

import numpy as np

SAMPLE_RATE = 16000
FRAME = 512  # samples per model step at 16 kHz (32 ms); the model accepts nothing else
_CONTEXT = 64  # samples of the previous frame the model sees in front of each frame

_session_lock = threading.Lock()
_session = None


def _onnx_session():  # -> onnxruntime.InferenceSession, loaded once per process
    global _session
    with _session_lock:
        if _session is None:
            import onnxruntime

            opts = onnxruntime.SessionOptions()
            # One thread: the model is tiny and many sessions (rooms, uploads) share two cores.
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            path = resources.files("silero_vad.data").joinpath("silero_vad.onnx")
            _session = onnxruntime.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        return _session


class SileroModel:
    """One stream's model state: feed 512-sample frames in order, get a speech probability each."""

    def __init__(self) -> None:
        self._session = _onnx_session()
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros((1, _CONTEXT), np.float32)

    def __call__(self, frame: np.ndarray) -> float:
        x = np.concatenate([self._context, frame.reshape(1, FRAME).astype(np.float32, copy=False)], axis=1)
        out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = x[:, -_CONTEXT:]
        return float(out[0, 0])


def speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """Speech probability of each 32 ms frame of 16 kHz `samples` (the last partial frame is padded)."""
    model = SileroModel()
    n = -(-len(samples) // FRAME)
    padded = np.zeros(n * FRAME, np.float32)
    padded[: len(samples)] = samples
    frames = padded.reshape(n, FRAME)
    return np.array([model(f) for f in frames], dtype=np.float32)


@dataclass(frozen=True)
class SpeechSegment:
    """A span of speech, in samples at 16 kHz (end exclusive)."""

    start: int
    end: int

    @property
    def duration(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


def segments_from_probabilities(
    probs: np.ndarray,
    n_samples: int,
    *,
    threshold: float = 0.5,
    min_speech_s: float = 0.25,
    min_silence_s: float = 0.3,
    pad_s: float = 0.05,
) -> list[SpeechSegment]:
    """Turn per-frame probabilities into speech spans.

    Speech starts at `threshold` and only ends below `threshold - 0.15` (hysteresis keeps a span
    from flickering on soft consonants); pauses shorter than `min_silence_s` do not split it.
    """
    frame_s = FRAME / SAMPLE_RATE
    off = threshold - 0.15
    spans: list[list[int]] = []
    start = None
    quiet = 0
    for i, p in enumerate(probs):
        if start is None:
            if p >= threshold:
                start, quiet = i, 0
        elif p < off:
            quiet += 1
            if quiet * frame_s >= min_silence_s:
                spans.append([start, i - quiet + 1])
                start = None
        else:
            quiet = 0
    if start is not None:
        spans.append([start, len(probs) - quiet])
    pad = int(pad_s * SAMPLE_RATE)
    out: list[SpeechSegment] = []
    for a, b in spans:
        if (b - a) * frame_s < min_speech_s:
            continue
        s, e = max(0, a * FRAME - pad), min(n_samples, b * FRAME + pad)
        if out and s <= out[-1].end:
            out[-1] = SpeechSegment(out[-1].start, e)
        else:
            out.append(SpeechSegment(s, e))
    return out


def speech_segments(samples: np.ndarray, **options: float) -> list[SpeechSegment]:
    """Speech spans of a whole 16 kHz mono recording (options: see segments_from_probabilities)."""
    return segments_from_probabilities(speech_probabilities(samples), len(samples), **options)


@dataclass(frozen=True)
class VadEvent:
    kind: str  # "start" or "end" of speech
    time: float  # audio seconds since the stream began, at the frame that decided it


class StreamingVad:
    """Live speaking / not-speaking decisions for a 16 kHz stream pushed in chunks of any size.

    Speech starts after `start_frames` consecutive frames at or above `threshold` and ends after
    `hangover_s` below `threshold - 0.15`; each push returns the transitions it caused.
    """

    def __init__(self, *, threshold: float = 0.5, start_frames: int = 2, hangover_s: float = 0.4) -> None:
        self.threshold = threshold
        self.start_frames = start_frames
        self.hangover_frames = max(1, round(hangover_s * SAMPLE_RATE / FRAME))
        self._model = SileroModel()
        self._pending = np.zeros(0, np.float32)
        self.frames_seen = 0
        self.speaking = False
        self.probability = 0.0
        self._above = 0
        self._below = 0

    @property
    def time(self) -> float:
        """Audio seconds processed so far (whole frames)."""
        return self.frames_seen * FRAME / SAMPLE_RATE

    def reset(self) -> None:
        self._model.reset()
        self._pending = np.zeros(0, np.float32)
        self.speaking, self.probability, self._above, self._below = False, 0.0, 0, 0

    def push(self, samples: np.ndarray) -> list[VadEvent]:
        events: list[VadEvent] = []
        for frame in self._frames(samples):
            event = self.push_frame(frame)
            if event is not None:
                events.append(event)
        return events

    def push_frame(self, frame: np.ndarray) -> VadEvent | None:
        """One 512-sample frame; returns the transition it caused, if any."""
        p = self.probability = self._model(frame)
        self.frames_seen += 1
        if not self.speaking:
            self._above = self._above + 1 if p >= self.threshold else 0
            if self._above >= self.start_frames:
                self.speaking, self._below = True, 0
                return VadEvent("start", self.time)
        else:
            self._below = self._below + 1 if p < self.threshold - 0.15 else 0
            if self._below >= self.hangover_frames:
                self.speaking, self._above = False, 0
                return VadEvent("end", self.time)
        return None

    def _frames(self, samples: np.ndarray):
        buf = np.concatenate([self._pending, np.asarray(samples, np.float32).reshape(-1)])
        n = len(buf) // FRAME
        self._pending = buf[n * FRAME :]
        return buf[: n * FRAME].reshape(n, FRAME)
