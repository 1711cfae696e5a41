"""ERes2NetV2 speaker-verification net and the v2Pro speaker embedding built on it.

GPT-SoVITS v2Pro/v2ProPlus condition SoVITS on a speaker vector taken from the 3D-Speaker
ERes2NetV2 net (`sv/pretrained_eres2netv2w24s4ep4.ckpt`, a bare state_dict). They do not use
the net's 192-d embedding but `forward3`: the fused last-stage feature map, flattened over
channels x frequency and averaged over time — 2048 x 10 = 20480 values for the real net.

Module and parameter names mirror the official ones so the checkpoint loads key for key.
Pipeline for one reference (`v2pro_speaker_embedding`):
32 kHz audio -> sinc resample to 16 kHz -> Kaldi fbank (80 bins) -> forward3 -> (1, 20480).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .fbank import kaldi_fbank, resample_sinc
from .feature_files import FeatureModelFileError, load_into, load_state_dict

SV_SAMPLE_RATE = 16000
SV_MEL_BINS = 80


def _clipped_relu(x: torch.Tensor) -> torch.Tensor:
    # The residual blocks use a ReLU capped at 20 (a Hardtanh(0, 20)), not a plain ReLU.
    return torch.clamp(x, 0.0, 20.0)


class AttentionalFeatureFusion(nn.Module):
    """AFF: mixes two same-shaped maps with a learned per-position gate in [0, 2]."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        inner = channels // reduction
        self.local_att = nn.Sequential(
            nn.Conv2d(channels * 2, inner, kernel_size=1),
            nn.BatchNorm2d(inner),
            nn.SiLU(),
            nn.Conv2d(inner, channels, kernel_size=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        gate = 1.0 + torch.tanh(self.local_att(torch.cat((x, other), dim=1)))
        return x * gate + other * (2.0 - gate)


class ERes2NetV2Block(nn.Module):
    """Res2Net-style bottleneck: `scale` chained 3x3 branches, joined by addition or by AFF."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        base_width: int,
        scale: int,
        expansion: int,
        fused: bool,
    ) -> None:
        super().__init__()
        width = int(math.floor(planes * (base_width / 64.0)))
        self.width = width
        self.scale = scale
        self.conv1 = nn.Conv2d(in_planes, width * scale, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False) for _ in range(scale)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale))
        self.fuse_models: nn.ModuleList | None = None
        if fused:
            self.fuse_models = nn.ModuleList(AttentionalFeatureFusion(width, 4) for _ in range(scale - 1))
        self.conv3 = nn.Conv2d(width * scale, planes * expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * expansion)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes * expansion:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes * expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * expansion),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        splits = torch.split(_clipped_relu(self.bn1(self.conv1(x))), self.width, dim=1)
        outputs = []
        branch = splits[0]
        for i in range(self.scale):
            if i > 0:
                branch = (
                    self.fuse_models[i - 1](branch, splits[i])
                    if self.fuse_models is not None
                    else branch + splits[i]
                )
            branch = _clipped_relu(self.bns[i](self.convs[i](branch)))
            outputs.append(branch)
        out = self.bn3(self.conv3(torch.cat(outputs, dim=1)))
        return _clipped_relu(out + self.shortcut(x))


class ERes2NetV2(nn.Module):
    """The speaker net. Defaults are GPT-SoVITS's (`ERes2NetV2(baseWidth=24, scale=4, expansion=4)`).

    Input features are (batch, frames, feat_dim) log-mel fbank.
    """

    def __init__(
        self,
        *,
        num_blocks: Sequence[int] = (3, 4, 6, 3),
        m_channels: int = 64,
        feat_dim: int = SV_MEL_BINS,
        embedding_size: int = 192,
        base_width: int = 24,
        scale: int = 4,
        expansion: int = 4,
    ) -> None:
        super().__init__()
        if len(num_blocks) != 4:
            raise ValueError(f"ERes2NetV2 has four stages, got num_blocks={list(num_blocks)}")
        self.feat_dim = feat_dim
        self.conv1 = nn.Conv2d(1, m_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        in_planes = m_channels
        stages = []
        for stage, (blocks, mult, stride) in enumerate(
            zip(num_blocks, (1, 2, 4, 8), (1, 2, 2, 2), strict=True)
        ):
            planes = m_channels * mult
            layer = []
            for i in range(blocks):
                # Stages 3 and 4 join their branches with attentional fusion.
                layer.append(
                    ERes2NetV2Block(
                        in_planes,
                        planes,
                        stride if i == 0 else 1,
                        base_width,
                        scale,
                        expansion,
                        fused=stage >= 2,
                    )
                )
                in_planes = planes * expansion
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.layer3_ds = nn.Conv2d(
            m_channels * 4 * expansion,
            m_channels * 8 * expansion,
            kernel_size=3,
            padding=1,
            stride=2,
            bias=False,
        )
        self.fuse34 = AttentionalFeatureFusion(m_channels * 8 * expansion, 4)
        stats_dim = (feat_dim // 8) * m_channels * 8 * expansion
        self.seg_1 = nn.Linear(stats_dim * 2, embedding_size)  # after mean+std pooling
        self.embedding_dim = stats_dim  # width of forward3's output

    def fused_map(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, F) fbank -> fused last-stage map (B, C, F/8, T/8)."""
        if feats.dim() != 3 or feats.shape[-1] != self.feat_dim:
            raise ValueError(f"expected fbank (batch, frames, {self.feat_dim}), got {tuple(feats.shape)}")
        x = feats.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T)
        out = torch.relu(self.bn1(self.conv1(x)))
        out3 = self.layer3(self.layer2(self.layer1(out)))
        out4 = self.layer4(out3)
        return self.fuse34(out4, self.layer3_ds(out3))

    def forward3(self, feats: torch.Tensor) -> torch.Tensor:
        """The GPT-SoVITS v2Pro speaker vector: (B, T, F) -> (B, C * F/8), time-averaged."""
        return self.fused_map(feats).flatten(start_dim=1, end_dim=2).mean(-1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """The net's own speaker embedding (mean+std pooling, then `seg_1`); unused by GPT-SoVITS."""
        fused = self.fused_map(feats).flatten(start_dim=1, end_dim=2)
        stats = torch.cat((fused.mean(-1), torch.sqrt(torch.var(fused, dim=-1) + 1e-8)), dim=1)
        return self.seg_1(stats)


def load_eres2netv2(path: str | Path, *, base_width: int = 24) -> ERes2NetV2:
    """Load an ERes2NetV2 state_dict file (eval mode, fp32).

    Stage depths, m_channels, scale, expansion and the embedding size are read off the tensor
    shapes, so the official file and smaller test nets both load; `base_width` cannot be told
    from the shapes and defaults to GPT-SoVITS's 24.
    """
    path = Path(path)
    state = load_state_dict(path)
    try:
        m_channels = state["conv1.weight"].shape[0]
        num_blocks = [
            len({key.split(".")[1] for key in state if key.startswith(f"layer{stage}.")})
            for stage in range(1, 5)
        ]
        scale = len({key.split(".")[3] for key in state if key.startswith("layer1.0.convs.")})
        expansion = state["layer1.0.conv3.weight"].shape[0] // m_channels
        embedding_size = state["seg_1.weight"].shape[0]
    except (KeyError, IndexError) as exc:
        raise FeatureModelFileError(f"{path} does not look like an ERes2NetV2 state_dict (no {exc})") from exc
    model = ERes2NetV2(
        num_blocks=num_blocks,
        m_channels=m_channels,
        embedding_size=embedding_size,
        base_width=base_width,
        scale=scale,
        expansion=expansion,
    )
    # num_batches_tracked counters are training bookkeeping; tolerate files that dropped them.
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    load_into(model, state, path)
    return model.eval()


@torch.inference_mode()
def speaker_fbank(audio_16k: torch.Tensor) -> torch.Tensor:
    """(B, n) 16 kHz audio -> (B, frames, 80) fbank, one Kaldi fbank per row (as the official SV does)."""
    if audio_16k.dim() == 1:
        audio_16k = audio_16k.unsqueeze(0)
    return torch.stack(
        [kaldi_fbank(row, sample_rate=SV_SAMPLE_RATE, num_mel_bins=SV_MEL_BINS) for row in audio_16k]
    )


@torch.inference_mode()
def v2pro_speaker_embedding(model: ERes2NetV2, audio: torch.Tensor, sample_rate: int = 32000) -> torch.Tensor:
    """The v2Pro `sv_emb` of one reference: (1, model.embedding_dim), 20480 for the real net.

    `audio` is mono float (n,) or (1, n) at `sample_rate` — in GPT-SoVITS the 32 kHz reference
    after its peak normalisation (the same tensor the reference spectrogram is computed from).
    """
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    if audio.dim() != 2 or audio.shape[0] != 1:
        raise ValueError(f"expected mono audio (n,) or (1, n), got shape {tuple(audio.shape)}")
    audio_16k = resample_sinc(audio.to(torch.float32), sample_rate, SV_SAMPLE_RATE)
    # The fbank stays where the audio is (the CPU in the engine); only the network runs on its device.
    return model.forward3(speaker_fbank(audio_16k).to(next(model.parameters()).device))
