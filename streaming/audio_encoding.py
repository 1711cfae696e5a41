"""Response bodies for the HTTP speech APIs: 48 kHz frames in, encoded bytes out, chunk by chunk.

Each `StreamEncoder` takes the playout's float32 48 kHz mono frames as they arrive and returns the
bytes ready to send, so a body can leave while the rest is still being synthesized. Containers and
codecs come from PyAV (FFmpeg); WAV and raw PCM are written directly (a streamed WAV header cannot
know the length, so it carries the largest sizes, as streaming TTS services do).
"""

from __future__ import annotations

import struct
from typing import Protocol, cast

import av
import numpy as np
from av.audio.stream import AudioStream

from voxroom.models.pcm import Resampler, to_pcm16_bytes
from voxroom.streaming.audio import SAMPLE_RATE

# container, codec, sample rate override (None: the caller's rate), content type
_CODECS: dict[str, tuple[str, str, int | None, str]] = {
    "mp3": ("mp3", "libmp3lame", None, "audio/mpeg"),
    "opus": ("ogg", "libopus", 48_000, "audio/ogg"),  # Opus runs at 48 kHz (or 24/16/12/8)
    "ogg": ("ogg", "libopus", 48_000, "audio/ogg"),  # FFmpeg's own Vorbis encoder is stereo-only
    "aac": ("adts", "aac", None, "audio/aac"),
    "flac": ("flac", "flac", None, "audio/flac"),
}
CONTENT_TYPES = {**{name: spec[3] for name, spec in _CODECS.items()}, "wav": "audio/wav", "pcm": "audio/pcm",
                 "raw": "audio/raw"}
ENCODINGS = frozenset(CONTENT_TYPES)


class StreamEncoder(Protocol):
    content_type: str
    sample_rate: int

    def push(self, frame: np.ndarray) -> bytes:
        """One 48 kHz float32 frame in; whatever encoded bytes are ready out (often b'')."""
        ...

    def close(self) -> bytes:
        """The tail: flushed resampler and codec, container trailer."""
        ...


def wav_header(sample_rate: int, data_bytes: int | None = None) -> bytes:
    """A 44-byte PCM16 mono WAV header; `data_bytes` None = unknown length (the largest sizes)."""
    data = 0xFFFFFFFF - 36 if data_bytes is None else data_bytes
    return (b"RIFF" + struct.pack("<I", min(0xFFFFFFFF, 36 + data)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", data))


class PcmEncoder:
    """Raw little-endian PCM16 mono at `sample_rate`, optionally after a streamed WAV header."""

    def __init__(self, sample_rate: int, *, wav: bool = False, content_type: str = "audio/pcm") -> None:
        self.sample_rate = sample_rate
        self.content_type = "audio/wav" if wav else content_type
        self._resampler = Resampler(SAMPLE_RATE, sample_rate)
        self._header = wav_header(sample_rate) if wav else b""

    def push(self, frame: np.ndarray) -> bytes:
        out, self._header = self._header + to_pcm16_bytes(self._resampler.push(frame)), b""
        return out

    def close(self) -> bytes:
        out, self._header = self._header + to_pcm16_bytes(self._resampler.push(None)), b""
        return out


class _Sink:
    """The write-only file PyAV's muxer writes into; its bytes are taken after every packet."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self.buffer)
        self.buffer.clear()
        return out


class CodecEncoder:
    """A compressed format through PyAV: resample, encode, mux, and hand back what the muxer wrote."""

    def __init__(self, encoding: str, sample_rate: int) -> None:
        container, codec, rate, self.content_type = _CODECS[encoding]
        self.sample_rate = rate or sample_rate
        self._sink = _Sink()
        self._output = av.open(self._sink, mode="w", format=container)
        self._stream = cast(AudioStream, self._output.add_stream(codec, rate=self.sample_rate))
        self._stream.layout = "mono"
        self._resampler = Resampler(SAMPLE_RATE, self.sample_rate)
        self._codec_resampler = av.AudioResampler(format=self._stream.codec_context.format,
                                                  layout="mono", rate=self.sample_rate)
        self._pts = 0
        self._closed = False

    def _encode(self, samples: np.ndarray | None) -> bytes:
        frames: list[av.AudioFrame | None] = []
        if samples is not None and samples.size:
            raw = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32).reshape(1, -1),
                                             format="flt", layout="mono")
            raw.sample_rate = self.sample_rate
            raw.pts = self._pts
            self._pts += samples.size
            frames.extend(self._codec_resampler.resample(raw))
        elif samples is None:
            frames.extend(self._codec_resampler.resample(None))
            frames.append(None)  # flush the codec
        for item in frames:
            for packet in self._stream.encode(item):
                self._output.mux(packet)
        return self._sink.take()

    def push(self, frame: np.ndarray) -> bytes:
        return self._encode(self._resampler.push(frame))

    def close(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        out = self._encode(self._resampler.push(None)) + self._encode(None)
        self._output.close()
        return out + self._sink.take()


def encoder_for(encoding: str, sample_rate: int) -> StreamEncoder:
    """The encoder for `encoding` (mp3, opus, ogg, aac, flac, wav, pcm, raw) at `sample_rate`."""
    if encoding in ("pcm", "raw"):
        return PcmEncoder(sample_rate, content_type=CONTENT_TYPES[encoding])
    if encoding == "wav":
        return PcmEncoder(sample_rate, wav=True)
    if encoding in _CODECS:
        return CodecEncoder(encoding, sample_rate)
    raise ValueError(f"unknown audio encoding {encoding!r}")
