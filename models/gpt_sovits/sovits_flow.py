"""SoVITS's normalising flow `flow` (residual coupling, mean-only), run in reverse to turn the
prior sample z_p into the vocoder latent z. Conditioned on the timbre vector ge.

Parameter names mirror the official `flow.flows.{0,2,4,6}.*` keys; the odd slots are
parameter-free channel flips. Weight norm is already fused by the checkpoint reader.
"""

from __future__ import annotations

import torch
from torch import nn


class WaveNet(nn.Module):
    """Non-causal gated WaveNet (dilation 1) conditioned on ge; the flow couplings' transform."""

    def __init__(self, hidden: int, kernel_size: int, n_layers: int, gin_channels: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.cond_layer = nn.Conv1d(gin_channels, 2 * hidden * n_layers, 1)
        self.in_layers = nn.ModuleList(
            nn.Conv1d(hidden, 2 * hidden, kernel_size, padding=(kernel_size - 1) // 2) for _ in range(n_layers)
        )
        self.res_skip_layers = nn.ModuleList(
            nn.Conv1d(hidden, 2 * hidden if i < n_layers - 1 else hidden, 1) for i in range(n_layers)
        )

    def forward(self, x: torch.Tensor, ge: torch.Tensor) -> torch.Tensor:
        g = self.cond_layer(ge)  # (1, 2 * hidden * n_layers, 1)
        h = self.hidden
        output = torch.zeros_like(x)
        last = len(self.in_layers) - 1
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers, strict=True)):
            a = in_layer(x) + g[:, 2 * h * i : 2 * h * (i + 1)]
            acts = torch.tanh(a[:, :h]) * torch.sigmoid(a[:, h:])
            rs = res_skip(acts)
            if i < last:
                x = x + rs[:, :h]
                output = output + rs[:, h:]
            else:
                output = output + rs
        return output


class Flip(nn.Module):
    """Reverses the channel order (parameter-free; keeps the official flows.{odd} slots)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flip(x, [1])


class MeanOnlyCoupling(nn.Module):
    """Affine coupling with shift only: x1 <- x1 - f(x0) in the reverse (generation) direction."""

    def __init__(self, channels: int, hidden: int, gin_channels: int) -> None:
        super().__init__()
        self.half_channels = channels // 2
        self.pre = nn.Conv1d(self.half_channels, hidden, 1)
        self.enc = WaveNet(hidden, 5, 4, gin_channels)
        self.post = nn.Conv1d(hidden, self.half_channels, 1)

    def reverse(self, x: torch.Tensor, ge: torch.Tensor) -> torch.Tensor:
        x0, x1 = x[:, : self.half_channels], x[:, self.half_channels :]
        m = self.post(self.enc(self.pre(x0), ge))
        return torch.cat([x0, x1 - m], dim=1)


class ResidualCouplingFlow(nn.Module):
    """4 mean-only couplings, each followed by a channel flip; run backwards to generate."""

    def __init__(self, channels: int, hidden: int, gin_channels: int, n_flows: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_flows):
            layers += [MeanOnlyCoupling(channels, hidden, gin_channels), Flip()]
        self.flows = nn.ModuleList(layers)

    def reverse(self, z_p: torch.Tensor, ge: torch.Tensor) -> torch.Tensor:
        x = z_p
        for layer in reversed(self.flows):
            x = layer.reverse(x, ge) if isinstance(layer, MeanOnlyCoupling) else layer(x)
        return x
