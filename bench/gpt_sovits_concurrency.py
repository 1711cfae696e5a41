"""GPT-SoVITS for many rooms at once: N concurrent utterances through one engine (continuous batching).

Full-size official v2 configs with random weights (as bench/gpt_sovits.py), voice prompt cached.
For N = 1, 2, 4, 8, 16 utterances started together it prints:
  - T2S only: aggregate tokens/s of N sessions of --tokens tokens each through the scheduler
  - end to end (engine.stream, real-time start gate off, each stream closed after --seconds of audio):
    aggregate tokens/s of audio delivered, each stream's real-time factor (wall time / audio time;
    median and worst), first audio p50 / p90, KV-cache memory per stream (slot reserved, and used)
and N = 1 again at the end ("1b") (shared machines drift). The last line is the end-to-end aggregate
speedup at 8 streams over 1 (the better of the two N = 1 runs).

--precision defaults to auto (each network's fastest here, as `voxroom serve --precision auto`; on an
AVX-512 CPU with native bf16 that is int8 T2S + bf16 SoVITS, the precisions issue 13's goals are stated with).

    .venv/bin/python bench/gpt_sovits_concurrency.py [--precision auto] [--threads 2] [--seconds 2] [--tokens 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gpt_sovits import SPEECH, full_hubert  # bench/gpt_sovits.py
from voxroom.models.engine import Voice
from voxroom.models.gpt_sovits.engine import GPTSoVITSEngine, SynthesisOptions
from voxroom.models.gpt_sovits.sampling import TOKENS_PER_SECOND
from voxroom.models.gpt_sovits.scheduler import T2SScheduler
from voxroom.models.gpt_sovits.sovits import SoVITSModel
from voxroom.models.gpt_sovits.t2s_generate import start_session
from voxroom.models.gpt_sovits.t2s_model import T2SModel

TEXTS = ("Thanks for the gift, that is very kind of you.", "Welcome back everyone, how was your day?",
         "Let us answer a few questions from the chat.", "大家好，欢迎来到直播间。")
COUNTS = (1, 2, 4, 8, 16)


def t2s_only(t2s: T2SModel, n: int, tokens: int) -> float:
    """Aggregate tokens/s of n sessions (53 phones + 121-token prompt each) decoded together."""
    scheduler = T2SScheduler(t2s, max_batch=n, threaded=False)
    gen = torch.Generator().manual_seed(n)
    sessions = [start_session(t2s, torch.randint(0, 732, (53 + i,), generator=gen), torch.zeros(1024, 53 + i),
                              torch.randint(0, 1024, (121,), generator=gen), early_stop_num=tokens - 1,
                              generator=gen) for i in range(n)]
    start = time.perf_counter()
    for s in sessions:
        scheduler.submit(s)
    while scheduler.step():
        pass
    return sum(len(s.tokens) for s in sessions) / (time.perf_counter() - start)


@dataclass
class StreamFigures:
    first_s: float
    wall_s: float
    audio_s: float


async def one_stream(engine: GPTSoVITSEngine, voice: Voice, text: str, seconds: float) -> StreamFigures:
    start = time.perf_counter()
    first, samples = 0.0, 0
    stream = engine.stream(text, voice, lang="auto")
    try:
        async for chunk in stream:
            if not samples:
                first = time.perf_counter() - start
            samples += chunk.samples.size
            if samples >= seconds * engine.sample_rate:
                break
    finally:
        await stream.aclose()
    return StreamFigures(first, time.perf_counter() - start, samples / engine.sample_rate)


async def streams(engine: GPTSoVITSEngine, voice: Voice, n: int, seconds: float) -> tuple[float, list[StreamFigures]]:
    start = time.perf_counter()
    figures = await asyncio.gather(*(one_stream(engine, voice, TEXTS[i % len(TEXTS)], seconds) for i in range(n)))
    wall = time.perf_counter() - start
    return sum(f.audio_s for f in figures) * TOKENS_PER_SECOND / wall, list(figures)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default="auto", help="auto, fp32, fp16, bf16 or int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="audio per end-to-end stream")
    parser.add_argument("--tokens", type=int, default=50, help="tokens per T2S-only session")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with wave.open(str(SPEECH)) as w:
        reference = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
        rate = w.getframerate()
    options = SynthesisOptions(seed=3, realtime_start=False, max_batch=max(COUNTS), max_queue=0)
    engine = GPTSoVITSEngine(T2SModel.from_config(), SoVITSModel.from_config("v2"), full_hubert(),
                             options=options, precision=args.precision)
    engine.warm_up(("en", "zh"))
    prompt = engine.prepare_voice(reference, rate, "And you always want to see it in the superlative degree.", "en")
    voice = Voice(id="bench", name="bench", engine="gpt-sovits", prompt=prompt)
    slot_mb = engine.kv_cache_bytes_per_stream() / 2**20
    per_position = engine.kv_cache_bytes_per_stream() / engine.scheduler.slot_capacity
    print(f"torch {torch.__version__}, {args.threads} threads, CPU {torch.backends.cpu.get_cpu_capability()}, "
          f"{engine.precision}; full-size v2 models with random weights; {Path(SPEECH).name} as the voice")
    print(f"{'N':>3} {'T2S tok/s':>10} | {'e2e tok/s':>9} {'RTF med':>8} {'RTF max':>8} {'first p50':>10} "
          f"{'first p90':>10} {'KV/stream: slot, used':>22}")
    asyncio.run(streams(engine, voice, 1, 0.5))  # warm-up
    e2e: dict[str, float] = {}
    t2s: dict[str, float] = {}
    for label, n in [(str(c), c) for c in COUNTS] + [("1b", 1)]:
        t2s_rate = t2s[label] = t2s_only(engine.t2s, n, args.tokens)
        e2e[label], figures = asyncio.run(streams(engine, voice, n, args.seconds))
        rtfs = [f.wall_s / max(f.audio_s, 1e-6) for f in figures]
        firsts = [f.first_s * 1000 for f in figures]
        # Positions a stream uses: prompt phones + text phones (~50) + prompt tokens + its tokens.
        used = (prompt.prompt_phones.numel() + 50 + (prompt.prompt_tokens.numel() if prompt.prompt_tokens is not None
                                                      else 0) + args.seconds * TOKENS_PER_SECOND) * per_position
        print(f"{label:>3} {t2s_rate:10.1f} | {e2e[label]:9.1f} {statistics.median(rtfs):8.2f} {max(rtfs):8.2f} "
              f"{percentile(firsts, 50):8.0f}ms {percentile(firsts, 90):8.0f}ms "
              f"{slot_mb:10.0f} MB {used / 2**20:6.1f} MB")
    engine.close()
    print(f"T2S-only speedup at 8 sessions: {t2s['8'] / max(t2s['1'], t2s['1b']):.1f}×")
    print(f"aggregate speedup at 8 streams: {e2e['8'] / max(e2e['1'], e2e['1b']):.1f}×")


if __name__ == "__main__":
    main()
