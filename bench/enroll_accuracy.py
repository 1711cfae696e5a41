"""How often each enrollment quality check is right on the degraded test set, printed as a table.

Each case of tests/enrollment/cases.py must show exactly its expected problems; a check is right on a
case when it fires if and only if the case expects it. Also prints the MFCC/pitch speaker check (the
fallback used when resemblyzer is not installed) on the same cases, for comparison.

Run: python bench/enroll_accuracy.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.enrollment

from tests.enrollment.cases import CHECKS, cases  # noqa: E402
from voxroom.models.enrollment import quality  # noqa: E402


def main() -> None:
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


if __name__ == "__main__":
    main()
