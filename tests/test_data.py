"""qklab.data: deterministic split, batches, the WikiText-2 loader on a temporary file, tasks."""

import pytest
import torch

from qklab.data import InductionTask, RandomWalkTokens, char_corpus, load_wikitext2, pydoc_corpus


def test_pydoc_split_is_deterministic_and_disjoint():
    a, b = pydoc_corpus(), pydoc_corpus()
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert a.vocab == b.vocab
    assert a.val.numel() == pytest.approx(0.1 * (a.train.numel() + a.val.numel()), rel=0.01)
    assert a.decode(a.encode("def f(x):")) == "def f(x):"


def test_pydoc_test_split_halves_the_held_out_block_and_keeps_training_data():
    plain, held = pydoc_corpus(), pydoc_corpus(test_split=True)
    assert torch.equal(plain.train, held.train)  # a run trains the same with or without a test split
    assert torch.equal(torch.cat([held.val, held.test]), plain.val)
    assert abs(held.val.numel() - held.test.numel()) <= 1 and plain.test is None
    assert held.describe()["test_tokens"] == held.test.numel()
    w = held.windows("test", 64)  # every non-overlapping window, inputs and next-token targets
    assert w.shape == ((held.test.numel() - 1) // 64, 65) and torch.equal(w[1, :10], held.test[64:74])
    with pytest.raises(ValueError, match="fewer than seq_len"):
        char_corpus("abcdefghij" * 2, val_fraction=0.2).windows("val", 10)


def test_batches_are_seeded_and_shifted():
    c = char_corpus("abcdefghij" * 20, val_fraction=0.2)
    x1, y1 = c.batch("train", 4, 6, torch.Generator().manual_seed(0))
    x2, y2 = c.batch("train", 4, 6, torch.Generator().manual_seed(0))
    assert torch.equal(x1, x2) and x1.shape == (4, 6)
    assert torch.equal(x1[:, 1:], y1[:, :-1])
    ev1, ev2 = c.eval_batches(2, 5, 3), c.eval_batches(2, 5, 3)
    assert len(ev1) == 3 and all(torch.equal(p[0], q[0]) for p, q in zip(ev1, ev2))
    with pytest.raises(ValueError, match="no test split"):
        c.batch("test", 1, 2)
    with pytest.raises(ValueError, match="split must be"):
        c.batch("valid", 1, 2)
    with pytest.raises(ValueError, match="seq_len"):
        c.batch("val", 1, 100)


def test_empty_corpus_raises():
    with pytest.raises(ValueError, match="empty"):
        char_corpus("")
    with pytest.raises(ValueError, match="val_fraction"):
        char_corpus("abc", val_fraction=1.0)


def _write_wikitext(tmp_path):
    train = "\n = Title = \n\n The cat sat on the <unk> mat . \n The dog ran . \n" * 5
    valid = "\n = Other = \n\n The cat ran on the mat . \n"
    (tmp_path / "wiki.train.raw").write_text(train, encoding="utf-8")
    (tmp_path / "wiki.valid.raw").write_text(valid, encoding="utf-8")
    (tmp_path / "wiki.test.raw").write_text(valid, encoding="utf-8")
    return train, valid


def test_wikitext2_loader_char_and_word(tmp_path):
    train, valid = _write_wikitext(tmp_path)
    c = load_wikitext2(tmp_path, level="char")
    assert c.decode(c.train) == train and c.decode(c.val) == valid
    w = load_wikitext2(tmp_path, level="word")
    assert "<eos>" in w.vocab and "<unk>" in w.vocab
    assert w.decode(w.val[:7]) == "= <unk> = <eos> The cat ran"  # "Other" is not in the training vocabulary
    assert w.train.numel() == 5 * (len("= Title =".split()) + 1 + len("The cat sat on the <unk> mat .".split()) + 1 + 4 + 1)


def test_wikitext2_missing_never_downloads(tmp_path, monkeypatch):
    monkeypatch.delenv("QKLAB_WIKITEXT2", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_wikitext2(tmp_path / "nowhere")


def test_synthetic_tasks():
    g = torch.Generator().manual_seed(0)
    rw = RandomWalkTokens(vocab_size=10)
    x, y = rw.batch("train", 5, 12, g)
    step = (y - x) % 10
    assert set(step.unique().tolist()) <= {0, 1, 9}
    ind = InductionTask(vocab_size=10)
    x, y = ind.batch("train", 3, 10, g)
    assert x.shape == y.shape == (3, 10)
    known = y != -100
    assert known.sum() == 3 * 5
    # every target on the repeat equals the token half a period earlier
    period = 6
    for b in range(3):
        for t in range(10):
            if known[b, t]:
                assert y[b, t] == x[b, t + 1 - period]
    assert torch.equal(ind.eval_batches(2, 10, 2)[0][0], ind.eval_batches(2, 10, 2)[0][0])
