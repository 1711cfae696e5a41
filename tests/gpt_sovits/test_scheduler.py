"""Continuous batching (scheduler.py): batched decoding equals decoding alone, on the golden tiny models.

Tolerances: tokens (greedy and seeded sampling), stop reasons and steps run: exact. Raw logits of
a batched row vs the same utterance decoded alone (T2SSession): atol 1e-4, the golden tolerance of
test_t2s.py (measured <= 4.6e-6 on the tiny EOS model; batched rows attend through a padded key
mask and run larger matmuls, so they are not bit-identical). The rows that stay when one is
cancelled: tokens exact, logits within the same 1e-4 of their uncancelled run (measured: 0.0 for
rows whose batches stayed the same, 3.4e-6 for one that then ran in a smaller batch). Audio of concurrent
engine streams with a fixed seed vs each stream alone: exact (same tokens, same SoVITS calls).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from voxroom.models.engine import SynthesisError, Voice
from voxroom.models.gpt_sovits.engine import EngineBusy, GPTSoVITSEngine, SynthesisOptions
from voxroom.models.gpt_sovits.sampling import GREEDY, SamplingParams
from voxroom.models.gpt_sovits.scheduler import T2SScheduler, Utterance
from voxroom.models.gpt_sovits.t2s_generate import T2SResult, T2SSession, start_session
from voxroom.models.gpt_sovits.t2s_model import T2SModel, load_t2s
from voxroom.models.gpt_sovits.voice_prompt import VoicePrompt

from .device_checks import read_speech
from .model_folders import GOLDEN, write_models_dir

TINY_EOS = GOLDEN / "models" / "s1_tiny_v2_eos.ckpt"
ATOL = 1e-4
pytestmark = pytest.mark.skipif(not TINY_EOS.is_file(), reason=f"golden data not found at {GOLDEN}")

# Golden inputs: two with a 121-token prompt (53 phones, zero / random BERT), one reference-free.
CASES = ("greedy_ref_bertzero_rp1.35", "greedy_ref_bertrand_rp1.35", "greedy_reffree_bertzero_rp1.35")


@pytest.fixture(scope="module")
def model() -> T2SModel:
    # The EOS variant of the tiny model stops by itself after 25-50 tokens: every stop rule runs.
    return load_t2s(TINY_EOS)


def session(model: T2SModel, case: int, *, cut: int = 0, prompt_cut: int = 0, params: SamplingParams = GREEDY,
            seed: int | None = None) -> T2SSession:
    """Golden input `case`, its first `cut` phones and `prompt_cut` prompt tokens dropped (other lengths)."""
    d = load_file(GOLDEN / "t2s" / f"{CASES[case]}.safetensors")
    phones, bert, prompt = d["phoneme_ids"][0, cut:], d["bert_feature"][0, :, cut:], d.get("prompts")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return start_session(model, phones, bert, None if prompt is None else prompt[0, prompt_cut:], params=params,
                         early_stop_num=200, generator=generator, record_logits=True)


# Different voices (prompts), prompt lengths, text lengths and sampling settings (seeded).
def mixed_sessions(model: T2SModel) -> list[T2SSession]:
    return [
        session(model, 0),
        session(model, 1, cut=5, prompt_cut=30),
        session(model, 2, params=SamplingParams(top_k=5, temperature=0.8), seed=11),
        session(model, 0, cut=11, params=SamplingParams(top_k=20, top_p=0.9, repetition_penalty=1.2), seed=12),
        session(model, 1, prompt_cut=70, params=SamplingParams(top_k=15, temperature=1.2), seed=13),
        session(model, 2, cut=9),
    ]


def assert_same(batched: T2SResult, alone: T2SResult) -> None:
    assert torch.equal(batched.tokens, alone.tokens)
    assert (batched.stop_reason, batched.idx) == (alone.stop_reason, alone.idx)
    assert batched.logits is not None and alone.logits is not None
    torch.testing.assert_close(batched.logits, alone.logits, atol=ATOL, rtol=0)


def run_staggered(scheduler: T2SScheduler, sessions: list[T2SSession], every: int,
                  cancel: tuple[int, int] | None = None) -> list[Utterance]:
    """Submit one session every `every` scheduler steps; `cancel` (i, step): cancel session i then."""
    utterances: list[Utterance] = []
    while True:
        if len(utterances) < len(sessions) and scheduler.steps_run >= every * len(utterances):
            utterances.append(scheduler.submit(sessions[len(utterances)], first_audio_tokens=8 * (len(utterances) % 2)))
        if cancel is not None and scheduler.steps_run == cancel[1] and cancel[0] < len(utterances):
            utterances[cancel[0]].cancel()
        if not scheduler.step() and len(utterances) == len(sessions):
            return utterances


def test_batched_decoding_equals_decoding_alone(model: T2SModel) -> None:
    alone = [s.result() for s in mixed_sessions(model)]
    assert len({r.tokens.numel() for r in alone}) > 2  # they end at different steps
    scheduler = T2SScheduler(model, max_batch=4, threaded=False)
    for t in (scheduler.cache.k, scheduler.cache.v):  # never-written memory may hold anything
        t.fill_(float("nan"))
    utterances = run_staggered(scheduler, mixed_sessions(model), every=3)
    assert scheduler.largest_batch == 4 and scheduler.active == scheduler.waiting == 0
    for u, expected in zip(utterances, alone, strict=True):
        assert u.done.is_set() and u.row is None
        assert_same(u.session.result(), expected)


def test_cancelling_one_leaves_the_others_untouched(model: T2SModel) -> None:
    full = run_staggered(T2SScheduler(model, max_batch=4, threaded=False), mixed_sessions(model)[:4], every=2)
    scheduler = T2SScheduler(model, max_batch=4, threaded=False)
    scheduler.cache.k.fill_(float("nan"))
    # Row 1 leaves mid-way: the last row's keys move into its slot and decoding goes on.
    cut = run_staggered(scheduler, mixed_sessions(model)[:4], every=2, cancel=(1, 15))
    assert cut[1].session.stop_reason == "cancelled" and 0 < len(cut[1].session.tokens) < len(full[1].session.tokens)
    for i in (0, 2, 3):
        assert_same(cut[i].session.result(), full[i].session.result())
    assert scheduler.active == 0


def test_a_waiting_session_can_be_cancelled_and_the_cache_bounds_each_slot(model: T2SModel) -> None:
    scheduler = T2SScheduler(model, max_batch=1, slot_capacity=200, threaded=False)
    first = scheduler.submit(session(model, 0))
    second = scheduler.submit(session(model, 1))
    assert scheduler.waiting == 2
    second.cancel()
    assert second.done.is_set() and scheduler.waiting == 1 and second.session.stop_reason == "cancelled"
    while scheduler.step():
        pass
    assert first.session.stop_reason == "eos"
    assert first.session.max_steps == 200 - 53 - 121  # the slot's room after text and prompt
    with pytest.raises(ValueError, match="a slot holds 100"):
        T2SScheduler(model, max_batch=1, slot_capacity=100, threaded=False).submit(session(model, 0))
    cfg = model.config
    assert scheduler.bytes_per_slot() == 2 * cfg.n_layer * cfg.n_head * 200 * cfg.head_dim * 4


def test_first_pieces_go_ahead_of_later_ones(model: T2SModel) -> None:
    scheduler = T2SScheduler(model, max_batch=3, threaded=False)
    long_ones = [scheduler.submit(session(model, i)) for i in range(2)]
    for _ in range(6):
        scheduler.step()
    later = scheduler.submit(session(model, 2, cut=3))  # a later piece of some stream
    newcomer = scheduler.submit(session(model, 2), first_audio_tokens=8)  # someone waits for first audio
    assert scheduler.waiting == 2
    before = [len(u.session.tokens) for u in long_ones]
    scheduler.step()
    assert newcomer.row == 2 and later.row is None  # the first piece took the free slot
    while newcomer.waits_for_first_audio:
        scheduler.step()
    # Its prefill gave one token; of the 7 steps for the rest, two of every three ran it alone.
    assert [len(u.session.tokens) - b for u, b in zip(long_ones, before, strict=True)] == [2, 2]
    scheduler.close()
    assert all(u.done.is_set() for u in [*long_ones, later, newcomer])


def test_a_row_whose_consumer_is_behind_sits_out_until_it_catches_up(model: T2SModel) -> None:
    """may_step() false (the vocoder stage has a backlog of its tokens) holds a row back; the other
    rows go on; released, it decodes exactly what it decodes alone."""
    scheduler = T2SScheduler(model, max_batch=2, threaded=False)
    behind = [False]
    held = scheduler.submit(session(model, 0), may_step=lambda: not behind[0])
    other = scheduler.submit(session(model, 1))
    scheduler.step()
    scheduler.step()  # both prefilled
    behind[0] = True
    before = len(held.session.tokens), len(other.session.tokens)
    for _ in range(5):
        assert scheduler.step()
    assert len(held.session.tokens) == before[0] and len(other.session.tokens) == before[1] + 5
    while not other.done.is_set():
        scheduler.step()
    assert not scheduler.step() and held.row is not None  # only a held row left: nothing to do, not done
    behind[0] = False
    while scheduler.step():
        pass
    assert_same(held.session.result(), session(model, 0).result())
    assert_same(other.session.result(), session(model, 1).result())


def test_threaded_submissions_from_many_callers(model: T2SModel) -> None:
    alone = [s.result() for s in mixed_sessions(model)]
    scheduler = T2SScheduler(model, max_batch=3)
    seen: list[list[int]] = [[] for _ in alone]
    utterances: list[Utterance] = []

    def submit(i: int, s: T2SSession) -> None:
        def on_step(token: int | None, finished: bool) -> None:
            if token is not None:
                seen[i].append(token)

        utterances.append(scheduler.submit(s, on_step=on_step))

    threads = [threading.Thread(target=submit, args=(i, s)) for i, s in enumerate(mixed_sessions(model))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(u.wait(30) for u in utterances)
    for u in utterances:
        i = next(i for i, s in enumerate(alone) if torch.equal(s.tokens, u.session.result().tokens))
        assert seen[i] == alone[i].tokens.tolist()
    scheduler.close()


def test_a_failing_caller_ends_only_its_own_utterance(model: T2SModel) -> None:
    scheduler = T2SScheduler(model, max_batch=2, threaded=False)
    errors: list[BaseException] = []

    def explode(token: int | None, finished: bool) -> None:
        raise RuntimeError("the listener went away")

    bad = scheduler.submit(session(model, 0), on_step=explode, on_error=errors.append)
    good = scheduler.submit(session(model, 1))
    while scheduler.step():
        pass
    assert bad.done.is_set() and str(bad.error) == "the listener went away" and errors == [bad.error]
    assert_same(good.session.result(), session(model, 1).result())


def test_a_failed_step_fails_its_rows_and_the_scheduler_goes_on(model: T2SModel,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = T2SScheduler(model, max_batch=2, threaded=False)
    first, second = scheduler.submit(session(model, 0)), scheduler.submit(session(model, 1))
    scheduler.step()
    scheduler.step()  # both prefilled

    def out_of_memory(*args: object) -> torch.Tensor:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(model, "run_layers_rows", out_of_memory)
    scheduler.step()
    monkeypatch.undo()
    assert first.done.is_set() and second.done.is_set() and str(first.error) == "out of memory"
    assert scheduler.active == 0
    again = scheduler.submit(session(model, 2))
    while scheduler.step():
        pass
    assert_same(again.session.result(), session(model, 2).result())


# ---- through the engine ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine_and_voice(tmp_path_factory: pytest.TempPathFactory) -> tuple[GPTSoVITSEngine, Voice]:
    models = write_models_dir(tmp_path_factory.mktemp("models"))
    engine = GPTSoVITSEngine.from_models_dir(models, options=SynthesisOptions(seed=7, max_batch=4, max_queue=1))
    audio, rate = read_speech()
    prompt: VoicePrompt = engine.prepare_voice(audio, rate, "And you always want to see it in the superlative degree.",
                                               "en")
    return engine, Voice(id="v", name="test", engine="gpt-sovits", prompt=prompt)


TEXTS = ("Thanks for the gift.", "Hello everyone, welcome back. How are you?", "大家好，欢迎来到直播间。", "Yes!")


async def speak(engine: GPTSoVITSEngine, voice: Voice, text: str) -> np.ndarray:
    return np.concatenate([c.samples async for c in engine.stream(text, voice, lang="auto")])


async def test_concurrent_streams_each_get_the_audio_they_get_alone(
        engine_and_voice: tuple[GPTSoVITSEngine, Voice]) -> None:
    engine, voice = engine_and_voice
    alone = [await speak(engine, voice, t) for t in TEXTS]
    before = engine.scheduler.largest_batch
    together = await asyncio.gather(*(speak(engine, voice, t) for t in TEXTS))
    assert engine.scheduler.largest_batch > max(before, 1)  # they really were decoded as one batch
    for a, b in zip(alone, together, strict=True):
        assert a.size and np.array_equal(a, b)


async def test_beyond_max_batch_and_max_queue_a_stream_is_refused_as_busy(
        engine_and_voice: tuple[GPTSoVITSEngine, Voice]) -> None:
    engine, voice = engine_and_voice
    long_text = "This sentence is here to keep the model busy for a while. " * 3
    streams = [engine.stream(long_text, voice, lang="en") for _ in range(5)]  # max_batch 4 + max_queue 1
    for s in streams:
        await s.__anext__()
    refused = engine.stream("One more.", voice, lang="en")
    with pytest.raises(EngineBusy, match="busy: 5 streams") as info:
        await refused.__anext__()
    assert isinstance(info.value, SynthesisError)
    assert engine.kv_cache_bytes_per_stream() == engine.scheduler.bytes_per_slot() > 0
    for s in streams:
        await s.aclose()
    assert (await speak(engine, voice, "Room again.")).size  # closing them freed their places


def test_a_session_of_another_model_is_refused(model: T2SModel, tmp_path: Path) -> None:
    other = load_t2s(TINY_EOS)
    with pytest.raises(ValueError, match="another model"):
        T2SScheduler(other, threaded=False).submit(session(model, 0))
