"""Where in a take another voice speaks: speaker embeddings of short windows, split into two voices.

The speech is cut into units (the VAD's segments, those of 6 s or more into pieces of 3-6 s); each
unit's voice is the mean of the Resemblyzer embeddings (speaker_embedding.py) of its 1.6 s windows
every 0.4 s, less the average voice (voice_centre.npy), then scaled to length 1. The encoder's
outputs are all non-negative, so any two voices point roughly the same way (cosine 0.7-0.9 for two
people of one sex); taking away what every voice shares leaves what tells them apart (one voice
mostly stays above 0.6, two people fall to 0.4 and far below). Weighted two-means on those unit vectors
(cosine, restarted from the units least like the whole take, the best fit kept) splits them into
the main voice and the rest, which must hold at least 1.5 s of speech; the cosine between the two
groups' centroids says how different they sound. The average voice and the threshold are
calibrated on bench/enroll_set.py (55 real voices from packages, six languages, both sexes): the
mean over its speakers, and the threshold that each half of its speakers picks for the other (the
5 % quantile of one half's one-voice takes: 0.544 both ways; the whole set's is 0.578).
bench/enroll_accuracy.py prints how often it is right, with the shipped values and held out.
The minority group's units, merged, are where the other voice is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from voxroom.models.enrollment import speaker_embedding
from voxroom.models.vad import SAMPLE_RATE, SpeechSegment

WINDOW = speaker_embedding.PARTIAL_FRAMES * speaker_embedding.HOP  # 1.6 s
HOP_S = 0.4
MIN_SEGMENT_S = 1.0  # shorter bursts (a cough, "uh") are not judged
UNIT_S = 3.0  # segments of 6 s or more are judged in pieces of 3-6 s, so a turn inside one still shows
MIN_OTHER_S = 1.5  # the other voice speaks for at least this long (an interjection: 2-3 s)
RESTARTS = 12  # two-means started from each of the units least like the whole take
SAME_VOICE_MIN = 0.55  # centroid cosine under which the two groups are two people (calibrated: see above)
CENTRE_FILE = Path(__file__).with_name("voice_centre.npy")  # written by bench/enroll_set.py --write-centre


@dataclass(frozen=True)
class VoiceSpan:
    start: float  # seconds into the take
    end: float


@dataclass(frozen=True)
class SpeakerChange:
    similarity: float  # cosine between the two groups' centroids (1.0: nothing to split)
    other: list[VoiceSpan]  # where the minority voice speaks

    @property
    def several(self) -> bool:
        return self.similarity < SAME_VOICE_MIN and bool(self.other)


def units(segments: list[SpeechSegment]) -> list[tuple[int, int]]:
    """The stretches judged as one voice each: VAD segments of 1 s or more, long ones cut into 3-6 s pieces
    (never shorter: two halves of one sentence sound less alike than two whole sentences)."""
    out: list[tuple[int, int]] = []
    for s in segments:
        if s.end - s.start < MIN_SEGMENT_S * SAMPLE_RATE:
            continue
        n = max(1, int((s.end - s.start) // (UNIT_S * SAMPLE_RATE)))  # pieces of 3-6 s
        edges = np.linspace(s.start, s.end, n + 1).astype(int)
        out += [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return out


def speaker_change(x: np.ndarray, segments: list[SpeechSegment]) -> SpeakerChange | None:
    """Split the take's speech into two voices; None without the encoder."""
    found = take_voices(x, segments)
    return None if found is None else split(*found, average_voice())


def take_voices(x: np.ndarray, segments: list[SpeechSegment]) -> tuple[list[tuple[int, int]], np.ndarray] | None:
    """The take's units and each unit's voice (unit_voices); None without the encoder. Fewer than
    two units are not measured: there is nothing to split."""
    if not speaker_embedding.available():
        return None
    spans = units(segments)
    if len(spans) < 2:
        return spans, np.zeros((len(spans), speaker_embedding.EMBEDDING_SIZE))
    voices = unit_voices(np.asarray(x, np.float32), spans)
    return None if voices is None else (spans, voices)


def split(spans: list[tuple[int, int]], voices: np.ndarray, centre: np.ndarray) -> SpeakerChange:
    """Two voices from the units' voices (take_voices), with `centre`, the average voice, taken away."""
    if len(spans) < 2:
        return SpeakerChange(1.0, [])
    emb = _rows_unit(voices - centre)
    weight = np.array([(b - a) / SAMPLE_RATE for a, b in spans])
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    mean = _unit(emb.T @ weight)
    for start in np.argsort(emb @ mean)[:RESTARTS]:
        labels, centres = _two_means(emb, weight, mean, int(start))
        if min(weight[labels == 0].sum(), weight[labels == 1].sum()) < MIN_OTHER_S:
            continue
        fit = float((weight * (emb * centres[labels]).sum(axis=1)).sum())
        if best is None or fit > best[0]:
            best = (fit, labels, centres)
    if best is None:
        return SpeakerChange(1.0, [])
    _, labels, centres = best
    minority = 0 if weight[labels == 0].sum() < weight[labels == 1].sum() else 1
    other = [spans[i] for i in np.nonzero(labels == minority)[0]]
    return SpeakerChange(float(centres[0] @ centres[1]), _merged(other))


@cache
def average_voice() -> np.ndarray:
    """What every voice shares: the mean of many speakers' voices (see CENTRE_FILE)."""
    centre = np.load(CENTRE_FILE)
    if centre.shape != (speaker_embedding.EMBEDDING_SIZE,):
        raise ValueError(f"{CENTRE_FILE} holds {centre.shape}, not one voice")
    return centre.astype(np.float64)


def unit_voices(x: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray | None:
    """Each unit's voice: the mean of its 1.6 s windows every 0.4 s (one centred window if shorter)."""
    hop = int(HOP_S * SAMPLE_RATE)
    starts: list[int] = []
    owner: list[int] = []
    for k, (a, b) in enumerate(spans):
        these = [max(0, (a + b - WINDOW) // 2)] if b - a <= WINDOW else list(range(a, b - WINDOW + 1, hop))
        starts += these
        owner += [k] * len(these)
    windows = speaker_embedding.window_embeddings(x, starts)
    if windows is None:
        return None
    owners = np.array(owner)
    return np.stack([_unit(windows[owners == k].mean(axis=0)) for k in range(len(spans))])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + 1e-12)


def _rows_unit(m: np.ndarray) -> np.ndarray:
    return m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-12)


def _two_means(emb: np.ndarray, weight: np.ndarray, mean: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted two-means on unit vectors (cosine), from the whole take's voice and one unit."""
    centres = np.stack([mean, emb[start]])
    labels = np.zeros(len(emb), int)
    for _ in range(15):
        labels = np.argmax(emb @ centres.T, axis=1)
        for k in (0, 1):
            if (labels == k).any():
                centres[k] = _unit(emb[labels == k].T @ weight[labels == k])
    return labels, centres


def _merged(spans: list[tuple[int, int]]) -> list[VoiceSpan]:
    """Units merged where less than half a second apart, as seconds."""
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + SAMPLE_RATE // 2:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [VoiceSpan(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in out]
