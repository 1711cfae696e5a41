"""PCM conversions, one helper each: float32 <-> little-endian int16, and stateful resampling.

Every part of voxroom that changes how audio is represented goes through here: the room's frame
maker, WebRTC's encoder input, the bot protocol's PCM16 frames, the host microphone's 16 kHz feed
and upload decoding. (GPT-SoVITS' speaker net keeps its own sinc resampler in `gpt_sovits/fbank.py`:
it reproduces the official numerics, which a model's golden outputs depend on.)
"""

from __future__ import annotations

import av
import numpy as np


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16 (clipped), the same shape."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")


def to_pcm16_bytes(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> little-endian int16 bytes."""
    return to_pcm16(samples).tobytes()


def from_pcm16(data: bytes | np.ndarray) -> np.ndarray:
    """Little-endian int16 (bytes or array) -> float32 in [-1, 1]."""
    ints = np.frombuffer(data, dtype="<i2") if isinstance(data, bytes | bytearray | memoryview) else data
    return np.asarray(ints, dtype=np.float32) / 32767.0


class Resampler:
    """Mono float32 at `input_rate` -> mono float32 at `output_rate`, stateful across calls (FFmpeg's
    swresample through PyAV), so the joins between chunks are seamless. `push(None)` drains the tail."""

    def __init__(self, input_rate: int, output_rate: int) -> None:
        self.input_rate = input_rate
        self.output_rate = output_rate
        self._resampler: av.AudioResampler | None = None
        if input_rate != output_rate:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=output_rate)
        self._pts = 0

    def push(self, samples: np.ndarray | None) -> np.ndarray:
        if self._resampler is None and self.input_rate == self.output_rate:
            return np.zeros(0, np.float32) if samples is None else np.asarray(samples, np.float32).reshape(-1)
        if self._resampler is None:  # input_rate 0: only push_frame has been fed; nothing to drain
            return np.zeros(0, np.float32)
        if samples is None:
            out = self._resampler.resample(None)
        else:
            samples = np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1)
            if samples.size == 0:
                return np.zeros(0, np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate = self.input_rate
            frame.pts = self._pts
            self._pts += samples.shape[1]
            out = self._resampler.resample(frame)
        parts = [f.to_ndarray().reshape(-1) for f in out]
        return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)

    def push_frame(self, frame: av.AudioFrame) -> np.ndarray:
        """A decoded PyAV frame of any layout and format (a WebRTC track's, a file's) -> mono float32."""
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.output_rate)
        parts = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
