"""The applicability domain of a scorer: is this run's pocket like the pockets it was trained on?

A learned scorer is trusted only where it has seen data like the run's. Two signs that it has
not are checked here, and the ranking (:mod:`pipeline.ranking`) then falls back to the docking
order for the compounds concerned:

* the run's **pocket is far from every training pocket** of the model (all compounds fall back);
* the **ensemble spread** of a compound's score is above ``score.max_spread`` (that compound falls back).

Pocket descriptor
-----------------
A pocket is described without any alignment or sequence, so that two structures of one
protein, or two proteins, can be compared from their coordinates alone. The pocket is the
protein around the docking box centre, within :data:`POCKET_RADIUS` Å (a sphere, not the box,
so that a larger box does not change the pocket) with a soft edge: a heavy atom at distance
``r`` weighs ``1 / (1 + exp((r - 8 Å) / 1 Å))``, so that moving the centre by an Ångström
shifts the descriptor a little instead of adding or dropping whole residues (on the shipped
receptors a 1 Å shift gave distances up to 0.21 with a hard cut-off, 0.05 with the soft edge). The descriptor
(:data:`DESCRIPTOR_VERSION`, :data:`DESCRIPTOR_NAMES`) has 25 entries in two blocks:

* the composition of its residues: the 20 standard amino acids, each residue counted once
  with the weight of its nearest heavy atom (protonation variants such as HID, CYX, ASH and
  selenomethionine count as their parent residue), as fractions of the residues;
* the composition of its heavy atoms: C, N, O, S and metal ions (Zn, Mg, Ca, Fe, ...), as
  weighted fractions of those atoms.

Each block is scaled to sum to 1/2, so the descriptor is one composition summing to 1 in
which residues and atom types weigh alike. Hydrogens, waters and other hetero groups (a
bound ligand) are left out: one receptor prepared with or without hydrogens, or with its
ligand removed, has the same pocket.

Distance
--------
The distance between two pockets is the Hellinger distance of their compositions,
``d(p, q) = sqrt(1 - sum_i sqrt(p_i q_i))``: 0 for the same composition, 1 for pockets with
nothing in common. ``d**2`` is 1 - cosine similarity of the square-rooted descriptors; the
square root gives the rare entries (a metal, a tryptophan) their weight, which a plain cosine
or Euclidean distance of the fractions loses next to the carbon fraction that every pocket
shares. For the two blocks, ``d**2`` is the mean of the blocks' own squared distances.

The threshold (``score.max_pocket_distance``, default 0.25) is provisional until it is
measured on held-out proteins: the distance above which a model ranks worse than docking on
proteins it was not trained on, from the protein-grouped cross-validation of the scoring
benchmarks. On the receptors this repository ships (Abl kinase 1IEP, acetylcholinesterase,
a plasminogen kringle) one pocket with its box centre moved by 1, 2 or 3 Å is within 0.05,
0.10 or 0.14 of itself, and the unrelated pockets are 0.39-0.49 apart (``tests/test_domain.py``);
0.25 lies between, leaning towards letting related pockets (a homologue, another structure) pass.

Records
-------
A model folder records the descriptors of its training pockets in its card (key
``training_pockets``, :class:`TrainingPockets`). The score stage writes the run's pocket and
its distance to the nearest training pocket to ``domain.json`` in the run folder
(:class:`PocketRecord`, :func:`assess_pocket`); the rank stage reads that file and the
settings (:class:`DomainSettings`) and decides (:func:`pocket_reason`, :func:`spread_reasons`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..box import Box
from ..config import schema_field
from ..errors import VscreenError

__all__ = [
    "AMINO_ACIDS",
    "ATOM_CLASSES",
    "DESCRIPTOR_NAMES",
    "DESCRIPTOR_VERSION",
    "DomainError",
    "DomainSettings",
    "POCKET_RADIUS",
    "PocketRecord",
    "TrainingPockets",
    "assess_pocket",
    "box_center",
    "pocket_descriptor",
    "pocket_distance",
    "nearest_training_pocket",
    "pocket_reason",
    "read_pocket_record",
    "run_pocket",
    "spread_reasons",
]

#: Version of the descriptor's definition (recorded with every descriptor: two versions are never compared).
DESCRIPTOR_VERSION = "vscreen-pocket/1"
#: Å around the box centre: residues with a heavy atom this close, and those atoms, make the pocket.
POCKET_RADIUS = 8.0
#: Å: width of the pocket's soft edge (an atom at ``POCKET_RADIUS`` counts half).
EDGE = 1.0
AMINO_ACIDS = (
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
)  # fmt: skip
#: Residue names of force fields and modified residues, read as their parent amino acid.
RESIDUE_ALIASES = {
    "HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HSD": "HIS", "HSE": "HIS", "HSP": "HIS",
    "CYX": "CYS", "CYM": "CYS", "ASH": "ASP", "GLH": "GLU", "LYN": "LYS", "MSE": "MET",
}  # fmt: skip
ATOM_CLASSES = ("C", "N", "O", "S", "metal")
#: Elements counted as ``metal`` (ions a receptor may keep with ``receptor.keep_heterogens``).
METALS = frozenset({"ZN", "MG", "CA", "MN", "FE", "CU", "CO", "NI", "CD", "HG", "NA", "K"})
DESCRIPTOR_NAMES = tuple(f"residue:{r}" for r in AMINO_ACIDS) + tuple(f"atom:{a}" for a in ATOM_CLASSES)
#: AutoDock atom types of a PDBQT file, as elements.
_AD_TYPES = {"A": "C", "OA": "O", "OS": "O", "NA": "N", "NS": "N", "SA": "S", "HD": "H", "HS": "H"}
#: Format of ``domain.json``.
RECORD_FORMAT = "vscreen-domain/1"
NO_POCKETS = "no training pockets recorded"


class DomainError(VscreenError, ValueError):
    """A pocket cannot be described (no protein near the box centre, an unreadable receptor)."""


# --------------------------------------------------------------------------- the descriptor


def _element(line: str, pdbqt: bool) -> str:
    """Upper-case element of an ATOM/HETATM line (PDB columns 77-78, a PDBQT's atom type, else the atom name)."""
    if pdbqt:
        kind = line[77:79].strip()
        return _AD_TYPES.get(kind, kind).upper()
    element = line[76:78].strip().upper()
    if element:
        return element
    name = line[12:16]
    # PDB convention: a two-letter element starts in column 13, a one-letter one in column 14
    return name[:2].strip().upper() if name[0].isalpha() and name[:2].upper() in METALS else name.strip()[:1].upper()


def pocket_descriptor(
    receptor_pdb: str | os.PathLike, box: Any, radius: float = POCKET_RADIUS, edge: float = EDGE
) -> np.ndarray:
    """The composition of the pocket around a docking box's centre (see the module docstring).

    Parameters
    ----------
    receptor_pdb
        Receptor ``.pdb`` or ``.pdbqt`` (optionally ``.gz``), in the frame of the box.
    box
        The docking box (:class:`pipeline.box.Box`, anything with ``center``, or a centre as 3 numbers).
    radius
        Å around the centre.
    edge
        Å over which an atom's weight fades from 1 to 0 around ``radius``.

    Returns
    -------
    numpy.ndarray
        Float64, shape ``(25,)`` (:data:`DESCRIPTOR_NAMES`), non-negative, summing to 1.

    Raises
    ------
    DomainError
        When no standard residue has a heavy atom within ``radius`` of the centre.
    """
    from ..io import read_structure_text

    center = np.asarray(getattr(box, "center", box), dtype=float).reshape(3)
    pdbqt = ".pdbqt" in Path(receptor_pdb).suffixes
    residues: dict[tuple[str, str], float] = {}  # (chain + number + insertion code, name) -> weight
    atoms = dict.fromkeys(ATOM_CLASSES, 0.0)
    inside = 0
    lines = [
        line
        for line in read_structure_text(receptor_pdb).splitlines()
        if line.startswith(("ATOM", "HETATM")) and len(line) >= 54
    ]
    xyz = np.array([(line[30:38], line[38:46], line[46:54]) for line in lines], dtype=float).reshape(-1, 3)
    distances = np.sqrt(np.sum((xyz - center) ** 2, axis=1))
    # a smooth edge: an atom 0.5 Å past the radius counts 38 %, not 0, so a box centre moved by
    # an Ångström changes the descriptor a little instead of adding or dropping a residue
    weights = 1.0 / (1.0 + np.exp(np.minimum((distances - radius) / edge, 50.0)))  # capped: no overflow far away
    for i in np.nonzero(distances <= radius + 5 * edge)[0]:  # beyond, an atom's weight is below 1 %
        line, weight = lines[i], float(weights[i])
        element = _element(line, pdbqt)
        name = line[17:20].strip().upper()
        name = RESIDUE_ALIASES.get(name, name)
        if element in METALS and name not in AMINO_ACIDS:
            atoms["metal"] += weight
        elif name in AMINO_ACIDS and element not in ("H", "D", ""):
            key = (line[21:27], name)  # chain, number, insertion code
            residues[key] = max(residues.get(key, 0.0), weight)  # a residue counts once, by its nearest atom
            inside += bool(distances[i] <= radius)
            if element in atoms:
                atoms[element] += weight
    if not inside:
        raise DomainError(
            f"no protein residue of '{receptor_pdb}' lies within {radius:g} Å of the box centre "
            f"{tuple(round(float(c), 2) for c in center)}: the pocket cannot be described"
        )
    counts = np.zeros(len(AMINO_ACIDS))
    for (_, name), weight in residues.items():
        counts[AMINO_ACIDS.index(name)] += weight
    kinds = np.array([atoms[a] for a in ATOM_CLASSES])
    return np.concatenate([0.5 * counts / counts.sum(), 0.5 * kinds / kinds.sum()])


def pocket_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Hellinger distance of two pocket descriptors, in [0, 1] (see the module docstring)."""
    a, b = np.clip(np.asarray(a, float), 0, None), np.clip(np.asarray(b, float), 0, None)
    if a.shape != b.shape:
        raise ValueError(f"pocket descriptors of different lengths: {a.shape} and {b.shape}")
    return float(np.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(a * b))))))


def nearest_training_pocket(desc: np.ndarray, training_descs: np.ndarray | Sequence) -> tuple[float, int]:
    """The distance from ``desc`` to the nearest of ``training_descs`` (K × 25) and that pocket's index.

    Ties go to the first. Raises :class:`ValueError` when there is no training pocket.
    """
    training = np.asarray(training_descs, dtype=float).reshape(-1, len(desc)) if len(training_descs) else []
    if not len(training):
        raise ValueError("no training pockets to compare with")
    distances = [pocket_distance(desc, row) for row in training]
    index = int(np.argmin(distances))
    return distances[index], index


# --------------------------------------------------------------------------- what a model folder records


#: JSON schema of the card key ``training_pockets`` (both kinds of model card accept it).
TRAINING_POCKETS_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "required": ["descriptor", "names", "vectors"],
    "properties": {
        "descriptor": {"type": "string"},
        "radius": {"type": "number"},
        "names": {"type": "array", "items": {"type": "string"}},
        "vectors": {"type": "array", "items": {"type": "array", "items": {"type": "number", "minimum": 0}}},
    },
}


@dataclass(frozen=True)
class TrainingPockets:
    """The pockets a model was trained on: one name and one descriptor each.

    Attributes
    ----------
    names
        One per pocket (a target name such as ``BRD4``); shown in the reason of a fallback.
    vectors
        ``(K, 25)`` descriptors (:func:`pocket_descriptor`).
    descriptor
        :data:`DESCRIPTOR_VERSION` of the vectors.
    radius
        Å of the sphere they were computed in.
    """

    names: tuple[str, ...]
    vectors: np.ndarray
    descriptor: str = DESCRIPTOR_VERSION
    radius: float = POCKET_RADIUS

    def __post_init__(self) -> None:
        vectors = np.asarray(self.vectors, dtype=float)
        if vectors.ndim != 2 or len(vectors) != len(self.names):
            raise ValueError(f"{len(self.names)} pocket names need as many descriptor rows, got shape {vectors.shape}")
        object.__setattr__(self, "names", tuple(map(str, self.names)))
        object.__setattr__(self, "vectors", vectors)

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def of(cls, pockets: Mapping[str, np.ndarray]) -> TrainingPockets:
        """From ``{name: descriptor}``."""
        return cls(tuple(pockets), np.array([np.asarray(v, float) for v in pockets.values()]).reshape(len(pockets), -1))

    def merged(self, other: TrainingPockets | None) -> TrainingPockets:
        """These pockets and ``other``'s (a fine-tuned model has seen both); a repeated name keeps the first."""
        if other is None or not len(other):
            return self
        if other.descriptor != self.descriptor or other.radius != self.radius:
            return self  # descriptors of another definition cannot be compared: keep the new ones only
        keep = [i for i, n in enumerate(other.names) if n not in self.names]
        return TrainingPockets(
            self.names + tuple(other.names[i] for i in keep),
            np.vstack([self.vectors, other.vectors[keep]]) if keep else self.vectors,
            self.descriptor,
            self.radius,
        )

    def to_card(self) -> dict[str, Any]:
        """The card entry (plain lists; :data:`TRAINING_POCKETS_SCHEMA`)."""
        return dict(
            descriptor=self.descriptor,
            radius=float(self.radius),
            names=list(self.names),
            vectors=[[round(float(v), 6) for v in row] for row in self.vectors],
        )

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> TrainingPockets | None:
        """The training pockets a (validated) card records, or ``None`` when it records none.

        Raises
        ------
        DomainError
            When names and descriptor rows do not match up (a hand-edited card).
        """
        entry = card.get("training_pockets")
        if not entry or not entry.get("names"):
            return None
        try:
            return cls(
                tuple(entry["names"]),
                np.array(entry["vectors"], dtype=float),
                str(entry["descriptor"]),
                float(entry.get("radius", POCKET_RADIUS)),
            )
        except (TypeError, ValueError) as exc:
            raise DomainError(f"the card's training_pockets are malformed: {exc}") from exc


# --------------------------------------------------------------------------- the run's pocket


@dataclass(frozen=True)
class PocketRecord:
    """The run's pocket against the model's training pockets (``domain.json``, written by the score stage).

    Attributes
    ----------
    model
        The model's name.
    distance
        Distance to the nearest training pocket (:func:`pocket_distance`), ``None`` when not measured.
    nearest
        That pocket's name.
    training_pockets
        How many the model records.
    note
        Why there is no distance (``no training pockets recorded``, the pocket could not be
        described, the descriptors are of another version); empty when there is one.
    descriptor
        The run's pocket (:func:`pocket_descriptor`), ``None`` when it could not be described.
    """

    model: str
    distance: float | None = None
    nearest: str | None = None
    training_pockets: int = 0
    note: str = ""
    descriptor: list[float] | None = field(default=None, repr=False)

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the record atomically."""
        from ..io import write_text_atomic

        data = dict(
            format=RECORD_FORMAT,
            descriptor_version=DESCRIPTOR_VERSION,
            model=self.model,
            pocket_distance=self.distance,
            nearest_pocket=self.nearest,
            training_pockets=self.training_pockets,
            note=self.note,
            pocket=self.descriptor,
        )
        write_text_atomic(path, json.dumps(data, indent=1) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> PocketRecord:
        """Read a record written by :meth:`to_json` (:class:`DomainError` when it is not one)."""
        try:
            data = json.loads(Path(path).read_text())
            if data.get("format") != RECORD_FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {RECORD_FORMAT}")
            distance = data.get("pocket_distance")
            return cls(
                model=str(data.get("model", "")),
                distance=None if distance is None else float(distance),
                nearest=data.get("nearest_pocket"),
                training_pockets=int(data.get("training_pockets") or 0),
                note=str(data.get("note") or ""),
                descriptor=data.get("pocket"),
            )
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise DomainError(f"domain record '{path}' cannot be read: {exc}") from exc


def read_pocket_record(path: str | os.PathLike) -> PocketRecord | None:
    """The score stage's ``domain.json``, or ``None`` when there is none (scores of an earlier version).

    Raises
    ------
    DomainError
        When the file exists but is not a record.
    """
    return PocketRecord.from_json(path) if Path(path).is_file() else None


def assess_pocket(
    card: Mapping[str, Any], receptor_pdb: str | os.PathLike, box: Any, model: str | None = None
) -> PocketRecord:
    """The run's pocket measured against the training pockets of a model card.

    Never raises for a pocket or a card it cannot use: the record's ``note`` says why there is
    no distance, and the ranking then does not fall back on distance (it says so).

    Parameters
    ----------
    card
        The model's validated card.
    receptor_pdb, box
        The run's receptor and docking box (:func:`pocket_descriptor`); ``box`` may be ``None``.
    model
        The name to record (default: the card's ``name``).
    """
    name = model or str(card.get("name", ""))
    try:
        pockets = TrainingPockets.from_card(card)
    except DomainError as exc:
        return PocketRecord(name, note=str(exc))
    if box is None:
        return PocketRecord(name, training_pockets=len(pockets or ()), note="no docking box recorded")
    try:
        desc = pocket_descriptor(receptor_pdb, box, pockets.radius if pockets else POCKET_RADIUS)
    except (DomainError, OSError, ValueError) as exc:
        return PocketRecord(name, training_pockets=len(pockets or ()), note=f"pocket not described: {exc}")
    vector = [round(float(v), 6) for v in desc]
    if pockets is None:
        return PocketRecord(name, note=NO_POCKETS, descriptor=vector)
    if pockets.descriptor != DESCRIPTOR_VERSION:
        note = f"training pockets are {pockets.descriptor} descriptors, this pipeline computes {DESCRIPTOR_VERSION}"
        return PocketRecord(name, training_pockets=len(pockets), note=note, descriptor=vector)
    distance, index = nearest_training_pocket(desc, pockets.vectors)
    return PocketRecord(name, round(distance, 4), pockets.names[index], len(pockets), "", vector)


def box_center(box_json: str | os.PathLike) -> tuple[float, float, float]:
    """The centre of a run's ``receptor/box.json`` (:meth:`pipeline.box.Box.from_json`).

    Raises
    ------
    OSError, ValueError, KeyError, TypeError
        A missing or malformed file.
    """
    x, y, z = (float(c) for c in Box.from_json(box_json).center)
    return x, y, z


def run_pocket(layout, name: str) -> TrainingPockets | None:
    """The pocket of a run's receptor and box as a training pocket named ``name`` (a training run records it).

    Returns ``None`` (the model then records no pocket of this run) when the run has no box
    or the pocket cannot be described; training goes on either way.

    Parameters
    ----------
    layout
        The run's :class:`pipeline.layout.RunLayout` (``receptor/receptor.pdb``, ``receptor/box.json``).
    name
        The pocket's name in the card (the receptor's: a dockstring target or the file's stem).
    """
    import logging

    try:
        desc = pocket_descriptor(layout.receptor_pdb, box_center(layout.box_json))
    except (DomainError, OSError, ValueError, KeyError, TypeError) as exc:
        logging.getLogger(__name__).warning("the training pocket is not recorded in the model card: %s", exc)
        return None
    return TrainingPockets((name,), desc.reshape(1, -1))


# --------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class DomainSettings:
    """The domain check of the ranking (config section ``score``; defaults as in ``schema.yaml``).

    Attributes
    ----------
    domain_check
        Whether out-of-domain compounds fall back to the docking order at all.
    max_pocket_distance
        Above this distance to the nearest training pocket every compound falls back.
    max_spread
        A compound whose ``gnn_spread`` is above this falls back; ``None`` = no spread check.
    """

    domain_check: bool = schema_field("score", "domain_check")
    max_pocket_distance: float = schema_field("score", "max_pocket_distance")
    max_spread: float | None = schema_field("score", "max_spread")


def pocket_reason(record: PocketRecord | None, settings: DomainSettings) -> str:
    """Why every compound falls back on the pocket (``""`` when none does).

    ``pocket distance 0.41 > 0.25 to nearest training pocket 'BRD4'``; empty with the check
    off, without a record or without a measured distance.
    """
    if not settings.domain_check or record is None or record.distance is None:
        return ""
    if record.distance > settings.max_pocket_distance:
        return (
            f"pocket distance {record.distance:.2f} > {settings.max_pocket_distance:.2f} "
            f"to nearest training pocket '{record.nearest}'"
        )
    return ""


def spread_reasons(spread: np.ndarray, settings: DomainSettings) -> np.ndarray:
    """Per compound, why it falls back on its spread (``spread 1.93 > 1.50``), else ``""`` (object array).

    A missing spread (NaN) never falls back: there is nothing to say the members disagree.
    """
    spread = np.asarray(spread, dtype=float)
    out = np.full(len(spread), "", dtype=object)
    if not settings.domain_check or settings.max_spread is None:
        return out
    above = np.nan_to_num(spread, nan=-np.inf) > settings.max_spread
    out[above] = [f"spread {s:.2f} > {settings.max_spread:.2f}" for s in spread[above]]
    return out
