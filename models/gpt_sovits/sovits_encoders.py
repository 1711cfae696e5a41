"""SoVITS's encoders: the text encoder `enc_p` (semantic stream x phones -> prior latent) and the
reference encoder `ref_enc` (spectrogram -> timbre vector). Inference only, batch 1, no masks
(every sequence is full length, so the official padding masks are all ones).

Parameter names mirror the official `enc_p.*` / `ref_enc.*` state_dict keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SSL_DIM = 768
MRTE_CHANNELS = 512


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of (B, C, T) features (official names gamma / beta)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.transpose(1, 2), (x.shape[1],), self.gamma, self.beta, self.eps).transpose(1, 2)


class RelPosSelfAttention(nn.Module):
    """Multi-head self-attention with windowed relative-position key/value embeddings (shared by heads).

    scores[i, j] = q_i . k_j / sqrt(d) + q_i . E_k[j - i] / sqrt(d) for |j - i| <= window;
    out_i = sum_j p_ij (v_j + E_v[j - i]).
    """

    def __init__(self, channels: int, n_heads: int, window_size: int = 4) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.k_channels = channels // n_heads
        self.window = window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        self.emb_rel_k = nn.Parameter(torch.zeros(1, 2 * window_size + 1, self.k_channels))
        self.emb_rel_v = nn.Parameter(torch.zeros(1, 2 * window_size + 1, self.k_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        h, d = self.n_heads, self.k_channels
        q = self.conv_q(x).view(b, h, d, t).transpose(2, 3) / math.sqrt(d)  # (b, h, t, d)
        k = self.conv_k(x).view(b, h, d, t)  # (b, h, d, t)
        v = self.conv_v(x).view(b, h, d, t).transpose(2, 3)  # (b, h, t, d)
        scores = torch.matmul(q, k)  # (b, h, t, t)
        # Relative keys: the diagonal at offset j - i = o gets q_i . E_k[o] (|o| <= window). Walking
        # the 2w+1 diagonals keeps memory at the size of `scores` (no (t, t) index tensors).
        rel_k = torch.matmul(q, self.emb_rel_k.transpose(1, 2))  # (b, h, t, 2w+1)
        offsets = [o for o in range(-self.window, self.window + 1) if abs(o) < t]
        for o in offsets:
            rows = slice(max(0, -o), t - max(0, o))
            scores.diagonal(offset=o, dim1=-2, dim2=-1).add_(rel_k[:, :, rows, o + self.window])
        p = torch.softmax(scores, dim=-1)
        out = torch.matmul(p, v)
        # Relative values: out_i += sum_o p[i, i + o] E_v[o].
        rel_w = torch.zeros(b, h, t, 2 * self.window + 1, dtype=p.dtype, device=p.device)
        for o in offsets:
            rows = slice(max(0, -o), t - max(0, o))
            rel_w[:, :, rows, o + self.window] = p.diagonal(offset=o, dim1=-2, dim2=-1)
        out = out + torch.matmul(rel_w, self.emb_rel_v)
        return self.conv_o(out.transpose(2, 3).reshape(b, c, t))


class ConvFFN(nn.Module):
    """conv(k) -> ReLU -> conv(k), 'same' padding (left (k-1)//2, right k//2)."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.pad = ((kernel_size - 1) // 2, kernel_size // 2)
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv_1(F.pad(x, self.pad)))
        return self.conv_2(F.pad(x, self.pad))


class RelPosEncoder(nn.Module):
    """Post-LayerNorm transformer encoder (VITS `attentions.Encoder`), rel-pos window 4."""

    def __init__(self, channels: int, filter_channels: int, n_heads: int, n_layers: int, kernel_size: int) -> None:
        super().__init__()
        self.attn_layers = nn.ModuleList(RelPosSelfAttention(channels, n_heads) for _ in range(n_layers))
        self.norm_layers_1 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(ConvFFN(channels, filter_channels, kernel_size) for _ in range(n_layers))
        self.norm_layers_2 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, norm1, ffn, norm2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2, strict=True
        ):
            x = norm1(x + attn(x))
            x = norm2(x + ffn(x))
        return x


class CrossAttention(nn.Module):
    """Plain multi-head attention of queries x over a context c (1x1 conv projections)."""

    def __init__(self, channels: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        b, ch, t = x.shape
        s = c.shape[2]
        h, d = self.n_heads, ch // self.n_heads
        q = self.conv_q(x).view(b, h, d, t).transpose(2, 3)
        k = self.conv_k(c).view(b, h, d, s).transpose(2, 3)
        v = self.conv_v(c).view(b, h, d, s).transpose(2, 3)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, h, t, d), scale 1/sqrt(d)
        return self.conv_o(out.transpose(2, 3).reshape(b, ch, t))


class MRTE(nn.Module):
    """Multi-reference timbre encoder: SSL frames attend to phones; adds the timbre vector."""

    def __init__(self, content_channels: int = 192, hidden: int = MRTE_CHANNELS, n_heads: int = 4) -> None:
        super().__init__()
        self.cross_attention = CrossAttention(hidden, n_heads)
        self.c_pre = nn.Conv1d(content_channels, hidden, 1)
        self.text_pre = nn.Conv1d(content_channels, hidden, 1)
        self.c_post = nn.Conv1d(hidden, content_channels, 1)

    def forward(self, ssl: torch.Tensor, text: torch.Tensor, ge_text: torch.Tensor) -> torch.Tensor:
        """ssl (1,192,F), text (1,192,P), ge_text (1,512,1) -> (1,192,F)."""
        ssl_enc = self.c_pre(ssl)
        x = self.cross_attention(ssl_enc, self.text_pre(text)) + ssl_enc + ge_text
        return self.c_post(x)


class TextEncoder(nn.Module):
    """`enc_p`: fuses the semantic-token stream with the phones into the prior latent."""

    def __init__(
        self, inter: int, hid: int, fil: int, heads: int, layers: int, k: int, n_symbols: int
    ) -> None:
        super().__init__()
        self.out_channels = inter
        self.ssl_proj = nn.Conv1d(SSL_DIM, hid, 1)
        self.encoder_ssl = RelPosEncoder(hid, fil, heads, layers // 2, k)
        self.encoder_text = RelPosEncoder(hid, fil, heads, layers, k)
        self.text_embedding = nn.Embedding(n_symbols, hid)
        self.mrte = MRTE(hid)
        self.encoder2 = RelPosEncoder(hid, fil, heads, layers // 2, k)
        self.proj = nn.Conv1d(hid, inter * 2, 1)

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """Phone ids (1, P) -> encoded phones (1, 192, P). Depends on the text only: cacheable."""
        return self.encoder_text(self.text_embedding(text).transpose(1, 2))

    def latent(
        self,
        quantized: torch.Tensor,
        text_enc: torch.Tensor,
        ge_text: torch.Tensor,
        padding_frames: int = 0,
    ) -> torch.Tensor:
        """Upsampled codebook vectors (1,768,F) -> latent y (1,192,F - padding_frames)."""
        y = self.encoder_ssl(self.ssl_proj(quantized))
        y = self.mrte(y, text_enc, ge_text)
        if padding_frames:
            y = y[:, :, :-padding_frames]
        return self.encoder2(y)

    def prior(self, y: torch.Tensor, speed: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latent (1,192,F) -> (y', m, logs); speed != 1 resamples y linearly to int(F/speed)+1 frames."""
        if speed != 1:
            y = F.interpolate(y, size=int(y.shape[-1] / speed) + 1, mode="linear")
        m, logs = torch.split(self.proj(y), self.out_channels, dim=1)
        return y, m, logs


class _Linear(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class _Conv(nn.Module):
    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size, padding=(kernel_size - 1) // 2)


class _GLUConv(nn.Module):
    """Residual gated conv: x + a * sigmoid(b), [a; b] = conv(x)."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv1 = _Conv(channels, kernel_size)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1.conv(x)
        return x + y[:, : self.channels] * torch.sigmoid(y[:, self.channels :])


class _StyleAttention(nn.Module):
    """Self-attention of the style encoder; logits scaled by 1/sqrt(d_model), not 1/sqrt(d_head)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.w_qs = nn.Linear(d_model, d_model)
        self.w_ks = nn.Linear(d_model, d_model)
        self.w_vs = nn.Linear(d_model, d_model)
        self.fc = nn.Linear(d_model, d_model)
        self.scale = d_model**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h = self.n_heads
        q = self.w_qs(x).view(b, t, h, c // h).transpose(1, 2)
        k = self.w_ks(x).view(b, t, h, c // h).transpose(1, 2)
        v = self.w_vs(x).view(b, t, h, c // h).transpose(1, 2)
        p = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * self.scale, dim=-1)
        out = torch.matmul(p, v).transpose(1, 2).reshape(b, t, c)
        return self.fc(out) + x


class MelStyleEncoder(nn.Module):
    """`ref_enc`: spectrogram (1, bins, T) -> time-averaged style vector (1, gin, 1)."""

    def __init__(self, in_bins: int, out_dim: int, hidden: int = 128, kernel_size: int = 5, n_heads: int = 2) -> None:
        super().__init__()
        self.spectral = nn.Sequential(
            _Linear(in_bins, hidden), nn.Mish(), nn.Identity(), _Linear(hidden, hidden), nn.Mish(), nn.Identity()
        )
        self.temporal = nn.Sequential(_GLUConv(hidden, kernel_size), _GLUConv(hidden, kernel_size))
        self.slf_attn = _StyleAttention(hidden, n_heads)
        self.fc = _Linear(hidden, out_dim)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = self.spectral(spec.transpose(1, 2))  # (1, T, 128)
        x = self.temporal(x.transpose(1, 2)).transpose(1, 2)
        x = self.fc(self.slf_attn(x))  # (1, T, gin)
        return x.mean(dim=1).unsqueeze(-1)
