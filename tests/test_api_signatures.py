"""The API reference shows a dataclass field's default made by its factory, not autodoc's `= <factory>`
(_ext/qklab_book.py, `factory_defaults`; issue 18)."""

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("qklab_book_ext", ROOT / "_ext" / "qklab_book.py")
qklab_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qklab_book)


@dataclass
class _Config:
    steps: int = 10
    metrics: tuple = field(default_factory=lambda: ("entropy", "rank"))
    by_name: dict[str, int] = field(default_factory=dict)
    big: list = field(default_factory=lambda: list(range(100)))


def test_factory_defaults_are_shown():
    sig = "(steps: int = 10, metrics: tuple = <factory>, by_name: dict[str, int] = <factory>, big: list = <factory>)"
    assert qklab_book.factory_defaults(_Config, sig) == (
        "(steps: int = 10, metrics: tuple = ('entropy', 'rank'), by_name: dict[str, int] = {}, "
        "big: list = (made per instance))"
    )
    # autodoc with autodoc_typehints = "description" writes no annotation
    assert qklab_book.factory_defaults(_Config, "(steps=10, metrics=<factory>)") == "(steps=10, metrics=('entropy', 'rank'))"


def test_package_dataclasses_have_no_factory_left():
    """The classes whose API entries showed `= <factory>` before (qklab.train.History, ...)."""
    import inspect

    from qklab.checks.core import Case
    from qklab.reproducibility import Comparison
    from qklab.train import History

    for cls in (History, Comparison, Case):
        raw = str(inspect.signature(cls))
        assert "<factory>" in raw  # what autodoc shows without the extension
        assert "<factory>" not in qklab_book.factory_defaults(cls, raw), cls.__name__
