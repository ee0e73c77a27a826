"""Train/validation/test splits of compounds: by Bemis-Murcko scaffold (default) or at random.

A scaffold split keeps every compound sharing a ring-system framework on one side,
so the test set asks whether the model generalizes to new chemotypes - the honest
question in virtual screening - rather than to close analogues of its training set.

Both splits are deterministic: the same ids, SMILES, fractions and seed give the
same split whatever order the compounds come in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rdkit import Chem
from rdkit.Chem.Scaffolds import MurckoScaffold

from ..config import schema_default

#: The run config's train.fractions and train.seed (the defaults of the split functions).
TRAIN_FRACTIONS: tuple[float, ...] = tuple(schema_default("train", "fractions"))
TRAIN_SEED: int = schema_default("train", "seed")

SPLITS = ("scaffold", "random")
PARTS = ("train", "val", "test")


def murcko_scaffold(smiles: str) -> str:
    """Canonical SMILES of the Bemis-Murcko scaffold (``""`` for an acyclic or unreadable molecule)."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return ""
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def _sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    f_train, f_val, f_test = (float(f) for f in fractions)
    if min(f_train, f_val, f_test) < 0 or not math.isclose(f_train + f_val + f_test, 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    n_val, n_test = int(round(f_val * n)), int(round(f_test * n))
    if f_val > 0 and n >= 3:
        n_val = max(n_val, 1)
    if f_test > 0 and n >= 3:
        n_test = max(n_test, 1)
    return n - n_val - n_test, n_val, n_test


def scaffold_split(
    ids: Sequence[str], smiles: Sequence[str], fractions: Sequence[float] = TRAIN_FRACTIONS, seed: int = TRAIN_SEED
) -> dict[str, list[str]]:
    """Split compounds so that no scaffold is shared between parts.

    Scaffold groups too big to fit in half of the validation or test set are placed
    first (they end up in training), the rest in a seeded random order; groups fill
    the training set up to its size, then validation, then test (chemprop's
    "balanced scaffold split"). When the test fraction is 0, leftovers go to training.

    Parameters
    ----------
    ids, smiles
        Compound ids (unique) and their SMILES.
    fractions
        Train, validation and test fractions (sum 1).
    seed
        Seed of the group order.

    Returns
    -------
    dict
        ``train``, ``val``, ``test``: sorted id lists.
    """
    n_train, n_val, n_test = _sizes(len(ids), fractions)
    groups: dict[str, list[str]] = {}
    for cid, smi in zip(ids, smiles):
        groups.setdefault(murcko_scaffold(smi), []).append(str(cid))
    ordered = [sorted(groups[key]) for key in sorted(groups)]

    def is_big(group: list[str]) -> bool:
        return len(group) > n_val / 2 or (n_test > 0 and len(group) > n_test / 2)

    big = [g for g in ordered if is_big(g)]
    small = [g for g in ordered if not is_big(g)]
    rng = np.random.default_rng(seed)
    big = [big[i] for i in rng.permutation(len(big))]
    small = [small[i] for i in rng.permutation(len(small))]
    big.sort(key=len, reverse=True)  # stable: the seeded order breaks ties between equal sizes
    parts: dict[str, list[str]] = {p: [] for p in PARTS}
    for group in big + small:
        if len(parts["train"]) + len(group) <= n_train:
            parts["train"] += group
        elif len(parts["val"]) + len(group) <= n_val:
            parts["val"] += group
        elif n_test > 0:
            parts["test"] += group
        else:
            parts["train"] += group
    return {p: sorted(v) for p, v in parts.items()}


def random_split(
    ids: Sequence[str], fractions: Sequence[float] = TRAIN_FRACTIONS, seed: int = TRAIN_SEED
) -> dict[str, list[str]]:
    """Split compounds at random (seeded; independent of input order). Returns sorted id lists per part."""
    n_train, n_val, _ = _sizes(len(ids), fractions)
    order = sorted(str(i) for i in ids)
    shuffled = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    return dict(
        train=sorted(shuffled[:n_train]),
        val=sorted(shuffled[n_train : n_train + n_val]),
        test=sorted(shuffled[n_train + n_val :]),
    )


def split_compounds(
    ids: Sequence[str],
    smiles: Sequence[str],
    method: str = "scaffold",
    fractions: Sequence[float] = TRAIN_FRACTIONS,
    seed: int = TRAIN_SEED,
) -> dict[str, list[str]]:
    """:func:`scaffold_split` or :func:`random_split` by name."""
    if len(set(ids)) != len(ids):
        raise ValueError("compound ids must be unique to split them")
    if method == "scaffold":
        return scaffold_split(ids, smiles, fractions, seed)
    if method == "random":
        return random_split(ids, fractions, seed)
    raise ValueError(f"split must be one of {list(SPLITS)}, got {method!r}")
