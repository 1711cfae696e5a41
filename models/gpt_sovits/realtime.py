"""Start speaking only when the rest of the sentence can follow without a gap.

On a fast machine GPT-SoVITS makes audio faster than it plays, and the first chunk goes out at
once. On a slow one (a 2-core CPU without AVX-512 streams fp32 at ~0.7x real time) releasing the
first chunk at once means the listener hears the sentence stutter. `RealtimeGate` holds a piece's
first audio until what is already queued for playback, plus what is held, covers the time the rest
of the piece still needs to be made:

    ahead >= made_by(k) / rate - made_before(k)     for every chunk k still to come

(rate: audio seconds made per wall second; chunks land whole, in the decoder's rhythm), the
condition for playback never to catch up with synthesis. At a steady rate below 1 that is about
`remaining * (1 / rate - 1)` plus one chunk. A stall of up to STALL_TOLERANCE_S is allowed.
It assumes playback starts when audio is first handed over and runs in real time (true for
rooms; a client that buffers more only gains; a caller that knows audio is still queued before
the utterance, like the co-host between the pieces of one reply, says so with `queued_s`).
`rate` and the length of a piece (seconds of audio per phone) are learnt from what this engine
has made, so the gate needs no setting per machine. Once a piece's audio is released it is never
held again: later surprises cost a gap, not a silence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SECONDS_PER_PHONE = 0.085  # a first guess for a piece's length; replaced by what is measured
MARGIN = 1.15  # plan as if the machine were this much slower than measured
# A hiccup this short is accepted rather than delaying the start: without it a machine that is
# comfortably faster than real time would hold its first chunk (~0.3 s) to save a ~30 ms gap.
STALL_TOLERANCE_S = 0.08
EMA = 0.3  # weight of the newest measurement
# Samples each decoder push hands over, in order; the last repeats (the engine passes its own from
# StreamingSchedule.emitted_tokens(); 1280 samples a token).
DEFAULT_CHUNK_PLAN = (6 * 1280, 8 * 1280, 16 * 1280, 24 * 1280)


def playback_stall(handed: list[tuple[float, int]], sample_rate: int) -> float:
    """Seconds of silence a listener hears inside an utterance handed over as [(time, samples)],
    if playback starts with the first audio and runs in real time."""
    if not handed:
        return 0.0
    stall, clock = 0.0, handed[0][0]  # clock: when everything received so far has played
    for t, samples in handed:
        if t > clock:
            stall += t - clock
            clock = t
        clock += samples / sample_rate
    return stall


@dataclass
class RealtimeGate:
    """What the engine has learnt about itself (rate, piece length); `utterance()` starts one."""

    sample_rate: int
    clock: Callable[[], float] = time.monotonic
    rate: float | None = None  # audio seconds per wall second, measured after each piece's first chunk
    seconds_per_phone: float = SECONDS_PER_PHONE

    def utterance(self, emit: Callable[[np.ndarray], None], queued_s: float = 0.0, *, enabled: bool = True,
                  chunk_plan: tuple[int, ...] = DEFAULT_CHUNK_PLAN) -> UtteranceGate:
        """`queued_s`: the listener's audio still to play before this utterance (a cushion);
        `enabled` False hands every chunk over at once (it still learns)."""
        return UtteranceGate(self, emit, queued_s, enabled, chunk_plan)

    def learn(self, rate: float | None, seconds_per_phone: float | None) -> None:
        if rate is not None:
            self.rate = rate if self.rate is None else (1 - EMA) * self.rate + EMA * rate
        if seconds_per_phone is not None:
            self.seconds_per_phone = (1 - EMA) * self.seconds_per_phone + EMA * seconds_per_phone


class UtteranceGate:
    """One utterance's audio on its way to one listener: what has been handed over and until when it plays."""

    def __init__(self, gate: RealtimeGate, emit: Callable[[np.ndarray], None], queued_s: float,
                 enabled: bool, chunk_plan: tuple[int, ...]) -> None:
        self.gate, self.emit = gate, emit
        self.enabled, self.chunk_plan = enabled, chunk_plan
        self.play_until = gate.clock() + max(0.0, queued_s)

    def hand_over(self, audio: np.ndarray) -> None:
        now = self.gate.clock()
        self.play_until = max(self.play_until, now) + audio.size / self.gate.sample_rate
        self.emit(audio)

    def piece(self, n_phones: int, speed: float = 1.0) -> PieceGate:
        return PieceGate(self, n_phones, speed)


class PieceGate:
    """Receives one piece's audio as it is made; hands it over when it is safe to start."""

    def __init__(self, utterance: UtteranceGate, n_phones: int, speed: float) -> None:
        self.utterance, self.gate = utterance, utterance.gate
        self.n_phones, self.speed = n_phones, speed
        self.expected_s = n_phones * self.gate.seconds_per_phone / speed
        self.released = not utterance.enabled
        self.held: list[np.ndarray] = []
        self.made = 0  # samples made in this piece
        self.chunks = 0  # chunks made in this piece
        self.first_at: float | None = None  # when the first chunk was made
        self.first_samples = 0

    def _measured_rate(self) -> float | None:
        """This piece's rate since its first chunk (needs a second one)."""
        if self.first_at is None or self.made <= self.first_samples:
            return None
        elapsed = self.gate.clock() - self.first_at
        return (self.made - self.first_samples) / self.gate.sample_rate / max(elapsed, 1e-6)

    def _rate_now(self) -> float | None:
        """This piece's own rate so far, capped by what earlier pieces showed (or either alone)."""
        live, known = self._measured_rate(), self.gate.rate
        return known if live is None else live if known is None else min(live, known)

    def push(self, audio: np.ndarray) -> None:
        if not audio.size:
            return
        if self.first_at is None:
            self.first_at, self.first_samples = self.gate.clock(), audio.size
        self.made += audio.size
        self.chunks += 1
        if self.released:
            self.utterance.hand_over(audio)
            return
        self.held.append(audio)
        rate = self._rate_now()
        if rate is None:
            return  # the first chunk of the first piece: wait for a second to know the rate
        sr = self.gate.sample_rate
        ahead = max(0.0, self.utterance.play_until - self.gate.clock()) + sum(a.size for a in self.held) / sr
        if ahead >= self._cushion_needed(rate / MARGIN):
            self._release()

    def _cushion_needed(self, rate: float) -> float:
        """Seconds of audio that must be ahead of playback now for the rest of the piece to arrive in time."""
        plan, sr = self.utterance.chunk_plan, self.gate.sample_rate
        remaining = max(0.0, self.expected_s - self.made / sr)
        needed = made = 0.0
        k = self.chunks
        while made < remaining:
            chunk = min(plan[min(k, len(plan) - 1)] / sr, remaining - made)
            needed = max(needed, (made + chunk) / rate - made)  # chunk k lands then; what played before it
            made += chunk
            k += 1
        return max(0.0, needed - STALL_TOLERANCE_S)

    def _release(self) -> None:
        self.released = True
        if self.held:
            audio = np.concatenate(self.held)
            self.held = []
            self.utterance.hand_over(audio)

    def finish(self, complete: bool) -> None:
        """The piece ended (`complete`: it reached its end, not a stop): release the rest and learn."""
        if complete:
            self._release()
        length = self.made / self.gate.sample_rate * self.speed / self.n_phones if complete and self.n_phones else None
        self.gate.learn(self._measured_rate(), length)
