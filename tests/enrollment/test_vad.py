"""Silero VAD: speech spans of a whole file, and live speaking decisions pushed in odd-sized chunks."""

from __future__ import annotations

import numpy as np

from tests.enrollment import recordings as r
from voxroom.models.vad import FRAME, SAMPLE_RATE, StreamingVad, segments_from_probabilities, speech_segments


def test_segments_match_the_speech_in_a_real_recording() -> None:
    r.need_speech()
    clip = r.load(r.AWB)  # 4.0 s, speech from about 0.37 s to 3.57 s
    gap = np.zeros(SAMPLE_RATE * 2, np.float32)
    x = np.concatenate([gap, clip, gap, clip, gap])
    segs = speech_segments(x)
    assert len(segs) == 2
    first_start = 2 * SAMPLE_RATE + int(0.37 * SAMPLE_RATE)
    assert abs(segs[0].start - first_start) < 0.15 * SAMPLE_RATE
    assert 2.9 < segs[0].duration < 3.6
    assert abs((segs[1].start - segs[0].start) - (len(clip) + len(gap))) < 0.05 * SAMPLE_RATE


def test_silence_and_noise_have_no_speech() -> None:
    assert speech_segments(np.zeros(SAMPLE_RATE * 3, np.float32)) == []
    noise = (0.01 * np.random.default_rng(0).standard_normal(SAMPLE_RATE * 3)).astype(np.float32)
    assert speech_segments(noise) == []


def test_short_pauses_do_not_split_and_blips_are_dropped() -> None:
    probs = np.array([0.0] * 5 + [0.9] * 20 + [0.1] * 5 + [0.9] * 20 + [0.0] * 30 + [0.9] * 3 + [0.0] * 10)
    segs = segments_from_probabilities(probs, len(probs) * FRAME, min_silence_s=0.3, min_speech_s=0.25)
    assert len(segs) == 1  # 5 frames (160 ms) of pause joined, 3-frame blip dropped
    assert segs[0].start == 5 * FRAME - int(0.05 * SAMPLE_RATE)


def test_streaming_vad_with_hangover_in_odd_chunks() -> None:
    r.need_speech()
    clip = r.load(r.SLT)
    x = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), clip, np.zeros(SAMPLE_RATE * 2, np.float32)])
    vad = StreamingVad(hangover_s=0.4)
    events = []
    for i in range(0, len(x), 333):  # chunks that never line up with the 512-sample frames
        events += vad.push(x[i : i + 333])
    assert [e.kind for e in events] == ["start", "end"]
    assert 1.0 < events[0].time < 1.0 + 0.4
    speech_end = 1.0 + 3.03
    assert speech_end + 0.3 < events[1].time < speech_end + 0.4 + 0.4
    assert vad.time == len(x) // FRAME * FRAME / SAMPLE_RATE
    assert not vad.speaking
