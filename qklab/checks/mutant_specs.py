"""The exercises as the mutation harness (`qklab.checks.mutants`) sees them: `SPECS`.

One `Spec` per exercise of the book (31): the check, the reference answer in the learner's
signature, valid inputs of the harness's own (`probes`: shape families, both signs, the
magnitudes the statement names; never the check's cases), the exercise's `d` and `n`, and the
mutants that belong to that exercise only (a term negated, a finite stand-in for `-inf`, another
pair of rows, a broken rule). The probes are written from the statements in `chapters/`, so a
check whose cases cover one sign or one shape family only lets a mutant through here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from qklab.attention import attn_scores, output_query_jacobian, pattern, sparsemax
from qklab.checks import attention as ca
from qklab.checks import collapse as cc
from qklab.checks import contraction as ck
from qklab.checks import entropy_bounds as ce
from qklab.checks import gradients as cgrad
from qklab.checks import head_stats as ch
from qklab.checks import induction as cind
from qklab.checks import intro as ci
from qklab.checks import localization as cl
from qklab.checks import matched as cmat
from qklab.checks import own_key as cown
from qklab.checks import metrics as cm
from qklab.checks import penalty_statistics as cp
from qklab.checks import power_iteration as cpow
from qklab.checks import regions as creg
from qklab.checks import snr as csnr
from qklab.checks import spectrum as cs
from qklab.checks.core import Case, gaussian
from qklab.checks.mutant_kinds import Mutant, Spec
from qklab.collapse import attention_stack_residuals, localization, random_stochastic, running_products
from qklab.data import InductionTask
from qklab.metrics import effective_rank, induction_score, token_residual
from qklab.findings import value_at
from qklab.theory import predicted_snr, predicted_snr_general

__all__ = ["SPECS", "rule_evasions"]

g = gaussian
f64 = torch.float64


def _t(*v: float) -> Tensor:
    return torch.tensor(v, dtype=f64)


# --- the "regime" class: the reference rewritten naively ------------------------------------------
# Each is right on small, well-spread inputs and wrong on the inputs the chapter itself uses.

def _pattern_naive_exp(X: Tensor, W_Q: Tensor, W_K: Tensor, causal: bool = False) -> Tensor:
    """softmax as exp(S) / sum exp(S), without subtracting the row's max: overflows for logits of order 1e3."""
    S = attn_scores(X, W_Q, W_K)
    if causal:
        T = S.shape[-1]
        S = S.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), -math.inf)
    E = S.exp()
    return E / E.sum(-1, keepdim=True)


def _entropy_with_eps(eps: float) -> Callable[[Tensor], Tensor]:
    """The entropy with an epsilon inside the log: off by about eps per row, a collapsed head's whole entropy."""
    return lambda A: -(A * torch.log(A + eps)).sum(-1).mean()


def _residual_cancelling(X: Tensor) -> Tensor:
    """sqrt(||X||^2 - T ||xbar||^2) / ||X||: right in exact arithmetic, all digits lost for nearly collapsed tokens."""
    T = X.shape[-2]
    total = (X * X).sum((-2, -1))
    mean = X.mean(-2)
    return (total - T * (mean * mean).sum(-1)).clamp_min(0).sqrt() / total.sqrt()


def _bound_naive_log(sigma: Tensor, R: Tensor, d_h: int, n: Tensor) -> Tensor:
    """log(1 + x) instead of log1p(x): 0 where the bound is below 1e-16 (a collapsed head)."""
    return torch.log(1 + (n - 1) * torch.exp(-2 * sigma * R**2 / math.sqrt(d_h)))


def _matched_strict_ends(e: Any, p: Any, h: float) -> Tensor:
    """NaN at the end points too (h strictly inside the range), where the curve is measured."""
    e, p = torch.as_tensor(e, dtype=f64), torch.as_tensor(p, dtype=f64)
    if not float(e.min()) < h < float(e.max()):
        return torch.tensor(float("nan"), dtype=f64)
    return torch.as_tensor(value_at(e, p, h), dtype=f64)


# --- chapter 1: the attention pattern -------------------------------------------------------------

def _pattern_with_fill(value: float) -> Callable[..., Tensor]:
    def fn(X: Tensor, W_Q: Tensor, W_K: Tensor, causal: bool = False) -> Tensor:
        S = attn_scores(X, W_Q, W_K)
        if causal:
            T = S.shape[-1]
            S = S.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), value)
        return torch.softmax(S, dim=-1)
    return fn


def _pattern_probes() -> list[Case]:
    def head(X: Tensor, W_shape: tuple[int, ...], seed: int, causal: bool, opposite: bool = False) -> Case:
        d = W_shape[-2]
        W_Q = g(W_shape, seed, 1 / math.sqrt(d))
        W_K = -W_Q if opposite else g(W_shape, seed + 1, 1 / math.sqrt(d))
        return Case("probe", (X, W_Q, W_K), {"causal": causal})
    return [
        head(g((7, 5), 100), (5, 3), 101, False),
        head(g((7, 5), 102), (5, 3), 103, True),
        head(g((2, 3, 6, 4), 104), (4, 2), 105, True),
        head(g((5, 8), 106), (4, 8, 2), 107, True),
        head(g((1, 3), 108), (3, 1), 109, True),
        head(g((6, 6), 110, 100.0), (6, 2), 111, True),  # logits of order 1e4, both signs
        head(g((6, 6), 112, 100.0), (6, 2), 113, True, opposite=True),
        _all_negative_probe(),  # every visible logit about -2e4
    ]


def _all_negative_probe() -> Case:
    """Tokens that are nearly equal and W_K = -W_Q: every score is about -2e4 (order 1e4, negative)."""
    W_Q = g((6, 2), 114, 1 / math.sqrt(6))
    v = g((1, 6), 115)
    q = v @ W_Q
    v = v * math.sqrt(2e4 * math.sqrt(2) / float((q * q).sum()))
    X = v + g((5, 6), 116)
    return Case("probe", (X, W_Q, -W_Q), {"causal": True})


def _pattern_spec() -> Spec:
    return Spec(
        "ex-pattern", "1.2", ca.check_attention_pattern, ca.attention_pattern_reference, _pattern_probes,
        sizes=lambda X, W_Q, W_K, causal=False: (W_Q.shape[-2], X.shape[-2]), core_ndim=(2, 2, 2),
        extra=lambda: [
            Mutant("the causal mask by -1e4 instead of -inf", _pattern_with_fill(-1e4)),
            Mutant("the causal mask by -1e9 instead of -inf", _pattern_with_fill(-1e9)),
            Mutant("the scores negated (softmax of -S)", lambda X, W_Q, W_K, causal=False: pattern(-attn_scores(X, W_Q, W_K), causal=causal)),
            Mutant("regime: exp without the row's max subtracted", _pattern_naive_exp),
        ],
        reasons={
            "the causal mask by -1e9 instead of -inf": "with logits of order 1e4 (the statement's largest), exp(-1e9 - max) is 0 "
                                                      "exactly, as exp(-inf) is: the same pattern on every input the statement names",
            "abs of the output": "the pattern is non-negative",
        },
    )


# --- chapter 2: measures ----------------------------------------------------------------------------

def _matrices(shapes: list[tuple[int, ...]], seed: int, std: float = 1.0) -> list[Case]:
    return [Case("probe", (g(s, seed + i, std),)) for i, s in enumerate(shapes)]


def _patterns(shapes: list[tuple[int, ...]], seed: int, causal: bool = False) -> list[Case]:
    return [Case("probe", (pattern(g(s, seed + i, 2.0), causal=causal),)) for i, s in enumerate(shapes)]


SPECS_CH2 = [
    lambda: Spec("ex-residual", "2.2", cm.check_relative_residual, lambda X: token_residual(X, norm="fro"),
                 lambda: _matrices([(5, 3), (2, 4, 6), (7, 2), (1, 5)], 200) + [Case("probe", (g((4, 3), 205) - 5.0,))],
                 sizes=lambda X: (X.shape[-1], X.shape[-2]), core_ndim=(2,),
                 extra=lambda: [Mutant("regime: sqrt(||X||^2 - T ||xbar||^2), which cancels", _residual_cancelling)],
                 atol=1e-14,  # as the check: residuals near 1e-8 compared to 1e-6 of their size
                 reasons={"abs of the output": "a norm ratio is non-negative"}),
    lambda: Spec("ex-entropy", "2.3", cm.check_mean_row_entropy, lambda A: cm._entropy_reference(A),
                 lambda: _patterns([(5, 5), (3, 6, 6), (2, 2)], 210) + _patterns([(6, 6)], 215, causal=True)
                 + [Case("probe", (torch.eye(4, dtype=f64),))],
                 sizes=lambda A: (A.shape[-1], A.shape[-1]), core_ndim=(2,),
                 extra=lambda: [Mutant(f"regime: log(A + {eps:g}) (an epsilon inside the log)", _entropy_with_eps(eps))
                                for eps in (1e-12, 1e-9, 1e-6)],
                 atol=1e-14,  # as the check: a collapsed head's entropy is about 1e-11
                 reasons={"abs of the output": "an entropy is non-negative"}),
    lambda: Spec("ex-erank", "2.4", cm.check_effective_rank, effective_rank,
                 lambda: _matrices([(6, 4), (3, 5, 5), (4, 7)], 220) + [Case("probe", (torch.diag(_t(2.0, 1.0, 0.0, 0.0)),))],
                 sizes=lambda X: (X.shape[-1], X.shape[-2]), core_ndim=(2,),
                 reasons={"abs of the output": "an effective rank is positive",
                          "transpose input 1": "X and X^T have the same singular values, so the same effective rank"}),
]


# --- chapter 3: collapse ----------------------------------------------------------------------------

def _stack_probe(X_shape: tuple[int, ...], L: int, d_h: int, seed: int, causal: bool) -> Case:
    d = X_shape[-1]
    return Case("probe", (g(X_shape, seed), g((L, d, d_h), seed + 1, 2 / math.sqrt(d)), g((L, d, d_h), seed + 2, 2 / math.sqrt(d)),
                          g((L, d, d), seed + 3, 1 / math.sqrt(d))), {"causal": causal})


def _other_pair(choose: Callable[[Tensor], tuple[Tensor, Tensor]]) -> Callable[[Tensor], Tensor]:
    """A column built from the pair of rows `choose(A)` (indices `(...,)`): 1 where row i exceeds row i'."""
    def column(A: Tensor) -> Tensor:
        i, i2 = choose(A)
        row = lambda k: torch.take_along_dim(A, k[..., None, None], dim=-2).squeeze(-2)  # noqa: E731
        y = (row(i) > row(i2)).to(A.dtype)
        e0 = torch.zeros_like(y)
        e0[..., 0] = 1.0
        return torch.where(((y.amax(-1) - y.amin(-1)) == 0)[..., None], e0, y)
    return column


def _pair_by(distance: Callable[[Tensor], Tensor]) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    def choose(A: Tensor) -> tuple[Tensor, Tensor]:
        D = distance(A.unsqueeze(-2) - A.unsqueeze(-3))  # (..., T, T)
        flat = D.flatten(-2).argmax(-1)
        T = A.shape[-1]
        return flat // T, flat % T
    return choose


def _row0_and_farthest(A: Tensor) -> tuple[Tensor, Tensor]:
    D = (A - A[..., :1, :]).abs().sum(-1)  # distance of every row from row 0
    return torch.zeros_like(D[..., 0], dtype=torch.long), D.argmax(-1)


def _peak_rows(A: Tensor) -> tuple[Tensor, Tensor]:
    top = A.amax(-1)
    return top.argmax(-1), top.argmin(-1)  # the most peaked row against the flattest one


def _tight_agree(a: Any, b: Any, case: Case) -> bool:
    try:
        q = ck.attained_fraction(case.args[0], a if isinstance(a, Tensor) else torch.as_tensor(a))
    except ValueError:
        return False
    return bool(torch.allclose(q, torch.ones_like(q), atol=1e-9, rtol=0))


def _stochastic_probes() -> list[Case]:
    out = [Case("probe", (random_stochastic(1, T, std, seed=300 + T)[0],)) for T, std in ((3, 1.0), (4, 0.7), (5, 2.0), (8, 1.0))]
    out.append(Case("probe", (random_stochastic(64, 4, 1.0, seed=310),)))
    out.append(Case("probe", (random_stochastic((16, 3), 3, 1.5, seed=311),)))
    out.append(Case("probe", (random_stochastic(8, 6, 1.0, causal=True, seed=312),)))
    return out


SPECS_CH3 = [
    lambda: Spec("ex-running-products", "3.2", cc.check_running_products, running_products,
                 lambda: [Case("probe", (random_stochastic(3, 5, 1.0, seed=320),)), Case("probe", (g((2, 4, 3, 3), 321),)),
                          Case("probe", (random_stochastic((2, 2), 4, 2.0, causal=True, seed=322),)), Case("probe", (g((5, 2, 2), 323),))],
                 sizes=lambda A: (A.shape[-1], A.shape[-3]), core_ndim=(3,)),
    lambda: Spec("ex-stack-residuals", "3.3", cc.check_stack_residuals, attention_stack_residuals,
                 lambda: [_stack_probe((6, 4), 2, 2, 330, False), _stack_probe((6, 4), 3, 4, 335, True),
                          _stack_probe((2, 5, 3), 2, 3, 340, True), _stack_probe((7, 5), 1, 2, 345, False)],
                 sizes=lambda X, W_Q, W_K, W_V, causal=False: (X.shape[-1], X.shape[-2]), core_ndim=(2, 3, 3, 3),
                 reasons={"abs of the output": "a residual is non-negative"}),
    lambda: Spec("ex-dobrushin-tight", "3.4", ck.check_tight_column, ck.tight_column, _stochastic_probes,
                 sizes=lambda A: (A.shape[-1], A.shape[-1]), core_ndim=(2,), agree=_tight_agree,
                 extra=lambda: [
                     Mutant("the first two rows", _other_pair(lambda A: (torch.zeros(A.shape[:-2], dtype=torch.long),
                                                                         torch.ones(A.shape[:-2], dtype=torch.long)))),
                     Mutant("the pair of rows farthest apart in Euclidean distance", _other_pair(_pair_by(lambda D: D.pow(2).sum(-1)))),
                     Mutant("the pair of rows farthest apart in max-abs distance", _other_pair(_pair_by(lambda D: D.abs().amax(-1)))),
                     Mutant("row 0 and the row farthest from it", _other_pair(_row0_and_farthest)),
                     Mutant("the most peaked row and the flattest row", _other_pair(_peak_rows)),
                 ],
                 reasons={name: "spread(A y) / spread(y) is unchanged by y -> a y + b (a != 0): the column still attains the bound"
                          for name in ("negate the output", "scale by 2", "scale by 1/2", "scale by sqrt(2)", "scale by d",
                                       "scale by 1/d", "scale by n/(n-1)", "right only for the sizes of the first example")}
                 | {"abs of the output": "the reference column is 0/1: abs changes nothing"}),
]


# --- chapter 4: entropy collapse --------------------------------------------------------------------

def _power_pack(out: Any) -> Tensor:
    u, s = out
    return torch.cat([torch.as_tensor(u).reshape(-1).to(f64), torch.as_tensor(s).reshape(1).to(f64)])


SPECS_CH4 = [
    lambda: Spec("ex-power-step", "4.2", cpow.check_power_step, cpow.power_step_reference,
                 lambda: [Case("probe", (g((5, 5), 400), g((5,), 401))), Case("probe", (g((2, 7), 402), g((2,), 403))),
                          Case("probe", (g((7, 2), 404), g((7,), 405))), Case("probe", (g((3, 3), 406, 50.0), -g((3,), 407)))],
                 sizes=lambda W, u: (W.shape[-1], W.shape[-2]), core_ndim=(2, 1),
                 pack=_power_pack, unpack=lambda t: (t[:-1], t[-1]), batched=False,
                 float32_passes=False),  # the check feeds u_new back to a float64 W for 30 steps: float32 cannot mix
    lambda: Spec("ex-entropy-bound", "4.3", ce.check_entropy_bound, ce.entropy_bound_reference,
                 lambda: [Case("probe", (_t(0.3), _t(2.0), 8, _t(5.0))), Case("probe", (_t(0.0, 1.0, 4.0), _t(1.0), 3, _t(7.0))),
                          Case("probe", (_t(2.0), _t(0.5, 1.0, 1.5), 64, _t(100.0)))],
                 sizes=lambda sigma, R, d_h, n: (d_h, float(n.max())),
                 extra=lambda: [Mutant("exp(+Delta) (a sign of the exponent lost)",
                                       lambda s, R, d_h, n: torch.log1p((n - 1) * torch.exp(2 * s * R**2 / math.sqrt(d_h)))),
                                Mutant("regime: log(1 + x) instead of log1p(x)", _bound_naive_log)],
                 atol=0.0,  # as the check: relative only, bounds near 1e-23 included
                 reasons={"abs of the output": "the bound log(1 + (n - 1) e^-Delta) is non-negative"}),
]


# --- chapter 5 ---------------------------------------------------------------------------------------

def _jacobian_probe(T: int, d_h: int, d_v: int, seed: int, query_size: float, batch: tuple[int, ...] = ()) -> Case:
    K, V = g((*batch, T, d_h), seed), g((*batch, T, d_v), seed + 1)
    a = torch.softmax((K @ g((*batch, d_h), seed + 2, query_size).unsqueeze(-1)).squeeze(-1) / math.sqrt(d_h), dim=-1)
    return Case("probe", (a, K, V))


SPECS_CH5 = [
    lambda: Spec("ex-query-jacobian", "5.1", cgrad.check_output_query_jacobian, output_query_jacobian,
                 lambda: [_jacobian_probe(8, 3, 5, 500, 1.0), _jacobian_probe(4, 6, 2, 503, 3.0, (3,)),
                          _jacobian_probe(6, 2, 2, 506, 0.5, (2, 2)), _jacobian_probe(1, 3, 4, 509, 1.0),
                          _jacobian_probe(5, 5, 3, 512, 30.0)],
                 sizes=lambda a, K, V: (K.shape[-1], K.shape[-2]), core_ndim=(1, 2, 2),
                 extra=lambda: [Mutant("divided by d_h instead of sqrt(d_h)",
                                       lambda a, K, V: output_query_jacobian(a, K, V) / math.sqrt(K.shape[-1])),
                                Mutant("the weights a squared (a_j^2 in the sum)",
                                       lambda a, K, V: cgrad._cov(a * a, K, V, (a.unsqueeze(-1) * K).sum(-2)))]),
    lambda: Spec("ex-half-entropy", "5.2", cc.check_half_entropy_scale, cc.half_entropy_scale_reference,
                 lambda: [Case("probe", (g((2, 8, 8), 510), torch.eye(8, dtype=f64))),
                          Case("probe", (g((3, 12, 6), 511), g((6, 6), 512)))],
                 sizes=lambda X, B: (X.shape[-1], X.shape[-2]), core_ndim=(2, 2), rtol=1e-4,
                 extra=lambda: [Mutant("the mean of each sequence's own crossing (a different quantity within 2 %)",
                                       lambda X, B: sum(cc.half_entropy_scale_reference(x, B) for x in X) / X.shape[0])],
                 reasons={"abs of the output": "the scale r is positive"}),
]


# --- chapter 6 ----------------------------------------------------------------------------------------

def _heads(shapes: list[tuple[int, ...]], seed: int) -> list[Case]:
    return [Case("probe", (g(s, seed + 2 * i), g(s, seed + 2 * i + 1))) for i, s in enumerate(shapes)]


def _eig_agree(a: Any, b: Any, case: Case) -> bool:
    a, b = torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a), torch.as_tensor(b)
    if a.shape != b.shape:
        return False
    za, zb = a.to(torch.complex128).reshape(-1, a.shape[-1]), b.to(torch.complex128).reshape(-1, b.shape[-1])
    for ra, rb in zip(za, zb):
        la = sorted(ra.tolist(), key=lambda c: (round(c.real, 6), round(c.imag, 6)))
        lb = sorted(rb.tolist(), key=lambda c: (round(c.real, 6), round(c.imag, 6)))
        if any(abs(x - y) > 1e-7 * max(1.0, abs(y)) for x, y in zip(la, lb)):
            return False
    return True


# --- the class "rule evasion": the reference's numbers, computed against a statement's rule ------------

def _w_by_route(route: str, W_Q: Tensor, W_K: Tensor) -> Any:
    """`W = W_Q W_K^T` formed by one of the routes a shape test does not see (or, for an eigen route,
    an eigen-solver called on the `d_h x d_h` core)."""
    core = W_K.transpose(-2, -1) @ W_Q
    if route == "W with an extra axis, W[None]":
        return W_Q[None] @ W_K.transpose(-2, -1)[None]
    if route == "W as a Python list of rows, one row at a time":
        return [W_Q[..., i:i + 1, :] @ W_K.transpose(-2, -1) for i in range(W_Q.shape[-2])]
    if route == "W in numpy (float64)":
        return W_Q.numpy() @ np.swapaxes(W_K.numpy(), -1, -2)
    if route == "W in numpy (float32)":
        return W_Q.numpy().astype(np.float32) @ np.swapaxes(W_K.numpy().astype(np.float32), -1, -2)
    if route == "a hand-written power iteration on W":
        W, v = W_Q @ W_K.transpose(-2, -1), torch.ones(W_Q.shape[:-1], dtype=W_Q.dtype)
        for _ in range(5):
            v = (W @ v[..., None])[..., 0]
            v = v / v.norm(dim=-1, keepdim=True)
        return W, v
    if route == "torch.linalg.eig of the core":
        return torch.linalg.eig(core)
    if route == "torch.linalg.eigvalsh of the core":
        return torch.linalg.eigvalsh(core)
    if route == "numpy.linalg.eigvals of the core":
        return np.linalg.eigvals(core.numpy())
    raise ValueError(f"unknown route: {route!r}")


_FORM_W = ("W with an extra axis, W[None]", "W as a Python list of rows, one row at a time", "W in numpy (float64)",
           "W in numpy (float32)", "a hand-written power iteration on W")
_EIGEN = ("torch.linalg.eig of the core", "torch.linalg.eigvalsh of the core", "numpy.linalg.eigvals of the core")


def rule_evasions(reference: Callable[..., Any], *, eigen: bool) -> list[Mutant]:
    """Class "rule evasion": `reference`'s own numbers, computed while `W` is formed (and held) by
    each route of `_FORM_W`, or, with `eigen`, while an eigen-solver runs (`_EIGEN`). Each must be
    rejected by the rule, whatever its values (`rule=True`)."""

    def evading(route: str) -> Callable[..., Any]:
        def fn(W_Q: Tensor, W_K: Tensor) -> Any:
            held = _w_by_route(route, W_Q, W_K)
            out = reference(W_Q, W_K)
            del held
            return out
        return fn

    routes = _FORM_W + (_EIGEN if eigen else ())
    return [Mutant(f"rule evasion: {route}, right values", evading(route), rule=True) for route in routes]


def _dense_moments_numpy(W_Q: Tensor, W_K: Tensor) -> Any:
    W = W_Q.numpy() @ np.swapaxes(W_K.numpy(), -1, -2)
    d = W.shape[-1]
    return np.stack([np.trace(W, axis1=-2, axis2=-1) / d, np.trace(W @ W, axis1=-2, axis2=-1) / d], axis=-1)


def _eig_moments(lam: Any, d: int) -> Tensor:
    lam = torch.as_tensor(lam)
    return torch.stack([lam.sum(-1).real / d, (lam**2).sum(-1).real / d], dim=-1)


def _dense_symmetric_penalty_numpy(W_Q: Tensor, W_K: Tensor) -> Any:
    """10.2's penalty with W formed in numpy: the right values, against the statement's rule."""
    W = W_Q.numpy() @ np.swapaxes(W_K.numpy(), -1, -2)
    d = W.shape[-1]
    m = np.trace(W, axis1=-2, axis2=-1) / d
    S = (W + np.swapaxes(W, -1, -2)) / 2
    return (S**2).sum((-2, -1)) / d - m**2


def _dense_symmetric_penalty_torch(W_Q: Tensor, W_K: Tensor) -> Tensor:
    """10.2's penalty with W formed in torch: the right values, against the statement's rule."""
    W = W_Q @ W_K.transpose(-2, -1)
    d = W.shape[-1]
    m = torch.diagonal(W, dim1=-2, dim2=-1).sum(-1) / d
    return ((W + W.transpose(-2, -1)) / 2).pow(2).sum((-2, -1)) / d - m**2


SPECS_CH6 = [
    lambda: Spec("ex-core-eigenvalues", "6.2", cs.check_core_eigenvalues, cs.core_eigenvalues_reference,
                 lambda: _heads([(7, 3), (2, 6, 2), (4, 4), (5, 1)], 600)
                 + [Case("probe", (torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=f64),
                                   torch.tensor([[0.0, 2.0], [-2.0, 0.0], [0.0, 0.0]], dtype=f64)))],
                 sizes=lambda W_Q, W_K: (W_Q.shape[-2], W_Q.shape[-1]), core_ndim=(2, 2), agree=_eig_agree,
                 extra=lambda: [
                     Mutant("the real parts only (.real)", lambda W_Q, W_K: cs.core_eigenvalues_reference(W_Q, W_K).real),
                     Mutant("the complex conjugates", lambda W_Q, W_K: cs.core_eigenvalues_reference(W_Q, W_K).conj()),
                 ],
                 reasons={"reverse the last axis": "the eigenvalues are a set: their order does not matter",
                          "roll the last axis by one (an index off by one)": "the eigenvalues are a set: their order does not matter",
                          "the complex conjugates": "the spectrum of a real matrix is closed under conjugation: the same set"}),
    lambda: Spec("ex-trace-moments", "6.3", cs.check_spectrum_moments, cs.spectrum_moments_reference,
                 lambda: _heads([(9, 3), (2, 8, 2), (5, 5), (6, 1)], 610),
                 sizes=lambda W_Q, W_K: (W_Q.shape[-2], W_Q.shape[-1]), core_ndim=(2, 2),
                 extra=lambda: [
                     Mutant("right values, W formed in torch (against the rule)",
                            lambda W_Q, W_K: (lambda W: torch.stack([torch.diagonal(W, dim1=-2, dim2=-1).sum(-1) / W.shape[-1],
                                                                      torch.diagonal(W @ W, dim1=-2, dim2=-1).sum(-1) / W.shape[-1]], -1))(
                                W_Q @ W_K.transpose(-2, -1)), rule=True),
                     Mutant("right values, W formed in numpy (against the rule)", _dense_moments_numpy, rule=True),
                     Mutant("right values, eigenvalues of the core by torch (against the rule)",
                            lambda W_Q, W_K: _eig_moments(torch.linalg.eigvals(W_K.transpose(-2, -1) @ W_Q), W_Q.shape[-2]), rule=True),
                     Mutant("right values, eigenvalues of the core by numpy (against the rule)",
                            lambda W_Q, W_K: _eig_moments(np.linalg.eigvals(np.swapaxes(W_K.numpy(), -1, -2) @ W_Q.numpy()), W_Q.shape[-2]),
                            rule=True),
                     *rule_evasions(cs.spectrum_moments_reference, eigen=True),
                     Mutant("tr(W^2) with the antisymmetric part's sign flipped (||W||_F^2)",
                            lambda W_Q, W_K: torch.stack([(W_Q * W_K).sum((-2, -1)) / W_Q.shape[-2],
                                                          ((W_Q.mT @ W_Q) * (W_K.mT @ W_K)).sum((-2, -1)) / W_Q.shape[-2]], -1)),
                 ]),
]


# --- chapter 7 -------------------------------------------------------------------------------------------

def _sparsemax_probes() -> list[Case]:
    very_negative = torch.tensor([[-2e4, float("-inf"), -2e4 + 1.0], [-3e4, -3e4 + 0.5, float("-inf")]], dtype=f64)
    return [Case("probe", (g((5,), 700),)), Case("probe", (g((3, 7), 701, 0.2),)), Case("probe", (g((2, 2, 5), 702, 3.0),)),
            Case("probe", (torch.tensor([[0.3, float("-inf"), 0.1, -0.2]], dtype=f64),)), Case("probe", (very_negative,))]


def _general_probes() -> list[Case]:
    pos = g((5, 5), 730, 0.4) + 0.5 * torch.eye(5, dtype=f64)
    neg = g((6, 6), 731, 0.4) - 0.6 * torch.eye(6, dtype=f64)
    skew = g((4, 4), 732)
    return [Case("probe", (pos, 7)), Case("probe", (neg, 5)), Case("probe", (skew - skew.T - 0.3 * torch.eye(4, dtype=f64), 9)),
            Case("probe", (torch.tensor([[-1.5]], dtype=f64), 3))]


SPECS_CH7 = [
    lambda: Spec("ex-predicted-snr", "7.1", cl.check_predicted_snr, lambda m, s, d, T: predicted_snr(m, s, d, T, tokens="random_walk"),
                 lambda: [Case("probe", (0.8, 0.3, 20, 6)), Case("probe", (-0.5, 1.0, 12, 9)), Case("probe", (0.2, 0.05, 100, 3)),
                          Case("probe", (1.0, 0.0, 4, 2))],
                 sizes=lambda m, s, d, T: (d, T), dtype=torch.float64),  # "returning the float64 tensor"
    lambda: Spec("ex-sparsemax", "7.2", cl.check_sparsemax, lambda z: sparsemax(z, dim=-1), _sparsemax_probes,
                 sizes=lambda z: (z.shape[-1], z.shape[-1]), core_ndim=(1,),
                 extra=lambda: [Mutant("-inf read as -1e4", lambda z: sparsemax(z.nan_to_num(neginf=-1e4), dim=-1))],
                 reasons={"abs of the output": "probabilities are non-negative"}),
    lambda: Spec("ex-general-snr", "7.3", csnr.check_general_snr, predicted_snr_general, _general_probes,
                 sizes=lambda W, T: (W.shape[-1], T), core_ndim=(2,), batched=False, dtype=torch.float64,
                 reasons={"transpose input 1": "tr W, tr(W^2) and ||W||_F^2 are the same for W^T: the SNR is too"},
                 extra=lambda: [Mutant("|tr W| (the sign lost)", lambda W, T: predicted_snr_general(W, T).abs()),
                                Mutant("rule evasion: torch.linalg.eigvalsh of W_sym, right values",
                                       lambda W, T: (torch.linalg.eigvalsh((W + W.mT) / 2), predicted_snr_general(W, T))[1], rule=True),
                                Mutant("rule evasion: numpy.linalg.eigvals of W, right values",
                                       lambda W, T: (np.linalg.eigvals(W.numpy()), predicted_snr_general(W, T))[1], rule=True),
                                Mutant("the cross-term variance with tr(W^2) instead of ||W||_F^2",
                                       lambda W, T: (lambda tau: tau * torch.trace(W) / (tau**2 * (torch.trace(W @ W) + (W * W).sum())
                                                                                       + tau * (T - tau) * torch.trace(W @ W)).abs().sqrt())(
                                           torch.arange(1, T + 1, dtype=f64)))]),
]


# --- chapter 8 --------------------------------------------------------------------------------------------

SPECS_CH8 = [
    lambda: Spec("ex-localization", "8.1", cc.check_localization, localization,
                 lambda: [Case("probe", (pattern(g((8, 8), 830, 2.0)),), {"window": 2}),
                          Case("probe", (pattern(g((2, 6, 6), 831, 2.0), causal=True),), {"window": 1, "causal": True}),
                          Case("probe", (pattern(g((9, 9), 832, 3.0)),), {"window": 3})],
                 sizes=lambda A, window=1, causal=False: (A.shape[-1], A.shape[-1]), core_ndim=(2,),
                 reasons={"abs of the output": "a localization ratio is non-negative"}),
]


# --- chapter 9 ---------------------------------------------------------------------------------------------

SPECS_CH9 = [
    lambda: Spec("ex-mimetic-kappa", "9.1", ch.check_mimetic_kappa, ch.mimetic_kappa_reference,
                 lambda: [Case("probe", (_t(0.3, 1.2, 5.0), _t(0.8))), Case("probe", (_t(-1.0, 2.0), _t(0.1, 3.0))),
                          Case("probe", (_t(0.0), _t(1.0)))],
                 sizes=lambda a, b: (64.0, 64.0)),
    lambda: Spec("ex-head-stats", "9.2", ch.check_head_stats, ch.head_stats_reference,
                 lambda: _heads([(10, 3), (2, 6, 2), (5, 5)], 900)
                 + [Case("probe", (g((8, 2), 910), -g((8, 2), 910)))],  # a negative mean
                 sizes=lambda W_Q, W_K: (W_Q.shape[-2], W_Q.shape[-1]), core_ndim=(2, 2)),
]


# --- chapter 10 ---------------------------------------------------------------------------------------------

def _by_ppl(e: Tensor, p: Tensor, h: float) -> Tensor:
    """Read the curve with the points sorted by perplexity (np.interp needs increasing x: a wrong order)."""
    order = p.argsort()
    return torch.tensor(float(np.interp(h, e[order].numpy(), p[order].numpy())), dtype=f64) \
        if float(e.min()) <= h <= float(e.max()) else torch.tensor(float("nan"), dtype=f64)


def _extrapolated(e: Tensor, p: Tensor, h: float) -> Tensor:
    """The end segments extended beyond the range instead of NaN."""
    order = e.argsort()
    e, p = e[order], p[order]
    if float(e[0]) <= h <= float(e[-1]):
        return value_at(e, p, h)
    i = 0 if h < float(e[0]) else -2
    return p[i] + (p[i + 1] - p[i]) * (h - e[i]) / (e[i + 1] - e[i])


def _matched_probes() -> list[Case]:
    e, p = _t(2.4, 0.9, 1.7, 3.1), _t(7.0, 9.2, 8.1, 6.5)
    return [Case("probe", (e, p, 2.0)), Case("probe", (e, p, 1.0)), Case("probe", (e, p, 3.05)), Case("probe", (e, p, 0.2)),
            Case("probe", (_t(0.5, 1.5, 1.0), _t(4.0, 6.0, 5.5), 1.2))]


SPECS_CH10 = [
    lambda: Spec("ex-matched-entropy", "10.3", cmat.check_ppl_at_entropy, value_at, _matched_probes,
                 sizes=lambda e, p, h: (e.shape[-1], e.shape[-1]), core_ndim=(1, 1), batched=False,
                 extra=lambda: [Mutant("the points sorted by perplexity instead of entropy",
                                       _by_ppl),
                                Mutant("the line extended outside the points' range instead of NaN", _extrapolated),
                                Mutant("regime: NaN at the end points too (a strict inequality)", _matched_strict_ends)],
                 numpy_inputs=True,  # "tensors or arrays"
                 reasons={"abs of the output": "a perplexity is positive"}),
    lambda: Spec("ex-symmetric-penalty", "10.2", cp.check_symmetric_penalty, cp.symmetric_penalty_reference,
                 lambda: _heads([(9, 3), (2, 7, 2), (5, 5)], 1010),
                 sizes=lambda W_Q, W_K: (W_Q.shape[-2], W_Q.shape[-1]), core_ndim=(2, 2),
                 reasons={"abs of the output": "||W_sym||_F^2/d - m^2 is the variance of the real eigenvalues of W_sym: never negative"},
                 extra=lambda: [Mutant("right values, W formed in torch (against the rule)", _dense_symmetric_penalty_torch, rule=True),
                                Mutant("right values, W formed in numpy (against the rule)", _dense_symmetric_penalty_numpy, rule=True),
                                *rule_evasions(cp.symmetric_penalty_reference, eigen=False)]),
]


# --- chapter 11 -----------------------------------------------------------------------------------------------

def _induction_probe(shape: tuple[int, ...], vocab: int, seed: int, tokens_shape: tuple[int, ...] | None = None) -> Case:
    T = shape[-1]
    tokens = torch.randint(0, vocab, tokens_shape or (*shape[:-2], T), generator=torch.Generator().manual_seed(seed))
    return Case("probe", (pattern(g(shape, seed, 2.0), causal=True), tokens))


def _induction_task_probe(batch: int, T: int, seed: int) -> Case:
    x, _ = InductionTask(vocab_size=8).batch("train", batch, T, torch.Generator().manual_seed(seed))  # (batch, T) token ids
    return Case("probe", (pattern(g((batch, T, T), seed, 2.0), causal=True), x))


SPECS_CH11 = [
    lambda: Spec("ex-induction-score", "11.1", cind.check_induction_score, induction_score,
                 lambda: [_induction_probe((12, 12), 3, 1100), _induction_probe((2, 9, 9), 4, 1101),
                          _induction_probe((2, 3, 10, 10), 5, 1102, (2, 1, 10)), _induction_task_probe(3, 16, 1103),
                          _induction_task_probe(2, 11, 1104)],
                 sizes=lambda A, tokens: (A.shape[-1], A.shape[-1]), core_ndim=(2, 1),
                 extra=lambda: [Mutant("the second half started one query early (i >= T/2 - 1)",
                                       cind._variant(start=lambda T: T // 2 - 1)),
                                Mutant("the mass on every earlier occurrence and the key after it",
                                       lambda A, tok: cind._variant(shift=0)(A, tok) + induction_score(A, tok))],
                 reasons={"abs of the output": "an attention mass is non-negative"}),
]


# --- the predictions (values) --------------------------------------------------------------------------------

def _uniform_causal_residual(T: int) -> float:
    A = pattern(torch.zeros(T, T, dtype=f64), causal=True)
    return float(token_residual(A))


POSITIVE = "the value is positive: abs changes nothing"
INTEGER = "the value is an integer: rounding changes nothing"

SPECS_VALUES = [
    lambda: Spec("ex-uniform-entropy", "0", lambda v: ci.check_uniform_entropy(*v, T=8), (math.log(8),),
                 value_at=lambda k: (math.log(8 + k),), value_sizes=(8, 8), reasons={"abs": POSITIVE}),
    lambda: Spec("ex-count", "1.1", lambda v: ca.check_qk_counts(*v, d=64, d_h=16), (2048, 4096, 1792),
                 value_at=lambda k: tuple(ca.qk_counts(64, 16 + k).values()), value_sizes=(64, 16),
                 reasons={"the size off by +1 (value 2)": "the entries of W_QK (d^2) do not depend on d_h, the size changed here",
                          "the size off by -1 (value 2)": "the entries of W_QK (d^2) do not depend on d_h, the size changed here"} | {f"{w} (value {i})": why for i in (1, 2, 3) for w, why in (("abs", POSITIVE), ("rounded to an integer", INTEGER))}),
    lambda: Spec("ex-causal-ratio", "2.1", lambda v: cm.check_causal_uniform_ratio(*v, T=8), (cm.causal_uniform_ratio(8),),
                 value_at=lambda k: (cm.causal_uniform_ratio(8 + k),), value_sizes=(8, 8), reasons={"abs": POSITIVE}),
    lambda: Spec("ex-uniform-causal", "3.1", lambda v: cc.check_uniform_causal_residual(*v), (_uniform_causal_residual(3),),
                 value_at=lambda k: (_uniform_causal_residual(3 + k),), value_sizes=(3, 3), reasons={"abs": POSITIVE}),
    lambda: Spec("ex-causal-max-entropy", "4.1", lambda v: ce.check_causal_max_entropy(*v, T=32), (ce.causal_max_entropy(32),),
                 value_at=lambda k: (ce.causal_max_entropy(32 + k),), value_sizes=(32, 32), reasons={"abs": POSITIVE}),
    lambda: Spec("ex-zero-eigenvalues", "6.1", lambda v: cs.check_zero_counts(*v), (36, 40),
                 value_at=lambda k: (36 + k, 40 + k), value_sizes=(48, 48),
                 reasons={f"{w} (value {i})": why for i in (1, 2) for w, why in (("abs", POSITIVE), ("rounded to an integer", INTEGER))}),
    lambda: Spec("ex-predict-regions", "8.2", lambda v: creg.check_region_predictions(list(v)), creg.measured_regions(),
                 value_sizes=(64, 64),
                 extra=lambda: [Mutant(f"head {i + 1} predicted {c} instead", tuple(c if j == i else t for j, t in enumerate(creg.measured_regions())))
                                for i in range(6) for c in range(4) if c != creg.measured_regions()[i]],
                 reasons={f"{w} (value {i})": why for i in range(1, 7) for w, why in
                          (("abs", "a code is non-negative"), ("rounded to an integer", "a code is an integer"))}),
    lambda: Spec("ex-own-key-bias", "8.3", lambda v: cown.check_own_key_bias(*v), (math.exp(cown.OWN_KEY_R**2 / 2),),
                 value_sizes=(64, 64), value_rtol=cown.OWN_KEY_RTOL,
                 extra=lambda: [Mutant("e^(r^2/4) (the variances halved)", (math.exp(cown.OWN_KEY_R**2 / 4),)),
                                Mutant("2 (the ratio of the variances)", (2.0,))],
                 reasons={"scale by n/(n-1)": "T/(T - 1) = 64/63 moves the prediction by 1.6 %, inside the 5 % the "
                                              "approximation's own error and the measurement's scatter need",
                          "abs": POSITIVE}),
    lambda: Spec("ex-unsafe-value", "10.1", lambda v: cp.check_unsafe_value(*v), (-4.5,),
                 value_at=lambda k: (-18.0 / (4 + k),), value_sizes=(4, 4)),
]

_ORDER = ["0", "1.1", "1.2", "2.1", "2.2", "2.3", "2.4", "3.1", "3.2", "3.3", "3.4", "4.1", "4.2", "4.3", "5.1", "5.2",
          "6.1", "6.2", "6.3", "7.1", "7.2", "7.3", "8.1", "8.2", "8.3", "9.1", "9.2", "10.1", "10.2", "10.3", "11.1"]

_ALL = [_pattern_spec(), *(f() for f in (*SPECS_CH2, *SPECS_CH3, *SPECS_CH4, *SPECS_CH5, *SPECS_CH6, *SPECS_CH7, *SPECS_CH8,
                                       *SPECS_CH9, *SPECS_CH10, *SPECS_CH11, *SPECS_VALUES))]
SPECS: list[Spec] = sorted(_ALL, key=lambda s: _ORDER.index(s.number))
