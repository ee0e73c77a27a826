"""Protonation states at pH 7.4: dimorphite-dl against molscrub on a literature-curated set.

The set is ``resources/protonation/states_ph74.csv`` (see the README next to it): drug-like
molecules as a user gives them (neutral), each with the microstate that dominates at pH 7.4
according to its literature pKa. Rows marked ``scored = no`` have a pKa within about 0.5 of
7.4 (two states of similar population); they are run and written out but not scored.

Every molecule goes through the pipeline's :func:`pipeline.ligands.standardize` first, then
through each tool:

* ``dimorphite``: :func:`pipeline.ligands.protonate` with ``tool="dimorphite"``, exactly what
  ligand preparation did before ``ligands.protonation`` existed (dimorphite-dl, one variant,
  precision 0);
* ``molscrub-stock``: molscrub's own :class:`molscrub.Scrub` with its defaults at pH 7.4 (its
  acid/base rules, then its tautomer rules; no 3D); where it returns several states the least
  charged one is taken, as the pipeline does;
* ``molscrub-stock-notaut``: the same with ``skip_tautomers=True``;
* ``molscrub``: :func:`pipeline.ligands.protonate` with ``tool="molscrub"``, what ligand
  preparation does now (molscrub's acid/base rules followed by vscreen's,
  ``pipeline/data/pka_reactions_vscreen.txt``; no tautomer enumeration).

A prediction is **correct** when it is the expected molecule: same canonical RDKit SMILES
without hydrogens (charges and tautomer included), the resonance form aside (a tetrazolide or
an amidinium written with the charge on another atom is the same state; see :func:`state_key`).
**Charge state** agreement only asks for the same net charge, the same numbers of positive and
negative atoms and the same hydrogen count (:func:`charge_key`): a proton on the wrong one of
two basic sites, or another tautomer, still agrees on charge state.

Prints a table (share correct per tool, per group of the set and overall, and charge-state
agreement overall) and the failures of each tool; writes ``benchmarks/results/protonation.json``
with the outcome of every molecule. Takes a few seconds.

Run: ``python benchmarks/protonation.py [--set resources/protonation/states_ph74.csv] [--out ...]``
The second set (blind for vscreen's first rules, used for the second round): ``--set resources/protonation/states_ph74_holdout.csv
--out benchmarks/results/protonation_holdout.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import platform
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from rdkit import Chem, rdBase

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.ligands import parse_smiles, protonate, standardize  # noqa: E402

SET = REPO / "resources" / "protonation" / "states_ph74.csv"
OUT = HERE / "results" / "protonation.json"
PH = 7.4
COLUMNS = ["name", "input_smiles", "expected_smiles", "group", "pka_note", "source", "scored"]
#: Resonance structures looked at per molecule by :func:`state_key`.
MAX_RESONANCE = 256


def load_set(path: str | Path = SET) -> list[dict]:
    """Read the protonation test set.

    Parameters
    ----------
    path
        CSV with the columns of :data:`COLUMNS`.

    Returns
    -------
    list of dict
        One dict per molecule, ``scored`` as a bool.
    """
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or list(rows[0]) != COLUMNS:
        raise ValueError(f"{path}: expected the columns {COLUMNS}")
    for row in rows:
        if row["scored"] not in ("yes", "no"):
            raise ValueError(f"{path}: {row['name']}: scored must be yes or no, got {row['scored']!r}")
        row["scored"] = row["scored"] == "yes"
    return rows


def _canonical(mol: Chem.Mol) -> str | None:
    """Canonical SMILES without hydrogens, re-read so aromaticity is perceived the same way."""
    smiles = Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))
    again = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(again) if again is not None else None


def state_key(mol: Chem.Mol) -> str:
    """A key equal for two molecules in the same protonation state and tautomer.

    The smallest canonical SMILES (no hydrogens) over the molecule's resonance structures
    (RDKit's :class:`~rdkit.Chem.rdchem.ResonanceMolSupplier`): the same tetrazolide,
    carboxylate, amidinium or sulfonamide anion written with its charge on another atom gets
    the same key, while a proton on another atom (another tautomer or site) does not.

    Parameters
    ----------
    mol
        A sanitized molecule.

    Returns
    -------
    str
        The key.
    """
    best = _canonical(mol) or Chem.MolToSmiles(mol)
    if not any(atom.GetFormalCharge() for atom in mol.GetAtoms()):
        return best  # neutral: the resonance structures are Kekule forms of one aromatic SMILES
    supplier = Chem.ResonanceMolSupplier(Chem.RemoveHs(mol), 0, MAX_RESONANCE)
    for index in range(len(supplier)):
        form = supplier[index]
        smiles = _canonical(form) if form is not None else None
        if smiles is not None and smiles < best:
            best = smiles
    return best


def charge_key(mol: Chem.Mol) -> tuple[int, int, int, int]:
    """Net formal charge, positive atoms, negative atoms and hydrogens: the charge state only.

    Parameters
    ----------
    mol
        A sanitized molecule.

    Returns
    -------
    tuple of int
        ``(net charge, atoms with a positive charge, atoms with a negative charge, hydrogens)``.
    """
    charges = [atom.GetFormalCharge() for atom in mol.GetAtoms()]
    hydrogens = sum(atom.GetTotalNumHs() for atom in mol.GetAtoms())
    hydrogens += sum(1 for atom in mol.GetAtoms() if atom.GetAtomicNum() == 1)
    return sum(charges), sum(c > 0 for c in charges), sum(c < 0 for c in charges), hydrogens


def _least_charged(states: list[Chem.Mol]) -> Chem.Mol:
    """The pipeline's choice among several states: smallest absolute net charge, fewest charged atoms, SMILES."""

    def order(state: Chem.Mol) -> tuple[int, int, str]:
        charged = sum(1 for atom in state.GetAtoms() if atom.GetFormalCharge())
        return abs(Chem.GetFormalCharge(state)), charged, Chem.MolToSmiles(state)

    return min(states, key=order)


def _scrub_tool(skip_tautomers: bool) -> Callable[[Chem.Mol], tuple[Chem.Mol, int]]:
    """molscrub's :class:`Scrub` as shipped (acid/base rules only: ``pka_model="rules"``, nothing downloaded)."""
    from molscrub import Scrub

    scrub = Scrub(ph_low=PH, ph_high=PH, skip_gen3d=True, skip_tautomers=skip_tautomers, pka_model="rules")

    def run(mol: Chem.Mol) -> tuple[Chem.Mol, int]:
        with contextlib.redirect_stdout(io.StringIO()):  # Scrub prints notes on fragments and failed rules
            states = scrub(Chem.Mol(mol))
        return _least_charged(states), len(states)

    return run


def tools() -> dict[str, Callable[[Chem.Mol], tuple[Chem.Mol, int]]]:
    """The compared tools: name -> function from a standardized molecule to ``(state, states returned)``.

    Returns
    -------
    dict
        ``dimorphite``, ``molscrub-stock``, ``molscrub-stock-notaut`` and ``molscrub``, in
        that order (see the module docstring).
    """
    return {
        "dimorphite": lambda mol: (protonate(mol, PH, "dimorphite"), 1),
        "molscrub-stock": _scrub_tool(skip_tautomers=False),
        "molscrub-stock-notaut": _scrub_tool(skip_tautomers=True),
        "molscrub": lambda mol: (protonate(mol, PH, "molscrub"), 1),
    }


def evaluate(rows: list[dict]) -> tuple[list[dict], dict[str, float]]:
    """Run every tool on every molecule of the set.

    Parameters
    ----------
    rows
        Output of :func:`load_set`.

    Returns
    -------
    outcomes : list of dict
        Per molecule: name, group, scored, input, expected and per tool its SMILES, whether it
        is correct, whether the charge state agrees and how many states the tool returned.
    seconds : dict
        Wall-clock seconds per tool over the whole set.
    """
    compared = tools()
    seconds = dict.fromkeys(compared, 0.0)
    outcomes = []
    for row in rows:
        expected = parse_smiles(row["expected_smiles"])
        mol = standardize(parse_smiles(row["input_smiles"]))
        outcome = {k: row[k] for k in ("name", "group", "scored", "input_smiles", "expected_smiles", "pka_note")}
        outcome["tools"] = {}
        for name, tool in compared.items():
            start = time.perf_counter()
            state, n_states = tool(mol)
            seconds[name] += time.perf_counter() - start
            outcome["tools"][name] = dict(
                smiles=Chem.MolToSmiles(state),
                correct=state_key(state) == state_key(expected),
                charge_state=charge_key(state) == charge_key(expected),
                states=n_states,
            )
        outcomes.append(outcome)
    return outcomes, seconds


def group_of(group: str) -> str:
    """The table row of a set group: qualifiers (``(...)``) and second groups (``+ ...``) dropped."""
    return group.split(" (")[0].split(" + ")[0].strip()


def summarize(outcomes: list[dict]) -> dict:
    """Share correct per tool, per group (:func:`group_of`) and overall, on the scored molecules.

    Parameters
    ----------
    outcomes
        First output of :func:`evaluate`.

    Returns
    -------
    dict
        ``groups``: group -> {``n``, tool -> share correct}; ``overall``: {``n``, tool ->
        {``correct``, ``charge_state`` (shares), ``failures`` (names)}}.
    """
    scored = [o for o in outcomes if o["scored"]]
    names = list(scored[0]["tools"]) if scored else []
    groups: dict[str, dict] = {}
    for group in sorted({group_of(o["group"]) for o in scored}):
        members = [o for o in scored if group_of(o["group"]) == group]
        groups[group] = {"n": len(members)}
        for tool in names:
            groups[group][tool] = sum(o["tools"][tool]["correct"] for o in members) / len(members)
    overall: dict = {"n": len(scored)}
    for tool in names:
        overall[tool] = dict(
            correct=sum(o["tools"][tool]["correct"] for o in scored) / max(len(scored), 1),
            charge_state=sum(o["tools"][tool]["charge_state"] for o in scored) / max(len(scored), 1),
            failures=[o["name"] for o in scored if not o["tools"][tool]["correct"]],
        )
    return dict(groups=groups, overall=overall)


def format_table(summary: dict) -> str:
    """The summary as a fixed-width text table (percent correct), failures listed under it."""
    tools_ = [k for k in summary["overall"] if k != "n"]
    width = max([len(g) for g in summary["groups"]] + [len("charge state only")])
    lines = [f"{'group':<{width}} {'n':>3} " + " ".join(f"{t:>21}" for t in tools_)]
    for group, row in summary["groups"].items():
        lines.append(f"{group:<{width}} {row['n']:>3} " + " ".join(f"{100 * row[t]:>20.0f}%" for t in tools_))
    overall = summary["overall"]
    lines.append(
        f"{'overall':<{width}} {overall['n']:>3} " + " ".join(f"{100 * overall[t]['correct']:>20.1f}%" for t in tools_)
    )
    lines.append(
        f"{'charge state only':<{width}} {overall['n']:>3} "
        + " ".join(f"{100 * overall[t]['charge_state']:>20.1f}%" for t in tools_)
    )
    lines.append("")
    for tool in tools_:
        failures = overall[tool]["failures"]
        lines.append(f"{tool} wrong ({len(failures)}): {', '.join(failures) or '-'}")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    """Versions of Python, RDKit, dimorphite-dl and molscrub."""
    from importlib.metadata import version

    return {
        "python": platform.python_version(),
        "rdkit": rdBase.rdkitVersion,
        "dimorphite-dl": version("dimorphite-dl"),
        "molscrub": version("molscrub"),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the comparison, print the table, write the JSON; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default=str(SET), help="the test set CSV")
    parser.add_argument("--out", default=str(OUT), help="JSON with the outcome of every molecule")
    args = parser.parse_args(argv)
    path = Path(args.set).resolve()
    rows = load_set(path)
    outcomes, seconds = evaluate(rows)
    summary = summarize(outcomes)
    print(format_table(summary))
    print("seconds: " + ", ".join(f"{t} {s:.2f}" for t, s in seconds.items()))
    result = dict(
        benchmark="protonation",
        date=date.today().isoformat(),
        ph=PH,
        set=str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
        molecules=len(outcomes),
        scored=summary["overall"]["n"],
        versions=versions(),
        seconds=seconds,
        summary=summary,
        molecules_detail=outcomes,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
