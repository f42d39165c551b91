"""References between notebooks read the same in the book and in JupyterLab.

jupyterlab-myst resolves a label only inside the notebook that defines it, so a `{numref}` to another
chapter shows its template ("chapter %s") when a chapter is opened in Lab (`jupyter lab chapters/`).
The notebooks therefore refer to other chapters with Markdown links to the chapter's notebook,
`[chapter 6](06_qk_eigenspectrum.ipynb)`: Sphinx turns them into links to the page, Lab opens the
notebook. The number is written out, so these tests check it against the table of contents.
The Markdown pages (`intro.md`, `appendix/*.md`) are read only in the book and keep `{numref}`.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from qklab.exercises import chapter_number

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*ROOT.glob("chapters/*.ipynb"), *ROOT.glob("appendix/*.ipynb")])
LINK = re.compile(r"\[(?P<text>[^\]]*)\]\((?P<target>[^)\s#]+\.ipynb)(?:#[^)]*)?\)")


def _toc_numbers() -> dict[Path, int]:
    """Chapter numbers as Jupyter Book assigns them: the numbered parts of `_toc.yml`, their globs
    in sorted order, one count running on across parts (`use_multitoc_numbering`)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    numbers, count = {}, 0
    for part in toc["parts"]:
        for entry in part["chapters"]:
            paths = sorted(ROOT.glob(entry["glob"] + ".ipynb")) if "glob" in entry else [ROOT / (entry["file"] + ".ipynb")]
            for path in paths:
                if part.get("numbered"):
                    count += 1
                    numbers[path.resolve()] = count
    return numbers


def _markdown(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "markdown"]


def test_the_package_numbers_chapters_as_the_table_of_contents_does():
    numbers = _toc_numbers()
    assert len(numbers) >= 11
    for path in sorted(ROOT.glob("chapters/*.ipynb")):
        assert chapter_number(path.name) == numbers.get(path.resolve()), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_numref_in_notebooks(path):
    for source in _markdown(path):
        assert "{numref}" not in source, (
            f"{path.name}: a {{numref}} reads as its template in JupyterLab; link the chapter's "
            f"notebook instead, e.g. [chapter 6](06_qk_eigenspectrum.ipynb):\n{source[:300]}")


def _link_problems(sources: list[str], folder: Path) -> list[str]:
    """Links to a notebook that does not exist, or whose text ends in a number other than the book's."""
    numbers, problems = _toc_numbers(), []
    for source in sources:
        for link in LINK.finditer(source):
            target = (folder / link.group("target")).resolve()
            stated = re.search(r"(\d+)\s*$", link.group("text"))
            if not target.is_file():
                problems.append(f"{link.group(0)} points to no notebook")
            elif stated and int(stated.group(1)) != numbers.get(target):
                problems.append(f"{link.group(0)} says {stated.group(1)}, the book numbers {target.name} "
                                f"{numbers.get(target)}")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_links_to_chapters_exist_and_state_the_right_number(path):
    links = [m.group(0) for source in _markdown(path) for m in LINK.finditer(source)]
    assert _link_problems(_markdown(path), path.parent) == [], path.name
    if path.name.startswith(("01_", "08_")):
        assert links, f"{path.name} should link other chapters"  # the pattern still matches the prose


def _labels() -> dict[str, Path]:
    """Every label a notebook or page defines (`(label)=` above a heading, `:label:` of a directive)."""
    found = {}
    for path in [*NOTEBOOKS, *ROOT.glob("appendix/*.md"), ROOT / "intro.md"]:
        text = "\n".join(_markdown(path)) if path.suffix == ".ipynb" else path.read_text(encoding="utf-8")
        for label in re.findall(r"^\(([\w-]+)\)=", text, re.MULTILINE) + re.findall(r":label:\s*([\w-]+)", text):
            found[label] = path
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_refs_to_other_files_carry_their_text(path):
    """JupyterLab shows a `{ref}` to a label of another file as the bare label
    ("sec-prevents-both-collapses"); with its text written in the role it reads as in the book."""
    labels = _labels()
    for source in _markdown(path):
        for role in re.finditer(r"\{ref\}`([^`<]*)`", source):
            label = role.group(1).strip()
            assert labels.get(label) in (path, None), (
                f"{path.name}: {role.group(0)} points into {labels[label].name}; write it as "
                f"{{ref}}`<the section's title> <{label}>`")


def test_the_link_check_sees_a_wrong_number_and_a_missing_notebook():
    chapters = ROOT / "chapters"
    assert _link_problems(["see [chapter 6](06_qk_eigenspectrum.ipynb)"], chapters) == []
    assert _link_problems(["see [Chapter 5](06_qk_eigenspectrum.ipynb#sec-x)"], chapters)
    assert _link_problems(["chapters 5 and [7](06_qk_eigenspectrum.ipynb)"], chapters)
    assert _link_problems(["see [chapter 6](06_eigenspectrum.ipynb)"], chapters)
