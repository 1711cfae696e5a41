"""Choose the reference clip a cloning engine conditions on, and the words spoken in it.

GPT-SoVITS wants one 3-10 s clip of clean speech plus its exact transcript. A clip is a run of
whole VAD segments, so it starts and ends in silence (no word cut in half); among those, the best
is loud enough, not clipped, far above the noise, close to 6 s, and - when the reading script is
known - made of complete script sentences. Up to three more clips (not overlapping it) are kept
for engines that average the timbre of several references.

The transcript comes from the script: sentence boundaries are predicted from each sentence's
expected length scaled to the reader's actual pace, then snapped to the nearest pauses the VAD
found; a typed transcript, when the user gives one, takes the script's place. Whether the clip
really says those words is checked by speech recognition (transcript_check.py), through `accept`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from voxroom.models.enrollment.quality import _clipped_samples
from voxroom.models.enrollment.scripts import expected_seconds
from voxroom.models.vad import SAMPLE_RATE, SpeechSegment

MIN_S, MAX_S, TARGET_S = 3.0, 10.0, 6.0


@dataclass(frozen=True)
class ClipSpan:
    start: int  # samples at `sample_rate` of the ReferenceChoice (16 kHz from choose_reference)
    end: int
    score: float
    transcript: str = ""
    complete_sentences: bool = False  # the clip starts and ends on script sentence boundaries

    @property
    def duration(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


@dataclass
class ReferenceChoice:
    main: ClipSpan
    auxiliary: list[ClipSpan] = field(default_factory=list)
    sample_rate: int = SAMPLE_RATE
    transcript_source: str = "none"  # "script", "typed", "asr" (recognised, nothing to compare) or "none"
    # "verified": the recognizer heard the transcript in the main clip; "mismatch": it heard something
    # else in every clip; "unverified": nothing could check it (no recognizer, or nothing to compare with)
    transcript_check: str = "unverified"
    heard: str = ""  # what the recognizer heard in the main clip

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (what VoiceStore.create keeps as `reference`)."""
        return {
            "sample_rate": self.sample_rate,
            "transcript_source": self.transcript_source,
            "transcript_check": self.transcript_check,
            "heard": self.heard,
            "main": asdict(self.main),
            "auxiliary": [asdict(c) for c in self.auxiliary],
        }

    def at_rate(self, rate: int) -> ReferenceChoice:
        """The same clips as sample offsets at another rate (e.g. the upload's own rate)."""

        def scale(c: ClipSpan) -> ClipSpan:
            return replace(c, start=c.start * rate // self.sample_rate, end=c.end * rate // self.sample_rate)

        return replace(self, main=scale(self.main), auxiliary=[scale(c) for c in self.auxiliary], sample_rate=rate)


class NoReferenceClip(ValueError):
    """No stretch of the recording makes a usable reference (too little speech)."""


def choose_reference(
    samples: np.ndarray,
    segments: list[SpeechSegment],
    *,
    sentences: list[str] | None = None,
    lang: str = "en",
    n_auxiliary: int = 3,
    accept: Callable[[ClipSpan], bool] | None = None,
) -> ReferenceChoice:
    """Pick the main reference clip (and auxiliaries) from 16 kHz `samples` and their VAD `segments`.

    `sentences` are the script sentences the user read, in order (skipped ones left out), or the
    sentences of the user's typed transcript. `accept` (a check of a clip's words against its transcript) picks
    the main clip: the best-scoring clip it accepts, else the best-scoring one.
    """
    x = np.asarray(samples, np.float32)
    if not segments:
        raise NoReferenceClip("No speech was found, so no reference clip can be taken.")
    source = "script" if sentences else "none"
    clipped = _clipped_samples(x)
    noise = _noise_power(x, segments)
    boundaries = _sentence_boundaries(segments, sentences, lang) if sentences else None
    candidates = _candidates(x, segments, clipped, noise, boundaries)
    if any(c.complete_sentences for c in candidates):
        # A clip that ends mid-sentence has no exact transcript; the engine needs one.
        candidates = [c for c in candidates if c.complete_sentences]
    if not candidates:
        candidates = [_cut_long_segment(x, max(segments, key=lambda s: s.end - s.start), noise)]
    if candidates[0].duration < 1.0:
        raise NoReferenceClip("The speech in this recording is too short for a reference clip.")
    ordered = sorted(candidates, key=lambda c: -c.score)
    if boundaries is not None and sentences:
        ordered = [replace(c, transcript=_transcript(c, segments, boundaries, sentences, lang)) for c in ordered]
    if accept is not None:
        first = next((c for c in ordered if accept(c)), None)
        if first is not None:
            ordered.remove(first)
            ordered.insert(0, first)
    chosen: list[ClipSpan] = []
    for c in ordered:
        if all(c.end <= o.start or c.start >= o.end for o in chosen):
            chosen.append(c)
        if len(chosen) > n_auxiliary:
            break
    return ReferenceChoice(chosen[0], chosen[1:], SAMPLE_RATE, source)


def _noise_power(x: np.ndarray, segments: list[SpeechSegment]) -> float:
    mask = np.ones(len(x), bool)
    for s in segments:
        mask[s.start : s.end] = False
    rest = x[mask]
    if len(rest) < SAMPLE_RATE // 2:
        frames = x[: len(x) // 512 * 512].reshape(-1, 512)
        return float(np.percentile((frames.astype(np.float64) ** 2).mean(axis=1), 10)) + 1e-10
    return float(np.mean(rest.astype(np.float64) ** 2)) + 1e-10


def _score(x: np.ndarray, start: int, end: int, clipped: np.ndarray, noise: float, internal_pause_s: float) -> float:
    seg = x[start:end].astype(np.float64)
    power = float(np.mean(seg**2)) + 1e-10
    level_db = 10 * np.log10(power)
    snr_db = 10 * np.log10(power / noise)
    duration = (end - start) / SAMPLE_RATE
    score = min(snr_db, 45.0) / 45.0  # 0..1: cleaner is better, beyond 45 dB it no longer matters
    score -= max(0.0, abs(level_db + 20.0) - 8.0) / 20.0  # comfortable speech level is about -20 dBFS
    score -= abs(duration - TARGET_S) / TARGET_S * 0.3
    score -= 50.0 * float(clipped[start:end].mean())  # any distortion is worse than a little noise
    score -= max(0.0, internal_pause_s - 1.0) * 0.2  # a long hesitation inside the clip sounds unnatural
    return float(score)


def _candidates(
    x: np.ndarray,
    segments: list[SpeechSegment],
    clipped: np.ndarray,
    noise: float,
    boundaries: set[int] | None,
) -> list[ClipSpan]:
    out: list[ClipSpan] = []
    for i in range(len(segments)):
        longest_pause = 0
        for j in range(i, len(segments)):
            if j > i:
                longest_pause = max(longest_pause, segments[j].start - segments[j - 1].end)
            start, end = segments[i].start, segments[j].end
            duration = (end - start) / SAMPLE_RATE
            if duration > MAX_S:
                break
            if duration < MIN_S:
                continue
            score = _score(x, start, end, clipped, noise, longest_pause / SAMPLE_RATE)
            complete = boundaries is not None and i in boundaries and (j + 1) in boundaries
            if complete:
                score += 0.3  # a transcript that matches exactly is worth a little noise
            out.append(ClipSpan(start, end, score, complete_sentences=complete))
    return out


def _cut_long_segment(x: np.ndarray, seg: SpeechSegment, noise: float) -> ClipSpan:
    """No run of whole segments fits 3-10 s: cut the longest one at its quietest moment near 6 s."""
    start = seg.start
    lo, hi = start + int(MIN_S * SAMPLE_RATE), min(seg.end, start + int(MAX_S * SAMPLE_RATE))
    if hi <= lo:
        return ClipSpan(seg.start, seg.end, -1.0)
    hop = 160
    frames = x[lo:hi][: (hi - lo) // hop * hop].reshape(-1, hop)
    energy = (frames.astype(np.float64) ** 2).mean(axis=1)
    # Prefer quiet points, with a mild pull toward the 6 s target.
    pos = np.arange(len(energy)) * hop + lo
    penalty = np.abs(pos - (start + TARGET_S * SAMPLE_RATE)) / SAMPLE_RATE * energy.mean() * 0.05
    end = int(pos[np.argmin(energy + penalty)])
    return ClipSpan(start, end, _score(x, start, end, np.zeros(len(x), bool), noise, 0.0))


def _speech_clock(segments: list[SpeechSegment]) -> list[float]:
    """Seconds of speech before each segment starts (pauses excluded), plus the total at the end."""
    clock = [0.0]
    for s in segments:
        clock.append(clock[-1] + s.duration)
    return clock


def _sentence_boundaries(segments: list[SpeechSegment], sentences: list[str], lang: str) -> set[int]:
    """Indices k such that a sentence starts at segment k (0 and len(segments) always included).

    The reader's pace is taken as uniform: sentence k's expected share of the speech time gives
    where it should end; the pause nearest to that point (in speech time) is taken as the boundary.
    """
    clock = _speech_clock(segments)
    weights = np.array([max(expected_seconds(s, lang), 0.3) for s in sentences])
    predicted = np.cumsum(weights)[:-1] / weights.sum() * clock[-1]
    chosen = {0, len(segments)}
    previous = 0
    gaps = list(range(1, len(segments)))  # gap k lies before segment k
    for p in predicted:
        options = [k for k in gaps if k > previous]
        if not options:
            break
        k = min(options, key=lambda k: abs(clock[k] - p))
        # Only snap when the pause is close to where the sentence should end (within 30 % of a sentence).
        if abs(clock[k] - p) <= 0.3 * clock[-1] / len(weights):
            chosen.add(k)
            previous = k
    return chosen


def _transcript(
    clip: ClipSpan, segments: list[SpeechSegment], boundaries: set[int], sentences: list[str], lang: str
) -> str:
    """The script sentences whose speech lies inside the clip (by speech time)."""
    clock = _speech_clock(segments)
    weights = np.array([max(expected_seconds(s, lang), 0.3) for s in sentences])
    edges = np.concatenate([[0.0], np.cumsum(weights) / weights.sum() * clock[-1]])
    # Snap predicted sentence edges to the boundaries that were matched to pauses.
    snapped = sorted(clock[k] for k in boundaries)
    for i in range(1, len(edges) - 1):
        near = min(snapped, key=lambda t: abs(t - edges[i]))
        if abs(near - edges[i]) <= 0.3 * (edges[-1] / len(sentences)):
            edges[i] = near
    first = next(i for i, s in enumerate(segments) if s.start >= clip.start)
    last = max(i for i, s in enumerate(segments) if s.end <= clip.end) if clip.end >= segments[0].end else first
    t0, t1 = clock[first], clock[last + 1]
    tol = 0.25
    inside = [s for s, a, b in zip(sentences, edges[:-1], edges[1:], strict=True) if a >= t0 - tol and b <= t1 + tol]
    sep = "" if lang in ("zh", "ja") else " "
    return sep.join(inside)
