"""GPT-SoVITS end to end on this machine: full-size official configs, random weights, cached voice.

Prints, for each precision (fp32 = official numerics with prepacked weights, fp16, bf16, int8):
  - AR (T2S) tokens/s, single stream, 121-token prompt + ~50 phones  (realtime = 25 tokens/s)
  - SoVITS real-time factor of a one-shot 10 s decode
  - text -> first audio chunk for a 20-character sentence through the Engine (voice prompt cached;
    on a machine slower than real time this is when the real-time gate lets the sentence start)
  - a ~5 s sentence streamed as it would play: real-time factor after the first chunk, and when it
    starts and how long playback would stall, with the real-time start gate (default) and without
Official implementation on this machine (golden README): ~25 tokens/s, SoVITS RTF ~0.43-0.6,
first 24-token chunk after ~1.2 s. Goals: >= 50 tokens/s, RTF <= 0.4, first audio <= 500 ms.

    .venv/bin/python bench/gpt_sovits.py [--precisions fp32,fp16,bf16,int8] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import threading
import time
import wave
from pathlib import Path

import numpy as np
import torch

from voxroom.models.gpt_sovits.engine import GPTSoVITSEngine, SynthesisOptions, bf16_is_native
from voxroom.models.gpt_sovits.hubert import HubertConfig, HubertModel
from voxroom.models.gpt_sovits.realtime import playback_stall
from voxroom.models.gpt_sovits.sovits import SoVITSModel
from voxroom.models.gpt_sovits.t2s_generate import start_session
from voxroom.models.gpt_sovits.t2s_model import T2SModel

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT.parent / "shared" / "golden"
SPEECH = ROOT.parent / "shared" / "speech" / "pysptk__cmu_arctic_awb_a0007.wav"
SENTENCE = "Thanks for the gift!"  # 20 characters
SENTENCE_ZH = "谢谢大家的礼物，欢迎来到我的直播间。"


def full_hubert() -> HubertModel:
    config = json.loads((GOLDEN / "models" / "hubert_tiny" / "config.json").read_text())
    config.update(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                  conv_dim=[512] * 7)
    torch.manual_seed(0)
    return HubertModel(HubertConfig.from_dict(config)).eval()


def ar_speed(engine: GPTSoVITSEngine, n_tokens: int = 150) -> tuple[float, float]:
    gen = torch.Generator().manual_seed(0)
    phones = torch.randint(0, 732, (53,), generator=gen)
    bert = torch.zeros(1024, 53)
    prompt = torch.randint(0, 1024, (121,), generator=gen)
    session = start_session(engine.t2s, phones, bert, prompt, early_stop_num=n_tokens - 1, generator=gen)
    t0 = time.perf_counter()
    session.step()
    t1 = time.perf_counter()
    n = 1
    while not session.finished:
        session.step()
        n += 1
    return (t1 - t0) * 1000, (n - 1) / (time.perf_counter() - t1)


def sovits_rtf(engine: GPTSoVITSEngine, prompt) -> float:  # type: ignore[no-untyped-def]
    codes = torch.randint(0, 1024, (1, 1, 250))
    text = torch.randint(0, 732, (1, 100))
    engine.sovits.decode(codes, text, timbre=prompt.timbre, noise_scale=0.5)  # warm-up
    t0 = time.perf_counter()
    engine.sovits.decode(codes, text, timbre=prompt.timbre, noise_scale=0.5)
    return (time.perf_counter() - t0) / 10.0


def first_audio_ms(engine: GPTSoVITSEngine, prompt, text: str, lang: str, runs: int = 5) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        stop = threading.Event()
        first: list[float] = []
        start = time.perf_counter()

        def emit(audio: np.ndarray, piece: str, first: list[float] = first, start: float = start,
                 stop: threading.Event = stop) -> None:
            if not first:
                first.append(time.perf_counter() - start)
            stop.set()

        engine.synthesize_blocking(text, prompt, lang=lang, emit=emit, stop=stop)
        times.append(first[0] * 1000)
    return times


LONG_SENTENCE = "This sentence goes on and on while we watch whether the stream keeps up with playback."


def stream_realtime(engine: GPTSoVITSEngine, prompt, gate: bool, text: str = LONG_SENTENCE) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """Stream one sentence piece for as long as the engine expects it to last (random weights never say
    EOS) with the real-time start gate on or off.
    -> (real-time factor after the first chunk, first audio ms, playback stall ms had it been played as it came)."""
    phones, _ = engine._phones_and_bert(text, "en")
    seconds = engine.realtime.seconds_per_phone * len(phones)
    stop = threading.Event()
    arrivals: list[tuple[float, int]] = []  # (time, samples)

    def emit(audio: np.ndarray, piece: str) -> None:
        arrivals.append((time.perf_counter(), audio.size))
        if sum(n for _, n in arrivals) >= seconds * 32000:
            stop.set()

    options = engine.options
    engine.options = dataclasses.replace(options, realtime_start=gate)
    start = time.perf_counter()
    try:
        engine.synthesize_blocking(text, prompt, lang="en", emit=emit, stop=stop)
    finally:
        engine.options = options
    t_first = arrivals[0][0]
    after_first = sum(n for _, n in arrivals[1:]) / 32000
    rtf = (arrivals[-1][0] - t_first) / max(after_first, 1e-6)
    return rtf, (t_first - start) * 1000, playback_stall(arrivals, 32000) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precisions", default="fp32,fp16,bf16,int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-auto", dest="auto", action="store_false", help="skip the --precision auto line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with wave.open(str(SPEECH)) as w:
        reference = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
        rate = w.getframerate()
    hubert = full_hubert()
    base_t2s = T2SModel.from_config()
    sovits = SoVITSModel.from_config("v2")
    print(f"torch {torch.__version__}, {args.threads} threads, CPU {torch.backends.cpu.get_cpu_capability()} "
          f"(bf16 {'native' if bf16_is_native() else 'emulated'}); full-size v2 models with random weights")
    print(f"{'precision':9} {'AR tok/s':>9} {'prefill':>8} {'SoVITS RTF':>10} {'first audio (en)':>17} {'first audio (zh)':>17}"
          f" | {'stream RTF':>10} {'start, stalls: gated':>21} {'ungated':>16}")
    prompt = None
    for precision in args.precisions.split(","):
        t2s = base_t2s if precision == "fp32" else T2SModel.from_config()
        engine = GPTSoVITSEngine(t2s, sovits, hubert, options=SynthesisOptions(seed=3), precision=precision)
        engine.warm_up(("en", "zh"))
        if prompt is None:
            t0 = time.perf_counter()
            prompt = engine.prepare_voice(reference, rate, "And you always want to see it in the superlative degree.", "en")
            print(f"voice prompt computed once in {time.perf_counter() - t0:.2f} s (HuBERT + VQ + spectrogram + phones)")
        prefill, tps = ar_speed(engine)
        rtf = sovits_rtf(engine, prompt)
        en = first_audio_ms(engine, prompt, SENTENCE, "en")
        zh = first_audio_ms(engine, prompt, SENTENCE_ZH[:20], "zh")
        stream_rtf, start_open, stalls_open = stream_realtime(engine, prompt, gate=False)
        _, start_gated, stalls_gated = stream_realtime(engine, prompt, gate=True)
        print(f"{precision:9} {tps:9.1f} {prefill:6.0f}ms {rtf:10.3f} {statistics.median(en):14.0f} ms "
              f"{statistics.median(zh):14.0f} ms | {stream_rtf:10.2f} {start_gated:8.0f} ms {stalls_gated:6.0f} ms "
              f"{start_open:6.0f} ms {stalls_open:5.0f} ms")
        sovits.use_bf16_vocoder(False)
    if args.auto:
        # What `voxroom serve --precision auto` runs: each network's fastest precision, timed at start-up.
        engine = GPTSoVITSEngine(T2SModel.from_config(), sovits, hubert, options=SynthesisOptions(seed=3), precision="auto")
        engine.warm_up(("en",))
        choice = engine.precision_choice
        assert choice is not None and prompt is not None
        print(f"precision auto picked T2S {choice.t2s}, SoVITS {choice.sovits}: {choice.reason}")
        runs = [stream_realtime(engine, prompt, gate=True, text=SENTENCE) for _ in range(3)]
        first = statistics.median(r[1] for r in runs)
        stall = max(r[2] for r in runs)
        print(f"auto, a 20-character sentence as it plays (3 runs): first audio {first:.0f} ms (median), "
              f"stall {stall:.0f} ms (worst) — goal <= 1000 ms, 0 stalls")
        sovits.use_bf16_vocoder(False)


if __name__ == "__main__":
    main()
