"""Errors a user can act on stop the run early, with one sentence saying what to fix.

Each early error (missing receptor file, box outside the protein, empty library,
unknown or unreadable model) is checked three ways: the check itself, ``vscreen
check-config``, and ``snakemake`` stopping before any job runs.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.box import BoxError
from pipeline.library import LibraryError
from pipeline.preflight import check_box, check_inputs, check_library, check_model, check_receptor
from pipeline.receptor import ReceptorError

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo"


def _config(**sections) -> dict:
    cfg = {
        "run": "early",
        "library": {"path": str(DEMO / "library.csv")},
        "receptor": {"path": str(DEMO / "ACHE_target.pdbqt")},
        "box": {"vina_config": str(DEMO / "ACHE_conf.txt")},
        "score": {"enabled": False},
    }
    for key, value in sections.items():
        cfg[key] = value
    return cfg


def _validated(cfg: dict) -> dict:
    from pipeline.config import validate_config

    return validate_config(copy.deepcopy(cfg))


def _empty_library(tmp_path: Path) -> Path:
    path = tmp_path / "empty.csv"
    path.write_text("id,smiles\n")
    return path


def _broken_model(tmp_path: Path) -> Path:
    folder = tmp_path / "models" / "broken"
    folder.mkdir(parents=True)
    (folder / "card.json").write_text("{ this is not json")
    return folder


# (config change, expected message fragments) for each early error
CASES = {
    "missing receptor": (
        lambda tmp: {"receptor": {"path": str(tmp / "no_such_receptor.pdb")}},
        ["receptor file", "no_such_receptor.pdb", "does not exist", "fix receptor.path"],
    ),
    "box outside the protein": (
        lambda tmp: {"box": {"center": [300.0, 300.0, 300.0], "size": [20, 20, 20]}},
        ["holds 0 receptor atoms", "outside the protein", "fix box.center"],
    ),
    "empty library": (
        lambda tmp: {"library": {"path": str(_empty_library(tmp))}},
        ["empty.csv", "is empty", "library.path"],
    ),
    "unknown model": (
        lambda tmp: {"score": {"enabled": True, "model": "no_such_model", "models_dir": str(tmp / "models")}},
        ["model 'no_such_model' not found", "set score.model"],
    ),
    "unreadable model": (
        lambda tmp: {"score": {"enabled": True, "model": str(_broken_model(tmp))}},
        ["card.json", "cannot be read", "set score.model"],
    ),
}


def _one_sentence(message: str) -> None:
    assert "\n" not in message.strip() and "Traceback" not in message


def test_checks_pass_on_the_demo_inputs(tmp_path):
    cfg = _validated(_config())
    check_inputs(cfg)
    assert check_box(cfg["box"], check_receptor(cfg["receptor"])).size == (30.0, 30.0, 30.0)


def test_a_gzipped_receptor_and_a_reference_ligand_box_pass(repo):
    """``protein.pdb.gz`` as downloaded: the box check reads it too (it used to stop on a decode error)."""
    series = repo / "tests" / "data" / "unifep_ChEMBL__PLG__CHEMBL3295545"
    cfg = _validated(
        _config(
            receptor={"path": str(series / "protein.pdb.gz")},
            box={"reference_ligand": str(series / "ref_ligand.sdf")},
        )
    )
    check_inputs(cfg)
    assert check_box(cfg["box"], check_receptor(cfg["receptor"])).size[0] > 8.0


@pytest.mark.parametrize("case", list(CASES))
def test_each_early_error_names_the_fix(case, tmp_path):
    """The check raises a user error whose one-sentence message names the file or key to fix."""
    patch, fragments = CASES[case]
    cfg = _validated(_config(**patch(tmp_path)))
    from pipeline.scoring.ensemble import ModelError

    expected = {
        "missing receptor": ReceptorError,
        "box outside the protein": BoxError,
        "empty library": LibraryError,
        "unknown model": ModelError,
        "unreadable model": ModelError,
    }[case]
    with pytest.raises(expected) as info:
        check_inputs(cfg)
        check_model(cfg["score"])
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    _one_sentence(message)


def test_library_checks_read_only_the_first_row(tmp_path):
    big = tmp_path / "lib.smi"
    big.write_text("CCO first\n" + "not-a-smiles\n" * 1000)
    check_library(
        {"path": str(big), "format": "auto", "id_column": "id", "smiles_column": "smiles", "id_property": None}
    )
    with pytest.raises(LibraryError, match="does not exist; check library.path"):
        check_library(
            {
                "path": str(tmp_path / "gone.smi"),
                "format": "auto",
                "id_column": "id",
                "smiles_column": "smiles",
                "id_property": None,
            }
        )


@pytest.mark.parametrize("case", list(CASES))
def test_check_config_reports_the_early_error(case, tmp_path):
    """`vscreen check-config` exits 2 with the one-sentence message, no traceback."""
    patch, fragments = CASES[case]
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_config(**patch(tmp_path))))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "check-config", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr[-2000:]
    line = [l for l in result.stderr.splitlines() if l.startswith("vscreen check-config: error:")]
    assert len(line) == 1, result.stderr
    for fragment in fragments:
        assert fragment in line[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", list(CASES))
def test_snakemake_stops_before_any_job(case, repo, tmp_path):
    """The workflow stops while parsing (or, for the model, while building the DAG): no job runs."""
    patch, fragments = CASES[case]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_config(**patch(tmp_path))))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(repo / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(cfg),
            "--cores",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for fragment in fragments:
        assert fragment in output, output[-3000:]
    run = tmp_path / "results" / "early"
    written = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()) if run.exists() else []
    # only the resolved config may exist (written at parse time); no stage produced anything
    assert written in ([], ["config.yaml"]), written
    if not case.endswith("model"):
        assert written == [], "input checks run before anything is written"


def test_dockstring_target_box_is_checked(tmp_path):
    """A dockstring target with no box keys uses its own box, which sits on the protein."""
    pytest.importorskip("dockstring")
    cfg = _validated(
        {
            "run": "ds",
            "library": {"path": str(DEMO / "library.csv")},
            "receptor": {"dockstring": "ACHE"},
            "box": {},
            "score": {"enabled": False},
        }
    )
    check_inputs(cfg)
    bad = copy.deepcopy(cfg)
    bad["receptor"]["dockstring"] = "NOT_A_TARGET"
    with pytest.raises(ReceptorError, match="dockstring target"):
        check_inputs(bad)


def test_model_check_accepts_a_model_folder(tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(DEMO.parents[1] / "models" / "default", folder, ignore=shutil.ignore_patterns("data", "*.py"))
    assert check_model({"model": str(folder), "models_dir": str(tmp_path)}) == folder


def test_model_check_refuses_a_card_that_is_not_a_model_card(tmp_path):
    from pipeline.scoring.ensemble import ModelError

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "card.json").write_text(json.dumps({"schema": {}, "task": "classification"}))
    with pytest.raises(ModelError):
        check_model({"model": str(folder), "models_dir": str(tmp_path)})
