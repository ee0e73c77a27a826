"""The package's import graph: no cycles among ``pipeline`` modules, and every module imports on its own.

A cycle hidden behind a function-local import (``def f(): from .b import x`` in a module that
``b`` imports) works until someone moves the import to the top, or calls ``f`` while ``b`` is
half-initialised; so the cycle check counts every import statement, wherever it sits.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pipeline"


def package_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the ``pipeline`` package (packages by their ``__init__``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """Package modules one import statement of ``module`` loads (besides ancestors, always loaded first)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    if node.level:
        base = module if is_package else module.rsplit(".", 1)[0]
        for _ in range(node.level - 1):
            base = base.rsplit(".", 1)[0]
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    submodules = {f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules}
    names_only = len(submodules) < len(node.names)  # `from pkg import name`: pkg's __init__ runs for the name
    return submodules | ({target} if names_only and target in modules else set())


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its body (function-local imports included)."""
    graph = {}
    for module, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _imported(module, path.name == "__init__.py", node, modules)
        ancestors = {module.rsplit(".", k)[0] for k in range(1, module.count(".") + 1)}
        graph[module] = edges - ancestors - {module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted; empty without cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_cycle_check_finds_a_cycle_hidden_in_a_function():
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert import_cycles(graph) == [["p.a", "p.b", "p.c"]]
    assert import_cycles({"p.a": {"p.b"}, "p.b": set()}) == []


def test_no_import_cycle_among_package_modules():
    modules = package_modules()
    assert "pipeline.receptor.prepare" in modules and "pipeline.box" in modules
    graph = import_graph(modules)
    assert "pipeline.box" not in {m.rsplit(".", 1)[0] for m in graph["pipeline.box"]}
    assert import_cycles(graph) == [], "import cycles (function-local imports included)"


@pytest.mark.parametrize("order", ["alphabetical", "reverse"])
def test_every_module_imports_in_a_fresh_interpreter(order):
    names = sorted(package_modules())
    if order == "reverse":
        names.reverse()
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run(
        [sys.executable, "-c", code, *names], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_top_level_entry_points_resolve_to_the_stage_functions():
    import pipeline
    from pipeline.docking import dock_chunk
    from pipeline.receptor import prepare_receptor

    assert pipeline.dock_chunk is dock_chunk and pipeline.prepare_receptor is prepare_receptor
    for name in pipeline.__all__:
        assert callable(getattr(pipeline, name)) or name == "__version__", name
    with pytest.raises(AttributeError, match="no_such_stage"):
        pipeline.no_such_stage  # noqa: B018
