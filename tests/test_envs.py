"""Conda environments per rule (envs/*.yaml, the rules' `conda:` directives): each file parses
and names every package that its rules' code imports. The imports are read from the code
itself: the `vscreen` subcommand a rule's shell command calls, that function's imports, and
everything the package modules it reaches import in turn (optional imports - a `try` that
catches ImportError, and its fallback - are left out)."""

from __future__ import annotations

import argparse
import ast
import re
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from pipeline.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pipeline"

# import name -> the names its package has in a conda channel or on PyPI (either may be listed)
DISTRIBUTIONS = {
    "rdkit": {"rdkit"},
    "meeko": {"meeko"},
    "vina": {"vina"},
    "openmm": {"openmm"},
    "pdbfixer": {"pdbfixer"},
    "openff": {"openff-toolkit"},
    "openmmforcefields": {"openmmforcefields"},
    "gemmi": {"gemmi"},
    "dimorphite_dl": {"dimorphite-dl"},
    "molscrub": {"molscrub"},
    "dockstring": {"dockstring"},
    "prolif": {"prolif"},
    "posebusters": {"posebusters"},
    "MDAnalysis": {"mdanalysis"},
    "numpy": {"numpy"},
    "scipy": {"scipy"},
    "pandas": {"pandas"},
    "pyarrow": {"pyarrow"},
    "jsonschema": {"jsonschema"},
    "yaml": {"pyyaml"},
    "tqdm": {"tqdm"},
    "matplotlib": {"matplotlib", "matplotlib-base"},
    "torch": {"pytorch", "torch"},
    "torch_geometric": {"pytorch_geometric", "torch-geometric"},
    "dask": {"dask", "dask-core"},
    "distributed": {"distributed"},
    "dask_jobqueue": {"dask-jobqueue"},
    "sklearn": {"scikit-learn"},
}


# --------------------------------------------------------------------------- the Snakefile's rules


def snakefile_rules(text: str) -> dict[str, dict]:
    """Rules (and checkpoints) with a shell command: their `conda:` file and the vscreen subcommand."""
    rules: dict[str, dict] = {}
    blocks = re.split(r"^\s*(?:rule|checkpoint) (\w+):\s*$", text, flags=re.MULTILINE)
    for name, body in zip(blocks[1::2], blocks[2::2]):
        command = re.search(r"\bvscreen ([a-z-]+)", body)
        if "shell:" not in body or not command:
            continue
        conda = re.search(r"^\s*conda:\s*\n\s*[\"']([^\"']+)[\"']", body, flags=re.MULTILINE)
        rules[name] = {"conda": conda.group(1) if conda else None, "command": command.group(1)}
    return rules


# --------------------------------------------------------------------------- imports, read from the code


def _module_file(module: str) -> Path:
    path = PACKAGE.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _absolute(current: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = current.split(".")
    if _module_file(current).name != "__init__.py":
        parts = parts[:-1]
    parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def _optional(node: ast.Try) -> bool:
    names = set()
    for handler in node.handlers:
        for n in ast.walk(handler.type) if handler.type is not None else []:
            if isinstance(n, ast.Name):
                names.add(n.id)
    return bool(names & {"ImportError", "ModuleNotFoundError"})


def _imports(tree: ast.AST, current: str) -> tuple[set[str], set[str]]:
    """(package modules, third-party top-level names) imported anywhere in ``tree``, optional ones left out."""
    modules, third = set(), set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Try) and _optional(node):  # the imports it tries, and their fallbacks
            for child in node.orelse + node.finalbody:
                visit(child)
            return
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                (modules if alias.name.split(".")[0] == "pipeline" else third).add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(current, node)
            if module.split(".")[0] == "pipeline":
                modules.add(module)
                modules.update(f"{module}.{a.name}" for a in node.names if _module_file(f"{module}.{a.name}").exists())
            else:
                third.add(module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return modules, {name.split(".")[0] for name in third}


@cache
def _module_imports(module: str) -> tuple[frozenset, frozenset]:
    modules, third = _imports(ast.parse(_module_file(module).read_text()), module)
    parts = module.split(".")
    modules |= {".".join(parts[:i]) for i in range(1, len(parts))}  # importing a.b.c runs a and a.b first
    return frozenset(modules), frozenset(third)


def third_party_imports(function: str) -> set[str]:
    """Top-level names of the non-standard-library packages that ``pipeline.cli.<function>`` can import."""
    cli = ast.parse((PACKAGE / "cli.py").read_text())
    defs = {node.name: node for node in cli.body if isinstance(node, ast.FunctionDef)}
    todo, seen_defs = [function], set()
    modules, third = set(), set()
    while todo:  # the command function and the cli helpers it calls
        name = todo.pop()
        if name in seen_defs:
            continue
        seen_defs.add(name)
        m, t = _imports(defs[name], "pipeline.cli")
        modules |= m
        third |= t
        todo += [
            n.func.id
            for n in ast.walk(defs[name])
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in defs
        ]
    seen, todo = set(), sorted(modules)
    while todo:
        module = todo.pop()
        if module in seen or not _module_file(module).exists():
            continue
        seen.add(module)
        m, t = _module_imports(module)
        third |= t
        todo += sorted(m - seen)
    return {name for name in third if name not in sys.stdlib_module_names and name != "pipeline"}


def _subcommand_functions() -> dict[str, str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: p.get_default("func").__name__ for name, p in sub.choices.items()}


# --------------------------------------------------------------------------- environment files


def _package_name(spec: str) -> str:
    """``openmm>=8.1`` / ``conda-forge::rdkit=2024.03`` -> the package name, lower case."""
    spec = spec.split("::")[-1].strip()
    return re.split(r"[\s<>=!~\[;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def env_packages(path: Path) -> set[str]:
    """Every conda and pip package an environment file lists."""
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict) and env.get("channels") and env.get("dependencies"), f"{path}: not an environment file"
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"{path}: unknown dependency section {dep}"
            names |= {_package_name(p) for p in dep["pip"]}
        else:
            names.add(_package_name(str(dep)))
    return names


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


RULES = snakefile_rules((REPO / "Snakefile").read_text())


def test_every_shell_rule_has_a_conda_environment_file():
    assert {"dock", "refine", "featurize", "score"} <= set(RULES)
    missing = {name for name, rule in RULES.items() if not rule["conda"]}
    assert not missing, f"rules without a conda: directive: {sorted(missing)}"
    for name, rule in RULES.items():
        assert (REPO / rule["conda"]).is_file(), f"rule {name}: {rule['conda']} does not exist"
    assert {RULES[r]["conda"] for r in ("refine",)} == {"envs/md.yaml"}
    assert {RULES[r]["conda"] for r in ("featurize", "score")} == {"envs/ml.yaml"}
    assert RULES["dock"]["conda"] == "envs/docking.yaml"


@pytest.mark.parametrize("env_file", sorted(p.name for p in (REPO / "envs").glob("*.yaml")))
def test_environment_names_the_packages_its_rules_import(env_file):
    listed = {_normal(n) for n in env_packages(REPO / "envs" / env_file)}
    functions = _subcommand_functions()
    rules = {name: rule for name, rule in RULES.items() if rule["conda"] == f"envs/{env_file}"}
    assert rules, f"no rule uses envs/{env_file}"
    for name, rule in sorted(rules.items()):
        imports = third_party_imports(functions[rule["command"]])
        assert imports, f"rule {name}: found no imports for 'vscreen {rule['command']}'"
        unknown = imports - set(DISTRIBUTIONS)
        assert not unknown, f"rule {name} imports {sorted(unknown)}: add their package names to DISTRIBUTIONS"
        missing = {i for i in imports if not {_normal(d) for d in DISTRIBUTIONS[i]} & listed}
        assert not missing, f"envs/{env_file} lacks the packages of {sorted(missing)}, imported by rule {name}"


def test_environments_hold_what_the_issue_asks_for():
    """MD: openmm + openff-toolkit + openmmforcefields; ML: torch + PyG + dask."""
    assert {"openmm", "openff-toolkit", "openmmforcefields"} <= env_packages(REPO / "envs" / "md.yaml")
    assert {"pytorch", "pytorch-geometric", "dask", "distributed"} <= env_packages(REPO / "envs" / "ml.yaml")
    assert {"vina", "meeko", "rdkit"} <= env_packages(REPO / "envs" / "docking.yaml")


def test_import_reader_sees_lazy_and_transitive_imports():
    """The reader follows imports inside functions and through package modules, and skips optional ones."""
    dock = third_party_imports("cmd_dock")
    assert {"vina", "meeko", "rdkit", "pandas"} <= dock  # vina only inside pipeline.docking's functions
    assert "openff" not in third_party_imports("cmd_refine")  # guarded by except ImportError
    assert "torch" in third_party_imports("cmd_score")
