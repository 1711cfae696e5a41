"""Hostile and broken uploads, made in memory: truncated, bit-mutated, decompression-bomb-like and
lying-header files. Deterministic (fixed seeds), so a failure names a file that can be made again."""

from __future__ import annotations

import functools
import io
import random
import struct

import av
import numpy as np

from voxroom.models.audio_decode import encode_wav


def wav_with_header(rate: int, *, channels: int = 1, bits: int = 16, data_len: int | None = None,
                    payload: bytes = b"\x01\x02" * 900) -> bytes:
    """A PCM WAV whose header says what we choose, whatever the payload is (1,844 bytes by default)."""
    block = channels * bits // 8
    declared = len(payload) if data_len is None else data_len
    fmt = struct.pack("<HHIIHH", 1, channels, rate & 0xFFFFFFFF, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", declared) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def encoded(fmt: str, codec: str, rate: int, seconds: float, layout: str = "mono", silent: bool = False) -> bytes:
    channels = {"mono": 1, "stereo": 2, "7.1": 8}[layout]
    n = int(rate * seconds)
    tone = np.zeros(n) if silent else 0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / rate)
    pcm = (tone * 32767).astype(np.int16)
    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        for start in range(0, n, 8192):
            block = np.repeat(pcm[None, start : start + 8192], channels, axis=0).reshape(1, -1, order="F")
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def _mutated(data: bytes, seed: int, flips: int, region: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(flips):
        out[rng.randrange(min(region, len(out)))] ^= 1 << rng.randrange(8)
    return bytes(out)


@functools.cache
def corpus() -> dict[str, bytes]:
    tone = 0.3 * np.sin(2 * np.pi * 180 * np.arange(16000 * 3) / 16000)
    wav = encode_wav(tone, 16000)
    mp3 = encoded("mp3", "mp3", 16000, 3)
    flac = encoded("flac", "flac", 16000, 3)
    files = {
        # lying headers
        "wav_1hz": wav_with_header(1),
        "wav_2ghz": wav_with_header(2_000_000_000),
        "wav_zero_channels": wav_with_header(16000, channels=0),
        "wav_255_channels": wav_with_header(16000, channels=255, payload=b"\x01\x02" * 9000),
        "wav_data_len_4gb": wav_with_header(16000, data_len=0xFFFFFFF0),
        # decompression-bomb-like: tiny files that unpack into a lot of audio
        "flac_silent_7.1_192k_60s": encoded("flac", "flac", 192000, 60, "7.1", silent=True),
        "flac_silent_mono_48k_20min": encoded("flac", "flac", 48000, 20 * 60, silent=True),
        # truncated
        "wav_10_bytes": wav[:10], "wav_header_only": wav[:44], "wav_half": wav[: len(wav) // 2],
        "mp3_half": mp3[: len(mp3) // 2], "flac_first_100": flac[:100],
    }
    for seed in range(3):
        files[f"wav_header_flips_{seed}"] = _mutated(wav, seed, 8, 44)
        files[f"mp3_flips_{seed}"] = _mutated(mp3, seed, 40, len(mp3))
        files[f"flac_flips_{seed}"] = _mutated(flac, seed, 20, 200)
    return files
