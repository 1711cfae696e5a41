"""Reading official GPT-SoVITS SoVITS (s2) `.pth` files, unchanged, without the official code.

An s2 file is a torch.save zip holding `{"weight": fp16 state_dict, "config": utils.HParams, "info": str}`.
Newer writers overwrite the zip's first two bytes ("PK") with a version marker ("05" v2Pro,
"06" v2ProPlus, "03"/"04" v3/v4 LoRA); the zip's central directory is intact, so putting "PK"
back and reading from memory recovers the archive.

The pickle names the class `utils.HParams` (a dict with attribute access). We never import the
official `utils`: torch's restricted (weights_only) unpickler is told to build our own
`HParams` for that name, so a file can create nothing but tensors, dicts and that class.

Weight-norm layers are stored with the old `weight_g` / `weight_v` names; they are fused here,
once, in fp32 (weight = g * v / |v|, the norm over every dim but 0 -- for ConvTranspose dim 0 is
the input channels). fp16 values are upcast exactly; all inference runs in fp32 like the
official CPU path.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """The file is not a GPT-SoVITS SoVITS checkpoint we can use (bad format or unsupported version)."""


class HParams:
    """Stand-in for the official `utils.HParams`: nested config with both `a.b` and `a["b"]` access."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __getitem__(self, key: str) -> Any:
        return self.__dict__[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.__dict__[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dict__)

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)

    def keys(self) -> Any:
        return self.__dict__.keys()

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts (for logging / JSON)."""
        return {k: (v.to_dict() if isinstance(v, HParams) else v) for k, v in self.__dict__.items()}

    def __repr__(self) -> str:
        return f"HParams({self.to_dict()!r})"


# (symbol version, model version, is_lora) as the official fast detector reports them.
VersionTriple = tuple[str, str, bool]

# Version marker bytes written over "PK" by the official exporter.
HEADER_VERSIONS: dict[bytes, VersionTriple] = {
    b"00": ("v1", "v1", False),
    b"01": ("v2", "v2", False),
    b"02": ("v2", "v3", False),
    b"03": ("v2", "v3", True),
    b"04": ("v2", "v4", True),
    b"05": ("v2", "v2Pro", False),
    b"06": ("v2", "v2ProPlus", False),
}

# md5 of the first 8192 bytes of the official pretrained s2G files (process_ckpt's table). The
# v1 entry really reports "v2" there; the text-embedding check below turns it into v1.
PRETRAINED_MD5: dict[str, VersionTriple] = {
    "dc3c97e17592963677a4a1681f30c653": ("v2", "v2", False),  # s2G488k.pth (v1 pretrained)
    "43797be674a37c1c83ee81081941ed0f": ("v2", "v3", False),  # s2Gv3.pth
    "6642b37f3dbb1f76882b69937c95a5f3": ("v2", "v2", False),  # s2G2333k.pth (v2 pretrained)
    "4f26b9476d0c5033e04162c486074374": ("v2", "v4", False),  # s2Gv4.pth
    "c7e9fce2223f3db685cdfa1e6368728a": ("v2", "v2Pro", False),  # s2Gv2Pro.pth
    "66b313e39455b57ab1b0bc0b239c9d0a": ("v2", "v2ProPlus", False),  # s2Gv2ProPlus.pth
}

# Plain "PK" files are told apart by size, as the official loader does.
V1_MAX_BYTES = 82978 * 1024
V2_MAX_BYTES = 700 * 1024 * 1024

SUPPORTED_MODEL_VERSIONS = ("v1", "v2", "v2Pro", "v2ProPlus")
V1_SYMBOL_COUNT = 322


def detect_version_from_header(head: bytes, size: int) -> VersionTriple:
    """Official fast detection: md5 of the first 8192 bytes, else the 2-byte marker, else the size."""
    digest = hashlib.md5(head[:8192]).hexdigest()
    if digest in PRETRAINED_MD5:
        return PRETRAINED_MD5[digest]
    marker = head[:2]
    if marker != b"PK":
        if marker not in HEADER_VERSIONS:
            raise CheckpointError(f"unknown file header {marker!r}: not a GPT-SoVITS SoVITS checkpoint")
        return HEADER_VERSIONS[marker]
    if size < V1_MAX_BYTES:
        return ("v1", "v1", False)
    if size < V2_MAX_BYTES:
        return ("v2", "v2", False)
    return ("v2", "v3", False)


@dataclass
class SoVITSCheckpoint:
    """What an s2 file holds, ready to build a model: fused fp32 weights plus the config."""

    weights: dict[str, torch.Tensor]
    config: HParams
    model_version: str  # "v1" | "v2" | "v2Pro" | "v2ProPlus"
    symbol_version: str  # "v1" (322 symbols) | "v2" (732)
    info: str
    header_version: VersionTriple  # what the fast detector said before the weight check
    notes: list[str] = field(default_factory=list)


def _unpickle(raw: bytes, source: str) -> Any:
    try:
        with torch.serialization.safe_globals([(HParams, "utils.HParams")]):
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError / UnpicklingError / zip errors alike
        raise CheckpointError(f"{source}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc


def fuse_weight_norm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every `X.weight_g` / `X.weight_v` pair by `X.weight = g * v / |v|` (fp32).

    The norm runs over all dims except 0, as torch's weight_norm(dim=0) does; for a
    ConvTranspose1d dim 0 is the input channels, which is what the stored g shape says.
    """
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.endswith(".weight_g"):
            continue
        if key.endswith(".weight_v"):
            prefix = key[: -len(".weight_v")]
            g_key = prefix + ".weight_g"
            if g_key not in state:
                raise CheckpointError(f"weight-norm tensor {key} has no matching {g_key}")
            v = tensor.float()
            g = state[g_key].float()
            norm = v.norm(dim=tuple(range(1, v.dim())), keepdim=True)
            out[prefix + ".weight"] = v * (g / norm)
            continue
        out[key] = tensor.float() if tensor.is_floating_point() else tensor
    return out


def read_sovits_checkpoint(path: str | os.PathLike[str]) -> SoVITSCheckpoint:
    """Read an official s2 `.pth` (v1/v2/v2Pro/v2ProPlus), detect its version, fuse its weights."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if len(raw) < 4:
        raise CheckpointError(f"{path}: file too short to be a checkpoint")
    header_version = detect_version_from_header(raw[:8192], len(raw))
    _, model_version, is_lora = header_version
    if is_lora or (model_version in ("v3", "v4") and raw[:2] != b"PK"):
        raise CheckpointError(f"{path}: SoVITS {model_version} checkpoints are not supported (only v1/v2/v2Pro/v2ProPlus)")
    if raw[:2] != b"PK":
        raw = b"PK" + raw[2:]
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise CheckpointError(f"{path}: not a torch zip archive, so not a GPT-SoVITS checkpoint")

    obj = _unpickle(raw, str(path))
    if not isinstance(obj, Mapping) or "weight" not in obj or "config" not in obj:
        raise CheckpointError(f"{path}: holds no 'weight' and 'config' entries: not a GPT-SoVITS SoVITS checkpoint")
    weight = obj["weight"]
    if not isinstance(weight, Mapping) or not all(isinstance(v, torch.Tensor) for v in weight.values()):
        raise CheckpointError(f"{path}: 'weight' is not a state_dict of tensors")
    if any(k.startswith("model.") for k in weight):
        raise CheckpointError(f"{path}: this is a GPT (s1) checkpoint, not a SoVITS (s2) one")
    if any(k.startswith(("cfm.", "wns1.", "bridge.")) for k in weight):
        raise CheckpointError(f"{path}: SoVITS v3/v4 checkpoints are not supported (only v1/v2/v2Pro/v2ProPlus)")
    if "enc_p.text_embedding.weight" not in weight or "dec.conv_pre.weight" not in weight:
        raise CheckpointError(f"{path}: no SoVITS text encoder / decoder weights: not a SoVITS checkpoint")
    config = obj["config"]
    if isinstance(config, Mapping):  # some third-party exporters store a plain dict
        config = HParams(**{k: HParams(**v) if isinstance(v, Mapping) else v for k, v in config.items()})
    if not isinstance(config, HParams) or "model" not in config or "data" not in config:
        raise CheckpointError(f"{path}: config has no 'model'/'data' sections")

    notes: list[str] = []
    # The official loader trusts the weights over the header for the symbol set.
    rows = int(weight["enc_p.text_embedding.weight"].shape[0])
    symbol_version = "v1" if rows == V1_SYMBOL_COUNT else "v2"
    if model_version in ("v3", "v4"):
        # A plain-zip file over 700 MiB is called v3 by size, but holds v2 weights here.
        notes.append(f"size rule said {model_version}, but the weights are a v1/v2-family SynthesizerTrn")
        model_version = symbol_version
    elif "Pro" not in model_version:
        model_version = symbol_version
    has_sv = "sv_emb.weight" in weight
    if has_sv and "Pro" not in model_version:
        # A Pro file saved without its header (or renamed): trust the weights, then the config.
        cfg_version = str(config["model"].get("version", ""))
        model_version = cfg_version if "Pro" in cfg_version else "v2Pro"
        notes.append(f"weights hold sv_emb: treated as {model_version} despite the file header")
    if not has_sv and "Pro" in model_version:
        raise CheckpointError(f"{path}: header says {model_version} but the weights have no sv_emb")

    info = obj.get("info", "")
    return SoVITSCheckpoint(
        weights=fuse_weight_norm(weight),
        config=config,
        model_version=model_version,
        symbol_version=symbol_version,
        info=str(info),
        header_version=header_version,
        notes=notes,
    )
