"""Checks for chapter 11 (`chapters/11_where_next`): the norm of the tokens attention sees.

- `check_layernorm_norm(value, d)` (ex-layernorm-norm): the norm `sqrt(d)` of a LayerNorm output
  (no affine part), the token norm `R` of chapter 4's bound in a pre-LN model;
- `check_embedding_norm(value, d, std)` (ex-embedding-norm): the typical norm `std sqrt(2 d)` of a
  token plus a position embedding at initialisation (what post-LN attention sees).
"""

from __future__ import annotations

import math

from qklab.checks.core import check_value, exercise

__all__ = ["check_layernorm_norm", "check_embedding_norm"]


@exercise("ex-layernorm-norm", hint="after LayerNorm the d coordinates have mean 0 and (biased) variance 1: what is the sum of their squares?")
def check_layernorm_norm(value: object, d: int = 32) -> None:
    """Chapter 11, ex-layernorm-norm: `|LayerNorm(x)|` for `x` in `R^d` (gain 1, bias 0) is `sqrt(d)`."""
    check_value(
        value,
        math.sqrt(d),
        name=f"norm of a LayerNorm output (d = {d})",
        rtol=1e-3,
        mistakes={
            "1: LayerNorm does not normalise the vector to unit length": (1.0, "it makes each coordinate have mean 0 and variance 1 across the d coordinates."),
            "d, the squared norm": (float(d), "the sum of d squares of variance 1 is d; the norm is its square root."),
            "sqrt(d - 1) (an unbiased variance)": (math.sqrt(d - 1), "LayerNorm divides by the biased standard deviation (1/d, not 1/(d - 1))."),
        },
    )


@exercise("ex-embedding-norm", hint="each of the d coordinates is the sum of two independent N(0, std^2) numbers.")
def check_embedding_norm(value: object, d: int = 32, std: float = 0.02) -> None:
    """Chapter 11, ex-embedding-norm: typical norm of a token plus a position embedding at init, `std sqrt(2 d)`."""
    check_value(
        value,
        std * math.sqrt(2 * d),
        name=f"norm of token + position embedding at init (d = {d}, std = {std})",
        rtol=1e-3,
        mistakes={
            "std sqrt(d), the token embedding alone": (std * math.sqrt(d), "the attention input is the token embedding PLUS the learned position embedding: two independent vectors."),
            "std, one coordinate's standard deviation": (std, "a vector of d coordinates, each of standard deviation std, has norm about std sqrt(d)."),
            "2 std sqrt(d) (norms added)": (2 * std * math.sqrt(d), "independent random vectors add in squares: |a + b|^2 is about |a|^2 + |b|^2."),
            "sqrt(d) (as if a LayerNorm came first)": (math.sqrt(d), "in post-LN the first attention layer sees the raw embeddings, before any LayerNorm."),
        },
    )
