"""Redocking benchmark: crystal ligands rebuilt from SMILES, docked back into their receptors.

For each complex of the shared reference set (receptor with hydrogens + crystal ligand), the
ligand is taken as a SMILES string (no crystal coordinates), prepared and docked by the
pipeline (exhaustiveness 8 by default), and the top-scored pose is compared with the crystal
pose (symmetry-aware heavy-atom RMSD, in place). Prints a table and writes JSON.

    python benchmarks/redock.py [--complexes 1iep BACE_1 ...] [--exhaustiveness 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from rdkit import Chem

from pipeline.box import box_around_ligand, read_vina_config
from pipeline.docking import Docker, DockingSettings
from pipeline.ligands import LigandSettings, prepare_ligand
from pipeline.receptor import prepare_receptor
from pipeline.rmsd import heavy_atom_rmsd

REPO = Path(__file__).resolve().parents[1]
COMPLEXES = REPO.parent / "shared" / "data" / "complexes"
LIGANDS = {
    "1iep": "1iep_ligand.sdf",
    "BACE_1": "BACE_1_ligand.mol2",
    "1s63": "1s63_ligand.sdf",
    "1uw6": "1uw6_ligand.sdf",
    "5x72": "5x72_ligand_p59.sdf",
}


def read_crystal_ligand(path: Path) -> Chem.Mol:
    """The crystal ligand with its bond orders (SDF or MOL2)."""
    if path.suffix == ".mol2":
        return Chem.MolFromMol2File(str(path), removeHs=False)
    return Chem.MolFromMolFile(str(path), removeHs=False)


def redock(name: str, exhaustiveness: int, threads: int, workdir: Path) -> dict:
    """Prepare the receptor, dock the crystal ligand from SMILES, return scores and RMSD."""
    crystal = read_crystal_ligand(COMPLEXES / LIGANDS[name])
    box_file = COMPLEXES / f"{name}_box.txt"
    box = read_vina_config(box_file) if box_file.is_file() else box_around_ligand(COMPLEXES / LIGANDS[name], 8.0)
    prepare_receptor(COMPLEXES / f"{name}_receptorH.pdb", workdir / f"{name}.pdb", workdir / f"{name}.pdbqt")
    smiles = Chem.MolToSmiles(Chem.RemoveHs(crystal))
    _, row = prepare_ligand(name, smiles, LigandSettings())
    start = time.perf_counter()
    poses, energies = Docker(
        workdir / f"{name}.pdbqt", box, DockingSettings(exhaustiveness=exhaustiveness, threads=threads)
    ).dock(name, row["pdbqt"])
    rmsds = [heavy_atom_rmsd(p, crystal) for p in poses]
    return dict(
        complex=name,
        smiles=smiles,
        score=float(energies[0][0]),
        top_pose_rmsd=rmsds[0],
        best_rmsd_in_poses=min(rmsds),
        n_poses=len(poses),
        seconds=time.perf_counter() - start,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--complexes", nargs="*", default=list(LIGANDS))
    parser.add_argument("--exhaustiveness", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "redock.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.complexes:
            rows.append(redock(name, args.exhaustiveness, args.threads, Path(tmp)))
            r = rows[-1]
            print(
                f"{r['complex']:8s} score {r['score']:7.2f}  top-pose RMSD {r['top_pose_rmsd']:5.2f} Å  "
                f"best of {r['n_poses']} {r['best_rmsd_in_poses']:5.2f} Å  {r['seconds']:6.1f} s",
                flush=True,
            )
    result = dict(machine=platform.node(), exhaustiveness=args.exhaustiveness, threads=args.threads, results=rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
