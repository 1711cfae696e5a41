"""The whole enrollment analysis from an uploaded file."""

from __future__ import annotations

import numpy as np
import pytest

from tests.enrollment import recordings as r
from voxroom.models.audio_decode import AudioDecodeError, encode_wav
from voxroom.models.enrollment.analysis import analyse_upload
from voxroom.models.enrollment.live import LiveCoach


def test_upload_to_report_and_reference() -> None:
    r.need_speech()
    a = "And you always want to see it in the superlative degree."
    x = r.one_speaker(r.AWB, 44.0)  # 10 readings of the same sentence
    result = analyse_upload(encode_wav(x, 16000), filename="me.webm", sentences=[a] * 10)
    assert result.report.verdict == "usable" and result.audio.notes  # named .webm, is WAV
    assert result.reference is not None and result.reference.transcript_source == "script"
    clip = result.reference_audio()
    assert 3.0 <= len(clip) / 16000 <= 10.0
    assert result.reference.main.transcript.startswith(a)


def test_eight_khz_upload_is_flagged() -> None:
    r.need_speech()
    x = r.one_speaker(r.CODEC2, 30)[::2]  # 8 kHz telephone-rate file
    result = analyse_upload(encode_wav(x, 8000))
    assert "narrow_band" in result.report.codes() and result.report.verdict == "rerecord"


def test_bad_upload_raises() -> None:
    with pytest.raises(AudioDecodeError):
        analyse_upload(b"not audio at all" * 10)


def test_advice_given_during_the_take_is_in_the_final_report() -> None:
    """One sentence in eight read fast: the coach says so, and the report may not say "no problems"."""
    r.need_speech()
    text = "And you always want to see it in the superlative degree."
    clip = r.load(r.AWB)
    fast = np.interp(np.arange(0, len(clip), 1.7), np.arange(len(clip)), clip).astype(np.float32)
    gap = np.zeros(int(0.4 * 16000), np.float32)
    coach, parts = LiveCoach(), []
    for reading in (clip, clip, clip, fast, clip, clip, clip, clip):
        coach.start_sentence(text)
        coach.push(np.concatenate([reading, gap]))
        parts += [reading, gap]
    coach.finish()
    take = np.concatenate(parts * 3)  # long enough not to be "too little speech"
    said = {a.code for a in coach.given}
    assert "too_fast" in said
    quiet = analyse_upload(encode_wav(take, 16000), sentences=[text] * 24)
    assert "too_fast" not in quiet.report.codes()  # the whole take's pace alone hides the fast sentences
    result = analyse_upload(encode_wav(take, 16000), sentences=[text] * 24, live_advice=coach.given)
    assert said <= result.report.codes() and result.report.verdict != "usable"
    fast_problem = next(p for p in result.report.problems if p.code == "too_fast")
    assert fast_problem.said_at == tuple(round(a.time, 2) for a in coach.given if a.code == "too_fast")
    assert "slower" in fast_problem.message["en"]
