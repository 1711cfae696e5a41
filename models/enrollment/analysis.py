"""One call from an uploaded file to everything enrollment needs to know about it.

decode (any container, by content) -> 16 kHz mono -> VAD speech segments -> quality report ->
reference clip with its transcript. The engine's prompt is then computed from `reference_audio`
by the engine itself (it owns its models), and the voice store keeps the result.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voxroom.models.audio_decode import DecodedAudio, DecodeLimits, decode_audio
from voxroom.models.enrollment.live import Advice
from voxroom.models.enrollment.quality import QualityReport, analyse
from voxroom.models.enrollment.reference import NoReferenceClip, ReferenceChoice, choose_reference
from voxroom.models.enrollment.scripts import expected_seconds
from voxroom.models.vad import SAMPLE_RATE, SpeechSegment, speech_segments


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
) -> EnrollmentAnalysis:
    """Analyse an upload. `sentences`: the script sentences the user read (for the speaking-rate check and
    the clip's transcript); `live_advice`: what the live coach said while it was recorded (the report
    includes it). Raises AudioDecodeError for files that are not usable audio."""
    audio = decode_audio(upload, sample_rate=SAMPLE_RATE, limits=limits or DecodeLimits(), filename=filename)
    segments = speech_segments(audio.samples)
    expected = expected_seconds(("" if lang in ("zh", "ja") else " ").join(sentences), lang) if sentences else None
    report = analyse(audio.samples, segments=segments, expected_speech_s=expected, source_rate=audio.source_rate)
    report.include_live_advice(live_advice)
    try:
        reference = choose_reference(
            audio.samples, segments, sentences=sentences, lang=lang, typed_transcript=typed_transcript
        )
    except NoReferenceClip:
        reference = None
    return EnrollmentAnalysis(audio, segments, report, reference)
