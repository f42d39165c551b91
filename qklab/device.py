"""Where a run executes and what it ran with: device choice and version stamps (chapters 4, 9, 10).

What is here: `pick_device` (CUDA, then Apple MPS, then CPU, or what the user names) and
`environment()` (Python, torch, numpy and qklab versions, thread count, platform) for results
files. Nothing else.
"""

from __future__ import annotations

import platform
import sys

import torch

__all__ = ["pick_device", "environment"]


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """`"auto"` (or None): CUDA if available, else Apple MPS, else CPU; otherwise `torch.device(device)`.

    Raises ValueError when the named device is not available here.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch.cuda.is_available() is False")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for but torch.backends.mps.is_available() is False")
    return dev


def environment(device: torch.device | str | None = None) -> dict:
    """Version stamps for results files."""
    import numpy

    import qklab

    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "qklab": getattr(qklab, "__version__", "unknown"),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
    }
    if device is not None:
        env["device"] = str(device)
        if torch.device(device).type == "cuda":
            env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env
