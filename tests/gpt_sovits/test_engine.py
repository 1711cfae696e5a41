"""The GPT-SoVITS Engine end to end: official-format files -> voice prompt -> streamed speech.

Uses the golden tiny s1/s2 checkpoints with HuBERT/RoBERTa folders of the real widths and random
weights (model_folders.py), and once the full-size official configs with random weights.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from voxroom.models.engine import SynthesisError, Voice
from voxroom.models.gpt_sovits.engine import GPTSoVITSEngine, SynthesisOptions
from voxroom.models.gpt_sovits.sovits import SoVITSModel
from voxroom.models.gpt_sovits.t2s_model import T2SModel
from voxroom.models.gpt_sovits.voice_prompt import VoicePrompt

from .device_checks import assert_t2s_matches_golden, engine_speech
from .model_folders import GOLDEN, write_hubert_folder, write_models_dir

SPEECH = GOLDEN.parent / "speech" / "pysptk__cmu_arctic_awb_a0007.wav"
TRANSCRIPT = "And you always want to see it in the superlative degree."
pytestmark = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden data not found at {GOLDEN}")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
        return data, w.getframerate()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> GPTSoVITSEngine:
    models = write_models_dir(tmp_path_factory.mktemp("models"))
    return GPTSoVITSEngine.from_models_dir(models, options=SynthesisOptions(seed=7))


@pytest.fixture(scope="module")
def prompt(engine: GPTSoVITSEngine) -> VoicePrompt:
    audio, rate = read_wav(SPEECH)
    return engine.prepare_voice(audio, rate, TRANSCRIPT, "en")


def test_voice_prompt_is_computed_once_and_round_trips(engine: GPTSoVITSEngine, prompt: VoicePrompt) -> None:
    audio, rate = read_wav(SPEECH)
    # 4.0 s of speech + 0.6 s padding at 25 tokens/s
    assert prompt.prompt_tokens is not None and prompt.prompt_tokens.numel() == int((len(audio) / rate * 16000 + 9600 - 400) // 320 + 1) // 2
    assert prompt.prompt_phones.numel() == prompt.prompt_bert.shape[1] > 20
    assert prompt.timbre.ge.shape == (1, 512, 1)
    again = VoicePrompt.from_bytes(prompt.to_bytes())
    assert torch.equal(again.prompt_tokens, prompt.prompt_tokens) and torch.equal(again.timbre.ge, prompt.timbre.ge)
    assert again.transcript.startswith("And you always") and again.model_version == "v2"
    with pytest.raises(ValueError):
        VoicePrompt.from_bytes(b"not a prompt")


def test_reference_length_is_checked(engine: GPTSoVITSEngine) -> None:
    with pytest.raises(SynthesisError, match="3-10 s"):
        engine.prepare_voice(np.zeros(16000, np.float32), 16000, "hi", "en")
    with pytest.raises(SynthesisError, match="3-10 s"):
        engine.prepare_voice(np.zeros(16000 * 11, np.float32), 16000, "hi", "en")


async def test_stream_yields_audio_while_tokens_are_still_coming(engine: GPTSoVITSEngine, prompt: VoicePrompt,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from voxroom.models.gpt_sovits.sovits_streaming import StreamingDecoder

    voice = Voice(id="v1", name="test", engine="gpt-sovits", prompt=prompt.to_bytes())
    text = "Hello everyone, welcome to the stream. 大家好，欢迎来到直播间。"
    windows: list[tuple[bool, int]] = []  # (final, tokens the window was rendered from), in order
    original_render = StreamingDecoder._render

    def spy(self: StreamingDecoder, final: bool, n: int) -> np.ndarray:
        windows.append((final, n))
        return original_render(self, final, n)

    monkeypatch.setattr(StreamingDecoder, "_render", spy)
    chunks = [c async for c in engine.stream(text, voice, lang="auto")]
    assert isinstance(voice.prompt, VoicePrompt)  # decoded once and cached on the voice
    assert len(chunks) > 4 and all(c.sample_rate == 32000 and c.samples.dtype == np.float32 for c in chunks)
    # The first window of the first piece is rendered from its first 8 tokens, long before its end.
    assert windows[0] == (False, engine.options.schedule.first_chunk_tokens)
    assert sum(final for final, _ in windows) == len({c.text for c in chunks})  # one last window a piece
    pieces = [c.text for c in chunks]
    assert pieces[0].startswith("Hello") and any("欢迎" in p for p in pieces)
    audio = np.concatenate([c.samples for c in chunks])
    assert np.max(np.abs(audio)) <= 1.0 and np.sqrt(np.mean(audio**2)) > 0.01


async def test_same_seed_same_audio_and_reference_free_mode(engine: GPTSoVITSEngine, prompt: VoicePrompt) -> None:
    voice = Voice(id="v1", name="test", engine="gpt-sovits", prompt=prompt)
    a = np.concatenate([c.samples async for c in engine.stream("Thanks for the gift.", voice, lang="en")])
    b = np.concatenate([c.samples async for c in engine.stream("Thanks for the gift.", voice, lang="en")])
    assert np.array_equal(a, b)
    audio, rate = read_wav(SPEECH)
    free = engine.prepare_voice(audio, rate, "", "en")
    assert free.reference_free and free.prompt_phones.numel() == 0
    out = [c async for c in engine.stream("Thanks for the gift.", Voice("f", "free", "gpt-sovits", free), lang="en")]
    assert out


async def test_closing_the_stream_stops_the_worker_promptly(engine: GPTSoVITSEngine, prompt: VoicePrompt) -> None:
    voice = Voice(id="v1", name="test", engine="gpt-sovits", prompt=prompt)
    long_text = " ".join(["This sentence is here to keep the model busy for a while."] * 8)
    stream = engine.stream(long_text, voice, lang="en")
    await stream.__anext__()
    await stream.aclose()
    start = time.monotonic()
    scheduler = engine.scheduler
    while scheduler.active or scheduler.waiting:  # its slot is freed before the scheduler's next step
        assert time.monotonic() - start < 2.0
        await asyncio.sleep(0.01)
    assert engine._open_streams == 0
    assert [c async for c in engine.stream("Still works.", voice, lang="en")]


async def test_wrong_voices_are_clear_errors(engine: GPTSoVITSEngine, prompt: VoicePrompt) -> None:
    with pytest.raises(SynthesisError, match="cloned voice"):
        [c async for c in engine.stream("hi", None)]
    with pytest.raises(SynthesisError, match="no GPT-SoVITS prompt"):
        [c async for c in engine.stream("hi", Voice("x", "x", "gpt-sovits", prompt=None))]
    other = VoicePrompt("v2Pro", prompt.prompt_tokens, prompt.prompt_phones, prompt.prompt_bert, prompt.timbre)
    with pytest.raises(SynthesisError, match="re-create the voice"):
        [c async for c in engine.stream("hi", Voice("x", "x", "gpt-sovits", prompt=other))]


@pytest.mark.parametrize("precision", ["fp16", "bf16", "int8"])
async def test_every_precision_speaks_like_fp32(tmp_path: Path, precision: str, engine: GPTSoVITSEngine,
                                                prompt: VoicePrompt, caplog: pytest.LogCaptureFixture) -> None:
    """The options `voxroom serve --precision` offers: each one loads the same files and speaks. With
    greedy decoding the tiny golden model picks the same first tokens as fp32, so the first quarter
    second must match closely; bench/gpt_sovits.py measures speed and drift on full-size models."""
    from voxroom.models.gpt_sovits.engine import bf16_is_native

    models = write_models_dir(tmp_path / "models")
    greedy = SynthesisOptions(seed=7, top_k=1)
    other = GPTSoVITSEngine.from_models_dir(models, options=greedy, precision=precision)
    assert other.precision == precision
    if precision == "bf16":
        assert ("no hardware bfloat16" in caplog.text) == (not bf16_is_native())
    voice = Voice(id="v1", name="test", engine="gpt-sovits", prompt=prompt.to_bytes())
    engine.options, saved = greedy, engine.options
    try:
        ref = np.concatenate([c.samples async for c in engine.stream("Thanks for the gift.", voice, lang="en")])
    finally:
        engine.options = saved
    out = np.concatenate([c.samples async for c in other.stream("Thanks for the gift.", voice, lang="en")])
    assert np.isfinite(out).all() and np.max(np.abs(out)) <= 1.0 and np.sqrt(np.mean(out**2)) > 0.01
    n = min(len(ref), len(out), 32000 // 4)  # the first quarter second: the same tokens, near the same audio
    snr = 10 * np.log10(np.sum(ref[:n] ** 2) / (np.sum((ref[:n] - out[:n]) ** 2) + 1e-12))
    # Seen: fp16 141 dB, int8 56 dB (the same tokens), bf16 31 dB (its vocoder runs in bf16 too).
    assert snr > {"fp16": 40.0, "bf16": 20.0, "int8": 30.0}[precision], snr
    with pytest.raises(ValueError, match="precision must be"):
        other.set_precision("fp64")


def test_full_size_random_models_run_end_to_end(tmp_path: Path) -> None:
    """Official v2 sizes (24-layer T2S, full SoVITS, 12-layer HuBERT), random weights, through the engine."""
    from voxroom.models.gpt_sovits.hubert import load_hubert

    hubert = load_hubert(write_hubert_folder(tmp_path / "hubert", hidden=768, layers=12))
    engine = GPTSoVITSEngine(T2SModel.from_config(), SoVITSModel.from_config("v2"), hubert,
                             options=SynthesisOptions(seed=1))
    audio, rate = read_wav(SPEECH)
    prompt = engine.prepare_voice(audio, rate, TRANSCRIPT, "en")
    got: list[np.ndarray] = []
    stop = threading.Event()

    def emit(samples: np.ndarray, piece: str) -> None:
        got.append(samples)
        if sum(len(g) for g in got) >= 32000:  # random weights rarely say EOS: one second is enough
            stop.set()

    engine.synthesize_blocking("Hello there, friends.", prompt, lang="en", emit=emit, stop=stop)
    assert sum(len(g) for g in got) >= 32000
    assert np.isfinite(np.concatenate(got)).all()


def test_golden_t2s_checks_hold_on_the_cpu_device() -> None:
    """The comparison test_cuda.py runs on CUDA, run here so that it is known to pass somewhere."""
    assert_t2s_matches_golden(torch.device("cpu"))


def test_engine_on_the_cpu_device_speaks_as_before(tmp_path: Path, engine: GPTSoVITSEngine) -> None:
    """device="cpu" is the constructor's default: the same prompt and the same audio, bit for bit."""
    explicit = GPTSoVITSEngine.from_models_dir(write_models_dir(tmp_path), options=SynthesisOptions(seed=7),
                                               device="cpu")
    assert explicit.device == engine.device == torch.device("cpu") and explicit.precision == "fp32"
    prompt, audio = engine_speech(explicit)
    default_prompt, default_audio = engine_speech(engine)
    assert prompt.prompt_tokens is not None and default_prompt.prompt_tokens is not None
    assert torch.equal(prompt.prompt_tokens, default_prompt.prompt_tokens)
    assert torch.equal(prompt.timbre.ge, default_prompt.timbre.ge)
    assert torch.equal(prompt.prompt_bert, default_prompt.prompt_bert)
    assert audio.size and np.array_equal(audio, default_audio)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_auto_is_the_cpu_without_cuda_and_cuda_is_refused(tmp_path: Path) -> None:
    models = write_models_dir(tmp_path)
    auto = GPTSoVITSEngine.from_models_dir(models, device="auto")
    assert auto.device == torch.device("cpu") and auto.precision == "fp32"
    with pytest.raises(ValueError, match="finds no CUDA device"):
        GPTSoVITSEngine.from_models_dir(models, device="cuda")
    with pytest.raises(ValueError, match="'device' must be"):
        GPTSoVITSEngine.from_models_dir(models, device="gpu")


async def test_precision_auto_times_each_network_and_says_why(tmp_path: Path, prompt: VoicePrompt,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """No assertion on which precision wins (that is this machine's timing), only that each candidate
    was measured, the pick is applied and logged, and the engine speaks."""
    caplog.set_level(logging.INFO, logger="voxroom.models.gpt_sovits.engine")
    auto = GPTSoVITSEngine.from_models_dir(write_models_dir(tmp_path / "models"), options=SynthesisOptions(seed=7),
                                           precision="auto")
    choice = auto.precision_choice
    assert choice is not None and auto.precision == f"auto: T2S {choice.t2s}, SoVITS {choice.sovits}"
    assert choice.t2s in ("fp32", "fp16", "int8", "bf16") and choice.sovits in ("fp32", "bf16")
    for measured in ("T2S fp32", "T2S fp16", "T2S int8", "SoVITS fp32 RTF"):
        assert measured in choice.reason
    assert "precision auto: picked" in caplog.text
    voice = Voice(id="v1", name="test", engine="gpt-sovits", prompt=prompt)
    out = np.concatenate([c.samples async for c in auto.stream("Thanks for the gift.", voice, lang="en")])
    assert np.isfinite(out).all() and np.sqrt(np.mean(out**2)) > 0.01


def test_precision_auto_leaves_out_a_precision_that_drifts(monkeypatch: pytest.MonkeyPatch) -> None:
    from voxroom.models.gpt_sovits import precision_choice
    from voxroom.models.gpt_sovits.sovits import load_sovits
    from voxroom.models.gpt_sovits.t2s_model import load_t2s

    convert = precision_choice.converted

    def broken_fp16(model: T2SModel, precision: str) -> T2SModel:
        twin = convert(model, precision)
        if precision == "fp16":
            with torch.no_grad():
                twin.lm_head.weight.mul_(3.0)  # logits ~9 become ~27: a broken cast
        return twin

    monkeypatch.setattr(precision_choice, "converted", broken_fp16)
    t2s = load_t2s(GOLDEN / "models" / "s1_tiny_v2.ckpt")
    sovits, _ = load_sovits(GOLDEN / "models" / "s2_tiny_v2.pth")
    choice = precision_choice.choose(t2s, sovits, bf16_native=False)
    assert choice.t2s != "fp16" and "T2S fp16" in choice.reason and "drifts" in choice.reason
    assert "SoVITS bf16 not tried" in choice.reason and choice.sovits == "fp32"
    assert t2s.dtype == torch.float32 and t2s.lm_head.weight.dtype == torch.float32  # measured on copies
