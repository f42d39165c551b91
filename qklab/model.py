"""A small causal transformer whose query-key matrices are first-class objects (chapters 4, 9, 10).

What is here:

- `ModelConfig`, a dataclass with documented defaults (why each default is what it is);
- `Transformer`, a nanoGPT-like causal language model built from it, with

  - per-head views `W_Q`, `W_K`, `W_V` of shape `(n_heads, d, d_h)` and `W_O` of shape
    `(n_heads, d_h, d)` for every layer, in the course's convention
    `score_ij = x_i^T W_Q W_K^T x_j / sqrt(d_h)` (`x_i` the *input of the attention layer*,
    i.e. after the layer norm for pre-LN), and `model.qk(layer)` returning a `qklab.spectrum.QK`;
  - two attention paths with the same numbers: a fast path (fused QKV projection and
    `torch.nn.functional.scaled_dot_product_attention`) used for training, and an exact path
    (`model.run_with_attention`) that writes out the scores `S` and the pattern `A` for every
    layer and head;
  - two weight initialisations (`ModelConfig.weights`): "gpt2" (the default: normal with std
    0.02) and "fairseq" (what fairseq's `transformer_lm` does, read from its source: embeddings
    normal with std `d^-1/2`, query/key/value projections Xavier-uniform with gain `1/sqrt(2)`,
    attention output projection Xavier-uniform, feed-forward layers PyTorch's `nn.Linear`
    default, an untied output layer normal with std `d^-1/2`); on top of either, mimetic
    initialisation of the query-key matrices (Trockman and Kolter 2023, `init="mimetic"`): every
    head's `W_Q W_K^T` is set near `alpha I + beta Z`; `mimetic_report` says what spectrum was
    actually realised, since a head can only hold the best rank-`d_h` approximation of that target;
  - the other pieces of fairseq's language model as options: token embeddings multiplied by
    `sqrt(d)` (`embed_scale`), fairseq's sinusoidal positions (`positional="sinusoidal_fairseq"`),
    ReLU feed-forward (`activation`), a separate attention-pattern dropout (`attention_dropout`);
    `ModelConfig.paper_locater()` puts them together as "the paper's model" of chapter 10;

- sigma-Reparam of the query and key projections (Zhai et al. 2023) when
  `ModelConfig(sigma_reparam=True)`; the reparametrisation itself is `qklab.regularizers.SigmaReparam`.

What is not here: training (`qklab.train`), penalties (`qklab.regularizers`), data (`qklab.data`).

The attention projections have no bias, so that the scores are exactly the bilinear form of
chapter 1 and `W_QK` is the whole story of the pattern.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qklab.regularizers import SigmaReparam
from qklab.spectrum import QK, factor_qk

__all__ = ["ModelConfig", "Transformer", "Block", "Attention", "mimetic_report", "NORMS", "POSITIONALS", "INITS"]

NORMS = ("pre", "post", "none")
POSITIONALS = ("learned", "sinusoidal", "sinusoidal_fairseq", "none")
INITS = ("default", "mimetic")
WEIGHTS = ("gpt2", "fairseq")
ACTIVATIONS = ("gelu", "relu")


@dataclass
class ModelConfig:
    """Architecture of a `Transformer`. Every default is chosen for the book's CPU chapters.

    Attributes:
        vocab_size: number of token ids. Default `None`: taken from the data by `qklab.train`
            (`data.vocab_size`); set it yourself to build a `Transformer` directly.
        d_model: model width `d`. Default 64: small enough that a few hundred steps take
            seconds on 2 CPU cores, large enough for a 64 x 64 `W_QK` with a visible spectrum.
        n_heads: heads per layer. Default 1: one `W_QK` per layer, as in Bao et al.'s analysis.
        d_head: head width `d_h`. Default `None` means `d_model // n_heads` (the usual choice);
            set it explicitly to decouple the rank of `W_QK` from the width.
        n_layers: number of blocks. Default 1: the one-layer setting of the theory chapters.
        seq_len: context length `T`. Default 64: long enough for localization to matter.
        norm: layer-norm placement, "pre" (default: stable training, nanoGPT), "post" (the
            original transformer and the paper's LocAteR model) or "none".
        residual: skip connections on (default; without them rank collapse takes over, chapter 3).
        mlp: feed-forward sublayer on (default: a standard block).
        d_mlp: feed-forward width; default `None` means `4 * d_model` (GPT-2).
        positional: "learned" (default, nanoGPT), "sinusoidal" (fixed; Vaswani et al.'s
            interleaved sin/cos), "sinusoidal_fairseq" (fairseq's `SinusoidalPositionalEmbedding`:
            sines in the first half of the features, cosines in the second, frequencies
            `10000^(-i/(d/2 - 1))`, positions counted from 2 as fairseq does, after its padding
            index 1) or "none".
        dropout: on embeddings, residual branches and (unless `attention_dropout` is set) the
            attention pattern. Default 0.0: the runs are short and deterministic, and dropout
            touches torch's global RNG (`qklab.train` seeds it).
        attention_dropout: dropout on the attention pattern; default `None` means `dropout`
            (today's behaviour). fairseq's language model uses 0.0 here and 0.1 for `dropout`.
        tie_embeddings: share the token embedding with the output layer (default True, nanoGPT).
        embed_scale: multiply token embeddings by `sqrt(d)` before adding positions, as fairseq
            does unless `--no-scale-embedding` (default False, nanoGPT).
        activation: feed-forward nonlinearity, "gelu" (default, GPT-2) or "relu" (fairseq's
            `transformer_lm` default).
        weights: weight initialisation, "gpt2" (default: normal, std 0.02; output projections
            scaled by `1/sqrt(2 n_layers)`) or "fairseq" (see the module docstring).
        init: "default" (the `weights` scheme for `W_Q`, `W_K` too) or "mimetic" (`W_Q W_K^T`
            near `mimetic_alpha I + mimetic_beta Z`, the rest as `weights` says).
        mimetic_alpha, mimetic_beta: the target's identity weight and noise weight, `Z` with
            i.i.d. `N(0, 1/d)` entries (so its spectrum has radius about 1). Defaults 0.7 and
            0.7: the values of public mimetic-initialisation code for `W_Q W_K^T` (a
            `mimetic_init` with `alpha = beta = 0.7`; there `alpha` weights the noise and `beta`
            the identity, and the noise is uniform with variance `1/d`, which at 0.7/0.7 gives
            the same target in distribution up to the noise's shape). Trockman and Kolter tune
            these per task; they are not Bao et al.'s (who do not use mimetic initialisation).
        sigma_reparam: sigma-Reparam on the query and key projections (default off).
    """

    vocab_size: int | None = None
    d_model: int = 64
    n_heads: int = 1
    d_head: int | None = None
    n_layers: int = 1
    seq_len: int = 64
    norm: Literal["pre", "post", "none"] = "pre"
    residual: bool = True
    mlp: bool = True
    d_mlp: int | None = None
    positional: Literal["learned", "sinusoidal", "none"] = "learned"
    dropout: float = 0.0
    attention_dropout: float | None = None
    tie_embeddings: bool = True
    embed_scale: bool = False
    activation: Literal["gelu", "relu"] = "gelu"
    weights: Literal["gpt2", "fairseq"] = "gpt2"
    init: Literal["default", "mimetic"] = "default"
    mimetic_alpha: float = 0.7
    mimetic_beta: float = 0.7
    sigma_reparam: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "seq_len"):
            value = getattr(self, name)
            if name == "vocab_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ModelConfig.{name} must be an int, got {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {value}")
        if self.d_head is None:
            if self.d_model % self.n_heads != 0:
                raise ValueError(
                    f"ModelConfig: n_heads = {self.n_heads} does not divide d_model = {self.d_model}; "
                    f"choose n_heads dividing d_model or set d_head explicitly"
                )
        else:
            if isinstance(self.d_head, bool) or not isinstance(self.d_head, int) or self.d_head <= 0:
                raise ValueError(f"ModelConfig.d_head must be a positive int or None, got {self.d_head!r}")
            if self.d_head > self.d_model:
                raise ValueError(
                    f"ModelConfig.d_head = {self.d_head} exceeds d_model = {self.d_model}; W_QK = W_Q W_K^T "
                    f"has rank at most d_model, so d_head must be <= d_model"
                )
        if self.norm not in NORMS:
            raise ValueError(f"ModelConfig.norm must be one of {NORMS} (layer-norm placement), got {self.norm!r}")
        if self.positional not in POSITIONALS:
            raise ValueError(f"ModelConfig.positional must be one of {POSITIONALS}, got {self.positional!r}")
        if self.init not in INITS:
            raise ValueError(f"ModelConfig.init must be one of {INITS}, got {self.init!r}")
        if not (0.0 <= float(self.dropout) < 1.0):
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.attention_dropout is not None and not (0.0 <= float(self.attention_dropout) < 1.0):
            raise ValueError(f"ModelConfig.attention_dropout must be in [0, 1) or None, got {self.attention_dropout}")
        if self.weights not in WEIGHTS:
            raise ValueError(f"ModelConfig.weights must be one of {WEIGHTS} (weight initialisation), got {self.weights!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"ModelConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.positional == "sinusoidal_fairseq" and self.d_model < 4:
            raise ValueError("ModelConfig: positional='sinusoidal_fairseq' needs d_model >= 4")
        if self.d_mlp is not None and (not isinstance(self.d_mlp, int) or self.d_mlp <= 0):
            raise ValueError(f"ModelConfig.d_mlp must be a positive int or None, got {self.d_mlp!r}")

    @property
    def head_dim(self) -> int:
        """`d_h`, resolved (`d_head` or `d_model // n_heads`)."""
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads

    @property
    def mlp_dim(self) -> int:
        return self.d_mlp if self.d_mlp is not None else 4 * self.d_model

    @property
    def attn_dropout(self) -> float:
        """Dropout on the attention pattern, resolved (`attention_dropout` or `dropout`)."""
        return float(self.dropout if self.attention_dropout is None else self.attention_dropout)

    @classmethod
    def paper_locater(cls, **overrides: Any) -> "ModelConfig":
        """"The paper's model" of chapter 10, as close as can be known.

        Bao et al. (2024) state: fairseq v0.12.2's language model, 1 layer, 1 head, post-LN,
        embedding, attention and feed-forward widths 128. What fairseq's `transformer_lm` does by
        default, read from its source: token embeddings normal with std `d^-1/2`, multiplied by
        `sqrt(d)`; fixed sinusoidal positions (its layout); dropout 0.1 on embeddings and residual
        branches, attention dropout 0.0; ReLU; Xavier-uniform attention projections (gain
        `1/sqrt(2)` for query, key, value). Unknown or different (the table in the reproduction
        appendix): sequence length (the default here is 128; chapter 10 and its sweeps pass
        `seq_len=64`), tied embeddings (fairseq's default is untied; its
        language-model example ties them; we tie), biases in the attention projections (fairseq
        has them; we do not, so that the scores are exactly the bilinear form), and the
        layer-norm placement: fairseq's `base_lm_architecture` forces pre-LN ("Model training is
        not stable without this"), so a post-LN model, as the paper states, needs a changed
        fairseq; we follow the paper's words.
        """
        base = dict(d_model=128, n_heads=1, n_layers=1, d_mlp=128, seq_len=128, norm="post",
                    positional="sinusoidal_fairseq", dropout=0.1, attention_dropout=0.0,
                    tie_embeddings=True, embed_scale=True, activation="relu", weights="fairseq")
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**data)


def _sinusoidal_fairseq(T: int, d: int, first: int = 2) -> Tensor:
    """fairseq's positions, `(T, d)`: `[sin(p w_i) | cos(p w_i)]`, `w_i = 10000^(-i/(d/2 - 1))`,
    `p = first, first + 1, ...` (fairseq counts from its padding index + 1 = 2); odd `d` gets a
    zero last feature."""
    half = d // 2
    freq = torch.exp(-math.log(10000.0) / (half - 1) * torch.arange(half, dtype=torch.float32))  # (d/2,)
    pos = torch.arange(first, first + T, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    pe = torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=1)  # (T, 2 half)
    if d % 2:
        pe = torch.cat([pe, torch.zeros(T, 1)], dim=1)
    return pe


def _sinusoidal(T: int, d: int) -> Tensor:
    """Fixed positional encoding of Vaswani et al., `(T, d)`."""
    pos = torch.arange(T, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)  # (ceil(d/2),)
    pe = torch.zeros(T, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return pe


class Attention(nn.Module):
    """Causal multi-head self-attention with a fused, bias-free QKV projection.

    Parameters: `W_qkv` `(3 H d_h, d)` (rows: all query heads, then all key heads, then all
    value heads; `q = x W_qkv[:H d_h]^T`) and `W_out` `(d, H d_h)`. The per-head views in the
    course convention are the properties `W_Q`, `W_K`, `W_V` `(H, d, d_h)` and `W_O` `(H, d_h, d)`.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.d_head, self.d_model = cfg.n_heads, cfg.head_dim, cfg.d_model
        hd = self.n_heads * self.d_head
        self.W_qkv = nn.Parameter(torch.empty(3 * hd, cfg.d_model))
        self.W_out = nn.Parameter(torch.empty(cfg.d_model, hd))
        self.dropout = cfg.attn_dropout
        self.impl = "sdpa"  # fast path kernel: "sdpa" or "math" (explicit softmax; vmap-friendly)
        if cfg.sigma_reparam:
            self.sigma_q: SigmaReparam | None = SigmaReparam(hd, cfg.d_model)
            self.sigma_k: SigmaReparam | None = SigmaReparam(hd, cfg.d_model)
        else:
            self.sigma_q = self.sigma_k = None

    # --- weights --------------------------------------------------------------------------
    def qkv_weight(self, update: bool = False) -> Tensor:
        """The effective fused projection `(3 H d_h, d)`, sigma-Reparam applied if it is on.

        `update=True` (the training forward pass only) runs sigma-Reparam's power-iteration step.
        """
        if self.sigma_q is None:
            return self.W_qkv
        hd = self.n_heads * self.d_head
        Wq, Wk, Wv = self.W_qkv.split(hd, dim=0)  # each (H d_h, d)
        return torch.cat([self.sigma_q(Wq, update), self.sigma_k(Wk, update), Wv], dim=0)

    def _head_view(self, block: int) -> Tensor:
        hd = self.n_heads * self.d_head
        W = self.qkv_weight()[block * hd : (block + 1) * hd]  # (H d_h, d)
        return W.view(self.n_heads, self.d_head, self.d_model).transpose(1, 2)  # (H, d, d_h)

    @property
    def W_Q(self) -> Tensor:
        """Per-head query projections `(H, d, d_h)`: `q_i = x_i^T W_Q[h]`."""
        return self._head_view(0)

    @property
    def W_K(self) -> Tensor:
        """Per-head key projections `(H, d, d_h)`."""
        return self._head_view(1)

    @property
    def W_V(self) -> Tensor:
        """Per-head value projections `(H, d, d_h)`."""
        return self._head_view(2)

    @property
    def W_O(self) -> Tensor:
        """Per-head output projections `(H, d_h, d)`: the layer outputs `sum_h z_h W_O[h]`."""
        return self.W_out.t().reshape(self.n_heads, self.d_head, self.d_model)  # (H d_h, d) -> (H, d_h, d)

    def qk(self) -> QK:
        """The heads' query-key matrices as one `QK` (leading dimension: heads)."""
        return QK(self.W_Q, self.W_K, validate=False)

    # --- forward --------------------------------------------------------------------------
    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, T, _ = x.shape
        hd = self.n_heads * self.d_head
        qkv = F.linear(x, self.qkv_weight(update=self.training))  # (B, T, 3 H d_h)
        # split (whose backward is one cat) rather than indexing a permuted view (whose backward
        # zero-fills a (3, B, H, T, d_h) buffer): about 1 ms a step less at the book's sizes
        q, k, v = qkv.split(hd, dim=2)  # each (B, T, H d_h)
        return tuple(t.view(B, T, self.n_heads, self.d_head).transpose(1, 2) for t in (q, k, v))  # each (B, H, T, d_h)

    def _merge(self, z: Tensor) -> Tensor:
        B, H, T, dh = z.shape
        z = z.transpose(1, 2).reshape(B, T, H * dh)  # (B, H, T, d_h) -> (B, T, H d_h)
        return F.linear(z, self.W_out)  # (B, T, d)

    def forward(self, x: Tensor) -> Tensor:
        """Fast path. `x: (B, T, d)` -> `(B, T, d)`."""
        if self.impl == "math":
            return self.forward_exact(x)[0]
        q, k, v = self._qkv(x)  # each (B, H, T, d_h)
        p = self.dropout if self.training else 0.0
        z = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, H, T, d_h)
        return self._merge(z)

    def forward_exact(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Exact path: returns `(out (B, T, d), attn_scores (B, H, T, T), pattern (B, H, T, T))`.

        `attn_scores[b, h, i, j] = x_i^T W_Q[h] W_K[h]^T x_j / sqrt(d_h)` (before the mask);
        `pattern = softmax_row(scores + causal mask)`.
        """
        q, k, v = self._qkv(x)  # each (B, H, T, d_h)
        T = x.shape[1]
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)  # (B, H, T, T)
        keep = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # (T, T)
        A = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)  # (B, H, T, T)
        A_drop = F.dropout(A, self.dropout, self.training) if self.dropout > 0 else A
        return self._merge(A_drop @ v), scores, A


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(cfg.mlp_dim, cfg.d_model))
        self.b_in = nn.Parameter(torch.zeros(cfg.mlp_dim))
        self.W_out = nn.Parameter(torch.empty(cfg.d_model, cfg.mlp_dim))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        self.act = F.relu if cfg.activation == "relu" else F.gelu

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.act(F.linear(x, self.W_in, self.b_in)), self.W_out, self.b_out)


class Block(nn.Module):
    """One transformer block; `norm` places the layer norms, `residual` switches the skips."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm, self.residual, self.dropout = cfg.norm, cfg.residual, cfg.dropout
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg) if cfg.mlp else None
        self.ln1 = nn.LayerNorm(cfg.d_model) if cfg.norm != "none" else nn.Identity()
        self.ln2 = nn.LayerNorm(cfg.d_model) if (cfg.norm != "none" and cfg.mlp) else nn.Identity()

    def _sub(self, x: Tensor, f, ln: nn.Module, record: list | None) -> Tensor:
        inp = ln(x) if self.norm == "pre" else x  # the input the sublayer sees
        if record is not None:
            y, scores, A = f(inp)
            record.append({"X": inp, "attn_scores": scores, "pattern": A})
        else:
            y = f(inp)
        if self.dropout > 0:
            y = F.dropout(y, self.dropout, self.training)
        out = x + y if self.residual else y
        return ln(out) if self.norm == "post" else out

    def forward(self, x: Tensor, record: list | None = None) -> Tensor:
        attn = self.attn.forward_exact if record is not None else self.attn
        x = self._sub(x, attn, self.ln1, record)
        if self.mlp is not None:
            x = self._sub(x, self.mlp, self.ln2, None)
        return x


class Transformer(nn.Module):
    """Causal transformer language model (nanoGPT-like). `model(idx)` -> logits `(B, T, V)`.

    Args:
        config: the architecture.
        seed: seeds a local generator for the initialisation (global RNG untouched).
    """

    def __init__(self, config: ModelConfig, seed: int | None = 0) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        if config.vocab_size is None:
            raise ValueError("ModelConfig.vocab_size is None: set it (e.g. to data.vocab_size) before building a model")
        self.config = cfg = config
        self.tok_emb = nn.Parameter(torch.empty(cfg.vocab_size, cfg.d_model))
        if cfg.positional == "learned":
            self.pos_emb = nn.Parameter(torch.empty(cfg.seq_len, cfg.d_model))
        else:
            self.pos_emb = None
            if cfg.positional == "sinusoidal":
                self.register_buffer("pos_fixed", _sinusoidal(cfg.seq_len, cfg.d_model), persistent=False)
            elif cfg.positional == "sinusoidal_fairseq":
                self.register_buffer("pos_fixed", _sinusoidal_fairseq(cfg.seq_len, cfg.d_model), persistent=False)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.lm_head = None if cfg.tie_embeddings else nn.Parameter(torch.empty(cfg.vocab_size, cfg.d_model))
        self.mimetic_target: list[Tensor] | None = None
        self.reset_parameters(seed)

    # --- initialisation -------------------------------------------------------------------
    @torch.no_grad()
    def reset_parameters(self, seed: int | None = 0) -> None:
        """Draw all weights from a local generator seeded with `seed` (see `ModelConfig.init`)."""
        g = torch.Generator()
        g.manual_seed(int(seed)) if seed is not None else g.seed()
        cfg = self.config
        fairseq = cfg.weights == "fairseq"
        # embeddings (and untied output layer): std 0.02 (GPT-2) or d^-1/2 (fairseq)
        std = cfg.d_model**-0.5 if fairseq else 0.02
        self.tok_emb.normal_(0.0, std, generator=g)
        if self.pos_emb is not None:
            self.pos_emb.normal_(0.0, std, generator=g)
        if self.lm_head is not None:
            self.lm_head.normal_(0.0, std, generator=g)
        targets = []
        for block in self.blocks:
            a = block.attn
            (self._init_block_fairseq if fairseq else self._init_block_gpt2)(block, g)
            if cfg.init == "mimetic":
                targets.append(self._mimetic(a, g))
            if a.sigma_q is not None:
                hd = a.n_heads * a.d_head
                a.sigma_q.reset(a.W_qkv[:hd], g)
                a.sigma_k.reset(a.W_qkv[hd : 2 * hd], g)
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                m.reset_parameters()
        self.mimetic_target = targets if cfg.init == "mimetic" else None

    def _init_block_gpt2(self, block: "Block", g: torch.Generator) -> None:
        """GPT-2 style: every matrix normal with std 0.02, output projections `/ sqrt(2 L)`."""
        std = 0.02
        proj_std = std / math.sqrt(2 * self.config.n_layers)  # GPT-2: residual outputs scaled with depth
        a = block.attn
        a.W_qkv.normal_(0.0, std, generator=g)
        a.W_out.normal_(0.0, proj_std, generator=g)
        if block.mlp is not None:
            block.mlp.W_in.normal_(0.0, std, generator=g)
            block.mlp.W_out.normal_(0.0, proj_std, generator=g)
            block.mlp.b_in.zero_()
            block.mlp.b_out.zero_()

    @staticmethod
    def _init_block_fairseq(block: "Block", g: torch.Generator) -> None:
        """fairseq's `transformer_lm` layers (see the module docstring), with a local generator."""

        def xavier(W: Tensor, gain: float = 1.0) -> None:  # W: (out, in), Xavier-uniform
            bound = gain * math.sqrt(6.0 / (W.shape[0] + W.shape[1]))
            W.uniform_(-bound, bound, generator=g)

        def torch_linear(W: Tensor, b: Tensor) -> None:  # nn.Linear's default: U(+-1/sqrt(fan_in))
            bound = 1.0 / math.sqrt(W.shape[1])
            W.uniform_(-bound, bound, generator=g)
            b.uniform_(-bound, bound, generator=g)

        a = block.attn
        hd = a.n_heads * a.d_head
        for part in a.W_qkv.split(hd, dim=0):  # query, key, value rows: each (H d_h, d), in place
            xavier(part, 1 / math.sqrt(2))
        xavier(a.W_out)
        if block.mlp is not None:
            torch_linear(block.mlp.W_in, block.mlp.b_in)
            torch_linear(block.mlp.W_out, block.mlp.b_out)

    def _mimetic(self, a: Attention, g: torch.Generator) -> Tensor:
        """Set every head's `W_Q W_K^T` to the best rank-`d_h` approximation of `alpha I + beta Z`."""
        cfg, d, H, dh = self.config, self.config.d_model, a.n_heads, a.d_head
        Z = torch.randn(H, d, d, generator=g, dtype=torch.float64) / math.sqrt(d)  # (H, d, d), N(0, 1/d)
        target = cfg.mimetic_alpha * torch.eye(d, dtype=torch.float64) + cfg.mimetic_beta * Z  # (H, d, d)
        Wq, Wk = factor_qk(target, dh)  # each (H, d, d_h)
        hd = H * dh
        a.W_qkv[:hd] = Wq.transpose(1, 2).reshape(hd, d).to(a.W_qkv.dtype)  # (H, d_h, d) -> (H d_h, d)
        a.W_qkv[hd : 2 * hd] = Wk.transpose(1, 2).reshape(hd, d).to(a.W_qkv.dtype)
        return target.float()

    # --- views ----------------------------------------------------------------------------
    def qk(self, layer: int | None = None) -> QK:
        """`QK` of layer `layer` (heads leading, `(H, d, d_h)`), or of all layers `(L, H, d, d_h)`."""
        if layer is None:
            return QK(self.W_Q, self.W_K, validate=False)
        return self.blocks[self._layer(layer)].attn.qk()

    def _layer(self, layer: int) -> int:
        L = len(self.blocks)
        if not isinstance(layer, int) or not (-L <= layer < L):
            raise ValueError(f"layer must be an int in [0, {L}), got {layer!r}")
        return layer % L

    @property
    def W_Q(self) -> Tensor:
        """`(n_layers, H, d, d_h)`."""
        return torch.stack([b.attn.W_Q for b in self.blocks])

    @property
    def W_K(self) -> Tensor:
        """`(n_layers, H, d, d_h)`."""
        return torch.stack([b.attn.W_K for b in self.blocks])

    @property
    def W_V(self) -> Tensor:
        """`(n_layers, H, d, d_h)`."""
        return torch.stack([b.attn.W_V for b in self.blocks])

    @property
    def W_O(self) -> Tensor:
        """`(n_layers, H, d_h, d)`."""
        return torch.stack([b.attn.W_O for b in self.blocks])

    def set_attention_impl(self, impl: Literal["sdpa", "math"]) -> "Transformer":
        """Kernel of the fast path: "sdpa" (`scaled_dot_product_attention`, the default) or "math"
        (explicit softmax, same numbers to float rounding; used under `torch.vmap`, where torch
        2.13 has no batching rule for the CPU SDPA kernel)."""
        if impl not in ("sdpa", "math"):
            raise ValueError(f"impl must be 'sdpa' or 'math', got {impl!r}")
        for b in self.blocks:
            b.attn.impl = impl
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- forward --------------------------------------------------------------------------
    def _embed(self, idx: Tensor) -> Tensor:
        if idx.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"idx must hold integer token ids, got dtype {idx.dtype}")
        T = idx.shape[-1]
        if T > self.config.seq_len:
            raise ValueError(f"sequence length {T} exceeds ModelConfig.seq_len = {self.config.seq_len}")
        x = F.embedding(idx, self.tok_emb)  # (B, T, d)
        if self.config.embed_scale:
            x = x * math.sqrt(self.config.d_model)
        if self.pos_emb is not None:
            x = x + self.pos_emb[:T]
        elif self.config.positional in ("sinusoidal", "sinusoidal_fairseq"):
            x = x + self.pos_fixed[:T]
        if self.config.dropout > 0:
            x = F.dropout(x, self.config.dropout, self.training)
        return x

    def _head(self, x: Tensor) -> Tensor:
        W = self.tok_emb if self.lm_head is None else self.lm_head
        return F.linear(self.ln_f(x), W)  # (B, T, V)

    def forward(self, idx: Tensor) -> Tensor:
        """Fast path: `idx (B, T)` token ids -> logits `(B, T, V)`."""
        x = self._embed(idx)
        for block in self.blocks:
            x = block(x)
        return self._head(x)

    def run_with_attention(self, idx: Tensor) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """Exact path: logits and, per layer, `{"X": (B, T, d) attention input,
        "attn_scores": (B, H, T, T), "pattern": (B, H, T, T)}`. Same numbers as `forward`."""
        x = self._embed(idx)
        record: list[dict[str, Tensor]] = []
        for block in self.blocks:
            x = block(x, record)
        return self._head(x), record

    def loss(self, idx: Tensor, targets: Tensor) -> Tensor:
        """Mean next-token cross-entropy in nats; targets equal to -100 are ignored."""
        logits = self(idx)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


def mimetic_report(model: Transformer, over: Literal["d", "d_h"] = "d") -> list[dict[str, Any]]:
    """Per layer and head: spectrum statistics of the target `alpha I + beta Z` and of the realised
    `W_Q W_K^T` (rank `d_h`). Chapter 9: with `d_h < d` truncation drops `d - d_h` eigenvalues to 0,
    so the realised mean (over `d`) falls well below `alpha`.
    """
    if model.mimetic_target is None:
        raise ValueError("model was not built with ModelConfig(init='mimetic')")
    out = []
    with torch.no_grad():
        for layer, target in enumerate(model.mimetic_target):
            real = model.qk(layer)
            n = target.shape[-1] if over == "d" else model.config.head_dim
            lam_t = torch.linalg.eigvals(target)  # (H, d)
            lam_r = real.eigenvalues()  # (H, d)
            rs = real.stats(over)
            for h in range(target.shape[0]):
                t = target[h]
                out.append({
                    "layer": layer, "head": h,
                    "target_mean": float(torch.trace(t)) / n,
                    "target_scale": float((t.pow(2).sum() / n).sqrt()),
                    "realised_mean": float(rs["mean"][h]),
                    "realised_variance": float(rs["variance"][h]),
                    "realised_scale": float(rs["scale"][h]),
                    "realised_kappa": float(rs["kappa"][h]),
                    "relative_error": float(torch.linalg.matrix_norm(real.matrix[h] - t) / torch.linalg.matrix_norm(t)),
                    "target_eigenvalues": lam_t[h],
                    "realised_eigenvalues": lam_r[h],
                })
    return out
