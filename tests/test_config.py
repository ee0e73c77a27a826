"""Config validation: defaults, unknown keys and wrong types are named."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from pipeline.config import ConfigError, load_config, validate_config

MINIMAL = {"run": "t", "library": {"path": "x.smi"}, "receptor": {"dockstring": "ACHE"}, "box": {}}


def test_shipped_config_is_valid(repo):
    cfg = load_config(repo / "config" / "config.yaml")
    assert cfg["run"] == "demo"
    assert cfg["docking"]["exhaustiveness"] >= 1


def test_defaults_are_filled():
    cfg = validate_config(MINIMAL)
    assert cfg["docking"]["n_poses"] == 9 and cfg["ligands"]["ph"] == 7.4 and cfg["seed"] == 42


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"docking": {"exhaustivness": 8}}, "docking.exhaustivness"),
        ({"colour": "red"}, "colour"),
        ({"docking": {"exhaustiveness": "lots"}}, "docking.exhaustiveness"),
        ({"library": {"path": "x.smi", "chunk_size": 0}}, "library.chunk_size"),
        ({"library": {"path": "x.smi", "format": "mol9"}}, "library.format"),
        ({"run": "../escape"}, "run"),
    ],
)
def test_bad_config_names_the_key(patch, key):
    with pytest.raises(ConfigError) as info:
        validate_config({**MINIMAL, **patch})
    assert f"'{key}'" in str(info.value)


def test_receptor_and_box_choices():
    with pytest.raises(ConfigError, match="receptor.path"):
        validate_config({**MINIMAL, "receptor": {}})
    with pytest.raises(ConfigError, match="box"):
        validate_config({**MINIMAL, "receptor": {"path": "r.pdb"}})
    with pytest.raises(ConfigError, match="box.size"):
        validate_config({**MINIMAL, "box": {"center": [0, 0, 0]}})


def test_snakemake_stops_before_any_work(repo, tmp_path):
    """An unknown key stops `snakemake` at parse time, naming the key, with nothing written."""
    bad = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    bad["run"] = "badcfg"
    bad["docking"]["exhaustivness"] = 8
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", str(cfg), "--directory", str(repo), "-n"],
        capture_output=True,
        text=True,
        cwd=repo,
    )
    assert result.returncode != 0
    assert "docking.exhaustivness" in result.stdout + result.stderr
    assert not (repo / "results" / "badcfg").exists()


def test_tethered_mode_needs_a_reference_ligand():
    with pytest.raises(ConfigError, match="box.reference_ligand"):
        validate_config({**MINIMAL, "docking": {"mode": "tethered"}})
    cfg = validate_config({**MINIMAL, "box": {"reference_ligand": "ref.sdf"}, "docking": {"mode": "tethered"}})
    assert cfg["docking"]["mode"] == "tethered"
    assert validate_config(MINIMAL)["docking"]["mode"] == "dock"


def test_a_schema_default_is_the_cli_default_and_the_resolved_config(repo, tmp_path):
    """Defaults are written once, in pipeline/schema.yaml: a copy of the package with one default
    changed shows it in a stage's --help and in the resolved run config."""
    import shutil

    package = tmp_path / "pipeline"
    shutil.copytree(repo / "pipeline", package, ignore=shutil.ignore_patterns("__pycache__"))
    schema = package / "schema.yaml"
    text = schema.read_text()
    old = "exhaustiveness: {type: integer, minimum: 1, default: 8}"
    assert text.count(old) == 1
    schema.write_text(text.replace(old, "exhaustiveness: {type: integer, minimum: 1, default: 13}"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=tmp_path, env=env
        )

    where = subprocess.run(
        [sys.executable, "-c", "import pipeline; print(pipeline.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert where.stdout.strip().startswith(str(package))  # the copy, not the installed package
    help_text = cli("dock", "--help").stdout
    assert re.search(r"--exhaustiveness EXHAUSTIVENESS\s+\(default 13\)", help_text), help_text
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(
        yaml.safe_dump(
            dict(
                run="x",
                library=dict(path="l.smi"),
                receptor=dict(path="r.pdb"),
                box=dict(center=[0, 0, 0], size=[20, 20, 20]),
            )
        )
    )
    shown = cli("check-config", str(cfg), "--show", "--no-files")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["docking"]["exhaustiveness"] == 13
