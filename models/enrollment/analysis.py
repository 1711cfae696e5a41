"""One call from an uploaded file to everything enrollment needs to know about it.

decode (any container, by content) -> 16 kHz mono -> VAD speech segments -> quality report ->
speech recognition of the take -> reference clip whose words were heard as its transcript. The engine's prompt is then computed from `reference_audio`
by the engine itself (it owns its models), and the voice store keeps the result.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from voxroom.models.audio_decode import DecodedAudio, DecodeLimits, decode_audio
from voxroom.models.enrollment.live import Advice
from voxroom.models.enrollment.quality import QualityReport, analyse, problem
from voxroom.models.enrollment.reference import ClipSpan, NoReferenceClip, ReferenceChoice, choose_reference
from voxroom.models.enrollment.scripts import expected_seconds
from voxroom.models.enrollment.transcript_check import HeardTake, hear_take, unread_sentences
from voxroom.models.speech_recognition import RecognitionFailed, recognizer_for
from voxroom.models.text_pieces import split_text
from voxroom.models.vad import SAMPLE_RATE, SpeechSegment, speech_segments

log = logging.getLogger(__name__)


@dataclass
class EnrollmentAnalysis:
    audio: DecodedAudio  # 16 kHz mono
    segments: list[SpeechSegment]
    report: QualityReport
    reference: ReferenceChoice | None  # None when no clip could be taken (the report says why)

    def reference_audio(self, which: int = 0) -> np.ndarray:
        """The main clip (which=0) or an auxiliary one (1..3), 16 kHz float32."""
        if self.reference is None:
            raise NoReferenceClip("this recording has no usable reference clip")
        clip = self.reference.main if which == 0 else self.reference.auxiliary[which - 1]
        return self.audio.samples[clip.start : clip.end]


def analyse_upload(
    upload: bytes | str | os.PathLike[str],
    *,
    filename: str | None = None,
    lang: str = "en",
    sentences: list[str] | None = None,
    typed_transcript: str | None = None,
    limits: DecodeLimits | None = None,
    live_advice: Sequence[Advice] = (),
    models_dir: Path | None = None,
) -> EnrollmentAnalysis:
    """Analyse an upload. `sentences`: the script sentences the user read (for the speaking-rate check and
    the clip's transcript); `live_advice`: what the live coach said while it was recorded (the report
    includes it); `models_dir`: where `voxroom models pull asr` put the multilingual recognizer.
    Raises AudioDecodeError for files that are not usable audio."""
    audio = decode_audio(upload, sample_rate=SAMPLE_RATE, limits=limits or DecodeLimits(), filename=filename)
    segments = speech_segments(audio.samples)
    recognizer = recognizer_for(lang, models_dir)
    take = None
    if recognizer is not None and segments:
        try:
            take = hear_take(audio.samples, segments, recognizer, lang)
        except RecognitionFailed as exc:  # the transcript stays unverified; the take is judged on the rest
            log.warning("enrollment: %s", exc)
    typed = typed_transcript.strip() if typed_transcript else ""
    meant = split_text(typed) if typed else sentences  # what should have been said, sentence by sentence
    unread = unread_sentences(meant, take) if take is not None and meant else []
    if meant and len(unread) == len(meant):
        unread = []  # nothing matched at all: a mismatch of the whole take, said once (below)
    read = [s for i, s in enumerate(meant) if i not in unread] if meant else None
    # The pace is judged on the sentences that were read: a skipped one is not "reading fast".
    pace_of = [s for i, s in enumerate(sentences) if i not in unread] if sentences else None
    expected = expected_seconds(("" if lang in ("zh", "ja") else " ").join(pace_of), lang) if pace_of else None
    report = analyse(audio.samples, segments=segments, expected_speech_s=expected, source_rate=audio.source_rate)
    report.include_live_advice(live_advice)
    if unread:
        numbers = ", ".join(str(i + 1) for i in unread)
        report.problems.append(problem("sentences_not_read", False, len(unread), tuple(unread), numbers=numbers))
    reference = _checked_reference(audio.samples, segments, report, take, lang, read, bool(typed))
    return EnrollmentAnalysis(audio, segments, report, reference)


def _checked_reference(
    samples: np.ndarray,
    segments: list[SpeechSegment],
    report: QualityReport,
    take: HeardTake | None,
    lang: str,
    read: list[str] | None,
    typed: bool,
) -> ReferenceChoice | None:
    """Choose the reference clip whose words were heard as its transcript (`read`: the sentences said,
    in order), and say in the report what could not be checked or did not match. A transcript is never
    called right unless it was heard."""

    def heard_as_written(c: ClipSpan) -> bool:
        return take is not None and take.matches(c.transcript, c.start / SAMPLE_RATE, c.end / SAMPLE_RATE)

    try:
        reference = choose_reference(samples, segments, sentences=read, lang=lang,
                                     accept=heard_as_written if take is not None and read else None)
    except NoReferenceClip:
        return None
    if typed and read:
        reference.transcript_source = "typed"
    main = reference.main
    if take is None:
        report.problems.append(problem("transcript_unverified", False, 0.0))
        return reference
    reference.heard = take.heard(main.start / SAMPLE_RATE, main.end / SAMPLE_RATE)
    if not read:
        # Nothing to compare with: the recognised words are the best transcript there is, unchecked.
        reference.main = replace(main, transcript=reference.heard)
        reference.transcript_source = "asr"
        report.problems.append(problem("transcript_recognised", False, 0.0))
    elif heard_as_written(main):
        reference.transcript_check = "verified"
    else:
        reference.transcript_check = "mismatch"
        report.problems.append(problem("transcript_mismatch", True, 0.0))
    return reference
