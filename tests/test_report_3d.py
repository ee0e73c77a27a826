"""The report's 3D view of the top hits (issue 19): rendered offline, lazily, under a strict policy.

The run folder is small and real in what the viewer reads: the prepared Abl kinase receptor
of 1IEP (``resources/fixtures/1iep``, all hydrogens) as ``receptor/receptor.pdb``, and
imatinib as bound in 1IEP as the docked pose of every hit (the ids differ, the pose is the
same), in a docked chunk with its manifest; one hit is "MD-refined", with a refined pose and
an MD frame pocket in which ligand and pocket moved together. No docking, no engines: the
report builds in seconds. The page is opened in headless Chromium with software WebGL.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chromium import WEBGL_ARGS, HeadlessPage
from rdkit import Chem

from pipeline.config import validate_config
from pipeline.ranking import write_table_csv

#: Hits in the browser test; the size test uses a full default table.
N_HITS = 3
#: report.top_n of the default config (config/config.yaml): the most hits a demo report shows.
DEFAULT_TOP_N = 25
#: Where the refined hit's MD frame moved everything (Å, along x), so the view must show the frame.
SHIFT = 0.5
#: The demo report must stay under this size (issue 19).
MAX_PAGE_BYTES = 5 * 1024 * 1024


def _imatinib(fixtures: Path) -> Chem.Mol:
    return Chem.MolFromMolFile(str(fixtures / "1iep" / "1iep_ligand.sdf"), removeHs=False)


def _shifted_pdb(lines: list[str], dx: float) -> list[str]:
    out = []
    for line in lines:
        x = float(line[30:38]) + dx
        out.append(f"{line[:30]}{x:8.3f}{line[38:]}")
    return out


def _frames_pdb(receptor: Path, ligand: Chem.Mol, path: Path) -> None:
    """A two-model MD-frame pocket: the residues within 8 Å of the ligand, model 2 moved by SHIFT."""
    xyz = ligand.GetConformer().GetPositions()
    atoms = [line for line in receptor.read_text().splitlines() if line.startswith(("ATOM", "HETATM"))]
    keep = set()
    for line in atoms:
        point = np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])])
        if np.min(np.linalg.norm(xyz - point, axis=1)) <= 8.0:
            keep.add((line[21], line[22:27]))
    pocket = [line for line in atoms if (line[21], line[22:27]) in keep]
    models = ["MODEL        1", *pocket, "ENDMDL", "MODEL        2", *_shifted_pdb(pocket, SHIFT), "ENDMDL", "END"]
    path.write_text("\n".join(models) + "\n")


def _run(tmp_path: Path, fixtures: Path, n_hits: int, refined: bool = True) -> tuple[Path, dict]:
    """A ranked run folder with what the report and its 3D view read (see the module docstring)."""
    run = tmp_path / "results" / "r3d"
    for folder in ("chunks", "receptor", "docked", "refine_batches", "refined/frames"):
        (run / folder).mkdir(parents=True, exist_ok=True)
    ids = [f"hit{i + 1}" for i in range(n_hits)]
    (run / "chunks" / "manifest.json").write_text(
        json.dumps({"rows": n_hits, "accepted": n_hits, "failed": 0, "chunks": ["chunk_00000"]})
    )
    receptor = run / "receptor" / "receptor.pdb"
    shutil.copy(fixtures / "1iep" / "1iep_receptorH.pdb", receptor)
    ligand = _imatinib(fixtures)
    scores = [-12.0 + 0.5 * i for i in range(n_hits)]
    writer = Chem.SDWriter(str(run / "docked" / "chunk_00000.sdf"))
    for cid, score in zip(ids, scores):
        mol = Chem.Mol(ligand)
        mol.SetProp("_Name", cid)
        mol.SetProp("pose", "1")
        mol.SetProp("docking_score", f"{score:.3f}")
        writer.write(mol)
    writer.close()
    pd.DataFrame({"id": ids, "pose": [1] * n_hits, "docking_score": scores}).to_parquet(
        run / "docked" / "chunk_00000.parquet"
    )
    smiles = Chem.MolToSmiles(Chem.RemoveHs(ligand))
    ranking = pd.DataFrame(
        {
            "rank": range(1, n_hits + 1),
            "id": ids,
            "input_id": ids,
            "smiles": [smiles] * n_hits,
            "prepared_smiles": [smiles] * n_hits,
            "docking_score": scores,
            "n_poses": [1] * n_hits,
            "interactions": ["MET318.A:HBAcceptor; THR315.A:HBAcceptor"] * n_hits,
        }
    )
    if refined and n_hits >= 2:
        # the second hit was refined: its pose and pocket are the final MD frame, both moved by SHIFT
        ranking["md_pose"] = [None, 1.0] + [None] * (n_hits - 2)
        (run / "refine_batches" / "manifest.json").write_text(json.dumps({"batches": ["batch_00000"]}))
        moved = Chem.Mol(ligand)
        conf = moved.GetConformer()
        for i in range(moved.GetNumAtoms()):
            p = conf.GetAtomPosition(i)
            conf.SetAtomPosition(i, (p.x + SHIFT, p.y, p.z))
        moved.SetProp("_Name", ids[1])
        moved.SetProp("pose", "1")
        moved.SetProp("docking_score", f"{scores[1]:.3f}")
        writer = Chem.SDWriter(str(run / "refined" / "batch_00000.sdf"))
        writer.write(moved)
        writer.close()
        pd.DataFrame({"id": [ids[1]], "pose": [1], "frames": [f"{ids[1]}_pose1.pdb"]}).to_parquet(
            run / "refined" / "batch_00000.parquet"
        )
        _frames_pdb(receptor, ligand, run / "refined" / "frames" / f"{ids[1]}_pose1.pdb")
    write_table_csv(ranking, run / "ranking.csv")
    write_table_csv(pd.DataFrame(columns=["id", "stage", "reason"]), run / "failures.csv")
    write_table_csv(pd.DataFrame(columns=["id", "stage", "reason"]), run / "pose_warnings.csv")
    config = validate_config(
        {
            "run": "r3d",
            "library": {"path": str(tmp_path / "library.csv")},
            "receptor": {"path": str(fixtures / "1iep" / "1iep_receptorH.pdb")},
            "box": {"center": [15.6, 53.4, 15.4], "size": [20, 20, 20]},
            "refine": {"enabled": False},
            "score": {"enabled": False},
            "report": {"top_n": n_hits},
        }
    )
    return run, config


def _payloads(page_html: str) -> dict[str, dict]:
    found = re.findall(r'<script type="application/json" id="(pose3d-\d+)">(.*?)</script>', page_html, flags=re.S)
    return {element: json.loads(text) for element, text in found}


@pytest.fixture(scope="module")
def report(tmp_path_factory, fixtures):
    """The report of a three-hit run (the second hit refined)."""
    from pipeline.report import build_report

    tmp = tmp_path_factory.mktemp("report_3d")
    run, config = _run(tmp, fixtures, N_HITS)
    summary = build_report(run, config)
    return summary.html


# ---------------------------------------------------------------------------------------------- browser


def _wait_for(page: HeadlessPage, expression: str, timeout: float = 20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{expression} stayed false for {timeout} s")


def test_first_hit_renders_in_3d_offline_without_errors(report, chromium):
    """Acceptance (issue 19): opening the first hit's row draws its pose in a WebGL canvas
    (non-blank pixels, the ligand's orange carbons among them); the page makes no network
    request and logs no error; nothing is drawn before a row is opened."""
    from PIL import Image

    uri = report.as_uri()
    with HeadlessPage(chromium, width=1600, height=1200, extra_args=WEBGL_ARGS) as page:
        page.load(uri)
        assert page.console_errors == []
        assert page.evaluate("document.querySelectorAll('#top-hits details.pose3d').length") == N_HITS
        assert page.evaluate("document.querySelectorAll('canvas').length") == 0  # lazy: no viewer yet
        assert page.evaluate("typeof window.$3Dmol") == "object"

        page.evaluate(
            "(() => { const d = document.querySelector('#top-hits tbody tr details.pose3d');"
            " d.scrollIntoView(); d.open = true; })()"
        )
        state = _wait_for(
            page,
            "(() => { const s = document.querySelector('#top-hits tbody tr details.pose3d').dataset.state;"
            " return s === 'loading' ? '' : s; })()",
        )
        message = page.evaluate("document.querySelector('#top-hits tbody tr div.viewer3d').textContent")
        assert state == "ready", message
        assert page.evaluate("document.querySelectorAll('canvas').length") >= 1  # one viewer, only the opened one
        # 3Dmol renders with WebGL (one context shared by all viewers, on an OffscreenCanvas)
        # and shows the picture in the viewer's own canvas
        webgl = page.evaluate("document.querySelector('#top-hits tbody tr details.pose3d').dataset.webgl")
        assert webgl in ("webgl2", "webgl"), webgl
        page.evaluate("document.querySelector('#top-hits tbody tr div.viewer3d').scrollIntoView()")
        time.sleep(0.5)  # let the compositor present the frame
        box = page.evaluate(
            "(() => { const r = document.querySelector('#top-hits tbody tr div.viewer3d canvas')"
            ".getBoundingClientRect(); return {x: r.left + window.scrollX, y: r.top + window.scrollY,"
            " width: r.width, height: r.height}; })()"
        )
        assert box["width"] > 300 and box["height"] > 300, box
        pixels = np.asarray(Image.open(io.BytesIO(page.screenshot_png(box))).convert("RGB")).astype(int)
        drawn = (np.abs(pixels - 255).sum(axis=-1) > 30).mean()
        orange = (
            (pixels[..., 0] > 200) & (pixels[..., 1] > 100) & (pixels[..., 1] < 200) & (pixels[..., 2] < 90)
        ).mean()
        assert drawn > 0.01, f"only {drawn:.2%} of the canvas is drawn"
        assert orange > 0.001, f"no ligand (orange carbons) on the canvas ({orange:.3%})"
        assert len({tuple(p) for p in pixels.reshape(-1, 3)[::7]}) > 20  # shaded sticks, not a flat fill

        assert page.console_errors == []
        assert page.dialogs == []
        assert all(url == uri or url.startswith("data:") for url in page.requests), page.requests
        # the inline handlers the policy would refuse are not used: the page binds them in its scripts
        assert (
            page.evaluate(
                "[...document.querySelectorAll('*')].some(e => [...e.attributes].some(a => a.name.startsWith('on')))"
            )
            is False
        )


# ---------------------------------------------------------------------------------------------- page


def test_policy_names_each_script_by_hash_and_data_is_inert(report):
    """The page's three scripts (its own, 3Dmol.js, the viewer's) are each named by their hash (no
    'unsafe-eval', no 'unsafe-inline' script, no worker or connect source); the poses are JSON data
    elements that cannot close their element."""
    from pipeline.report import html, viewer

    page = report.read_text()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    hashes = " ".join(html.script_hash(s) for s in (html.JS, viewer.threedmol_js(), viewer.JS))
    assert policy == (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src {hashes}; "
        "base-uri 'none'; form-action 'none'"
    )
    assert page.count("<script>") == 3
    assert f"<script>{viewer.threedmol_js()}</script>" in page and f"<script>{viewer.JS}</script>" in page
    payloads = _payloads(page)
    assert sorted(payloads) == [f"pose3d-{i}" for i in range(N_HITS)]
    for text in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', page, flags=re.S):
        assert "<" not in text and ">" not in text


def test_views_show_the_pose_its_pocket_contacts_and_labels(report, fixtures):
    """Each hit's data: the pose (C–H hydrogens left out), the pocket within 6 Å, labelled residues
    and ProLIF's contacts; imatinib's hinge hydrogen bond to MET318 is among them. The refined hit
    shows its final MD frame: pocket and ligand both moved, contacts the same."""
    page = report.read_text()
    payloads = _payloads(page)
    docked, refined = payloads["pose3d-0"], payloads["pose3d-1"]
    ligand = Chem.MolFromMolBlock(docked["ligand"], removeHs=False)
    imatinib = _imatinib(fixtures)
    assert ligand.GetNumHeavyAtoms() == imatinib.GetNumHeavyAtoms() == 37
    assert 0 < sum(a.GetAtomicNum() == 1 for a in ligand.GetAtoms()) < 10  # polar hydrogens only
    residues = {(line[17:20], int(line[22:26])) for line in docked["pocket"].splitlines() if line.startswith("ATOM")}
    assert ("MET", 318) in residues and ("THR", 315) in residues and len(residues) > 20
    labels = {text for text, _ in docked["labels"]}
    assert {"MET318.A", "THR315.A", "GLU286.A", "ASP381.A"} <= labels
    assert [number for number, _ in docked["sticks"]] == sorted(number for number, _ in docked["sticks"])
    kinds = {(kind) for kind, _, _ in docked["contacts"]}
    assert "HBAcceptor" in kinds or "HBDonor" in kinds
    # the list under the view names each contact with its residue and distance
    assert re.search(r"MET318\.A HB(Acceptor|Donor) [23]\.\d Å", page)

    # the refined hit: everything moved by SHIFT along x, nothing else changed
    moved = Chem.MolFromMolBlock(refined["ligand"], removeHs=False)
    delta = moved.GetConformer().GetPositions() - ligand.GetConformer().GetPositions()
    assert np.allclose(delta, [SHIFT, 0, 0], atol=1e-3)
    first = {line[12:27]: float(line[30:38]) for line in docked["pocket"].splitlines() if line.startswith("ATOM")}
    second = {line[12:27]: float(line[30:38]) for line in refined["pocket"].splitlines() if line.startswith("ATOM")}
    common = sorted(set(first) & set(second))
    assert len(common) > 200
    assert np.allclose([second[k] - first[k] for k in common], SHIFT, atol=2e-3)
    assert sorted(k for k, _, _ in refined["contacts"]) == sorted(k for k, _, _ in docked["contacts"])
    assert "MD-refined pose 1 (final frame) in the pocket of the final MD frame" in page
    assert "docked pose 1 (Vina) in the pocket of the prepared receptor" in page


def test_page_with_a_full_table_of_hits_stays_small(tmp_path, fixtures):
    """Acceptance (issue 19, size): a report of the default 25 hits, each a 37-heavy-atom ligand in
    the 1IEP pocket (larger than most screening hits), stays far below 5 MB; each hit's data is
    small, and 3Dmol.js is in the page once."""
    from pipeline.report import build_report, viewer

    run, config = _run(tmp_path, fixtures, DEFAULT_TOP_N, refined=False)
    page_html = build_report(run, config).html.read_text()
    size = len(page_html.encode("utf-8"))
    payloads = _payloads(page_html)
    assert len(payloads) == DEFAULT_TOP_N
    per_hit = max(len(json.dumps(p).encode("utf-8")) for p in payloads.values())
    asset = len(viewer.threedmol_js().encode("utf-8"))
    assert page_html.count(viewer.threedmol_js()[:200]) == 1
    assert per_hit < 60_000, per_hit
    assert size < asset + DEFAULT_TOP_N * 80_000 + 1_500_000 < MAX_PAGE_BYTES, size


def test_page_without_poses_carries_no_viewer(tmp_path, fixtures):
    """A run whose poses are gone keeps the one script and its policy: no 3Dmol.js, no JSON; each row says why."""
    from pipeline.report import build_report, html

    run, config = _run(tmp_path, fixtures, 2, refined=False)
    (run / "docked" / "chunk_00000.sdf").write_text("")
    page = build_report(run, config).html.read_text()
    assert page.count("<script") == 1 and f"script-src {html.script_hash(html.JS)};" in page
    assert page.count("no pose found") == 2


def test_unreadable_receptor_leaves_the_report_whole(tmp_path, fixtures):
    """A receptor that cannot be read costs the 3D views (each row says why), not the report."""
    from pipeline.report import build_report

    run, config = _run(tmp_path, fixtures, 2, refined=False)
    (run / "receptor" / "receptor.pdb").write_text("garbage\n")
    summary = build_report(run, config)
    page = summary.html.read_text()
    assert summary.top_hits_written == 2
    assert page.count("the prepared receptor cannot be read") == 2 and "pose3d-0" not in page


def test_vendored_3dmol_matches_its_provenance():
    """The shipped asset is the recorded npm release, unchanged, with its licences."""
    import hashlib

    from pipeline.report import viewer

    record = viewer.provenance()
    assert record["package"] == "3dmol" and record["license"] == "BSD-3-Clause"
    assert re.fullmatch(r"\d+\.\d+\.\d+", record["version"])
    for name, digest in record["sha256"].items():
        assert hashlib.sha256((viewer.ASSETS / name).read_bytes()).hexdigest() == digest, name
    assert "BSD" in (viewer.ASSETS / "LICENSE").read_text()
    assert (viewer.ASSETS.parents[3] / "scripts" / "update_3dmol.sh").is_file()
