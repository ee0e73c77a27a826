"""The 3D view of each top hit in the report: its pose in the pocket, key contacts drawn, residues labelled.

For each top hit the report shows the pose that ``top_hits.sdf`` holds (the MD-refined one
where the compound was refined, else its best docked pose; :func:`~.top_hits.select_top_poses`)
in its pocket, rotatable with the mouse, drawn by 3Dmol.js. The pocket is the prepared
receptor (``receptor/receptor.pdb``) around a docked pose, and the pocket of the final MD
frame (``refined/frames/<id>_pose<k>.pdb``) around a refined one, since the side chains
moved with the ligand. Contacts are ProLIF's interactions of that very pose with that very
pocket (:mod:`pipeline.interactions`): hydrogen bonds, salt bridges, π stacking, cation–π,
halogen and metal bonds, and hydrophobic contacts (thinner), each a dashed line between
the atoms (or ring centres) that make it; the residues within :data:`CONTACT_SHELL` of the
ligand or in a contact are drawn as sticks and labelled, the rest of the pocket (residues
within :data:`POCKET_CUTOFF`) as thin lines.

Where the run explains the hit's score (:mod:`pipeline.scoring.explain`, ``explain/``), the
view colours by contribution (:func:`explanation_overlay`): the carbons of the residues with
the largest shares of the pair model's score (Vina's without a pair model) blue where they
are favourable and red where not, paler for smaller shares, and the atom pairs with the
largest shares as solid lines in the same colours (not for a refined pose, which the pair
model scores against the rigid docking receptor, not the MD frame drawn).

How it stays offline, small and strict:

* 3Dmol.js is vendored in ``assets/3dmol/`` (``3Dmol-min.js`` of the npm package ``3dmol``,
  BSD-3-Clause, with its licence, the licences of what its build bundles and a
  ``PROVENANCE.json``; ``scripts/update_3dmol.sh VERSION`` re-vendors it) and inlined in
  the page, so opening the report fetches nothing.
* Each hit's coordinates (the pocket's heavy atoms and polar hydrogens as PDB text, the
  ligand as a MOL block, contacts and labels) lie in an inert
  ``<script type="application/json">`` element, which the browser does not run; the viewer
  is created only when the hit's row is opened (a ``<details>`` toggle), so a page of 25
  hits starts no WebGL context until asked to.
* The page's policy allows only its scripts by their SHA-256 (:func:`pipeline.report.html.page`):
  the viewer script binds its handlers with ``addEventListener``, and 3Dmol.js needs neither
  ``'unsafe-eval'`` (it evaluates only callbacks given as text, which this page never gives)
  nor workers (only for molecular surfaces, which are not drawn).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rdkit import Chem

from ..layout import RunLayout
from . import html

log = logging.getLogger(__name__)

#: Folder of the vendored 3Dmol.js (package data of ``pipeline.report``).
ASSETS = Path(__file__).resolve().parent / "assets" / "3dmol"
#: Residues with any atom this close (Å) to the ligand are in the view (ProLIF's vicinity cutoff).
POCKET_CUTOFF = 6.0
#: Residues with a heavy atom this close (Å) to a ligand heavy atom are drawn as sticks and labelled.
CONTACT_SHELL = 4.0
#: Colour of each ProLIF interaction type (the ligand's side: ``HBDonor`` = the ligand donates).
CONTACT_COLORS = {
    "HBDonor": "#1f6fd1",
    "HBAcceptor": "#1f6fd1",
    "Cationic": "#d62728",
    "Anionic": "#d62728",
    "PiStacking": "#2ca02c",
    "CationPi": "#9467bd",
    "PiCation": "#9467bd",
    "XBDonor": "#17a2b8",
    "XBAcceptor": "#17a2b8",
    "MetalDonor": "#8c564b",
    "MetalAcceptor": "#8c564b",
    "Hydrophobic": "#9a9a9a",
}
#: Residues and atom pairs coloured by their share of the score in the view (largest |share| first).
EXPLAIN_RESIDUES, EXPLAIN_PAIRS = 12, 8
#: Colours of a favourable (negative) and an unfavourable share at full strength, and of a share near 0.
FAVOURABLE, UNFAVOURABLE, NEUTRAL = "#2166ac", "#b2182b", "#d9d9d9"
#: One drawn contact: ProLIF type, ligand point, protein point (Å), distance (Å), residue (``TYR253.A``).
Contact = tuple[str, tuple[float, ...], tuple[float, ...], float, str]
_BACKBONE = frozenset({"N", "CA", "C", "O", "OXT"})
_POLAR = frozenset({7, 8, 16})

#: Styles of the view (the ``<details>`` of a hit, its viewer box and its contact list).
CSS = """
details.pose3d summary { white-space: nowrap; }
div.viewer3d { width: 520px; height: 420px; position: relative; border: 1px solid #dde3ea; background: #fff; }
div.viewer3d.failed { height: auto; padding: 6px; color: #a33; font-size: 12px; }
ul.contacts { list-style: none; padding: 0; margin: 4px 0; font-size: 11px; max-width: 520px; }
ul.contacts li { display: inline-block; margin: 1px 6px 1px 0; }
span.swatch { display: inline-block; width: 14px; height: 0; border-top: 2px dashed; margin-right: 3px;
              vertical-align: middle; }
"""

# Creates a hit's viewer when its <details> is first opened, from the JSON next to it. Bound
# with addEventListener (the policy refuses inline handlers); a failure (no WebGL, data that
# 3Dmol cannot read) is written into the box, and data-state says where it stands (tests read it).
JS = """
(function () {
  var COLORS = __COLORS__;
  function fail(details, holder, text) {
    holder.textContent = "3D view unavailable: " + text;
    holder.classList.add("failed");
    details.setAttribute("data-state", "failed");
  }
  function position(p) { return {x: p[0], y: p[1], z: p[2]}; }
  function show(details) {
    if (details.getAttribute("data-state")) { return; }
    details.setAttribute("data-state", "loading");
    var holder = details.querySelector("div.viewer3d");
    var source = document.getElementById(details.getAttribute("data-pose"));
    var lib = window.$3Dmol;
    if (!lib || !source) { fail(details, holder, "the page lacks 3Dmol.js or this pose's data"); return; }
    try {
      var data = JSON.parse(source.textContent);
      var viewer = lib.createViewer(holder, {backgroundColor: "white", antialias: true});
      if (!viewer) { throw new Error("this browser offers no WebGL"); }
      var pocket = viewer.addModel(data.pocket, "pdb");
      pocket.setStyle({}, {line: {colorscheme: "grayCarbon"}});
      data.sticks.forEach(function (r) {
        var selection = {resi: r[0]};
        if (r[1]) { selection.chain = r[1]; }
        pocket.setStyle(selection, {stick: {radius: 0.1, colorscheme: "grayCarbon"}});
      });
      if (data.explain) {
        // the colour of each residue's carbons and each pair is its share of the score (made in Python)
        data.explain.residues.forEach(function (r) {
          var selection = {resi: r[0]};
          if (r[1]) { selection.chain = r[1]; }
          pocket.setStyle(selection, {stick: {radius: 0.13, colorscheme: {prop: "elem", map: {C: r[2]}}}});
        });
        data.explain.pairs.forEach(function (p) {
          viewer.addCylinder({start: position(p[0]), end: position(p[1]), radius: 0.045, color: p[2],
                              fromCap: 1, toCap: 1});
        });
        details.setAttribute("data-explain", String(data.explain.residues.length));
      }
      var ligand = viewer.addModel(data.ligand, "sdf");
      ligand.setStyle({}, {stick: {radius: 0.22, colorscheme: "orangeCarbon"}});
      data.contacts.forEach(function (c) {
        viewer.addCylinder({
          start: position(c[1]), end: position(c[2]), radius: c[0] === "Hydrophobic" ? 0.035 : 0.08,
          color: COLORS[c[0]] || "#555555", dashed: true, dashLength: 0.25, gapLength: 0.18
        });
      });
      data.labels.forEach(function (l) {
        viewer.addLabel(l[0], {
          position: position(l[1]), fontSize: 10, fontColor: "#1f3b57", backgroundColor: "#ffffff",
          backgroundOpacity: 0.5, borderThickness: 0, inFront: true
        });
      });
      viewer.zoomTo({model: ligand});
      viewer.zoom(0.65);
      viewer.render();
      // 3Dmol draws every viewer with one shared WebGL context (an OffscreenCanvas) and hands
      // the picture to the viewer's canvas; data-webgl says which kind of context drew it
      var gl = viewer.getRenderer().getContext();
      var two = typeof WebGL2RenderingContext !== "undefined" && gl instanceof WebGL2RenderingContext;
      details.setAttribute("data-webgl", two ? "webgl2" : gl instanceof WebGLRenderingContext ? "webgl" : "none");
      details.setAttribute("data-state", "ready");
    } catch (error) {
      fail(details, holder, error && error.message ? error.message : String(error));
    }
  }
  document.querySelectorAll("details.pose3d").forEach(function (details) {
    details.addEventListener("toggle", function () { if (details.open) { show(details); } });
  });
})();
""".replace("__COLORS__", json.dumps(CONTACT_COLORS, sort_keys=True))


# ---------------------------------------------------------------------------------------------- asset


def provenance() -> dict[str, Any]:
    """``assets/3dmol/PROVENANCE.json``: package, version, licence, source and sha256 of the vendored files."""
    return json.loads((ASSETS / "PROVENANCE.json").read_text())


@lru_cache(maxsize=1)
def threedmol_js() -> str:
    """The vendored ``3Dmol-min.js``, ready to inline in a ``<script>`` element.

    Returns
    -------
    str
        The file's text, checked against the sha256 that ``PROVENANCE.json`` records (a
        truncated or hand-edited asset would otherwise give a page whose viewer is broken).

    Raises
    ------
    RuntimeError
        The file does not match its recorded sha256, or holds ``</script`` or ``<!--``, which
        would end (or change the parsing of) the inline script.
    """
    raw = (ASSETS / "3Dmol-min.js").read_bytes()
    expected = provenance()["sha256"]["3Dmol-min.js"]
    if hashlib.sha256(raw).hexdigest() != expected:
        raise RuntimeError(f"{ASSETS / '3Dmol-min.js'} does not match its sha256 in PROVENANCE.json; re-vendor it")
    text = raw.decode("utf-8")
    if "</script" in text.lower() or "<!--" in text:
        raise RuntimeError("3Dmol-min.js cannot be inlined: it holds '</script' or '<!--'")
    return text


# ---------------------------------------------------------------------------------------------- data


@dataclass
class PoseView:
    """What the report's 3D view of one hit shows.

    Attributes
    ----------
    compound_id
        The hit's id.
    source, pose
        ``refined`` or ``docked``, and the pose number.
    pocket_source
        Where the pocket's coordinates come from (text for the page).
    ligand
        MOL block of the pose: heavy atoms and polar hydrogens.
    pocket
        PDB text of the residues within :data:`POCKET_CUTOFF`: heavy atoms and polar hydrogens.
    sticks
        ``(residue number, chain)`` of the residues drawn as sticks.
    labels
        ``(text, (x, y, z))``: one label per stick residue, at its side chain's centre.
    contacts
        ``(type, ligand point, protein point, distance Å, residue)`` per interaction.
    note
        Why there are no contacts (ProLIF failed on this pose), or ``""``.
    explain
        :func:`explanation_overlay` of the pose: ``what`` (whose score), ``residues``
        (``[number, chain, colour]``) and ``pairs`` (``[ligand point, protein point, colour]``);
        ``None`` when the run does not explain this pose.
    """

    compound_id: str
    source: str
    pose: int
    pocket_source: str
    ligand: str
    pocket: str
    sticks: list[tuple[int, str]] = field(default_factory=list)
    labels: list[tuple[str, tuple[float, float, float]]] = field(default_factory=list)
    contacts: list[Contact] = field(default_factory=list)
    note: str = ""
    explain: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        """The JSON object the page's viewer script reads (coordinates rounded to 0.01 Å)."""

        def point(xyz: Sequence[float]) -> list[float]:
            return [round(float(v), 2) for v in xyz]

        return {
            "ligand": self.ligand,
            "pocket": self.pocket,
            "sticks": [[number, chain] for number, chain in self.sticks],
            "labels": [[text, point(xyz)] for text, xyz in self.labels],
            "contacts": [[kind, point(a), point(b)] for kind, a, b, _, _ in self.contacts],
            **({"explain": self.explain} if self.explain else {}),
        }


def _polar_or_heavy(atom: Chem.Atom) -> bool:
    """Heavy atoms and hydrogens on N, O or S: what a pocket view needs (C–H hydrogens only clutter it)."""
    if atom.GetAtomicNum() != 1:
        return True
    return any(n.GetAtomicNum() in _POLAR for n in atom.GetNeighbors())


def ligand_block(ligand: Chem.Mol) -> str:
    """MOL block of a pose without its C–H hydrogens (coordinates as they are).

    Parameters
    ----------
    ligand
        The pose, hydrogens explicit.

    Returns
    -------
    str
        A V2000 MOL block with an empty title (the id is shown by the page, escaped).
    """
    mol = Chem.RWMol(ligand)
    # Kekulé bonds first: without its hydrogens an aromatic ring no longer kekulizes on writing
    Chem.Kekulize(mol, clearAromaticFlags=True)
    for index in sorted((a.GetIdx() for a in ligand.GetAtoms() if not _polar_or_heavy(a)), reverse=True):
        mol.RemoveAtom(index)
    out = mol.GetMol()
    out.SetProp("_Name", "")
    return Chem.MolToMolBlock(out, kekulize=False)


def _pdb_line(serial: int, atom: Chem.Atom, xyz: np.ndarray) -> str:
    info = atom.GetPDBResidueInfo()
    record = "HETATM" if info.GetIsHeteroAtom() else "ATOM  "
    element = atom.GetSymbol().upper()
    return (
        f"{record}{serial % 100000:5d} {info.GetName():<4.4}{info.GetAltLoc() or ' ':1.1}"
        f"{info.GetResidueName():>3.3} {info.GetChainId() or ' ':1.1}{info.GetResidueNumber():4d}"
        f"{info.GetInsertionCode() or ' ':1.1}   {xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}"
        f"  1.00  0.00          {element:>2.2}"
    )


def _residue_key(atom: Chem.Atom) -> tuple[str, int, str]:
    info = atom.GetPDBResidueInfo()
    return (info.GetChainId().strip(), info.GetResidueNumber(), info.GetInsertionCode().strip())


def _residue_text(atom: Chem.Atom) -> str:
    """``TYR253.A``: ProLIF's residue text, as the report's interaction chips write it."""
    info = atom.GetPDBResidueInfo()
    chain = info.GetChainId().strip()
    return f"{info.GetResidueName().strip()}{info.GetResidueNumber()}" + (f".{chain}" if chain else "")


def _heavy_centroid(xyz: np.ndarray, indices: Sequence[int], mol: Chem.Mol) -> np.ndarray:
    """Centre of the heavy atoms among ``indices`` (all of them when none is heavy).

    A hydrogen bond's ligand side is donor and hydrogen, a π stack's a ring: the line is
    drawn from the donor, from the ring's centre.
    """
    heavy = [i for i in indices if mol.GetAtomWithIdx(int(i)).GetAtomicNum() != 1] or list(indices)
    return xyz[np.asarray(heavy, dtype=int)].mean(axis=0)


def pose_contacts(ligand: Chem.Mol, receptor: Any) -> list[Contact]:
    """The interactions of one pose with a pocket, as line segments to draw.

    Parameters
    ----------
    ligand
        The pose, hydrogens explicit (as ProLIF needs them).
    receptor
        A :class:`pipeline.interactions.Receptor` (the prepared receptor or an MD frame's pocket).

    Returns
    -------
    list of (type, ligand point, protein point, distance Å, residue text)
        One per interaction ProLIF reports (the first match of each type per residue),
        hydrophobic contacts last; the points are the centres of the heavy atoms involved.

    Raises
    ------
    pipeline.interactions.InteractionError
        The pose cannot be fingerprinted (no hydrogens, no coordinates).
    """
    from ..interactions import VICINITY_CUTOFF, fingerprinter, ligand_molecule

    lig = ligand_molecule(ligand)
    residues = receptor.pocket(lig.xyz, VICINITY_CUTOFF)
    if not residues:
        return []
    found = fingerprinter().generate(lig, receptor.molecule, residues=residues, metadata=True)
    lig_xyz = np.asarray(lig.xyz, dtype=float)
    out = []
    for (_, resid), interactions in found.items():
        for kind, matches in interactions.items():
            for meta in matches:
                parents = meta.get("parent_indices", {})
                if not parents.get("ligand") or not parents.get("protein"):
                    continue
                a = _heavy_centroid(lig_xyz, parents["ligand"], ligand)
                b = _heavy_centroid(receptor.xyz, parents["protein"], receptor.molecule)
                distance = float(meta.get("distance", np.linalg.norm(a - b)))
                out.append((kind, tuple(a), tuple(b), distance, str(resid)))
    # polar and aromatic contacts first, each group by residue: the list under the view reads that way
    out.sort(key=lambda c: (c[0] == "Hydrophobic", c[4], c[0]))
    return out


def pose_view(
    compound_id: str, ligand: Chem.Mol, source: str, pose: int, receptor: Any, pocket_source: str
) -> PoseView:
    """The 3D view of one pose in one pocket.

    Parameters
    ----------
    compound_id
        The hit's id.
    ligand
        The pose, hydrogens explicit, in the receptor's frame.
    source, pose
        ``refined`` or ``docked`` and the pose number (for the caption).
    receptor
        A :class:`pipeline.interactions.Receptor` holding the pocket.
    pocket_source
        Where the pocket comes from (caption text).

    Returns
    -------
    PoseView
        Without contacts (and with ``note`` saying why) when ProLIF cannot fingerprint the pose.
    """
    from ..interactions import InteractionError

    xyz = np.asarray(ligand.GetConformer().GetPositions(), dtype=float)
    heavy_xyz = xyz[[a.GetAtomicNum() != 1 for a in ligand.GetAtoms()]]
    protein = receptor.molecule
    # whole residues with an atom within the cutoff (the receptor knows each atom's residue)
    residues = sorted(set(receptor.residue_keys[receptor.atoms_near(xyz, POCKET_CUTOFF)]))
    members = np.flatnonzero(np.isin(receptor.residue_keys, residues))
    atoms = [a for a in (protein.GetAtomWithIdx(int(i)) for i in members) if _polar_or_heavy(a)]
    lines = [_pdb_line(n, a, receptor.xyz[a.GetIdx()]) for n, a in enumerate(atoms, start=1)]
    pocket = "\n".join(lines) + "\nEND\n"

    contacts: list[Contact] = []
    note = ""
    try:
        contacts = pose_contacts(ligand, receptor)
    except InteractionError as error:
        note = f"no contacts drawn: {error}"
    except Exception as error:  # ProLIF is third-party code: whatever it raises, the pose is still worth showing
        log.warning(
            "3D view of %s: ProLIF failed (%s: %s); no contacts drawn", compound_id, type(error).__name__, error
        )
        note = f"no contacts drawn: ProLIF failed ({type(error).__name__})"
    in_contact = {c[4] for c in contacts}

    heavy = [a for a in atoms if a.GetAtomicNum() != 1]
    heavy_pos = receptor.xyz[[a.GetIdx() for a in heavy]] if heavy else np.zeros((0, 3))
    close = np.zeros(len(heavy), dtype=bool)
    if len(heavy) and len(heavy_xyz):
        gaps = np.linalg.norm(heavy_pos[:, None, :] - heavy_xyz[None, :, :], axis=-1)
        close = gaps.min(axis=1) <= CONTACT_SHELL
    by_residue: dict[tuple[str, int, str], list[int]] = {}
    for k, atom in enumerate(heavy):
        by_residue.setdefault(_residue_key(atom), []).append(k)
    sticks, labels = [], []
    for key in sorted(by_residue, key=lambda r: (r[0], r[1], r[2])):
        own = by_residue[key]
        text = _residue_text(heavy[own[0]])
        if not (close[own].any() or text in in_contact):
            continue
        side = [k for k in own if heavy[k].GetPDBResidueInfo().GetName().strip() not in _BACKBONE] or own
        sticks.append((key[1], key[0]))
        labels.append((text, tuple(heavy_pos[side].mean(axis=0))))
    return PoseView(
        compound_id=compound_id,
        source=source,
        pose=pose,
        pocket_source=pocket_source,
        ligand=ligand_block(ligand),
        pocket=pocket,
        sticks=sticks,
        labels=labels,
        contacts=contacts,
        note=note,
    )


def _frame_pockets(layout: RunLayout, refined_ids: set[str]) -> dict[tuple[str, int], Path]:
    """The MD frames' pocket PDB of each refined ``(id, pose)`` (:meth:`RunLayout.refined_frame_files`)."""
    return layout.refined_frame_files(refined_ids)


def _final_frame_pocket(path: Path) -> Any:
    """The pocket of the last MD frame (the refined pose is that frame's ligand) as a Receptor."""
    from ..interactions import Receptor, protein_from_pdb

    protein = protein_from_pdb(path)
    last = list(protein.GetConformers())[-1].GetId()  # RDKit's conformer sequence does not index from the end
    return Receptor(Chem.Mol(protein, confId=last))


def pose_views(
    run_dir: str | Path, chosen: Sequence[tuple[pd.Series, Chem.Mol, str, int]]
) -> dict[str, PoseView | str]:
    """The 3D view of each chosen top-hit pose.

    Parameters
    ----------
    run_dir
        The run folder (``receptor/receptor.pdb``, ``refine_batches/``, ``refined/`` inside).
    chosen
        :func:`~.top_hits.select_top_poses` of the run: ``(row, pose, source, pose number)``.

    Returns
    -------
    dict
        By compound id: its :class:`PoseView`, or the reason (text) why it has none. Never
        raises for one pose: the report is written with whatever views could be made.
    """
    from ..interactions import InteractionError, load_receptor

    layout = RunLayout(run_dir)
    if not chosen:
        return {}
    receptor, receptor_error = None, ""
    try:
        receptor = load_receptor(layout.receptor_pdb)
    except (InteractionError, OSError, ValueError) as error:
        receptor_error = f"the prepared receptor cannot be read ({error})"
    refined_ids = {str(row["id"]) for row, _, source, _ in chosen if source == "refined"}
    frames = _frame_pockets(layout, refined_ids)
    views: dict[str, PoseView | str] = {}
    for row, mol, source, pose in chosen:
        cid = str(row["id"])
        pocket, where = receptor, "prepared receptor (receptor/receptor.pdb)"
        frame_file = frames.get((cid, pose)) if source == "refined" else None
        if frame_file is not None and frame_file.is_file():
            try:
                pocket, where = _final_frame_pocket(frame_file), "final MD frame (refined/frames/)"
            except (InteractionError, OSError, ValueError) as error:
                log.warning(
                    "3D view of %s: MD frame pocket %s unreadable (%s); showing the receptor", cid, frame_file, error
                )
        if pocket is None:
            views[cid] = receptor_error
            continue
        try:
            views[cid] = pose_view(cid, mol, source, pose, pocket, where)
        except (InteractionError, ValueError, RuntimeError, IndexError) as error:
            log.warning("3D view of %s not made: %s", cid, error)
            views[cid] = f"the pose cannot be shown ({error})"
    return views


def share_colour(value: float, scale: float) -> str:
    """The colour of a share of the score: :data:`FAVOURABLE` (negative) or :data:`UNFAVOURABLE`, by strength.

    Parameters
    ----------
    value
        The share (kcal/mol-like; negative = favourable).
    scale
        The largest |share| drawn (full colour); smaller ones are mixed with :data:`NEUTRAL`
        (square root of the fraction, so that a share of a quarter of the largest is still
        half coloured).

    Returns
    -------
    str
        ``#rrggbb``.
    """
    full = FAVOURABLE if value < 0 else UNFAVOURABLE
    t = min(1.0, abs(value) / scale) ** 0.5 if scale > 0 else 0.0
    mix = [round((1 - t) * int(NEUTRAL[k : k + 2], 16) + t * int(full[k : k + 2], 16)) for k in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in mix)


def explanation_overlay(residues: pd.DataFrame, contacts: pd.DataFrame, source: str) -> dict[str, Any] | None:
    """What the 3D view colours for one explained pose (:attr:`PoseView.explain`).

    Parameters
    ----------
    residues
        The pose's rows of ``explain/compounds/<id>.csv`` (``number, chain``, ``model_contribution``,
        ``vina_contribution``).
    contacts
        The pose's rows of ``explain/contacts.csv`` (both atoms' coordinates and energies).
    source
        ``docked`` or ``refined``: a refined pose gets no pair lines (the pair model scores
        it against the rigid docking receptor, whose atoms are not where the MD frame's are).

    Returns
    -------
    dict or None
        ``what`` (``model`` or ``Vina``), ``residues`` (the :data:`EXPLAIN_RESIDUES` of largest
        |share|: ``[number, chain, colour]``) and ``pairs`` (the :data:`EXPLAIN_PAIRS` of largest
        |energy|: ``[ligand point, protein point, colour]``); ``None`` without residue shares.
    """
    model = "model_contribution" in residues and residues["model_contribution"].notna().any()
    column, what = ("model_contribution", "model") if model else ("vina_contribution", "Vina")
    rows = residues.dropna(subset=[column, "number"])
    if not len(rows):
        return None
    rows = rows.reindex(rows[column].abs().sort_values(ascending=False, kind="mergesort").index)
    rows = rows.head(EXPLAIN_RESIDUES)
    scale = float(rows[column].abs().max())
    colours = [share_colour(float(v), scale) for v in rows[column]]
    out_residues = [[int(n), str(c or ""), k] for n, c, k in zip(rows["number"], rows["chain"], colours)]
    pairs = []
    energy = "model_energy" if model else "vina_energy"
    if source == "docked" and len(contacts):
        top = contacts.dropna(subset=[energy])
        top = top.reindex(top[energy].abs().sort_values(ascending=False, kind="mergesort").index)
        top = top.head(EXPLAIN_PAIRS)
        pair_scale = float(top[energy].abs().max()) if len(top) else 0.0
        for _, c in top.iterrows():
            a = [round(float(c[f"ligand_{k}"]), 2) for k in "xyz"]
            b = [round(float(c[f"protein_{k}"]), 2) for k in "xyz"]
            pairs.append([a, b, share_colour(float(c[energy]), pair_scale)])
    return {"what": what, "residues": out_residues, "pairs": pairs}


# ---------------------------------------------------------------------------------------------- HTML


def _json_script(element_id: str, payload: dict[str, Any]) -> str:
    """An inert ``<script type="application/json">``: the browser parses it as data, never runs it.

    ``<``, ``>`` and ``&`` are written as JSON escapes, so no text inside (a residue name, a
    title) can close the element or open another.
    """
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{html.text(element_id)}">{text}</script>'


def _contact_list(view: PoseView) -> str:
    if not view.contacts:
        return f'<p class="note">{html.text(view.note or "ProLIF finds no contact in this pose.")}</p>'
    items = []
    for kind, _, _, distance, residue in view.contacts:
        color = CONTACT_COLORS.get(kind, "#555555")
        items.append(
            f'<li><span class="swatch" style="border-color:{color}"></span>'
            f"{html.text(residue)} {html.text(kind)} {distance:.1f} Å</li>"
        )
    return f'<ul class="contacts">{"".join(items)}</ul>'


def viewer_cell(view: PoseView | str | None, index: int) -> html.Cell:
    """The top-hits table cell that opens a hit's 3D view.

    Parameters
    ----------
    view
        The hit's :class:`PoseView`; text (why there is none) or ``None`` (no pose found).
    index
        The row's position in the table (names the data element, ``pose3d-<index>``).

    Returns
    -------
    pipeline.report.html.Cell
        A closed ``<details>`` with the viewer box, the caption and the contact list, and the
        pose's data as inert JSON; the viewer script builds the view when it is opened.
    """
    if not isinstance(view, PoseView):
        return html.Cell(f'<span class="spread">{html.text(view or "no pose found")}</span>', css="pose3d")
    element = f"pose3d-{index}"
    what = (
        f"MD-refined pose {view.pose} (final frame)" if view.source == "refined" else f"docked pose {view.pose} (Vina)"
    )
    caption = (
        f'<p class="note">{html.text(what)} in the pocket of the {html.text(view.pocket_source)}: ligand carbons '
        "orange, residues within "
        f"{CONTACT_SHELL:g} Å or in contact as sticks (labelled), the rest within {POCKET_CUTOFF:g} Å as lines; "
        "dashed: ProLIF contacts of this pose. Drag to rotate, scroll to zoom.</p>"
    )
    if view.explain:
        lines = "; solid lines: the atom pairs with the largest shares" if view.explain["pairs"] else ""
        caption += (
            f'<p class="note">Coloured by contribution to the {html.text(view.explain["what"])} score: the carbons '
            f"of the {len(view.explain['residues'])} residues with the largest shares, blue favourable, red "
            f"unfavourable, paler for smaller shares{lines} (see “why this score”).</p>"
        )
    body = (
        f'<details class="pose3d" data-pose="{element}"><summary>3D view</summary>'
        f'<div class="viewer3d" role="img" aria-label="3D view of {html.text(view.compound_id)}"></div>'
        f"{caption}{_contact_list(view)}</details>{_json_script(element, view.payload())}"
    )
    return html.Cell(body, css="pose3d")


def page_scripts(views: dict[str, PoseView | str]) -> list[str]:
    """The scripts a page with these views needs after its own: 3Dmol.js and the viewer script.

    None when no hit has a view, so a page without poses carries neither (nor their half megabyte).
    """
    if not any(isinstance(v, PoseView) for v in views.values()):
        return []
    return [threedmol_js(), JS]


def payload_bytes(view: PoseView) -> int:
    """Size (bytes, UTF-8) of one hit's data element in the page."""
    return len(_json_script("pose3d-0", view.payload()).encode("utf-8"))
