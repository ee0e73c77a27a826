"""Pose validity: PoseBusters' checks on the poses that reach the top of the ranking.

A docking score says nothing about whether the pose it belongs to is physically plausible:
a pose that clashes with the protein, or whose bonds are stretched, can still score -12
kcal/mol and top the list. PoseBusters (Buttenschoen, Morris and Deane, Chem. Sci. 2024;
PyPI ``posebusters``) is the community's standard set of plausibility checks; its
``dock`` configuration checks a ligand pose against the protein it was docked into
(``mol_cond``): chemistry (sanitization, InChI, connectivity, radicals), geometry against
RDKit's distance bounds (bond lengths, angles, internal clashes), ring and double-bond
flatness, and the distance to the protein, cofactors and waters (a clash is a heavy-atom
pair closer than 0.75 of the sum of their van der Waals radii; ``minimum_distance_to_protein``)
with the volume overlap.

What is checked
---------------
The pose the ranking reports for a compound, the one ``top_hits.sdf`` holds
(:func:`pipeline.report.top_hits.select_top_poses` chooses it the same way): the
MD-refined pose ``md_pose`` where the compound was refined, otherwise its best docked
pose (lowest docking score, lowest pose number on a tie). A docked pose is checked against
the prepared receptor (``receptor/receptor.pdb``). A refined pose is the ligand of its final
MD frame, in which the pocket's side chains moved with it, so it is checked against that
frame's pocket (the last model of ``refined/frames/<id>_pose<k>.pdb``, as the report's 3D
view shows it): against the static receptor, contacts that MD resolved read as clashes (in
the demo both refined poses that failed ``minimum_distance_to_protein`` against
``receptor.pdb`` were demoted for it). Where the frame file is missing, the refined pose is
checked against ``receptor.pdb`` with a warning in the rank log.

Which compounds: the top ``report.check_poses_top_n`` (``report.top_n`` by default) of
the ranking, or every ranked compound with ``report.check_all_poses: true``. With
``report.rank_valid_first`` (the default) the invalid ones are demoted (below), so
compounds from further down move up into the top N: they are checked too, walking down
the ranking until the top N hold no pose known to be invalid, or until
:data:`MAX_CHECKS_FACTOR` times N poses have been checked (a receptor that every pose
clashes with must not send the rank stage through the whole library).

What ``ranking.csv`` says (:data:`POSE_COLUMNS`)
------------------------------------------------
``pose_valid``
    ``True`` when every check passed, ``False`` when at least one failed, empty when the
    pose was not checked or PoseBusters could not judge it.
``failed_checks``
    The names of the failed checks (PoseBusters' column names, e.g.
    ``minimum_distance_to_protein``), joined by ``"; "``; empty otherwise.
``pose_check``
    ``checked``, ``not checked`` (below the checked top) or ``error`` (no verdict).
``pose_check_reason``
    For ``error``, why: the pose record cannot be read, no pose was found, PoseBusters
    raised, crashed or ran past ``report.pose_check_time_limit``, or some checks could not
    run while none failed (``could not run: internal_energy``). Empty otherwise.

A pose PoseBusters cannot process never stops the ranking: it is an ``error`` row and
keeps its place. Each pose runs in an isolated worker process
(:class:`pipeline.isolation.IsolatedWorker`), as docking and MD do, so that a native crash
or a hang in RDKit costs that pose's verdict only.

How the ranking uses it
-----------------------
With ``report.rank_valid_first: true`` the compounds whose pose is invalid are moved below
every other ranked compound, keeping their order among themselves; all others (valid, not
checked, or not judged) keep their relative order. A pose that was not checked is not known
to be wrong, and placing it below a checked one would reward compounds for not having been
looked at; an invalid pose's score describes a physically impossible complex, so it is no
evidence for the compound at all. The invalid compounds stay in the ranking (with their
scores and the failed checks) rather than in ``failures.csv``: the compound may bind, in
another pose. ``false``: the columns are written, the order is the score's.

Speed
-----
The protein-facing checks only look at protein atoms within 6 Å of the ligand's heavy atoms
(distances) and within 4.8 Å of any ligand atom (volume overlap), but they compute distances
to every protein atom first; PoseBusters is therefore given a pocket: the whole residues
with an atom within :data:`POCKET_CUTOFF` (8 Å) of any ligand atom, which holds every atom
those checks use, so the verdict is the whole protein's (``tests/test_pose_validity.py``
compares them). ``report.posebusters_config: dock_fast`` (the default) is PoseBusters' own
``dock`` configuration without its "internal energy" check, which generates and
optimizes 50 conformers of every compound (seconds to tens of seconds per compound);
``dock`` runs it too.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rdkit import Chem
from scipy.spatial import cKDTree

from .config import schema_default, schema_field
from .isolation import IsolatedWorker, pack_mol, unpack_mol
from .layout import RunLayout

log = logging.getLogger(__name__)

__all__ = [
    "POSE_COLUMNS",
    "POSE_CHECK_STATUSES",
    "POSEBUSTERS_CONFIGS",
    "POCKET_CUTOFF",
    "MAX_CHECKS_FACTOR",
    "PoseCheckSettings",
    "Verdict",
    "ReceptorPocket",
    "PoseChecker",
    "verdict_from_row",
    "read_ranked_poses",
    "check_ranked_poses",
    "demote_invalid",
]

#: Columns the pose checks add to ``ranking.csv`` (after ``ranked_by, domain_reason``).
POSE_COLUMNS = ["pose_valid", "failed_checks", "pose_check", "pose_check_reason"]
#: Values of ``pose_check``.
POSE_CHECK_STATUSES = ("checked", "not checked", "error")
#: PoseBusters configurations the setting ``report.posebusters_config`` may name.
POSEBUSTERS_CONFIGS = ("dock_fast", "dock")
#: Å: protein residues with an atom this close to any ligand atom are the pocket PoseBusters sees.
POCKET_CUTOFF = 8.0
#: Refilling the top N after demotions stops after this many times N checked poses.
MAX_CHECKS_FACTOR = 4
#: PoseBusters' outputs that say whether it could load the inputs (not plausibility checks).
LOADING_OUTPUTS = ("mol_pred_loaded", "mol_cond_loaded")
#: Poses read from the SD files at a time (``check_all_poses`` on a large library).
READ_BATCH = 1000


@dataclass(frozen=True)
class PoseCheckSettings:
    """The ``report`` settings of the pose checks.

    Attributes
    ----------
    top_n
        Check the poses of this many top-ranked compounds (``report.check_poses_top_n``,
        ``report.top_n`` when that is null).
    check_all
        Check every ranked compound's pose (``report.check_all_poses``).
    rank_valid_first
        Demote the compounds whose pose is invalid below all others (``report.rank_valid_first``).
    config
        PoseBusters configuration: ``dock_fast`` or ``dock`` (``report.posebusters_config``), or a
        configuration dictionary (tests).
    time_limit
        Seconds per pose in the isolated worker; ``None`` = no limit (``report.pose_check_time_limit``).
    """

    top_n: int = schema_field("report", "top_n")
    check_all: bool = schema_field("report", "check_all_poses")
    rank_valid_first: bool = schema_field("report", "rank_valid_first")
    config: str | dict = schema_field("report", "posebusters_config")
    time_limit: float | None = schema_field("report", "pose_check_time_limit")

    @classmethod
    def from_config(cls, report: Mapping[str, Any]) -> PoseCheckSettings | None:
        """From the ``report`` section (missing keys take the defaults); ``None`` when ``report.check_poses`` is false.

        The section's keys are named for the report (``check_all_poses``, ``posebusters_config``,
        ``pose_check_time_limit``); this maps them to the fields.
        """
        if not report.get("check_poses", schema_default("report", "check_poses")):
            return None
        names = dict(check_all="check_all_poses", config="posebusters_config", time_limit="pose_check_time_limit")
        values = {field: report[key] for field, key in names.items() if key in report}
        if "rank_valid_first" in report:
            values["rank_valid_first"] = report["rank_valid_first"]
        top_n = report.get("check_poses_top_n") or report.get("top_n")
        if top_n:
            values["top_n"] = int(top_n)
        return cls(**values)


@dataclass(frozen=True)
class Verdict:
    """PoseBusters' verdict on one pose.

    Attributes
    ----------
    valid
        ``True`` (every check passed), ``False`` (at least one failed) or ``None`` (no verdict).
    failed
        Names of the failed checks, in PoseBusters' order.
    reason
        Why there is no verdict (``valid`` is ``None``); empty otherwise.
    """

    valid: bool | None
    failed: tuple[str, ...] = ()
    reason: str = ""

    def as_tuple(self) -> tuple[bool | None, tuple[str, ...], str]:
        """Picklable form, for the worker's pipe."""
        return self.valid, tuple(self.failed), self.reason


def verdict_from_row(row: pd.Series) -> Verdict:
    """The verdict of one row of ``PoseBusters.bust`` (boolean columns, NaN where a check could not run).

    Parameters
    ----------
    row
        One row of the table ``bust`` returns (``full_report=False``).

    Returns
    -------
    Verdict
        Invalid when any check is false; valid when all are true; no verdict when a
        loading output is false, or when some checks could not run and none failed.
    """
    not_loaded = [name for name in LOADING_OUTPUTS if name in row.index and not _true(row[name])]
    if not_loaded:
        return Verdict(
            None, (), "PoseBusters could not load " + ", ".join(n.removesuffix("_loaded") for n in not_loaded)
        )
    checks = row.drop([n for n in LOADING_OUTPUTS if n in row.index])
    failed = tuple(str(name) for name, value in checks.items() if not _missing(value) and not bool(value))
    if failed:
        return Verdict(False, failed)
    unknown = [str(name) for name, value in checks.items() if _missing(value)]
    if unknown:
        return Verdict(None, (), "could not run: " + ", ".join(unknown))
    return Verdict(True)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _true(value: Any) -> bool:
    return not _missing(value) and bool(value)


# --------------------------------------------------------------------------- the protein


class ReceptorPocket:
    """A receptor PDB, read once, from which the pocket around each pose is cut.

    Parameters
    ----------
    pdb_text
        The PDB file's text (``ATOM`` and ``HETATM`` records are kept, in file order).

    Attributes
    ----------
    n_atoms
        Atoms of the receptor.
    """

    def __init__(self, pdb_text: str):
        self._lines = np.array([line for line in pdb_text.splitlines() if line.startswith(("ATOM  ", "HETATM"))])
        if not len(self._lines):
            raise ValueError("no ATOM or HETATM records")
        xyz = np.array([[float(line[30:38]), float(line[38:46]), float(line[46:54])] for line in self._lines])
        # residue name, chain, number and insertion code: whole residues keep PoseBusters'
        # classification (protein, cofactor, water) of every atom as in the full file
        _, self._residue = np.unique([line[17:27] for line in self._lines], return_inverse=True)
        self._tree = cKDTree(xyz)
        self.n_atoms = len(self._lines)

    @classmethod
    def from_pdb(cls, path: str | Path) -> ReceptorPocket:
        """Read a PDB file."""
        return cls(Path(path).read_text())

    def around(self, points: np.ndarray, cutoff: float = POCKET_CUTOFF) -> Chem.Mol:
        """The residues with an atom within ``cutoff`` Å of any of ``points`` (N×3), as PoseBusters reads a PDB.

        With none that close, the residue of the nearest atom: PoseBusters then finds the
        ligand too far from the protein, as it would with the whole protein.
        """
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        hits = self._tree.query_ball_point(points, cutoff)
        atoms = np.unique(np.concatenate([np.asarray(h, dtype=np.int64) for h in hits])) if len(hits) else []
        if not len(atoms):
            atoms = np.unique(self._tree.query(points)[1])
        keep = np.isin(self._residue, np.unique(self._residue[atoms]))
        block = "\n".join(self._lines[keep]) + "\nEND\n"
        # the reading options of PoseBusters' own loader for mol_cond (config "loading")
        mol = Chem.MolFromPDBBlock(block, sanitize=False, removeHs=False, proximityBonding=False)
        if mol is None:
            raise ValueError("RDKit cannot read the pocket's PDB records")
        return mol


def _protein_from_pdb(path: str | Path) -> Chem.Mol:
    mol = Chem.MolFromPDBFile(str(path), sanitize=False, removeHs=False, proximityBonding=False)
    if mol is None or not mol.GetNumAtoms():
        raise ValueError(f"RDKit cannot read the receptor PDB '{path}'")
    return mol


class PoseChecker:
    """PoseBusters against one receptor.

    Parameters
    ----------
    receptor_pdb
        The receptor (``receptor/receptor.pdb``).
    config
        ``dock_fast``, ``dock`` or a PoseBusters configuration dictionary.
    pocket_cutoff
        Å: PoseBusters sees the residues this close to the pose (:class:`ReceptorPocket`);
        ``None`` = the whole protein.
    """

    def __init__(
        self, receptor_pdb: str | Path, config: str | dict = "dock_fast", pocket_cutoff: float | None = POCKET_CUTOFF
    ):
        from posebusters import PoseBusters

        if isinstance(config, str) and config not in POSEBUSTERS_CONFIGS:
            raise ValueError(f"PoseBusters configuration must be one of {POSEBUSTERS_CONFIGS}; got {config!r}")
        # PoseBusters writes into a dictionary it is given: a copy keeps the caller's intact
        self._busters = PoseBusters(config=copy.deepcopy(config), max_workers=0)
        self.pocket_cutoff = pocket_cutoff
        if pocket_cutoff is None:
            self._protein = _protein_from_pdb(receptor_pdb)
        else:
            self._pocket = ReceptorPocket.from_pdb(receptor_pdb)

    def check(self, mol: Chem.Mol, receptor_pdb_text: str | None = None) -> Verdict:
        """PoseBusters' verdict on one pose (hydrogens and coordinates as docked).

        Parameters
        ----------
        mol
            The pose.
        receptor_pdb_text
            Another protein to check this pose against (a refined pose's final MD frame,
            PDB text of one model); ``None`` = the checker's receptor.

        Raises
        ------
        Exception
            Whatever PoseBusters raises on a pose it cannot process (the worker turns it into a reason).
        """
        if mol.GetNumConformers() == 0:
            return Verdict(None, (), "the pose has no coordinates")
        xyz = mol.GetConformer().GetPositions()
        if receptor_pdb_text is not None:
            protein = ReceptorPocket(receptor_pdb_text).around(xyz, self.pocket_cutoff or np.inf)
        elif self.pocket_cutoff is None:
            protein = self._protein
        else:
            protein = self._pocket.around(xyz, self.pocket_cutoff)
        table = self._busters.bust(mol_pred=mol, mol_cond=protein)
        return verdict_from_row(table.iloc[0])


def _init_checker(receptor_pdb: str, config: str | dict, pocket_cutoff: float | None) -> PoseChecker:
    return PoseChecker(receptor_pdb, config, pocket_cutoff)


def _check_packed(checker: PoseChecker, payload: tuple[bytes, str | None]) -> tuple[bool | None, tuple[str, ...], str]:
    packed, receptor_pdb_text = payload
    return checker.check(unpack_mol(packed), receptor_pdb_text).as_tuple()


def last_model(pdb_text: str) -> str:
    """The ``ATOM``/``HETATM`` records of the last ``MODEL`` of a multi-model PDB (all of them without ``MODEL``)."""
    lines = pdb_text.splitlines()
    starts = [k for k, line in enumerate(lines) if line.startswith("MODEL")]
    body = lines[starts[-1] + 1 :] if starts else lines
    end = next((k for k, line in enumerate(body) if line.startswith("ENDMDL")), len(body))
    return "\n".join(line for line in body[:end] if line.startswith(("ATOM  ", "HETATM"))) + "\n"


def _final_frame_text(path: Path | None) -> str | None:
    """The last frame's pocket of an MD frames PDB as PDB text, ``None`` when it is missing or unreadable."""
    if path is None:
        return None
    try:
        text = last_model(path.read_text())
    except OSError:
        return None
    return text if text.strip() else None


def refined_frame_pdbs(layout: RunLayout, md_pose: Mapping[str, int]) -> dict[str, Path]:
    """For each refined id, the MD frames' pocket PDB of its pose ``md_pose[id]``."""
    files = layout.refined_frame_files(set(md_pose))
    return {cid: files[cid, pose] for cid, pose in md_pose.items() if (cid, pose) in files}


def _describe_error(key: Any, exc: BaseException) -> str:
    log.warning("PoseBusters failed on %s: %s: %s", key, type(exc).__name__, exc)
    return f"PoseBusters failed: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- the poses


def _sd_records(path: Path, wanted: set[str]) -> list[tuple[str, str]]:
    """``(title, record text)`` of the SD records of ``path`` whose title (the compound id) is wanted.

    Only these records are handed to RDKit: a docked chunk holds a thousand compounds'
    poses and the checked ones are a few of them.
    """
    out: list[tuple[str, str]] = []
    record: list[str] = []
    with open(path, newline="") as handle:
        for line in handle:
            record.append(line)
            if line.rstrip("\r\n") == "$$$$":
                title = record[0].rstrip("\r\n")
                if title in wanted:
                    out.append((title, "".join(record)))
                record = []
    return out


def _pose_number(record: str) -> int:
    """The ``pose`` SD property of a record's text (1 without one), read even when RDKit cannot parse the record."""
    lines = record.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith(">") and "<pose>" in line:
            try:
                return int(lines[i + 1].strip())
            except ValueError:
                return 1
    return 1


def _parse_pose(record: str) -> Chem.Mol | None:
    """A pose as PoseBusters should see it: sanitized where RDKit can, else as written (``None``: unreadable).

    A record that parses but does not sanitize is handed over unsanitized, so that
    PoseBusters' own ``sanitization`` check reports it.
    """
    supplier = Chem.SDMolSupplier()
    supplier.SetData(record, sanitize=False, removeHs=False)
    mol = next(iter(supplier), None)
    if mol is None:
        return None
    sanitized = Chem.Mol(mol)
    if Chem.SanitizeMol(sanitized, catchErrors=True) == Chem.SanitizeFlags.SANITIZE_NONE:
        return sanitized
    return mol


def _read_wanted(where: Mapping[str, tuple[Path, int]]) -> dict[str, Chem.Mol | None]:
    """For each id, the pose ``where[id] = (sd_file, pose)``; ``None`` when its record cannot be read."""
    by_file: dict[Path, dict[str, int]] = {}
    for cid, (path, pose) in where.items():
        by_file.setdefault(path, {})[cid] = pose
    out: dict[str, Chem.Mol | None] = {}
    for path, wanted in by_file.items():
        for title, record in _sd_records(path, set(wanted)):
            if title in out and out[title] is not None:
                continue
            if _pose_number(record) == wanted[title]:
                out[title] = _parse_pose(record)
    return out


def _best_docked(layout: RunLayout, ids: set[str]) -> dict[str, tuple[Path, int]]:
    """For each id, the chunk SDF and number of its best docked pose (lowest score, then lowest pose)."""
    where: dict[str, tuple[Path, int]] = {}
    value_set = pa.array(sorted(ids), pa.string())
    for chunk in layout.chunks():
        path = layout.docked_table(chunk)
        if not path.is_file():
            continue
        table = pq.read_table(path, columns=["id", "pose", "docking_score"])
        table = table.filter(pc.is_in(table["id"].cast(pa.string()), value_set=value_set))
        if not table.num_rows:
            continue
        frame = table.to_pandas().sort_values(["id", "docking_score", "pose"], kind="mergesort", na_position="last")
        for cid, pose in frame.drop_duplicates("id")[["id", "pose"]].itertuples(index=False):
            where.setdefault(str(cid), (layout.docked_sdf(chunk), int(pose)))
    return where


def _refined_where(layout: RunLayout, md_pose: Mapping[str, int]) -> dict[str, tuple[Path, int]]:
    """For each refined id, the batch SDF that holds its pose ``md_pose[id]``."""
    where: dict[str, tuple[Path, int]] = {}
    if not md_pose:
        return where
    for batch in layout.batches():
        path = layout.refined_table(batch)
        if not path.is_file():
            continue
        table = pd.read_parquet(path, columns=["id", "pose"])
        for cid, pose in table.itertuples(index=False):
            cid = str(cid)
            if md_pose.get(cid) == int(pose):
                where.setdefault(cid, (layout.refined_sdf(batch), int(pose)))
    return where


def read_ranked_poses(
    layout: RunLayout, ids: Sequence[str], md_pose: Mapping[str, int] | None = None
) -> dict[str, Chem.Mol | None]:
    """The pose the ranking reports for each id: refined where refined, else the best docked pose.

    Parameters
    ----------
    layout
        The run (chunks and batches from its manifests).
    ids
        Compound ids.
    md_pose
        ``md_pose`` of the refined compounds (``ranking.csv``); a refined pose that cannot
        be found falls back to the docked one, as in ``top_hits.sdf``.

    Returns
    -------
    dict
        id -> molecule (hydrogens kept), or ``None`` when its SD record cannot be read. Ids
        without any pose are left out.
    """
    wanted = {str(cid) for cid in ids}
    md_pose = {cid: int(pose) for cid, pose in (md_pose or {}).items() if cid in wanted}
    refined = _read_wanted(_refined_where(layout, md_pose))
    found = {cid: mol for cid, mol in refined.items() if mol is not None}
    rest = wanted - set(found)
    if rest:
        found |= _read_wanted(_best_docked(layout, rest))
    return found


# --------------------------------------------------------------------------- the ranking


def _ids_slice(ids: Sequence[str] | pa.Array | pa.ChunkedArray, start: int, stop: int) -> list[str]:
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        return [str(i) for i in ids.slice(start, stop - start).to_pylist()]
    return [str(i) for i in ids[start:stop]]


def _verdict_frame(verdicts: Mapping[str, Verdict]) -> pd.DataFrame:
    ids = list(verdicts)
    return pd.DataFrame(
        {
            "id": pd.Series(ids, dtype=object),
            "pose_valid": pd.Series([verdicts[i].valid for i in ids], dtype=object),
            "failed_checks": ["; ".join(verdicts[i].failed) for i in ids],
            "pose_check": ["error" if verdicts[i].valid is None else "checked" for i in ids],
            "pose_check_reason": [verdicts[i].reason for i in ids],
        }
    )


def check_ranked_poses(
    layout: RunLayout | str | Path,
    ranked_ids: Sequence[str] | pa.Array | pa.ChunkedArray,
    md_pose: Mapping[str, int] | None,
    settings: PoseCheckSettings,
) -> pd.DataFrame:
    """Check the ranking's top poses with PoseBusters (see the module docstring for which).

    Parameters
    ----------
    layout
        The run folder or its layout (``receptor/receptor.pdb``, the docked and refined SD files).
    ranked_ids
        Compound ids in rank order, before any demotion.
    md_pose
        ``md_pose`` of the refined compounds.
    settings
        :class:`PoseCheckSettings`.

    Returns
    -------
    pandas.DataFrame
        One row per compound that was checked or tried: ``id`` and :data:`POSE_COLUMNS`
        (``pose_check`` ``checked`` or ``error``; the compounds left out were not checked).

    Without ``receptor/receptor.pdb`` nothing is checked: the top compounds are ``error`` rows
    that say so (a warning is logged), and the ranking is written as without the checks.
    """
    layout = layout if isinstance(layout, RunLayout) else RunLayout(layout)
    n = len(ranked_ids)
    if settings.check_all:
        target = limit = n
    else:
        target = min(n, settings.top_n)
        limit = min(n, settings.top_n * (MAX_CHECKS_FACTOR if settings.rank_valid_first else 1))
    verdicts: dict[str, Verdict] = {}
    if not limit:
        return _verdict_frame(verdicts)
    receptor = layout.receptor_pdb
    if not receptor.is_file():
        # an optional stage: without the receptor the top compounds say why they have no verdict
        reason = f"no receptor PDB '{receptor}' to check the pose against"
        log.warning("pose checks skipped: %s (report.check_poses)", reason)
        return _verdict_frame({cid: Verdict(None, (), reason) for cid in _ids_slice(ranked_ids, 0, target)})
    started, kept, at = time.monotonic(), 0, 0
    worker = IsolatedWorker(
        _check_packed,
        init=partial(_init_checker, str(receptor), settings.config, POCKET_CUTOFF),
        time_limit=settings.time_limit,
        stage="pose check",
        describe_error=_describe_error,
    )
    refined = dict(md_pose or {})
    with worker:
        # walk down the ranking until the top `target` hold no pose known to be invalid
        while at < limit and kept < target:
            batch = _ids_slice(ranked_ids, at, min(limit, at + min(target - kept, READ_BATCH)))
            at += len(batch)
            poses = read_ranked_poses(layout, batch, refined)
            frames = refined_frame_pdbs(layout, {cid: refined[cid] for cid in batch if cid in refined})
            for cid in batch:
                if cid not in poses:
                    verdict = Verdict(None, (), "no pose found in the run's docked or refined SD files")
                elif poses[cid] is None:
                    verdict = Verdict(None, (), "RDKit cannot read the pose's SD record")
                else:
                    pocket = _final_frame_text(frames.get(cid)) if cid in refined else None
                    if cid in refined and pocket is None:
                        log.warning("%s: no MD frame file of its refined pose; checked against receptor.pdb", cid)
                    outcome = worker.submit(cid, (pack_mol(poses[cid]), pocket))
                    verdict = Verdict(*outcome.result) if outcome.ok else Verdict(None, (), outcome.reason)
                verdicts[cid] = verdict
                kept += verdict.valid is not False
    frame = _verdict_frame(verdicts)
    valid = frame["pose_valid"]
    log.info(
        "PoseBusters (%s) checked %d poses in %.1f s: %d valid, %d invalid, %d without a verdict",
        settings.config if isinstance(settings.config, str) else "custom",
        len(frame),
        time.monotonic() - started,
        int((valid == True).sum()),  # noqa: E712 -- object column of True / False / None
        int((valid == False).sum()),  # noqa: E712
        int(valid.isna().sum()),
    )
    return frame


def demote_invalid(order: pa.Array, invalid: pa.Array) -> pa.Array:
    """The rank order with the invalid poses moved below every other compound (both parts keep their order).

    Parameters
    ----------
    order
        Row indices in rank order.
    invalid
        Boolean per entry of ``order`` (same length and order): whether that compound's pose is
        known to be invalid; null counts as not invalid.

    Returns
    -------
    pyarrow.Array
        The indices of the compounds not known to be invalid, in their order, then the invalid ones, in theirs.
    """
    invalid = pc.fill_null(invalid, False)
    parts = [pc.filter(order, pc.invert(invalid)), pc.filter(order, invalid)]
    return pa.concat_arrays([p.combine_chunks() if isinstance(p, pa.ChunkedArray) else p for p in parts])
