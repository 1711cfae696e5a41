"""HuBERT content encoder against the official golden outputs (tiny random model).

Tolerance: atol 1e-4 on every float tensor (README of the golden set: its intrinsic error is
about 1e-6; this implementation measures ~5e-6).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from voxroom.models.gpt_sovits.feature_files import FeatureModelFileError
from voxroom.models.gpt_sovits.hubert import (
    REFERENCE_PAD_SAMPLES,
    HubertConfig,
    HubertModel,
    load_hubert,
    normalize_waveform,
    normalized_features,
    reference_ssl_content,
)

GOLDEN = Path(os.environ.get("VOXROOM_GOLDEN", Path(__file__).resolve().parents[3] / "shared" / "golden"))
TINY = GOLDEN / "models" / "hubert_tiny"
ATOL = 1e-4

needs_golden = pytest.mark.skipif(not TINY.is_dir(), reason=f"golden data not found at {GOLDEN}")


@pytest.fixture(scope="module")
def tiny() -> HubertModel:
    return load_hubert(TINY)


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "hubert" / "tiny_hubert.safetensors")


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "inputs" / "reference_audio.safetensors")


@needs_golden
def test_reference_ssl_content_pads_and_matches_official(tiny, golden, inputs) -> None:
    # From the unpadded librosa clip: the function itself must add the 0.6 s of zeros.
    wav = inputs["ref_a_16k_librosa"]
    assert REFERENCE_PAD_SAMPLES == 9600
    content = reference_ssl_content(tiny, wav)
    assert content.shape == golden["ssl_content"].shape == (1, 64, 242)
    assert content.shape[-1] == (wav.shape[0] + 9600 - 400) // 320 + 1
    torch.testing.assert_close(content, golden["ssl_content"], atol=ATOL, rtol=0)


@needs_golden
def test_intermediates_match_official(tiny, golden) -> None:
    out = tiny.encode(golden["wav16k_padded"][None], hidden_states=True)
    torch.testing.assert_close(out.conv_features, golden["conv_features"], atol=ATOL, rtol=0)
    assert out.hidden_states is not None and len(out.hidden_states) == 3
    for i, state in enumerate(out.hidden_states):
        torch.testing.assert_close(state, golden[f"hidden_state_{i}"], atol=ATOL, rtol=0)
    torch.testing.assert_close(out.last_hidden_state, out.hidden_states[-1])


@needs_golden
def test_normalized_path_matches_official_wrapper(tiny, golden) -> None:
    assert tiny.do_normalize  # from preprocessor_config.json
    torch.testing.assert_close(
        normalize_waveform(golden["wav16k_padded"][None]), golden["fe_input_values"], atol=ATOL, rtol=0
    )
    feats = normalized_features(tiny, golden["wav16k_padded"])
    torch.testing.assert_close(feats, golden["forward_feats"], atol=ATOL, rtol=0)


@needs_golden
def test_positional_conv_weight_norm_is_over_dim_2(tiny) -> None:
    state = torch.load(TINY / "pytorch_model.bin", weights_only=True)
    g = state["encoder.pos_conv_embed.conv.weight_g"]
    v = state["encoder.pos_conv_embed.conv.weight_v"]
    expected = torch._weight_norm(v, g, dim=2)
    torch.testing.assert_close(tiny.encoder.pos_conv_embed.conv.weight.detach(), expected)
    wrong = v * (g / v.norm(dim=(1, 2), keepdim=True))  # normalising per output channel instead
    assert not torch.allclose(expected, wrong, atol=1e-3)


@needs_golden
def test_fp16_checkpoint_loads_as_fp32(tmp_path, tiny, golden) -> None:
    folder = tmp_path / "hubert_fp16"
    shutil.copytree(TINY, folder)
    state = torch.load(TINY / "pytorch_model.bin", weights_only=True)
    torch.save({k: v.half() for k, v in state.items()}, folder / "pytorch_model.bin")
    model = load_hubert(folder)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    content = reference_ssl_content(model, golden["wav16k_padded"][:-REFERENCE_PAD_SAMPLES])
    # fp16 rounding of the weights moves the output, but only a little.
    assert (content - golden["ssl_content"]).abs().max() < 0.1


def test_config_defaults_match_transformers() -> None:
    """Fields a config.json leaves out must default exactly as transformers' HubertConfig does."""
    transformers = pytest.importorskip("transformers")
    reference = transformers.HubertConfig()
    mine = HubertConfig.from_dict({})
    for field in dataclasses.fields(HubertConfig):
        if field.name != "extra":
            expected = getattr(reference, field.name)
            assert getattr(mine, field.name) == (tuple(expected) if isinstance(expected, list) else expected)


def test_frame_count_formula() -> None:
    config = HubertConfig()
    assert config.samples_per_frame == 320
    for samples in (400, 719, 720, 16000, 160000 + 9600):
        assert config.num_frames(samples) == (samples - 400) // 320 + 1
    assert config.num_frames(399) == 0


def test_too_short_input_is_rejected() -> None:
    model = HubertModel(
        HubertConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            conv_dim=(8,) * 7,
            num_conv_pos_embeddings=4,
            num_conv_pos_embedding_groups=2,
        )
    )
    with pytest.raises(ValueError, match="too few"):
        model(torch.zeros(1, 300))


def test_missing_folder_and_files_raise_clear_errors(tmp_path) -> None:
    with pytest.raises(FeatureModelFileError, match="config.json"):
        load_hubert(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    with pytest.raises(FeatureModelFileError, match="no weights"):
        load_hubert(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(FeatureModelFileError, match="cannot load"):
        load_hubert(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(FeatureModelFileError, match="not 'hubert'"):
        load_hubert(tmp_path)


@needs_golden
def test_missing_tensor_is_named(tmp_path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(TINY, folder)
    state = torch.load(TINY / "pytorch_model.bin", weights_only=True)
    del state["encoder.layers.1.final_layer_norm.bias"]
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(FeatureModelFileError, match="final_layer_norm.bias"):
        load_hubert(folder)


@pytest.mark.parametrize("stable", [False, True])
def test_matches_transformers_on_other_layouts(tmp_path, stable) -> None:
    """Layer-norm front end and pre-LN encoder (not used by chinese-hubert-base) against the
    transformers reference, which is only a test dependency. atol 1e-4."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(3)
    config = transformers.HubertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        conv_dim=[16] * 7,
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=stable,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    reference = transformers.HubertModel(config).eval()
    with torch.no_grad():
        for p in reference.parameters():  # make every tensor matter (biases, norms default to 0/1)
            p.add_(0.05 * torch.randn_like(p))
    config.to_json_file(tmp_path / "config.json")
    torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin")
    model = load_hubert(tmp_path)
    wav = 0.1 * torch.randn(1, 4000)
    with torch.no_grad():
        expected = reference(wav, output_hidden_states=True)
    out = model.encode(wav, hidden_states=True)
    torch.testing.assert_close(out.last_hidden_state, expected.last_hidden_state, atol=ATOL, rtol=0)
    assert out.hidden_states is not None and len(out.hidden_states) == len(expected.hidden_states)
    # transformers 5 records the pre-LN encoder's last state before its final LayerNorm; the
    # states before each layer agree in both conventions.
    compared = out.hidden_states[:-1] if stable else out.hidden_states
    for mine, theirs in zip(compared, expected.hidden_states, strict=False):
        torch.testing.assert_close(mine, theirs, atol=ATOL, rtol=0)
