"""The package's modules import one another without circles (issues 25 and 28: runner <-> cluster,
model <-> regularizers, checks.core <-> checks.feedback and checks.mutants <-> checks.mutant_specs did). Every `import` counts, also one inside a function or under
`TYPE_CHECKING`: a circle there still means two modules that cannot be read one after the other."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "qklab"

# circles known and not yet broken; the set may only shrink
KNOWN: set[frozenset[str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from qklab.x import y`: module qklab.x.y if there is one, else a name in qklab.x
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                while t and t not in modules:  # `import qklab.x.y as z` where y is not a module
                    t = t.rpartition(".")[0]
                if t and t != name and t != "qklab":
                    graph[name].add(t)
    return graph


def mutual_pairs(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    return {frozenset({a, b}) for a, deps in graph.items() for b in deps if a in graph.get(b, set())}


def test_the_detector_sees_a_circle(tmp_path):
    graph = {"qklab.a": {"qklab.b"}, "qklab.b": {"qklab.a"}, "qklab.c": {"qklab.a"}}
    assert mutual_pairs(graph) == {frozenset({"qklab.a", "qklab.b"})}


def test_the_graph_reads_real_imports():
    graph = import_graph()
    assert "qklab.records" in graph["qklab.runner"]
    assert "qklab.records" in graph["qklab.cluster"]
    assert "qklab.regularizers" in graph["qklab.model"]


def test_no_module_pair_imports_each_other():
    found = mutual_pairs(import_graph())
    new = found - KNOWN
    assert not new, f"modules that import each other: {sorted(sorted(p) for p in new)}"
    fixed = KNOWN - found
    assert not fixed, f"no longer circular, remove from KNOWN: {sorted(sorted(p) for p in fixed)}"
