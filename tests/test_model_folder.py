"""Model folders are data from elsewhere: the card is validated against its schema, every
member's weights must lie inside the folder and match the card's SHA-256, all before any
weights file is unpickled; torch older than 2.6 is refused. On copies of ``models/default``."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from pipeline.scoring import ensemble as ensemble_module
from pipeline.scoring.cards import CARD_SCHEMA, ModelError, read_card, validate_card
from pipeline.scoring.ensemble import MIN_TORCH, load_ensemble

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "models" / "default"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def model(tmp_path) -> Path:
    """A copy of models/default (weights and card only)."""
    folder = tmp_path / "models" / "default"
    folder.mkdir(parents=True)
    for f in DEFAULT.glob("model_*.pt"):
        shutil.copy(f, folder / f.name)
    shutil.copy(DEFAULT / "card.json", folder / "card.json")
    return folder


def _edit_card(folder: Path, edit) -> dict:
    card = json.loads((folder / "card.json").read_text())
    edit(card)
    (folder / "card.json").write_text(json.dumps(card))
    return card


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail the test if a weights file is unpickled: refusals must come before torch.load."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"torch.load was called on {args[0]}")

    monkeypatch.setattr(ensemble_module.torch, "load", refuse)


def test_default_model_card_is_valid_and_every_digest_matches():
    card = read_card(DEFAULT)
    assert len(card["members"]) == card["n_models"] == len(list(DEFAULT.glob("model_*.pt")))
    for member in card["members"]:
        assert member["sha256"] == _sha256(DEFAULT / member["weights"]), member["weights"]
    ensemble = load_ensemble(DEFAULT)
    assert len(ensemble.members) == card["n_models"]


def test_changed_weights_are_refused(model, no_unpickling):
    data = bytearray((model / "model_2.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    (model / "model_2.pt").write_bytes(bytes(data))
    with pytest.raises(
        ModelError,
        match=r"weights file '.*model_2\.pt' has SHA-256 [0-9a-f]{64}, but card\.json "
        r"records [0-9a-f]{64}; the file was changed or damaged",
    ):
        load_ensemble(model)


def test_absolute_weights_path_is_refused(model, tmp_path, no_unpickling):
    elsewhere = tmp_path / "elsewhere.pt"
    shutil.copy(model / "model_0.pt", elsewhere)  # the right digest, the wrong place
    _edit_card(model, lambda card: card["members"][0].update(weights=str(elsewhere)))
    with pytest.raises(
        ModelError,
        match=r"member 0 weights path '.*elsewhere\.pt' .* must be a file name inside the "
        r"model folder .*no absolute path",
    ):
        load_ensemble(model)


@pytest.mark.parametrize("weights", ["../outside.pt", "sub/../../outside.pt", "..\\outside.pt"])
def test_parent_directory_in_weights_path_is_refused(model, weights, no_unpickling):
    shutil.copy(model / "model_0.pt", model.parent / "outside.pt")
    _edit_card(model, lambda card: card["members"][0].update(weights=weights))
    with pytest.raises(ModelError, match=r"member 0 weights path .* \(no absolute path, no '\.\.'\)"):
        load_ensemble(model)


def test_symlink_out_of_the_folder_is_refused(model, tmp_path, no_unpickling):
    outside = tmp_path / "outside.pt"
    shutil.move(model / "model_1.pt", outside)
    (model / "model_1.pt").symlink_to(outside)  # same bytes, same digest: only where it points is wrong
    with pytest.raises(
        ModelError,
        match=r"member 1 weights 'model_1\.pt' resolves to '.*outside\.pt', outside the "
        r"model folder",
    ):
        load_ensemble(model)


def test_symlink_inside_the_folder_and_subfolders_are_accepted(model):
    (model / "weights").mkdir()
    shutil.move(model / "model_3.pt", model / "weights" / "m3.pt")
    (model / "model_3.pt").symlink_to(Path("weights") / "m3.pt")  # a link that stays inside
    shutil.move(model / "model_4.pt", model / "weights" / "m4.pt")
    _edit_card(model, lambda card: card["members"][4].update(weights="weights/m4.pt"))
    assert len(load_ensemble(model).members) == 5


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda c: c.pop("members"), r"\(top level\): 'members' is a required property"),
        (lambda c: c.update(members=[]), r"members: \[\] should be non-empty"),
        (lambda c: c["members"][3].pop("sha256"), r"members/3: 'sha256' is a required property"),
        (lambda c: c["members"][1].update(sha256="abc"), r"members/1/sha256: 'abc' does not match"),
        (lambda c: c["members"][0].update(weights=7), r"members/0/weights: 7 is not of type 'string'"),
        (lambda c: c.update(task="ranking"), r"task: 'ranking' is not one of \['regression', 'classification'\]"),
        (lambda c: c.update(name=["<script>"]), r"name: \['<script>'\] is not of type 'string'"),
        (lambda c: c.update(model="big"), r"model: 'big' is not of type 'object'"),
    ],
)
def test_card_that_does_not_match_the_schema_is_refused(model, edit, where, no_unpickling):
    _edit_card(model, edit)
    with pytest.raises(ModelError, match=rf"model card '.*card\.json' is invalid at {where}"):
        load_ensemble(model)


def test_card_member_count_must_match(model, no_unpickling):
    _edit_card(model, lambda card: card.update(n_models=4))
    with pytest.raises(ModelError, match="says n_models 4 but lists 5 members"):
        read_card(model)
    with pytest.raises(ModelError, match="not a vscreen model card"):
        validate_card([1, 2], "x/card.json")
    assert CARD_SCHEMA["required"] == ["name", "format", "task", "schema", "model", "members"]


def test_old_torch_is_refused(model, monkeypatch, no_unpickling):
    from torch.torch_version import TorchVersion

    monkeypatch.setattr(ensemble_module.torch, "__version__", TorchVersion("2.5.1"))
    with pytest.raises(ModelError, match=r"torch 2\.5\.1 is older than 2\.6: its weights_only loading can be bypassed"):
        load_ensemble(model)


def test_package_requires_torch_2_6():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        pytest.skip("tomllib needs Python 3.11")
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [d for d in deps if d.startswith("torch>") or d.startswith("torch=")] == [f"torch>={MIN_TORCH}"]
    assert torch.__version__ >= MIN_TORCH
