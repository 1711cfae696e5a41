"""RealtimeGate on a virtual clock: fast machines start at once, slow ones start late but never stutter."""

from __future__ import annotations

import numpy as np
import pytest

from voxroom.models.gpt_sovits.realtime import (
    DEFAULT_CHUNK_PLAN,
    STALL_TOLERANCE_S,
    RealtimeGate,
    playback_stall,
)
from voxroom.models.gpt_sovits.sovits_streaming import StreamingSchedule

SR = 32000
TOKEN = 1280  # samples per semantic token


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def chunk_sizes(tokens: int) -> list[int]:
    """The streaming decoder's rhythm (default StreamingSchedule), then the tail."""
    plan = StreamingSchedule().emitted_tokens()
    sizes, done = [], 0
    while done < tokens:
        n = min(plan[min(len(sizes), len(plan) - 1)], tokens - done)
        sizes.append(n * TOKEN)
        done += n
    return sizes


def speak(gate: RealtimeGate, clock: Clock, *, rate: float, tokens: int, phones: int,
          prefill_s: float = 0.3, stop_after: int | None = None, enabled: bool = True) -> list[tuple[float, int]]:
    """Make one piece at `rate` (audio s per wall s) through the gate; -> [(time handed over, samples)]."""
    out: list[tuple[float, int]] = []
    utterance = gate.utterance(lambda audio: out.append((clock.now, audio.size)), enabled=enabled)
    piece = utterance.piece(phones)
    clock.now += prefill_s
    for i, size in enumerate(chunk_sizes(tokens)):
        if stop_after is not None and i == stop_after:
            piece.finish(complete=False)
            return out
        clock.now += size / SR / rate
        piece.push(np.zeros(size, np.float32))
    piece.finish(complete=True)
    return out


def stall_s(handed: list[tuple[float, int]]) -> float:
    return playback_stall(handed, SR)


@pytest.mark.parametrize("rate", [1.8, 2.5, 10.0])
def test_a_fast_machine_starts_with_the_first_chunk(rate: float) -> None:
    clock = Clock()
    gate = RealtimeGate(SR, clock=clock, rate=rate)
    handed = speak(gate, clock, rate=rate, tokens=100, phones=50)
    first_chunk_made = 0.3 + 6 * TOKEN / SR / rate
    assert handed[0] == (first_chunk_made, 6 * TOKEN)
    assert stall_s(handed) <= STALL_TOLERANCE_S


@pytest.mark.parametrize("rate", [0.5, 0.7, 0.9, 1.1])
def test_a_slow_machine_starts_later_and_never_stutters(rate: float) -> None:
    clock = Clock()
    gate = RealtimeGate(SR, clock=clock, rate=rate, seconds_per_phone=0.08)
    handed = speak(gate, clock, rate=rate, tokens=100, phones=50)  # 4 s of audio, 50 phones x 0.08 s
    assert stall_s(handed) <= STALL_TOLERANCE_S
    assert handed[0][0] > 0.3 + 6 * TOKEN / SR / rate  # held past the first chunk
    assert sum(n for _, n in handed) == 100 * TOKEN  # nothing lost
    # Waiting costs less than the stutter it saves, and no more than the steady-rate bound needs.
    clock = Clock()
    eager = speak(RealtimeGate(SR, clock=clock), clock, rate=rate, tokens=100, phones=50, enabled=False)
    assert stall_s(eager) > 0.05
    assert handed[0][0] - eager[0][0] < 1.15 * stall_s(eager) + 24 * TOKEN / SR


def test_the_first_piece_ever_measures_the_rate_from_its_second_chunk() -> None:
    clock = Clock()
    gate = RealtimeGate(SR, clock=clock, seconds_per_phone=0.08)
    handed = speak(gate, clock, rate=0.6, tokens=100, phones=50)
    assert handed[0][1] > 6 * TOKEN  # the first chunk waited for the second
    assert stall_s(handed) <= STALL_TOLERANCE_S
    assert gate.rate is not None and abs(gate.rate - 0.6) < 0.01  # learnt for the next pieces


def test_piece_length_is_learnt_from_complete_pieces_only() -> None:
    clock = Clock()
    gate = RealtimeGate(SR, clock=clock, rate=2.0, seconds_per_phone=0.2)
    speak(gate, clock, rate=2.0, tokens=100, phones=50)  # 4 s / 50 phones = 0.08 s per phone
    assert 0.08 < gate.seconds_per_phone < 0.2
    before = gate.seconds_per_phone
    speak(gate, clock, rate=2.0, tokens=100, phones=5, stop_after=2)
    assert gate.seconds_per_phone == before


def test_a_stopped_piece_hands_over_nothing_it_held() -> None:
    clock = Clock()
    gate = RealtimeGate(SR, clock=clock, rate=0.3, seconds_per_phone=0.08)
    handed = speak(gate, clock, rate=0.3, tokens=100, phones=50, stop_after=2)
    assert handed == []  # still holding when the listener cancelled: nothing leaks out later


def test_audio_already_queued_counts_as_cushion() -> None:
    clock = Clock()
    gate = RealtimeGate(SR, clock=clock, rate=0.7, seconds_per_phone=0.08)
    out: list[tuple[float, int]] = []
    utterance = gate.utterance(lambda audio: out.append((clock.now, audio.size)))
    utterance.hand_over(np.zeros(10 * SR, np.float32))  # ten seconds still to play from an earlier piece
    piece = utterance.piece(50)
    clock.now += 0.3
    piece.push(np.zeros(6 * TOKEN, np.float32))
    assert len(out) == 2  # released at once: the queue covers the rest of this piece


def test_the_schedule_tells_the_gate_its_rhythm() -> None:
    assert StreamingSchedule().emitted_tokens() == (6, 8, 16, 24)
    assert DEFAULT_CHUNK_PLAN == tuple(n * TOKEN for n in StreamingSchedule().emitted_tokens())
    assert StreamingSchedule(first_chunk_tokens=5, chunk_tokens=4, lookahead_tokens=1, max_chunk_tokens=10
                             ).emitted_tokens() == (4, 4, 8, 10)


def test_a_caller_can_say_how_much_is_queued_before_the_utterance() -> None:
    clock = Clock()
    gate = RealtimeGate(SR, clock=clock, rate=0.7, seconds_per_phone=0.08)
    cold = speak(gate, clock, rate=0.7, tokens=100, phones=50)
    clock.now = 0.0
    out: list[tuple[float, int]] = []
    piece = gate.utterance(lambda audio: out.append((clock.now, audio.size)), queued_s=5.0).piece(50)
    clock.now += 0.3
    piece.push(np.zeros(6 * TOKEN, np.float32))
    assert out and cold[0][0] > 0.3 + 6 * TOKEN / SR / 0.7  # 5 s still playing: no need to hold this time


def test_playback_stall_counts_the_silence_between_late_chunks() -> None:
    assert playback_stall([], SR) == 0.0
    # 1 s plays 0-1 s; the next second arrives at 1.5 s (0.5 s of silence) and plays until 2.5 s,
    # so the third, there at 2.0 s, is in time.
    assert playback_stall([(0.0, SR), (1.5, SR), (2.0, SR)], SR) == 0.5
