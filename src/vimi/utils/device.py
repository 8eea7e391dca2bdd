"""The one place a user's device name (--device, eval.device) becomes a torch.device."""

import torch

from vimi.errors import ConfigError

DEVICE_HELP = "use auto, cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """ "auto"/None -> cuda when available, else cpu; otherwise the named device, checked (ConfigError if bad)."""
    if isinstance(name, torch.device):
        device = name
    elif name is None or str(name).strip().lower() in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(str(name).strip())
        except (RuntimeError, ValueError):
            raise ConfigError(f"device {name!r} is not a device name; {DEVICE_HELP}") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported; {DEVICE_HELP}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} was asked for, but CUDA is not available; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                f"use cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    return device
