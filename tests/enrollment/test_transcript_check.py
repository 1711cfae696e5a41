"""What was said, checked: speech recognition over the take and the reference clip against the script.

Takes with known words are real speech: the stock voice (Piper, a real model shipped in a package)
reading the English script, and CMU ARCTIC recordings from ../shared/speech.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.enrollment import recordings as r
from voxroom.models.audio_decode import encode_wav
from voxroom.models.enrollment.analysis import analyse_upload
from voxroom.models.enrollment.scripts import expected_seconds, script_for
from voxroom.models.enrollment.transcript_check import HeardTake, unread_sentences
from voxroom.models.speech_recognition import (
    RecognitionFailed,
    Word,
    alignment,
    recognizer_for,
    word_error_rate,
)

RATE = r.RATE
SCRIPT = script_for("en").sentences
reading = r.script_reading


def test_a_skipped_sentence_is_flagged_and_kept_out_of_the_reference() -> None:
    read = [0, 1, 2, 4, 5, 6, 7]  # the reader moved through sentences 0-7 but never said sentence 3
    x, spans = reading(read)
    result = analyse_upload(encode_wav(x, RATE), sentences=list(SCRIPT[:8]))
    skipped = [p for p in result.report.problems if p.code == "sentences_not_read"]
    assert len(skipped) == 1 and skipped[0].sentences == (3,), result.report.problems
    assert "sentence 4" in skipped[0].message["en"]  # numbered as the reader sees them
    assert result.reference is not None and result.reference.transcript_check == "verified"
    assert SCRIPT[3] not in result.reference.main.transcript
    assert result.report.verdict == "usable_with_warnings"
    # The pace is judged on what was read: a skipped sentence does not make the reading look fast.
    said = " ".join(SCRIPT[i] for i in read)
    assert result.report.rate_ratio == pytest.approx(expected_seconds(said, "en") / result.report.speech_s)


def test_the_reference_transcript_is_the_words_read_in_the_clip() -> None:
    x, spans = reading(list(range(10)))
    result = analyse_upload(encode_wav(x, RATE), sentences=list(SCRIPT))
    ref = result.reference
    assert ref is not None and ref.transcript_check == "verified" and ref.transcript_source == "script"
    said = " ".join(SCRIPT[i] for i, a, b in spans if ref.main.start <= (a + b) / 2 < ref.main.end)
    assert said and word_error_rate(said, ref.main.transcript) <= 0.2, (said, ref.main.transcript)
    assert word_error_rate(ref.main.transcript, ref.heard) <= 0.5  # and pocketsphinx heard them there
    assert "transcript_mismatch" not in result.report.codes()


def test_a_real_english_reading_is_verified_with_pocketsphinx() -> None:
    r.need_speech()
    text = "And you always want to see it in the superlative degree."
    result = analyse_upload(encode_wav(r.one_speaker(r.AWB, 30.0), RATE), sentences=[text] * 7)
    ref = result.reference
    assert ref is not None and ref.transcript_check == "verified"
    readings = round(ref.main.duration / 4.4)  # each reading: 4.0 s of speech and a 0.4 s pause
    assert word_error_rate(" ".join([text] * readings), ref.main.transcript) <= 0.2
    assert word_error_rate(ref.main.transcript, ref.heard) <= 0.2


def test_unrelated_speech_never_makes_a_usable_voice() -> None:
    r.need_speech()
    take = encode_wav(r.one_speaker(r.AWB, 30.0), RATE)  # a real reading of something else than the script
    en = analyse_upload(take, sentences=list(SCRIPT[:7]))
    assert en.reference is not None and en.reference.transcript_check == "mismatch"
    assert "transcript_mismatch" in en.report.codes() and en.report.verdict == "rerecord"
    # No recognizer for Chinese here (`voxroom models pull asr` is not done): unverified, so never "usable".
    zh = analyse_upload(take, lang="zh", sentences=list(script_for("zh").sentences[:7]))
    assert recognizer_for("zh") is None
    assert zh.reference is not None and zh.reference.transcript_check == "unverified"
    assert "transcript_unverified" in zh.report.codes() and zh.report.verdict != "usable"
    # No text at all: the recogniser's words stand in, and say so.
    bare = analyse_upload(take)
    assert bare.reference is not None and bare.reference.transcript_source == "asr"
    assert bare.reference.transcript_check == "unverified" and bare.report.verdict != "usable"
    assert "superlative" in bare.reference.main.transcript


def test_a_typed_transcript_is_checked_like_the_script(tmp_path: Path) -> None:
    x, _ = reading([2, 5, 8])
    typed = " ".join(SCRIPT[i] for i in (2, 5, 8))
    right = analyse_upload(encode_wav(x, RATE), typed_transcript=typed, models_dir=tmp_path)
    assert right.reference is not None and right.reference.transcript_source == "typed"
    assert right.reference.transcript_check == "verified"
    wrong = analyse_upload(encode_wav(x, RATE), typed_transcript=" ".join(SCRIPT[i] for i in (0, 1, 4)))
    assert wrong.reference is not None and wrong.reference.transcript_check == "mismatch"
    assert wrong.report.verdict == "rerecord"


# -- the alignment behind "not heard as written", on made-up words -----------------------------------
_vocab = st.lists(st.sampled_from([f"w{i}" for i in range(400)]), min_size=3, max_size=9, unique=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(_vocab, min_size=2, max_size=8), st.data())
def test_the_sentences_left_out_are_exactly_the_ones_flagged(sentences: list[list[str]], data: st.DataObject) -> None:
    # Sentences without shared words, so a word heard can only belong to one sentence.
    seen: set[str] = set()
    distinct = []
    for words in sentences:
        words = [w for w in words if w not in seen]
        seen |= set(words)
        if words:
            distinct.append(words)
    skipped = set(data.draw(st.sets(st.integers(0, len(distinct) - 1), max_size=len(distinct) - 1)))
    heard, t = [], 0.0
    for i, words in enumerate(distinct):
        if i not in skipped:
            for w in words:
                heard.append(Word(w, t, t + 0.3))
                t += 0.4
    take = HeardTake(heard, "test", "en")
    assert unread_sentences([" ".join(w) for w in distinct], take) == sorted(skipped)


@given(st.lists(st.sampled_from("abcdef"), max_size=12), st.lists(st.sampled_from("abcdef"), max_size=12))
def test_alignment_pairs_equal_words_in_order(ref: list[str], hyp: list[str]) -> None:
    matched = alignment(ref, hyp)
    pairs = [(i, j) for i, j in enumerate(matched) if j is not None]
    assert all(ref[i] == hyp[j] for i, j in pairs)
    assert [j for _, j in pairs] == sorted({j for _, j in pairs})  # in order, each heard word used once
    assert word_error_rate(" ".join(ref), " ".join(ref)) == 0.0


def test_a_recognition_process_that_dies_leaves_the_words_unverified_and_the_next_take_is_heard() -> None:
    """Recognition runs in a process of its own; if it dies mid-job (killed, out of memory) that take's
    words stay unverified instead of the analysis failing, and the next call starts a new process."""
    import os

    from voxroom.models import speech_recognition as sr

    with pytest.raises(sr.RecognitionFailed):
        sr.recognize(os._exit, 1)  # the process exits under the job, as a killed one does
    x, _ = reading([0, 1])
    words = recognizer_for("en").words(x)  # type: ignore[union-attr]
    assert word_error_rate(" ".join(SCRIPT[:2]), " ".join(w.text for w in words)) <= 0.5


def test_an_analysis_whose_recognition_fails_reports_the_transcript_unverified(monkeypatch: pytest.MonkeyPatch) -> None:
    from voxroom.models.enrollment import transcript_check

    def dies(*_: object) -> HeardTake:
        raise RecognitionFailed("the speech recognition process stopped")

    monkeypatch.setattr("voxroom.models.enrollment.analysis.hear_take", dies)
    assert transcript_check.hear_take is not dies
    x, _ = reading([0, 1, 2, 4])
    result = analyse_upload(encode_wav(x, RATE), sentences=list(SCRIPT[:5]))
    assert result.reference is not None and result.reference.transcript_check == "unverified"
    assert result.report.verdict != "usable"
