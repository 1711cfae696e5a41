"""SoVITS decoder speed and streaming quality on this machine (full-size random-weight models).

Prints:
- one-shot decode RTF of 10 s of audio (250 codes, 100 phones, one ~4.25 s reference), fp32,
  with a per-stage split (text encoder, flow, HiFi-GAN) -- the official code measured RTF
  0.43-0.64 here (golden README timings);
- the optional bf16 HiFi-GAN: RTF and drift against fp32;
- our StreamingDecoder: cost of the first chunk (segment set-up + the push that first returns
  audio), per-window cost, whole-stream RTF, SNR vs one-shot decode (noise_scale 0) and the
  worst step ratio at the joins (1.0 = no discontinuity);
- the official TTS.py streaming loop (24-token chunks, overlap 2) for comparison.

Run: .venv/bin/python bench/sovits_speed.py [--version v2|v2Pro|v2ProPlus] [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from voxroom.models.gpt_sovits.sovits import SAMPLE_RATE, SAMPLES_PER_TOKEN, SoVITSModel
from voxroom.models.gpt_sovits.sovits_streaming import (
    OfficialStreamingSession,
    StreamingDecoder,
    StreamingSchedule,
)
from voxroom.models.gpt_sovits.spectrogram import reference_spectrogram

N_CODES, N_PHONES, REF_SECONDS = 250, 100, 4.25


def _snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    signal = reference - reference.mean()
    return float(10 * np.log10(np.sum(signal**2) / max(np.sum((reference - test) ** 2), 1e-20)))


def _worst_join_step(reference: np.ndarray, chunks: list[np.ndarray], fade: int) -> float:
    step_ref, step_out = np.abs(np.diff(reference)), np.abs(np.diff(np.concatenate(chunks)))
    joins = np.cumsum([c.size for c in chunks if c.size])[:-1]
    ratios = [step_out[j - 128 : j + fade + 128].max() / step_ref[j - 128 : j + fade + 128].max() for j in joins]
    return max(ratios) if ratios else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default="v2", choices=["v2", "v2Pro", "v2ProPlus"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    model = SoVITSModel.from_config(args.version)
    codes = torch.randint(0, 1024, (1, 1, N_CODES), generator=g)
    text = torch.randint(0, 732, (1, N_PHONES), generator=g)
    ref_audio = 0.3 * torch.randn(1, int(REF_SECONDS * SAMPLE_RATE), generator=g)
    spec = reference_spectrogram(ref_audio)
    sv = torch.rand(1, 20480, generator=g) if model.config.is_pro else None
    timbre = model.reference_embedding(spec, sv)
    audio_s = N_CODES * SAMPLES_PER_TOKEN / SAMPLE_RATE
    n_params = sum(p.numel() for p in model.parameters())
    print(f"SoVITS {args.version}: {n_params / 1e6:.2f} M params (no enc_q), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {N_CODES} codes = {audio_s:.1f} s audio, {N_PHONES} phones, "
          f"reference {spec.shape[-1]} frames")

    # -- one-shot decode
    t = time.perf_counter()
    model.decode(codes, text, spec, sv_embs=sv, noise_scale=0.5)
    print(f"first call (warm-up, incl. reference encoder): {time.perf_counter() - t:.2f} s")
    walls = []
    for _ in range(args.runs):
        t = time.perf_counter()
        model.decode(codes, text, spec, sv_embs=sv, noise_scale=0.5)
        walls.append(time.perf_counter() - t)
    print(f"decode (reference spec each call): median {statistics.median(walls):.2f} s, "
          f"RTF {statistics.median(walls) / audio_s:.3f} (best {min(walls) / audio_s:.3f})")
    with torch.inference_mode():
        t0 = time.perf_counter()
        y = model.latent(codes, text, timbre)
        _, m, logs = model.enc_p.prior(y)
        t1 = time.perf_counter()
        z = model.flow.reverse(m, timbre.ge)
        t2 = time.perf_counter()
        reference = model.dec(z, timbre.ge)[0, 0].numpy()
        t3 = time.perf_counter()
    print(f"stages: text encoder {1e3 * (t1 - t0):.0f} ms, flow {1e3 * (t2 - t1):.0f} ms, "
          f"HiFi-GAN {1e3 * (t3 - t2):.0f} ms")

    # -- our streaming decoder (noise_scale 0 so it can be compared with the one-shot render).
    # Run twice: the first stream also pays oneDNN's per-shape set-up for each new window length.
    schedule = StreamingSchedule()
    tokens = codes[0, 0].tolist()
    first_cold: float | None = None
    for attempt in range(2):
        first_ms: float | None = None
        first_tokens = 0
        window_ms: list[float] = []
        window_audio_ms: list[float] = []
        chunks: list[np.ndarray] = []
        t_start = time.perf_counter()
        decoder = StreamingDecoder(model, text, timbre, schedule=schedule, noise_scale=0.0)
        for i, token in enumerate(tokens):
            t = time.perf_counter()
            out = decoder.push([token])
            dt = 1e3 * (time.perf_counter() - t)
            if out.size:
                if first_ms is None:
                    first_ms = 1e3 * (time.perf_counter() - t_start)
                    first_tokens = i + 1
                else:
                    window_ms.append(dt)
                    window_audio_ms.append(out.size / SAMPLE_RATE * 1e3)
            chunks.append(out)
        chunks.append(decoder.finish())
        total = time.perf_counter() - t_start
        if attempt == 0:
            first_cold = first_ms
    streamed = np.concatenate(chunks)
    one_shot = model.decode(codes, text, timbre=timbre, noise_scale=0.0)[0, 0].numpy()
    print(f"StreamingDecoder {schedule}:")
    print(f"  first chunk after {first_tokens} tokens: {first_ms:.0f} ms (segment set-up + first window; "
          f"{first_cold:.0f} ms on the first stream), {chunks[first_tokens - 1].size / SAMPLE_RATE * 1e3:.0f} ms of audio")
    print(f"  later windows ({len(window_ms)}): median {statistics.median(window_ms):.0f} ms compute for "
          f"median {statistics.median(window_audio_ms):.0f} ms of audio; whole stream RTF {total / audio_s:.3f}")
    print(f"  vs one-shot (noise 0): SNR {_snr_db(one_shot, streamed):.1f} dB, "
          f"max |err| {np.abs(one_shot - streamed).max():.2e} (signal peak {np.abs(one_shot).max():.2e}), "
          f"worst join step ratio {_worst_join_step(one_shot, chunks, schedule.crossfade_samples):.2f}")

    # -- the official streaming loop, 24-token chunks
    session = OfficialStreamingSession(model, text, timbre, noise_scale=0.0)
    official_chunks = []
    t = time.perf_counter()
    first_official = None
    for start in range(0, N_CODES, 24):
        piece = codes[0, 0, start : start + 24]
        official_chunks.append(session.push(piece, is_final=start + 24 >= N_CODES).numpy())
        if first_official is None:
            first_official = 1e3 * (time.perf_counter() - t)
    total_official = time.perf_counter() - t
    official = np.concatenate(official_chunks)
    n = min(official.size, one_shot.size)
    print(f"official streaming loop (24-token chunks): first chunk {first_official:.0f} ms, "
          f"RTF {total_official / audio_s:.3f}, length {official.size} vs {one_shot.size} samples, "
          f"SNR vs one-shot (first {n}) {_snr_db(one_shot[:n], official[:n]):.1f} dB")

    # -- optional bf16 vocoder
    model.use_bf16_vocoder(True)
    with torch.inference_mode():
        model.synthesize(m, logs, timbre.ge, 0.0)
        walls = []
        for _ in range(args.runs):
            t = time.perf_counter()
            bf16 = model.synthesize(m, logs, timbre.ge, 0.0)[0, 0].numpy()
            walls.append(time.perf_counter() - t)
    fp32_total = (t3 - t1) + (t1 - t0)
    print(f"bf16 HiFi-GAN: flow+HiFi-GAN median {statistics.median(walls):.2f} s (fp32 {t3 - t1:.2f} s), "
          f"decode RTF ~{(statistics.median(walls) + t1 - t0) / audio_s:.3f} vs fp32 ~{fp32_total / audio_s:.3f}; "
          f"drift SNR {_snr_db(reference, bf16):.1f} dB, max |err| {np.abs(reference - bf16).max():.2e}")


if __name__ == "__main__":
    main()
