"""Quality report of an enrollment recording: is it good enough to clone a voice from?

Everything is measured on 16 kHz mono float audio and the VAD's speech segments: numpy for levels,
noise, clipping, loudness, bandwidth and music; the Resemblyzer speaker encoder (torch) for "more than
one voice", with an MFCC/pitch statistic as a weak fallback when that package is absent. A minute of
audio takes about 0.35 s besides the VAD (bench/enroll.py). Each check that fails becomes a
`Problem` with a plain-language message (messages.py); the verdict is `rerecord` when any problem
is severe, `usable_with_warnings` when there are only warnings, else `usable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from voxroom.models.enrollment import speaker_embedding
from voxroom.models.enrollment.live import Advice
from voxroom.models.enrollment.messages import advice
from voxroom.models.enrollment.speaker_change import VoiceSpan, speaker_change
from voxroom.models.vad import SAMPLE_RATE, SpeechSegment, speech_segments

FRAME = 512  # 32 ms analysis frames, the VAD's own frame
_EPS = 1e-10

# Thresholds, each chosen on the degraded test set (bench/enroll_accuracy.py prints how often each is right).
MIN_SPEECH_S = 20.0  # warning below; below MIN_SPEECH_HARD_S nothing good can be cloned
MIN_SPEECH_HARD_S = 5.0
SNR_WARN_DB, SNR_BAD_DB = 20.0, 12.0
CLIP_WARN, CLIP_BAD = 0.0005, 0.005  # fraction of samples on a clipped plateau
QUIET_WARN_DB, QUIET_BAD_DB = -35.0, -45.0  # speech RMS level
BANDWIDTH_WARN_HZ = 5000.0
MUSIC_WARN, MUSIC_BAD = 0.2, 0.5  # fraction of frames holding a long steady tone
PAIR_DIFFERENT = 0.6  # utterance embeddings less similar than this sound like two people
SPEAKER_MISMATCH_MAX = 0.35  # share of such utterance pairs above which the recording has several voices
SPEAKER_WARN = 2.2  # fallback without resemblyzer: MFCC cluster separation, in within-cluster spreads
UTTERANCE_MAX_S = 6.0  # long stretches without pauses are cut so that turn-taking inside them shows
LONG_PAUSE_S = 3.0
RATE_FAST, RATE_SLOW = 1.35, 0.6  # reading time against the script's expected time


@dataclass(frozen=True)
class Problem:
    code: str  # messages.CATALOGUE key
    severity: str  # "warning" or "severe"
    message: dict[str, str]  # {"en": ..., "zh": ...}
    value: float  # the measurement that triggered it
    said_at: tuple[float, ...] = ()  # seconds into the take where the live coach gave this advice
    sentences: tuple[int, ...] = ()  # script sentences it is about (0-based), e.g. those to read again


def problem(code: str, severe: bool, value: float, sentences: tuple[int, ...] = (), /, **values: float | str) -> Problem:
    """A problem with its message in every catalogue language, filled from `values`."""
    msg = {lang: advice(code, lang, **values) for lang in ("en", "zh")}
    return Problem(code, "severe" if severe else "warning", msg, value, sentences=sentences)


@dataclass(frozen=True)
class SegmentQuality:
    start: int  # samples at 16 kHz
    end: int
    level_db: float  # RMS of the speech, dBFS
    peak_db: float
    snr_db: float  # against the recording's noise floor
    clipped_fraction: float


@dataclass
class QualityReport:
    duration_s: float
    speech_s: float
    segments: list[SegmentQuality]
    snr_db: float
    noise_floor_db: float
    level_db: float  # RMS of all speech, dBFS
    peak_db: float
    loudness_lufs: float  # ITU-R BS.1770 integrated loudness, gated (approximation at 16 kHz)
    clipped_fraction: float
    bandwidth_hz: float
    music_score: float
    speaker_mismatch: float | None  # utterance-pair voice check (None when resemblyzer is not installed)
    speaker_similarity: float | None  # speaker_change.py: the two likeliest voices' similarity (None: no encoder)
    other_voice: list[VoiceSpan]  # where a second voice seems to speak (speaker_change.py)
    speaker_separation: float  # MFCC/pitch check, always measured
    longest_pause_s: float
    rate_ratio: float | None  # reading time / expected time of the script, when a script is given
    problems: list[Problem] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if any(p.severity == "severe" for p in self.problems):
            return "rerecord"
        return "usable_with_warnings" if self.problems else "usable"

    def codes(self) -> set[str]:
        return {p.code for p in self.problems}

    def include_live_advice(self, given: Sequence[Advice]) -> None:
        """Fold in the advice the live coach gave while recording, so the verdict never contradicts it: a
        problem the whole-take check also found keeps its severity and learns when it was said; one only
        the coach heard (a few sentences read too fast, a burst of clipping) becomes a warning."""
        for code in dict.fromkeys(a.code for a in given):
            times = tuple(round(a.time, 2) for a in given if a.code == code)
            last = [a for a in given if a.code == code][-1]
            found = next((i for i, p in enumerate(self.problems) if p.code == code), None)
            if found is not None:
                self.problems[found] = replace(self.problems[found], said_at=times)
            else:
                self.problems.append(Problem(code, "warning", dict(last.message), last.value, times))


def analyse(
    samples: np.ndarray,
    *,
    segments: list[SpeechSegment] | None = None,
    expected_speech_s: float | None = None,
    source_rate: int | None = None,
) -> QualityReport:
    """Measure a 16 kHz mono recording. `expected_speech_s` (scripts.expected_seconds) enables the
    speaking-rate check; `source_rate` (the upload's own rate) lets 8 kHz uploads be called narrow-band
    even when resampled."""
    x = np.asarray(samples, np.float32).reshape(-1)
    if segments is None:
        segments = speech_segments(x)
    n_frames = len(x) // FRAME
    frames = x[: n_frames * FRAME].reshape(n_frames, FRAME).astype(np.float64)
    power = (frames**2).mean(axis=1) + _EPS
    speech_mask = _frame_mask(segments, n_frames)
    speech_s = sum(s.duration for s in segments)

    noise_power = _noise_floor(power, speech_mask)
    speech_power = float(power[speech_mask].mean()) if speech_mask.any() else _EPS
    snr_db = _db(max(speech_power - noise_power, _EPS) / noise_power)
    snr_db = float(min(snr_db, 80.0))
    clip_mask = _clipped_samples(x)
    spec = _power_spectrogram(frames)  # (frames, 257)
    change = speaker_change(x, segments)
    report = QualityReport(
        duration_s=len(x) / SAMPLE_RATE,
        speech_s=speech_s,
        segments=[_segment_quality(x, s, noise_power, clip_mask) for s in segments],
        snr_db=snr_db,
        noise_floor_db=_db(noise_power),
        level_db=_db(speech_power),
        peak_db=_db(float(np.abs(x).max()) ** 2 + _EPS),
        loudness_lufs=integrated_loudness(x),
        clipped_fraction=float(clip_mask.mean()) if len(x) else 0.0,
        bandwidth_hz=_bandwidth(spec[speech_mask] if speech_mask.any() else spec, source_rate),
        music_score=_music_score(x),
        speaker_mismatch=speaker_mismatch(x, segments),
        speaker_similarity=change.similarity if change is not None else None,
        other_voice=change.other if change is not None and change.several else [],
        speaker_separation=_speaker_separation(frames, spec, speech_mask, power),
        longest_pause_s=_longest_pause(segments, len(x)),
        rate_ratio=(expected_speech_s / speech_s) if expected_speech_s and speech_s > 0 else None,
    )
    report.problems = _problems(report)
    return report


def _problems(r: QualityReport) -> list[Problem]:
    found: list[Problem] = []

    def add(code: str, severe: bool, value: float, **values: float | str) -> None:
        found.append(problem(code, severe, value, **values))

    if r.speech_s < 0.5:
        add("no_speech", True, r.speech_s)
        return found
    if r.speech_s < MIN_SPEECH_S:
        add("too_little_speech", r.speech_s < MIN_SPEECH_HARD_S, r.speech_s, speech_s=r.speech_s)
    if r.snr_db < SNR_WARN_DB:
        add("noise", r.snr_db < SNR_BAD_DB, r.snr_db, snr_db=r.snr_db)
    if r.clipped_fraction > CLIP_WARN:
        add("clipping", r.clipped_fraction > CLIP_BAD, r.clipped_fraction, clipped_pct=100 * r.clipped_fraction)
    if r.level_db < QUIET_WARN_DB:
        add("too_quiet", r.level_db < QUIET_BAD_DB, r.level_db, level_db=r.level_db)
    if r.bandwidth_hz < BANDWIDTH_WARN_HZ:
        add("narrow_band", True, r.bandwidth_hz, bandwidth_khz=r.bandwidth_hz / 1000)
    if r.music_score > MUSIC_WARN:
        add("music", r.music_score > MUSIC_BAD, r.music_score)
    if r.speaker_mismatch is not None and r.speaker_similarity is not None:
        # Either check: a second voice taking turns or interjecting (window split), or voices that
        # differ across the whole take's utterances (which also catches two voices overlapping).
        if r.other_voice or r.speaker_mismatch > SPEAKER_MISMATCH_MAX:
            where = ", ".join(f"{s.start:.1f}–{s.end:.1f} s" for s in r.other_voice[:4])
            more = f", +{len(r.other_voice) - 4}" if len(r.other_voice) > 4 else ""
            found.append(problem("several_speakers", True, r.speaker_similarity, (),
                                 where=f" ({where}{more})" if where else ""))
    elif r.speaker_separation > SPEAKER_WARN:
        add("several_speakers", True, r.speaker_separation, where="")
    if r.longest_pause_s > LONG_PAUSE_S:
        add("long_pauses", False, r.longest_pause_s, pause_s=r.longest_pause_s)
    if r.rate_ratio is not None:
        # rate_ratio is expected/actual time: above 1 the reader took less time than expected.
        if r.rate_ratio > RATE_FAST:
            add("too_fast", False, r.rate_ratio, ratio=r.rate_ratio)
        elif r.rate_ratio < RATE_SLOW:
            add("too_slow", False, r.rate_ratio, ratio=r.rate_ratio)
    return found


def _db(power: float) -> float:
    return float(10 * np.log10(max(power, _EPS)))


def _frame_mask(segments: list[SpeechSegment], n_frames: int) -> np.ndarray:
    mask = np.zeros(n_frames, bool)
    for s in segments:
        mask[s.start // FRAME : -(-s.end // FRAME)] = True
    return mask


def _noise_floor(power: np.ndarray, speech_mask: np.ndarray) -> float:
    """Noise power: the quieter frames outside speech, or the quietest tenth of all frames when the VAD
    found (almost) no pauses (continuous babble or music can keep it 'speaking' throughout)."""
    quiet_all = float(np.percentile(power, 10))
    if (~speech_mask).sum() >= 15:  # half a second of pauses
        return min(float(np.percentile(power[~speech_mask], 50)), max(quiet_all, _EPS))
    return max(quiet_all, _EPS)


def _clipped_samples(x: np.ndarray) -> np.ndarray:
    """Samples on a plateau at the recording's peak: clipping flattens the top of the waveform into runs
    of equal samples, wherever the clipping level is (0 dBFS, or lower if the gain was cut afterwards)."""
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak < 0.05:
        return np.zeros(len(x), bool)
    near = np.abs(x) >= 0.99 * peak
    # A run of 3+ samples at the peak is a plateau; one or two are just the loudest moment.
    run = near[:-2] & near[1:-1] & near[2:]
    plateau = np.zeros(len(x), bool)
    plateau[:-2] |= run
    plateau[1:-1] |= run
    plateau[2:] |= run
    return plateau


def _segment_quality(x: np.ndarray, s: SpeechSegment, noise_power: float, clip_mask: np.ndarray) -> SegmentQuality:
    seg = x[s.start : s.end].astype(np.float64)
    p = float((seg**2).mean()) + _EPS
    return SegmentQuality(
        start=s.start,
        end=s.end,
        level_db=_db(p),
        peak_db=_db(float(np.abs(seg).max()) ** 2),
        snr_db=float(min(80.0, _db(max(p - noise_power, _EPS) / noise_power))),
        clipped_fraction=float(clip_mask[s.start : s.end].mean()),
    )


_WINDOW = np.hanning(FRAME)


def _power_spectrogram(frames: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.rfft(frames * _WINDOW, axis=1)) ** 2 + _EPS


def _bandwidth(spec: np.ndarray, source_rate: int | None) -> float:
    """Highest frequency where the long-term speech spectrum is within 55 dB of its peak band: speech
    recorded with a microphone reaches 7-8 kHz, a phone line stops at 3.4-4 kHz."""
    ltas = 10 * np.log10(spec.mean(axis=0))
    freqs = np.fft.rfftfreq(FRAME, 1 / SAMPLE_RATE)
    smooth = np.convolve(ltas, np.ones(5) / 5, mode="same")
    above = np.nonzero(smooth > smooth.max() - 55.0)[0]
    edge = float(freqs[above[-1]]) if len(above) else 0.0
    if source_rate:
        edge = min(edge, source_rate / 2)
    return edge


def _music_score(x: np.ndarray) -> float:
    """Fraction of time holding a steady tonal peak for 0.4 s or more.

    Music (and hum) keeps spectral peaks at exactly the same frequency for the length of a note;
    a voice's harmonics glide with its pitch, so they rarely stay in one 16 Hz bin that long.
    """
    n_fft, hop = 1024, 512
    n = (len(x) - n_fft) // hop + 1
    if n < 20:
        return 0.0
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    spec = 10 * np.log10(np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft), axis=1))[:, 5:320] ** 2 + _EPS)  # 80-5000 Hz
    # A peak: a local maximum standing 12 dB above the frame's median level around it.
    local = np.maximum(np.roll(spec, 1, axis=1), np.roll(spec, -1, axis=1))
    floor = np.median(spec, axis=1, keepdims=True)
    peaks = (spec >= local) & (spec > floor + 12.0) & (spec > spec.max() - 70.0)
    # Allow one bin of drift so a note that sits between bins still counts as steady.
    widened = peaks | np.roll(peaks, 1, axis=1) | np.roll(peaks, -1, axis=1)
    need = int(round(0.4 * SAMPLE_RATE / hop))
    run = np.zeros(spec.shape[1], int)
    steady = np.zeros(n, bool)
    for i in range(n):
        run = np.where(widened[i], run + 1, 0)
        if (run >= need).sum() >= 2:  # two steady partials: a note with harmonics, or a chord
            steady[i] = True
    return float(steady.mean())


_MEL = None


def _mel_filters(n_mels: int = 26) -> np.ndarray:
    global _MEL
    if _MEL is None:
        freqs = np.fft.rfftfreq(FRAME, 1 / SAMPLE_RATE)
        mel = 2595 * np.log10(1 + np.array([60.0, 7600.0]) / 700)
        edges = 700 * (10 ** (np.linspace(mel[0], mel[1], n_mels + 2) / 2595) - 1)
        bank = np.zeros((n_mels, len(freqs)))
        for m in range(n_mels):
            lo, mid, hi = edges[m : m + 3]
            bank[m] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
        _MEL = bank
    return _MEL


def _pitch(frames: np.ndarray) -> np.ndarray:
    """F0 in Hz per frame from the autocorrelation peak (70-400 Hz); NaN where the frame is unvoiced."""
    spec = np.fft.rfft(frames * _WINDOW, n=2 * FRAME, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :FRAME]
    ac = ac / (ac[:, :1] + _EPS)
    lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 70
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    strength = ac[np.arange(len(ac)), lag]
    f0 = SAMPLE_RATE / lag.astype(float)
    f0[strength < 0.45] = np.nan
    return f0


def _speaker_separation(frames: np.ndarray, spec: np.ndarray, speech_mask: np.ndarray, power: np.ndarray) -> float:
    """How clearly the speech splits into two voices.

    The speech is cut into 1.5 s windows, each described by its mean log-mel spectrum (timbre, channel)
    and median pitch; two-means clustering on the standardised descriptions then gives the distance
    between the two centroids in units of the spread within clusters. One voice spreads evenly (small
    value); two voices form two clumps (large value), provided each has a fair share of the windows.
    """
    loud = speech_mask & (power > np.percentile(power[speech_mask], 30)) if speech_mask.any() else speech_mask
    idx = np.nonzero(loud)[0]
    per_window = int(1.5 * SAMPLE_RATE / FRAME)
    n_windows = len(idx) // per_window
    if n_windows < 4:
        return 0.0
    logmel = np.log(spec[idx] @ _mel_filters().T + _EPS)
    f0 = _pitch(frames[idx])
    feats = []
    for w in range(n_windows):
        sl = slice(w * per_window, (w + 1) * per_window)
        pitch = np.nanmedian(f0[sl]) if np.isfinite(f0[sl]).any() else np.nan
        feats.append(np.concatenate([logmel[sl].mean(axis=0), [np.log(pitch) * 8 if np.isfinite(pitch) else np.nan]]))
    x = np.array(feats)
    col_mean = np.nanmean(x, axis=0)
    x = np.where(np.isnan(x), col_mean, x)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
    x[:, -1] *= 3.0  # pitch separates voices better than 26 correlated timbre bands; weigh it as several
    return _two_means_separation(x)


def speaker_mismatch(x: np.ndarray, segments: list[SpeechSegment]) -> float | None:
    """Share of utterance pairs that sound like two different people (0 for one clear voice).

    Each utterance (a VAD segment, cut to at most 6 s) gets a Resemblyzer embedding; a pair whose
    cosine similarity is under 0.6 sounds like two people (same voice across sentences: 0.75-1.0,
    different voices: 0.4-0.7 on the test set). One voice in noise or on a phone line still has under
    a quarter of its pairs there; two voices taking turns have about half. None without the encoder.
    """
    if not speaker_embedding.available():
        return None
    min_len = speaker_embedding.PARTIAL_FRAMES * speaker_embedding.HOP
    step = int(UTTERANCE_MAX_S * SAMPLE_RATE)
    utterances = []
    for s in segments:
        for a in range(s.start, s.end, step):
            b = min(s.end, a + step)
            if b - a >= min_len:
                utterances.append(x[a:b])
    if len(utterances) < 3:
        return 0.0
    emb = speaker_embedding.utterance_embeddings(utterances)
    if emb is None:
        return 0.0
    sim = emb @ emb.T
    pairs = sim[np.triu_indices(len(emb), k=1)]
    return float(np.mean(pairs < PAIR_DIFFERENT))


def _two_means_separation(x: np.ndarray, iterations: int = 20) -> float:
    # Start from the two windows farthest apart (deterministic, no random restarts needed).
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    a, b = np.unravel_index(np.argmax(d), d.shape)
    centres = x[[a, b]].copy()
    labels = np.zeros(len(x), int)
    for _ in range(iterations):
        labels = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
        for k in (0, 1):
            if (labels == k).any():
                centres[k] = x[labels == k].mean(axis=0)
    smaller = min((labels == 0).sum(), (labels == 1).sum())
    if smaller < max(2, 0.15 * len(x)):
        return 0.0  # one odd window (a cough, a laugh) is not a second speaker
    within = np.sqrt(((x - centres[labels]) ** 2).sum(axis=1).mean())
    return float(np.linalg.norm(centres[0] - centres[1]) / (within + 1e-6))


def _longest_pause(segments: list[SpeechSegment], n_samples: int) -> float:
    if not segments:
        return n_samples / SAMPLE_RATE
    gaps = [b.start - a.end for a, b in zip(segments, segments[1:], strict=False)]
    return max(gaps, default=0) / SAMPLE_RATE


def _biquad(x: np.ndarray, b: tuple[float, float, float], a: tuple[float, float, float]) -> np.ndarray:
    # Direct form via numpy is a Python loop; the frequency-domain product is exact enough for loudness.
    n = 1 << int(np.ceil(np.log2(len(x) + 1)))
    w = np.exp(-1j * np.pi * np.arange(n // 2 + 1) / (n // 2))
    h = (b[0] + b[1] * w + b[2] * w**2) / (a[0] + a[1] * w + a[2] * w**2)
    return np.fft.irfft(np.fft.rfft(x, n) * h, n)[: len(x)]


def integrated_loudness(x: np.ndarray) -> float:
    """BS.1770 integrated loudness in LUFS: K-weighting (shelf + high-pass), 400 ms blocks, -70 LUFS
    absolute gate and -10 LU relative gate. The filter coefficients are the standard's 48 kHz ones
    re-derived for 16 kHz via the bilinear transform, so the figure is close to, not exactly, BS.1770."""
    if len(x) < SAMPLE_RATE // 2:
        return -70.0
    y = _biquad(x.astype(np.float64), *_shelf_16k())
    y = _biquad(y, *_highpass_16k())
    block, hop = int(0.4 * SAMPLE_RATE), int(0.1 * SAMPLE_RATE)
    n = (len(y) - block) // hop + 1
    cumsum = np.concatenate([[0.0], np.cumsum(y**2)])
    ms = (cumsum[np.arange(n) * hop + block] - cumsum[np.arange(n) * hop]) / block
    lk = -0.691 + 10 * np.log10(ms + _EPS)
    gated = ms[lk > -70]
    if not len(gated):
        return -70.0
    rel = -0.691 + 10 * np.log10(gated.mean()) - 10
    gated = ms[(lk > -70) & (lk > rel)]
    return float(-0.691 + 10 * np.log10(gated.mean() + _EPS))


def _shelf_16k() -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    # High shelf: +4 dB above ~1.5 kHz, Q 0.707 (BS.1770 stage 1 analog prototype).
    f0, gain_db, q = 1681.97, 3.99984, 0.70717
    k = np.tan(np.pi * f0 / SAMPLE_RATE)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    b = ((vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0)
    a = (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0)
    return b, a


def _highpass_16k() -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    f0, q = 38.135, 0.5003
    k = np.tan(np.pi * f0 / SAMPLE_RATE)
    a0 = 1 + k / q + k * k
    b = (1.0, -2.0, 1.0)
    a = (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0)
    return b, a
