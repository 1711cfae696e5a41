"""How often each enrollment quality check is right on the degraded test set, printed as a table.

Each case of tests/enrollment/cases.py must show exactly its expected problems; a check is right on a
case when it fires if and only if the case expects it. Also prints the MFCC/pitch speaker check (the
fallback used when resemblyzer is not installed) on the same cases, for comparison.

Then the speaker check on the evaluation set of bench/enroll_set.py (55 real voices from packages,
two-speaker takes and single-speaker takes of the same lengths): per kind of take, how many two-voice
takes are caught and how many one-voice takes are falsely flagged, with the shipped average voice and
threshold (both fitted on this whole set), and held out: with the average voice and the threshold
of the other half of the speakers (two folds, so no take is judged by anything fitted on its own
voices); the old utterance-pair check beside it; and for interjections whether the span reported
covers the real one.

Run: python bench/enroll_accuracy.py [--cache DIR] [--skip-degraded]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.enrollment

from bench.enroll_set import CACHE, Take, build, fetch, speaker_voice, speakers  # noqa: E402
from tests.enrollment.cases import CHECKS, cases  # noqa: E402
from voxroom.models.enrollment import quality, speaker_change  # noqa: E402
from voxroom.models.vad import speech_segments  # noqa: E402

GOAL_CAUGHT, GOAL_FALSE = 0.95, 0.05


def degraded_set() -> None:
    rows = []
    right = {c: 0 for c in CHECKS}
    mfcc_right = 0
    verdict_right = 0
    all_cases = cases()
    for case in all_cases:
        report = quality.analyse(case.make())
        found = report.codes() & set(CHECKS)
        for check in CHECKS:
            right[check] += (check in found) == (check in case.expect)
        mfcc_flag = report.speaker_separation > quality.SPEAKER_WARN
        mfcc_right += mfcc_flag == ("several_speakers" in case.expect)
        verdict_right += report.verdict == case.verdict
        ok = "ok " if found == set(case.expect) and report.verdict == case.verdict else "MISS"
        rows.append(
            f"{ok} {case.name:34s} expect={','.join(sorted(case.expect)) or '-':22s} "
            f"found={','.join(sorted(found)) or '-':22s} {report.verdict:21s} "
            f"snr={report.snr_db:5.1f} music={report.music_score:.2f} spk_mismatch={report.speaker_mismatch or 0:.2f} "
            f"mfcc_sep={report.speaker_separation:.2f} bw={report.bandwidth_hz:5.0f}"
        )
    n = len(all_cases)
    print("\n".join(rows))
    print(f"\n{'check':28s} right / cases")
    for check in CHECKS:
        print(f"{check:28s} {right[check]:2d} / {n}  ({100 * right[check] / n:.0f} %)")
    print(f"{'several_speakers (MFCC alt.)':28s} {mfcc_right:2d} / {n}  ({100 * mfcc_right / n:.0f} %)")
    print(f"{'verdict':28s} {verdict_right:2d} / {n}  ({100 * verdict_right / n:.0f} %)")


def speaker_set(cache: Path) -> None:
    voices = speakers(fetch(cache))
    takes = build(voices)
    # Held out: fold f is judged with the average voice of the other fold's speakers and the threshold
    # that keeps false alarms at 5 % on the other fold's one-voice takes; nothing of fold f is used.
    centres = [np.mean([speaker_voice(sp) for sp in voices if sp.fold != f], axis=0) for f in (0, 1)]
    shipped_centre = speaker_change.average_voice()
    sims, held, old, spans = [], [], [], []
    for t in takes:
        segments = speech_segments(t.audio)
        found = speaker_change.take_voices(t.audio, segments)
        if found is None:
            raise SystemExit("resemblyzer is needed")
        change = speaker_change.split(*found, shipped_centre)
        sims.append(change.similarity)
        spans.append(change.other)
        held.append([speaker_change.split(*found, c).similarity for c in centres])
        old.append(quality.speaker_mismatch(t.audio, segments) or 0.0)
    sim, held_sim, old_arr = np.array(sims), np.array(held), np.array(old)
    two = np.array([t.two_voices for t in takes])
    fold = np.array([t.fold for t in takes])
    held_out = np.zeros(len(takes), bool)
    for f in (0, 1):
        calib = held_sim[(fold != f) & ~two, f]
        threshold = float(np.quantile(calib, GOAL_FALSE))
        held_out[fold == f] = held_sim[fold == f, f] < threshold
        print(f"fold {f}: average voice of the other fold's {sum(sp.fold != f for sp in voices)} speakers, "
              f"threshold {threshold:.3f} from its {len(calib)} one-voice takes")
    print(f"whole set: threshold {np.quantile(sim[~two], GOAL_FALSE):.3f} at 5 % false alarms "
          f"(shipped: {speaker_change.SAME_VOICE_MIN})")
    shipped = sim < speaker_change.SAME_VOICE_MIN
    old_flag = old_arr > quality.SPEAKER_MISMATCH_MAX
    print(f"\n{'takes':14s} {'n':>4s} {'shipped':>9s} {'held-out':>9s} {'old check':>9s}   "
          f"(two voices: share caught, goal >= 95 %; one voice: share flagged, goal <= 5 %)")
    for kind in ("alternating", "interjection", "conversation", "single-12s", "single-20s", "single-30s"):
        m = np.array([t.kind == kind for t in takes])
        if m.any():
            print(f"{kind:14s} {m.sum():4d} {100 * shipped[m].mean():8.0f}% {100 * held_out[m].mean():8.0f}% "
                  f"{100 * old_flag[m].mean():8.0f}%")
    for label, m in (("all two-voice", two), ("all one-voice", ~two)):
        print(f"{label:14s} {m.sum():4d} {100 * shipped[m].mean():8.0f}% {100 * held_out[m].mean():8.0f}% "
              f"{100 * old_flag[m].mean():8.0f}%")
    located = [_covers(s, t) for s, t, flag in zip(spans, takes, shipped, strict=True)
               if t.kind == "interjection" and flag]
    if located:
        print(f"\ninterjections caught whose reported span overlaps the real one: {sum(located)} / {len(located)}")
    print(f"similarity: one voice {np.percentile(sim[~two], [5, 50]).round(3)} (5th, 50th percentile), "
          f"two voices {np.percentile(sim[two], [50, 95]).round(3)} (50th, 95th)")


def _covers(found: list[speaker_change.VoiceSpan], take: Take) -> bool:
    return any(s.start < b and a < s.end for s in found for a, b in take.other)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=Path, default=CACHE, help="where bench/enroll_set.py keeps its downloads")
    parser.add_argument("--skip-degraded", action="store_true", help="only the speaker evaluation set")
    args = parser.parse_args()
    if not args.skip_degraded:
        degraded_set()
        print()
    speaker_set(args.cache)


if __name__ == "__main__":
    main()
