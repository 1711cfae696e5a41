"""Precision of the text-to-semantic model: fp32 / bf16 / fp16 weights, int8, oneDNN prepacking.

Everything here is about how the T2S projections hold and multiply their weights, not what the
network computes (`t2s_model.py`). Decoding one token is bound by streaming the weights from
memory, so the layout of each weight follows its dtype (`Projection`), weights can be prepacked
for oneDNN (`pack_weights`), cast (`to_dtype`) or quantized to int8 (`quantize_int8`).

Speed, full v2 size on the 2-core dev CPU (bench/t2s_speed.py; official code ~25 tokens/s):
fp32 ~50-54 tokens/s, fp32 + pack_weights ~70-78, fp16 ~130 (the file's own weights, exact),
int8 ~145. torch.compile was tried and rejected: 108 s to compile, then slower (it
recompiles as the cache grows).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # t2s_model builds its layers from Projection, so it cannot be imported here
    from .t2s_model import T2SModel

FP16_UPCAST_ROWS = 16  # fp16 matmuls with at least this many rows run in fp32 (see Projection)


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
            if x.dtype == torch.float16 and x.device.type == "cpu" and x.numel() >= FP16_UPCAST_ROWS * x.shape[-1]:
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




def projection_weight_names(model: nn.Module) -> set[str]:
    """State-dict names of every Projection weight (stored (in, out) in fp32, see Projection)."""
    return {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, Projection)}


def to_dtype(model: T2SModel, dtype: torch.dtype) -> T2SModel:
    """Cast in place to torch.float32 / bfloat16 / float16 (weights, activations and cache).

    Logits are sampled in fp32 whatever the dtype. fp16 keeps the official checkpoint's fp16
    weights exactly; only activations are rounded.
    """
    model.to(dtype=dtype)
    model.pe = model.pe.float()  # positions are added in fp32 (see T2SModel.embed_text)
    for module in model.modules():
        if isinstance(module, Projection):
            module.set_layout(in_major=dtype == torch.float32)
            if module.packed is not None:
                module.pack()
    return model


def pack_weights(model: nn.Module) -> int:
    """Prepack every projection for oneDNN (see Projection.pack): about 1.5x faster decoding
    in fp32 and 1.4x in bf16 on this CPU, for a second copy of the weights in memory.
    Returns how many projections were packed (0 where unsupported, e.g. fp16 without
    AVX512-FP16). Call again after changing weights."""
    return sum(m.pack() for m in model.modules() if isinstance(m, Projection))


def quantize_int8(model: T2SModel) -> T2SModel:
    """A copy whose projections use int8 dynamic quantization (int8 weights, per-call activations).

    Uses torch.ao.quantization.quantize_dynamic, which torch marks deprecated (still present
    in 2.13). Prefer fp16 (`to_dtype(model, torch.float16)`): nearly as fast here, far less drift.
    """
    # A fresh copy with the same layouts, since deepcopy cannot copy packed weights; type(model)
    # is T2SModel, named this way because t2s_model imports this module.
    quantized = to_dtype(type(model)(model.config), model.dtype)
    quantized.load_state_dict(model.state_dict())
    to_dtype(quantized, torch.float32).eval()
    quantized.info = model.info
    for parent in list(quantized.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Projection):
                setattr(parent, name, child.as_linear())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantiz.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*quantization is deprecated.*", category=DeprecationWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(quantized, {nn.Linear}, dtype=torch.qint8, inplace=True)
