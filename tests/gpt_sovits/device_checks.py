"""The golden comparisons that must hold on every device, shared by the CPU tests and test_cuda.py.

- T2S: the golden tiny checkpoint, moved to the device, decodes the official greedy tokens exactly,
  with per-step logits within 1e-4 (the smallest greedy margin in the golden data is 4e-3).
- Engine: the golden tiny models speak one English and one Chinese piece with a fixed seed;
  `engine_speech` returns the voice prompt and the audio for comparison across devices.
"""

from __future__ import annotations

import asyncio
import wave

import numpy as np
import torch
from safetensors.torch import load_file

from voxroom.models.engine import Voice
from voxroom.models.gpt_sovits.engine import GPTSoVITSEngine
from voxroom.models.gpt_sovits.t2s_generate import generate
from voxroom.models.gpt_sovits.t2s_model import load_t2s
from voxroom.models.gpt_sovits.voice_prompt import VoicePrompt

from .model_folders import GOLDEN

SPEECH = GOLDEN.parent / "speech" / "pysptk__cmu_arctic_awb_a0007.wav"
TRANSCRIPT = "And you always want to see it in the superlative degree."
TEXT = "Hello everyone. 大家好，欢迎来到直播间。"
T2S_ATOL = 1e-4
# golden file -> (checkpoint, repetition penalty, early_stop_num), as in test_t2s.py
T2S_CASES = {
    "greedy_ref_bertrand_rp1.35": ("s1_tiny_v2.ckpt", 1.35, 59),
    "greedy_reffree_bertzero_rp1.35": ("s1_tiny_v2.ckpt", 1.35, 59),
    "eos_greedy_ref_bertzero_rp1.35": ("s1_tiny_v2_eos.ckpt", 1.35, 2700),
}


def assert_t2s_matches_golden(device: torch.device) -> None:
    for name, (checkpoint, penalty, early_stop) in T2S_CASES.items():
        d = load_file(GOLDEN / "t2s" / f"{name}.safetensors")
        model = load_t2s(GOLDEN / "models" / checkpoint).to(device)
        result = generate(model, d["phoneme_ids"], d["bert_feature"], d.get("prompts"), top_k=1,
                          repetition_penalty=penalty, early_stop_num=early_stop, record_logits=True)
        assert result.logits is not None
        assert result.logits.device.type == device.type
        torch.testing.assert_close(result.logits.cpu(), d["logits_raw_all_steps"], atol=T2S_ATOL, rtol=0)
        assert torch.equal(result.tokens, d["generated"].long()), name
        assert result.idx == int(d["idx"]), name


def read_speech() -> tuple[np.ndarray, int]:
    with wave.open(str(SPEECH)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
        return data, w.getframerate()


def engine_speech(engine: GPTSoVITSEngine) -> tuple[VoicePrompt, np.ndarray]:
    """The voice prompt of the golden speech clip, and TEXT spoken with it."""
    audio, rate = read_speech()
    prompt = engine.prepare_voice(audio, rate, TRANSCRIPT, "en")

    async def speak() -> np.ndarray:
        voice = Voice(id="v", name="device", engine="gpt-sovits", prompt=prompt)
        return np.concatenate([c.samples async for c in engine.stream(TEXT, voice, lang="auto")])

    return prompt, asyncio.run(speak())
