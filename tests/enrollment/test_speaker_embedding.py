"""The Resemblyzer voice encoder rebuilt on its shipped weights: same voice close, different voices apart."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from tests.enrollment import recordings as r
from voxroom.models.enrollment import quality, speaker_embedding

needs_encoder = pytest.mark.skipif(not speaker_embedding.available(), reason="resemblyzer is not installed")


@needs_encoder
def test_same_voice_is_closer_than_another_voice() -> None:
    r.need_speech()
    codec2 = r.load(r.CODEC2)  # 10.8 s of one woman: two halves with different words
    first, second = codec2[: 5 * 16000], codec2[5 * 16000 :]
    others = [r.load(n) for n in (r.SLT, r.LINDA, r.AWB, r.THORSTEN)]
    emb = speaker_embedding.utterance_embeddings([first, second, *others])
    assert emb.shape == (6, 256)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    same = float(emb[0] @ emb[1])
    assert same > 0.75
    assert all(float(emb[0] @ e) < same - 0.1 for e in emb[2:])


@needs_encoder
def test_mel_front_end_shape_and_scale() -> None:
    t = np.arange(16000) / 16000
    mel = speaker_embedding.mel_frames((0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert mel.shape == (101, 40)  # centred frames every 10 ms
    assert 13 <= int(np.argmax(mel[50])) <= 16  # 1 kHz sits where the Slaney scale turns logarithmic (band 15)


def test_report_falls_back_to_mfcc_statistics_without_the_encoder() -> None:
    r.need_speech()
    with mock.patch.object(speaker_embedding, "available", return_value=False):
        report = quality.analyse(r.one_speaker(r.SLT, 30))
    assert report.speaker_mismatch is None and report.speaker_separation > 0
    assert "several_speakers" not in report.codes()
