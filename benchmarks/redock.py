"""Redocking benchmark: crystal ligands rebuilt from SMILES, docked back into their receptors.

For each complex of the shared reference set (receptor with hydrogens + crystal ligand), the
ligand is taken as a SMILES string (no crystal coordinates), prepared and docked by the
pipeline, and the top-scored pose is compared with the crystal pose (symmetry-aware
heavy-atom RMSD, in place). Macrocycles are docked flexible (meeko opens the ring, Vina's
glue atoms close it again); zinc stays in the receptor as Vina's metal donor (the
AutoDock4Zn route is not available here, ``--zinc ad4zn`` says why, see :mod:`pipeline.zinc`).

Protocol choices, per complex:

* **Cofactors** (``--cofactors keep``, the default): what sat beside the ligand in the crystal
  stays in the receptor as rigid atoms, because the redocked ligand was bound next to it:
  farnesyl diphosphate in 1s63 (FTase binds the inhibitor against FPP; without it the space
  FPP fills is open and a wrong pose outscores the crystal one) and the enantiomer P69 in 5x72
  (the two enantiomers sit side by side in the crystal, 3 Å apart; without P69 the docked P59
  is free to spread into P69's half of the site).
  ``--cofactors drop`` docks into the bare protein, as the pipeline's receptor preparation
  (which removes heterogens without templates) would.
* **Box**: ``--box tight`` is the crystal ligand's heavy-atom extent plus ``--padding`` Å on
  every side; ``--box cube30`` a 30 Å cube on the same centre (dockstring's boxes are of this
  size); ``--box shipped`` the box file of the set where there is one (1iep, BACE_1: 20 Å
  cubes), else ligand + 8 Å (what this benchmark used before).

Besides the docking figures every row carries the Vina score of the crystal pose (as is and
locally optimized), which tells a search failure (the crystal pose scores better than the
top pose) from a scoring failure (a wrong pose scores better).

Rows are keyed by complex and settings and written to the JSON after every complex, so a
run can be split across sessions: rerunning a command skips the rows already there
(``--redo`` recomputes them) and rows of other settings are kept.

    nice -n 5 python benchmarks/redock.py [--complexes 1iep BACE_1 ...] [--box tight --padding 4]
        [--exhaustiveness 8] [--threads 1] [--cofactors keep]
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem, rdMolTransforms

from pipeline.box import Box, box_around_ligand, read_ligand_coordinates, read_vina_config
from pipeline.docking import Docker, DockingSettings, poses_to_rdkit
from pipeline.io import write_text_atomic
from pipeline.ligands import LigandSettings, prepare_ligand, to_pdbqt
from pipeline.receptor import prepare_receptor
from pipeline.rmsd import element_graph, heavy_atom_rmsd
from pipeline.zinc import ZincRouteError, require_ad4zn, zinc_note

REPO = Path(__file__).resolve().parents[1]
COMPLEXES = REPO.parent / "shared" / "data" / "complexes"
LIGANDS = {
    "1iep": "1iep_ligand.sdf",
    "BACE_1": "BACE_1_ligand.mol2",
    "1s63": "1s63_ligand.sdf",
    "1uw6": "1uw6_ligand.sdf",
    "5x72": "5x72_ligand_p59.sdf",
}
#: Crystal neighbours of the redocked ligand kept as rigid receptor atoms (``--cofactors keep``):
#: residue name -> (where the coordinates are, SMILES for the bond orders or None for an SDF).
#: FPP's diphosphate is fully deprotonated: it has no polar hydrogens for Vina either way.
COFACTORS = {
    "1s63": {"FPP": ("1s63_receptorH.pdb", "CC(C)=CCCC(C)=CCCC(C)=CCOP(=O)([O-])OP(=O)([O-])[O-]")},
    "5x72": {"P69": ("5x72_ligand_p69.sdf", None)},
}
RMSD_CUTOFF = 2.0


def read_crystal_ligand(path: Path) -> Chem.Mol:
    """The crystal ligand with its bond orders (SDF or MOL2)."""
    RDLogger.DisableLog("rdApp.warning")  # the set's SDFs are 3D but flagged 2D: one warning per read
    if path.suffix == ".mol2":
        return Chem.MolFromMol2File(str(path), removeHs=False)
    return Chem.MolFromMolFile(str(path), removeHs=False)


def make_box(name: str, mode: str, padding: float) -> Box:
    """The docking box of one complex for a ``--box`` mode (see the module docstring)."""
    ligand = COMPLEXES / LIGANDS[name]
    if mode == "tight":
        return box_around_ligand(ligand, padding)
    if mode == "cube30":
        return Box(box_around_ligand(ligand, 0.0).center, (30.0, 30.0, 30.0))
    if mode == "shipped":
        box_file = COMPLEXES / f"{name}_box.txt"
        return read_vina_config(box_file) if box_file.is_file() else box_around_ligand(ligand, 8.0)
    raise ValueError(f"unknown box mode {mode!r}")


def cofactor_pdbqt_lines(resname: str, source: str, smiles: str | None, serial: int) -> list[str]:
    """Rigid receptor PDBQT records of one crystal cofactor, typed by meeko.

    Parameters
    ----------
    resname : str
        Residue name: the records read from a PDB source, and the name written.
    source : str
        File in the shared complexes folder: a PDB (HETATM records of ``resname``) or an SDF.
    smiles : str or None
        Bond orders for a PDB source (PDB records have none); None for an SDF.
    serial : int
        First atom serial number to write.

    Returns
    -------
    list of str
        ``HETATM`` lines with AutoDock types; polar hydrogens only, as in the receptor.
    """
    path = COMPLEXES / source
    if path.suffix == ".pdb":
        block = "".join(line for line in path.open() if line.startswith("HETATM") and line[17:20] == resname)
        mol = AllChem.AssignBondOrdersFromTemplate(
            Chem.MolFromSmiles(smiles), Chem.MolFromPDBBlock(block, removeHs=True)
        )
    else:
        mol = Chem.MolFromMolFile(str(path), removeHs=True)
    pdbqt = to_pdbqt(Chem.AddHs(mol, addCoords=True))
    lines = []
    for line in pdbqt.splitlines():
        if line.startswith(("ATOM", "HETATM")):
            # meeko writes the molecule as residue 'UNL 1'; Vina ignores names, humans do not
            lines.append(f"HETATM{serial:5d}{line[11:17]}{resname:>3s} Z 999{line[26:]}")
            serial += 1
    return lines


def receptor_pdbqt(name: str, cofactors: str, workdir: Path) -> tuple[Path, list[str]]:
    """The receptor PDBQT of one complex (pipeline preparation, plus cofactors when kept); cached in ``workdir``."""
    bare = workdir / f"{name}.pdbqt"
    if not bare.is_file():
        prepare_receptor(COMPLEXES / f"{name}_receptorH.pdb", workdir / f"{name}.pdb", bare)
    kept = sorted(COFACTORS.get(name, {})) if cofactors == "keep" else []
    if not kept:
        return bare, []
    out = workdir / f"{name}_cofactors.pdbqt"
    if not out.is_file():
        lines = [line for line in bare.read_text().splitlines() if line.strip() and not line.startswith("END")]
        for resname in kept:
            lines += cofactor_pdbqt_lines(resname, *COFACTORS[name][resname], serial=len(lines) + 1)
        write_text_atomic(out, "\n".join(lines) + "\n")
    return out, kept


def crystal_pose_with_hydrogens(crystal: Chem.Mol, prepared: Chem.Mol) -> Chem.Mol:
    """The prepared molecule (its protonation state) on the crystal heavy-atom coordinates, hydrogens added."""
    heavy = Chem.RemoveHs(prepared)
    match = element_graph(crystal).GetSubstructMatch(element_graph(heavy))
    if len(match) != heavy.GetNumAtoms():
        raise ValueError("the prepared ligand does not match the crystal ligand")
    xyz = Chem.RemoveHs(crystal).GetConformer().GetPositions()
    conf = heavy.GetConformer()
    for i, j in enumerate(match):
        conf.SetAtomPosition(i, xyz[j].tolist())
    return Chem.AddHs(heavy, addCoords=True)


def crystal_pose_scores(docker: Docker, crystal: Chem.Mol, prepared: Chem.Mol) -> dict:
    """Vina score of the crystal pose as is and after local optimization, and how far the optimization moved it."""
    vina = docker.vina
    vina.set_ligand_from_string(to_pdbqt(crystal_pose_with_hydrogens(crystal, prepared)))
    as_is = float(vina.score()[0])
    optimized = float(vina.optimize()[0])
    with tempfile.TemporaryDirectory() as tmp:
        vina.write_pose(str(Path(tmp) / "pose.pdbqt"), overwrite=True)
        pose = poses_to_rdkit((Path(tmp) / "pose.pdbqt").read_text(), "crystal")[0]
    return dict(
        crystal_score=as_is, crystal_optimized_score=optimized, crystal_optimized_rmsd=heavy_atom_rmsd(pose, crystal)
    )


def macrocycle_closure(pdbqt: str, pose: Chem.Mol) -> dict:
    """Ring bonds meeko opened for flexibility and their lengths in an exported pose.

    Parameters
    ----------
    pdbqt : str
        The ligand PDBQT docked (meeko): an opened bond's two atoms are typed ``CG<n>``.
    pose : Chem.Mol
        A pose from :func:`pipeline.docking.poses_to_rdkit`, whose atoms are in the order
        of the PDBQT's ``REMARK SMILES``.

    Returns
    -------
    dict
        ``opened_ring_bonds`` and ``closure_bond_lengths`` (Å; about 1.5 when Vina closed the ring).
    """
    types = {int(line[6:11]): line[77:].strip() for line in pdbqt.splitlines() if line.startswith("ATOM")}
    pairs = [int(v) for line in pdbqt.splitlines() if line.startswith("REMARK SMILES IDX") for v in line.split()[3:]]
    glue = {s - 1: types[q] for s, q in zip(pairs[::2], pairs[1::2]) if types.get(q, "").startswith("CG")}
    conf = pose.GetConformer()
    lengths = [
        rdMolTransforms.GetBondLength(conf, b.GetBeginAtomIdx(), b.GetEndAtomIdx())
        for b in pose.GetBonds()
        if glue.get(b.GetBeginAtomIdx(), "a") == glue.get(b.GetEndAtomIdx(), "b")  # same CG<n>: the opened bond
    ]
    return dict(opened_ring_bonds=len(lengths), closure_bond_lengths=[round(x, 3) for x in lengths])


def settings_key(args: argparse.Namespace) -> dict:
    """The settings that define a row (with the complex): rows of equal settings are comparable."""
    return dict(
        box=args.box,
        padding=args.padding if args.box == "tight" else None,
        exhaustiveness=args.exhaustiveness,
        n_poses=args.n_poses,
        seed=args.seed,
        cofactors=args.cofactors,
        # only when asked for: rows from before the option existed keep their keys; "first_full" = the
        # first conformer gets the whole exhaustiveness (rows marked "split" shared it equally)
        **(
            {"ring_conformers": args.ring_conformers, "conformer_effort": "first_full"}
            if args.ring_conformers != 1
            else {}
        ),
    )


def row_key(name: str, settings: dict) -> str:
    """A string key of one row: complex plus settings."""
    return name + "|" + "|".join(f"{k}={v}" for k, v in settings.items())


def redock(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Prepare the receptor, dock the crystal ligand from SMILES, return scores, RMSDs and timings."""
    settings = settings_key(args)
    crystal = read_crystal_ligand(COMPLEXES / LIGANDS[name])
    box = make_box(name, args.box, args.padding)
    receptor, kept = receptor_pdbqt(name, args.cofactors, workdir)
    smiles = Chem.MolToSmiles(Chem.RemoveHs(crystal))
    start = time.perf_counter()
    prepared, row = prepare_ligand(name, smiles, LigandSettings(seed=args.seed, ring_conformers=args.ring_conformers))
    prep_seconds = time.perf_counter() - start
    start = time.perf_counter()
    docker = Docker(
        receptor,
        box,
        DockingSettings(
            exhaustiveness=args.exhaustiveness,
            n_poses=args.n_poses,
            seed=args.seed,
            threads=args.threads,
            time_limit=None,
        ),
    )
    poses, energies = docker.dock(name, row["pdbqt"], row["pdbqt_conformers"])
    seconds = time.perf_counter() - start
    rmsds = [heavy_atom_rmsd(p, crystal) for p in poses]
    ligand_xyz = read_ligand_coordinates(COMPLEXES / LIGANDS[name])
    return dict(
        key=row_key(name, settings),
        complex=name,
        **settings,
        threads=args.threads,
        box_center=list(box.center),
        box_size=list(box.size),
        ligand_in_box=bool(box.contains(ligand_xyz).all()),
        cofactors_kept=kept,
        zinc=zinc_note(receptor, box),
        smiles=smiles,
        prepared_smiles=row["prepared_smiles"],
        starting_conformers=1 + len(row["pdbqt_conformers"]),
        # the protonation tool decides the prepared state (and Vina's donors): recorded to keep rows comparable
        protonation=getattr(LigandSettings(), "protonation", "dimorphite"),
        score=float(energies[0][0]),
        top_pose_rmsd=rmsds[0],
        best_rmsd_in_poses=min(rmsds),
        rank_of_best=int(np.argmin(rmsds)) + 1,
        n_poses_returned=len(poses),
        pose_scores=[float(e[0]) for e in energies],
        pose_rmsds=[round(r, 3) for r in rmsds],
        **macrocycle_closure(row["pdbqt"], poses[0]),
        **crystal_pose_scores(docker, crystal, prepared),
        prep_seconds=prep_seconds,
        seconds=seconds,
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        machine=platform.node(),
    )


def load_rows(path: Path) -> list[dict]:
    """Rows already in the JSON (rows without a key are from the pre-key format and are dropped)."""
    if not path.is_file():
        return []
    rows = json.loads(path.read_text()).get("results", [])
    kept = [r for r in rows if "key" in r]
    if len(kept) < len(rows):
        print(f"dropping {len(rows) - len(kept)} rows of the old format from {path}")
    return kept


def save_row(out: Path, row: dict) -> list[dict]:
    """Add (or replace) one row in the JSON and return all rows.

    The file is re-read under an exclusive lock, so runs of other settings started side by side
    (one per core) keep each other's rows.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = [r for r in load_rows(out) if r["key"] != row["key"]] + [row]
        result = dict(machine=platform.node(), results=rows, summary=summary(rows))
        write_text_atomic(out, json.dumps(result, indent=1) + "\n")
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per settings: how many complexes redock under 2 Å (top pose), and the total time."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["key"].split("|", 1)[1], []).append(r)
    return [
        dict(
            settings=key,
            complexes=[r["complex"] for r in group],
            under_2A=sum(r["top_pose_rmsd"] < RMSD_CUTOFF for r in group),
            n=len(group),
            seconds=round(sum(r["seconds"] for r in group), 1),
        )
        for key, group in groups.items()
    ]


def print_row(r: dict) -> None:
    """One table line."""
    print(
        f"{r['complex']:8s} score {r['score']:7.2f}  top-pose RMSD {r['top_pose_rmsd']:5.2f} Å  "
        f"best of {r['n_poses_returned']} {r['best_rmsd_in_poses']:5.2f} Å  crystal {r['crystal_optimized_score']:7.2f}  "
        f"{r['seconds']:7.1f} s  [{r['key'].split('|', 1)[1]}]",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--complexes", nargs="*", default=list(LIGANDS), choices=list(LIGANDS))
    parser.add_argument("--box", choices=["tight", "cube30", "shipped"], default="tight")
    parser.add_argument("--padding", type=float, default=4.0, help="Å around the crystal ligand (--box tight)")
    parser.add_argument("--exhaustiveness", type=int, default=8)
    parser.add_argument("--n-poses", type=int, default=9)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cofactors", choices=["keep", "drop"], default="keep")
    parser.add_argument(
        "--ring-conformers",
        type=int,
        default=1,
        help="starting conformers with other ring shapes (ligands.ring_conformers; the first gets the whole search)",
    )
    parser.add_argument("--zinc", choices=["vina", "ad4zn"], default="vina", help="ad4zn is refused (pipeline.zinc)")
    parser.add_argument("--workdir", help="prepared receptors, reused across runs")
    parser.add_argument("--redo", action="store_true", help="recompute rows already in --out")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "redock.json"))
    args = parser.parse_args()
    if args.zinc == "ad4zn":
        try:
            require_ad4zn()
        except ZincRouteError as exc:
            parser.error(str(exc))  # the reason on one line, exit status 2, no traceback
    out = Path(args.out)
    rows = load_rows(out)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in args.complexes:
            key = row_key(name, settings_key(args))
            done = [r for r in rows if r["key"] == key]
            if done and not args.redo:
                print_row(done[0])
                continue
            row = redock(name, args, workdir)
            print_row(row)
            rows = save_row(out, row)
    for s in summary([r for r in rows if r["key"].split("|", 1)[1] == key.split("|", 1)[1]]):
        print(f"{s['under_2A']} of {s['n']} under {RMSD_CUTOFF} Å ({', '.join(s['complexes'])}), {s['seconds']} s")


if __name__ == "__main__":
    main()
