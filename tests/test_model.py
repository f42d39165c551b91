"""qklab.model: shapes, the two attention paths, the per-head views against the real logits."""

import math

import pytest
import torch
import torch.nn.functional as F

from qklab.attention import attn_scores, pattern
from qklab.model import ModelConfig, Transformer, mimetic_report


def tiny(**kw):
    base = dict(vocab_size=11, d_model=16, n_heads=2, n_layers=2, seq_len=8)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("norm", ["pre", "post", "none"])
@pytest.mark.parametrize("residual,mlp", [(True, True), (False, True), (True, False)])
def test_forward_backward(norm, residual, mlp):
    model = Transformer(tiny(norm=norm, residual=residual, mlp=mlp), seed=0)
    idx = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(0))
    logits = model(idx)
    assert logits.shape == (3, 8, 11)
    loss = model.loss(idx, idx)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("sigma", [False, True])
@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "none"])
def test_fast_path_equals_exact_path(sigma, positional):
    model = Transformer(tiny(sigma_reparam=sigma, positional=positional), seed=1).double()
    idx = torch.randint(0, 11, (4, 8), generator=torch.Generator().manual_seed(1))
    fast = model(idx)
    exact, rec = model.run_with_attention(idx)
    assert torch.allclose(fast, exact, atol=1e-10)
    assert len(rec) == 2 and rec[0]["pattern"].shape == (4, 2, 8, 8)
    # the exact pattern is the causal softmax of the exact scores (independent implementation)
    for r in rec:
        assert torch.allclose(r["pattern"], pattern(r["attn_scores"], causal=True), atol=1e-12)


def test_head_views_match_model_logits():
    """score_ij = x_i^T W_Q W_K^T x_j / sqrt(d_h), with W_Q, W_K the per-head views."""
    model = Transformer(tiny(d_model=12, n_heads=3, d_head=3), seed=2).double()
    idx = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(2))
    _, rec = model.run_with_attention(idx)
    for layer, r in enumerate(rec):
        a = model.blocks[layer].attn
        assert a.W_Q.shape == (3, 12, 3) and a.W_O.shape == (3, 3, 12)
        S = attn_scores(r["X"], a.W_Q, a.W_K)  # (B, H, T, T), the package's reference
        assert torch.allclose(S, r["attn_scores"], atol=1e-12)
        X = r["X"]
        W = model.qk(layer).matrix  # (H, d, d)
        manual = torch.einsum("bid,hde,bje->bhij", X, W, X) / math.sqrt(3)
        assert torch.allclose(manual, r["attn_scores"], atol=1e-12)
    assert model.W_Q.shape == (2, 3, 12, 3)


def test_value_output_views_reproduce_attention_output():
    model = Transformer(tiny(), seed=3).double()
    a = model.blocks[0].attn
    x = torch.randn(2, 8, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out, _, A = a.forward_exact(x)
    V = torch.einsum("btd,hde->bhte", x, a.W_V)  # (B, H, T, d_h)
    manual = torch.einsum("bhij,bhje,hef->bif", A, V, a.W_O)
    assert torch.allclose(out, manual, atol=1e-12)
    assert torch.allclose(a(x), out, atol=1e-12)


def test_seeded_init_is_reproducible_and_leaves_global_rng():
    state = torch.get_rng_state()
    m1, m2 = Transformer(tiny(), seed=5), Transformer(tiny(), seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)


def test_mimetic_init_full_rank_hits_target():
    model = Transformer(tiny(n_heads=1, n_layers=1, init="mimetic"), seed=0)
    rep = mimetic_report(model)
    assert rep[0]["relative_error"] < 1e-5
    assert rep[0]["realised_mean"] == pytest.approx(rep[0]["target_mean"], abs=1e-5)


def test_mimetic_init_truncation_is_reported():
    model = Transformer(tiny(n_heads=4, init="mimetic"), seed=0)  # d_h = 4 < d = 16
    rep = mimetic_report(model)
    assert len(rep) == 2 * 4
    for r in rep:
        assert r["relative_error"] > 0.1  # rank-4 cannot hold alpha I + beta Z
        with torch.no_grad():
            lam = torch.linalg.eigvals(model.qk(r["layer"]).matrix[r["head"]].double())
        assert r["realised_mean"] == pytest.approx(float(lam.real.mean()), abs=1e-4)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(d_model=10, n_heads=3), "does not divide"),
        (dict(d_head=32), "exceeds d_model"),
        (dict(norm="middle"), "norm"),
        (dict(positional="rope"), "positional"),
        (dict(dropout=1.5), "dropout"),
        (dict(n_heads=0), "positive"),
    ],
)
def test_bad_configs(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)


def test_vocab_none_and_long_sequence_errors():
    with pytest.raises(ValueError, match="vocab_size"):
        Transformer(ModelConfig())
    model = Transformer(tiny(), seed=0)
    with pytest.raises(ValueError, match="seq_len"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 4))


# --- fairseq options and the paper preset (chapter 10) ------------------------------------------

def test_default_init_draws_as_before():
    """Defaults keep the GPT-2 init: the token embedding is the generator's first N(0, 0.02^2) draw."""
    cfg = tiny(n_layers=1)
    model = Transformer(cfg, seed=3)
    g = torch.Generator().manual_seed(3)
    expected = torch.empty(11, 16).normal_(0.0, 0.02, generator=g)
    assert torch.equal(model.tok_emb.detach(), expected)
    assert cfg.weights == "gpt2" and not cfg.embed_scale and cfg.activation == "gelu"


def test_paper_preset_fields():
    cfg = ModelConfig.paper_locater(vocab_size=50)
    assert (cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.mlp_dim, cfg.norm) == (128, 1, 1, 128, "post")
    assert cfg.embed_scale and cfg.weights == "fairseq" and cfg.activation == "relu"
    assert cfg.dropout == 0.1 and cfg.attn_dropout == 0.0 and cfg.positional == "sinusoidal_fairseq"
    assert ModelConfig(dropout=0.2).attn_dropout == 0.2  # None: follows dropout, as before


def test_fairseq_init_statistics():
    d = 128
    model = Transformer(ModelConfig.paper_locater(vocab_size=500), seed=0)
    emb = model.tok_emb.detach()
    assert abs(emb.std().item() - d**-0.5) < 0.05 * d**-0.5  # N(0, 1/d)
    a = model.blocks[0].attn
    bound_qkv = (1 / math.sqrt(2)) * math.sqrt(6 / (2 * d))  # Xavier-uniform, gain 1/sqrt(2)
    for W in a.W_qkv.detach().split(d, dim=0):
        assert W.abs().max() <= bound_qkv
        assert abs(W.var().item() - bound_qkv**2 / 3) < 0.05 * bound_qkv**2 / 3  # var of U(-b, b) is b^2/3
    assert a.W_out.abs().max() <= math.sqrt(6 / (2 * d))
    mlp = model.blocks[0].mlp
    assert mlp.W_in.abs().max() <= 1 / math.sqrt(d) and mlp.b_in.abs().max() <= 1 / math.sqrt(d)
    assert mlp.b_in.abs().max() > 0  # nn.Linear's default bias is random, not zero


def test_embed_scale_and_fairseq_positions():
    cfg = ModelConfig.paper_locater(vocab_size=20, d_model=8, d_mlp=8, seq_len=5, dropout=0.0)
    model = Transformer(cfg, seed=0)
    idx = torch.tensor([[3, 1, 4, 1, 5]])
    x = model._embed(idx)[0]
    # fairseq: [sin(p w) | cos(p w)], w_i = 10000^(-i / (d/2 - 1)), positions p = 2, 3, ...
    pe = torch.zeros(5, 8)
    for t in range(5):
        for i in range(4):
            w = 10000 ** (-i / 3)
            pe[t, i], pe[t, 4 + i] = math.sin((t + 2) * w), math.cos((t + 2) * w)
    assert torch.allclose(x, math.sqrt(8) * model.tok_emb.detach()[idx[0]] + pe, atol=1e-5)


def test_relu_activation():
    model = Transformer(tiny(activation="relu", n_layers=1), seed=0).double()
    mlp = model.blocks[0].mlp
    x = torch.randn(2, 3, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    manual = torch.clamp(x @ mlp.W_in.T + mlp.b_in, min=0) @ mlp.W_out.T + mlp.b_out
    assert torch.allclose(mlp(x), manual)


@pytest.mark.parametrize("kw", [dict(weights="xavier"), dict(activation="tanh"), dict(attention_dropout=1.0),
                                dict(positional="rotary")])
def test_bad_fairseq_options(kw):
    with pytest.raises(ValueError, match=list(kw)[0]):
        tiny(**kw)


def test_paper_preset_fast_equals_exact_and_mimetic_on_top():
    cfg = ModelConfig.paper_locater(vocab_size=30, d_model=16, d_mlp=16, seq_len=8, dropout=0.0, init="mimetic")
    model = Transformer(cfg, seed=1).double().eval()
    idx = torch.randint(0, 30, (2, 8), generator=torch.Generator().manual_seed(1))
    fast = model(idx)
    exact, _ = model.run_with_attention(idx)
    assert torch.allclose(fast, exact, atol=1e-10)
    rep = mimetic_report(model)[0]
    assert rep["relative_error"] < 1e-5 and abs(rep["realised_mean"] - 0.7) < 0.3
