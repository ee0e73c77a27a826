"""What receptor preparation did: :class:`ReceptorReport` and its JSON file."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..io import write_text_atomic

log = logging.getLogger("pipeline.receptor")


@dataclass
class ReceptorReport:
    """What receptor preparation did, for the log and for a JSON file next to the outputs.

    Counts refer to the MD-ready PDB.  ``chain_breaks`` holds one
    ``"A:GLU 340 / A:SER 345"`` entry per break (both residues became termini);
    ``removed_heterogens`` lists residues dropped from both outputs;
    ``docking_only_atoms`` lists metal ions present in the PDBQT but not the PDB;
    ``input_repairs`` lists other fixes of the input records (interrupted
    residues, blank chain identifiers, replaced modified residues);
    ``removed_untypable`` lists residues (``"A:VAL 123"``) that meeko or amber14
    could not type and that lay far from the docking box, deleted from both
    outputs; ``repaired_untypable`` those near the box that were relaxed (and if
    need be rebuilt) until they could be typed (``input_repairs`` says how, why
    and how far from the box).
    """

    source: str
    n_residues: int
    n_atoms: int
    n_chains: int
    chain_breaks: list[str]
    added_heavy_atoms: int
    added_hydrogens: int
    removed_heterogens: list[str]
    ph: float
    docking_only_atoms: list[str] = field(default_factory=list)
    input_repairs: list[str] = field(default_factory=list)
    pdbqt_heavy_atoms: int = 0
    removed_untypable: list[str] = field(default_factory=list)
    repaired_untypable: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """Return the report as a JSON-serialisable dict."""
        return asdict(self)


def write_receptor_report(report: ReceptorReport, path: str | Path) -> None:
    """Write a report as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(report.to_dict(), indent=2) + "\n")
