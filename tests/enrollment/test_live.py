"""Live coaching on audio time: each problem gets its advice within half a second, clean audio gets none."""

from __future__ import annotations

import numpy as np
import pytest

from tests.enrollment import recordings as r
from voxroom.models.enrollment.live import LiveCoach
from voxroom.models.vad import FRAME, speech_probabilities

RATE = r.RATE
CHUNK = 320  # 20 ms, what a browser sends


def _feed(coach: LiveCoach, x: np.ndarray) -> list[tuple[str, float]]:
    events = []
    for i in range(0, len(x), CHUNK):
        events += [(a.code, a.time) for a in coach.push(x[i : i + CHUNK]).advice]
    return events


def _readings(name: str, n: int) -> tuple[np.ndarray, int]:
    """n readings of one recording with 0.4 s pauses; returns (audio, samples per reading)."""
    clip = r.load(name)
    gap = np.zeros(int(0.4 * RATE), np.float32)
    return np.concatenate([np.concatenate([clip, gap]) for _ in range(n)]), len(clip) + len(gap)


@pytest.mark.parametrize("name", r.ALL)
def test_clean_reading_gets_no_advice(name: str) -> None:
    r.need_speech()
    x = r.one_speaker(name, 20)
    assert _feed(LiveCoach(), x) == []


def test_clipping_is_reported_within_half_a_second() -> None:
    r.need_speech()
    x, _ = _readings(r.CODEC2, 2)
    onset = 12 * RATE
    x[onset:] = r.hard_clip(x[onset:], 12)
    first_clipped = onset + int(np.argmax(np.abs(x[onset:]) >= 0.99))
    events = _feed(LiveCoach(), x)
    assert events and events[0][0] == "clipping"
    assert 0 <= events[0][1] - first_clipped / RATE <= 0.5


def test_too_quiet_is_reported_within_half_a_second_of_speech() -> None:
    r.need_speech()
    x, _ = _readings(r.AWB, 2)
    x = r.quiet(x, -30)  # someone speaking far from the microphone from the start
    probs = speech_probabilities(x)
    speech_start = int(np.argmax(probs >= 0.5)) * FRAME / RATE  # the first moment speech is there to hear
    events = _feed(LiveCoach(), x)
    assert events and events[0][0] == "too_quiet"
    assert 0 <= events[0][1] - speech_start <= 0.5


def test_sudden_drop_in_level_is_reported() -> None:
    r.need_speech()
    x, per = _readings(r.AWB, 4)
    x[2 * per :] = r.quiet(x[2 * per :], -30)
    events = _feed(LiveCoach(), x)
    # The VAD needs ~0.5 s to accept speech 30 dB softer than what it just heard, so this is slower.
    assert events and events[0][0] == "too_quiet" and 0 <= events[0][1] - 2 * per / RATE <= 1.5


def test_background_noise_is_reported_within_half_a_second_even_mid_sentence() -> None:
    r.need_speech()
    x, _ = _readings(r.CODEC2, 2)
    onset = int(5.0 * RATE)  # in the middle of a sentence
    x[onset:] = r.add_noise(x, 12)[onset:]
    events = _feed(LiveCoach(), x)
    assert events and events[0][0] == "noise"
    assert 0 <= events[0][1] - onset / RATE <= 0.5


def test_babble_is_reported_within_a_few_seconds() -> None:
    r.need_speech()
    x, _ = _readings(r.CODEC2, 2)
    onset = int(5.0 * RATE)
    x[onset:] = r.add_babble(x, 10)[onset:]
    events = _feed(LiveCoach(), x)
    # Other voices keep the VAD saying "speech" through the pauses, so only a 1.5 s floor shows them.
    assert events and events[0][0] == "noise"
    assert 0 <= events[0][1] - onset / RATE <= 3.0


def test_advice_is_not_repeated_during_the_cooldown() -> None:
    r.need_speech()
    x = r.hard_clip(r.one_speaker(r.CODEC2, 10), 12)
    times = [t for code, t in _feed(LiveCoach(cooldown_s=4.0), x) if code == "clipping"]
    assert len(times) >= 2 and all(b - a >= 4.0 for a, b in zip(times, times[1:], strict=False))


def test_pace_is_judged_per_sentence() -> None:
    r.need_speech()
    clip = r.load(r.AWB)
    text = "And you always want to see it in the superlative degree."
    fast = np.interp(np.arange(0, len(clip), 1.7), np.arange(len(clip)), clip).astype(np.float32)
    coach = LiveCoach()
    assert coach.start_sentence(text) == []
    _feed(coach, clip)
    assert coach.start_sentence(text) == []  # normal pace: nothing to say
    _feed(coach, fast)
    advice = coach.start_sentence(text)
    assert [a.code for a in advice] == ["too_fast"] and "slower" in advice[0].message["en"]
    _feed(coach, np.zeros(RATE, np.float32))
    assert coach.finish() == []  # a sentence that was not read is not judged


def test_level_meter_and_int16_input() -> None:
    coach = LiveCoach()
    t = np.arange(RATE // 2) / RATE
    loud = (0.5 * np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2").tobytes()
    update = coach.push(loud)
    assert update.level_db == pytest.approx(20 * np.log10(0.5), abs=0.5)
    assert 0.8 < update.level < 1.0
    quiet = coach.push(np.zeros(RATE // 2, np.float32))
    assert quiet.level_db == pytest.approx(update.level_db - 10.0, abs=0.7)  # falls 20 dB/s
    assert coach.time == pytest.approx(1.0, abs=0.04)
