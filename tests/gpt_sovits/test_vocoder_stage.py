"""The SoVITS stage (vocoder_stage.py): every stream's windows off the T2S thread, one owner.

With the golden tiny SoVITS model and seeded noise: a job's audio through the stage, whatever the
interleaving of tokens, other jobs and steps, equals its decoder fed one token at a time (exact: the
same windows from the same tokens); first windows go ahead of later ones; cancelling one job or a
failure in one job's window leaves the others exact; close() releases every waiter, also through
the engine. A stateful property test (a cheap fake decoder) checks the bookkeeping under random
sequences of open / push / finish / cancel / fail / step / close. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from safetensors.torch import load_file

from voxroom.models.engine import SynthesisError, Voice
from voxroom.models.gpt_sovits.engine import GPTSoVITSEngine, SynthesisOptions
from voxroom.models.gpt_sovits.sovits import SoVITSModel, Timbre, load_sovits
from voxroom.models.gpt_sovits.sovits_streaming import StreamingDecoder
from voxroom.models.gpt_sovits.vocoder_stage import StageClosed, VocoderJob, VocoderStage

from .device_checks import read_speech
from .model_folders import GOLDEN, write_models_dir

TINY = GOLDEN / "models" / "s2_tiny_v2.pth"
pytestmark = pytest.mark.skipif(not TINY.is_file(), reason=f"golden data not found at {GOLDEN}")


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def model() -> SoVITSModel:
    return load_sovits(TINY)[0]


@dataclass
class Stream:
    """One utterance's inputs: phones, tokens, timbre, speed and noise seed."""

    text: torch.Tensor
    codes: list[int]
    timbre: Timbre
    speed: float
    seed: int

    def decoder(self, model: SoVITSModel) -> StreamingDecoder:
        return StreamingDecoder(model, self.text, self.timbre, noise_scale=0.5, speed=self.speed,
                                generator=torch.Generator().manual_seed(self.seed))

    def alone(self, model: SoVITSModel) -> np.ndarray:
        """Its audio decoded one token at a time, as the T2S hands tokens over, with nothing else around."""
        decoder = self.decoder(model)
        return np.concatenate([*(decoder.push([c]) for c in self.codes), decoder.finish()])


@pytest.fixture(scope="module")
def streams(model: SoVITSModel) -> list[Stream]:
    gold = load_file(GOLDEN / "s2_v2" / "decode_ns0_speed1.0.safetensors")
    spec = load_file(GOLDEN / "s2" / "spectrogram.safetensors")["spec_a"]
    timbre = model.reference_embedding(spec)
    text, codes = gold["text"], gold["codes"][0, 0].tolist()
    extra = torch.randint(0, 1024, (60,), generator=torch.Generator().manual_seed(1)).tolist()
    # Different lengths, phones, speeds and seeds.
    return [Stream(text, codes + extra[:20], timbre, 1.0, 1), Stream(text[:, 3:], extra + codes[:10], timbre, 1.0, 2),
            Stream(text, codes[5:] + extra[:35], timbre, 1.3, 3)]


@dataclass
class Received:
    """What a job handed out: its audio, and how it ended (on_end calls)."""

    audio: list[np.ndarray] = field(default_factory=list)
    ends: list[BaseException | None] = field(default_factory=list)

    def joined(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)


def open_job(stage: VocoderStage, decoder: StreamingDecoder, received: Received, *, first_audio: bool = True,
             served: list[int] | None = None, label: int = 0) -> VocoderJob:
    def deliver(audio: np.ndarray) -> None:
        received.audio.append(audio)
        if served is not None:
            served.append(label)

    return stage.open(decoder, deliver=deliver, on_end=received.ends.append, first_audio=first_audio)


def run_interleaved(stage: VocoderStage, jobs: list[VocoderJob], codes: list[list[int]], seed: int,
                    cancel: tuple[int, int] | None = None) -> None:
    """Tokens in random bursts to each job with random steps between; `cancel` (job, after how many
    of its tokens) cancels one mid-way. Then every remaining job is finished and the stage drained."""
    rng = random.Random(seed)
    sent = [0] * len(jobs)
    while any(s < len(c) for s, c in zip(sent, codes, strict=True)):
        i = rng.randrange(len(jobs))
        burst = codes[i][sent[i] : sent[i] + rng.randint(1, 12)]
        for token in burst:
            jobs[i].push(token)
        sent[i] += len(burst)
        if cancel is not None and i == cancel[0] and sent[i] >= cancel[1]:
            jobs[i].cancel()
        for _ in range(rng.randint(0, 3)):
            stage.step()
    for job in jobs:
        job.finish()
    while stage.step():
        pass


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_job_gets_exactly_its_audio_alone_whatever_the_interleaving(model: SoVITSModel, streams: list[Stream],
                                                                        seed: int) -> None:
    stage = VocoderStage(threaded=False)
    received = [Received() for _ in streams]
    jobs = [open_job(stage, s.decoder(model), r) for s, r in zip(streams, received, strict=True)]
    run_interleaved(stage, jobs, [s.codes for s in streams], seed)
    for s, r, job in zip(streams, received, jobs, strict=True):
        assert r.ends == [None] and job.done.is_set() and job.windows > 3
        assert np.array_equal(r.joined(), s.alone(model))
    assert stage.open_jobs == 0 and not stage.step()


def test_first_windows_go_ahead_of_later_windows_of_long_ones(model: SoVITSModel, streams: list[Stream]) -> None:
    stage = VocoderStage(threaded=False)
    served: list[int] = []
    long_one = open_job(stage, streams[0].decoder(model), Received(), served=served, label=0)
    for token in streams[0].codes[:8]:
        long_one.push(token)
    assert stage.step() and served == [0]  # its first window
    for token in streams[0].codes[8:]:
        long_one.push(token)  # several later windows are now complete
    later_piece = open_job(stage, streams[1].decoder(model), Received(), first_audio=False, served=served, label=1)
    newcomer = open_job(stage, streams[2].decoder(model), Received(), served=served, label=2)
    for token in streams[1].codes[:30]:
        later_piece.push(token)
    for token in streams[2].codes[:8]:
        newcomer.push(token)
    for _ in range(5):
        stage.step()
    # The newcomer's first window before anything else; then the others in turn, the one not yet served first.
    assert served == [0, 2, 1, 0, 1, 0]
    stage.close()


def test_cancelling_one_job_leaves_the_others_identical(model: SoVITSModel, streams: list[Stream]) -> None:
    stage = VocoderStage(threaded=False)
    received = [Received() for _ in streams]
    jobs = [open_job(stage, s.decoder(model), r) for s, r in zip(streams, received, strict=True)]
    delivered_at_cancel: list[int] = []
    original_cancel = jobs[1].cancel

    def cancel_and_count() -> None:
        original_cancel()
        delivered_at_cancel.append(len(received[1].audio))

    jobs[1].cancel = cancel_and_count  # type: ignore[method-assign]
    run_interleaved(stage, jobs, [s.codes for s in streams], seed=4, cancel=(1, 30))
    assert delivered_at_cancel and len(received[1].audio) == delivered_at_cancel[0]  # nothing after the cancel
    assert received[1].ends == [] and jobs[1].done.is_set()  # the canceller knows; on_end is not called
    alone_1 = streams[1].alone(model)
    got_1 = received[1].joined()
    assert got_1.size < alone_1.size and np.array_equal(got_1, alone_1[: got_1.size])
    for i in (0, 2):
        assert received[i].ends == [None] and np.array_equal(received[i].joined(), streams[i].alone(model))


def test_a_failing_window_or_listener_fails_only_its_own_job(model: SoVITSModel, streams: list[Stream]) -> None:
    stage = VocoderStage(threaded=False)
    received = [Received() for _ in streams]
    decoders = [s.decoder(model) for s in streams]
    render = decoders[0].render_next
    calls = [0]

    def second_window_fails() -> np.ndarray:
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("SoVITS window failed")
        return render()

    decoders[0].render_next = second_window_fails  # type: ignore[method-assign]
    jobs = [open_job(stage, d, r) for d, r in zip(decoders[:2], received[:2], strict=True)]

    def listener_gone(audio: np.ndarray) -> None:
        raise ConnectionError("the listener went away")

    jobs.append(stage.open(decoders[2], deliver=listener_gone, on_end=received[2].ends.append))
    run_interleaved(stage, jobs, [s.codes for s in streams], seed=5)
    assert [str(e) for e in received[0].ends] == ["SoVITS window failed"] and jobs[0].done.is_set()
    assert len(received[0].audio) == 1  # the first window, nothing after the failure
    assert [str(e) for e in received[2].ends] == ["the listener went away"]
    assert received[1].ends == [None] and np.array_equal(received[1].joined(), streams[1].alone(model))


def test_close_releases_every_waiter(model: SoVITSModel, streams: list[Stream]) -> None:
    stage = VocoderStage()  # threaded, as the engine runs it
    received = [Received() for _ in streams]
    jobs = [open_job(stage, s.decoder(model), r) for s, r in zip(streams, received, strict=True)]
    for job, s in zip(jobs, streams, strict=True):
        for token in s.codes[:20]:
            job.push(token)  # never finished: without close() these jobs would stay open forever
    waiters = [threading.Thread(target=job.wait) for job in jobs]
    for w in waiters:
        w.start()
    stage.close(SynthesisError("the speech engine was closed"))
    for w in waiters:
        w.join(timeout=10)
        assert not w.is_alive()
    for r in received:
        assert [str(e) for e in r.ends] == ["the speech engine was closed"]
    with pytest.raises(StageClosed):
        open_job(stage, streams[0].decoder(model), Received())
    jobs[0].push(1)  # a late token from the T2S is dropped, not an error
    jobs[0].finish()


async def test_closing_the_engine_ends_its_streams_with_an_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    engine = GPTSoVITSEngine.from_models_dir(write_models_dir(tmp_path_factory.mktemp("models")),
                                             options=SynthesisOptions(seed=7))
    audio, rate = read_speech()
    prompt = engine.prepare_voice(audio, rate, "And you always want to see it in the superlative degree.", "en")
    voice = Voice(id="v", name="test", engine="gpt-sovits", prompt=prompt)
    stream = engine.stream("This sentence is here to keep the model busy for a while. " * 4, voice, lang="en")
    await stream.__anext__()
    await asyncio.to_thread(engine.close)
    with pytest.raises(SynthesisError, match="closed"):
        async for _ in stream:
            pass
    with pytest.raises(SynthesisError, match="closed"):
        await engine.stream("Too late.", voice, lang="en").__anext__()
    assert engine.vocoder.open_jobs == 0 and engine._open_streams == 0


async def test_a_stream_stopped_mid_piece_still_teaches_the_gate_its_rate(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Random or interrupted speech may never finish a piece; what it made still tells the real-time gate
    how fast this machine is, so the next stream need not wait for a second chunk to learn it."""
    engine = GPTSoVITSEngine.from_models_dir(write_models_dir(tmp_path_factory.mktemp("models")),
                                             options=SynthesisOptions(seed=7, realtime_start=False))
    audio, rate = read_speech()
    prompt = engine.prepare_voice(audio, rate, "And you always want to see it in the superlative degree.", "en")
    stream = engine.stream("This sentence is here to keep the model busy for a while. " * 4,
                           Voice(id="v", name="test", engine="gpt-sovits", prompt=prompt), lang="en")
    assert engine.realtime.rate is None
    for _ in range(3):
        await stream.__anext__()
    await stream.aclose()
    assert engine.realtime.rate is not None and engine.realtime.rate > 0
    engine.close()


# ---- stateful: the stage's bookkeeping under any sequence of events -----------------------------


class CountingDecoder:
    """A fake decoder: a window every 3 tokens after the first 4, one token of look-ahead; its 'audio'
    is the tokens themselves, so a job's joined audio must be exactly the tokens pushed, in order."""

    def __init__(self, fail_at: int | None) -> None:
        self.tokens: list[int] = []
        self.emitted = 0
        self.next_end = 4
        self.finished = False
        self.fail_at = fail_at  # render call that raises
        self.renders = 0
        self.window_tokens = 0  # tokens the last window used (its look-ahead included)

    @property
    def started(self) -> bool:
        return self.next_end > 4

    @property
    def tokens_not_rendered(self) -> int:
        return len(self.tokens) - self.window_tokens

    def add(self, new_codes: list[int]) -> None:
        assert not self.finished
        self.tokens += new_codes

    def window_ready(self, extra_tokens: int = 0) -> bool:
        return not self.finished and len(self.tokens) + extra_tokens >= self.next_end

    def _render(self, end: int) -> np.ndarray:
        self.renders += 1
        if self.renders == self.fail_at:
            raise RuntimeError("window failed")
        out = np.array(self.tokens[self.emitted : end], np.float32)
        self.emitted = end
        return out

    def render_next(self) -> np.ndarray:
        if not self.window_ready():
            return np.zeros(0, np.float32)
        end, self.window_tokens, self.next_end = self.next_end - 1, self.next_end, self.next_end + 3
        return self._render(end)

    def finish(self) -> np.ndarray:
        self.finished = True
        self.window_tokens = len(self.tokens)
        return self._render(len(self.tokens))


@dataclass
class Tracked:
    job: VocoderJob
    decoder: CountingDecoder
    first_audio: bool
    received: Received
    pushed: list[int] = field(default_factory=list)
    finished: bool = False
    cancelled_with: int | None = None  # audio pieces delivered when we cancelled it


class StageMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.stage = VocoderStage(threaded=False)
        self.tracked: list[Tracked] = []
        self.closed = False
        self.next_token = 0

    def _live(self) -> list[Tracked]:
        return [t for t in self.tracked if not t.job.done.is_set()]

    @precondition(lambda self: not self.closed and len(self.tracked) < 6)
    @rule(first_audio=st.booleans(), fail_at=st.none() | st.integers(1, 4))
    def open(self, first_audio: bool, fail_at: int | None) -> None:
        decoder, received = CountingDecoder(fail_at), Received()
        job = self.stage.open(decoder, deliver=received.audio.append, on_end=received.ends.append,
                              first_audio=first_audio)
        self.tracked.append(Tracked(job, decoder, first_audio, received))

    @precondition(lambda self: self.tracked)
    @rule(data=st.data(), count=st.integers(1, 9))
    def push(self, data: st.DataObject, count: int) -> None:
        t = data.draw(st.sampled_from(self.tracked))
        for _ in range(count):
            t.job.push(self.next_token)
            if not (t.finished or t.job.done.is_set()):
                t.pushed.append(self.next_token)
            self.next_token += 1

    @precondition(lambda self: self.tracked)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        t = data.draw(st.sampled_from(self.tracked))
        t.job.finish()
        t.finished = True

    @precondition(lambda self: self.tracked)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        t = data.draw(st.sampled_from(self.tracked))
        if not t.job.done.is_set():
            t.cancelled_with = len(t.received.audio)
        t.job.cancel()

    @rule()
    def step(self) -> None:
        live = self._live()
        renders = [t.decoder.renders for t in live]
        urgent_ready = [t for t in live if t.first_audio and not t.decoder.started
                        and (t.finished or len(t.pushed) >= t.decoder.next_end)]
        self.stage.step()
        served = [t for t, before in zip(live, renders, strict=True) if t.decoder.renders > before]
        assert len(served) <= 1
        if urgent_ready:  # someone waited for first audio: it was served, not a later window
            assert served and served[0] in urgent_ready

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self) -> None:
        self.stage.close()
        self.closed = True

    @invariant()
    def each_job_gets_its_tokens_in_order_and_ends_once(self) -> None:
        for t in self.tracked:
            got = t.received.joined().astype(int).tolist()
            assert got == t.pushed[: len(got)]  # a prefix of what was pushed: nothing lost, reordered or doubled
            assert len(t.received.ends) <= 1 and t.job.done.is_set() == (bool(t.received.ends) or t.job.ended)
            if t.cancelled_with is not None:
                assert t.received.ends == [] and len(t.received.audio) == t.cancelled_with
            elif t.received.ends == [None]:
                assert got == t.pushed and t.finished  # complete: every token
            if self.closed:
                assert t.job.done.is_set()  # close released everyone
            if not t.job.ended:  # what the T2S is held back by: tokens pushed and not yet rendered
                assert t.job.backlog == len(t.pushed) - t.decoder.window_tokens

    def teardown(self) -> None:
        self.stage.close()
        assert all(t.job.done.is_set() for t in self.tracked)


TestStageMachine = StageMachine.TestCase
TestStageMachine.settings = settings(max_examples=400, stateful_step_count=40, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
