"""SoVITS (GPT-SoVITS stage 2) decoder, v1 / v2 / v2Pro / v2ProPlus, inference only.

Semantic tokens (25 Hz, from the GPT) + target phone ids + reference spectrogram(s) -> 32 kHz audio.
Module and parameter names mirror the official `SynthesizerTrn` state_dict so checkpoint weights
(after `checkpoints.fuse_weight_norm`) load key for key; the training-only posterior encoder
`enc_q` is not built.

Data flow of `decode` (v2, batch 1, T tokens, P phones, F = 2T latent frames):
  codes (1,1,T) -> codebook (1,768,T) -> nearest x2 (1,768,F)
  -> enc_p: ssl_proj 768->192, encoder_ssl (rel-pos transformer), text embedding + encoder_text,
     MRTE cross-attention (SSL frames attend to phones, + timbre), encoder2 -> latent y (1,192,F)
  -> [speed: linear resample of y to int(F/speed)+1 frames] -> proj -> m, logs (1,inter,F')
  -> z_p = m + noise * exp(logs) * noise_scale -> reverse residual-coupling flow -> z
  -> HiFi-GAN -> audio (1,1,640 F').
Timbre: ge = mean over references of MelStyleEncoder(spec[:704]) (1,gin,1); v2Pro adds a
speaker-verification vector: ge = PReLU(ref_enc(spec) + Linear(sv_emb)), and MRTE gets
ge_to512(ge) while flow and HiFi-GAN get the gin-wide ge.

Batch size is 1 throughout and every sequence is full length, so the official padding masks are
all ones and are left out. The networks live in sovits_encoders.py (enc_p, ref_enc),
sovits_flow.py (flow) and hifigan.py (dec); streaming decoders in sovits_streaming.py.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import CheckpointError, HParams, SoVITSCheckpoint, read_sovits_checkpoint
from .hifigan import Generator
from .sovits_encoders import MRTE_CHANNELS, SSL_DIM, MelStyleEncoder, TextEncoder
from .sovits_flow import ResidualCouplingFlow

CODEBOOK_SIZE = 1024
SAMPLES_PER_TOKEN = 1280  # 2 latent frames x 640 samples at 32 kHz
SAMPLE_RATE = 32000
REF_ENC_BINS_V2 = 704  # v2+ reference encoder reads only the first 704 of 1025 bins
SV_EMB_DIM = 20480
PRO_VERSIONS = ("v2Pro", "v2ProPlus")


@dataclass(frozen=True)
class SoVITSConfig:
    """The SynthesizerTrn hyper-parameters inference needs (the `model` section of the s2 config)."""

    version: str = "v2"
    inter_channels: int = 192
    hidden_channels: int = 192
    filter_channels: int = 768
    n_heads: int = 2
    n_layers: int = 6
    kernel_size: int = 3
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    upsample_rates: tuple[int, ...] = (10, 8, 2, 2, 2)
    upsample_initial_channel: int = 512
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8, 2, 2)
    gin_channels: int = 512
    spec_channels: int = 1025  # filter_length // 2 + 1

    @property
    def is_pro(self) -> bool:
        return self.version in PRO_VERSIONS

    @property
    def n_symbols(self) -> int:
        return 322 if self.version == "v1" else 732

    @classmethod
    def official(cls, version: str) -> SoVITSConfig:
        """The published s2 configs (s2.json, s2v2Pro.json, s2v2ProPlus.json)."""
        if version in ("v1", "v2"):
            return cls(version=version)
        if version == "v2Pro":
            return cls(version=version, gin_channels=1024)
        if version == "v2ProPlus":
            return cls(
                version=version,
                gin_channels=1024,
                upsample_initial_channel=768,
                upsample_kernel_sizes=(20, 16, 8, 2, 2),
            )
        raise ValueError(f"unsupported SoVITS version {version!r} (v1, v2, v2Pro, v2ProPlus)")

    @classmethod
    def from_hparams(cls, hps: HParams, version: str) -> SoVITSConfig:
        model = hps["model"]
        names = {f.name for f in fields(cls)} - {"version", "spec_channels"}
        values: dict[str, Any] = {}
        for name in names:
            if name not in model:
                continue
            value = model[name]
            if name == "resblock_dilation_sizes":
                value = tuple(tuple(int(d) for d in ds) for ds in value)
            elif isinstance(value, list):
                value = tuple(value)
            values[name] = value
        values["spec_channels"] = int(hps["data"]["filter_length"]) // 2 + 1
        config = cls(version=version, **values)
        if config.resblock != "1":
            raise CheckpointError(f"resblock type {config.resblock!r} is not supported (official configs use '1')")
        if config.hidden_channels != 192:
            raise CheckpointError("hidden_channels must be 192 (MRTE is built with fixed sizes)")
        return config


@dataclass
class Timbre:
    """Conditioning derived from the reference clip(s); compute once per voice and reuse.

    ge: (1, gin, 1) for the flow and HiFi-GAN; ge_text: (1, 512, 1) for MRTE
    (the same tensor for v1/v2, `ge_to512(ge)` for v2Pro/v2ProPlus).
    """

    ge: torch.Tensor
    ge_text: torch.Tensor


@dataclass
class SoVITSFileInfo:
    """How a checkpoint was read (returned by `load_sovits`)."""

    path: str
    model_version: str
    symbol_version: str
    header_version: tuple[str, str, bool]
    info: str
    config: SoVITSConfig
    ignored_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class SoVITSModel(nn.Module):
    """GPT-SoVITS `SynthesizerTrn` for inference (no enc_q), fp32, batch 1."""

    codebook: torch.Tensor  # (1024, 768) buffer

    def __init__(self, config: SoVITSConfig) -> None:
        super().__init__()
        self.config = config
        self.enc_p = TextEncoder(
            config.inter_channels,
            config.hidden_channels,
            config.filter_channels,
            config.n_heads,
            config.n_layers,
            config.kernel_size,
            config.n_symbols,
        )
        self.dec = Generator(
            config.inter_channels,
            config.resblock_kernel_sizes,
            config.resblock_dilation_sizes,
            config.upsample_rates,
            config.upsample_initial_channel,
            config.upsample_kernel_sizes,
            config.gin_channels,
        )
        self.flow = ResidualCouplingFlow(config.inter_channels, config.hidden_channels, config.gin_channels)
        ref_bins = config.spec_channels if config.version == "v1" else REF_ENC_BINS_V2
        self.ref_bins = ref_bins
        self.ref_enc = MelStyleEncoder(ref_bins, config.gin_channels)
        self.ssl_proj = nn.Conv1d(SSL_DIM, SSL_DIM, 2, stride=2)
        # Only the codebook vectors matter at inference (official key quantizer.vq.layers.0._codebook.embed).
        self.register_buffer("codebook", torch.zeros(CODEBOOK_SIZE, SSL_DIM))
        if config.is_pro:
            self.sv_emb = nn.Linear(SV_EMB_DIM, config.gin_channels)
            self.ge_to512 = nn.Linear(config.gin_channels, MRTE_CHANNELS)
            self.prelu = nn.PReLU(num_parameters=config.gin_channels)
        self.eval()
        self.requires_grad_(False)

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_config(cls, version: str = "v2", seed: int | None = 0) -> SoVITSModel:
        """Full-size model of an official config with random weights (benchmarks, tests)."""
        if seed is not None:
            torch.manual_seed(seed)
        model = cls(SoVITSConfig.official(version))
        model.codebook.normal_()
        return model

    @classmethod
    def from_checkpoint(cls, ckpt: SoVITSCheckpoint, source: str = "") -> tuple[SoVITSModel, list[str]]:
        config = SoVITSConfig.from_hparams(ckpt.config, ckpt.model_version)
        model = cls(config)
        state = dict(ckpt.weights)
        embed_key = "quantizer.vq.layers.0._codebook.embed"
        inited = state.get("quantizer.vq.layers.0._codebook.inited")
        if embed_key not in state:
            raise CheckpointError(f"{source}: missing {embed_key}")
        if inited is not None and float(inited.float().flatten()[0]) == 0.0:
            raise CheckpointError(f"{source}: the VQ codebook was never initialised (inited = 0)")
        state["codebook"] = state.pop(embed_key)
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        if missing:
            raise CheckpointError(
                f"{source}: weights missing for {len(missing)} tensors, e.g. {missing[:6]}"
            )
        # enc_q (posterior encoder) and the codebook statistics are training-only.
        ignored = sorted(set(state) - set(expected))
        for key, tensor in expected.items():
            if tuple(state[key].shape) != tuple(tensor.shape):
                raise CheckpointError(
                    f"{source}: {key} has shape {tuple(state[key].shape)}, config expects {tuple(tensor.shape)}"
                )
        model.load_state_dict({k: state[k] for k in expected}, strict=True)
        return model, ignored

    # -- reference / timbre -----------------------------------------------------------------

    def _one_reference(self, spec: torch.Tensor, sv_emb: torch.Tensor | None) -> torch.Tensor:
        if spec.dim() == 2:
            spec = spec.unsqueeze(0)
        ge = self.ref_enc(spec[:, : self.ref_bins].float())
        if self.config.is_pro:
            if sv_emb is None:
                raise ValueError(f"{self.config.version} needs a speaker-verification embedding per reference")
            ge = self.prelu(ge + self.sv_emb(sv_emb.float().reshape(1, -1)).unsqueeze(-1))
        return ge

    def reference_embedding(
        self,
        specs: torch.Tensor | Sequence[torch.Tensor],
        sv_embs: torch.Tensor | Sequence[torch.Tensor] | None = None,
    ) -> Timbre:
        """Timbre from one or several reference spectrograms (1, 1025, T) (averaged, as the official
        multi-reference fusion does). v2Pro/v2ProPlus need one (1, 20480) sv embedding per spectrogram."""
        with torch.inference_mode():
            spec_list = [specs] if isinstance(specs, torch.Tensor) else list(specs)
            if not spec_list:
                raise ValueError("at least one reference spectrogram is needed")
            if sv_embs is None:
                sv_list: list[torch.Tensor | None] = [None] * len(spec_list)
            else:
                sv_list = [sv_embs] if isinstance(sv_embs, torch.Tensor) else list(sv_embs)
                if len(sv_list) != len(spec_list):
                    raise ValueError(f"{len(spec_list)} references but {len(sv_list)} sv embeddings")
            ges = [self._one_reference(s, e) for s, e in zip(spec_list, sv_list, strict=True)]
            ge = torch.stack(ges, 0).mean(0)
            ge_text = self.ge_to512(ge.transpose(1, 2)).transpose(1, 2) if self.config.is_pro else ge
            return Timbre(ge=ge, ge_text=ge_text)

    # -- semantic tokens --------------------------------------------------------------------

    def extract_latent(self, ssl: torch.Tensor) -> torch.Tensor:
        """HuBERT features (1, 768, T50) -> semantic codes (1, 1, T50 // 2) int64 (nearest codeword)."""
        with torch.inference_mode():
            x = self.ssl_proj(ssl.float())  # (1, 768, T25)
            flat = x.transpose(1, 2).reshape(-1, SSL_DIM)
            embed = self.codebook
            dist = -(flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed.t() + embed.pow(2).sum(1, keepdim=True).t())
            return dist.argmax(dim=-1).view(1, 1, -1)

    def quantized(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (1, 1, T) -> codebook vectors nearest-upsampled to 50 Hz (1, 768, 2T)."""
        q = F.embedding(codes.reshape(-1), self.codebook).t().unsqueeze(0)  # (1, 768, T)
        return torch.repeat_interleave(q, 2, dim=2)

    # -- decoding ---------------------------------------------------------------------------

    def _timbre(
        self,
        refer_specs: torch.Tensor | Sequence[torch.Tensor] | None,
        timbre: Timbre | None,
        sv_embs: torch.Tensor | Sequence[torch.Tensor] | None,
    ) -> Timbre:
        if timbre is not None:
            return timbre
        if refer_specs is None:
            raise ValueError("give refer_specs or a precomputed timbre")
        return self.reference_embedding(refer_specs, sv_embs)

    def latent(
        self,
        codes: torch.Tensor,
        text: torch.Tensor | None,
        timbre: Timbre,
        text_enc: torch.Tensor | None = None,
        padding_frames: int = 0,
    ) -> torch.Tensor:
        """enc_p latent before speed change and projection: (1, 192, 2T - padding_frames).

        Pass `text_enc` (from `enc_p.encode_text`) instead of `text` to reuse the phone encoding.
        """
        if text_enc is None:
            if text is None:
                raise ValueError("give text or text_enc")
            text_enc = self.enc_p.encode_text(text.reshape(1, -1))
        return self.enc_p.latent(self.quantized(codes), text_enc, timbre.ge_text, padding_frames)

    def synthesize(
        self,
        m: torch.Tensor,
        logs: torch.Tensor,
        ge: torch.Tensor,
        noise_scale: float,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        trace: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Prior stats (1, inter, F) -> audio (1, 1, 640 F): sample z_p, reverse flow, HiFi-GAN."""
        if noise_scale != 0:
            if noise is None:
                noise = torch.randn(m.shape, generator=generator, dtype=m.dtype, device=m.device)
            z_p = m + noise * torch.exp(logs) * noise_scale
        else:
            z_p = m
        z = self.flow.reverse(z_p, ge)
        if trace is not None:
            trace.update(z_p=z_p, z=z)
        dec_dtype = self.dec.conv_pre.weight.dtype
        if dec_dtype != z.dtype:
            return self.dec(z.to(dec_dtype), ge.to(dec_dtype)).float()
        return self.dec(z, ge)

    def use_bf16_vocoder(self, enabled: bool = True) -> None:
        """Run HiFi-GAN in bfloat16 (about 2x faster on AVX512-BF16 CPUs; output drifts, see bench).

        Everything else stays fp32. Irreversible for the loaded weights' precision: reload to undo exactly.
        """
        self.dec.to(torch.bfloat16 if enabled else torch.float32)

    def decode(
        self,
        codes: torch.Tensor,
        text: torch.Tensor,
        refer_specs: torch.Tensor | Sequence[torch.Tensor] | None = None,
        *,
        timbre: Timbre | None = None,
        sv_embs: torch.Tensor | Sequence[torch.Tensor] | None = None,
        noise_scale: float = 0.5,
        speed: float = 1.0,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        trace: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Semantic codes (1, 1, T) + phone ids (1, P) -> audio (1, 1, 1280 T / speed) float32 @ 32 kHz.

        `noise` (1, inter, F') replaces the N(0,1) draw (F' = 2T, or int(2T/speed)+1);
        `generator` seeds the draw; `trace` (a dict) receives the intermediates.
        """
        _check_inputs(codes, text)
        with torch.inference_mode():
            tim = self._timbre(refer_specs, timbre, sv_embs)
            y = self.latent(codes.reshape(1, 1, -1), text, tim)
            y, m, logs = self.enc_p.prior(y, speed)
            if trace is not None:
                trace.update(ge=tim.ge, ge_text=tim.ge_text, enc_p_x=y, m_p=m, logs_p=logs)
            return self.synthesize(m, logs, tim.ge, noise_scale, noise, generator, trace)

    def decode_streaming(
        self,
        codes: torch.Tensor,
        text: torch.Tensor,
        refer_specs: torch.Tensor | Sequence[torch.Tensor] | None = None,
        *,
        timbre: Timbre | None = None,
        sv_embs: torch.Tensor | Sequence[torch.Tensor] | None = None,
        noise_scale: float = 0.5,
        speed: float = 1.0,
        result_length: int | None = None,
        overlap_frames: torch.Tensor | None = None,
        padding_length: int | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The official `SynthesizerTrn.decode_streaming` (used by TTS.py streaming modes 2/3).

        Encodes all `codes` so far, keeps the last `result_length` tokens' latent frames, blends the
        first len(overlap_frames) of them with the previous call's latent tail (sine window), then
        runs flow + HiFi-GAN on that window only. Returns (audio (1,1,S), latent y_ (1,192,n),
        latent mask (1,1,n)); y_ is what the next call's overlap_frames are cut from.
        """
        _check_inputs(codes, text)
        with torch.inference_mode():
            tim = self._timbre(refer_specs, timbre, sv_embs)
            pad = 2 * padding_length if padding_length else 0
            y = self.latent(codes.reshape(1, 1, -1), text, tim, padding_frames=pad)
            if result_length is not None:
                y = y[:, :, -2 * result_length :]
            if overlap_frames is not None:
                y = blend_latent_overlap(y, overlap_frames)
            y_, y_mask_ = y, torch.ones(1, 1, y.shape[-1], dtype=y.dtype, device=y.device)
            _, m, logs = self.enc_p.prior(y, speed)
            audio = self.synthesize(m, logs, tim.ge, noise_scale, noise, generator)
            return audio, y_, y_mask_


def _check_inputs(codes: torch.Tensor, text: torch.Tensor) -> None:
    if codes.numel() == 0:
        raise ValueError("no semantic tokens to decode")
    if text.numel() == 0:
        raise ValueError("no phones: SoVITS needs the target text's phone ids")
    if int(codes.min()) < 0 or int(codes.max()) >= CODEBOOK_SIZE:
        raise ValueError(f"semantic tokens must be in 0..{CODEBOOK_SIZE - 1} (EOS 1024 must be stripped)")


def blend_latent_overlap(y: torch.Tensor, previous_tail: torch.Tensor) -> torch.Tensor:
    """Cross-fade the first n frames of y with the previous latent's last n frames (official sine window).

    w = sin(pi * k / 2n), k = 0..2n-1: y[:n] * w[:n] + previous * w[n:] (not power-complementary,
    but what the official streaming decoder does).
    """
    n = previous_tail.shape[-1]
    window = torch.sin(torch.arange(2 * n, device=y.device, dtype=torch.float32) * math.pi / (2 * n)).to(y.dtype)
    y = y.clone()
    y[:, :, :n] = window[:n].view(1, 1, -1) * y[:, :, :n] + window[n:].view(1, 1, -1) * previous_tail
    return y


def load_sovits(path: str | os.PathLike[str]) -> tuple[SoVITSModel, SoVITSFileInfo]:
    """Read an official s2 `.pth` (v1/v2/v2Pro/v2ProPlus) into a ready, eval-mode fp32 model.

    Raises `CheckpointError` for files that are not SoVITS checkpoints or use unsupported versions.
    """
    ckpt = read_sovits_checkpoint(path)
    model, ignored = SoVITSModel.from_checkpoint(ckpt, str(path))
    info = SoVITSFileInfo(
        path=str(path),
        model_version=ckpt.model_version,
        symbol_version=ckpt.symbol_version,
        header_version=ckpt.header_version,
        info=ckpt.info,
        config=model.config,
        ignored_keys=ignored,
        notes=ckpt.notes,
    )
    return model, info
