"""The enrollment test set: clean recordings and degraded copies, each with the problems it must show.

Shared by test_quality.py and bench/enroll_accuracy.py (which prints how often each check is right).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tests.enrollment import recordings as r

# The checks the quality report makes that the test set exercises.
CHECKS = ("noise", "clipping", "too_quiet", "narrow_band", "music", "several_speakers", "long_pauses",
          "too_little_speech")


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], np.ndarray]
    expect: frozenset[str]  # problem codes that must be reported (and no other of CHECKS)
    verdict: str  # the verdict it must get


def _c(name: str, make: Callable[[], np.ndarray], expect: tuple[str, ...], verdict: str) -> Case:
    return Case(name, make, frozenset(expect), verdict)


def cases(seconds: float = 60.0) -> list[Case]:
    def one(n: str) -> Callable[[], np.ndarray]:
        return lambda: r.one_speaker(n, seconds)

    codec2, awb = one(r.CODEC2), one(r.AWB)
    out = [_c(f"clean {n.split('__')[1][:18]}", one(n), (), "usable") for n in r.ALL]
    out += [
        _c("white noise 30 dB", lambda: r.add_noise(codec2(), 30), (), "usable"),
        _c("white noise 15 dB", lambda: r.add_noise(codec2(), 15), ("noise",), "usable_with_warnings"),
        _c("white noise 5 dB", lambda: r.add_noise(awb(), 5), ("noise",), "rerecord"),
        _c("babble 15 dB", lambda: r.add_babble(awb(), 15), ("noise",), "usable_with_warnings"),
        _c("babble 5 dB", lambda: r.add_babble(awb(), 5), ("noise",), "rerecord"),
        _c("hard clipping +6 dB", lambda: r.hard_clip(codec2(), 6), ("clipping",), "usable_with_warnings"),
        _c("hard clipping +12 dB", lambda: r.hard_clip(awb(), 12), ("clipping",), "rerecord"),
        _c("telephone band (codec2)", lambda: r.telephone(codec2()), ("narrow_band",), "rerecord"),
        _c("telephone band (awb)", lambda: r.telephone(awb()), ("narrow_band",), "rerecord"),
        _c("music underlay 10 dB", lambda: r.add_music(codec2(), 10), ("music", "noise"), "rerecord"),
        _c("music underlay 20 dB", lambda: r.add_music(awb(), 20), ("music",), "usable_with_warnings"),
        _c("two speakers m/f (awb, slt)", lambda: r.two_speakers(seconds), ("several_speakers",), "rerecord"),
        _c("two speakers f/f (linda, codec2)", lambda: r.two_speakers(seconds, r.LINDA, r.CODEC2),
           ("several_speakers",), "rerecord"),
        _c("two speakers m/m (awb, thorsten)", lambda: r.two_speakers(seconds, r.AWB, r.THORSTEN),
           ("several_speakers",), "rerecord"),
        _c("five voices, 12 s each", lambda: np.concatenate([r.one_speaker(n, seconds / 5) for n in r.ALL]),
           ("several_speakers",), "rerecord"),
        _c("three voices, 20 s each",
           lambda: np.concatenate([r.one_speaker(n, seconds / 3) for n in (r.AWB, r.SLT, r.THORSTEN)]),
           ("several_speakers",), "rerecord"),
        _c("two speakers overlapped", lambda: r.overlapped_speakers(seconds), ("several_speakers",), "rerecord"),
        _c("codec2 as recorded (two readers)", lambda: r.one_speaker(r.CODEC2, seconds, as_recorded=True),
           ("several_speakers",), "rerecord"),
        _c("long silences", lambda: r.long_silences(codec2()), ("long_pauses",), "usable_with_warnings"),
        _c("quiet (-30 dB)", lambda: r.quiet(codec2()), ("too_quiet",), "rerecord"),
        _c("only 8 s of speech", lambda: r.one_speaker(r.AWB, 8.0), ("too_little_speech",), "usable_with_warnings"),
    ]
    return out
