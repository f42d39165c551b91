"""qklab.ledger records claims by kind, asserts only quoted numbers, and reads them back."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qklab import ledger


def test_claims_written_and_loaded_with_their_kind(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QKLAB_LEDGER_DIR", str(tmp_path))
    assert ledger.claim("a", kind="quoted", chapter="01_x", statement="s", source="course", measured=0.123456,
                        expected="< 1", holds=True) is None
    assert "Quoted (course) holds: measured 0.1235, expected < 1  [a]" in capsys.readouterr().out
    # A failed prediction is recorded and shown, never raised.
    ledger.claim("b", kind="prediction", chapter="01_x", statement="t", source="Bao et al. 2024", measured="no",
                 expected="yes", holds=False)
    assert "Prediction (Bao et al. 2024) does NOT hold" in capsys.readouterr().out
    rows = ledger.load_claims(tmp_path)
    assert [(r.id, r.kind, r.holds, r.measured) for r in rows] == [("a", "quoted", True, "0.1235"),
                                                                  ("b", "prediction", False, "no")]


def test_quoted_number_outside_its_band_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("QKLAB_LEDGER_DIR", str(tmp_path))
    with pytest.raises(AssertionError, match="left its band"):
        ledger.claim("c", kind="quoted", chapter="02_y", statement="s", source="course", measured=2.0,
                     expected="< 1", holds=False)


def test_bad_source_and_kind_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("QKLAB_LEDGER_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="source must be"):
        ledger.claim("d", kind="quoted", chapter="02_y", statement="s", source="a blog", measured=1.0, expected="",
                     holds=True)
    with pytest.raises(ValueError, match="kind must be"):
        ledger.claim("e", kind="guess", chapter="02_y", statement="s", source="course", measured=1.0, expected="",
                     holds=True)
    with pytest.raises(TypeError):
        ledger.claim("f", chapter="02_y", statement="s", source="course", measured=1.0, expected="", holds=True)


def test_verdict_html_marks_a_failed_prediction():
    record = ledger.Claim("g", "03_z", "s", "course", "1", "2", False, "prediction")
    html = ledger._Verdict(record)._repr_html_()
    assert "qklab-prediction" in html and "qklab-fails" in html and "does not hold" in html


def test_book_root_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv("QKLAB_LEDGER_DIR", raising=False)
    (tmp_path / "_toc.yml").write_text("format: jb-book\n")
    (tmp_path / "chapters").mkdir()
    assert ledger.ledger_dir(tmp_path / "chapters") == tmp_path / "_build" / "claims"


def test_two_notebooks_of_one_chapter_writing_at_once_lose_nothing(tmp_path):
    """A chapter and its learner notebook run at the same time under nbval with two workers and
    write the same chapter file: no reader may see it half written, no claim may be lost."""
    script = textwrap.dedent("""
        import sys
        from qklab import ledger

        ledger._reset_this_process.add("06_x")  # not this chapter's first claim here: keep the file
        for i in range(150):
            ledger.claim(f"{sys.argv[1]}{i}", kind="prediction", chapter="06_x", statement="s", source="course",
                         measured=i, expected="-", holds=True)
    """)
    env = {**os.environ, "QKLAB_LEDGER_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", script, tag], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for tag in ("chapter-", "exercise-")]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    ids = {c.id for c in ledger.load_claims(tmp_path)}
    assert ids == {f"{tag}{i}" for tag in ("chapter-", "exercise-") for i in range(150)}


def _notebook(path, *sources):
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": s} for s in sources]}))


def test_claims_in_code_and_the_ones_that_did_not_run(tmp_path):
    _notebook(tmp_path / "03_x.ipynb", 'claim("a", kind="quoted")\nx = 1', ['for n in ns:\n', '    claim(f"b-{n}", kind=k)'],
              "claim(\n    'c', kind='prediction')")
    _notebook(tmp_path / "04_y.ipynb", "print('no claims here')")
    found = ledger.claims_in_code(tmp_path)
    assert found == {"03_x": ["a", "{f}b-{n}", "c"]}
    rec = lambda i: ledger.Claim(i, "03_x", "s", "course", "1", "e", True)  # noqa: E731
    assert ledger.claims_not_run(found, [rec("a"), rec("b-7"), rec("c")]) == []
    assert ledger.claims_not_run(found, [rec("a")]) == [("03_x", "b-{n}"), ("03_x", "c")]
    assert ledger.claims_not_run(found, [rec("b-"), rec("c"), rec("a")]) == [("03_x", "b-{n}")]  # {n} is not empty


def test_every_chapter_claim_is_found_in_the_code():
    root = Path(__file__).resolve().parents[1]
    found = ledger.claims_in_code(root / "chapters")
    in_appendix = ledger.claims_in_code(root / "appendix")  # the claims ledger reads both folders
    assert sum(map(len, found.values())) > 150 and "{f}control-gain-{L}-steps" in found["10_locater"]
    assert "committed-point-reproduces" in in_appendix["8_locater_sweep"]


def test_a_failed_chapter_is_one_line_naming_its_check():
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("execution_report", root / "_ext" / "execution_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    tb = ("\x1b[0;31m---------------------------------------------------------------------------\x1b[0m\n"
          "\x1b[0;31mAssertionError\x1b[0m                            Traceback (most recent call last)\n"
          "Cell \x1b[0;32mIn[43], line 12\x1b[0m\n      claim(...)\n"
          "\x1b[0;31mAssertionError\x1b[0m: quoted number 'committed-point-reproduces' left its band: measured 0.3 seed sd\n")
    assert report.error_line(tb) == ("AssertionError: quoted number 'committed-point-reproduces' left its band: "
                                     "measured 0.3 seed sd")
    assert report.error_line("") == "no traceback recorded"
