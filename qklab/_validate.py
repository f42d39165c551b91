"""Input checks shared by the package: one place that turns bad input into a clear error.

Every public function of `qklab` validates its tensors through these helpers, so that a wrong
shape, dtype or a NaN is reported with the argument's name instead of producing a silently
wrong number further down.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["as_float_tensor", "check_finite", "check_same_trailing", "check_positive_int", "check_writable_file"]


def as_float_tensor(
    x: object,
    name: str,
    *,
    min_ndim: int = 0,
    ndim: int | None = None,
    allow_empty: bool = False,
    finite: bool = True,
) -> Tensor:
    """Return `x` as a floating-point tensor, or raise an error that names `name`.

    Accepts tensors and array-likes. Integer or boolean input is rejected (not cast), because
    in this package a tensor of integers where floats were expected is almost always a bug
    (token ids passed instead of embeddings, say).
    """
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a tensor or array-like, got {type(x).__name__}") from err
    if not (x.is_floating_point() or x.is_complex()):
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; "
            f"convert it with .float() (or .double()) first"
        )
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions, got shape {tuple(x.shape)}"
        )
    if not allow_empty and x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if finite:
        check_finite(x, name)
    return x


def check_finite(x: Tensor, name: str) -> None:
    """Raise ValueError if `x` holds NaN or infinite values (counted in the message)."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(bad.sum()) - n_nan
        raise ValueError(f"{name} contains non-finite values ({n_nan} NaN, {n_inf} inf)")


def check_same_trailing(a: Tensor, b: Tensor, name_a: str, name_b: str, dims: int = 2) -> None:
    """Raise ValueError unless `a` and `b` agree in their last `dims` dimensions."""
    if a.shape[-dims:] != b.shape[-dims:]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same last {dims} dimensions, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_positive_int(value: object, name: str) -> int:
    """Return `value` as an int if it is a positive integer, else raise ValueError/TypeError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def check_writable_file(path: str | os.PathLike, name: str) -> Path:
    """Raise ValueError naming `name` unless a file can be written at `path` (its folder is created
    if missing); nothing is left behind. For output paths, checked before any work is done."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"{name} {str(p)!r} is a folder; give a file path")
    blocking = next((q for q in p.parents if q.exists() and not q.is_dir()), None)
    if blocking is not None:
        raise ValueError(f"{name} {str(p)!r} cannot be written: {str(blocking)!r} is a file, not a folder")
    existed = p.exists()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("a", encoding="utf-8"):
            pass
    except OSError as err:
        raise ValueError(f"{name} {str(p)!r} cannot be written: {err.strerror or err}") from err
    if not existed:
        p.unlink()
    return p
