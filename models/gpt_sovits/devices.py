"""Where the GPT-SoVITS networks run: the `device` setting (auto | cpu | cuda | cuda:N) made concrete.

The config loader checks settings with this module at start-up, before anything needs torch, so
torch is imported only when a setting has to be resolved.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_SETTING = re.compile(r"auto|cpu|cuda(:\d+)?")
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


class DeviceError(ValueError):
    """The device setting is malformed, or names a device this machine does not have."""


def resolve_device(setting: str | torch.device) -> torch.device:
    """auto -> cuda when torch sees a CUDA device, else cpu; cpu / cuda / cuda:N as given, checked."""
    import torch

    if isinstance(setting, torch.device):
        setting = str(setting)
    if not DEVICE_SETTING.fullmatch(setting):
        raise DeviceError(f"'device' must be {DEVICE_CHOICES}, not {setting!r}")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"'device' is {setting}, but torch {torch.__version__} finds no CUDA device on this machine; "
                "use cpu or auto"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"'device' is {setting}, but this machine has {count} CUDA device(s)")
    return device
