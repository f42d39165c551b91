"""qklab.ledger records claims, asserts them when asked, and reads them back."""

import pytest

from qklab import ledger


def test_claim_written_and_loaded(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QKLAB_LEDGER_DIR", str(tmp_path))
    assert ledger.claim("a", chapter="01_x", statement="s", source="course", measured=0.123456, expected="< 1", holds=True)
    assert "[claim a] holds: measured 0.1235" in capsys.readouterr().out
    ledger.claim("b", chapter="01_x", statement="t", source="Bao et al. 2024", measured="no", expected="yes", holds=False, must_hold=False)
    rows = ledger.load_claims(tmp_path)
    assert [(r.id, r.holds, r.measured) for r in rows] == [("a", True, "0.1235"), ("b", False, "no")]


def test_failed_claim_raises_and_bad_source(tmp_path, monkeypatch):
    monkeypatch.setenv("QKLAB_LEDGER_DIR", str(tmp_path))
    with pytest.raises(AssertionError, match="does not hold"):
        ledger.claim("c", chapter="02_y", statement="s", source="course", measured=2.0, expected="< 1", holds=False)
    with pytest.raises(ValueError, match="source must be"):
        ledger.claim("d", chapter="02_y", statement="s", source="a blog", measured=1.0, expected="", holds=True)


def test_book_root_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv("QKLAB_LEDGER_DIR", raising=False)
    (tmp_path / "_toc.yml").write_text("format: jb-book\n")
    (tmp_path / "chapters").mkdir()
    assert ledger.ledger_dir(tmp_path / "chapters") == tmp_path / "_build" / "claims"
