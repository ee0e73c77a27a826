r"""Why this score: what each top hit's score is made of, per residue and per atom contact.

Both scores that rank a run are sums over protein-ligand heavy-atom pairs, so both split
exactly into the pairs' shares, and a residue's share is the sum over its atoms' pairs:

* the pair-term model (:class:`~pipeline.scoring.pair_model.PairScorer`):
  :math:`\text{score} = \sum_{ij} e_{ij} / (1 + w_\text{rot} N_\text{rot})`; an ensemble's
  score is the mean of its members', so a pair's share is the mean over members of
  :math:`e_{ij} / (1 + w_\text{rot} N_\text{rot})` and the shares of all pairs sum to the
  ensemble mean - the ``affinity`` of ``scores.parquet``, whose negative is ``gnn_score``
  (``gnn_score_refined`` for a refined pose) in ``ranking.csv``;
* Vina: the same pairs' five terms (:func:`pipeline.pair_graphs.vina_terms`) with Vina's
  weights, divided by the same rotatable-bond factor: Vina's intermolecular energy of
  the pose and its share per term, per residue and per pair.

What is explained
-----------------
The first ``top_n`` compounds of ``ranking.csv`` (``report.top_n``, the report's top hits).
For each, every pose whose number the ranking or the report shows, each once, with its
``roles``: ``docking_score`` (the docked pose with the best Vina score), ``gnn_score`` (the
docked pose whose ensemble score the ranking reports: its best-scored docked pose),
``gnn_score_refined`` (likewise among refined poses) and ``3D view`` (the pose the report's
3D view and ``top_hits.sdf`` show: the refined ``md_pose`` where refined, else the
``docking_score`` pose).

With a pair model the pair graphs are the run's own graph files, the very graphs the score
stage scored (so the sums reproduce its numbers); the model runs again in float64. Without
one (the complex-graph GNN, or scoring off) there is no per-pair model score to split:
only Vina's breakdown is written, from a pair graph built here from the pose and the
docking PDBQT, and every row says that the model's explanation needs a pair-term model.

Files (``results/<run>/explain/``, :class:`pipeline.layout.RunLayout`)
-------------------------------------------------------------------------
``summary.csv``, one row per explained pose (:data:`SUMMARY_COLUMNS`):
    ``id, rank, source, pose, roles, status`` (``explained``, ``vina only`` or ``failed``),
    ``message`` (why not, or caveats); the model's side: ``model``, ``n_members``,
    ``model_sum`` (the sum of the pose's residue contributions, kcal/mol-like, lower =
    better), ``model_spread`` (std over members), ``score_affinity`` (the score stage's
    ``affinity`` of the pose), ``ranking_column`` and ``ranking_value`` (the ``ranking.csv``
    column this pose's score is, and its value there: ``gnn_score = -model_sum``, written
    with 4 decimals), ``model_reference`` (what ``model_sum`` must equal: ``-ranking_value``,
    else ``score_affinity``) and ``model_sum_error`` (``model_sum - model_reference``);
    Vina's side: ``vina_gauss1`` ... ``vina_hbond`` (each term times its weight, summed
    over the pairs, kcal/mol, before the rotatable-bond factor), ``vina_inter`` (their
    sum), ``vina_intra_delta`` (the ligand's intramolecular energy minus that of the best
    pose, from Vina's docking output: 0 for the best pose, empty for a refined pose),
    ``n_rot``, ``rot_factor`` (``1 + 0.05846 n_rot``), ``vina_torsional``, ``vina_score``
    (``(vina_inter + vina_intra_delta) / rot_factor = vina_inter + vina_intra_delta +
    vina_torsional``: Vina's decomposition of its score), ``vina_reported`` (Vina's own
    score of the pose from docking; empty for a refined pose) and ``vina_error``.
``compounds/<id>.csv``, one row per pocket residue (an atom within 8 Å) and explained pose (:data:`RESIDUE_COLUMNS`):
    ``source, pose, residue`` (``TYR334.A``, as ProLIF writes residues), ``chain,
    number, icode``, ``model_contribution`` (kcal/mol-like, after the rotatable-bond
    factor; the column sums to ``model_sum``), ``vina_contribution`` (likewise; sums to
    ``vina_inter / rot_factor``) and its five terms ``vina_gauss1`` ... ``vina_hbond``,
    ``n_contacts`` (heavy-atom pairs closer than :data:`CONTACT_DISTANCE`) and
    ``min_distance`` (Å). Most favourable model contribution first (Vina's without a model).
    Negative = favourable for both.
``contacts.csv``, per explained pose its :data:`TOP_CONTACTS` atom pairs of largest |model energy| (:data:`CONTACT_COLUMNS`):
    ``id, source, pose, ligand_atom`` (the RDKit atom index in the run's SDF of the pose,
    empty when the pose could not be matched), ``ligand_element, ligand_xs, residue,
    protein_atom, protein_xs, distance, model_energy, vina_energy`` (the pair's share of
    each score, after the factor) and both atoms' coordinates (Å).

Faults: a compound that cannot be explained (no graph of its pose, a pose Vina cannot
type, anything raised) becomes ``failed`` rows with the reason; the others go on. The
fault-injection hook (:func:`pipeline.faults.inject`, stage ``explain``) runs per compound.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import faults
from ..config import schema_default
from ..io import neutralize_csv_cells, restore_csv_cells, staging_dir
from ..layout import RunLayout
from ..pair_graphs import DEFAULT_PAIR_SCHEMA, VINA_TERMS, PairGraphSchema

log = logging.getLogger(__name__)

__all__ = [
    "CONTACT_DISTANCE",
    "TOP_CONTACTS",
    "SUMMARY_COLUMNS",
    "RESIDUE_COLUMNS",
    "CONTACT_COLUMNS",
    "NEEDS_PAIR_MODEL",
    "PoseExplanation",
    "RunExplanations",
    "explain_graph",
    "explain_run",
    "write_explanations",
    "read_explanations",
]

#: Stage name of the fault-injection hook.
STAGE = "explain"
#: A residue "is in contact" with the ligand through heavy-atom pairs closer than this (Å).
CONTACT_DISTANCE = 4.5
#: Atom pairs per explained pose in ``contacts.csv`` (largest |energy| first).
TOP_CONTACTS = 25
#: What every row of a run without a pair-term model says.
NEEDS_PAIR_MODEL = (
    "the model's explanation needs a pair-term model (score.model {model!r} is a {kind}); only Vina's breakdown"
)
_TERM_COLUMNS = [f"vina_{t}" for t in VINA_TERMS]
SUMMARY_COLUMNS = [
    "id",
    "rank",
    "source",
    "pose",
    "roles",
    "status",
    "message",
    "model",
    "n_members",
    "model_sum",
    "model_spread",
    "score_affinity",
    "ranking_column",
    "ranking_value",
    "model_reference",
    "model_sum_error",
    *_TERM_COLUMNS,
    "vina_inter",
    "vina_intra_delta",
    "n_rot",
    "rot_factor",
    "vina_torsional",
    "vina_score",
    "vina_reported",
    "vina_error",
]
RESIDUE_COLUMNS = [
    "source",
    "pose",
    "residue",
    "chain",
    "number",
    "icode",
    "model_contribution",
    "vina_contribution",
    *_TERM_COLUMNS,
    "n_contacts",
    "min_distance",
]
CONTACT_COLUMNS = [
    "id",
    "source",
    "pose",
    "ligand_atom",
    "ligand_element",
    "ligand_xs",
    "residue",
    "protein_atom",
    "protein_xs",
    "distance",
    "model_energy",
    "vina_energy",
    "ligand_x",
    "ligand_y",
    "ligand_z",
    "protein_x",
    "protein_y",
    "protein_z",
]
#: The 3D view's pose of a compound (``md_pose`` where refined): the role that says so.
VIEW_ROLE = "3D view"
# graphs of one atom matched to another's coordinates: float32 positions, so 1e-3 Å apart at most
_SAME_ATOM = 0.01


def _np(value: Any) -> np.ndarray:
    """A tensor (of a loaded graph) or an array (of a fresh one) as a float64/int NumPy array."""
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _element(xs_name: str) -> str:
    return xs_name.split("_")[0] if xs_name != "other" else "?"


# --------------------------------------------------------------------------------------------- one pose


@dataclass
class PoseExplanation:
    """The shares of one pose's scores, per residue and per atom pair.

    Attributes
    ----------
    residues
        One row per pocket residue: :data:`RESIDUE_COLUMNS` without ``source, pose``.
    contacts
        The :data:`TOP_CONTACTS` pairs of largest |energy|: :data:`CONTACT_COLUMNS` without ``id, source, pose``.
    values
        The pose's summary numbers: ``n_members``, ``model_sum``, ``model_spread`` (NaN
        without a model), ``vina_<term>``, ``vina_inter``, ``n_rot``, ``rot_factor``.
    """

    residues: pd.DataFrame
    contacts: pd.DataFrame
    values: dict[str, float] = field(default_factory=dict)


def _member_pair_energies(graph, members: Sequence, n_rot: float) -> tuple[np.ndarray, np.ndarray]:
    """Per member: the pairs' shares of its score (K×P, after the rotor factor) and its score (K)."""
    import torch

    shares, scores = [], []
    with torch.inference_mode():
        for member in members:
            out = member.eval()(graph)
            factor = 1.0 + float(member.rotor_weight()) * n_rot
            shares.append(out["pair_energy"].double().cpu().numpy() / factor)
            scores.append(float(out["score"].double()[0]))
    return np.stack(shares), np.asarray(scores)


@lru_cache(maxsize=2)  # by identity: one receptor serves every pose of a run
def _residue_sites(receptor) -> dict[str, tuple[str, int, str]]:
    """``residue key -> (chain, number, insertion code)`` of every residue of a receptor."""
    sites: dict[str, tuple[str, int, str]] = {}
    for atom in range(len(receptor.xyz)):
        key = receptor.residue_key(atom)
        if key not in sites:
            sites[key] = (receptor.chains[atom].strip(), int(receptor.numbers[atom]), receptor.icodes[atom].strip())
    return sites


def _ligand_atoms(ligand, lig_pos: np.ndarray) -> np.ndarray | None:
    """RDKit indices of the graph's ligand nodes (the heavy atoms in RDKit order), if ``ligand`` is that pose."""
    if ligand is None or ligand.GetNumConformers() == 0:
        return None
    heavy = np.array([a.GetIdx() for a in ligand.GetAtoms() if a.GetAtomicNum() > 1], dtype=np.int64)
    if len(heavy) != len(lig_pos):
        return None
    xyz = np.asarray(ligand.GetConformer().GetPositions())[heavy]
    # another pose of the same molecule has the same atoms elsewhere: only the same coordinates prove it
    return heavy if np.abs(xyz - lig_pos).max() < _SAME_ATOM else None


def explain_graph(
    graph: Any,
    members: Sequence = (),
    schema: PairGraphSchema = DEFAULT_PAIR_SCHEMA,
    receptor: Any = None,
    ligand: Any = None,
    top_contacts: int = TOP_CONTACTS,
) -> PoseExplanation:
    """Split one pose's pair-model score and Vina score into residue and atom-pair shares.

    Parameters
    ----------
    graph
        One pair graph (:func:`pipeline.pair_graphs.pair_graph`): a loaded ``Data`` (needed
        with ``members``) or the dict of arrays.
    members
        The :class:`~pipeline.scoring.pair_model.PairScorer` members of the run's model (any
        dtype; float64 gives the exact sums); empty: Vina's shares only.
    schema
        The graph's schema (feature names, Vina's weights and rotor weight).
    receptor
        The :class:`~pipeline.pair_graphs.VinaReceptor` the graph was built on, for protein
        atom names and residue numbers; ``None`` leaves them empty.
    ligand
        The pose (RDKit, the run's SDF record), for ligand atom indices and elements; ``None``
        or another pose leaves the indices empty.
    top_contacts
        Atom pairs kept in ``contacts``.

    Returns
    -------
    PoseExplanation
        ``residues`` sum to the scores: ``model_contribution`` to ``values["model_sum"]``
        (the members' mean score), ``vina_contribution`` to ``vina_inter / rot_factor``.
    """
    names = list(schema.global_names)
    n_rot = float(_np(graph["globals"]).reshape(-1)[names.index("n_rot")])
    factor = 1.0 + float(schema.vina_rot_weight) * n_rot
    terms = _np(graph["pair_terms"]).astype(np.float64)
    weights = np.asarray(schema.vina_weights, dtype=np.float64)
    vina_terms = terms * weights / factor  # P×5: each pair's share of Vina's score, per term
    vina_pairs = vina_terms.sum(axis=1)
    dist = _np(graph["pair_dist"]).astype(np.float64)
    pair_index = _np(graph["pair_index"]).astype(np.int64).reshape(2, -1)
    residue = _np(graph["pair_residue"]).astype(np.int64)
    keys = [str(k) for k in graph["residue_keys"]]
    n_res = len(keys)

    values: dict[str, float] = dict(n_members=float(len(members)), model_sum=np.nan, model_spread=np.nan)
    model_pairs = np.full(len(dist), np.nan)
    if members:
        shares, scores = _member_pair_energies(graph, members, n_rot)
        model_pairs = shares.mean(axis=0)
        values.update(model_sum=float(model_pairs.sum()), model_spread=float(scores.std()))
    values.update({c: float(w * s) for c, w, s in zip(_TERM_COLUMNS, weights, terms.sum(axis=0))})
    values.update(vina_inter=float(terms.sum(axis=0) @ weights), n_rot=n_rot, rot_factor=factor)

    def per_residue(pair_values: np.ndarray) -> np.ndarray:
        return np.bincount(residue, weights=pair_values, minlength=n_res)

    min_distance = np.full(n_res, np.inf)
    np.minimum.at(min_distance, residue, dist)
    sites = _residue_sites(receptor) if receptor is not None else {}
    site = [sites.get(k, ("", None, "")) for k in keys]
    table = pd.DataFrame(
        {
            "residue": keys,
            "chain": [s[0] for s in site],
            "number": pd.array([s[1] for s in site], dtype="Int64"),
            "icode": [s[2] for s in site],
            "model_contribution": per_residue(model_pairs) if members else np.full(n_res, np.nan),
            "vina_contribution": per_residue(vina_pairs),
            **{c: per_residue(vina_terms[:, k]) for k, c in enumerate(_TERM_COLUMNS)},
            "n_contacts": np.bincount(residue[dist < CONTACT_DISTANCE], minlength=n_res),
            "min_distance": min_distance,
        }
    )
    order = "model_contribution" if members else "vina_contribution"
    table = table.sort_values([order, "residue"], kind="mergesort").reset_index(drop=True)
    ranked_by = model_pairs if members else vina_pairs
    pick = np.argsort(-np.abs(ranked_by), kind="mergesort")[: max(0, top_contacts)]
    pairs = dict(
        ligand=pair_index[0, pick],
        protein=pair_index[1, pick],
        residue=[keys[r] for r in residue[pick]],
        distance=dist[pick],
        model_energy=model_pairs[pick],
        vina_energy=vina_pairs[pick],
    )
    return PoseExplanation(table, _contacts(graph, schema, pairs, receptor, ligand), values)


def _contacts(graph, schema: PairGraphSchema, pairs: dict[str, Any], receptor, ligand) -> pd.DataFrame:
    """Rows of :data:`CONTACT_COLUMNS` (less ``id, source, pose``) of the chosen pairs of one graph."""
    from scipy.spatial import cKDTree

    n_lig = int(graph["n_ligand_atoms"])
    pos = _np(graph["pos"]).astype(np.float64)
    xs_names = list(schema.xs_types) + ["other"]
    xs = [xs_names[i] for i in _np(graph["x"])[:, : len(xs_names)].argmax(axis=1)]
    lig, prot = pairs["ligand"], pairs["protein"]
    atoms = _ligand_atoms(ligand, pos[:n_lig])
    if atoms is not None:
        index = pd.array([int(atoms[i]) for i in lig], dtype="Int64")
        element = [ligand.GetAtomWithIdx(int(atoms[i])).GetSymbol() for i in lig]
    else:
        index = pd.array([None] * len(lig), dtype="Int64")
        element = [_element(xs[i]) for i in lig]
    protein_atom = [""] * len(prot)
    if receptor is not None and len(prot):
        # the graph keeps coordinates, not receptor atom numbers: find each protein node's atom by position
        gap, nearest = cKDTree(receptor.xyz[receptor.heavy]).query(pos[prot])
        protein_atom = [str(receptor.names[receptor.heavy[n]]) if g < _SAME_ATOM else "" for g, n in zip(gap, nearest)]
    return pd.DataFrame(
        {
            "ligand_atom": index,
            "ligand_element": element,
            "ligand_xs": [xs[i] for i in lig],
            "residue": pairs["residue"],
            "protein_atom": protein_atom,
            "protein_xs": [xs[i] for i in prot],
            "distance": pairs["distance"],
            "model_energy": pairs["model_energy"],
            "vina_energy": pairs["vina_energy"],
            # the graph's float32 positions, rounded: 4 decimals keep every digit they hold
            **{f"ligand_{a}": pos[lig, k].round(4) for k, a in enumerate("xyz")},
            **{f"protein_{a}": pos[prot, k].round(4) for k, a in enumerate("xyz")},
        }
    )


# --------------------------------------------------------------------------------------------- the run


@dataclass
class RunExplanations:
    """The explanations of a run's top hits: what ``explain/`` holds (see the module docstring).

    Attributes
    ----------
    summary
        :data:`SUMMARY_COLUMNS`, one row per explained pose, in rank order.
    residues
        By compound id: its per-residue table (:data:`RESIDUE_COLUMNS`), every explained pose.
    contacts
        :data:`CONTACT_COLUMNS`, every explained pose.
    """

    summary: pd.DataFrame
    residues: dict[str, pd.DataFrame] = field(default_factory=dict)
    contacts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CONTACT_COLUMNS))

    def poses(self, compound_id: str) -> pd.DataFrame:
        """The summary rows of one compound (empty when it was not explained)."""
        return self.summary[self.summary["id"].astype(str) == str(compound_id)]

    def pose_residues(self, compound_id: str, source: str, pose: int) -> pd.DataFrame:
        """The residue rows of one explained pose (empty when there are none)."""
        table = self.residues.get(str(compound_id))
        if table is None:
            return pd.DataFrame(columns=RESIDUE_COLUMNS)
        return table[(table["source"] == source) & (table["pose"].astype(int) == int(pose))]

    def pose_contacts(self, compound_id: str, source: str, pose: int) -> pd.DataFrame:
        """The contact rows of one explained pose (empty when there are none)."""
        c = self.contacts
        return c[(c["id"].astype(str) == str(compound_id)) & (c["source"] == source) & (c["pose"] == int(pose))]


@dataclass
class _Model:
    """The run's scorer as explain sees it: a pair model's members (float64), or why there are none."""

    name: str = ""
    members: list = field(default_factory=list)
    schema: PairGraphSchema = DEFAULT_PAIR_SCHEMA
    note: str = ""


def _run_model(score: Mapping[str, Any]) -> _Model:
    """The run's model if it is a pair model (loaded on the CPU in float64), else the note every row gets."""
    if not score.get("enabled", True):
        return _Model(note="no model score in this run (score.enabled: false); only Vina's breakdown")
    from .ensemble import ModelError, model_architecture, read_card, resolve_model_dir

    try:
        folder = resolve_model_dir(score["model"], score.get("models_dir"))
        card = read_card(folder)
        name = str(card.get("name") or folder.name)
        if model_architecture(card, folder / "card.json") != "pair":
            return _Model(name, note=NEEDS_PAIR_MODEL.format(model=name, kind="complex-graph GNN"))
        import torch

        from .pair_folder import load_pair_model

        model = load_pair_model(folder).to("cpu", torch.float64)
    except ModelError as exc:
        return _Model(str(score.get("model", "")), note=f"the model cannot be loaded ({exc}); only Vina's breakdown")
    return _Model(name, list(model.members), model.schema)


def _read_top(path: Path, top_n: int) -> pd.DataFrame:
    """The first ``top_n`` rows of ``ranking.csv`` (ids as text, neutralized cells restored)."""
    from ..errors import VscreenError

    if not path.is_file():
        raise VscreenError(f"'{path}' does not exist: rank the run first (vscreen rank / snakemake)")
    top = pd.read_csv(path, nrows=top_n, dtype={"id": str, "input_id": str}, keep_default_na=True)
    return restore_csv_cells(top)


def _tables_of(paths: dict[str, Path], ids: set[str], columns: list[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """The rows of ``ids`` in the Parquet tables ``{name: path}`` and which table (name) holds each id."""
    import pyarrow.parquet as pq

    frames, where = [], {}
    for name, path in paths.items():
        if not ids or not path.is_file():
            continue
        # the id column first: the top hits live in a few of a large run's thousand tables
        if not pq.read_table(path, columns=["id"])["id"].to_pandas().astype(str).isin(ids).any():
            continue
        present = set(pq.read_schema(path).names)
        table = pd.read_parquet(path, columns=[c for c in columns if c in present])
        table = table[table["id"].astype(str).isin(ids)]
        if not len(table):
            continue
        table = table.assign(id=table["id"].astype(str))
        for cid in table["id"].unique():
            where.setdefault(cid, name)
        frames.append(table[[c for c in columns if c in table.columns]])
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)), where


def _best(rows: pd.DataFrame, column: str, ascending: bool) -> int | None:
    """The pose with the best ``column`` (ties: lowest pose), as the ranking picks it; ``None`` without rows."""
    rows = rows.dropna(subset=[column])
    if not len(rows):
        return None
    return int(rows.sort_values([column, "pose"], ascending=[ascending, True], kind="mergesort")["pose"].iloc[0])


def poses_to_explain(row: Mapping[str, Any], docked: pd.DataFrame, scores: pd.DataFrame | None) -> dict:
    """Which poses of one ranked compound are explained, each with its roles (see the module docstring).

    Parameters
    ----------
    row
        The compound's ``ranking.csv`` row (``md_pose`` where refined).
    docked
        Its rows of the docked pose tables (``pose, docking_score``).
    scores
        Its rows of ``scores.parquet`` (``source, pose, gnn_score``), or ``None`` without model scores.

    Returns
    -------
    dict
        ``(source, pose) -> [role, ...]`` in the order the roles were found.
    """
    out: dict[tuple[str, int], list[str]] = {}
    best_docked = _best(docked, "docking_score", ascending=True)
    if best_docked is not None:
        out.setdefault(("docked", best_docked), []).append("docking_score")
    if scores is not None and len(scores):
        for source, column in (("docked", "gnn_score"), ("refined", "gnn_score_refined")):
            pose = _best(scores[scores["source"] == source], "gnn_score", ascending=False)
            if pose is not None:
                out.setdefault((source, pose), []).append(column)
    md_pose = row.get("md_pose")
    if md_pose is not None and not pd.isna(md_pose):
        out.setdefault(("refined", int(md_pose)), []).append(VIEW_ROLE)
    elif best_docked is not None:
        out[("docked", best_docked)].append(VIEW_ROLE)
    return out


@dataclass
class _RunInputs:
    """What explaining the top hits reads from the run, found once."""

    layout: RunLayout
    ranking: pd.DataFrame
    docked: pd.DataFrame
    scores: pd.DataFrame | None
    chunk_of: dict[str, str]
    batch_of: dict[str, str]
    mols: dict[tuple[str, str, int], Any]
    receptor: Any
    receptor_error: str


def _gather(layout: RunLayout, ranking: pd.DataFrame, with_scores: bool) -> _RunInputs:
    from ..pair_graphs import load_vina_receptor
    from ..report.top_hits import _read_poses  # the report's reader of a few ids' SD records

    ids = set(ranking["id"].astype(str))
    chunks = {c: layout.docked_table(c) for c in layout.chunks()}
    batches = {b: layout.refined_table(b) for b in layout.batches()}
    columns = ["id", "pose", "docking_score", "inter", "intra", "torsional", "intra_best_pose"]
    docked, chunk_of = _tables_of(chunks, ids, columns)
    _, batch_of = _tables_of(batches, ids, ["id", "pose"])
    scores = None
    if with_scores and layout.scores.is_file():
        scores = pd.read_parquet(layout.scores, columns=["id", "pose", "source", "gnn_score", "affinity"])
        scores = scores[scores["id"].astype(str).isin(ids)].assign(id=lambda t: t["id"].astype(str))
    mols: dict[tuple[str, str, int], Any] = {}
    for source, where, sdf in (("docked", chunk_of, layout.docked_sdf), ("refined", batch_of, layout.refined_sdf)):
        found = _read_poses({cid: sdf(name) for cid, name in where.items() if sdf(name).is_file()})
        mols.update({(source, cid, pose): mol for (cid, pose), mol in found.items()})
    receptor, error = None, ""
    try:
        receptor = load_vina_receptor(layout.receptor_pdbqt)
    except Exception as exc:  # noqa: BLE001 - any unreadable receptor costs names (pair model) or Vina's side
        error = f"the docking receptor {layout.receptor_pdbqt.name} cannot be read ({type(exc).__name__}: {exc})"
    return _RunInputs(layout, ranking, docked, scores, chunk_of, batch_of, mols, receptor, error)


class _Graphs:
    """The run's pair graphs of the wanted poses, read one graph file at a time, each once."""

    def __init__(self, layout: RunLayout, schema: PairGraphSchema) -> None:
        self.layout, self.schema = layout, schema
        self._files: dict[str, dict[tuple[str, str, int], Any] | str] = {}

    def get(self, name: str, cid: str, source: str, pose: int):
        if name not in self._files:
            self._files[name] = self._read(name)
        held = self._files[name]
        if isinstance(held, str):
            raise ValueError(held)
        graph = held.get((cid, source, pose))
        if graph is None:
            raise ValueError(
                f"graphs/{name}.pt holds no graph of {source} pose {pose} (not featurized, or featurization failed)"
            )
        return graph

    def _read(self, name: str) -> dict | str:
        from .score import read_graph_file

        path = self.layout.graph_file(name)
        try:
            schema, graphs = read_graph_file(path)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is its compounds' problem only
            return f"graph file graphs/{path.name} cannot be read ({type(exc).__name__})"
        if schema != self.schema:
            return f"graph file graphs/{path.name} is not of the model's pair-graph schema"
        return {(str(g.id), str(getattr(g, "source", "docked")), int(getattr(g, "pose", 1))): g for g in graphs}


def _vina_reported(inputs: _RunInputs, cid: str, source: str, pose: int) -> dict[str, float]:
    if source != "docked":
        return dict(vina_intra_delta=np.nan, vina_reported=np.nan)
    rows = inputs.docked[(inputs.docked["id"] == cid) & (inputs.docked["pose"].astype(int) == pose)]
    if not len(rows):
        return dict(vina_intra_delta=np.nan, vina_reported=np.nan)
    r = rows.iloc[0]
    delta = float(r["intra"] - r["intra_best_pose"]) if {"intra", "intra_best_pose"} <= set(r.index) else np.nan
    return dict(vina_intra_delta=delta, vina_reported=float(r["docking_score"]))


def _summary_row(
    row: Mapping[str, Any], source: str, pose: int, roles: list[str], model: _Model, inputs: _RunInputs
) -> dict[str, Any]:
    """The summary row of one pose before its explanation: ids, roles, the numbers it must reproduce."""
    cid = str(row["id"])
    out: dict[str, Any] = {c: np.nan for c in SUMMARY_COLUMNS}
    out.update(id=cid, rank=row.get("rank"), source=source, pose=pose, roles="; ".join(roles), model=model.name)
    out.update(status="failed", message="", ranking_column="")
    scores = inputs.scores
    if scores is not None:
        mine = scores[(scores["id"] == cid) & (scores["source"] == source) & (scores["pose"] == pose)]
        if len(mine):
            out["score_affinity"] = float(mine["affinity"].iloc[0])
    for column in ("gnn_score", "gnn_score_refined"):
        if column in roles and column in row and not pd.isna(row[column]):
            out.update(ranking_column=column, ranking_value=float(row[column]))
            break
    out.update(_vina_reported(inputs, cid, source, pose))
    return out


def _explain_pose(
    cid: str, source: str, pose: int, model: _Model, inputs: _RunInputs, graphs: _Graphs | None, top_contacts: int
) -> PoseExplanation:
    from ..pair_graphs import pair_graph, to_data

    mol = inputs.mols.get((source, cid, pose))
    if model.members:
        name = (inputs.chunk_of if source == "docked" else inputs.batch_of).get(cid)
        if name is None:
            raise ValueError(f"no {source} pose table of the run lists this compound")
        graph = graphs.get(name, cid, source, pose)
        return explain_graph(graph, model.members, model.schema, inputs.receptor, mol, top_contacts)
    if inputs.receptor is None:
        raise ValueError(inputs.receptor_error)
    if mol is None:
        raise ValueError(f"the {source} pose {pose} is not in the run's SD files")
    # the pair graph of the pose, as a pair model's featurization would build it: Vina's own typing and terms
    graph = to_data(pair_graph(mol, inputs.receptor, DEFAULT_PAIR_SCHEMA))
    return explain_graph(graph, (), DEFAULT_PAIR_SCHEMA, inputs.receptor, mol, top_contacts)


def _finish(out: dict[str, Any], found: PoseExplanation, model: _Model, scoring: str) -> None:
    """Fill a summary row from an explanation: the sums, their references and their errors."""
    out.update(found.values)
    out["n_members"] = int(out["n_members"])
    if model.members:
        reference = -out["ranking_value"] if out["ranking_column"] else out["score_affinity"]
        out.update(model_reference=reference, model_sum_error=out["model_sum"] - reference, status="explained")
    else:
        out.update(status="vina only", message=model.note)
    intra = 0.0 if pd.isna(out["vina_intra_delta"]) else out["vina_intra_delta"]
    out["vina_score"] = (out["vina_inter"] + intra) / out["rot_factor"]
    out["vina_torsional"] = out["vina_score"] - (out["vina_inter"] + intra)
    out["vina_error"] = out["vina_score"] - out["vina_reported"]
    notes = [out["message"]] if out["message"] else []
    if out["source"] == "refined":
        notes.append("refined pose: Vina's terms against the docking receptor (rigid), as the pair model sees it")
    if scoring != "vina":
        notes.append(f"docking used {scoring}: Vina's breakdown is not of the docking score")
    out["message"] = "; ".join(notes)


def explain_run(
    run: RunLayout | str | os.PathLike,
    config: Mapping[str, Any],
    top_n: int | None = None,
    top_contacts: int = TOP_CONTACTS,
) -> RunExplanations:
    """Explain the scores of a ranked run's top hits (see the module docstring).

    Parameters
    ----------
    run
        The run folder or its layout (``ranking.csv``, ``scores.parquet``, ``graphs/``,
        ``docked/``, ``refined/``, ``receptor/receptor.pdbqt``).
    config
        The validated run config (``score`` says the model, ``report.top_n`` how many hits).
    top_n
        Compounds explained (default ``report.top_n``).
    top_contacts
        Atom pairs per pose in ``contacts``.

    Returns
    -------
    RunExplanations
        Never raises for one compound: its rows say ``failed`` and why.

    Raises
    ------
    pipeline.errors.VscreenError
        When the run has no ``ranking.csv``.
    """
    layout = run if isinstance(run, RunLayout) else RunLayout(run)
    top_n = int(top_n or config.get("report", {}).get("top_n", schema_default("report", "top_n")))
    ranking = _read_top(layout.ranking, top_n)
    model = _run_model(config.get("score", {}))
    inputs = _gather(layout, ranking, with_scores=bool(config.get("score", {}).get("enabled", True)))
    graphs = _Graphs(layout, model.schema) if model.members else None
    scoring = str(config.get("docking", {}).get("scoring", schema_default("docking", "scoring")))
    rows, residues, contacts = [], {}, []
    for _, row in ranking.iterrows():
        cid = str(row["id"])
        mine = inputs.scores[inputs.scores["id"] == cid] if inputs.scores is not None else None
        wanted = poses_to_explain(row, inputs.docked[inputs.docked["id"] == cid], mine)
        if not wanted:
            out = _summary_row(row, "docked", 0, [], model, inputs)
            out.update(message="no pose of this compound is in the run's pose tables")
            rows.append(out)
            continue
        tables = []
        for (source, pose), roles in wanted.items():
            out = _summary_row(row, source, pose, roles, model, inputs)
            try:
                faults.inject(STAGE, cid)  # tests' hook (no-op unless VSCREEN_FAULTS)
                found = _explain_pose(cid, source, pose, model, inputs, graphs, top_contacts)
                _finish(out, found, model, scoring)
            except Exception as exc:  # noqa: BLE001 - one compound's failure is its rows' message, not the run's
                log.warning("explain %s (%s pose %d): %s: %s", cid, source, pose, type(exc).__name__, exc)
                out.update(status="failed", message=f"{type(exc).__name__}: {exc}")
                rows.append(out)
                continue
            rows.append(out)
            tables.append(found.residues.assign(source=source, pose=pose)[RESIDUE_COLUMNS])
            contacts.append(found.contacts.assign(id=cid, source=source, pose=pose)[CONTACT_COLUMNS])
        if tables:
            residues[cid] = pd.concat(tables, ignore_index=True)
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    contact_table = pd.concat(contacts, ignore_index=True) if contacts else pd.DataFrame(columns=CONTACT_COLUMNS)
    explained = summary["status"] != "failed"
    log.info(
        "explained %d poses of %d compounds (%d failed)%s",
        int(explained.sum()),
        summary["id"].nunique(),
        int((~explained).sum()),
        f"; {model.note}" if model.note else "",
    )
    return RunExplanations(summary, residues, contact_table)


# --------------------------------------------------------------------------------------------- files


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    # full precision: the residue shares must still sum to the score after a round trip through the file
    neutralize_csv_cells(df).to_csv(path, index=False)


def write_explanations(result: RunExplanations, folder: str | os.PathLike) -> Path:
    """Write ``summary.csv``, ``contacts.csv`` and ``compounds/<id>.csv`` into ``folder``, replacing it whole.

    The folder is assembled next to ``folder`` and renamed into place, so a reader (the
    report) finds the old explanations or the new ones, never a mix, and no compound file
    of an earlier, different top N is left behind.

    Returns
    -------
    Path
        ``folder``.
    """
    from .ensemble import replace_folder

    out = Path(folder)
    tmp = staging_dir(out)
    try:
        (tmp / "compounds").mkdir()
        _write_csv(result.summary, tmp / "summary.csv")
        _write_csv(result.contacts, tmp / "contacts.csv")
        for cid, table in result.residues.items():
            _write_csv(table, tmp / "compounds" / f"{cid}.csv")  # ids are file-name safe (pipeline.library)
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


#: Text columns of the files: read as text (an empty cell as ""), whatever the cells look like.
_TEXT_COLUMNS = ("id", "source", "roles", "status", "message", "model", "ranking_column", "residue", "chain", "icode",
                 "ligand_element", "ligand_xs", "protein_atom", "protein_xs")  # fmt: skip


def _read_csv(path: Path) -> pd.DataFrame:
    header = pd.read_csv(path, nrows=0).columns
    text = {c: str for c in _TEXT_COLUMNS if c in header}
    table = pd.read_csv(path, dtype=text, keep_default_na=False, na_values={c: [""] for c in header if c not in text})
    return restore_csv_cells(table)


def read_explanations(run: RunLayout | str | os.PathLike) -> RunExplanations | None:
    """The explanations ``vscreen explain`` wrote for a run, or ``None`` when it has none (or they cannot be read)."""
    layout = run if isinstance(run, RunLayout) else RunLayout(run)
    if not layout.explain_summary.is_file():
        return None
    try:
        summary = _read_csv(layout.explain_summary)
        contacts = _read_csv(layout.explain_contacts) if layout.explain_contacts.is_file() else None
        residues = {}
        for cid in summary["id"].astype(str).unique():
            path = layout.explain_table(cid)
            if path.is_file():
                residues[cid] = _read_csv(path)
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        log.warning("explanations in %s cannot be read (%s); the report goes without them", layout.explain_dir, exc)
        return None
    return RunExplanations(
        summary, residues, contacts if contacts is not None else pd.DataFrame(columns=CONTACT_COLUMNS)
    )
