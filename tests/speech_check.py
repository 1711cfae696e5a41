"""Checks that audio which went through the whole pipeline still says the words (pocketsphinx)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import av
import numpy as np
from websockets.asyncio.client import ClientConnection

from voxroom.models.pcm import from_pcm16
from voxroom.models.speech_recognition import PocketSphinx, word_error_rate

__all__ = ["as_sent", "collect_frames", "noise_ratio", "transcribe", "word_error_rate"]
from voxroom.streaming import protocol
from voxroom.streaming.audio import FrameMaker


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    frame = av.AudioFrame.from_ndarray(samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16)


def as_sent(chunks: list[np.ndarray], rate: int) -> np.ndarray:
    """What the server sends for these engine chunks: its one way to 48 kHz 20 ms frames, joined."""
    maker = FrameMaker(rate)
    frames = [frame for chunk in chunks for frame in maker.push(chunk)] + maker.flush()
    return np.concatenate(frames) if frames else np.zeros(0, np.float32)


def noise_ratio(got: np.ndarray, want: np.ndarray) -> float:
    """Energy of the difference over the energy of `want` (1e-4 is 40 dB SNR), on their common length."""
    n = min(got.size, want.size)
    diff = got[:n].astype(np.float64) - want[:n]
    return float(np.sum(diff**2) / max(float(np.sum(want[:n].astype(np.float64) ** 2)), 1e-12))


def transcribe(samples: np.ndarray, rate: int) -> str:
    return " ".join(w.text for w in PocketSphinx().words(from_pcm16(to_16k(samples, rate))))


async def collect_frames(ws: ClientConnection, speech_id: str, timeout: float = 30) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Messages about `speech_id` until it ends, and its audio frames (in order, none missing)."""
    messages: list[dict[str, Any]] = []
    frames: dict[int, np.ndarray] = {}
    async with asyncio.timeout(timeout):
        while True:
            data = await ws.recv()
            if isinstance(data, bytes):
                frame = protocol.decode_audio(data)
                assert frame.speech_id == speech_id
                frames[frame.seq] = from_pcm16(frame.pcm16)
                continue
            msg = json.loads(data)
            messages.append(msg)
            if msg["type"] == "speech.ended" and msg["id"] == speech_id:
                break
    first = min(frames, default=0)
    assert sorted(frames) == list(range(first, first + len(frames)))  # in order, none missing
    audio = np.concatenate([frames[i] for i in sorted(frames)]) if frames else np.zeros(0, np.float32)
    return messages, audio
