"""GPT-SoVITS text-to-semantic model ("GPT", s1): the network and its official checkpoints.

The network is the official Text2SemanticDecoder, rewritten as plain modules:

    x = TextEmb(phones) + Linear_1024->D(bert);  x = x + alpha_text * PE[0..N)
    y = AudioEmb(prompt);                         y = y + alpha_audio * PE[0..P)   (positions restart)
    h = 24 x post-LN layers over [x ; y] with a prefix-LM mask
        (text rows see all text; audio rows see all text and earlier audio)
    logits = Linear_D->1025(h[-1])  (no bias; id 1024 = EOS)

Layers write keys and values into a cache preallocated for the whole utterance (`KVCache`, no
per-step torch.cat), like gpt-fast. Decoding with that cache is in `t2s_generate.py`, weight
precision (fp16 / bf16 / int8, prepacking) in `t2s_quantize.py`.

Official checkpoints (`.ckpt`: {"weight": fp16 state dict with "model." keys, "config": dict,
"info": str}) load unchanged with `load_t2s`, which maps the official names onto ours; fp16 values
are upcast exactly and everything runs in fp32 unless asked otherwise.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import CheckpointError
from .sampling import MUTE_TOKEN, mute_similarity
from .t2s_quantize import Projection, pack_weights, projection_weight_names, to_dtype

BERT_DIM = 1024
# Semantic tokens per second; the official early_stop_num is this times data.max_sec.
FRAMES_PER_SECOND = 50  # the official "hz" (HuBERT rate), used only for early_stop_num
PE_LENGTH = 4000  # the official sinusoid table length; extended on demand


class T2SCheckpointError(CheckpointError):
    """The file is not a GPT-SoVITS text-to-semantic (s1 `.ckpt`) checkpoint we can use."""


@dataclass(frozen=True)
class T2SConfig:
    """Hyperparameters of Text2SemanticDecoder (official config["model"] plus data.max_sec)."""

    embedding_dim: int = 512
    hidden_dim: int = 512
    n_head: int = 16
    n_layer: int = 24
    phoneme_vocab_size: int = 732
    vocab_size: int = 1025
    eos: int = 1024
    max_sec: int = 54

    @property
    def ffn_dim(self) -> int:
        # The official module ignores config "linear_units": its FFN is always 4 x hidden.
        return 4 * self.hidden_dim

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.n_head

    @property
    def early_stop_num(self) -> int:
        return FRAMES_PER_SECOND * self.max_sec

    @classmethod
    def from_checkpoint_config(cls, config: Mapping[str, Any]) -> T2SConfig:
        """Build from an official s1 config dict (sections "model" and "data")."""
        model = config.get("model") if isinstance(config, Mapping) else None
        if not isinstance(model, Mapping):
            raise T2SCheckpointError("config has no 'model' section")
        needed = ("embedding_dim", "hidden_dim", "head", "n_layer", "phoneme_vocab_size", "vocab_size")
        missing = [k for k in needed if k not in model]
        if missing:
            raise T2SCheckpointError(f"config['model'] lacks {missing}")
        data = config.get("data") or {}
        try:
            cfg = cls(
                embedding_dim=int(model["embedding_dim"]),
                hidden_dim=int(model["hidden_dim"]),
                n_head=int(model["head"]),
                n_layer=int(model["n_layer"]),
                phoneme_vocab_size=int(model["phoneme_vocab_size"]),
                vocab_size=int(model["vocab_size"]),
                eos=int(model.get("EOS", int(model["vocab_size"]) - 1)),
                max_sec=int(data.get("max_sec", 54)) if isinstance(data, Mapping) else 54,
            )
        except (TypeError, ValueError) as exc:
            raise T2SCheckpointError(f"config['model'] has a non-integer size: {exc}") from exc
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.eos != self.vocab_size - 1:
            raise T2SCheckpointError(f"EOS must be the last id (vocab_size - 1), got {self.eos} / {self.vocab_size}")
        if self.embedding_dim != self.hidden_dim:
            raise T2SCheckpointError("embedding_dim must equal hidden_dim (embeddings feed the transformer)")
        if self.n_head < 1 or self.hidden_dim % self.n_head:
            raise T2SCheckpointError(f"hidden_dim {self.hidden_dim} is not divisible by head {self.n_head}")


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """Standard PE: sin in even columns, cos in odd, computed in fp32 as officially -> (length, dim)."""
    position = torch.arange(0, length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table


def prefix_lm_mask(n_text: int, n_audio: int) -> torch.Tensor:
    """(N+P, N+P) bool, True = may attend: text rows see text; audio rows see text + earlier audio."""
    total = n_text + n_audio
    allowed = torch.ones(total, total, dtype=torch.bool).tril_()
    allowed[:n_text, :n_text] = True
    return allowed


class KVCache:
    """Keys and values of every layer for a whole utterance (or a batch of slots), allocated once.

    k, v: (n_layer, B, H, capacity, head_dim). torch.empty only reserves address space, so a
    1500-step capacity costs memory only for the positions actually written. Kept in fp32 even
    for bf16 / fp16 weights: CPU attention in those dtypes is 3-5x slower than in fp32
    (measured 130-210 us vs 37 us per layer and step), and the cache is small next to the weights.
    """

    def __init__(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k, self.v = k, v
        self.capacity = k.shape[3]

    @classmethod
    def allocate(cls, cfg: T2SConfig, batch: int, capacity: int, dtype: torch.dtype, device: torch.device) -> KVCache:
        shape = (cfg.n_layer, batch, cfg.n_head, capacity, cfg.head_dim)
        return cls(torch.empty(shape, dtype=dtype, device=device), torch.empty(shape, dtype=dtype, device=device))

    def rows(self, start: int, stop: int) -> KVCache:
        """A view of batch rows start..stop-1 (writes go to this cache's storage)."""
        return KVCache(self.k[:, start:stop], self.v[:, start:stop])

    @property
    def nbytes_per_row(self) -> int:
        return 2 * self.k[:, 0].numel() * self.k.element_size()


class T2SLayer(nn.Module):
    """One post-LN transformer layer (official nn.TransformerEncoderLayer, norm_first=False)."""

    def __init__(self, cfg: T2SConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.qkv = Projection(d, 3 * d)  # columns q | k | v, as the official in_proj rows
        self.out_proj = Projection(d, d)
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.ffn_in = Projection(d, cfg.ffn_dim)
        self.ffn_out = Projection(cfg.ffn_dim, d)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)

    def forward(
        self,
        x: torch.Tensor,  # (B, L, D)
        k_cache: torch.Tensor,  # (B, H, capacity, hd) for this layer
        v_cache: torch.Tensor,
        start: int,
        attn_mask: torch.Tensor | None,  # bool, True = may attend; broadcastable to (B, H, L, start+L)
    ) -> torch.Tensor:
        b, n, d = x.shape
        end = start + n
        q, k, v = self.qkv(x).view(b, n, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 x (B,H,L,hd)
        k_cache[:, :, start:end] = k  # the cache is fp32 whatever the weights (see KVCache)
        v_cache[:, :, start:end] = v
        attn = F.scaled_dot_product_attention(
            q.to(k_cache.dtype), k_cache[:, :, :end], v_cache[:, :, :end], attn_mask=attn_mask
        )
        return self._after_attention(x, attn)

    def forward_rows(
        self,
        x: torch.Tensor,  # (B, 1, D): one new token per row
        k_cache: torch.Tensor,  # (slots, H, capacity, hd) for this layer
        v_cache: torch.Tensor,
        rows: slice | torch.Tensor,  # which cache slots the B tokens belong to
        positions: torch.Tensor,  # (B,) int64: where each row's token goes in its slot
        key_len: int,  # max(positions) + 1
        attn_mask: torch.Tensor,  # (B, 1, 1, key_len) bool: key j < row's position + 1
    ) -> torch.Tensor:
        """One decoding step for rows at different positions (continuous batching, scheduler.py)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        batch = torch.arange(b, device=x.device)
        if isinstance(rows, slice):  # the active slots are contiguous: attend over a view, no copy
            keys, values = k_cache[rows], v_cache[rows]
            keys[batch, :, positions] = k[:, :, 0].to(keys.dtype)
            values[batch, :, positions] = v[:, :, 0].to(values.dtype)
            keys, values = keys[:, :, :key_len], values[:, :, :key_len]
        else:  # some of the slots: gather them (a copy of their used keys)
            k_cache[rows, :, positions] = k[:, :, 0].to(k_cache.dtype)
            v_cache[rows, :, positions] = v[:, :, 0].to(v_cache.dtype)
            keys, values = k_cache[rows, :, :key_len], v_cache[rows, :, :key_len]
        attn = F.scaled_dot_product_attention(q.to(keys.dtype), keys, values, attn_mask=attn_mask)
        return self._after_attention(x, attn)

    def _after_attention(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        x = self.norm1(x + self.out_proj(attn.to(x.dtype).transpose(1, 2).reshape(b, n, d)))
        return self.norm2(x + self.ffn_out(F.relu(self.ffn_in(x))))


class T2SModel(nn.Module):
    """Text2SemanticDecoder for inference. Build with `load_t2s` or `T2SModel.from_config`;
    decode with `t2s_generate`; change precision with `t2s_quantize`."""

    def __init__(self, cfg: T2SConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        d = cfg.hidden_dim
        self.bert_proj = Projection(BERT_DIM, d)
        self.text_embedding = nn.Embedding(cfg.phoneme_vocab_size, d)
        self.audio_embedding = nn.Embedding(cfg.vocab_size, d)
        self.text_alpha = nn.Parameter(torch.ones(1))
        self.audio_alpha = nn.Parameter(torch.ones(1))
        self.layers = nn.ModuleList(T2SLayer(cfg) for _ in range(cfg.n_layer))
        self.lm_head = Projection(d, cfg.vocab_size, bias=False)
        self.pe: torch.Tensor  # (positions, D) fp32 sinusoid table, shared by text and audio
        self.register_buffer("pe", sinusoid_table(PE_LENGTH, d), persistent=False)
        self.info = ""

    # ---- construction ------------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: T2SConfig | None = None, *, seed: int = 0) -> T2SModel:
        """A random-weight model (default: the official v2 size, 77.6 M parameters) for benchmarks
        and tests. Weights are scaled so activations stay O(1) through all layers."""
        model = cls(cfg or T2SConfig())
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            projections = projection_weight_names(model)
            for name, p in model.named_parameters():
                if name.endswith("alpha"):
                    p.fill_(1.0)
                elif "norm" in name and name.endswith("weight"):
                    p.copy_(1.0 + 0.1 * torch.rand(p.shape, generator=gen))
                elif name.endswith("bias"):
                    p.copy_(0.02 * torch.randn(p.shape, generator=gen))
                elif name in projections:  # (in, out)
                    p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[0]))
                    if name == "lm_head.weight":
                        # As in the golden tiny model: without it random logits are nearly flat
                        # (absmax ~3 over 1025 ids) and greedy ties say nothing about drift.
                        p.mul_(4.0)
                else:  # embeddings
                    p.copy_(torch.randn(p.shape, generator=gen))
        return model.eval()

    def mute_similarity(self, mute_token: int = MUTE_TOKEN) -> torch.Tensor:
        """(vocab,) cosine similarity of every audio token to the mute token, for MuteChunker
        (TTS.py computes it once per loaded model)."""
        return mute_similarity(self.audio_embedding.weight, mute_token)

    @property
    def dtype(self) -> torch.dtype:
        return self.text_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.text_embedding.weight.device

    # ---- pieces (also used by the golden tests) -----------------------------------------------

    def _positions(self, start: int, length: int) -> torch.Tensor:
        if start + length > self.pe.shape[0]:
            self.pe = sinusoid_table(max(start + length, 2 * self.pe.shape[0]), self.config.hidden_dim).to(self.device)
        return self.pe[start : start + length]

    def embed_text(self, phones: torch.Tensor, bert: torch.Tensor) -> torch.Tensor:
        """phones (B, N) int64, bert (B, 1024, N) -> (B, N, D) with text positions 0..N-1."""
        x = self.text_embedding(phones) + self.bert_proj(bert.transpose(1, 2).to(self.dtype))
        # fp32 sum even for bf16 / fp16 weights: the sinusoid table would lose digits there.
        return (x.float() + self.text_alpha.float() * self._positions(0, x.shape[1])).to(x.dtype)

    def embed_audio(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """tokens (B, L) int64 -> (B, L, D) with audio positions start..start+L-1."""
        y = self.audio_embedding(tokens)
        return (y.float() + self.audio_alpha.float() * self._positions(start, y.shape[1])).to(y.dtype)

    def run_layers(
        self, h: torch.Tensor, cache: KVCache, start: int, attn_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Transformer over h (B, L, D) at cache positions start..start+L-1 -> (B, L, D)."""
        for i, layer in enumerate(self.layers):
            h = layer(h, cache.k[i], cache.v[i], start, attn_mask)
        return h

    def embed_audio_rows(self, tokens: torch.Tensor, positions: torch.Tensor, end: int) -> torch.Tensor:
        """tokens (B,) int64 at audio positions (B,) int64 (all < end), one per row -> (B, 1, D)."""
        y = self.audio_embedding(tokens)
        self._positions(0, end)  # extend the table if needed
        return (y.float() + self.audio_alpha.float() * self.pe[positions]).to(y.dtype).unsqueeze(1)

    def run_layers_rows(
        self, h: torch.Tensor, cache: KVCache, rows: slice | torch.Tensor, positions: torch.Tensor, key_len: int
    ) -> torch.Tensor:
        """One token per row, h (B, 1, D), written at cache slot rows[i], position positions[i]
        (key_len = max(positions) + 1, passed in so no device sync is needed) -> (B, 1, D)."""
        mask = (torch.arange(key_len, device=h.device) <= positions[:, None])[:, None, None, :]
        for i, layer in enumerate(self.layers):
            h = cast(T2SLayer, layer).forward_rows(h, cache.k[i], cache.v[i], rows, positions, key_len, mask)
        return h

    def logits(self, h_last: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, vocab) fp32."""
        return self.lm_head(h_last).float()

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        return KVCache.allocate(self.config, batch, capacity, torch.float32, self.device)

    def forward_full(self, phones: torch.Tensor, bert: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        """No-cache reference: logits (B, vocab) of the next token after [text ; audio] in one pass."""
        x = self.embed_text(phones, bert)
        n_audio = 0 if audio is None else audio.shape[1]
        h = x if audio is None else torch.cat([x, self.embed_audio(audio)], dim=1)
        cache = self.new_cache(h.shape[0], h.shape[1])
        h = self.run_layers(h, cache, 0, prefix_lm_mask(x.shape[1], n_audio).to(h.device))
        return self.logits(h[:, -1])


# ---- checkpoint loading ------------------------------------------------------------------------

_LAYER_NAMES = {
    "self_attn.in_proj_weight": "qkv.weight",
    "self_attn.in_proj_bias": "qkv.bias",
    "self_attn.out_proj.weight": "out_proj.weight",
    "self_attn.out_proj.bias": "out_proj.bias",
    "linear1.weight": "ffn_in.weight",
    "linear1.bias": "ffn_in.bias",
    "linear2.weight": "ffn_out.weight",
    "linear2.bias": "ffn_out.bias",
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
}
_TOP_NAMES = {
    "bert_proj.weight": "bert_proj.weight",
    "bert_proj.bias": "bert_proj.bias",
    "ar_text_embedding.word_embeddings.weight": "text_embedding.weight",
    "ar_audio_embedding.word_embeddings.weight": "audio_embedding.weight",
    "ar_text_position.alpha": "text_alpha",
    "ar_audio_position.alpha": "audio_alpha",
    "ar_predict_layer.weight": "lm_head.weight",
}


def official_to_local(key: str) -> str | None:
    """Map an official state-dict key (without "model.") to ours; None if unknown."""
    if key in _TOP_NAMES:
        return _TOP_NAMES[key]
    parts = key.split(".", 3)
    if len(parts) == 4 and parts[0] == "h" and parts[1] == "layers" and parts[2].isdigit():
        local = _LAYER_NAMES.get(parts[3])
        return None if local is None else f"layers.{parts[2]}.{local}"
    return None


@dataclass
class T2SCheckpoint:
    """An s1 file's contents: official-named weights (prefix stripped), config, info."""

    weights: dict[str, torch.Tensor]
    config: dict[str, Any]
    info: str


def read_t2s_checkpoint(path: str | os.PathLike[str]) -> T2SCheckpoint:
    """Read an official s1 `.ckpt` with the restricted (weights_only) unpickler."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise T2SCheckpointError(f"cannot read {path}: {exc}") from exc
    if raw[:2] != b"PK":
        hint = " (it starts with a SoVITS version header: this is an s2 file)" if raw[:2].isdigit() else ""
        raise T2SCheckpointError(f"{path}: not a torch zip archive, so not a GPT-SoVITS s1 checkpoint{hint}")
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise T2SCheckpointError(f"{path}: not a torch zip archive, so not a GPT-SoVITS s1 checkpoint")
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError alike
        # s1 files pickle only dicts and tensors; s2 files also pickle the official utils.HParams.
        hint = " It pickles utils.HParams: this is a SoVITS (s2) file." if b"HParams" in raw else ""
        raise T2SCheckpointError(
            f"{path}: cannot be read as a GPT-SoVITS s1 checkpoint ({type(exc).__name__}).{hint}"
        ) from exc
    if not isinstance(obj, Mapping) or "weight" not in obj or "config" not in obj:
        raise T2SCheckpointError(f"{path}: holds no 'weight' and 'config' entries: not a GPT-SoVITS s1 checkpoint")
    weight, config = obj["weight"], obj["config"]
    if not isinstance(weight, Mapping) or not all(isinstance(v, torch.Tensor) for v in weight.values()):
        raise T2SCheckpointError(f"{path}: 'weight' is not a state dict of tensors")
    if not isinstance(config, Mapping):
        raise T2SCheckpointError(f"{path}: 'config' is not a dict")
    if not any(k.startswith("model.") for k in weight):
        if "enc_p.text_embedding.weight" in weight:
            raise T2SCheckpointError(f"{path}: this is a SoVITS (s2) checkpoint, not a GPT (s1) one")
        raise T2SCheckpointError(f"{path}: weight names lack the 'model.' prefix: not a GPT-SoVITS s1 checkpoint")
    weights = {k[len("model.") :]: v for k, v in weight.items() if k.startswith("model.")}
    return T2SCheckpoint(weights=weights, config=dict(config), info=str(obj.get("info", "")))


def load_t2s(path: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32, pack: bool = False) -> T2SModel:
    """Load an official GPT-SoVITS s1 `.ckpt` into a T2SModel (eval mode, strict key check).

    dtype: torch.float32 (official numerics), torch.float16 (the file's own fp16 weights, exact;
    activations rounded) or torch.bfloat16. pack: prepack weights for oneDNN (`t2s_quantize.pack_weights`).
    """
    ckpt = read_t2s_checkpoint(path)
    cfg = T2SConfig.from_checkpoint_config(ckpt.config)
    model = T2SModel(cfg)
    expected = model.state_dict()
    projections = projection_weight_names(model)
    state: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, tensor in ckpt.weights.items():
        local = official_to_local(key)
        if local is None or local not in expected:
            unexpected.append(key)
            continue
        if local in projections:
            tensor = tensor.t()  # official (out, in) -> our fp32 layout (in, out)
        if tuple(tensor.shape) != tuple(expected[local].shape):
            raise T2SCheckpointError(
                f"{path}: {key} has shape {tuple(tensor.shape)}, config implies {tuple(expected[local].shape)}"
            )
        state[local] = tensor.to(torch.float32).contiguous()  # fp16 -> fp32 is exact
    missing = sorted(set(expected) - set(state))
    if missing or unexpected:
        raise T2SCheckpointError(
            f"{path}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.load_state_dict(state, strict=True)
    model.info = ckpt.info
    if dtype != torch.float32:
        to_dtype(model, dtype)
    if pack:
        pack_weights(model)
    return model.eval()
