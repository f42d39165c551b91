"""qklab.cli as a new user types it: `qklab train`, `qklab sweep`, `qklab reproduce locater`; bad input
stops before any work with one clear message; sweeps resume; Ctrl-C keeps finished points."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qklab.cli import main
from qklab.runner import point_key, read_records
from test_runner import sigint_as_at_a_terminal

TINY = ["--d-model", "8", "--seq-len", "8", "--steps", "4", "--batch-size", "2", "--log-every", "2",
        "--eval-batches", "1", "--no-progress", "--device", "cpu"]
GRID = ["--data", "induction", "--vocab-size", "5", "--reg-strengths", "0,1", "--seeds", "0,1"]
QKLAB = str(Path(sys.executable).parent / "qklab")  # the installed command


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_train_writes_results(tmp_path, capsys):
    out = tmp_path / "run.jsonl"
    rc = main(["train", *TINY, "--data", "random-walk", "--vocab-size", "6", "--seed", "2", "--out", str(out)])
    assert rc == 0
    rows = lines(out)
    assert rows[0]["type"] == "config" and rows[0]["seed"] == 2 and rows[0]["device"] == "cpu"
    assert "torch" in rows[0]["env"] and rows[0]["model_config"]["d_model"] == 8
    assert [x["step"] for x in rows if x["type"] == "log"] == [0, 2, 4]
    assert "results:" in capsys.readouterr().out


def test_train_bad_arguments_are_reported(tmp_path, capsys):
    rc = main(["train", *TINY, "--lr", "-1", "--out", str(tmp_path / "x.jsonl")])
    assert rc == 2 and "lr" in capsys.readouterr().err
    rc = main(["train", *TINY, "--n-heads", "3", "--out", str(tmp_path / "x.jsonl")])
    assert rc == 2 and "divide" in capsys.readouterr().err
    rc = main(["train", *TINY, "--data", "wikitext2", "--data-dir", str(tmp_path / "none")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_sweep_runs_the_grid_and_skips_it_the_second_time(tmp_path, capsys):
    out = tmp_path / "sweep.jsonl"
    rc = main(["sweep", *TINY, *GRID, "--backend", "inline", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    recs = lines(out)
    assert len(recs) == 4 and {r["status"] for r in recs} == {"ok"}
    assert sorted((r["tags"]["reg_strength"], r["tags"]["seed"]) for r in recs) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(r["result"]["train_config"]["regularizer"] == "locater" for r in recs)
    assert "4 points, 0 already finished" in text and "lr=0.003, reg_strength=1" in text
    rc = main(["sweep", *TINY, *GRID, "--backend", "inline", "--out", str(out)])
    assert rc == 0 and "4 points, 4 already finished" in capsys.readouterr().out
    assert len(lines(out)) == 4
    # one more seed: only the two new points run
    rc = main(["sweep", *TINY, *GRID[:-1], "0,1,2", "--backend", "inline", "--out", str(out)])
    assert rc == 0 and "6 points, 4 already finished" in capsys.readouterr().out
    assert len(lines(out)) == 6


def test_sweep_in_worker_processes_from_the_installed_command(tmp_path):
    """`qklab sweep --workers 2` as typed in a shell: same records as inline, a progress bar on stderr."""
    out, ref = tmp_path / "w2.jsonl", tmp_path / "inline.jsonl"
    args = [a for a in TINY if a != "--no-progress"]
    run = subprocess.run([QKLAB, "sweep", *args, *GRID, "--workers", "2", "--out", str(out)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "4/4" in run.stderr and "points" in run.stderr  # tqdm: points done / total
    assert main(["sweep", *TINY, *GRID, "--backend", "inline", "--out", str(ref)]) == 0
    a, b = read_records(out), read_records(ref)
    assert set(a) == set(b) and all(a[k]["result"] == b[k]["result"] for k in a)


@pytest.mark.parametrize("args, message", [
    (["--seeds", ""], "--seeds is empty"),
    (["--reg-strengths", ","], "--reg-strengths is empty"),
    (["--seeds", "0,0"], "--seeds repeats a value"),
    (["--lrs", "0"], "--lrs must be a positive"),
    (["--reg-strengths", "-1"], "--reg-strengths must be a finite number >= 0"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--device", "cuda:0"] if not __import__("torch").cuda.is_available() else ["--device", "tpu"], "device"),
    (["--data", "wikitext2", "--data-dir", "/nonexistent/wikitext"], "'/nonexistent/wikitext' does not exist"),
    (["--data", "pydoc", "--data-dir", "."], "--data-dir is for --data wikitext2"),
    (["--vocab-size", "1"], "--vocab-size must be at least 2"),
])
def test_sweep_bad_input_stops_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "sweep.jsonl"
    rc = main(["sweep", *TINY, *GRID, *args, "--backend", "inline", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.startswith("qklab sweep: error:"), err
    assert not out.exists() or read_records(out) == {}


def test_sweep_bad_outputs_and_data_folders(tmp_path, capsys):
    base = ["sweep", *TINY, *GRID, "--backend", "inline"]
    assert main([*base, "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main([*base, "--out", str(tmp_path / "file" / "r.jsonl")]) == 2
    assert "--out" in (err := capsys.readouterr().err) and "is a file, not a folder" in err
    empty = tmp_path / "wt"
    empty.mkdir()
    (empty / "wiki.train.raw").write_text("some words\n")
    rc = main([*base[:-2], "--backend", "inline", "--data", "wikitext2", "--data-dir", str(empty), "--out",
               str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "lacks the WikiText-2 raw file(s) wiki.valid.raw" in err and "wiki.train.raw" not in err
    with pytest.raises(SystemExit) as ex:  # argparse: unknown choice
        main([*base[:-2], "--backend", "dask"])
    assert ex.value.code == 2 and "invalid choice: 'dask'" in capsys.readouterr().err


def test_sweep_reads_wikitext_from_the_folder_given(tmp_path, capsys):
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "wiki.train.raw").write_text(" = Title = \n the cat sat on the mat . \n" * 30)
    (wt / "wiki.valid.raw").write_text(" the mat sat on the cat . \n" * 10)
    out = tmp_path / "r.jsonl"
    rc = main(["sweep", *TINY, "--reg-strengths", "0", "--seeds", "0", "--data", "wikitext2", "--level", "word",
               "--data-dir", str(wt), "--backend", "inline", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    rec, = read_records(out).values()
    assert rec["args"]["data"] == {"kind": "wikitext2", "path": str(wt.resolve()), "level": "word"}
    assert rec["result"]["data"]["name"] == "wikitext2-word"


def test_reproduce_locater_tiny_runs_and_resumes(tmp_path, capsys, monkeypatch):
    from qklab.reproduce import locater_points

    out = tmp_path / "loc.jsonl"
    cmd = ["reproduce", "locater", "--scale", "tiny", "--device", "cpu", "--backend", "inline", "--no-progress",
           "--out", str(out)]
    assert main(cmd) == 0
    text = capsys.readouterr().out
    points, note = locater_points("tiny", device="cpu")
    assert note in text and f"{len(points)} points, 0 already finished in {out.resolve()}" in text
    assert f"estimated time: about" in text and "from a short timing of one point here" in text
    assert "LocAteR variance" in text and "d ppl" in text  # locater_table's header and rows
    assert sorted(read_records(out)) == sorted(point_key(p) for p in points)
    assert main(cmd) == 0
    assert f"{len(points)} points, {len(points)} already finished" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == len(points)


@pytest.mark.parametrize("args, message", [
    (["--wikitext-dir", "/nonexistent/wikitext-2-raw"], "does not exist"),
    (["--strengths", ""], "strengths"),
    (["--seeds", "1,1"], "seeds"),
    (["--steps", "0"], "steps"),
    (["--workers", "-2"], "--workers must be at least 1"),
    (["--device", "banana"], "--device"),
    (["--seeds=-1"], "--seeds must be integers >= 0"),
    (["--strengths", "1,1"], "--strengths repeats a value"),
    (["--out", "/etc/hostname/x.jsonl"], "--out '/etc/hostname/x.jsonl' cannot be written: '/etc/hostname' is a file"),
    *([(["--device", "cuda"], "--device")] if not __import__("torch").cuda.is_available() else []),
])
def test_reproduce_bad_input_stops_at_once(tmp_path, capsys, args, message):
    out = tmp_path / "loc.jsonl"
    t0 = time.perf_counter()
    rc = main(["reproduce", "locater", "--scale", "paper", "--no-progress", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.startswith("qklab reproduce: error:"), err
    assert time.perf_counter() - t0 < 30 and not out.exists()  # no error record per point: nothing at all


@pytest.mark.parametrize("option", ["--strengths", "--weight-decay", "--reg-strength", "--lr", "--reg-strengths"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_numbers_are_refused_by_option_name(tmp_path, capsys, option, value):
    command = {"--strengths": ["reproduce", "locater"], "--reg-strengths": ["sweep"]}.get(option, ["train"])
    with pytest.raises(SystemExit) as stop:
        main([*command, f"{option}={value}", "--out", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"argument {option}" in err and "finite" in err, err


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "/proc/x.pt"], "--checkpoint '/proc/x.pt' cannot be written"),
    (["--out", "/proc/x.jsonl"], "--out '/proc/x.jsonl' cannot be written"),
    (["--resume", "garbage.pt"], "--resume 'garbage.pt' is not a file"),
])
def test_train_checks_its_paths_before_training(tmp_path, capsys, monkeypatch, args, message):
    import qklab.train

    monkeypatch.setattr(qklab.train.Transformer, "__init__", lambda *a, **k: pytest.fail("trained despite bad input"))
    monkeypatch.chdir(tmp_path)
    rc = main(["train", *TINY, *(["--out", str(tmp_path / "r.jsonl")] if "--out" not in args else []), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.startswith("qklab train: error:"), err


def test_train_resume_of_a_file_that_is_no_checkpoint_names_the_option(tmp_path, capsys):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint")
    rc = main(["train", *TINY, "--out", str(tmp_path / "r.jsonl"), "--resume", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and f"--resume {str(bad)!r} is not a qklab checkpoint" in err, err


def test_train_does_not_append_to_a_sweep_or_another_run(tmp_path, capsys):
    sweep_file = tmp_path / "sweep.jsonl"
    assert main(["sweep", *TINY, *GRID, "--backend", "inline", "--out", str(sweep_file)]) == 0
    before = sweep_file.read_text()
    assert main(["train", *TINY, "--out", str(sweep_file)]) == 2
    assert "not a qklab train results file" in capsys.readouterr().err
    assert sweep_file.read_text() == before and read_records(sweep_file)  # still a resumable sweep
    run = tmp_path / "run.jsonl"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    assert main(["train", *TINY, "--out", str(run)]) == 2
    assert "already holds another training run" in capsys.readouterr().err


def test_a_results_file_of_another_grid_is_refused_with_what_differs(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["sweep", *TINY, *GRID, "--backend", "inline", "--out", str(out)]) == 0
    before = out.read_text()
    auto = [a if a != "cpu" else "auto" for a in TINY]
    assert main(["sweep", *auto, *GRID, "--backend", "inline", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "written by another grid" in err and "train.device: 'cpu' in the file, 'auto' now" in err, err
    longer = [*TINY[:5], "6", *TINY[6:]]  # --steps 6
    assert main(["sweep", *longer, *GRID, "--backend", "inline", "--out", str(out)]) == 2
    assert "train.steps: 4 in the file, 6 now" in capsys.readouterr().err
    rc = main(["reproduce", "locater", "--scale", "tiny", "--device", "cpu", "--backend", "inline", "--out", str(out)])
    assert rc == 2 and "command: 'sweep' in the file, 'reproduce locater' now" in capsys.readouterr().err
    assert out.read_text() == before
    # more seeds of the same grid are welcome
    assert main(["sweep", *TINY, *GRID[:-1], "0,1,2", "--backend", "inline", "--out", str(out)]) == 0


def test_reproduce_names_the_missing_wikitext_file(tmp_path, capsys):
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "wiki.valid.raw").write_text("x\n")
    rc = main(["reproduce", "locater", "--scale", "paper", "--wikitext-dir", str(wt), "--out", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "wiki.train.raw" in err and "wiki.valid.raw" not in err.split("lacks")[-1]


@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "SIGTERM")])
def test_ctrl_c_or_sigterm_then_the_same_command_resumes(tmp_path, sig, code, said):
    """SIGINT (what Ctrl-C sends) or SIGTERM (what `kill` and schedulers send) to `qklab sweep`: exit
    130 or 143 with a note; the finished points stay and the same command finishes the rest without
    running them again."""
    out = tmp_path / "r.jsonl"
    cmd = [QKLAB, "sweep", "--d-model", "16", "--seq-len", "16", "--steps", "150", "--batch-size", "8",
           "--log-every", "50", "--eval-batches", "1", "--device", "cpu", "--data", "random-walk", "--vocab-size", "6",
           "--reg-strengths", "0", "--seeds", "0,1,2,3", "--workers", "1", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_at_a_terminal)
    deadline = time.time() + 240
    while not (out.exists() and out.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and said in err and "run the same command again" in err, err
    assert str(out) in err  # the message names the file
    first = read_records(out)
    assert 1 <= len(first) < 4
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"4 points, {len(first)} already finished" in rerun.stdout
    final = read_records(out)
    assert len(final) == 4 and len(out.read_text().splitlines()) == 4
    assert all(final[k]["finished_at"] == first[k]["finished_at"] for k in first)  # not run again
