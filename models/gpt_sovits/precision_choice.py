"""`--precision auto`: pick the T2S and the SoVITS vocoder precision apart, by timing both here.

Which precision is fastest depends on the machine (README "Performance": int8 leads on AVX2 CPUs,
bf16 only pays with native bfloat16, fp16 on CUDA), and the two networks need not agree. At
start-up each candidate runs a short, fixed piece of work on a copy of the weights:

- T2S: a prefill of 40 phones + 100 prompt tokens, then decoding steps; the time per step counts
  (that sets tokens/s). A candidate must also stay close to fp32: its first-step logits may drift
  by at most DRIFT_LIMIT (fp16 and int8 measure 0.005 / 0.11 on the golden tiny model, ~0.04 / 1.5
  on random full-size weights, whose logits are flat; a broken cast drifts by ~5).
- SoVITS: one 2 s decode with the fp32 and (where bfloat16 is native or on CUDA) the bf16 vocoder.

A candidate wins only when it is at least MIN_GAIN faster than fp32. `PrecisionChoice.reason` says
what each measured and why the pick was made; the engine logs it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .sampling import GREEDY
from .sovits import SoVITSModel, Timbre
from .t2s_generate import T2SSession, start_session
from .t2s_model import T2SModel
from .t2s_quantize import pack_weights, quantize_int8, to_dtype

DRIFT_LIMIT = 2.0  # max |logit - fp32 logit| of the first step
MIN_GAIN = 1.1  # a precision must be this much faster than fp32 to be picked
T2S_STEPS = 8


@dataclass(frozen=True)
class PrecisionChoice:
    t2s: str  # fp32 | fp16 | bf16 | int8
    sovits: str  # fp32 | bf16 (the vocoder)
    reason: str


def t2s_candidates(device: torch.device, bf16_native: bool) -> list[str]:
    if device.type == "cuda":
        return ["fp32", "fp16", "bf16"]
    return ["fp32", "fp16", "int8"] + (["bf16"] if bf16_native else [])


def converted(model: T2SModel, precision: str) -> T2SModel:
    """A copy of `model` (fp32) in `precision`."""
    twin = copy.deepcopy(model)
    if precision == "fp32":
        pack_weights(twin)
        return twin
    if precision == "int8":
        return quantize_int8(twin)
    return to_dtype(twin, torch.float16 if precision == "fp16" else torch.bfloat16)


def _best_of(runs: int, work: Callable[[], object], sync: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        work()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def _no_sync() -> None:
    pass


def time_t2s(model: T2SModel) -> tuple[float, torch.Tensor]:
    """-> (seconds per decoding step, best of 2; first-step logits (1, vocab) on the CPU)."""
    gen = torch.Generator().manual_seed(0)
    phones, prompt = torch.randint(0, 732, (40,), generator=gen), torch.randint(0, 1024, (100,), generator=gen)
    sync = torch.cuda.synchronize if model.device.type == "cuda" else _no_sync
    per_step: list[float] = []
    first = torch.empty(0)
    for _ in range(2):
        session = start_session(model, phones, torch.zeros(1024, 40), prompt, params=GREEDY, early_stop_num=-1,
                                max_steps=T2S_STEPS + 1, record_logits=True)
        session.step()  # the prefill, not timed

        def steps(session: T2SSession = session) -> None:
            for _ in range(T2S_STEPS):
                session.step()

        per_step.append(_best_of(1, steps, sync) / T2S_STEPS)
        logits = session.result().logits
        assert logits is not None
        first = logits[:1].float().cpu()
    return min(per_step), first


def time_sovits(sovits: SoVITSModel) -> float:
    device = next(sovits.parameters()).device
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 1024, (1, 1, 50), generator=gen).to(device)
    text = torch.randint(0, 732, (1, 30), generator=gen).to(device)
    gin = sovits.config.gin_channels
    timbre = Timbre(ge=0.1 * torch.randn(1, gin, 1, generator=gen).to(device),
                    ge_text=0.1 * torch.randn(1, 512, 1, generator=gen).to(device))
    sync = torch.cuda.synchronize if device.type == "cuda" else _no_sync
    return _best_of(2, lambda: sovits.decode(codes, text, timbre=timbre, generator=gen), sync)


def choose(t2s: T2SModel, sovits: SoVITSModel, *, bf16_native: bool) -> PrecisionChoice:
    """Time each candidate (seconds on a CPU); `t2s` and `sovits` are left as they were (fp32)."""
    notes: list[str] = []
    step_times: dict[str, float] = {}
    reference: torch.Tensor | None = None
    for precision in t2s_candidates(t2s.device, bf16_native):
        per_step, logits = time_t2s(converted(t2s, precision))
        if reference is None:
            reference = logits
        drift = float((logits - reference).abs().max())
        if drift > DRIFT_LIMIT:
            notes.append(f"T2S {precision} {1 / per_step:.0f} tok/s but drifts {drift:.2f} (> {DRIFT_LIMIT})")
            continue
        step_times[precision] = per_step
        notes.append(f"T2S {precision} {1 / per_step:.0f} tok/s, drift {drift:.3f}")
    t2s_pick = min(step_times, key=lambda p: step_times[p] * (1.0 if p == "fp32" else MIN_GAIN))

    vocoder = {"fp32": time_sovits(sovits)}
    if bf16_native or t2s.device.type == "cuda":
        original = sovits.dec
        sovits.dec = copy.deepcopy(original).to(torch.bfloat16)
        try:
            vocoder["bf16"] = time_sovits(sovits)
        finally:
            sovits.dec = original
    else:
        notes.append("SoVITS bf16 not tried (no native bfloat16 here)")
    for name, seconds in vocoder.items():
        notes.append(f"SoVITS {name} RTF {seconds / 2.0:.2f}")
    sovits_pick = min(vocoder, key=lambda p: vocoder[p] * (1.0 if p == "fp32" else MIN_GAIN))
    reason = (f"picked T2S {t2s_pick}, SoVITS {sovits_pick} (fastest within drift {DRIFT_LIMIT}, and "
              f"{MIN_GAIN:.1f}x faster than fp32 to leave it): " + "; ".join(notes))
    return PrecisionChoice(t2s=t2s_pick, sovits=sovits_pick, reason=reason)
