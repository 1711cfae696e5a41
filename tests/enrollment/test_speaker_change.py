"""A second voice found where it speaks: window embeddings split into two voices (speaker_change.py).

How often it is right on 55 voices, also judged by a calibration on other voices, is measured in bench/enroll_accuracy.py; these
tests pin the behaviour on the real recordings of ../shared/speech."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tests.enrollment import recordings as r
from voxroom.models.enrollment.quality import analyse
from voxroom.models.enrollment.speaker_change import (
    SAMPLE_RATE,
    _merged,
    average_voice,
    speaker_change,
    split,
    unit_voices,
    units,
)
from voxroom.models.vad import speech_segments

RATE = r.RATE


def test_a_short_interjection_is_found_where_it_is() -> None:
    r.need_speech()
    reader = r.one_speaker(r.LINDA, 21.0)
    gap = np.zeros(int(0.5 * RATE), np.float32)
    other = r.load(r.SLT)[: int(2.5 * RATE)]  # a second person says one thing, 2.5 s
    at = 10.0
    x = np.concatenate([reader[: int(at * RATE)], gap, other, gap, reader[int(at * RATE) :]])
    change = speaker_change(x, speech_segments(x))
    assert change is not None and change.several
    start, end = at + 0.5, at + 0.5 + 2.5
    assert any(s.start < end and start < s.end for s in change.other), change.other
    assert all(s.end - s.start < 8 for s in change.other)  # the span is the interjection, not the reading
    report = analyse(x)
    problem = next(p for p in report.problems if p.code == "several_speakers")
    assert f"{change.other[0].start:.1f}" in problem.message["en"] and problem.severity == "severe"


def test_alternating_turns_are_found() -> None:
    r.need_speech()
    x = r.two_speakers(12.0, r.THORSTEN, r.AWB)  # two men, one German, one Scottish, taking turns
    change = speaker_change(x, speech_segments(x))
    assert change is not None and change.several and len(change.other) >= 1


def test_one_voice_reading_different_sentences_is_one_voice() -> None:
    r.need_speech()
    for name in r.ALL:
        x = r.one_speaker(name, 20.0)
        change = speaker_change(x, speech_segments(x))
        assert change is not None and not change.several, (name, change.similarity)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_the_average_voice_taken_away_is_what_many_voices_share() -> None:
    """The shipped average voice (bench/enroll_set.py --write-centre) points the way these five readers
    do together, more than any one of them, and taking it away pulls two of them apart."""
    r.need_speech()
    voices = {}
    for name in r.ALL:
        x = r.one_speaker(name, 20.0)
        voices[name] = unit_voices(x, units(speech_segments(x))).mean(axis=0)
    centre = average_voice()
    together = _cosine(np.mean(list(voices.values()), axis=0), centre)
    assert together > 0.8 and all(_cosine(v, centre) < together for v in voices.values()), together
    x = r.two_speakers(12.0, r.THORSTEN, r.AWB)
    spans = units(speech_segments(x))
    found = unit_voices(x, spans)
    plain, centred = split(spans, found, np.zeros_like(centre)), split(spans, found, centre)
    assert centred.several and centred.similarity < plain.similarity - 0.3, (plain, centred)


@given(st.lists(st.tuples(st.integers(0, 40 * SAMPLE_RATE), st.integers(1, 6 * SAMPLE_RATE)), max_size=12))
def test_merged_spans_are_ordered_disjoint_and_cover_every_unit(units: list[tuple[int, int]]) -> None:
    spans = [(a, a + d) for a, d in units]
    merged = _merged(spans)
    assert all(a.end < b.start for a, b in zip(merged, merged[1:], strict=False))
    for a, b in spans:
        assert any(m.start <= a / SAMPLE_RATE and b / SAMPLE_RATE <= m.end for m in merged)
