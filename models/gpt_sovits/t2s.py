"""GPT-SoVITS text-to-semantic model ("GPT", s1): network, checkpoint loader, fast decoding.

The network is the official Text2SemanticDecoder, rewritten as plain modules:

    x = TextEmb(phones) + Linear_1024->D(bert);  x = x + alpha_text * PE[0..N)
    y = AudioEmb(prompt);                         y = y + alpha_audio * PE[0..P)   (positions restart)
    h = 24 x post-LN layers over [x ; y] with a prefix-LM mask
        (text rows see all text; audio rows see all text and earlier audio)
    logits = Linear_D->1025(h[-1])  (no bias; id 1024 = EOS)

Decoding runs one prefill over [text ; prompt] and then one token per step against a key/value
cache preallocated for the whole utterance (no per-step torch.cat), like gpt-fast. Sampling
and stop rules are in `sampling.py`; they follow the official loop so that greedy decoding
reproduces the official tokens and `idx` exactly (tests/gpt_sovits/test_t2s.py).

Official checkpoints (`.ckpt`: {"weight": fp16 state dict with "model." keys, "config": dict,
"info": str}) load unchanged; fp16 values are upcast exactly and everything runs in fp32 unless
asked otherwise (`to_dtype`, `quantize_int8`).

Entry points: `load_t2s`, `generate` (whole utterance), `generate_stream` (a T2SSession:
token ints as they come), `generate_chunks` (the official streaming chunks), `generate_batch`.

Speed, full v2 size on the 2-core dev CPU (bench/t2s_speed.py; official code ~25 tokens/s):
fp32 ~50-54 tokens/s, fp32 + pack_weights ~70-78, fp16 ~130 (the file's own weights, exact),
int8 ~145. torch.compile was tried and rejected: 108 s to compile, then slower (it
recompiles as the cache grows).
"""

from __future__ import annotations

import io
import math
import os
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import CheckpointError
from .sampling import (
    MAX_STEPS,
    MUTE_TOKEN,
    Chunker,
    SamplingParams,
    choose_tokens,
    chunk_tokens,
    mute_similarity,
)

BERT_DIM = 1024
# Semantic tokens per second; the official early_stop_num is this times data.max_sec.
FRAMES_PER_SECOND = 50  # the official "hz" (HuBERT rate), used only for early_stop_num
PE_LENGTH = 4000  # the official sinusoid table length; extended on demand
FP16_UPCAST_ROWS = 16  # fp16 matmuls with at least this many rows run in fp32 (see Projection)


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
    """Keys and values of every layer for a whole utterance, allocated once.

    k, v: (n_layer, B, H, capacity, head_dim). torch.empty only reserves address space, so a
    1500-step capacity costs memory only for the positions actually written. Kept in fp32 even
    for bf16 / fp16 weights: CPU attention in those dtypes is 3-5x slower than in fp32
    (measured 130-210 us vs 37 us per layer and step), and the cache is small next to the weights.
    """

    def __init__(self, cfg: T2SConfig, batch: int, capacity: int, dtype: torch.dtype, device: torch.device) -> None:
        shape = (cfg.n_layer, batch, cfg.n_head, capacity, cfg.head_dim)
        self.k = torch.empty(shape, dtype=dtype, device=device)
        self.v = torch.empty(shape, dtype=dtype, device=device)
        self.capacity = capacity


class Projection(nn.Module):
    """Affine map y = x W + b whose weight layout follows the dtype, for one-row matmul speed.

    Decoding is bound by streaming the weights from memory, and CPU BLAS / oneDNN reach that
    bound only with the right layout (measured for the 24 layers' weights, one row):
    fp32 (in, out) + addmm 14.7 ms vs nn.Linear's (out, in) 18.8 ms; bf16 (out, in) 7.9 ms vs
    (in, out) 10.4 ms; fp16 (out, in) 4.3 ms. `weight` is (in, out) when `in_major`, else (out, in).
    """

    def __init__(self, d_in: int, d_out: int, bias: bool = True) -> None:
        super().__init__()
        self.in_major = True
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None
        self.packed: torch.Tensor | None = None  # oneDNN-blocked copy of the weight, see `pack`

    def pack(self) -> bool:
        """Keep a oneDNN-prepacked copy of the weight and use it in forward; False if unsupported.

        One-row matmuls then stream the weights near memory bandwidth (24 layers: fp32 9.9 ms
        vs 14.2 ms with addmm). Uses torch's private mkldnn linear ops (as torch.compile's CPU
        backend does), hence the fallback. The dense weight stays (state_dict, conversions), so
        packed weights cost their size a second time.
        """
        self.packed = None
        if self.weight.device.type != "cpu" or not hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
            return False
        try:
            self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight_out_in().detach().contiguous(), 1)
        except RuntimeError:  # e.g. fp16 on a CPU without AVX512-FP16
            self.packed = None
        return self.packed is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        if not self.in_major:
            if x.dtype == torch.float16 and x.numel() >= FP16_UPCAST_ROWS * x.shape[-1]:
                # CPUs without AVX512-FP16 run many-row fp16 matmuls slowly (prefill: 600 vs
                # 190 ms in fp32); upcasting the fp16 weights is exact and cheap next to that.
                bias = None if self.bias is None else self.bias.float()
                return F.linear(x.float(), self.weight.float(), bias).to(x.dtype)
            return F.linear(x, self.weight, self.bias)
        rows = x.reshape(-1, x.shape[-1])
        out = rows @ self.weight if self.bias is None else torch.addmm(self.bias, rows, self.weight)
        return out.view(*x.shape[:-1], out.shape[-1])

    def weight_out_in(self) -> torch.Tensor:
        """The weight as nn.Linear stores it, (out, in)."""
        return self.weight.t() if self.in_major else self.weight

    def set_layout(self, in_major: bool) -> None:
        if in_major != self.in_major:
            self.weight.data = self.weight.data.t().contiguous()
            self.in_major = in_major

    def as_linear(self) -> nn.Linear:
        out_in = self.weight_out_in()
        linear = nn.Linear(out_in.shape[1], out_in.shape[0], bias=self.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(out_in)
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear


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
        x = self.norm1(x + self.out_proj(attn.to(x.dtype).transpose(1, 2).reshape(b, n, d)))
        return self.norm2(x + self.ffn_out(F.relu(self.ffn_in(x))))


class T2SModel(nn.Module):
    """Text2SemanticDecoder for inference. Build with `load_t2s` or `T2SModel.from_config`."""

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
            projections = _projection_weight_names(model)
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

    def to_dtype(self, dtype: torch.dtype) -> T2SModel:
        """Cast in place to torch.float32 / bfloat16 / float16 (weights, activations and cache).

        Logits are sampled in fp32 whatever the dtype. fp16 keeps the official checkpoint's fp16
        weights exactly; only activations are rounded.
        """
        self.to(dtype=dtype)
        self.pe = self.pe.float()  # positions are added in fp32 (see embed_text)
        for module in self.modules():
            if isinstance(module, Projection):
                module.set_layout(in_major=dtype == torch.float32)
                if module.packed is not None:
                    module.pack()
        return self

    def pack_weights(self) -> int:
        """Prepack every projection for oneDNN (see Projection.pack): about 1.5x faster decoding
        in fp32 and 1.4x in bf16 on this CPU, for a second copy of the weights in memory.
        Returns how many projections were packed (0 where unsupported, e.g. fp16 without
        AVX512-FP16). Call again after changing weights."""
        return sum(m.pack() for m in self.modules() if isinstance(m, Projection))

    def quantize_int8(self) -> T2SModel:
        """A copy whose projections use int8 dynamic quantization (int8 weights, per-call activations).

        Uses torch.ao.quantization.quantize_dynamic, which torch marks deprecated (still present
        in 2.13). Prefer fp16 (`to_dtype(torch.float16)`): nearly as fast here, far less drift.
        """
        model = T2SModel(self.config).to_dtype(self.dtype)  # fresh copy, same layouts (deepcopy
        model.load_state_dict(self.state_dict())  # cannot copy packed weights)
        model.to_dtype(torch.float32).eval()
        model.info = self.info
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, Projection):
                    setattr(parent, name, child.as_linear())
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*quantiz.*", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*quantization is deprecated.*", category=DeprecationWarning)
            from torch.ao.quantization import quantize_dynamic

            return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)

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

    def logits(self, h_last: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, vocab) fp32."""
        return self.lm_head(h_last).float()

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        return KVCache(self.config, batch, capacity, torch.float32, self.device)

    def forward_full(self, phones: torch.Tensor, bert: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        """No-cache reference: logits (B, vocab) of the next token after [text ; audio] in one pass."""
        x = self.embed_text(phones, bert)
        n_audio = 0 if audio is None else audio.shape[1]
        h = x if audio is None else torch.cat([x, self.embed_audio(audio)], dim=1)
        cache = self.new_cache(h.shape[0], h.shape[1])
        h = self.run_layers(h, cache, 0, prefix_lm_mask(x.shape[1], n_audio).to(h.device))
        return self.logits(h[:, -1])

    # ---- decoding -----------------------------------------------------------------------------

    def start(
        self,
        phones: torch.Tensor,
        bert: torch.Tensor,
        prompt: torch.Tensor | None = None,
        *,
        params: SamplingParams | None = None,
        early_stop_num: int | None = None,
        generator: torch.Generator | None = None,
        max_steps: int = MAX_STEPS,
        record_logits: bool = False,
    ) -> T2SSession:
        """Begin decoding one utterance (see T2SSession); nothing runs until it is iterated."""
        return T2SSession(
            self,
            phones,
            bert,
            prompt,
            params=params or SamplingParams(),
            early_stop_num=self.config.early_stop_num if early_stop_num is None else early_stop_num,
            generator=generator,
            max_steps=max_steps,
            record_logits=record_logits,
        )


def _projection_weight_names(model: nn.Module) -> set[str]:
    return {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, Projection)}


def _as_batch(t: torch.Tensor, dims: int) -> torch.Tensor:
    return t.unsqueeze(0) if t.dim() == dims - 1 else t


@dataclass
class T2SResult:
    """What one utterance's decoding produced, in the official terms.

    tokens: (L,) int64 generated semantic tokens, EOS removed.
    idx: the official second return value (step index at stop; 0 in reference-free mode).
    y: (P+L,) int64 prompt followed by the tokens (the official first return value, row 0).
    stop_reason: "eos" | "early_stop" | "max_steps" | "cancelled".
    """

    tokens: torch.Tensor
    idx: int
    y: torch.Tensor
    stop_reason: str
    logits: torch.Tensor | None = None  # (steps, vocab) raw logits when record_logits=True
    prefill_hidden: torch.Tensor | None = field(default=None, repr=False)  # (1, D) last row at step 0

    @property
    def webui_tokens(self) -> torch.Tensor:
        """`y[:, -idx:]` as inference_webui / TTS.py slice it (drops the first token when idx = L - 1)."""
        return self.y[-self.idx :] if self.idx else self.y


class T2SSession(Iterator[int]):
    """Incremental decoding of one utterance (batch 1). Iterate to get kept tokens as ints.

    The prefill runs on the first `next()`; each later `next()` runs one step. A step whose
    token is EOS (or whose greedy choice is EOS) yields nothing and ends the iteration.
    `steps()` exposes the raw per-step outcomes for the chunkers; `result()` finishes decoding
    and returns the official (tokens, idx).
    """

    def __init__(
        self,
        model: T2SModel,
        phones: torch.Tensor,
        bert: torch.Tensor,
        prompt: torch.Tensor | None,
        *,
        params: SamplingParams,
        early_stop_num: int,
        generator: torch.Generator | None,
        max_steps: int,
        record_logits: bool,
    ) -> None:
        cfg = model.config
        self.model, self.params, self.generator = model, params, generator
        self.early_stop_num, self.max_steps = early_stop_num, max_steps
        device = model.device
        self.phones = _as_batch(phones.long(), 2).to(device)  # (1, N)
        self.bert = _as_batch(bert, 3).to(device)  # (1, 1024, N)
        if self.phones.shape[0] != 1 or self.bert.shape[0] != 1:
            raise ValueError("T2SSession decodes one utterance; use generate_batch for several")
        if self.bert.shape[1:] != (BERT_DIM, self.phones.shape[1]):
            raise ValueError(f"bert must be (1, {BERT_DIM}, {self.phones.shape[1]}), got {tuple(self.bert.shape)}")
        self.ref_free = prompt is None or prompt.numel() == 0
        self.prompt = (
            torch.zeros(1, 0, dtype=torch.long) if prompt is None or self.ref_free else _as_batch(prompt.long(), 2)
        ).to(device)
        self.n_text, self.n_prompt = self.phones.shape[1], self.prompt.shape[1]
        if self.n_text == 0:
            raise ValueError("no phones to decode")
        if int(self.phones.min()) < 0 or int(self.phones.max()) >= cfg.phoneme_vocab_size:
            raise ValueError(f"phone ids must lie in [0, {cfg.phoneme_vocab_size})")
        if self.n_prompt and (int(self.prompt.min()) < 0 or int(self.prompt.max()) >= cfg.eos):
            raise ValueError(f"prompt semantic tokens must lie in [0, {cfg.eos})")
        if max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        self.tokens: list[int] = []
        self.step_index = -1  # index of the last step run
        self.finished = False
        self.stop_reason = ""
        self.record_logits = record_logits
        self._logits: list[torch.Tensor] = []
        self.prefill_hidden: torch.Tensor | None = None
        self._cache: KVCache | None = None
        # Ids seen so far (prompt included) for the repetition penalty: (1, vocab) bool.
        self._seen = torch.zeros(1, cfg.vocab_size, dtype=torch.bool, device=device)
        self._seen[0, self.prompt[0]] = True
        self._next_input: torch.Tensor | None = None  # (1, 1) last kept token

    # -- one step --

    @torch.inference_mode()
    def step(self) -> tuple[int | None, bool]:
        """Run one decoding step -> (kept token or None, finished)."""
        if self.finished:
            raise RuntimeError(f"decoding already finished ({self.stop_reason})")
        model, cfg = self.model, self.model.config
        idx = self.step_index + 1
        if idx == 0:
            x = model.embed_text(self.phones, self.bert)
            h = x if self.ref_free else torch.cat([x, model.embed_audio(self.prompt)], dim=1)
            self._cache = model.new_cache(1, self.n_text + self.n_prompt + self.max_steps)
            mask = prefix_lm_mask(self.n_text, self.n_prompt).to(h.device)
            h = model.run_layers(h, self._cache, 0, mask)
            self.prefill_hidden = h[:, -1].clone()
        else:
            assert self._cache is not None and self._next_input is not None
            pos = self.n_prompt + idx - 1  # audio position of the token fed in
            h = model.embed_audio(self._next_input, pos)
            h = model.run_layers(h, self._cache, self.n_text + pos, None)
        logits = model.logits(h[:, -1])
        if self.record_logits:
            self._logits.append(logits[0].clone())
        choice = choose_tokens(logits, self._seen, idx, cfg.eos, self.params, self.generator)
        token, greedy = int(choice.token[0]), int(choice.greedy[0])
        self.step_index = idx

        kept: int | None = token
        n_generated = len(self.tokens) + 1  # the official counts the drawn token before the EOS check
        if self.early_stop_num != -1 and n_generated > self.early_stop_num:
            self.finished, self.stop_reason = True, "early_stop"
        if greedy == cfg.eos or token == cfg.eos:
            self.finished, self.stop_reason, kept = True, "eos", None
        if idx == self.max_steps - 1 and not self.finished:
            self.finished, self.stop_reason = True, "max_steps"
        if kept is not None:
            self.tokens.append(kept)
            self._seen[0, kept] = True
            self._next_input = choice.token.view(1, 1)
        if self.finished:
            self._cache = None  # free the cache as soon as the utterance is done
        return kept, self.finished

    def close(self) -> None:
        """Stop decoding now (e.g. the listener interrupted) and free the cache."""
        if not self.finished:
            self.finished, self.stop_reason, self._cache = True, "cancelled", None

    def steps(self) -> Iterator[tuple[int | None, bool]]:
        """Per-step outcomes until decoding stops (for `chunk_tokens`)."""
        while not self.finished:
            yield self.step()

    def __next__(self) -> int:
        while not self.finished:
            token, _ = self.step()
            if token is not None:
                return token
        raise StopIteration

    def result(self) -> T2SResult:
        """Run to the end (if not already) and return the official outputs."""
        for _ in self.steps():
            pass
        tokens = torch.tensor(self.tokens, dtype=torch.long)
        if self.ref_free and tokens.numel() == 0:
            tokens = torch.zeros(1, dtype=torch.long)  # official "bad zero prediction" fallback
        y = torch.cat([self.prompt[0].cpu(), tokens])
        return T2SResult(
            tokens=tokens,
            idx=0 if self.ref_free else self.step_index,
            y=y,
            stop_reason=self.stop_reason,
            logits=torch.stack(self._logits) if self.record_logits else None,
            prefill_hidden=self.prefill_hidden,
        )


def generate(
    model: T2SModel,
    phones: torch.Tensor,
    bert: torch.Tensor,
    prompt: torch.Tensor | None = None,
    *,
    top_k: int = 15,
    top_p: float = 1.0,
    temperature: float = 1.0,
    repetition_penalty: float = 1.35,
    early_stop_num: int | None = None,
    generator: torch.Generator | None = None,
    max_steps: int = MAX_STEPS,
    record_logits: bool = False,
) -> T2SResult:
    """Decode one utterance to the end (official infer_panel_naive, non-streaming).

    phones (N,) or (1, N) int64 = prompt phones ++ target phones; bert (1024, N) or (1, 1024, N);
    prompt (P,) or (1, P) int64 prompt semantic tokens, None for reference-free mode.
    early_stop_num None = the checkpoint's 50 x max_sec; -1 = off.
    generator: a seeded torch.Generator for reproducible sampling; None draws from torch's global
    RNG exactly as the official code does (so torch.manual_seed reproduces official samples).
    top_k=1 is greedy (deterministic).
    """
    params = SamplingParams(top_k=top_k, top_p=top_p, temperature=temperature, repetition_penalty=repetition_penalty)
    session = model.start(
        phones, bert, prompt, params=params, early_stop_num=early_stop_num, generator=generator,
        max_steps=max_steps, record_logits=record_logits,
    )
    return session.result()


def generate_stream(
    model: T2SModel,
    phones: torch.Tensor,
    bert: torch.Tensor,
    prompt: torch.Tensor | None = None,
    *,
    top_k: int = 15,
    top_p: float = 1.0,
    temperature: float = 1.0,
    repetition_penalty: float = 1.35,
    early_stop_num: int | None = None,
    generator: torch.Generator | None = None,
    max_steps: int = MAX_STEPS,
) -> T2SSession:
    """Streaming decode: an iterator of kept token ids (ints), one decoding step per `next()`.

    Arguments as `generate`. Stop iterating to cancel (the cache is dropped with the session);
    call `.result()` after exhaustion for idx / stop_reason.
    """
    params = SamplingParams(top_k=top_k, top_p=top_p, temperature=temperature, repetition_penalty=repetition_penalty)
    return model.start(
        phones, bert, prompt, params=params, early_stop_num=early_stop_num, generator=generator, max_steps=max_steps
    )


def generate_chunks(
    model: T2SModel,
    phones: torch.Tensor,
    bert: torch.Tensor,
    prompt: torch.Tensor | None = None,
    *,
    chunker: Chunker,
    official_overlap: bool = False,
    top_k: int = 15,
    top_p: float = 1.0,
    temperature: float = 1.0,
    repetition_penalty: float = 1.35,
    early_stop_num: int | None = None,
    generator: torch.Generator | None = None,
    max_steps: int = MAX_STEPS,
) -> Iterator[tuple[torch.Tensor | None, bool]]:
    """Official streaming_mode generator: (chunk (1, n) int64 or None, is_final) pairs.

    chunker: FixedChunker(chunk_length) (TTS.py mode 3) or MuteChunker(similarity, chunk_length,
    threshold) (mode 2). See `sampling.chunk_tokens` for `official_overlap`.
    """
    session = generate_stream(
        model, phones, bert, prompt, top_k=top_k, top_p=top_p, temperature=temperature,
        repetition_penalty=repetition_penalty, early_stop_num=early_stop_num, generator=generator,
        max_steps=max_steps,
    )
    return chunk_tokens(session.steps(), chunker, official_overlap=official_overlap)


@torch.inference_mode()
def generate_batch(
    model: T2SModel,
    phones: Sequence[torch.Tensor],
    berts: Sequence[torch.Tensor],
    prompts: torch.Tensor | None,
    *,
    top_k: int = 15,
    top_p: float = 1.0,
    temperature: float = 1.0,
    repetition_penalty: float = 1.35,
    early_stop_num: int | None = None,
    generator: torch.Generator | None = None,
    max_steps: int = MAX_STEPS,
) -> list[T2SResult]:
    """Several utterances at once, as the official infer_panel_batch_infer (TTS.py's default path).

    phones[i] (N_i,), berts[i] (1024, N_i), prompts (B, P) (one prompt length for all rows), or
    None for reference-free decoding (then rows are decoded one after another, as officially).
    Texts are left-padded after embedding and the padding is masked out of attention. Quirk kept
    from the official code: each row drops its last token however it stopped, so a row ended by
    early_stop_num loses a real token (`y[i, :-1]`).
    """
    cfg = model.config
    params = SamplingParams(top_k=top_k, top_p=top_p, temperature=temperature, repetition_penalty=repetition_penalty)
    if prompts is None:  # the official batch path also falls back to one-by-one decoding here
        return [
            model.start(ph, bt, None, params=params, early_stop_num=early_stop_num, generator=generator,
                        max_steps=max_steps).result()
            for ph, bt in zip(phones, berts, strict=True)
        ]
    early_stop_num = cfg.early_stop_num if early_stop_num is None else early_stop_num
    b, device = len(phones), model.device
    prompts = _as_batch(prompts.long(), 2).to(device)
    if len(berts) != b or prompts.shape[0] != b:
        raise ValueError("phones, berts and prompts must hold the same number of items")
    n_max = max(int(p.shape[0]) for p in phones)
    n_prompt = prompts.shape[1]
    x = torch.zeros(b, n_max, cfg.hidden_dim, dtype=model.dtype, device=device)
    key_valid = torch.ones(b, n_max + n_prompt + max_steps, dtype=torch.bool, device=device)
    for i, (ph, bt) in enumerate(zip(phones, berts, strict=True)):
        n = ph.shape[0]
        x[i, n_max - n :] = model.embed_text(ph.long().unsqueeze(0).to(device), bt.unsqueeze(0).to(device))[0]
        key_valid[i, : n_max - n] = False
    cache = model.new_cache(b, n_max + n_prompt + max_steps)
    seen = torch.zeros(b, cfg.vocab_size, dtype=torch.bool, device=device)
    seen.scatter_(1, prompts, True)
    generated = torch.zeros(b, max_steps, dtype=torch.long, device=device)
    results: list[T2SResult | None] = [None] * b
    h = torch.cat([x, model.embed_audio(prompts)], dim=1)
    total = n_max + n_prompt
    mask = prefix_lm_mask(n_max, n_prompt).to(device).unsqueeze(0) & key_valid[:, None, :total]  # (B, T, T)
    h = model.run_layers(h, cache, 0, mask.unsqueeze(1))
    for idx in range(max_steps):
        logits = model.logits(h[:, -1])
        choice = choose_tokens(logits, seen, idx, cfg.eos, params, generator)
        generated[:, idx] = choice.token
        seen.scatter_(1, choice.token.unsqueeze(1), True)
        n_kept = idx + 1
        done = (choice.token == cfg.eos) | (choice.greedy == cfg.eos)
        for i in torch.nonzero(done).flatten().tolist():
            if results[i] is None:
                results[i] = _batch_row(prompts[i], generated[i, : n_kept - 1], idx, "eos")
        if (early_stop_num != -1 and n_kept > early_stop_num) or idx == max_steps - 1:
            reason = "max_steps" if idx == max_steps - 1 else "early_stop"
            for i in range(b):
                if results[i] is None:
                    results[i] = _batch_row(prompts[i], generated[i, : n_kept - 1], idx, reason)
        if all(r is not None for r in results):
            break
        pos = n_prompt + idx
        h = model.embed_audio(generated[:, idx : idx + 1], pos)  # finished rows run on, ignored
        h = model.run_layers(h, cache, n_max + pos, key_valid[:, None, None, : n_max + pos + 1])
    return [r for r in results if r is not None]


def _batch_row(prompt: torch.Tensor, tokens: torch.Tensor, idx: int, reason: str) -> T2SResult:
    tokens = tokens.cpu().clone()
    return T2SResult(tokens=tokens, idx=idx, y=torch.cat([prompt.cpu(), tokens]), stop_reason=reason)


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
    activations rounded) or torch.bfloat16. pack: prepack weights for oneDNN (`pack_weights`).
    """
    ckpt = read_t2s_checkpoint(path)
    cfg = T2SConfig.from_checkpoint_config(ckpt.config)
    model = T2SModel(cfg)
    expected = model.state_dict()
    projections = _projection_weight_names(model)
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
        model.to_dtype(dtype)
    if pack:
        model.pack_weights()
    return model.eval()
