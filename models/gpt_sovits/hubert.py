"""HuBERT (chinese-hubert-base) content encoder: 16 kHz waveform -> 50 Hz SSL features.

GPT-SoVITS turns the reference clip into prompt semantic tokens by running HuBERT on it and
quantising the last hidden state. This is a plain-PyTorch HuBERT that loads the official
`chinese-hubert-base/` folder (config.json, pytorch_model.bin with transformers' HubertModel
parameter names) and reads every size from config.json, so smaller test models load as well.

Two input conventions exist upstream, both provided here:
- `reference_ssl_content`: what inference does — the raw waveform plus 9600 zeros
  (0.3 s at 32 kHz, i.e. 0.6 s at 16 kHz: a pad length computed with the wrong rate that the
  semantic prompts were made with), no normalisation; returns (1, hidden, frames).
- `normalized_features`: the wrapper's own forward, which first normalises the waveform to
  zero mean and unit variance; returns (1, frames, hidden). Only the training data tools used it.
Frames: (samples - 400) // 320 + 1.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .feature_files import FeatureModelFileError, find_weight_file, load_into, load_state_dict, read_json

SAMPLE_RATE = 16000
REFERENCE_PAD_SAMPLES = int(32000 * 0.3)  # 9600: the official pad, computed from the 32 kHz rate
NORMALIZE_EPS = 1e-7  # Wav2Vec2FeatureExtractor's variance floor

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in _ACTIVATIONS:
        raise FeatureModelFileError(f"unsupported activation {name!r} (known: {', '.join(_ACTIVATIONS)})")
    return _ACTIVATIONS[name]


@dataclass(frozen=True)
class HubertConfig:
    """The HubertConfig fields inference depends on; defaults are chinese-hubert-base's."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    feat_proj_layer_norm: bool = True
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> HubertConfig:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values: dict[str, Any] = {}
        for key in names & set(data):
            value = data[key]
            values[key] = tuple(value) if isinstance(value, list) else value
        config = cls(**values, extra={k: v for k, v in data.items() if k not in names})
        if not len(config.conv_dim) == len(config.conv_kernel) == len(config.conv_stride):
            raise FeatureModelFileError(f"{source}: conv_dim, conv_kernel and conv_stride differ in length")
        if config.feat_extract_norm not in ("group", "layer"):
            raise FeatureModelFileError(
                f"{source}: unsupported feat_extract_norm {config.feat_extract_norm!r}"
            )
        if config.extra.get("conv_pos_batch_norm"):
            raise FeatureModelFileError(f"{source}: conv_pos_batch_norm models are not supported")
        if config.hidden_size % config.num_attention_heads:
            raise FeatureModelFileError(f"{source}: hidden_size is not a multiple of num_attention_heads")
        activation(config.hidden_act)
        activation(config.feat_extract_activation)
        return config

    @property
    def samples_per_frame(self) -> int:
        return math.prod(self.conv_stride)

    def num_frames(self, samples: int) -> int:
        """Frames the conv front end makes from `samples` input samples."""
        for kernel, stride in zip(self.conv_kernel, self.conv_stride, strict=True):
            samples = (samples - kernel) // stride + 1
        return max(samples, 0)


@dataclass
class HubertOutput:
    last_hidden_state: torch.Tensor  # (B, T, hidden)
    conv_features: torch.Tensor  # (B, conv_dim[-1], T): the conv front end's output
    hidden_states: list[torch.Tensor] | None = None  # [after pos-conv + LN, after layer 1, …]


class ConvLayer(nn.Module):
    """One conv of the waveform front end: conv, optional norm, activation."""

    def __init__(self, config: HubertConfig, index: int) -> None:
        super().__init__()
        in_dim = config.conv_dim[index - 1] if index > 0 else 1
        out_dim = config.conv_dim[index]
        self.conv = nn.Conv1d(
            in_dim,
            out_dim,
            config.conv_kernel[index],
            stride=config.conv_stride[index],
            bias=config.conv_bias,
        )
        self.norm_kind = None
        if config.feat_extract_norm == "layer":
            self.norm_kind = "layer"
            self.layer_norm: nn.Module = nn.LayerNorm(out_dim)
        elif index == 0:
            # "group" mode: only the first conv is normalised, per channel over time.
            self.norm_kind = "group"
            self.layer_norm = nn.GroupNorm(out_dim, out_dim)
        self.act = activation(config.feat_extract_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm_kind == "group":
            x = self.layer_norm(x)
        elif self.norm_kind == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return self.act(x)


class FeatureExtractor(nn.Module):
    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        self.conv_layers = nn.ModuleList(ConvLayer(config, i) for i in range(len(config.conv_dim)))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform[:, None]  # (B, 1, L)
        for layer in self.conv_layers:
            x = layer(x)
        return x  # (B, C, T)


class FeatureProjection(nn.Module):
    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        self.layer_norm = (
            nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
            if config.feat_proj_layer_norm
            else None
        )
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.projection(x)


class PositionalConvEmbedding(nn.Module):
    """Grouped conv over time; the loader fuses the file's weight-norm pair into `conv.weight`."""

    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        taps = config.num_conv_pos_embeddings
        self.conv = nn.Conv1d(
            config.hidden_size,
            config.hidden_size,
            taps,
            padding=taps // 2,
            groups=config.num_conv_pos_embedding_groups,
        )
        self.trim = 1 if taps % 2 == 0 else 0  # an even kernel with padding k//2 makes one frame too many
        self.act = activation(config.feat_extract_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[:, :, : -self.trim]
        return self.act(y).transpose(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        dim = config.hidden_size
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, dim = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, frames, self.heads, dim // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, frames, dim))


class FeedForward(nn.Module):
    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(self.act(self.intermediate_dense(x)))


class EncoderLayer(nn.Module):
    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        self.pre_norm = config.do_stable_layer_norm
        self.attention = SelfAttention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attention(self.layer_norm(x))
            return x + self.feed_forward(self.final_layer_norm(x))
        # HuBERT-base layout (chinese-hubert-base): post-LN.
        x = self.layer_norm(x + self.attention(x))
        return self.final_layer_norm(x + self.feed_forward(x))


class Encoder(nn.Module):
    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        self.pre_norm = config.do_stable_layer_norm
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor, collect: list[torch.Tensor] | None) -> torch.Tensor:
        x = x + self.pos_conv_embed(x)
        if not self.pre_norm:
            x = self.layer_norm(x)
        for layer in self.layers:
            if collect is not None:
                collect.append(x)
            x = layer(x)
        if self.pre_norm:
            x = self.layer_norm(x)
        if collect is not None:
            collect.append(x)
        return x


class HubertModel(nn.Module):
    """HuBERT inference network (no masking, no padding mask: one utterance per row)."""

    def __init__(self, config: HubertConfig, *, do_normalize: bool = True) -> None:
        super().__init__()
        self.config = config
        self.do_normalize = do_normalize  # preprocessor_config.json, used by `normalized_features`
        self.feature_extractor = FeatureExtractor(config)
        self.feature_projection = FeatureProjection(config)
        self.encoder = Encoder(config)

    def encode(self, waveform: torch.Tensor, *, hidden_states: bool = False) -> HubertOutput:
        """(B, L) float 16 kHz -> last hidden state (B, T, hidden), plus intermediates."""
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.dim() != 2:
            raise ValueError(f"expected waveform (B, samples), got shape {tuple(waveform.shape)}")
        if self.config.num_frames(waveform.shape[-1]) < 1:
            raise ValueError(f"{waveform.shape[-1]} samples are too few for one HuBERT frame")
        conv = self.feature_extractor(waveform.to(torch.float32))
        collected: list[torch.Tensor] | None = [] if hidden_states else None
        last = self.encoder(self.feature_projection(conv.transpose(1, 2)), collected)
        return HubertOutput(last_hidden_state=last, conv_features=conv, hidden_states=collected)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.encode(waveform).last_hidden_state


def _fuse_positional_weight_norm(state: dict[str, torch.Tensor], source: Path) -> None:
    """Replace the positional conv's weight-norm pair by the effective weight, in place.

    weight = g * v / ||v||, with the norm taken for each kernel tap (weight_norm dim=2) over the
    output and input-channel axes. Fusing over dim 0, as for ordinary convs, gives wrong norms.
    """
    prefix = "encoder.pos_conv_embed.conv."
    pairs = (
        (prefix + "weight_g", prefix + "weight_v"),
        (prefix + "parametrizations.weight.original0", prefix + "parametrizations.weight.original1"),
    )
    for g_key, v_key in pairs:
        if g_key in state and v_key in state:
            g, v = state.pop(g_key), state.pop(v_key)
            if g.dim() != 3 or g.shape[:2] != (1, 1) or g.shape[2] != v.shape[2]:
                raise FeatureModelFileError(
                    f"{source}: {g_key} has shape {tuple(g.shape)}; expected (1, 1, {v.shape[2]}) (weight norm over dim 2)"
                )
            state[prefix + "weight"] = v * (g / v.norm(dim=(0, 1), keepdim=True))
            return


def load_hubert(folder: str | Path) -> HubertModel:
    """Load a HuBERT folder (config.json + pytorch_model.bin / model.safetensors); eval mode, fp32."""
    folder = Path(folder)
    config_data = read_json(folder / "config.json")
    if config_data.get("model_type", "hubert") != "hubert":
        raise FeatureModelFileError(
            f"{folder / 'config.json'}: model_type is {config_data['model_type']!r}, not 'hubert'"
        )
    config = HubertConfig.from_dict(config_data, str(folder / "config.json"))
    do_normalize = True
    if (folder / "preprocessor_config.json").is_file():
        do_normalize = bool(read_json(folder / "preprocessor_config.json").get("do_normalize", True))
    weights = find_weight_file(folder)
    state = load_state_dict(weights)
    # Heads-on checkpoints (HubertForCTC and friends) prefix the trunk with "hubert.".
    if not any(key.startswith("feature_extractor.") for key in state):
        state = {key.removeprefix("hubert."): value for key, value in state.items()}
    _fuse_positional_weight_norm(state, weights)
    model = HubertModel(config, do_normalize=do_normalize)
    load_into(model, state, weights, ignore_unexpected=True)
    return model.eval()


@torch.inference_mode()
def reference_ssl_content(model: HubertModel, wav16k: torch.Tensor) -> torch.Tensor:
    """SSL features of a reference clip as GPT-SoVITS inference computes them: (1, hidden, T).

    `wav16k` is mono float (n,) at 16 kHz. Appends REFERENCE_PAD_SAMPLES zeros and feeds the
    raw (unnormalised) waveform to the model.
    """
    if wav16k.dim() == 2 and wav16k.shape[0] == 1:
        wav16k = wav16k[0]
    if wav16k.dim() != 1:
        raise ValueError(f"expected one mono waveform (n,), got shape {tuple(wav16k.shape)}")
    padded = torch.cat(
        [wav16k.to(torch.float32), wav16k.new_zeros(REFERENCE_PAD_SAMPLES, dtype=torch.float32)]
    )
    return model(padded.unsqueeze(0)).transpose(1, 2)


def normalize_waveform(wav: torch.Tensor) -> torch.Tensor:
    """Wav2Vec2FeatureExtractor's normalisation of each row: (x - mean) / sqrt(var + 1e-7)."""
    wav = wav.to(torch.float32)
    mean = wav.mean(dim=-1, keepdim=True)
    var = wav.var(dim=-1, unbiased=False, keepdim=True)
    return (wav - mean) / torch.sqrt(var + NORMALIZE_EPS)


@torch.inference_mode()
def normalized_features(model: HubertModel, wav16k: torch.Tensor) -> torch.Tensor:
    """The official wrapper's forward: features of the normalised waveform (if the folder's
    preprocessor asks for it), (B, T, hidden). Not what inference uses; see the module docstring."""
    if wav16k.dim() == 1:
        wav16k = wav16k.unsqueeze(0)
    return model(normalize_waveform(wav16k) if model.do_normalize else wav16k)
