"""Honest evaluation of affinity ranking on Uni-FEP series: protein-grouped CV, unseen compounds, paired intervals.

The question a chemist asks of a scorer on a new target is "does it rank *this* series
better than what I already have?". This module answers it the same way for every method:

* **Data** (:func:`load_unifep`): one row per ligand of ``shared/data/unifep`` (series id =
  folder), with the measured ΔG, the Uni-FEP prediction and a canonical heavy-atom SMILES.
* **Protein-grouped folds** (:func:`protein_groups`, :func:`protein_folds`): isoforms,
  close paralogues and synonyms of one protein share a group, and whole groups go to one of
  five folds, so no protein (nor its twin) is on both sides of a split.
* **Unseen compounds** (:func:`unseen_mask`): a test compound counts as unseen only when no
  training compound is an analogue (Morgan r=2 Tanimoto ≥ 0.4).
* **Per-series ranking quality** (:func:`per_series_correlations`): Kendall τ and Spearman ρ
  of a score against exp ΔG inside each series (≥ 5 ligands), averaged over series. Scores
  follow the ΔG convention: **lower = tighter binding predicted** (Vina, ΔG); callers negate
  "higher is better" scores.
* **Paired intervals** (:func:`paired_bootstrap`): the difference of two methods with a 95 %
  percentile interval, resampling series and, the figure to quote, resampling protein groups
  (series of one protein are not independent draws).
* **Pose-free baselines**: heavy-atom count (size bias), the FEP prediction (physics anchor)
  and a ligand-only Morgan-fingerprint ridge regression fitted on the training folds only
  (:func:`cross_validated`).
* :func:`summarize` / :func:`to_markdown`: the table, and the DUD-E side
  (:func:`loto_auroc`, :func:`early_enrichment`) for screening.

Run the pose-free baselines (CPU, about a minute) and write
``benchmarks/results/affinity_baselines.json``::

    python benchmarks/affinity_eval.py --baselines
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import rdFingerprintGenerator
from scipy.stats import kendalltau

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: the library is importable
    sys.path.insert(0, str(REPO))

from pipeline.scoring.baselines import morgan_fingerprints  # noqa: E402
from pipeline.scoring.metrics import auroc, bedroc, enrichment_factor, spearman  # noqa: E402

UNIFEP = REPO.parent / "shared" / "data" / "unifep"
RESULT = REPO / "benchmarks" / "results" / "affinity_baselines.json"

MIN_LIGANDS = 5  # fewer ligands per series give a τ that is mostly noise (5 ligands: 10 pairs)
UNSEEN_THRESHOLD = 0.4  # Tanimoto at or above which a training compound counts as an analogue
FP_RADIUS, FP_BITS = 2, 2048  # the fingerprint of the ligand-only baselines (pipeline.scoring.baselines)
N_BOOTSTRAP = 2000
N_FOLDS = 5
SEED = 0
RIDGE_ALPHAS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0)

#: The pose-free score columns and what they are (lower = tighter binding predicted).
BASELINES = {
    "heavy_atom_count": "heavy-atom count, negated (bigger predicted tighter: the size bias)",
    "fep": "Uni-FEP ΔG as given (physics anchor, GPU-hours per ligand)",
    "ligand_only": "Morgan-fingerprint ridge on within-series ΔG, fitted on the training folds",
}
#: Baselines every method is compared to, in the order of the table (those present are used).
DEFAULT_BASELINES = ("vina", "heavy_atom_count", "ligand_only", "fep")

log = logging.getLogger("affinity_eval")


# --------------------------------------------------------------------------- data


def _read_smiles(smiles: str) -> tuple[Chem.Mol | None, bool]:
    """Parse a SMILES; a neutral four-bonded N is read as the ammonium it is. Returns (mol, repaired).

    Some Uni-FEP files (Hermite PAK4) write a protonated piperazine as ``N([H])([H])`` without
    its charge, which RDKit rightly refuses; the only sensible reading is ``[NH2+]``, so such N
    get a +1 charge and the ligand is kept (logged), instead of losing most of a series.
    """
    mol = Chem.MolFromSmiles(smiles)
    if mol is not None:
        return mol, False
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return None, False
    mol.UpdatePropertyCache(strict=False)
    fixed = False
    for atom in mol.GetAtoms():
        if atom.GetSymbol() == "N" and atom.GetFormalCharge() == 0 and atom.GetExplicitValence() == 4:
            atom.SetFormalCharge(1)
            fixed = True
    if not fixed:
        return None, False
    try:
        Chem.SanitizeMol(mol)
    except (Chem.rdchem.MolSanitizeException, ValueError):
        return None, False
    return Chem.RemoveHs(mol), True


def _heavy_atom_smiles(smiles: str) -> tuple[str, int, bool] | None:
    """Canonical SMILES without hydrogens, heavy-atom count, repaired flag; ``None`` if unreadable.

    The files write every hydrogen explicitly (``[H]``) or as bracket counts (``[CH2]``); the
    parser drops the explicit H atoms, so analogues compare on their heavy-atom graphs and the
    same molecule written both ways gets one canonical string.
    """
    mol, repaired = _read_smiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    mol = Chem.RemoveHs(mol)
    return Chem.MolToSmiles(mol), mol.GetNumHeavyAtoms(), repaired


def _read_systems(path: Path) -> pd.DataFrame:
    """``systems.csv`` as folder, source, target, ligands; odd rows dropped with a warning naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (the Uni-FEP data lives in shared/data/unifep next to the repo)")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    # The upstream table calls the data source "series"; the per-series id is the folder.
    table = table.rename(columns={"series": "source"})
    missing = {"folder", "target"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing (have {list(table.columns)})")
    rows = []
    for line, row in enumerate(table.to_dict("records"), start=2):
        folder = row["folder"].strip()
        # A repeated header or an empty line (concatenated tables) is not a series.
        if not folder or folder.lower() == "folder" or row["target"].strip().lower() == "target":
            log.warning("%s line %d: skipped a header-like or empty row %r", path, line, row)
            continue
        parts = folder.split("__")
        source = row.get("source", "").strip() or parts[0]
        ligands = pd.to_numeric(row.get("ligands", ""), errors="coerce")
        rows.append(dict(folder=folder, source=source, target=row["target"].strip(), ligands=ligands))
    out = pd.DataFrame(rows, columns=["folder", "source", "target", "ligands"])
    duplicated = out.folder.duplicated()
    if duplicated.any():
        log.warning("%s: %d duplicate folder rows dropped: %s", path, duplicated.sum(), list(out.folder[duplicated]))
        out = out[~duplicated]
    return out.reset_index(drop=True)


def _column_key(name: str) -> str:
    """``"exp_dG (kcal/mol)"`` -> ``"exp_dG"``: match the columns whatever unit label they carry."""
    return name.split("(")[0].strip()


def _read_series(path: Path) -> tuple[pd.DataFrame, list[dict]]:
    """One ``result_dG.csv``: the readable ligands and the skipped ones (with the reason)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: result table of a series listed in systems.csv is missing")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as CSV ({exc})") from exc
    raw.columns = [_column_key(c) for c in raw.columns]
    missing = {"ligand_smiles", "exp_dG"} - set(raw.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing (have {list(raw.columns)})")
    kept, skipped = [], []
    for line, row in enumerate(raw.to_dict("records"), start=2):
        smiles = row["ligand_smiles"].strip()
        name = row.get("ligand_name", "").strip() or f"row{line}"
        exp = pd.to_numeric(row["exp_dG"], errors="coerce")
        parsed = _heavy_atom_smiles(smiles) if smiles else None
        if smiles.lower() == "ligand_smiles":
            reason = "repeated header"
        elif parsed is None:
            reason = f"RDKit cannot read the SMILES {smiles!r}"
        elif not np.isfinite(exp):
            reason = f"exp_dG {row['exp_dG']!r} is not a number"
        else:
            reason = ""
        if reason:
            skipped.append(dict(file=str(path), line=line, ligand_name=name, reason=reason))
            log.warning("%s line %d (%s): skipped, %s", path, line, name, reason)
            continue
        if parsed[2]:
            log.warning(
                "%s line %d (%s): four-bonded neutral N read as N+ (charge missing in the SMILES)", path, line, name
            )
        kept.append(
            dict(
                ligand_name=name,
                smiles=smiles,
                smiles_heavy=parsed[0],
                heavy_atoms=parsed[1],
                smiles_repaired=parsed[2],
                exp_dG=float(exp),
                # Some series (GPCR, Hermite) carry no FEP standard deviation: NaN, not an error.
                fep_dG=float(pd.to_numeric(row.get("fep_dG", ""), errors="coerce")),
                fep_dG_std=float(pd.to_numeric(row.get("fep_dG_std", ""), errors="coerce")),
            )
        )
    return pd.DataFrame(kept), skipped


def load_unifep(root: Path | str = UNIFEP) -> pd.DataFrame:
    """Every ligand of the Uni-FEP series under ``root``, one row each.

    Parameters
    ----------
    root : Path or str
        The ``unifep`` folder (``systems.csv`` and one folder per series); default the shared
        data next to the repository.

    Returns
    -------
    pandas.DataFrame
        Columns ``series`` (= ``folder``, the series id), ``folder``, ``source``, ``target``,
        ``group`` (see :func:`protein_groups`), ``ligand_name``, ``smiles`` (as given, explicit
        H), ``smiles_heavy`` (canonical, no H), ``heavy_atoms``, ``smiles_repaired`` (a missing
        ammonium charge was added, see :func:`_read_smiles`), ``exp_dG``, ``fep_dG``,
        ``fep_dG_std`` (kcal/mol; NaN where a series gives none). ``attrs["skipped"]`` lists the
        ligands that could not be read (file, line, name, reason); each is also logged.

    Raises
    ------
    FileNotFoundError, ValueError
        ``systems.csv`` or a listed ``result_dG.csv`` is missing or lacks its columns; the
        message names the file.
    """
    root = Path(root)
    systems = _read_systems(root / "systems.csv")
    frames, skipped = [], []
    for row in systems.itertuples(index=False):
        path = root / row.folder / "result_dG.csv"
        part, bad = _read_series(path)
        # Relative names: the record goes into committed results, which name no machine's paths.
        skipped += [item | dict(file=f"{root.name}/{row.folder}/result_dG.csv") for item in bad]
        if np.isfinite(row.ligands) and len(part) + len(bad) != int(row.ligands):
            log.warning("%s: %d ligand rows, systems.csv says %d", path, len(part) + len(bad), int(row.ligands))
        if part.empty:
            continue
        part.insert(0, "target", row.target)
        part.insert(0, "source", row.source)
        part.insert(0, "folder", row.folder)
        part.insert(0, "series", row.folder)
        frames.append(part)
    if not frames:
        raise ValueError(f"{root}: no readable ligand in any series")
    df = pd.concat(frames, ignore_index=True)
    groups = protein_groups(df.target.unique())
    df.insert(4, "group", df.target.map(groups))
    df.attrs["skipped"] = skipped
    return df


# --------------------------------------------------------------------------- protein groups

#: Names used in data sets -> HGNC gene symbol (upper case). Synonyms of one protein must meet
#: in one group, whatever name a series or a DUD-E folder gives it.
SYNONYMS: dict[str, str] = {
    "FKBP12": "FKBP1A",
    "FXR": "NR1H4",
    "LXRB": "NR1H2",
    "D3": "DRD3",
    "DOR": "OPRD1",
    "BETA1": "ADRB1",
    "MGLUR5": "GRM5",
    "MENIN": "MEN1",
    "PKA": "PRKACA",
    "ACK1": "TNK2",
    "ERK2": "MAPK1",
    "ERK5": "MAPK7",
    "JNK3": "MAPK10",
    "FAK": "PTK2",
    "PYK2": "PTK2B",
    "PSA": "KLK3",
    "TIE2": "TEK",
    "VEGFR2": "KDR",
    "PERK": "EIF2AK3",
    "IRE1": "ERN1",
    "ASK1": "MAP3K5",
    "G9A": "EHMT2",
    "SGLT2": "SLC5A2",
    "NET": "SLC6A2",
    "GAT1": "SLC6A1",
    "MTH1": "NUDT1",
    "CB2": "CNR2",
    "PRMT4": "CARM1",
    "TRKA": "NTRK1",
    "MPS1": "TTK",
    "RSK2": "RPS6KA3",
    "CK1D": "CSNK1D",
    "HSP90": "HSP90AA1",
    "ADRBK1": "GRK2",
    "MGEA5": "OGA",
    "MPRO": "3CLPRO",
    "NSP5": "3CLPRO",
    # DUD-E folder names (screening side of the evaluation).
    "HS90A": "HSP90AA1",
    "ACES": "ACHE",
    "PGH2": "PTGS2",
}

#: Paralogue families whose members the stem rule below would not join (different stems, or
#: members told apart by a letter), and stems that join unrelated proteins by coincidence.
FAMILIES: dict[str, frozenset[str]] = {
    # Tankyrases are PARP5a/b: same ART domain and nicotinamide pocket as PARP1/2.
    "PARP": frozenset({"PARP1", "PARP2", "PARP3", "PARP14", "TNKS", "TNKS2"}),
    "RAF": frozenset({"ARAF", "BRAF", "RAF1"}),
    "SRC family": frozenset({"SRC", "LCK", "FYN", "YES1", "LYN", "HCK", "FGR", "BLK"}),
    "cathepsins (papain-like)": frozenset({"CTSB", "CTSK", "CTSL", "CTSS", "CTSV"}),
    "PPAR": frozenset({"PPARA", "PPARD", "PPARG"}),
    # PNP and MTAP: one phosphorylase fold (NP-I), transition-state analogues bind both.
    "PNP/MTAP": frozenset({"PNP", "MTAP"}),
    # "BCL" names two unrelated proteins: the BCL-2 apoptosis regulators and the BCL6 BTB domain.
    "BCL2 family": frozenset({"BCL2", "BCL2L1", "BCL2L2", "MCL1", "BCL2A1"}),
    "BCL6": frozenset({"BCL6"}),
    # TRAP1 is the mitochondrial HSP90 (DUD-E's hs90a is HSP90AA1).
    "HSP90": frozenset({"HSP90AA1", "HSP90AB1", "HSP90B1", "TRAP1"}),
    "aurora kinases": frozenset({"AURKA", "AURKB", "AURKC"}),
    "RAR": frozenset({"RARA", "RARB", "RARG"}),
    "RXR": frozenset({"RXRA", "RXRB", "RXRG"}),
    "ERR": frozenset({"ESRRA", "ESRRB", "ESRRG"}),
    "ROR": frozenset({"RORA", "RORB", "RORC"}),
    "MAO": frozenset({"MAOA", "MAOB"}),
    "LDH": frozenset({"LDHA", "LDHB", "LDHC"}),
    "PKA": frozenset({"PRKACA", "PRKACB", "PRKACG"}),
    "choline kinases": frozenset({"CHKA", "CHKB"}),
    "opioid receptors": frozenset({"OPRD1", "OPRK1", "OPRM1", "OPRL1"}),
    "coronavirus 3CL protease": frozenset({"3CLPRO"}),
    "coagulation factors": frozenset({"F2", "F7", "F9", "F10", "F11", "F12"}),
    "BET bromodomains": frozenset({"BRD2", "BRD3", "BRD4", "BRDT"}),
    "CBP/p300": frozenset({"CREBBP", "EP300"}),
    "RAS": frozenset({"KRAS", "HRAS", "NRAS"}),
    "VEGFR": frozenset({"FLT1", "KDR", "FLT4"}),
    "TIE": frozenset({"TIE1", "TEK"}),
    "TAM kinases": frozenset({"AXL", "MERTK", "TYRO3"}),
    "PDGFR family (type III RTK)": frozenset({"CSF1R", "KIT", "PDGFRA", "PDGFRB", "FLT3"}),
    "insulin receptor family": frozenset({"IGF1R", "INSR", "INSRR"}),
    "NAK kinases": frozenset({"AAK1", "BMP2K", "GAK", "STK16"}),
    "PRMT": frozenset({"CARM1", "PRMT1", "PRMT3", "PRMT5", "PRMT6", "PRMT7", "PRMT8"}),
    "aromatic amino acid hydroxylases": frozenset({"TPH1", "TPH2", "TH", "PAH"}),
    "DPP4 family": frozenset({"DPP4", "FAP", "DPP8", "DPP9"}),
}

#: Stems longer than the leading letters, where the letters alone would join different families
#: (MAP3K vs MAP4K vs MAPK; CK1 vs CK2; nuclear-receptor and SLC families by their number).
_STEM_PATTERNS = (
    re.compile(r"^NR\d[A-Z]"),
    re.compile(r"^SLC\d+[A-Z]?"),
    re.compile(r"^MAP\dK"),
    re.compile(r"^CSNK\d"),
    re.compile(r"^EIF2AK"),
    re.compile(r"^RPS6K"),
    re.compile(r"^PLA2G"),
)
_MUTATION = re.compile(r"[-_ ]?[A-Z]\d+[A-Z]$")  # KRAS-G12D -> KRAS
_FAMILY_OF = {member: family for family, members in FAMILIES.items() for member in members}


def gene_symbol(target: str) -> str:
    """The HGNC-style symbol a target name stands for: upper case, mutation suffix dropped, synonyms resolved."""
    name = str(target).strip().upper()
    if "-" in name or "_" in name:
        name = _MUTATION.sub("", name)
    return SYNONYMS.get(name, name)


def _family(symbol: str) -> str:
    """Gene-family stem of a symbol: the explicit family, else a stem pattern, else its leading letters."""
    if symbol in _FAMILY_OF:
        return _FAMILY_OF[symbol]
    for pattern in _STEM_PATTERNS:
        match = pattern.match(symbol)
        if match:
            return match.group(0)
    match = re.match(r"[A-Z]+", symbol)
    # A symbol that starts with a digit has no letter stem: it is its own group.
    return match.group(0) if match else symbol


def protein_groups(targets: Iterable[str]) -> dict[str, str]:
    """Group targets so that isoforms, close paralogues and synonyms of one protein share a group.

    The rule ("gene names group isoforms", conservative: a doubtful pair is joined, which only
    makes the held-out test stricter):

    1. the target name becomes an HGNC symbol (:data:`SYNONYMS`: ``FKBP12`` -> ``FKBP1A``,
       ``FXR`` -> ``NR1H4``; a mutation suffix such as ``-G12D`` is dropped);
    2. a symbol in an explicit paralogue family (:data:`FAMILIES`: SRC family, RAF, PARP with
       tankyrases, cathepsins, PPAR, ...) gets that family;
    3. otherwise the gene-family stem: the symbol's leading letters, which drop the member
       number and isoform (``PDE4B``, ``PDE4D``, ``PDE10A`` -> ``PDE``; ``PIM1``, ``PIM2`` ->
       ``PIM``; ``MAPK1``, ``MAPK7``, ``MAPK10`` -> ``MAPK``; ``PIK3CA``, ``PIK3CG``,
       ``PIK3C3`` -> ``PIK``), or a longer stem for families the letters would merge
       (``MAP3K``, ``MAP4K``, ``CSNK1``, ``NR1H``, ``SLC6``).

    Superfamilies (all kinases, all trypsin-like proteases, all nuclear receptors) are *not*
    joined: that would turn protein-held-out into target-class-held-out with a handful of groups.

    Parameters
    ----------
    targets : iterable of str
        Target names as the data give them.

    Returns
    -------
    dict
        Target name -> group name.
    """
    return {target: _family(gene_symbol(target)) for target in targets}


def group_table(groups: Mapping[str, str], counts: Mapping[str, int] | None = None) -> str:
    """Markdown table of the groups that hold more than one target (for the README).

    Parameters
    ----------
    groups : mapping
        Target -> group, as from :func:`protein_groups`.
    counts : mapping, optional
        Target -> number of series (shown beside each target when given).
    """
    members: dict[str, list[str]] = {}
    for target, group in groups.items():
        members.setdefault(group, []).append(target)
    lines = ["| group | targets |", "|---|---|"]
    for group in sorted(members, key=str.upper):
        names = sorted(members[group], key=str.upper)
        if len(names) < 2:
            continue
        shown = [f"{t} ({counts[t]})" if counts and t in counts else t for t in names]
        lines.append(f"| {group} | {', '.join(shown)} |")
    return "\n".join(lines)


def protein_folds(df: pd.DataFrame, k: int = N_FOLDS, seed: int = SEED) -> pd.Series:
    """Assign whole protein groups to ``k`` folds with balanced ligand counts.

    Greedy, largest group first, each to the fold with the fewest ligands so far (lowest
    index on a tie); equal-sized groups are taken in a seeded order, so the result depends
    only on the groups, their sizes and ``seed``, not on the row order.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per ligand with ``group`` (or ``target``, grouped by :func:`protein_groups`).
    k : int
        Number of folds.
    seed : int
        Seed of the order among equal-sized groups.

    Returns
    -------
    pandas.Series
        Fold index (0..k-1) per row of ``df`` (same index), named ``fold``.
    """
    groups = df["group"] if "group" in df else df["target"].map(protein_groups(df["target"].unique()))
    sizes = groups.value_counts()
    if len(sizes) < k:
        raise ValueError(f"{len(sizes)} protein groups cannot fill {k} folds")
    names = sorted(sizes.index)
    order = np.random.default_rng(seed).permutation(len(names))
    ranked = sorted((names[i] for i in order), key=lambda g: -sizes[g])  # stable: seeded order breaks ties
    load = np.zeros(k, dtype=np.int64)
    fold_of = {}
    for group in ranked:
        fold = int(np.argmin(load))
        fold_of[group] = fold
        load[fold] += sizes[group]
    return groups.map(fold_of).astype(int).rename("fold")


# --------------------------------------------------------------------------- unseen compounds


def _bit_vectors(smiles: Sequence[str]) -> list:
    """RDKit bit vectors (Morgan r=2, 2048 bits: the ligand-only baselines' fingerprint)."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=FP_RADIUS, fpSize=FP_BITS)
    out = []
    for smi in smiles:
        mol = Chem.MolFromSmiles(smi)
        out.append(generator.GetFingerprint(mol) if mol is not None else None)
    return out


def max_similarity(train_smiles: Sequence[str], test_smiles: Sequence[str]) -> np.ndarray:
    """Per test compound, the highest Tanimoto to any training compound (0 without training data).

    Duplicate SMILES are fingerprinted and searched once. An unreadable test SMILES gets NaN,
    an unreadable training SMILES is ignored.
    """
    train_unique = sorted(set(train_smiles))
    train_fps = [fp for fp in _bit_vectors(train_unique) if fp is not None]
    test_unique = sorted(set(test_smiles))
    best = {}
    for smi, fp in zip(test_unique, _bit_vectors(test_unique)):
        if fp is None:
            best[smi] = float("nan")
        elif not train_fps:
            best[smi] = 0.0
        else:
            best[smi] = max(DataStructs.BulkTanimotoSimilarity(fp, train_fps))
    return np.array([best[s] for s in test_smiles], dtype=np.float64)


def unseen_mask(
    train_smiles: Sequence[str], test_smiles: Sequence[str], threshold: float = UNSEEN_THRESHOLD
) -> np.ndarray:
    """Which test compounds have no analogue in training: max Tanimoto to every training compound < ``threshold``.

    Parameters
    ----------
    train_smiles, test_smiles : sequence of str
        Heavy-atom SMILES (explicit H would add bits of their own).
    threshold : float
        Tanimoto (Morgan radius 2, 2048 bits) at or above which a training compound is an analogue.

    Returns
    -------
    numpy.ndarray of bool
        True = unseen. Unreadable test SMILES are not unseen (nothing can be said of them).
    """
    best = max_similarity(train_smiles, test_smiles)
    return np.where(np.isnan(best), False, best < threshold)


def cv_unseen(df: pd.DataFrame, folds: pd.Series, threshold: float = UNSEEN_THRESHOLD) -> pd.Series:
    """Per row, whether the compound is unseen by the training folds of its own fold (see :func:`unseen_mask`)."""
    out = pd.Series(False, index=df.index, name="unseen")
    for fold in sorted(folds.unique()):
        test = folds == fold
        out[test] = unseen_mask(
            df.loc[~test, "smiles_heavy"].tolist(), df.loc[test, "smiles_heavy"].tolist(), threshold
        )
    return out


# --------------------------------------------------------------------------- per-series metrics


def per_series_correlations(
    df: pd.DataFrame, score_column: str, min_ligands: int = MIN_LIGANDS, truth: str = "exp_dG"
) -> pd.DataFrame:
    """Kendall τ (tau-b, ties handled) and Spearman ρ of a score against exp ΔG inside every series.

    Convention: lower score = tighter binding predicted, as ΔG, so a perfect score has τ = 1.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per ligand with ``series``, ``target``, ``group``, ``truth`` and ``score_column``.
    score_column : str
        The score to rank by.
    min_ligands : int
        Series with fewer ligands where both values are finite, or with a constant ``truth``,
        are left out (their correlation is undefined or mostly noise).
    truth : str
        Measured column.

    Returns
    -------
    pandas.DataFrame
        ``series, target, group, n, tau, rho``; τ and ρ are NaN when the score is constant in a
        series (it ranks nothing: callers treat that as they see fit, the mean skips it).
    """
    rows = []
    for series, part in df.groupby("series", sort=True):
        x = part[score_column].to_numpy(dtype=np.float64)
        y = part[truth].to_numpy(dtype=np.float64)
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        if len(x) < min_ligands or np.ptp(y) == 0:
            continue
        if np.ptp(x) == 0:
            tau = rho = float("nan")
        else:
            tau = float(kendalltau(x, y).statistic)
            rho = spearman(x, y)
        first = part.iloc[0]
        rows.append(dict(series=series, target=first["target"], group=first["group"], n=int(len(x)), tau=tau, rho=rho))
    return pd.DataFrame(rows, columns=["series", "target", "group", "n", "tau", "rho"])


def _interval(values: np.ndarray) -> list[float]:
    """95 % percentile interval of bootstrap replicates."""
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def _replicate_means(values: np.ndarray, clusters: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the per-column mean over rows, resampling whole clusters (rows × columns in).

    Every replicate draws the clusters once for all columns (paired), then takes the mean over
    all rows of the drawn clusters (the same statistic as the point estimate: mean over series).
    """
    names, cluster_index = np.unique(clusters, return_inverse=True)
    sums = np.zeros((len(names), values.shape[1]))
    np.add.at(sums, cluster_index, values)
    counts = np.bincount(cluster_index, minlength=len(names)).astype(np.float64)
    draws = rng.integers(0, len(names), size=(n, len(names)))
    # Counting how often each cluster is drawn turns the replicate into two matrix products.
    weights = np.zeros((n, len(names)))
    np.add.at(weights, (np.repeat(np.arange(n), len(names)), draws.ravel()), 1.0)
    return (weights @ sums) / (weights @ counts)[:, None]


def paired_bootstrap(
    df_a: pd.DataFrame, df_b: pd.DataFrame, metric: str = "tau", n: int = N_BOOTSTRAP, seed: int = SEED
) -> dict:
    """Mean over series of methods A and B and of A − B, with paired 95 % percentile intervals.

    Only series where both methods have a finite ``metric`` are compared. Two resampling units:

    * ``series``: series drawn with replacement (the usual paired bootstrap);
    * ``group``: protein groups drawn with replacement, each with all its series. Series of one
      protein share the structure, the assay lab and often the chemotype, so they are not
      independent draws; this interval is wider and is **the one to quote**.

    Parameters
    ----------
    df_a, df_b : pandas.DataFrame
        :func:`per_series_correlations` of the two methods.
    metric : str
        ``"tau"`` or ``"rho"``.
    n : int
        Bootstrap replicates.
    seed : int
        Seed (both units use their own generator seeded by it, so either is reproducible alone).

    Returns
    -------
    dict
        ``n_series``, ``n_groups``, ``mean_a``, ``mean_b``, ``diff`` and, under ``series`` and
        ``group``, the intervals ``a``, ``b``, ``diff`` ([low, high]) and ``p_diff_le_0`` (the
        fraction of replicates where A − B ≤ 0; a one-sided bootstrap p-value for "A beats B").
    """
    a = df_a[["series", "group", metric]].rename(columns={metric: "a"})
    b = df_b[["series", metric]].rename(columns={metric: "b"})
    both = a.merge(b, on="series").dropna(subset=["a", "b"])
    out: dict = dict(metric=metric, n_series=int(len(both)), n_groups=int(both.group.nunique()))
    if both.empty:
        return out | dict(mean_a=float("nan"), mean_b=float("nan"), diff=float("nan"))
    values = np.column_stack([both.a, both.b, both.a - both.b]).astype(np.float64)
    out |= dict(mean_a=float(values[:, 0].mean()), mean_b=float(values[:, 1].mean()), diff=float(values[:, 2].mean()))
    for unit, clusters in (("series", both.series.to_numpy()), ("group", both.group.to_numpy())):
        reps = _replicate_means(values, clusters, n, np.random.default_rng(seed))
        out[unit] = dict(
            a=_interval(reps[:, 0]),
            b=_interval(reps[:, 1]),
            diff=_interval(reps[:, 2]),
            p_diff_le_0=float(np.mean(reps[:, 2] <= 0)),
        )
    return out


# --------------------------------------------------------------------------- baselines


def heavy_atom_score(df: pd.DataFrame) -> pd.Series:
    """Negated heavy-atom count: bigger ligands predicted to bind tighter (the size bias of affinity data)."""
    return (-df["heavy_atoms"].astype(np.float64)).rename("heavy_atom_count")


def fep_score(df: pd.DataFrame) -> pd.Series:
    """The Uni-FEP ΔG as given (kcal/mol; lower = tighter)."""
    return df["fep_dG"].astype(np.float64).rename("fep")


def _series_centered(values: np.ndarray, series: np.ndarray) -> np.ndarray:
    """Subtract each series' mean (rows of a vector or a matrix): keep only the within-series variation."""
    _, index = np.unique(series, return_inverse=True)
    counts = np.bincount(index).astype(np.float64)
    if values.ndim == 1:
        return values - (np.bincount(index, weights=values) / counts)[index]
    # Sorting by series turns the per-series sums into one reduceat (np.add.at is slow on matrices).
    order = np.argsort(index, kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
    sums = np.add.reduceat(values[order], starts, axis=0)
    return values - (sums / counts[:, None])[index]


def _ridge_path(x: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """Ridge weights (no intercept: inputs are centred) for every alpha, from one eigendecomposition.

    The primal form decomposes the features' Gram matrix (d × d), the dual one the samples'
    (n × n, ``w = Xᵀ (X Xᵀ + α I)⁻¹ y``); whichever is smaller is used, so a few hundred
    training ligands do not pay for a 2048 × 2048 decomposition.
    """
    if x.shape[0] < x.shape[1]:
        evals, evecs = np.linalg.eigh(x @ x.T)
        projected = evecs.T @ y
        return np.stack([x.T @ (evecs @ (projected / (evals + alpha))) for alpha in alphas], axis=1)
    evals, evecs = np.linalg.eigh(x.T @ x)
    projected = evecs.T @ (x.T @ y)
    return np.stack([evecs @ (projected / (evals + alpha)) for alpha in alphas], axis=1)


def ligand_only_ridge(
    train: pd.DataFrame, test: pd.DataFrame, alphas: Sequence[float] = RIDGE_ALPHAS, inner_folds: int = 3
) -> np.ndarray:
    """Ligand-only model: Morgan-fingerprint ridge regression of within-series ΔG; predicts ``test``.

    Fingerprints and exp ΔG are both centred per series (a fixed-effects regression), so the
    model learns which substituents move ΔG inside a series and nothing about which series or
    protein binds tighter on average, the only signal a per-series τ can reward. The ridge
    strength is chosen by protein-grouped inner CV on ``train`` (mean squared error). scikit-
    learn is not in the environment; the closed form on 2048 features is exact and fast.

    Parameters
    ----------
    train, test : pandas.DataFrame
        Rows with ``series``, ``group``, ``smiles_heavy`` (and ``exp_dG`` in ``train``).
    alphas : sequence of float
        Ridge strengths tried.
    inner_folds : int
        Protein-grouped folds of the inner CV.

    Returns
    -------
    numpy.ndarray
        Predicted within-series ΔG offset per ``test`` row (lower = tighter).
    """
    x = morgan_fingerprints(train.smiles_heavy.tolist(), FP_RADIUS, FP_BITS).astype(np.float64)
    series = train.series.to_numpy()
    xc = _series_centered(x, series)
    yc = _series_centered(train.exp_dG.to_numpy(dtype=np.float64), series)
    alpha = alphas[0]
    if len(alphas) > 1 and train.group.nunique() >= inner_folds:
        inner = protein_folds(train, k=inner_folds).to_numpy()
        errors = np.zeros(len(alphas))
        for fold in range(inner_folds):
            fit, held = inner != fold, inner == fold
            weights = _ridge_path(xc[fit], yc[fit], alphas)
            errors += ((xc[held] @ weights - yc[held][:, None]) ** 2).sum(axis=0)
        alpha = alphas[int(np.argmin(errors))]
    weights = _ridge_path(xc, yc, [alpha])[:, 0]
    log.info("ligand-only ridge: alpha %g on %d training ligands", alpha, len(train))
    x_test = morgan_fingerprints(test.smiles_heavy.tolist(), FP_RADIUS, FP_BITS).astype(np.float64)
    # No need to centre the test fingerprints: a per-series shift does not change a ranking.
    return x_test @ weights


def cross_validated(
    df: pd.DataFrame, folds: pd.Series, fit_predict: Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]
) -> pd.Series:
    """Out-of-fold predictions: for each fold, fit on the other folds and predict this one.

    Parameters
    ----------
    df : pandas.DataFrame
        All ligands.
    folds : pandas.Series
        Fold per row (as from :func:`protein_folds`).
    fit_predict : callable
        ``fit_predict(train, test) -> scores for test rows`` (lower = tighter). It sees only the
        training rows' labels; the test rows are passed with their labels, which it must not use.

    Returns
    -------
    pandas.Series
        Out-of-fold score per row of ``df``.
    """
    out = pd.Series(np.nan, index=df.index, dtype=np.float64)
    for fold in sorted(folds.unique()):
        test = folds == fold
        scores = np.asarray(fit_predict(df[~test], df[test]), dtype=np.float64)
        if scores.shape != (int(test.sum()),):
            raise ValueError(f"fit_predict returned {scores.shape} scores for {int(test.sum())} test rows")
        out[test] = scores
    return out


# --------------------------------------------------------------------------- summary


def _mean_with_intervals(table: pd.DataFrame, metric: str, n: int, seed: int) -> dict:
    """Mean of one method's per-series metric with series- and group-resampled 95 % intervals."""
    keep = table.dropna(subset=[metric])
    out = dict(n_series=int(len(keep)), n_groups=int(keep.group.nunique()))
    if keep.empty:
        return out | dict(mean=float("nan"))
    values = keep[[metric]].to_numpy(dtype=np.float64)
    out["mean"] = float(values.mean())
    for unit in ("series", "group"):
        reps = _replicate_means(values, keep[unit].to_numpy(), n, np.random.default_rng(seed))
        out[f"ci_{unit}"] = _interval(reps[:, 0])
    return out


def _per_series_table(tables: Mapping[str, pd.DataFrame]) -> dict:
    """Per-series results of several methods as one compact table (columns + rows, rounded)."""
    merged = None
    for method, table in tables.items():
        part = table.rename(columns={c: f"{method}:{c}" for c in ("n", "tau", "rho")})
        merged = part if merged is None else merged.merge(part, on=["series", "target", "group"], how="outer")
    merged = merged.sort_values("series")
    rows = [
        [round(v, 4) if isinstance(v, float) and np.isfinite(v) else (None if isinstance(v, float) else v) for v in r]
        for r in merged.itertuples(index=False, name=None)
    ]
    return dict(columns=list(merged.columns), rows=rows)


def summarize(
    df: pd.DataFrame,
    score_columns: Sequence[str],
    baselines: Sequence[str] | None = None,
    unseen_column: str = "unseen",
    common_ligands: bool = True,
    n: int = N_BOOTSTRAP,
    seed: int = SEED,
) -> dict:
    """Per-method mean τ and ρ over series, on all compounds and on unseen ones, and paired differences to baselines.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per ligand: ``series``, ``target``, ``group``, ``exp_dG``, the score columns
        (lower = tighter; out-of-fold for trained methods) and ``unseen_column`` (bool).
    score_columns : sequence of str
        Methods to report.
    baselines : sequence of str, optional
        Columns every method is compared to (default :data:`DEFAULT_BASELINES`, those present:
        Vina, heavy-atom count, ligand-only, FEP).
    unseen_column : str
        For the "unseen" subset a series' τ is computed on its unseen compounds only (if at
        least :data:`MIN_LIGANDS`); missing column: no unseen subset.
    common_ligands : bool
        Evaluate every method on the ligands where all score columns are finite, so that a
        method that fails on hard ligands is not compared on an easier subset.
    n, seed : int
        Bootstrap replicates and seed.

    Returns
    -------
    dict
        ``n_ligands``, ``n_series``, ``n_groups``, ``methods`` (method -> subset -> metric ->
        mean and intervals), ``differences`` (``"A - B"`` -> subset -> metric ->
        :func:`paired_bootstrap`), ``per_series`` (subset -> ``columns`` and ``rows``: series, target, group and each
        method's n, τ, ρ; for pairing later methods with these on the same series) and the settings.
    """
    columns = list(dict.fromkeys(score_columns))
    baselines = [b for b in (DEFAULT_BASELINES if baselines is None else baselines) if b in df.columns]
    columns += [b for b in baselines if b not in columns]
    data = df
    if common_ligands:
        data = df[np.isfinite(df[columns].to_numpy(dtype=np.float64)).all(axis=1)]
    subsets = {"all": data}
    if unseen_column in data:
        subsets["unseen"] = data[data[unseen_column].astype(bool)]
    tables = {m: {s: per_series_correlations(part, m) for s, part in subsets.items()} for m in columns}
    evaluated = tables[columns[0]]["all"]
    summary: dict = dict(
        n_ligands=int(len(data)),
        n_ligands_unseen=int(len(subsets["unseen"])) if "unseen" in subsets else None,
        n_series=int(len(evaluated)),
        n_groups=int(evaluated.group.nunique()),
        min_ligands=MIN_LIGANDS,
        unseen_threshold=UNSEEN_THRESHOLD,
        n_bootstrap=n,
        seed=seed,
        convention="lower score = tighter binding predicted; τ > 0 = ranks like exp ΔG",
        quote="group",  # the protein-group-resampled interval is the one the README quotes
        baselines=baselines,
        methods={},
        differences={},
        per_series={},
    )
    for m in columns:
        summary["methods"][m] = {
            s: {metric: _mean_with_intervals(t, metric, n, seed) for metric in ("tau", "rho")}
            for s, t in tables[m].items()
        }
    for s in subsets:
        summary["per_series"][s] = _per_series_table({m: tables[m][s] for m in columns})
    for m in columns:
        for b in baselines:
            # Baseline against baseline once: "B - A" is "A - B" with the sign turned.
            if b == m or f"{b} - {m}" in summary["differences"]:
                continue
            summary["differences"][f"{m} - {b}"] = {
                s: {metric: paired_bootstrap(tables[m][s], tables[b][s], metric, n, seed) for metric in ("tau", "rho")}
                for s in subsets
            }
    return summary


def _fmt(mean: float, ci: Sequence[float] | None) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    return f"{mean:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else f"{mean:+.3f}"


def to_markdown(summary: dict, labels: Mapping[str, str] | None = None) -> str:
    """Markdown tables of a :func:`summarize` result: methods, then differences to each baseline.

    Intervals are the 95 % protein-group bootstrap (the honest one); the series-resampled
    interval of each difference is given beside it for comparison.
    """
    labels = labels or {}
    subsets = [s for s in ("all", "unseen") if s in next(iter(summary["methods"].values()))]
    header = "| method |" + "".join(f" {s}: series | {s}: mean τ [95% CI] | {s}: mean ρ [95% CI] |" for s in subsets)
    lines = [
        f"{summary['n_series']} series on {summary['n_groups']} protein groups, {summary['n_ligands']} ligands "
        f"(series with ≥ {summary['min_ligands']} ligands; unseen = no training analogue at Tanimoto ≥ "
        f"{summary['unseen_threshold']}"
        + (f"; {summary['n_ligands_unseen']} ligands unseen" if summary.get("n_ligands_unseen") is not None else "")
        + "). Intervals: 95 % bootstrap over protein groups.",
        "",
        header,
        "|---|" + "---|---|---|" * len(subsets),
    ]
    for method, result in summary["methods"].items():
        cells = []
        for s in subsets:
            tau, rho = result[s]["tau"], result[s]["rho"]
            cells += [
                f"{tau['n_series']} ({tau['n_groups']} groups)",
                _fmt(tau["mean"], tau.get("ci_group")),
                _fmt(rho["mean"], rho.get("ci_group")),
            ]
        lines.append(f"| {labels.get(method, method)} | " + " | ".join(cells) + " |")
    if summary["differences"]:
        lines += [
            "",
            "| difference | subset | series | Δτ [95% CI, groups] | Δτ [95% CI, series] | Δρ [95% CI, groups] |",
            "|---|---|---|---|---|---|",
        ]
        for name, result in summary["differences"].items():
            for s in subsets:
                tau, rho = result[s]["tau"], result[s]["rho"]
                if not tau["n_series"]:
                    continue
                lines.append(
                    f"| {name} | {s} | {tau['n_series']} | {_fmt(tau['diff'], tau['group']['diff'])} | "
                    f"{_fmt(tau['diff'], tau['series']['diff'])} | {_fmt(rho['diff'], rho['group']['diff'])} |"
                )
    return "\n".join(lines)


# --------------------------------------------------------------------------- DUD-E side


def early_enrichment(
    labels: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray, fraction: float = 0.01, min_top: int = 5
) -> dict | str:
    """EF at ``fraction`` and BEDROC, only when the top ``fraction`` holds at least ``min_top`` compounds.

    With fewer compounds in the top 1 % (``ceil(0.01 N) < 5``, i.e. N ≤ 400) EF1% moves in
    steps of 20 % of its range per compound and is not worth reporting; nor is BEDROC(80.5),
    whose weight sits in the same few top ranks.

    Parameters
    ----------
    labels, scores : array-like
        1 = active; higher score = more likely active (``pipeline.scoring.metrics`` convention).
    fraction : float
        Early-recognition fraction (0.01 for EF1%).
    min_top : int
        Fewest compounds the top fraction must hold.

    Returns
    -------
    dict or str
        ``{"ef": ..., "bedroc": ..., "n_top": ...}``, or a sentence saying why not.
    """
    n_total = len(labels)
    n_top = math.ceil(fraction * n_total - 1e-9)
    if n_top < min_top:
        return (
            f"not reported: the top {fraction:.0%} of {n_total} compounds is {n_top} compound(s), "
            f"fewer than {min_top} (needs N > {math.ceil((min_top - 1) / fraction)})"
        )
    return dict(ef=enrichment_factor(labels, scores, fraction), bedroc=bedroc(labels, scores), n_top=n_top)


def _stratified_draws(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap index sets that resample actives and inactives separately (both classes always present)."""
    pos, neg = np.flatnonzero(labels > 0.5), np.flatnonzero(labels <= 0.5)
    return np.concatenate(
        [pos[rng.integers(0, len(pos), size=(n, len(pos)))], neg[rng.integers(0, len(neg), size=(n, len(neg)))]],
        axis=1,
    )


def loto_auroc(
    table: pd.DataFrame,
    score_columns: Sequence[str],
    pairs: Sequence[tuple[str, str]] | None = None,
    target_column: str = "target",
    label_column: str = "active",
    n: int = N_BOOTSTRAP,
    seed: int = SEED,
) -> dict:
    """Per-target AUROC (and EF1%/BEDROC where allowed) with paired bootstrap intervals of differences.

    For leave-one-target-out evaluation the caller scores each target's compounds with a model
    that never saw that target; this function only evaluates. Scores follow
    ``pipeline.scoring.metrics``: **higher = more likely active** (negate Vina).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per (target, compound): ``target_column``, ``label_column`` (1 = active) and
        the score columns.
    score_columns : sequence of str
        Methods.
    pairs : sequence of (str, str), optional
        Differences A − B to bootstrap; default every method against the first column.
    n, seed : int
        Replicates (compounds resampled within each target, actives and decoys separately, the
        same draw for both methods of a pair) and seed.

    Returns
    -------
    dict
        ``per_target``: rows with n, actives, the AUROC of each column and ``early`` (dict of
        EF1%/BEDROC per column, or the reason they are not reported); ``mean_auroc``: per column;
        ``differences``: ``"A - B"`` -> per-target and mean-over-targets difference with
        95 % intervals (the mean's replicate averages the per-target replicates).
    """
    columns = list(score_columns)
    pairs = list(pairs) if pairs is not None else [(c, columns[0]) for c in columns[1:]]
    rng = np.random.default_rng(seed)
    per_target, replicate_diffs = [], {f"{a} - {b}": [] for a, b in pairs}
    differences: dict = {name: dict(per_target={}) for name in replicate_diffs}
    for target, part in table.groupby(target_column, sort=True):
        labels = part[label_column].to_numpy(dtype=np.float64)
        scores = {c: part[c].to_numpy(dtype=np.float64) for c in columns}
        row = dict(target=target, n=int(len(part)), actives=int((labels > 0.5).sum()))
        row |= {c: auroc(labels, scores[c]) for c in columns}
        early = {c: early_enrichment(labels, scores[c]) for c in columns}
        row["early"] = early if all(isinstance(v, dict) for v in early.values()) else next(iter(early.values()))
        per_target.append(row)
        if row["actives"] == 0 or row["actives"] == row["n"]:
            continue
        draws = _stratified_draws(labels, n, rng)
        for a, b in pairs:
            name = f"{a} - {b}"
            reps = np.array([auroc(labels[d], scores[a][d]) - auroc(labels[d], scores[b][d]) for d in draws])
            replicate_diffs[name].append(reps)
            differences[name]["per_target"][str(target)] = dict(diff=row[a] - row[b], ci=_interval(reps))
    for name, reps in replicate_diffs.items():
        if reps:
            mean_reps = np.mean(reps, axis=0)
            point = np.mean([v["diff"] for v in differences[name]["per_target"].values()])
            differences[name]["mean"] = dict(diff=float(point), ci=_interval(mean_reps))
    mean_auroc = {c: float(np.nanmean([r[c] for r in per_target])) for c in columns}
    return dict(per_target=per_target, mean_auroc=mean_auroc, differences=differences, n_bootstrap=n, seed=seed)


# --------------------------------------------------------------------------- the baseline run


def run_baselines(root: Path = UNIFEP, k: int = N_FOLDS, seed: int = SEED, n: int = N_BOOTSTRAP) -> dict:
    """Protein-grouped k-fold CV of the pose-free baselines on all of ``unifep``; the JSON document."""
    started = time.time()
    df = load_unifep(root)
    folds = protein_folds(df, k=k, seed=seed)
    df["fold"] = folds
    df["unseen"] = cv_unseen(df, folds)
    df["heavy_atom_count"] = heavy_atom_score(df)
    df["fep"] = fep_score(df)
    df["ligand_only"] = cross_validated(df, folds, ligand_only_ridge)
    methods = list(BASELINES)
    summary = summarize(df, methods, baselines=methods, n=n, seed=seed)
    groups = dict(zip(df.target, df.group))
    series_per_target = df.drop_duplicates("series").target.value_counts().to_dict()
    fold_table = df.groupby("fold").agg(
        ligands=("series", "size"), series=("series", "nunique"), groups=("group", "nunique")
    )
    summary.update(
        benchmark="affinity_baselines",
        description="protein-grouped 5-fold CV of pose-free affinity baselines on Uni-FEP series (per-series Kendall τ / Spearman ρ vs exp ΔG)",
        command="python benchmarks/affinity_eval.py --baselines",
        method_descriptions=BASELINES,
        n_targets=int(df.target.nunique()),
        n_groups_all=int(df.group.nunique()),
        n_series_all=int(df.series.nunique()),
        skipped_ligands=df.attrs.get("skipped", []),
        folds=dict(k=k, seed=seed, sizes=fold_table.reset_index().to_dict("records")),
        fold_of_series=df.drop_duplicates("series").set_index("series").fold.astype(int).to_dict(),
        unseen_fraction=float(df.unseen.mean()),
        groups=groups,
        group_table=group_table(groups, series_per_target),
        host=platform.node(),
        seconds=round(time.time() - started, 1),
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baselines", action="store_true", help="run the pose-free baselines and write the JSON")
    parser.add_argument("--data", type=Path, default=UNIFEP, help="the unifep folder (default: shared data)")
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--bootstrap", type=int, default=N_BOOTSTRAP)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    if not args.baselines:
        parser.print_help()
        return 1
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    RDLogger.DisableLog("rdApp.*")
    summary = run_baselines(args.data, seed=args.seed, n=args.bootstrap)
    summary["data"] = "shared/data/unifep" if args.data == UNIFEP else str(args.data)
    text = to_markdown(summary, labels={m: f"{m} ({d.split(',')[0].split(' (')[0]})" for m, d in BASELINES.items()})
    print(text)
    print()
    print(summary["group_table"])
    summary["markdown"] = text
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1, ensure_ascii=False, default=float) + "\n")
    print(f"\nwrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
