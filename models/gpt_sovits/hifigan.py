"""SoVITS's HiFi-GAN waveform generator (latent z at 50 Hz -> 32 kHz audio), inference only.

Parameter names mirror the official `dec.*` keys (conv_pre, cond, ups.i, resblocks.j.convs1/2.k,
conv_post) so fused checkpoint weights load key for key. Weight norm is already folded into
plain `weight` tensors by the checkpoint reader, so nothing is recomputed per call.

Shape walk (v2): z (1, 192, F) -> conv_pre (1, 512, F) -> ups x10, x8, x2, x2, x2 with
256/128/64/32/16 channels -> conv_post (1, 1, 640 F).

Speed: after conv_pre the signal is kept as (1, C, 1, T) in channels-last memory and every conv
runs as a 2-D conv with a (1, k) kernel. oneDNN is 2-8x faster on that layout than on plain
(1, C, T) for the narrow, very long tensors of the late stages (measured on a 2-core AVX-512 CPU).
The 4-D weights are derived once from the Conv1d weights and refreshed if those change.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.1


def _same_padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


def _weight_nwc(conv: nn.Module) -> torch.Tensor:
    """conv.weight as a (out|in, in|out, 1, k) channels-last tensor, cached on the module."""
    w = conv.weight
    assert isinstance(w, torch.Tensor)
    try:
        version = w._version
    except RuntimeError:  # weights created under inference_mode carry no version counter
        version = -1
    key = (w.data_ptr(), version, w.dtype)
    cached = conv.__dict__.get("_nwc_cache")
    if cached is None or cached[0] != key:
        cached = (key, w.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last))
        conv.__dict__["_nwc_cache"] = cached
    return cached[1]


def conv_nwc(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a Conv1d to a (B, C, 1, T) channels-last tensor."""
    assert isinstance(conv, nn.Conv1d)
    return F.conv2d(
        x,
        _weight_nwc(conv),
        conv.bias,
        stride=(1, conv.stride[0]),
        padding=(0, int(conv.padding[0])),
        dilation=(1, conv.dilation[0]),
    )


def conv_transpose_nwc(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a ConvTranspose1d to a (B, C, 1, T) channels-last tensor."""
    assert isinstance(conv, nn.ConvTranspose1d)
    return F.conv_transpose2d(
        x,
        _weight_nwc(conv),
        conv.bias,
        stride=(1, conv.stride[0]),
        padding=(0, int(conv.padding[0])),
    )


class ResBlock1(nn.Module):
    """Three (dilated conv, conv) pairs with leaky-ReLU pre-activations and residual adds."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size, 1)) for _ in dilations
        )

    def forward(self, x: torch.Tensor, first_act: torch.Tensor | None = None) -> torch.Tensor:
        # `first_act` = leaky_relu(x): the three resblocks of a stage share it, so the caller computes it once.
        # x: (1, C, 1, T) channels-last. In-place ops on fresh conv outputs save memory traffic,
        # which is a quarter of the run time on the long late-stage tensors.
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2, strict=True)):
            xt = first_act if (i == 0 and first_act is not None) else F.leaky_relu(x, LRELU_SLOPE)
            xt = conv_nwc(c1, xt)
            F.leaky_relu_(xt, LRELU_SLOPE)
            xt = conv_nwc(c2, xt)
            xt += x
            x = xt
        return x


class Generator(nn.Module):
    """HiFi-GAN generator conditioned on the global timbre embedding `ge` (added after conv_pre)."""

    def __init__(
        self,
        in_channels: int,
        resblock_kernel_sizes: Sequence[int],
        resblock_dilation_sizes: Sequence[Sequence[int]],
        upsample_rates: Sequence[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: Sequence[int],
        gin_channels: int,
    ) -> None:
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.upsample_rates = tuple(upsample_rates)
        self.conv_pre = nn.Conv1d(in_channels, upsample_initial_channel, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for i, (rate, kernel) in enumerate(zip(upsample_rates, upsample_kernel_sizes, strict=True)):
            ch = upsample_initial_channel // (2 ** (i + 1))
            self.ups.append(nn.ConvTranspose1d(ch * 2, ch, kernel, rate, padding=(kernel - rate) // 2))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True):
                self.resblocks.append(ResBlock1(ch, k, d))
        self.conv_post = nn.Conv1d(ch, 1, 7, padding=3, bias=False)
        self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)

    @property
    def hop(self) -> int:
        """Output samples per latent frame (640 for every v1/v2 config)."""
        n = 1
        for r in self.upsample_rates:
            n *= r
        return n

    def forward(self, z: torch.Tensor, ge: torch.Tensor) -> torch.Tensor:
        """z (1, inter, F), ge (1, gin, 1) -> audio (1, 1, hop * F) in [-1, 1]."""
        x = self.conv_pre(z) + self.cond(ge)
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (1, C, 1, F)
        for i, up in enumerate(self.ups):
            x = conv_transpose_nwc(up, F.leaky_relu(x, LRELU_SLOPE))
            act = F.leaky_relu(x, LRELU_SLOPE)
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            xs = blocks[0](x, act)
            for block in blocks[1:]:
                xs += block(x, act)
            x = xs.mul_(1.0 / self.num_kernels)
        # The final activation uses torch's default slope 0.01, not 0.1 (as trained).
        x = conv_nwc(self.conv_post, F.leaky_relu(x))
        return torch.tanh(x).squeeze(2).contiguous()
