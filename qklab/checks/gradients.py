"""Check for the exercise of chapter 5 on gradients (`chapters/05_two_collapses`, ex-query-jacobian).

What is here: `check_output_query_jacobian(fn)`. For one query with attention weights `a` over
keys `k_j` and values `v_j`, `fn(a, K, V)` must return `d o / d q` for `o = sum_j a_j v_j`,
`a = softmax(K q / sqrt(d_h))`: the `(d_v, d_h)` matrix
`(1/sqrt(d_h)) sum_j a_j v_j (k_j - k_bar)^T`, `k_bar = sum_l a_l k_l`, a covariance under `a`
between values and keys. The reference is autograd, independent of that formula: the derivative
of `softmax(log a + K delta / sqrt(d_h)) V` with respect to `delta` at `delta = 0` (the logits
of `a` moved by a change `delta` of the query). Recognised mistakes: no centring, a missing
`1/sqrt(d_h)`, the transpose, uniform weights instead of `a`, centring by the plain mean of the
keys, the centring the wrong way round.

What is not here: the package's closed form (`qklab.attention.output_query_jacobian`), the engine
(`qklab.checks.core`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from qklab.checks.core import Case, Mistake, check_function, exercise, gaussian

__all__ = ["check_output_query_jacobian", "output_query_jacobian_autograd", "JACOBIAN_CASES", "JACOBIAN_MISTAKES"]


def _one_autograd(a: Tensor, K: Tensor, V: Tensor) -> Tensor:
    """d o / d q for one query (a: (T,), K: (T, d_h), V: (T, d_v)), by autograd."""
    log_a = torch.log(a)  # -inf where a_j = 0: that key stays at weight 0 whatever the query does
    scale = math.sqrt(K.shape[-1])

    def output(delta: Tensor) -> Tensor:
        return torch.softmax(log_a + K @ delta / scale, dim=-1) @ V  # (d_v,)

    return torch.autograd.functional.jacobian(output, torch.zeros(K.shape[-1], dtype=K.dtype))  # (d_v, d_h)


def output_query_jacobian_autograd(a: Tensor, K: Tensor, V: Tensor) -> Tensor:
    """The reference of `ex-query-jacobian`: `(..., d_v, d_h)`, by autograd, one query at a time."""
    batch = torch.broadcast_shapes(a.shape[:-1], K.shape[:-2], V.shape[:-2])
    a_b = a.expand(*batch, a.shape[-1]).reshape(-1, a.shape[-1])
    K_b = K.expand(*batch, *K.shape[-2:]).reshape(-1, *K.shape[-2:])
    V_b = V.expand(*batch, *V.shape[-2:]).reshape(-1, *V.shape[-2:])
    out = torch.stack([_one_autograd(a_b[i], K_b[i], V_b[i]) for i in range(a_b.shape[0])])
    return out.reshape(*batch, V.shape[-1], K.shape[-1])


def _query_case(description: str, T: int, d_h: int, d_v: int, seed: int, query_size: float = 1.0,
                batch: tuple[int, ...] = ()) -> Case:
    """Keys and values drawn at random, `a` from a random query of the given size (`0`: uniform)."""
    K, V = gaussian((*batch, T, d_h), seed), gaussian((*batch, T, d_v), seed + 1)
    q = gaussian((*batch, d_h), seed + 2, std=query_size)
    a = torch.softmax((K @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(d_h), dim=-1)
    return Case(description, (a, K, V))


def _identical_tokens(T: int, d_h: int, d_v: int, seed: int) -> Case:
    K = gaussian((1, d_h), seed).expand(T, d_h).clone()
    V = gaussian((1, d_v), seed + 1).expand(T, d_v).clone()
    a = torch.softmax(gaussian((T,), seed + 2), dim=-1)  # any weights: the keys cannot tell the tokens apart
    return Case(description=f"{T} identical tokens (every key and every value the same), d_h = {d_h}", args=(a, K, V))


# T != d_h != d_v in most cases, so that a transposed answer shows in its shape as well.
JACOBIAN_CASES: tuple[Case, ...] = (
    _query_case("one query over 6 keys, d_h = 4, d_v = 3", 6, 4, 3, seed=1),
    _query_case("uniform rows: the query q = 0, 5 keys, d_h = 3, d_v = 2", 5, 3, 2, seed=4, query_size=0.0),
    _query_case("a nearly one-hot row (a large query), 7 keys, d_h = 4, d_v = 4", 7, 4, 4, seed=7, query_size=12.0),
    _identical_tokens(5, 3, 4, seed=10),
    _query_case("3 keys in d_h = 8 (T < d_h), d_v = 2", 3, 8, 2, seed=13),
    _query_case("a batch of 2 x 3 queries, each over 5 keys, d_h = 2, d_v = 3", 5, 2, 3, seed=16, batch=(2, 3)),
)


def _cov(weights: Tensor, K: Tensor, V: Tensor, centre: Tensor | None) -> Tensor:
    """(1 / sqrt(d_h)) sum_j w_j v_j (k_j - centre)^T (no centring when `centre` is None)."""
    Kc = K if centre is None else K - centre.unsqueeze(-2)
    return (weights.unsqueeze(-1) * V).transpose(-2, -1) @ Kc / math.sqrt(K.shape[-1])


def _k_bar(a: Tensor, K: Tensor) -> Tensor:
    return (a.unsqueeze(-1) * K).sum(-2)


JACOBIAN_MISTAKES: tuple[Mistake, ...] = (
    Mistake("no centring (sum_j a_j v_j k_j^T without k_bar)", lambda a, K, V: _cov(a, K, V, None),
            "differentiate a_j itself: d a_j / d q = a_j (k_j - sum_l a_l k_l) / sqrt(d_h), since the softmax's "
            "denominator depends on q too."),
    Mistake("a missing 1/sqrt(d_h)", lambda a, K, V: _cov(a, K, V, _k_bar(a, K)) * math.sqrt(K.shape[-1]),
            "the logits are q . k_j / sqrt(d_h): the chain rule brings that factor down."),
    Mistake("the transpose (d_h, d_v) instead of (d_v, d_h)", lambda a, K, V: _cov(a, K, V, _k_bar(a, K)).transpose(-2, -1),
            "entry (c, e) is d o_c / d q_e: rows follow the output o (d_v of them), columns the query q (d_h)."),
    Mistake("uniform weights 1/T instead of the attention weights a",
            lambda a, K, V: _cov(torch.full_like(a, 1 / a.shape[-1]), K, V, K.mean(-2)),
            "the output is an average under a, not under the uniform distribution: weigh every key by its a_j."),
    Mistake("centring by the plain mean of the keys instead of the a-weighted mean", lambda a, K, V: _cov(a, K, V, K.mean(-2)),
            "k_bar comes from the softmax's denominator: it is sum_l a_l k_l, weighted by the attention."),
    Mistake("the centring the wrong way round (k_bar - k_j)", lambda a, K, V: -_cov(a, K, V, _k_bar(a, K)),
            "raising q . k_j raises a_j: d a_j / d q points along k_j - k_bar, not k_bar - k_j."),
)


@exercise("ex-query-jacobian",
          hint="k_bar = sum_l a_l k_l; J = (1/sqrt(d_h)) sum_j a_j v_j (k_j - k_bar)^T: in torch, "
               "(a[..., None] * V).transpose(-2, -1) @ (K - k_bar[..., None, :]) / sqrt(d_h).")
def check_output_query_jacobian(fn: Callable[[Tensor, Tensor, Tensor], Tensor], *, quiet: bool = False) -> None:
    """Check `fn(a, K, V)`, `d o / d q` of one attention output (chapter 5, ex-query-jacobian), against autograd."""
    check_function(
        fn,
        output_query_jacobian_autograd,
        JACOBIAN_CASES,
        name="output_query_jacobian",
        mistakes=JACOBIAN_MISTAKES,
        axis_names=("output coordinate c", "query coordinate e"),
        atol=1e-9,
        rtol=1e-7,
        quiet=quiet,
    )
