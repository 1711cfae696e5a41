"""The whole enrollment analysis from an uploaded file."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from tests.enrollment import recordings as r
from voxroom.models.audio_decode import AudioDecodeError
from voxroom.models.enrollment.analysis import analyse_upload


def _wav(x: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def test_upload_to_report_and_reference() -> None:
    r.need_speech()
    a = "And you always want to see it in the superlative degree."
    x = r.one_speaker(r.AWB, 44.0)  # 10 readings of the same sentence
    result = analyse_upload(_wav(x, 16000), filename="me.webm", sentences=[a] * 10)
    assert result.report.verdict == "usable" and result.audio.notes  # named .webm, is WAV
    assert result.reference is not None and result.reference.transcript_source == "script"
    clip = result.reference_audio()
    assert 3.0 <= len(clip) / 16000 <= 10.0
    assert result.reference.main.transcript.startswith(a)


def test_eight_khz_upload_is_flagged() -> None:
    r.need_speech()
    x = r.one_speaker(r.CODEC2, 30)[::2]  # 8 kHz telephone-rate file
    result = analyse_upload(_wav(x, 8000))
    assert "narrow_band" in result.report.codes() and result.report.verdict == "rerecord"


def test_bad_upload_raises() -> None:
    with pytest.raises(AudioDecodeError):
        analyse_upload(b"not audio at all" * 10)
