"""Framing and resampling: 48 kHz 20 ms frames, exact lengths, seamless across chunk joins."""

from __future__ import annotations

import numpy as np
import pytest

from voxroom.models.pcm import from_pcm16
from voxroom.models.pcm import to_pcm16_bytes as to_pcm16
from voxroom.streaming.audio import FRAME_SAMPLES, FrameMaker, fade_out, output_length


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * rate / x.size)


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 32000, 44100, 48000])
def test_frames_are_20ms_and_length_matches(rate: int) -> None:
    signal = tone(440, rate, 1.37)
    maker = FrameMaker(rate)
    frames = []
    for start in range(0, signal.size, 1234):  # odd chunk sizes, as engines produce
        frames += maker.push(signal[start : start + 1234])
    frames += maker.flush()
    assert all(f.shape == (FRAME_SAMPLES,) and f.dtype == np.float32 for f in frames)
    expected = output_length(signal.size, rate)
    assert len(frames) == -(-expected // FRAME_SAMPLES)  # whole frames, last one zero-padded


@pytest.mark.parametrize("rate", [22050, 32000])
def test_resampling_keeps_pitch_and_level_without_seams(rate: int) -> None:
    signal = tone(1000, rate, 1.0)
    maker = FrameMaker(rate)
    out = np.concatenate([f for i in range(0, signal.size, 777) for f in maker.push(signal[i : i + 777])] + maker.flush())
    body = out[4800:40000]
    assert abs(dominant_frequency(body, 48000) - 1000) < 3
    assert abs(np.sqrt(np.mean(body**2)) - 0.5 / np.sqrt(2)) < 0.01
    # a seam would show as a jump far larger than a 1 kHz sine's largest step at 48 kHz
    max_step = 0.5 * 2 * np.pi * 1000 / 48000
    assert np.max(np.abs(np.diff(body))) < max_step * 1.1


def test_fade_out_ends_at_silence_without_a_click() -> None:
    frame = np.full(FRAME_SAMPLES, 0.8, np.float32)
    faded = fade_out(frame)
    assert faded[0] == pytest.approx(0.8) and abs(faded[-1]) < 1e-6
    assert np.max(np.abs(np.diff(faded))) < 0.8 * np.pi / FRAME_SAMPLES * 1.01


def test_pcm16_round_trip_and_clipping() -> None:
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.7, -3.0], np.float32)
    y = from_pcm16(to_pcm16(x))
    assert np.allclose(y, np.clip(x, -1, 1), atol=1 / 32767)
    assert len(to_pcm16(x)) == 2 * x.size
