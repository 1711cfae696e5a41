"""GPT-SoVITS on CUDA: the golden comparisons of device_checks.py, and CUDA against the CPU.

Skipped where torch sees no CUDA device. The CPU/CUDA comparison turns TF32 off, so that it
checks where tensors live rather than TF32 rounding; with the same seed (one CPU generator for
every device) and greedy decoding both devices pick the same tokens and the same noise, so the
audio differs only by float32 rounding (atol 1e-3 on audio in [-1, 1]; UNMEASURED here: no GPU
was lent when this was written).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from voxroom.models.gpt_sovits.engine import GPTSoVITSEngine, SynthesisOptions

from .device_checks import assert_t2s_matches_golden, engine_speech
from .model_folders import GOLDEN, write_models_dir

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device"),
    pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden data not found at {GOLDEN}"),
]
GREEDY = SynthesisOptions(top_k=1, seed=7)


@pytest.fixture(autouse=True)
def _no_tf32() -> Iterator[None]:
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_models_dir(tmp_path_factory.mktemp("models"))


def test_t2s_matches_golden_on_cuda() -> None:
    assert_t2s_matches_golden(torch.device("cuda"))


def test_engine_on_cuda_speaks_like_the_cpu(models: Path) -> None:
    cpu = GPTSoVITSEngine.from_models_dir(models, options=GREEDY, device="cpu")
    cuda = GPTSoVITSEngine.from_models_dir(models, options=GREEDY, device="cuda", precision="fp32")
    assert cuda.device.type == "cuda" and next(cuda.sovits.parameters()).device.type == "cuda"
    cpu_prompt, cpu_audio = engine_speech(cpu)
    cuda_prompt, cuda_audio = engine_speech(cuda)
    assert cuda_prompt.prompt_tokens is not None and cuda_prompt.prompt_tokens.device.type == "cpu"
    assert torch.equal(cuda_prompt.prompt_tokens, cpu_prompt.prompt_tokens)
    torch.testing.assert_close(cuda_prompt.timbre.ge, cpu_prompt.timbre.ge, atol=1e-4, rtol=0)
    assert cuda_audio.shape == cpu_audio.shape
    np.testing.assert_allclose(cuda_audio, cpu_audio, atol=1e-3, rtol=0)


def test_cuda_defaults_to_fp16_and_speaks(models: Path) -> None:
    engine = GPTSoVITSEngine.from_models_dir(models, options=GREEDY, device="auto")
    assert engine.device.type == "cuda" and engine.precision == "fp16"
    assert engine.t2s.layers[0].qkv.weight.dtype == torch.float16
    _, audio = engine_speech(engine)
    assert audio.size and np.sqrt(np.mean(audio**2)) > 0.01


def test_int8_is_refused_on_cuda_and_auto_picks_the_cpu_for_it(models: Path) -> None:
    with pytest.raises(ValueError, match="CPU only"):
        GPTSoVITSEngine.from_models_dir(models, device="cuda", precision="int8")
    assert GPTSoVITSEngine.from_models_dir(models, device="auto", precision="int8").device.type == "cpu"
