"""MD refinement of docked poses with OpenMM.

The stage takes the docked poses a rule chooses - best docking score, or the scorer's
score or upper confidence bound (:mod:`.selection`) -, builds a pocket-trimmed
protein-ligand System per pose - amber14 protein, MMFF94 (or OpenFF) ligand, OBC2
implicit solvent (:mod:`.system`, :mod:`.ligand`) - minimizes, warms up under restraints
and runs short Langevin dynamics, retrying a blown-up run once at 2 fs
(:mod:`.protocol`), and reports how far the ligand drifted and how strongly it binds
over the frames (:mod:`.analysis`), with the frames saved for interaction fingerprints
(:mod:`.frames`). :func:`refine_batch` (:mod:`.job`) is the entry point
of one job.

Public API::

    from pipeline.refine import (RefineSettings, select_poses, batch, load_poses,
                                 refine_batch, read_frames)
"""

from .frames import read_frames, write_frames
from .job import REFINE_COLUMNS, RefineContext, RefineError, refine_batch, refine_pose
from .ligand import LigandParameterizationError, MMFFLigandForceField, OpenFFLigandForceField, ligand_force_field
from .protocol import DEFAULT_LENGTH_PS, RefineSettings, SimulationError, select_platform
from .selection import batch, load_poses, select_poses
from .system import build_complex, load_receptor

__all__ = [
    "DEFAULT_LENGTH_PS",
    "REFINE_COLUMNS",
    "LigandParameterizationError",
    "MMFFLigandForceField",
    "OpenFFLigandForceField",
    "RefineContext",
    "RefineError",
    "RefineSettings",
    "SimulationError",
    "batch",
    "build_complex",
    "ligand_force_field",
    "load_poses",
    "load_receptor",
    "read_frames",
    "refine_batch",
    "refine_pose",
    "select_platform",
    "select_poses",
    "write_frames",
]
