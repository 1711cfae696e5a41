"""Reading the files of GPT-SoVITS's feature networks (HuBERT, RoBERTa, ERes2NetV2).

These networks come as Hugging Face style folders (config.json + pytorch_model.bin) or, for the
speaker net, a bare state_dict file. Everything here fails with `FeatureModelFileError`, whose
message names the file and what is wrong with it, so a user pointing `--models` at the wrong
folder learns which file to fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

WEIGHT_FILE_NAMES = ("pytorch_model.bin", "model.safetensors")


class FeatureModelFileError(ValueError):
    """A feature-network file is missing, unreadable, or does not hold what the network needs."""


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FeatureModelFileError(f"missing file: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FeatureModelFileError(f"cannot read {path} as JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise FeatureModelFileError(f"{path} does not hold a JSON object")
    return data


def find_weight_file(folder: Path) -> Path:
    """The weights inside a Hugging Face style model folder."""
    if not folder.is_dir():
        raise FeatureModelFileError(f"model folder not found: {folder}")
    for name in WEIGHT_FILE_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise FeatureModelFileError(f"no weights in {folder}: expected one of {', '.join(WEIGHT_FILE_NAMES)}")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a torch.save'd state_dict (or a .safetensors file), floats upcast to float32.

    Official files hold fp16 or fp32 weights; the official CPU path loads them into fp32
    modules, so the upcast is exact and every computation here runs in fp32.
    `weights_only=True` keeps a hostile pickle from running code.
    """
    if not path.is_file():
        raise FeatureModelFileError(f"missing file: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise FeatureModelFileError(f"cannot load {path} as a torch state_dict: {exc}") from exc
    if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise FeatureModelFileError(f"{path} does not hold a plain state_dict of tensors")
    return {k: (v.float() if v.is_floating_point() else v) for k, v in raw.items()}


def load_into(
    module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, *, ignore_unexpected: bool = False
) -> None:
    """Copy `state` into `module`, requiring every module key with the module's shape.

    Keys the module lacks are an error unless `ignore_unexpected` (checkpoints saved from a
    bigger model, e.g. with a pre-training or masked-LM head, carry tensors inference never reads).
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = [] if ignore_unexpected else sorted(set(state) - set(expected))
    state = {key: state[key] for key in expected if key in state}
    if missing or unexpected:
        raise FeatureModelFileError(
            f"{source} does not match the network built from its config: "
            f"missing {missing[:8]}{' …' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}"
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise FeatureModelFileError(
                f"{source}: tensor {key!r} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
            )
    module.load_state_dict(state, strict=True)
