"""qklab.cli: `qklab train` on a tiny config writes its results file; errors are reported."""

import json

from qklab.cli import main

TINY = ["--d-model", "8", "--seq-len", "8", "--steps", "4", "--batch-size", "2", "--log-every", "2",
        "--eval-batches", "1", "--no-progress", "--device", "cpu"]


def test_train_writes_results(tmp_path, capsys):
    out = tmp_path / "run.jsonl"
    rc = main(["train", *TINY, "--data", "random-walk", "--vocab-size", "6", "--seed", "2", "--out", str(out)])
    assert rc == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["type"] == "config" and lines[0]["seed"] == 2 and lines[0]["device"] == "cpu"
    assert "torch" in lines[0]["env"] and lines[0]["model_config"]["d_model"] == 8
    assert [x["step"] for x in lines if x["type"] == "log"] == [0, 2, 4]
    assert "results:" in capsys.readouterr().out


def test_sweep_writes_one_file_per_run(tmp_path):
    rc = main(["sweep", *TINY, "--data", "induction", "--vocab-size", "5", "--reg-strengths", "0,1",
               "--seeds", "0,1", "--out-dir", str(tmp_path)])
    assert rc == 0
    assert len(list(tmp_path.glob("*.jsonl"))) == 4


def test_bad_arguments_are_reported(tmp_path, capsys):
    rc = main(["train", *TINY, "--lr", "-1", "--out", str(tmp_path / "x.jsonl")])
    assert rc == 2 and "lr" in capsys.readouterr().err
    rc = main(["train", *TINY, "--n-heads", "3", "--out", str(tmp_path / "x.jsonl")])
    assert rc == 2 and "divide" in capsys.readouterr().err
    rc = main(["train", *TINY, "--data", "wikitext2", "--data-dir", str(tmp_path / "none")])
    assert rc == 2 and "WikiText-2" in capsys.readouterr().err


def test_reproduce_paper_scale_says_which_data(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("QKLAB_WIKITEXT2", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    rc = main(["reproduce", "locater", "--scale", "paper", "--steps", "1", "--seeds", "0", "--device", "cpu",
               "--out-dir", str(tmp_path / "r"), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "no local WikiText-2 found" in out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["model_config"]["d_model"] == 128 and summary["model_config"]["norm"] == "post"
    assert len(summary["rows"]) == 3


def test_reproduce_takes_strengths(tmp_path, monkeypatch):
    monkeypatch.delenv("QKLAB_WIKITEXT2", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    rc = main(["reproduce", "locater", "--scale", "book", "--steps", "1", "--seeds", "0", "--device", "cpu",
               "--strengths", "0,0.001", "--out-dir", str(tmp_path / "r"), "--no-progress"])
    assert rc == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert len(summary["rows"]) == 2
