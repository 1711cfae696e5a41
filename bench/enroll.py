"""Enrollment speed, printed as figures (not a test).

  1. time to analyse 60 s of speech from an uploaded WAV: decode, VAD, quality report (with speaker
     embeddings), reference clip (goal <= 2 s on a 2-core machine), with the parts' shares
  2. live coaching: delay from a problem appearing in the pushed audio to its advice event, in audio
     time and in compute time (goal <= 500 ms), and the cost per 20 ms chunk
  3. with --accuracy: how often each quality check is right (bench/enroll_accuracy.py)

Run: python bench/enroll.py [--accuracy]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.enrollment

from tests.enrollment import recordings as r  # noqa: E402
from voxroom.models.audio_decode import decode_audio, encode_wav  # noqa: E402
from voxroom.models.enrollment import quality  # noqa: E402
from voxroom.models.enrollment.live import LiveCoach  # noqa: E402
from voxroom.models.enrollment.reference import choose_reference  # noqa: E402
from voxroom.models.vad import FRAME, speech_probabilities, speech_segments  # noqa: E402

CHUNK = 320  # 20 ms




def _wav16k(x: np.ndarray) -> bytes:
    return encode_wav(x, 16000)


def analysis_speed() -> None:
    import torch

    x = r.one_speaker(r.CODEC2, 60.0)  # 60 s of one woman reading, pauses included
    upload = _wav16k(x)
    print(f"1. analysis of a {len(x) / 16000:.0f} s upload (torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} cores)")
    parts: dict[str, list[float]] = {"decode": [], "vad": [], "quality": [], "reference": [], "total": []}
    for run in range(4):
        t0 = time.perf_counter()
        audio = decode_audio(upload).samples
        t1 = time.perf_counter()
        segs = speech_segments(audio)
        t2 = time.perf_counter()
        report = quality.analyse(audio, segments=segs)
        t3 = time.perf_counter()
        choose_reference(audio, segs)
        t4 = time.perf_counter()
        if run == 0:
            print(f"   first call (loads VAD and speaker encoder): {t4 - t0:.2f} s; "
                  f"speech {report.speech_s:.1f} s, verdict {report.verdict}")
            continue
        for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
            parts[k].append(v)
    print("   median of 3 warm runs: " + ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in parts.items()))
    t = time.perf_counter()
    quality.speaker_mismatch(audio, segs)
    print(f"   of which speaker embeddings: {time.perf_counter() - t:.2f} s   (goal: total <= 2 s)")


def _first_advice(x: np.ndarray, code: str, cause_s: float, coach: LiveCoach | None = None):
    """Push x in 20 ms chunks; return (audio delay, compute delay) of the first `code` advice after cause_s."""
    coach = coach or LiveCoach()
    compute = 0.0
    for i in range(0, len(x), CHUNK):
        t = time.perf_counter()
        update = coach.push(x[i : i + CHUNK])
        spent = time.perf_counter() - t
        if (i + CHUNK) / 16000 > cause_s:
            compute += spent
        for a in update.advice:
            if a.code == code and a.time >= cause_s:
                return a.time - cause_s, compute
    return None, compute


def live_delays() -> None:
    print("\n2. live advice delay (audio time from the cause to the event; compute = CPU time spent on the "
          "chunks in between)")
    clip = r.load(r.CODEC2)
    gap = np.zeros(int(0.4 * 16000), np.float32)
    base = np.concatenate([clip, gap, clip, gap])
    rows = []

    onset = 12 * 16000
    x = base.copy()
    x[onset:] = r.hard_clip(x[onset:], 12)
    first = onset + int(np.argmax(np.abs(x[onset:]) >= 0.99))
    rows.append(("clipping (from the first clipped sample)", *_first_advice(x, "clipping", first / 16000)))

    x = base.copy()
    x[int(5 * 16000):] = r.add_noise(base, 12)[int(5 * 16000):]
    rows.append(("background noise, starts mid-sentence", *_first_advice(x, "noise", 5.0)))

    x = base.copy()
    x[int(5 * 16000):] = r.add_babble(base, 10)[int(5 * 16000):]
    rows.append(("babble noise, starts mid-sentence", *_first_advice(x, "noise", 5.0)))

    q = r.quiet(base, -30)
    start = int(np.argmax(speech_probabilities(q) >= 0.5)) * FRAME / 16000
    rows.append(("too quiet (from the first speech)", *_first_advice(q, "too_quiet", start)))

    x = base.copy()
    per = len(clip) + len(gap)
    x[per:] = r.quiet(x[per:], -30)
    rows.append(("too quiet after a sudden 30 dB drop", *_first_advice(x, "too_quiet", per / 16000)))

    awb = r.load(r.AWB)
    fast = np.interp(np.arange(0, len(awb), 1.7), np.arange(len(awb)), awb).astype(np.float32)
    coach = LiveCoach()
    text = "And you always want to see it in the superlative degree."
    coach.start_sentence(text)
    t = time.perf_counter()
    for i in range(0, len(fast), CHUNK):
        coach.push(fast[i : i + CHUNK])
    advice = coach.start_sentence(text)
    pace_compute = time.perf_counter() - t
    end_of_speech = (len(fast) - int(0.4 * 16000 / 1.7)) / 16000
    rows.append(("speak slower (1.7x; judged when the next sentence shows)",
                 (coach.time - end_of_speech) if advice else None, pace_compute))

    for name, audio_delay, compute in rows:
        shown = f"{audio_delay * 1000:6.0f} ms" if audio_delay is not None else "  never "
        print(f"   {name:58s} audio {shown}   compute {compute * 1000:6.1f} ms")

    coach = LiveCoach()
    x = r.one_speaker(r.LINDA, 30)
    t = time.perf_counter()
    for i in range(0, len(x), CHUNK):
        coach.push(x[i : i + CHUNK])
    per_chunk = (time.perf_counter() - t) / (len(x) / CHUNK)
    print(f"   cost: {per_chunk * 1e6:.0f} us per 20 ms chunk ({per_chunk / 0.02 * 100:.2f} % of one core)")


if __name__ == "__main__":
    analysis_speed()
    live_delays()
    if "--accuracy" in sys.argv:
        print("\n3. accuracy of the quality checks on the degraded test set")
        from bench.enroll_accuracy import main as accuracy

        accuracy()
