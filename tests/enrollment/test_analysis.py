"""The whole enrollment analysis from an uploaded file."""

from __future__ import annotations

import pytest

from tests.enrollment import recordings as r
from voxroom.models.audio_decode import AudioDecodeError, encode_wav
from voxroom.models.enrollment.analysis import analyse_upload


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
