"""Speed of the GPT-SoVITS text-to-semantic model (full v2 size, random weights) on this CPU.

Prints prefill time and decode tokens/s for fp32, bf16, fp16 and int8 (dynamic quantization),
with and without oneDNN weight prepacking ("+pack"), plus the drift of each variant against plain
fp32: max |logit| difference over a teacher-forced run and the agreement of greedy choices
(random weights have small top-1 margins, so agreement understates a trained model's). Setup mirrors the golden README timings: a 121-token prompt,
53 phones, EOS never chosen (early_stop_num caps the run).

    .venv/bin/python bench/t2s_speed.py [--tokens 200] [--threads 2] [--only fp32,fp32+pack,bf16+pack,fp16,int8]
"""

from __future__ import annotations

import argparse
import time

import torch

from voxroom.models.gpt_sovits.sampling import GREEDY, choose_tokens
from voxroom.models.gpt_sovits.t2s_generate import generate, start_session
from voxroom.models.gpt_sovits.t2s_model import T2SModel, prefix_lm_mask
from voxroom.models.gpt_sovits.t2s_quantize import pack_weights, quantize_int8, to_dtype


def make_inputs(n_phones: int, n_prompt: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    phones = torch.randint(0, 732, (1, n_phones), generator=gen)
    bert = 0.5 * torch.randn(1, 1024, n_phones, generator=gen)
    prompt = torch.randint(0, 1024, (1, n_prompt), generator=gen)
    return phones, bert, prompt


def time_decode(model: T2SModel, inputs: tuple, n_tokens: int) -> tuple[float, float]:
    """-> (prefill seconds, decode tokens/s) for one n_tokens utterance with top_k 15 sampling."""
    phones, bert, prompt = inputs
    session = start_session(model, phones, bert, prompt, early_stop_num=n_tokens - 1, generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    session.step()  # prefill + first token
    t1 = time.perf_counter()
    n = 1
    while not session.finished:
        session.step()
        n += 1
    t2 = time.perf_counter()
    return t1 - t0, (n - 1) / (t2 - t1)


@torch.inference_mode()
def teacher_forced_logits(model: T2SModel, inputs: tuple, tokens: torch.Tensor) -> torch.Tensor:
    """Logits (len(tokens)+1, vocab) along a fixed token path, so drift does not compound."""
    phones, bert, prompt = inputs
    n_text, n_prompt = phones.shape[1], prompt.shape[1]
    cache = model.new_cache(1, n_text + n_prompt + tokens.numel() + 1)
    h = torch.cat([model.embed_text(phones, bert), model.embed_audio(prompt)], dim=1)
    h = model.run_layers(h, cache, 0, prefix_lm_mask(n_text, n_prompt))
    out = [model.logits(h[:, -1])]
    for i, tok in enumerate(tokens.tolist()):
        pos = n_prompt + i
        h = model.run_layers(model.embed_audio(torch.tensor([[tok]]), pos), cache, n_text + pos, None)
        out.append(model.logits(h[:, -1]))
    return torch.cat(out)


def _packed(model: T2SModel) -> T2SModel:
    if not pack_weights(model):
        print("(oneDNN prepacking unsupported here: unpacked timings)")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--phones", type=int, default=53)
    parser.add_argument("--prompt", type=int, default=121)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", default="fp32,fp32+pack,bf16,bf16+pack,fp16,int8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kinds = args.only.split(",")

    base = T2SModel.from_config(seed=0)
    inputs = make_inputs(args.phones, args.prompt)
    builders = {
        "fp32": lambda: base,
        "fp32+pack": lambda: _packed(T2SModel.from_config(seed=0)),
        "bf16": lambda: to_dtype(T2SModel.from_config(seed=0), torch.bfloat16),
        "bf16+pack": lambda: _packed(to_dtype(T2SModel.from_config(seed=0), torch.bfloat16)),
        "fp16": lambda: to_dtype(T2SModel.from_config(seed=0), torch.float16),
        "int8": lambda: quantize_int8(base),
    }
    unknown = set(kinds) - set(builders)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}; choose from {sorted(builders)}")
    models = {kind: builders[kind]() for kind in kinds}
    print(f"T2S full v2 size ({sum(p.numel() for p in base.parameters()) / 1e6:.1f} M params), "
          f"{args.phones} phones + {args.prompt} prompt tokens, {args.tokens} tokens, {args.threads} threads")

    for kind in kinds:
        model = models[kind]
        time_decode(model, inputs, 12)  # warm-up (oneDNN kernels, allocator)
        runs = [time_decode(model, inputs, args.tokens) for _ in range(args.repeats)]
        prefill = min(r[0] for r in runs)
        tps = max(r[1] for r in runs)
        print(f"{kind:9s} prefill {prefill * 1000:7.1f} ms   decode {tps:6.1f} tokens/s   ({1000 / tps:.1f} ms/token)")

    # Drift against fp32 along the fp32 greedy path (100 steps).
    ref = generate(base, *inputs, top_k=1, early_stop_num=99)
    ref_logits = teacher_forced_logits(base, inputs, ref.tokens)
    for kind in kinds:
        if kind == "fp32":
            continue
        logits = teacher_forced_logits(models[kind], inputs, ref.tokens)
        seen = torch.zeros(1, 1025, dtype=torch.bool)
        seen[0, inputs[2][0]] = True
        agree = 0
        for i in range(ref_logits.shape[0] - 1):
            a = choose_tokens(ref_logits[i : i + 1], seen, i, 1024, GREEDY).greedy
            b = choose_tokens(logits[i : i + 1], seen, i, 1024, GREEDY).greedy
            agree += int(a == b)
            seen[0, ref.tokens[i]] = True
        diff = (logits - ref_logits).abs().max().item()
        print(f"{kind:9s} vs fp32: max |logit diff| {diff:.3g} (logit absmax {ref_logits.abs().max().item():.3g}), "
              f"greedy agreement {agree}/{ref_logits.shape[0] - 1} steps")


if __name__ == "__main__":
    main()
