"""Token data for the training chapters (4, 9, 10): corpora and synthetic tasks.

What is here:

- `TokenData`: a tokenised corpus with a train and a validation split (and optionally a test split
  that nothing is chosen on), random training windows (`batch`) and fixed validation windows
  (`eval_batches`), encode/decode.
- `pydoc_corpus()`: the offline default, the English help text shipped with Python
  (`pydoc_data.topics`, about 465k characters), character level, topics in sorted order,
  split deterministically: the first `1 - val_fraction` of the text trains, the rest validates;
  with `test_split=True` the second half of that held-out block is a test split instead
  (chapter 10's controls: strengths are chosen on validation, reported on test).
  The text differs slightly between Python versions; `describe()` records the version.
- `load_wikitext2(path)`: WikiText-2 (Merity et al. 2016) from the standard raw files
  `wiki.train.raw`, `wiki.valid.raw`, `wiki.test.raw` in a local directory, at character or word
  level; `download=True` fetches it through the `datasets` library (opt-in only, never by default).
- Synthetic tasks for the theory chapters: `RandomWalkTokens` (a random walk on a ring of
  tokens, next-token prediction; best loss `log 3`) and `InductionTask` (a random sequence then
  its repeat; targets only on the repeat, which an induction head predicts exactly).

Every task exposes `vocab_size`, `batch(split, batch_size, seq_len, generator)` and
`eval_batches(batch_size, seq_len, n)`; targets equal to -100 are ignored by the loss.

What is not here: models (`qklab.model`) and the training loop (`qklab.train`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "TokenData",
    "fingerprint",
    "pydoc_corpus",
    "char_corpus",
    "load_wikitext2",
    "find_wikitext2",
    "RandomWalkTokens",
    "InductionTask",
    "WIKITEXT_FILES",
]

WIKITEXT_FILES = {"train": "wiki.train.raw", "val": "wiki.valid.raw", "test": "wiki.test.raw"}
Split = Literal["train", "val", "test"]


def _check_batch_args(batch_size: int, seq_len: int) -> None:
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


class TokenData:
    """A tokenised corpus: `train` and `val` are 1-D LongTensors of token ids.

    Args:
        name: a label written into results files.
        vocab: the token of every id (characters, or words for word level).
        train, val: token ids.
        level: "char" or "word" (decode joins words with spaces).
        test: token ids of a held-out test split, or None (no test split).
    """

    def __init__(self, name: str, vocab: list[str], train: Tensor, val: Tensor, level: str = "char",
                 info: dict | None = None, test: Tensor | None = None) -> None:
        if len(vocab) == 0:
            raise ValueError(f"corpus {name!r} has an empty vocabulary (is the text empty?)")
        if train.numel() < 2 or val.numel() < 2:
            raise ValueError(
                f"corpus {name!r} is empty or too small: {train.numel()} training and {val.numel()} "
                f"validation tokens (need at least 2 of each)"
            )
        self.name, self.vocab, self.level = name, list(vocab), level
        if test is not None and test.numel() < 2:
            raise ValueError(f"corpus {name!r} has a test split of {test.numel()} tokens (need at least 2)")
        self.train, self.val = train.long(), val.long()
        self.test = None if test is None else test.long()
        self.stoi = {s: i for i, s in enumerate(self.vocab)}
        self.info = dict(info or {})

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return (f"TokenData({self.name!r}, level={self.level!r}, vocab_size={self.vocab_size}, "
                f"train={self.train.numel()}, val={self.val.numel()})")

    def describe(self) -> dict:
        return {"name": self.name, "level": self.level, "vocab_size": self.vocab_size,
                "train_tokens": int(self.train.numel()), "val_tokens": int(self.val.numel()),
                **({} if self.test is None else {"test_tokens": int(self.test.numel())}), **self.info}

    def encode(self, text: str) -> Tensor:
        items = text.split() if self.level == "word" else list(text)
        unk = self.stoi.get("<unk>")
        ids = []
        for s in items:
            if s in self.stoi:
                ids.append(self.stoi[s])
            elif unk is not None:
                ids.append(unk)
            else:
                raise ValueError(f"token {s!r} is not in the vocabulary of {self.name!r}")
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: Tensor | list[int]) -> str:
        toks = [self.vocab[int(i)] for i in ids]
        return " ".join(toks) if self.level == "word" else "".join(toks)

    def _split(self, split: str) -> Tensor:
        if split == "train":
            return self.train
        if split == "val":
            return self.val
        if split == "test":
            if self.test is None:
                raise ValueError(f"corpus {self.name!r} has no test split (pydoc_corpus(test_split=True) makes one)")
            return self.test
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")

    def windows(self, split: Split, seq_len: int) -> Tensor:
        """Every non-overlapping window of `split`, `(n, seq_len + 1)`: inputs `[:, :-1]`, targets `[:, 1:]`."""
        _check_batch_args(1, seq_len)
        data = self._split(split)
        n = (data.numel() - 1) // seq_len
        if n < 1:
            raise ValueError(f"{split} split of {self.name!r} has {data.numel()} tokens, fewer than seq_len + 1 = {seq_len + 1}")
        offs = (torch.arange(n) * seq_len).unsqueeze(1) + torch.arange(seq_len + 1)  # (n, T + 1)
        return data[offs]

    def batch(self, split: Split, batch_size: int, seq_len: int, generator: torch.Generator | None = None
              ) -> tuple[Tensor, Tensor]:
        """Random windows: `x (B, T)` and next-token targets `y (B, T)`."""
        _check_batch_args(batch_size, seq_len)
        data = self._split(split)
        if data.numel() <= seq_len:
            raise ValueError(f"{split} split of {self.name!r} has {data.numel()} tokens, fewer than seq_len + 1 = {seq_len + 1}")
        start = torch.randint(0, data.numel() - seq_len, (batch_size,), generator=generator)  # (B,)
        offs = start.unsqueeze(1) + torch.arange(seq_len + 1)  # (B, T + 1)
        win = data[offs]  # (B, T + 1)
        return win[:, :-1], win[:, 1:]

    def eval_batches(self, batch_size: int, seq_len: int, n: int) -> list[tuple[Tensor, Tensor]]:
        """`n` fixed validation batches of evenly spaced windows (the same every call)."""
        _check_batch_args(batch_size, seq_len)
        data = self.val
        if data.numel() <= seq_len:
            raise ValueError(f"val split of {self.name!r} has {data.numel()} tokens, fewer than seq_len + 1 = {seq_len + 1}")
        count = batch_size * n
        start = torch.linspace(0, data.numel() - seq_len - 1, count).long()  # (n B,)
        offs = start.unsqueeze(1) + torch.arange(seq_len + 1)  # (n B, T + 1)
        win = data[offs].view(n, batch_size, seq_len + 1)  # (n, B, T + 1)
        return [(w[:, :-1], w[:, 1:]) for w in win]


def char_corpus(text: str, name: str = "text", val_fraction: float = 0.1, info: dict | None = None) -> TokenData:
    """Character-level `TokenData` from one string: the first `1 - val_fraction` trains."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if len(text) == 0:
        raise ValueError(f"corpus {name!r} is empty")
    if not (0.0 < val_fraction < 1.0):
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    vocab = sorted(set(text))
    stoi = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n_train = int(round(len(text) * (1.0 - val_fraction)))
    return TokenData(name, vocab, ids[:n_train], ids[n_train:], "char", info)


def pydoc_corpus(val_fraction: float = 0.1, test_split: bool = False) -> TokenData:
    """The offline default corpus: Python's `pydoc_data.topics` help text, character level.

    `test_split=True` cuts the held-out last `val_fraction` of the text in two: the first half
    validates, the second is the test split. The training split is the same either way, so a
    run trains identically with or without it.
    """
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    info = {"source": "pydoc_data.topics", "python": sys.version.split()[0], "val_fraction": val_fraction}
    data = char_corpus(text, "pydoc", val_fraction, info)
    if not test_split:
        return data
    half = data.val.numel() // 2
    return TokenData("pydoc", data.vocab, data.train, data.val[:half], "char",
                     {**info, "test_split": "second half of the held-out block"}, test=data.val[half:])


# --- WikiText-2 ---------------------------------------------------------------------------------

def find_wikitext2(path: str | os.PathLike | None = None) -> Path | None:
    """The first directory holding `wiki.train.raw` and `wiki.valid.raw` among `path`, the
    environment variable `QKLAB_WIKITEXT2`, and `~/.cache/qklab/wikitext-2-raw`; else None."""
    candidates = [path, os.environ.get("QKLAB_WIKITEXT2"), Path.home() / ".cache" / "qklab" / "wikitext-2-raw"]
    for c in candidates:
        if c is None:
            continue
        for d in (Path(c), Path(c) / "wikitext-2-raw"):
            if (d / WIKITEXT_FILES["train"]).is_file() and (d / WIKITEXT_FILES["val"]).is_file():
                return d
    return None


def _download_wikitext2(target: Path) -> Path:
    try:
        import datasets  # noqa: F401  (lazy: an optional dependency)
    except ImportError as err:
        raise ImportError(
            "download=True needs the `datasets` library (pip install datasets); or download "
            "wikitext-2-raw yourself and pass the directory holding wiki.train.raw"
        ) from err
    from datasets import load_dataset

    ds = load_dataset("wikitext", "wikitext-2-raw-v1")
    target.mkdir(parents=True, exist_ok=True)
    for split, hf in (("train", "train"), ("val", "validation"), ("test", "test")):
        (target / WIKITEXT_FILES[split]).write_text("".join(ds[hf]["text"]), encoding="utf-8")
    return target


def load_wikitext2(
    path: str | os.PathLike | None = None,
    level: Literal["char", "word"] = "char",
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> TokenData:
    """WikiText-2 from the raw files in `path` (see `find_wikitext2` for where else it looks).

    `level="word"`: whitespace tokens with an `<eos>` per line, vocabulary from the training file
    (the standard setup; rare words are already `<unk>` in the files). `level="char"`: characters,
    vocabulary from the training and validation files. `download=True` fetches the data with the
    `datasets` library into `cache_dir` (default `~/.cache/qklab/wikitext-2-raw`) first; it never
    happens unless asked.
    """
    if level not in ("char", "word"):
        raise ValueError(f"level must be 'char' or 'word', got {level!r}")
    found = find_wikitext2(path)
    if found is None:
        if not download:
            raise FileNotFoundError(
                f"no WikiText-2 raw files (wiki.train.raw, wiki.valid.raw) found in {path!r}, $QKLAB_WIKITEXT2 "
                f"or ~/.cache/qklab/wikitext-2-raw; pass the directory, or download=True (needs `datasets`)"
            )
        target = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "qklab" / "wikitext-2-raw"
        found = _download_wikitext2(target)
    train_text = (found / WIKITEXT_FILES["train"]).read_text(encoding="utf-8")
    val_text = (found / WIKITEXT_FILES["val"]).read_text(encoding="utf-8")
    if not train_text.strip() or not val_text.strip():
        raise ValueError(f"WikiText-2 files in {found} are empty")
    info = {"source": str(found)}
    if level == "char":
        vocab = sorted(set(train_text) | set(val_text))
        stoi = {c: i for i, c in enumerate(vocab)}
        enc = lambda t: torch.tensor([stoi[c] for c in t], dtype=torch.long)  # noqa: E731
        return TokenData("wikitext2-char", vocab, enc(train_text), enc(val_text), "char", info)

    def words(text: str) -> list[str]:
        out: list[str] = []
        for line in text.splitlines():
            if line.strip():
                out.extend(line.split())
                out.append("<eos>")
        return out

    train_w, val_w = words(train_text), words(val_text)
    vocab = sorted(set(train_w) | {"<unk>"})
    stoi = {w: i for i, w in enumerate(vocab)}
    unk = stoi["<unk>"]
    enc_w = lambda ws: torch.tensor([stoi.get(w, unk) for w in ws], dtype=torch.long)  # noqa: E731
    return TokenData("wikitext2-word", vocab, enc_w(train_w), enc_w(val_w), "word", info)


# --- synthetic tasks ----------------------------------------------------------------------------

class _Synthetic:
    name = "synthetic"
    vocab_size: int

    def _sample(self, batch_size: int, seq_len: int, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def batch(self, split: Split, batch_size: int, seq_len: int, generator: torch.Generator | None = None
              ) -> tuple[Tensor, Tensor]:
        """Fresh samples `x (B, T)`, `y (B, T)`; both splits draw from the same distribution."""
        _check_batch_args(batch_size, seq_len)
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return self._sample(batch_size, seq_len, generator)

    def eval_batches(self, batch_size: int, seq_len: int, n: int) -> list[tuple[Tensor, Tensor]]:
        g = torch.Generator().manual_seed(2**31 - 1)  # fixed: the same validation set every call
        return [self.batch("val", batch_size, seq_len, g) for _ in range(n)]

    def describe(self) -> dict:
        return {"name": self.name, "vocab_size": self.vocab_size}


class RandomWalkTokens(_Synthetic):
    """Tokens doing a random walk on a ring of `vocab_size` states: `x_t = x_{t-1} + e_t mod V`
    with `e_t` uniform on `steps` (default -1, 0, +1). Next-token loss is at best `log len(steps)`.
    The discrete counterpart of the random-walk tokens of chapter 7.
    """

    name = "random-walk"

    def __init__(self, vocab_size: int = 32, steps: tuple[int, ...] = (-1, 0, 1)) -> None:
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, got {vocab_size}")
        if len(steps) == 0:
            raise ValueError("steps must not be empty")
        self.vocab_size, self.steps = vocab_size, torch.tensor(steps, dtype=torch.long)

    def _sample(self, batch_size, seq_len, g):
        x0 = torch.randint(0, self.vocab_size, (batch_size, 1), generator=g)  # (B, 1)
        e = self.steps[torch.randint(0, len(self.steps), (batch_size, seq_len), generator=g)]  # (B, T)
        walk = (x0 + torch.cat([torch.zeros(batch_size, 1, dtype=torch.long), e], 1).cumsum(1)) % self.vocab_size  # (B, T + 1)
        return walk[:, :-1], walk[:, 1:]

    def describe(self) -> dict:
        return {"name": self.name, "vocab_size": self.vocab_size, "steps": self.steps.tolist()}


class InductionTask(_Synthetic):
    """Copy / induction: `T/2` uniform random tokens, then the same tokens again. Targets are
    given only where the next token is a repeat (the second half), so the best loss is 0."""

    name = "induction"

    def __init__(self, vocab_size: int = 32) -> None:
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, got {vocab_size}")
        self.vocab_size = vocab_size

    def _sample(self, batch_size, seq_len, g):
        if seq_len < 2:
            raise ValueError(f"InductionTask needs seq_len >= 2, got {seq_len}")
        half = (seq_len + 2) // 2
        first = torch.randint(0, self.vocab_size, (batch_size, half), generator=g)  # (B, half)
        seq = torch.cat([first, first], dim=1)[:, : seq_len + 1]  # (B, T + 1)
        x, y = seq[:, :-1], seq[:, 1:].clone()
        y[:, : half - 1] = -100  # positions whose next token is still fresh randomness
        return x, y


def fingerprint(data) -> str:
    """A short hash of a data set as loaded: its description, vocabulary and token ids. Two machines
    that build the default corpus from different Python versions get different fingerprints, so a
    cluster run can refuse to mix them (`qklab.cluster`)."""
    digest = hashlib.sha256(json.dumps(data.describe(), sort_keys=True, default=str).encode())
    vocab = getattr(data, "vocab", None)
    if vocab:
        digest.update("\0".join(map(str, vocab)).encode())
    for split in ("train", "val", "test"):
        tokens = getattr(data, split, None)
        if isinstance(tokens, Tensor):
            digest.update(tokens.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
