"""Why this score (issue 19, part 3): per-residue and per-contact shares of each top hit's score.

A small real run: the 1iep receptor prepared by the pipeline, four small ligands docked by
Vina (exhaustiveness 1, two poses each), pair graphs written by featurization, scored by
the score stage and ranked by the rank stage, all through the stage functions. Two pair
models: an untrained one (its score is Vina's) and one with perturbed learned terms, so
that the model's shares differ from Vina's. Vina's side is checked against the ``vina``
package's own ``score()`` of each pose.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem

from pipeline.box import Box
from pipeline.config import validate_config
from pipeline.docking import DockingSettings, dock_chunk
from pipeline.featurize import FeaturizeSettings, PairGraphs, featurize_docked_chunk
from pipeline.io import write_failures
from pipeline.layout import RunLayout, write_manifest
from pipeline.ligands import LigandSettings, prepare_ligand, to_pdbqt
from pipeline.pair_graphs import DEFAULT_PAIR_SCHEMA, load_vina_receptor
from pipeline.ranking import build_ranking, write_ranking
from pipeline.receptor import prepare_receptor
from pipeline.scoring.explain import (
    CONTACT_DISTANCE,
    NEEDS_PAIR_MODEL,
    RESIDUE_COLUMNS,
    SUMMARY_COLUMNS,
    explain_run,
    read_explanations,
    write_explanations,
)
from pipeline.scoring.pair_folder import save_pair_model
from pipeline.scoring.pair_model import PairModelConfig
from pipeline.scoring.pair_train import PairTrainSettings, fit_ensemble
from pipeline.scoring.score import score_library, write_scores

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "resources" / "fixtures" / "1iep"
CENTER, SIZE = (15.19, 53.9, 16.92), (14.0, 14.0, 14.0)
LIGANDS = [
    ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),
    ("indole", "c1ccc2[nH]ccc2c1"),
    ("benzylamine", "[NH3+]Cc1ccccc1"),
    ("phenol", "Oc1ccccc1"),
]
SMALL = PairModelConfig(hidden=8, layers=1, rbf_size=8, pair_hidden=8, pair_rbf_size=8)
#: The acceptance tolerance (kcal/mol): residue shares against the score the ranking shows.
SUM_TOLERANCE = 1e-4
#: Vina's own score() of a pose against our sum of its terms: Vina interpolates grid maps.
VINA_TOLERANCE = 0.05


def _perturbed(ensemble, seed: int):
    """Give the zero-initialized last layers of every member random values (as tests/test_pair_scorer.py does)."""
    for k, member in enumerate(ensemble.members):
        gen = torch.Generator().manual_seed(seed + k)
        with torch.no_grad():
            for head in (member.pair_energy.weight_mlp, member.pair_energy.residual_mlp):
                head[-1].weight.copy_(0.3 * torch.randn(head[-1].weight.shape, generator=gen))
                head[-1].bias.copy_(0.1 * torch.randn(head[-1].bias.shape, generator=gen))
    return ensemble


@pytest.fixture(scope="module")
def docked_run(tmp_path_factory) -> dict:
    """A run folder up to docking and pair-graph featurization (every pose), and two pair models."""
    root = tmp_path_factory.mktemp("explainrun")
    layout = RunLayout(root / "results" / "explain")
    layout.receptor_dir.mkdir(parents=True)
    prepare_receptor(FIXTURE / "1iep_receptorH.pdb", layout.receptor_pdb, layout.receptor_pdbqt, check_openmm=False)
    chunk = "chunk_00000"
    layout.chunks_dir.mkdir(parents=True)
    pd.DataFrame(
        {"id": [c for c, _ in LIGANDS], "input_id": [c for c, _ in LIGANDS], "smiles": [s for _, s in LIGANDS]}
    ).to_parquet(layout.chunk_table(chunk))
    write_manifest(layout.chunks_dir, "chunks", [chunk], rows=len(LIGANDS))
    write_failures([], layout.input_failures)
    layout.ligands_dir.mkdir(parents=True)
    pd.DataFrame([prepare_ligand(cid, smi, LigandSettings())[1] for cid, smi in LIGANDS]).to_parquet(
        layout.ligand_table(chunk)
    )
    write_failures([], layout.ligand_failures(chunk))
    dock_chunk(
        layout.ligand_table(chunk),
        layout.receptor_pdbqt,
        Box(CENTER, SIZE),
        DockingSettings(exhaustiveness=1, n_poses=2, threads=1),
        layout.docked_sdf(chunk),
        layout.docked_table(chunk),
        layout.docked_failures(chunk),
    )
    featurize_docked_chunk(
        layout.docked_sdf(chunk),
        layout.docked_table(chunk),
        layout.receptor_pdb,
        layout.feature_table(chunk),
        layout.graph_file(chunk),
        layout.feature_failures(chunk),
        FeaturizeSettings(poses_per_compound=0),
        pair=PairGraphs(str(layout.receptor_pdbqt), DEFAULT_PAIR_SCHEMA),
    )
    models = root / "models"
    settings = PairTrainSettings(members=2, epochs=0)
    save_pair_model(fit_ensemble([], DEFAULT_PAIR_SCHEMA, SMALL, settings), models / "pairzero")
    save_pair_model(_perturbed(fit_ensemble([], DEFAULT_PAIR_SCHEMA, SMALL, settings), seed=5), models / "pairlearned")
    return dict(root=root, layout=layout, models=models)


def _config(run: dict, model: str, **score) -> dict:
    return validate_config(
        {
            "run": "explain",
            "library": {"path": str(run["root"] / "library.smi")},
            "receptor": {"path": str(FIXTURE / "1iep_receptorH.pdb")},
            "box": {"center": list(CENTER), "size": list(SIZE)},
            "score": {"model": model, "models_dir": str(run["models"]), "rank_by": "gnn", **score},
            "report": {"top_n": 3},
        }
    )


def _score_and_rank(run: dict, model: str) -> dict:
    """The score and rank stages with ``model`` (replacing the run's scores and ranking)."""
    layout = run["layout"]
    result = score_library([layout.graph_file("chunk_00000")], run["models"] / model)
    write_scores(result.table, layout.scores)
    write_failures([], layout.score_failures)
    write_ranking(build_ranking(layout, layout.scores, layout.score_failures, rank_by="gnn"), layout)
    return _config(run, model)


@pytest.fixture(scope="module")
def vina_scores(docked_run) -> dict[tuple[str, int], float]:
    """Vina's own score() (total, kcal/mol) of every docked pose, on maps over a box wide enough for any pose."""
    from vina import Vina

    layout = docked_run["layout"]
    vina = Vina(sf_name="vina", cpu=1, verbosity=0)
    vina.set_receptor(str(layout.receptor_pdbqt))
    vina.compute_vina_maps(center=list(CENTER), box_size=[24.0, 24.0, 24.0])
    scores = {}
    for mol in Chem.SDMolSupplier(str(layout.docked_sdf("chunk_00000")), removeHs=False):
        vina.set_ligand_from_string(to_pdbqt(mol))
        scores[(mol.GetProp("_Name"), int(mol.GetProp("pose")))] = float(vina.score()[0])
    return scores


def _ligand_heavy_xyz(layout: RunLayout, cid: str, pose: int) -> np.ndarray:
    for mol in Chem.SDMolSupplier(str(layout.docked_sdf("chunk_00000")), removeHs=False):
        if mol.GetProp("_Name") == cid and int(mol.GetProp("pose")) == pose:
            xyz = mol.GetConformer().GetPositions()
            return xyz[[a.GetAtomicNum() > 1 for a in mol.GetAtoms()]]
    raise AssertionError(f"no pose {pose} of {cid}")


def _near_residues(layout: RunLayout, ligand_xyz: np.ndarray, cutoff: float) -> set[str]:
    """Residues (ProLIF-style keys) with a heavy atom within ``cutoff`` Å of a ligand heavy atom, from the PDBQT."""
    receptor = load_vina_receptor(layout.receptor_pdbqt)
    return {receptor.residue_key(int(a)) for a in receptor.atoms_near(ligand_xyz, cutoff)}


@pytest.mark.parametrize("model", ["pairzero", "pairlearned"])
def test_residue_contributions_sum_to_the_ranked_score(docked_run, model, tmp_path):
    """Acceptance: for the 3 top hits the per-residue shares (read back from the written files) sum to
    the score ranking.csv shows (gnn_score = minus the pair score) within 1e-4, and the largest
    contributors are residues with an atom within 4.5 Å of the ligand."""
    layout = docked_run["layout"]
    config = _score_and_rank(docked_run, model)
    write_explanations(explain_run(layout, config), layout.explain_dir)
    ranking = pd.read_csv(layout.ranking, dtype={"id": str})
    read = read_explanations(layout)
    assert read is not None and list(read.summary.columns) == SUMMARY_COLUMNS
    summary = read.summary
    assert list(summary["id"].unique()) == list(ranking["id"].head(3))
    assert (summary["status"] == "explained").all(), summary[["id", "status", "message"]]
    scores = pd.read_parquet(layout.scores).set_index(["id", "source", "pose"])
    errors = []
    for _, hit in ranking.head(3).iterrows():
        rows = read.poses(hit["id"])
        ranked = rows[rows["ranking_column"] == "gnn_score"]
        assert len(ranked) == 1, rows[["source", "pose", "roles"]]
        pose = int(ranked["pose"].iloc[0])
        residues = read.pose_residues(hit["id"], "docked", pose)
        assert list(read.residues[hit["id"]].columns) == RESIDUE_COLUMNS
        total = residues["model_contribution"].sum()
        errors.append(total + hit["gnn_score"])
        assert total == pytest.approx(-hit["gnn_score"], abs=SUM_TOLERANCE)  # ranking.csv: 4 decimals
        affinity = scores.loc[(hit["id"], "docked", pose), "affinity"]
        assert total == pytest.approx(affinity, abs=1e-5)  # the score stage's own number, float32
        # the best-scored docked pose is the one whose score the ranking shows
        mine = scores.loc[hit["id"]].xs("docked", level="source")
        assert pose == int(mine["gnn_score"].idxmax())
        near = _near_residues(layout, _ligand_heavy_xyz(layout, hit["id"], pose), CONTACT_DISTANCE)
        largest = residues.reindex(residues["model_contribution"].abs().sort_values(ascending=False).index).head(3)
        assert set(largest["residue"]) <= near, (largest[["residue", "model_contribution", "min_distance"]], near)
        assert (largest["min_distance"] < CONTACT_DISTANCE).all() and (largest["n_contacts"] > 0).all()
        # the residue table knows the residue's number and chain for the 3D view
        assert residues["number"].notna().all() and (residues["chain"] == "A").all()
        # per contact: the pairs of largest |energy|, each a real atom pair of the pose
        contacts = read.pose_contacts(hit["id"], "docked", pose)
        assert len(contacts) == 25 and contacts["model_energy"].abs().is_monotonic_decreasing
        assert contacts["ligand_atom"].notna().all() and (contacts["protein_atom"] != "").all()
        gap = np.linalg.norm(
            contacts[["ligand_x", "ligand_y", "ligand_z"]].to_numpy()
            - contacts[["protein_x", "protein_y", "protein_z"]].to_numpy(),
            axis=1,
        )
        np.testing.assert_allclose(gap, contacts["distance"], atol=1e-3)
        assert contacts["residue"].isin(residues["residue"]).all()
    print(f"{model}: residue sums + ranking.csv gnn_score: {[f'{e:.2e}' for e in errors]}")
    learned = (summary["model_sum"] - (summary["vina_inter"] / summary["rot_factor"])).abs()
    if model == "pairzero":  # an untrained model is Vina: its shares are Vina's, residue by residue
        assert learned.max() < 1e-5
        for table in read.residues.values():
            np.testing.assert_allclose(table["model_contribution"], table["vina_contribution"], atol=1e-6)
    else:
        assert learned.min() > 0.05  # the learned terms are switched on


def test_vinas_breakdown_sums_to_vinas_score_of_the_pose(docked_run, vina_scores):
    """Vina's side: weighted terms summed over the pairs, divided by the rotor factor, give Vina's
    score() of the pose (maps over a wide box) and the docking score Vina reported."""
    layout = docked_run["layout"]
    config = _score_and_rank(docked_run, "pairlearned")
    summary = explain_run(layout, config, top_n=len(LIGANDS)).summary
    assert len(summary) >= len(LIGANDS)
    terms = summary[[f"vina_{t}" for t in ("gauss1", "gauss2", "repulsion", "hydrophobic", "hbond")]].sum(axis=1)
    np.testing.assert_allclose(terms, summary["vina_inter"], atol=1e-9)
    np.testing.assert_allclose(
        summary["vina_score"],
        summary["vina_inter"] + summary["vina_intra_delta"] + summary["vina_torsional"],
        atol=1e-9,
    )
    np.testing.assert_allclose(summary["rot_factor"], 1 + 0.05846 * summary["n_rot"], rtol=1e-12)
    against_score, against_docking = [], []
    for row in summary.itertuples():
        vina = vina_scores[(row.id, row.pose)]
        # score() of a lone pose has no intramolecular delta; the docking output's pose 2 has one
        own = row.vina_inter / row.rot_factor
        against_score.append(own - vina)
        against_docking.append(row.vina_error)
        assert own == pytest.approx(vina, abs=VINA_TOLERANCE)
        assert row.vina_score == pytest.approx(row.vina_reported, abs=VINA_TOLERANCE)
    print(
        f"Vina breakdown - score(): max |error| {max(map(abs, against_score)):.4f} kcal/mol; "
        f"- docking score: max |error| {max(map(abs, against_docking)):.4f} kcal/mol"
    )
    # per residue, Vina's shares sum to its intermolecular score of the pose
    explained = explain_run(layout, config, top_n=len(LIGANDS))
    for row in explained.summary.itertuples():
        table = explained.pose_residues(row.id, row.source, row.pose)
        assert table["vina_contribution"].sum() == pytest.approx(row.vina_inter / row.rot_factor, abs=1e-9)


def test_one_compound_that_cannot_be_explained_leaves_the_others(docked_run, monkeypatch):
    """A fault in one compound (injected; or its graph missing) costs that compound's rows only."""
    layout = docked_run["layout"]
    config = _score_and_rank(docked_run, "pairlearned")
    ranking = pd.read_csv(layout.ranking, dtype={"id": str})
    victim = ranking["id"].iloc[1]
    monkeypatch.setenv("VSCREEN_FAULTS", f"explain:{victim}:raise")
    result = explain_run(layout, config)
    summary = result.summary
    bad = summary[summary["id"] == victim]
    assert (bad["status"] == "failed").all() and bad["message"].str.contains("injected fault").all()
    good = summary[summary["id"] != victim]
    assert set(good["id"]) == set(ranking["id"].head(3)) - {victim} and (good["status"] == "explained").all()
    assert victim not in result.residues
    monkeypatch.delenv("VSCREEN_FAULTS")

    # a ranked compound whose graph file holds no graph of it (featurization lost it)
    ghost = ranking.head(3).copy()
    ghost.loc[0, "id"] = "ghost"
    ghost.to_csv(layout.ranking, index=False)
    try:
        summary = explain_run(layout, config).summary
    finally:
        _score_and_rank(docked_run, "pairlearned")
    assert summary.loc[summary["id"] == "ghost", "message"].str.contains("no pose of this compound").all()
    assert (summary.loc[summary["id"] != "ghost", "status"] == "explained").all()


def test_without_a_pair_model_only_vinas_breakdown_is_written(docked_run):
    """The default complex-graph GNN has no per-pair score: every row says so and carries Vina's breakdown."""
    layout = docked_run["layout"]
    _score_and_rank(docked_run, "pairzero")  # a ranking to explain; the config below names another model
    config = _config(docked_run, str(REPO / "models" / "default"))
    result = explain_run(layout, config)
    summary = result.summary
    assert (summary["status"] == "vina only").all()
    assert summary["message"].str.startswith(NEEDS_PAIR_MODEL.split("{")[0]).all()
    assert summary["model_sum"].isna().all() and summary["vina_inter"].notna().all()
    for row in summary.itertuples():
        table = result.pose_residues(row.id, row.source, row.pose)
        assert table["model_contribution"].isna().all()
        assert table["vina_contribution"].sum() == pytest.approx(row.vina_inter / row.rot_factor, abs=1e-9)
        assert math.isfinite(row.vina_error) and abs(row.vina_error) < VINA_TOLERANCE


# ---------------------------------------------------------------------------------------------- the report


def _payloads(page_html: str) -> dict[str, dict]:
    import json
    import re

    found = re.findall(r'<script type="application/json" id="(pose3d-\d+)">(.*?)</script>', page_html, flags=re.S)
    return {element: json.loads(text) for element, text in found}


@pytest.fixture(scope="module")
def explained_report(docked_run) -> dict:
    """The report of the run explained with the perturbed pair model."""
    from pipeline.report import build_report

    layout = docked_run["layout"]
    config = _score_and_rank(docked_run, "pairlearned")
    write_explanations(explain_run(layout, config), layout.explain_dir)
    page = build_report(layout.root, config).html.read_text()
    return dict(page=page, layout=layout, config=config)


def test_report_shows_a_bar_per_residue_and_colours_the_3d_view(explained_report):
    """Each top hit's row opens "why this score" (an inline SVG, no new script); its 3D view's data
    carries the residues and atom pairs coloured by their share; the policy still names each script."""
    import re

    from pipeline.report import html, viewer

    page, layout = explained_report["page"], explained_report["layout"]
    assert page.count('<details class="why">') == 3 and page.count('<svg class="bars"') == 3
    hits = page[page.index('<table id="top-hits"') :]
    assert hits[: hits.index("</table>")].count("<tr>") == 1 + 3  # no table inside a cell adds rows
    assert page.count("<script>") == 3  # the page's own, 3Dmol.js, the viewer's: no script was added
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    scripts = policy.split("script-src")[1].split(";")[0]
    assert html.script_hash(viewer.JS) in scripts and "unsafe" not in scripts
    assert "The model's residue shares sum to its pair score" in page and "Vina reported" in page
    read = read_explanations(layout)
    ranking = pd.read_csv(layout.ranking, dtype={"id": str})
    for k, payload in sorted(_payloads(page).items()):
        cid = ranking["id"].iloc[int(k.split("-")[1])]
        overlay = payload["explain"]
        assert overlay["what"] == "model" and len(overlay["pairs"]) == viewer.EXPLAIN_PAIRS
        assert len(overlay["residues"]) == viewer.EXPLAIN_RESIDUES
        # the colours follow the signs of the shares of the pose the view shows (its best docked pose)
        shown = read.poses(cid)
        pose = int(shown[shown["roles"].str.contains("3D view")]["pose"].iloc[0])
        shares = read.pose_residues(cid, "docked", pose).set_index("number")["model_contribution"]
        for number, chain, colour in overlay["residues"]:
            assert chain == "A" and re.fullmatch(r"#[0-9a-f]{6}", colour)
            red, blue = int(colour[1:3], 16), int(colour[5:7], 16)
            assert (blue > red) == (shares.loc[number] < 0), (number, colour, shares.loc[number])


def test_the_3d_view_draws_the_contributions_in_chromium(explained_report):
    """Opening a hit's 3D view with explanations renders without errors and colours the residues."""
    import os
    import time

    from chromium import WEBGL_ARGS, HeadlessPage, find_chromium

    binary = find_chromium()
    if binary is None:
        message = "chromium is not installed (.ci/run installs it with apt-get)"
        pytest.fail(message) if os.environ.get("VSCREEN_REQUIRE_CHROMIUM") else pytest.skip(message)
    uri = explained_report["layout"].report_html.as_uri()
    with HeadlessPage(binary, width=1600, height=1200, extra_args=WEBGL_ARGS) as page:
        page.load(uri)
        page.evaluate("document.querySelector('#top-hits details.why').open = true")
        page.evaluate("document.querySelector('#top-hits details.pose3d').open = true")
        deadline, state = time.time() + 30, ""
        while time.time() < deadline and state in ("", "loading", None):
            state = page.evaluate("document.querySelector('#top-hits details.pose3d').dataset.state || ''")
            time.sleep(0.1)
        message = page.evaluate("document.querySelector('#top-hits div.viewer3d').textContent")
        assert state == "ready", message
        assert page.evaluate("document.querySelector('#top-hits details.pose3d').dataset.explain") == "12"
        assert page.evaluate("document.querySelector('#top-hits details.why svg').getBBox().height") > 100
        assert page.console_errors == []


def test_report_of_a_run_without_a_pair_model_says_why(docked_run):
    from pipeline.report import build_report

    layout = docked_run["layout"]
    _score_and_rank(docked_run, "pairzero")
    config = _config(docked_run, str(REPO / "models" / "default"))
    write_explanations(explain_run(layout, config), layout.explain_dir)
    page = build_report(layout.root, config).html.read_text()
    assert page.count("the model&#x27;s explanation needs a pair-term model") == 3
    assert page.count('<svg class="bars"') == 3 and all(
        p["explain"]["what"] == "Vina" for p in _payloads(page).values()
    )


@pytest.mark.slow
def test_snakemake_run_explains_docked_and_refined_hits(tmp_path):
    """The whole workflow with a pair model: the explain rule writes explain/ between rank and report; the
    refined hit's refined pose (its refined GNN score, its 3D view) is explained too and sums to
    gnn_score_refined; the report shows the bars and colours each view."""
    import json
    import re

    from workflow_runs import run_snakemake, small_screen

    library = tmp_path / "library.smi"
    library.write_text("".join(f"{smiles} {cid}\n" for cid, smiles in LIGANDS[:3]))
    model = _perturbed(fit_ensemble([], DEFAULT_PAIR_SCHEMA, SMALL, PairTrainSettings(members=2, epochs=0)), seed=9)
    save_pair_model(model, tmp_path / "models" / "pairlearned")
    config = small_screen(library, "explainrun")
    config["score"] = {"model": "pairlearned", "models_dir": str(tmp_path / "models"), "rank_by": "gnn"}
    result = run_snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    layout = RunLayout(tmp_path / "results" / "explainrun")
    read = read_explanations(layout)
    ranking = pd.read_csv(layout.ranking, dtype={"id": str}).set_index("id")
    assert set(read.summary["id"]) == set(ranking.index) and (read.summary["status"] == "explained").all()
    refined = read.summary[read.summary["source"] == "refined"]
    assert len(refined) >= 1 and refined["roles"].str.contains("3D view").any()
    for row in read.summary[read.summary["ranking_column"] != ""].itertuples():
        residues = read.pose_residues(row.id, row.source, row.pose)
        shown = ranking.loc[row.id, row.ranking_column]
        total = residues["model_contribution"].sum()
        print(f"{row.id} {row.source} pose {row.pose}: sum {total:.5f}, ranking.csv {row.ranking_column} {shown}")
        assert total == pytest.approx(-shown, abs=SUM_TOLERANCE)
    assert read.summary["ranking_column"].eq("gnn_score_refined").sum() == len(refined["id"].unique())
    page = layout.report_html.read_text()
    assert page.count('<svg class="bars"') == len(ranking)
    payloads = re.findall(r'<script type="application/json" id="pose3d-\d+">(.*?)</script>', page, flags=re.S)
    overlays = [json.loads(text)["explain"] for text in payloads]
    assert len(overlays) == len(ranking) and all(o["residues"] for o in overlays)
    assert sorted(len(o["pairs"]) > 0 for o in overlays) == [False] + [True] * (len(ranking) - 1)
