"""Where a run executes and what it ran with: device choice and version stamps (chapters 4, 9, 10).

What is here: `pick_device` (CUDA, then Apple MPS, then CPU, or what the user names),
`machine()` (what decides the last bits of a CPU result: CPU model, the kernels PyTorch picked,
threads, MKL and oneDNN versions; `qklab.reproducibility` compares two of them) and
`environment()` (versions, platform and `machine()`) for results files. Nothing else.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import sys

import torch

__all__ = ["pick_device", "machine", "environment"]


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


def _cpuinfo(field: str) -> str | None:
    """The first `field` line of /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_flags() -> str | None:
    """A short fingerprint of the CPU's feature flags (MKL and oneDNN pick code paths by them)."""
    flags = _cpuinfo("flags")
    return hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:12] if flags else None


@functools.lru_cache(maxsize=1)
def _library_versions() -> dict:
    """MKL and oneDNN versions as PyTorch's build reports them (None where it has none)."""
    config = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([\w.\-]+)", config)
    onednn = re.search(r"MKL-DNN v([\d.]+)", config)
    return {"mkl": mkl.group(1) if mkl else None, "onednn": onednn.group(1) if onednn else None}


def machine() -> dict:
    """What decides the last bits of a CPU computation here.

    Two runs of the same code, seed and data agree to the last bit when these agree (and the
    versions of `environment()`); otherwise summation orders differ and training amplifies the
    difference (chapter 10 measures by how much). `cpu_capability` is the vector-instruction set
    whose kernels PyTorch uses (`AVX512`, `AVX2`, `DEFAULT`); the environment variable
    `ATEN_CPU_CAPABILITY` lowers it, and `capability_forced` records that it was set;
    `cpu_flags` is a fingerprint of the CPU's feature flags (None off Linux).
    """
    return {
        "cpu_model": _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown",
        "cpu_flags": _cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "capability_forced": os.environ.get("ATEN_CPU_CAPABILITY") or None,
        "threads": torch.get_num_threads(),
        **_library_versions(),
    }


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
        "machine": machine(),
    }
    if device is not None:
        env["device"] = str(device)
        if torch.device(device).type == "cuda":
            env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env
