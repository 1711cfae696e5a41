"""The one place engine audio becomes transport frames: 48 kHz mono, 20 ms (960 samples).

Engines speak at their own rate (Piper 22.05 kHz, GPT-SoVITS 32 kHz). `FrameMaker` resamples with
PyAV (FFmpeg's swresample, stateful across chunks so joins are seamless) and cuts fixed 20 ms
frames; WebRTC (Opus) and the WebSocket protocol both carry exactly these frames.

`fade_out` is the cancellation path's tool: an interrupted speech ends on one faded frame instead
of a hard cut, so there is never a click.
"""

from __future__ import annotations

import av
import numpy as np

SAMPLE_RATE = 48_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 960
SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.float32)


class FrameMaker:
    """Resample a stream of mono float32 chunks at `input_rate` and cut 20 ms frames at 48 kHz.

    Feed chunks with `push`; call `flush` once at the end of an utterance to get the resampler's
    tail and the last partial frame, zero-padded.
    """

    def __init__(self, input_rate: int) -> None:
        self.input_rate = input_rate
        self._resampler: av.AudioResampler | None = None
        if input_rate != SAMPLE_RATE:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self._pending = np.zeros(0, dtype=np.float32)
        self._pts = 0

    def _resample(self, samples: np.ndarray | None) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.float32) if samples is None else samples
        if samples is None:
            out = self._resampler.resample(None)
        else:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = self.input_rate
            frame.pts = self._pts
            self._pts += len(samples)
            out = self._resampler.resample(frame)
        parts = [f.to_ndarray().reshape(-1) for f in out]
        return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if samples.size == 0:
            return []
        self._pending = np.concatenate([self._pending, self._resample(samples)])
        return self._take_frames()

    def flush(self) -> list[np.ndarray]:
        self._pending = np.concatenate([self._pending, self._resample(None)])
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
    ramp = 0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, frame.size, dtype=np.float32)))
    return (frame * ramp).astype(np.float32)


def to_pcm16(frame: np.ndarray) -> bytes:
    """float32 [-1, 1] -> little-endian int16 bytes."""
    return (np.clip(frame, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767.0
