"""Reference clip choice: whole sentences bounded by silence, 3-10 s, clean, with the right transcript."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.enrollment import recordings as r
from voxroom.models.enrollment.reference import NoReferenceClip, choose_reference
from voxroom.models.vad import SAMPLE_RATE, speech_segments

A = "And you always want to see it in the superlative degree."
B = "He turned sharply and faced Gregson across the table."


def _reading(n: int = 8, clip_from: int | None = None):
    """A reading of n script sentences (awb and slt recordings alternating) with 0.6 s pauses.

    Returns (audio, sentences, [(start, end, sentence)]); readings from `clip_from` on are clipped."""
    gap = np.zeros(int(0.6 * SAMPLE_RATE), np.float32)
    parts, sentences, truth, pos = [], [], [], 0
    for i in range(n):
        clip, text = (r.load(r.AWB), A) if i % 2 == 0 else (r.load(r.SLT), B)
        if clip_from is not None and i >= clip_from:
            clip = r.hard_clip(clip, 12)
        parts += [clip, gap]
        sentences.append(text)
        truth.append((pos, pos + len(clip), text))
        pos += len(clip) + len(gap)
    return np.concatenate(parts), sentences, truth


def test_main_clip_is_whole_sentences_with_their_transcript() -> None:
    r.need_speech()
    x, sentences, truth = _reading()
    choice = choose_reference(x, speech_segments(x), sentences=sentences)
    clips = [choice.main, *choice.auxiliary]
    assert len(choice.auxiliary) == 3 and choice.transcript_source == "script"
    for c in clips:
        assert 3.0 <= c.duration <= 10.0
        inside = [t for s, e, t in truth if s < c.end and e > c.start]
        # Nothing cut: every sentence the clip touches is inside it, and the transcript lists exactly those.
        assert all(c.start <= s + 0.45 * SAMPLE_RATE and e - 0.45 * SAMPLE_RATE <= c.end
                   for s, e, _ in truth if s < c.end and e > c.start)
        assert c.transcript == " ".join(inside)
    for a in clips:  # no two clips overlap
        for b in clips:
            assert a is b or a.end <= b.start or b.end <= a.start


def test_clipped_sentences_are_avoided() -> None:
    r.need_speech()
    x, sentences, truth = _reading(8, clip_from=3)
    choice = choose_reference(x, speech_segments(x), sentences=sentences)
    assert choice.main.end <= truth[3][0]


def test_offsets_scale_to_another_rate() -> None:
    r.need_speech()
    x, sentences, _ = _reading(4)
    choice = choose_reference(x, speech_segments(x), sentences=sentences)
    at48 = choice.at_rate(48000)
    assert at48.main.start == choice.main.start * 3 and at48.sample_rate == 48000
    as_json = json.loads(json.dumps(at48.to_dict()))
    assert as_json["main"]["start"] == at48.main.start and as_json["sample_rate"] == 48000
    assert as_json["main"]["transcript"] == choice.main.transcript and len(as_json["auxiliary"]) == len(at48.auxiliary)


def test_one_long_stretch_without_pauses_is_cut_at_a_quiet_point() -> None:
    r.need_speech()
    x = r.load(r.LINDA)  # 6.5 s, VAD sees no pause in it
    long = np.concatenate([x, x])[: int(12 * SAMPLE_RATE)]
    choice = choose_reference(long, speech_segments(long))
    assert 3.0 <= choice.main.duration <= 10.0


def test_no_speech_raises() -> None:
    with pytest.raises(NoReferenceClip):
        choose_reference(np.zeros(SAMPLE_RATE * 5, np.float32), [])


def test_a_pause_inside_a_sentence_does_not_shift_the_transcript() -> None:
    r.need_speech()
    x, sentences, truth = _reading(8)
    # The reader stops for half a second in the middle of the third sentence (an awb reading).
    s, e, _ = truth[2]
    mid = s + int(1.9 * SAMPLE_RATE)
    x = np.concatenate([x[:mid], np.zeros(SAMPLE_RATE // 2, np.float32), x[mid:]])
    shift = SAMPLE_RATE // 2
    truth = [(a if a < mid else a + shift, b if b < mid else b + shift, t) for a, b, t in truth]
    choice = choose_reference(x, speech_segments(x), sentences=sentences)
    for c in [choice.main, *choice.auxiliary]:
        inside = [t for a, b, t in truth if a < c.end and b > c.start]
        assert c.complete_sentences
        assert all(c.start <= a + 0.45 * SAMPLE_RATE and b - 0.45 * SAMPLE_RATE <= c.end
                   for a, b, _ in truth if a < c.end and b > c.start)
        assert c.transcript == " ".join(inside)
