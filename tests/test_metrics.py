"""qklab.metrics on patterns and tokens whose answers are known in closed form."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qklab.attention import pattern
from qklab.metrics import (
    attention_entropy,
    diagonal_mass,
    effective_rank,
    stable_rank,
    support_size,
    token_cosine,
    token_residual,
)


@pytest.mark.parametrize("T", [1, 2, 7, 64])
def test_uniform_rows_have_entropy_log_T(T):
    A = torch.full((3, T, T), 1.0 / T, dtype=torch.float64)
    assert float(attention_entropy(A)) == pytest.approx(math.log(T), abs=1e-12)


def test_one_hot_rows_have_zero_entropy_and_support_one():
    A = torch.eye(5, dtype=torch.float64)
    assert float(attention_entropy(A)) == 0.0
    assert torch.all(support_size(A) == 1)
    assert float(diagonal_mass(A)) == 1.0


def test_entropy_against_direct_sum_and_zhai_eps():
    A = pattern(torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    direct = -(A * A.log()).sum(-1)
    torch.testing.assert_close(attention_entropy(A, reduce="none"), direct)
    zhai = -(A * torch.log(A + 1e-6)).sum(-1).mean()
    torch.testing.assert_close(attention_entropy(A, eps=1e-6), zhai)
    torch.testing.assert_close(attention_entropy(A, reduce="per_head"), direct.mean(dim=(0, 2)))
    torch.testing.assert_close(attention_entropy(A, reduce="min_head"), direct.mean(dim=(0, 2)).min())


def test_entropy_normalisations():
    T = 6
    causal_uniform = torch.tril(torch.ones(T, T, dtype=torch.float64))
    causal_uniform = causal_uniform / causal_uniform.sum(-1, keepdim=True)
    torch.testing.assert_close(attention_entropy(causal_uniform, normalize="causal", reduce="none"), torch.ones(T - 1, dtype=torch.float64))
    uniform = torch.full((T, T), 1 / T, dtype=torch.float64)
    assert float(attention_entropy(uniform, normalize="log_T")) == pytest.approx(1.0)


def test_pattern_validation_catches_scores():
    with pytest.raises(ValueError, match="instead of the pattern"):
        attention_entropy(torch.rand(4, 4) + 0.5)
    with pytest.raises(ValueError, match="negative"):
        attention_entropy(torch.tensor([[1.5, -0.5]]))
    with pytest.raises(ValueError, match="reduce"):
        attention_entropy(torch.eye(3), reduce="max")
    with pytest.raises(ValueError, match="head dimension"):
        attention_entropy(torch.eye(3)[0], reduce="per_head")


@settings(max_examples=30, deadline=None)
@given(T=st.integers(2, 10), seed=st.integers(0, 1000), temp=st.floats(0.05, 20))
def test_entropy_between_zero_and_log_T(T, seed, temp):
    A = pattern(torch.randn(T, T, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) / temp)
    H = attention_entropy(A, reduce="none")
    assert torch.all(H >= -1e-12) and torch.all(H <= math.log(T) + 1e-12)


def test_residual_of_identical_tokens_is_zero_and_scale_invariant():
    row = torch.randn(1, 8, dtype=torch.float64)
    X = row.repeat(5, 1)
    assert float(token_residual(X)) == pytest.approx(0.0, abs=1e-12)
    assert float(token_residual(X, norm="fro")) == pytest.approx(0.0, abs=1e-12)
    Y = torch.randn(5, 8, dtype=torch.float64)
    assert float(token_residual(3.0 * Y)) == pytest.approx(float(token_residual(Y)))


def test_residual_against_hand_computation():
    X = torch.tensor([[1.0, 0.0], [-1.0, 2.0]], dtype=torch.float64)
    R = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)  # X minus the token mean (0, 1)
    l1 = lambda M: M.abs().sum(0).max()  # noqa: E731
    linf = lambda M: M.abs().sum(1).max()  # noqa: E731
    expected = math.sqrt(l1(R) * linf(R)) / math.sqrt(l1(X) * linf(X))
    assert float(token_residual(X)) == pytest.approx(expected)
    assert float(token_residual(X, norm="fro")) == pytest.approx(2.0 / math.sqrt(6.0))
    assert float(token_residual(X, relative=False, norm="fro")) == pytest.approx(2.0)


def test_uniform_attention_collapses_tokens_in_one_layer():
    X = torch.randn(16, 8, dtype=torch.float64)
    out = torch.full((16, 16), 1 / 16, dtype=torch.float64) @ X
    assert float(token_residual(out)) < 1e-12


def test_cosine_and_ranks_on_known_matrices():
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    # pairs: (0,1)=0, (0,2)=-1, (1,2)=0 -> mean -1/3
    assert float(token_cosine(X)) == pytest.approx(-1 / 3)
    assert float(token_cosine(torch.ones(4, 3))) == pytest.approx(1.0)
    assert float(effective_rank(torch.eye(4))) == pytest.approx(4.0)
    assert float(effective_rank(torch.ones(4, 3))) == pytest.approx(1.0)
    assert float(stable_rank(torch.eye(4))) == pytest.approx(4.0)
    D = torch.diag(torch.tensor([2.0, 1.0]))
    assert float(stable_rank(D)) == pytest.approx(5 / 4)


def test_token_metric_errors():
    with pytest.raises(ValueError, match="at least 2 tokens"):
        token_cosine(torch.randn(1, 4))
    with pytest.raises(ValueError, match="zero token"):
        token_cosine(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="0/0"):
        token_residual(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="undefined"):
        stable_rank(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="norm must be"):
        token_residual(torch.randn(3, 3), norm="l2")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        token_residual(torch.randn(3))


# --- induction_score (chapter 11) -------------------------------------------------------------------

def _induction_score_loop(A, tokens):
    """Brute force, one query at a time: the mass on the keys right after earlier occurrences."""
    T = len(tokens)
    rows = []
    for i in range(T // 2, T):
        targets = {j + 1 for j in range(i) if tokens[j] == tokens[i]}
        if targets:
            rows.append(sum(float(A[i, k]) for k in targets))
    return sum(rows) / len(rows) if rows else float("nan")


def test_induction_score_against_a_loop_batched_and_broadcast_over_heads():
    from qklab.metrics import induction_score

    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 4, (2, 11), generator=g)  # a small vocabulary: many repeats, in both halves
    logits = torch.randn(2, 3, 11, 11, generator=g, dtype=torch.float64)
    A = torch.softmax(logits.masked_fill(torch.ones(11, 11).triu(1).bool(), float("-inf")), dim=-1)  # (2, 3, 11, 11)
    got = induction_score(A, tokens[:, None])  # (2, 3): tokens shared by the heads
    assert got.shape == (2, 3)
    for b in range(2):
        for h in range(3):
            assert float(got[b, h]) == pytest.approx(_induction_score_loop(A[b, h], tokens[b].tolist()), rel=1e-12)


def test_induction_score_of_a_perfect_head_and_bad_input():
    from qklab.metrics import induction_score

    tokens = torch.tensor([5, 2, 7, 1, 5, 2, 7, 1])
    A = torch.zeros(8, 8, dtype=torch.float64)
    A[torch.arange(8), torch.tensor([0, 0, 0, 0, 1, 2, 3, 4])] = 1.0  # from the repeat on: the key after the first occurrence
    assert float(induction_score(A, tokens)) == 1.0
    assert math.isnan(float(induction_score(A, torch.arange(8))))  # no repeated token: nothing to count
    with pytest.raises(TypeError, match="integer"):
        induction_score(A, tokens.double())
    with pytest.raises(ValueError, match="positions"):
        induction_score(A, tokens[:7])
