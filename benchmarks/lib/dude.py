"""Labelled libraries from DUD-E style folders of actives and decoys.

A DUD-E target folder holds ``actives.smi`` and ``decoys.smi`` (``SMILES id`` per line,
space or tab separated). :func:`sample_library` takes every active and a seeded random
sample of decoys and returns a library table ``id, smiles, active`` (1 = active,
0 = decoy) that the screening workflow reads as it is and that training reads as a
classification assay. The same folder, seed and sample size always give the same rows.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pandas as pd

__all__ = ["read_smi", "sample_library"]


def read_smi(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(id, smiles)`` pairs of a ``SMILES id`` file (blank lines and ``#`` comments skipped)."""
    pairs = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) < 2:
                raise ValueError(f"{path}, line {number}: expected 'SMILES id', got {line.strip()!r}")
            pairs.append((fields[1], fields[0]))
    return pairs


def sample_library(
    folder: str | os.PathLike,
    decoys_per_active: float | None = None,
    n_decoys: int | None = None,
    max_actives: int | None = None,
    seed: int = 2026,
    shuffle: bool = False,
) -> pd.DataFrame:
    """All actives of a DUD-E target folder plus a seeded sample of its decoys.

    Parameters
    ----------
    folder
        Folder with ``actives.smi`` and ``decoys.smi``.
    decoys_per_active
        Decoys drawn per active (rounded); or give ``n_decoys``.
    n_decoys
        Number of decoys drawn (all of them when both are ``None``).
    max_actives
        Keep at most this many actives (a seeded sample); ``None``: all.
    seed
        Seed of :class:`random.Random` for the samples.
    shuffle
        Shuffle the rows (seeded), so that any run of consecutive chunks of the library
        is a random subsample with the sample's ratio of actives to decoys; a screen
        stopped part way is then still a fair sample.

    Returns
    -------
    pandas.DataFrame
        ``id, smiles, active``: actives first, then decoys, each in file order (unless
        ``shuffle``).
    """
    folder = Path(folder)
    for name in ("actives.smi", "decoys.smi"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} has no {name}: expected a DUD-E style folder of actives and decoys")
    actives, decoys = read_smi(folder / "actives.smi"), read_smi(folder / "decoys.smi")
    rng = random.Random(seed)
    if max_actives is not None and max_actives < len(actives):
        keep = set(rng.sample(range(len(actives)), max_actives))
        actives = [a for i, a in enumerate(actives) if i in keep]
    if n_decoys is None and decoys_per_active is not None:
        n_decoys = round(decoys_per_active * len(actives))
    if n_decoys is not None and n_decoys < len(decoys):
        keep = set(rng.sample(range(len(decoys)), n_decoys))
        decoys = [d for i, d in enumerate(decoys) if i in keep]
    rows = [(i, s, 1) for i, s in actives] + [(i, s, 0) for i, s in decoys]
    if shuffle:
        rng.shuffle(rows)
    return pd.DataFrame(rows, columns=["id", "smiles", "active"])
