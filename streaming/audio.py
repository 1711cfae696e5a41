"""The one place engine audio becomes transport frames: 48 kHz mono, 20 ms (960 samples).

Engines speak at their own rate (Piper 22.05 kHz, GPT-SoVITS 32 kHz). `FrameMaker` resamples
(`models.pcm.Resampler`, stateful across chunks so joins are seamless) and cuts fixed 20 ms frames;
WebRTC (Opus) and the WebSocket protocol both carry exactly these frames.

`fade_out` / `ramp` are the playout's tools: an interrupted speech ends on one faded frame instead
of a hard cut, and a gain change (ducking) glides across one frame, so there is never a click.
"""

from __future__ import annotations

import numpy as np

from voxroom.models.pcm import Resampler

SAMPLE_RATE = 48_000
FRAME_MS = 20
FRAME_SECONDS = FRAME_MS / 1000
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 960
SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.float32)


class FrameMaker:
    """Resample a stream of mono float32 chunks at `input_rate` and cut 20 ms frames at 48 kHz.

    Feed chunks with `push`; call `flush` once at the end of an utterance to get the resampler's
    tail and the last partial frame, zero-padded.
    """

    def __init__(self, input_rate: int) -> None:
        self.input_rate = input_rate
        self._resampler = Resampler(input_rate, SAMPLE_RATE)
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if samples.size == 0:
            return []
        self._pending = np.concatenate([self._pending, self._resampler.push(samples)])
        return self._take_frames()

    def flush(self) -> list[np.ndarray]:
        self._pending = np.concatenate([self._pending, self._resampler.push(None)])
        frames = self._take_frames()
        if self._pending.size:
            last = np.zeros(FRAME_SAMPLES, dtype=np.float32)
            last[: self._pending.size] = self._pending
            frames.append(last)
            self._pending = np.zeros(0, dtype=np.float32)
        return frames

    def _take_frames(self) -> list[np.ndarray]:
        n = self._pending.size // FRAME_SAMPLES
        frames = [self._pending[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES].copy() for i in range(n)]
        self._pending = self._pending[n * FRAME_SAMPLES :]
        return frames


def output_length(input_samples: int, input_rate: int) -> int:
    """Samples at 48 kHz that `input_samples` at `input_rate` become (before padding to frames)."""
    return round(input_samples * SAMPLE_RATE / input_rate)


def fade_out(frame: np.ndarray) -> np.ndarray:
    """The frame with a raised-cosine fade to zero across its 20 ms: the last frame of a cut."""
    return ramp(frame, 1.0, 0.0)


def ramp(frame: np.ndarray, start: float, end: float) -> np.ndarray:
    """The frame with its gain gliding from `start` to `end` (raised cosine) across its length."""
    if start == end:
        return (frame * start).astype(np.float32) if start != 1.0 else frame
    shape = 0.5 * (1.0 - np.cos(np.linspace(0.0, np.pi, frame.size, dtype=np.float32)))
    return (frame * (start + (end - start) * shape)).astype(np.float32)
