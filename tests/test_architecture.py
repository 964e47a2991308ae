"""The package tree is the architecture (docs/architecture.md): imports point down the layers
only, workload, hardware and network never import each other, no two modules import each other
in a cycle, and no module or function grows past the size a reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "simulator"
LAYERS = {"core": 0, "workload": 1, "hardware": 1, "network": 1, "system": 2, "inputs": 3, "results": 4,
          "studies": 5, "validation": 6}
"""Layer of each package; the modules at the top of ``simulator/`` (the public face, the CLI) are above them all."""
TOP = max(LAYERS.values()) + 1
MAX_TOP_MODULES = 6
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The ``simulator`` modules that module ``name`` imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t == "simulator" or t.startswith("simulator.")}
    return out


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS):
        return parts[1], LAYERS[parts[1]]
    return "(top)", TOP


GRAPH = nx.DiGraph([(m, t) for m, p in MODULES.items() for t in _imports(m, p) if t != m])


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    package, rank = _layer(module)
    wrong = []
    for target in sorted(GRAPH.successors(module)) if module in GRAPH else []:
        other, other_rank = _layer(target)
        if other == package:
            continue
        if other_rank >= rank:
            wrong.append(f"{target} ({other}, layer {other_rank})")
    assert not wrong, f"{module} ({package}, layer {rank}) imports upward or sideways: {', '.join(wrong)}"


def test_no_import_cycle_between_modules():
    cycles = list(nx.simple_cycles(GRAPH))
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_the_top_of_the_package_is_small():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_and_functions_stay_readable(module):
    source = MODULES[module].read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{module}: {len(source.splitlines())} lines"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_docs_architecture_names_every_module():
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    names = {p.name for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    missing = sorted(n for n in names if f" {n} " not in doc and f" {n}\n" not in doc)
    assert not missing, f"docs/architecture.md does not list {missing}"
