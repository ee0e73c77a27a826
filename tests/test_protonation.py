"""Protonation at pH 7.4 through the pipeline's own path, against the literature-curated set
(resources/protonation/states_ph74.csv). Acceptance: >= 95% of the scored molecules come out in
their expected state with the default tool. Takes seconds (no embedding)."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO
from rdkit import Chem
from rdkit.Chem.MolStandardize import rdMolStandardize

from pipeline.cli import _config_with_flags, build_parser
from pipeline.config import fill_defaults, load_schema
from pipeline.ligands import (
    PROTONATION_TOOLS,
    LigandSettings,
    molscrub_conjugator,
    protonate,
    protonated_molecule,
    protonation_states,
    standardize,
)

sys.path.insert(0, str(REPO / "benchmarks"))
from protonation import charge_key, load_set, state_key  # noqa: E402

SET = load_set(REPO / "resources" / "protonation" / "states_ph74.csv")
SCORED = [row for row in SET if row["scored"]]
BY_NAME = {row["name"]: row for row in SET}
SETTINGS = LigandSettings()


def _prepared(name: str, settings: LigandSettings = SETTINGS) -> Chem.Mol:
    return protonated_molecule(BY_NAME[name]["input_smiles"], settings)


def test_the_set_is_well_formed():
    """At least 60 scored molecules; each expected state is its input compound, protonated differently."""
    assert len(SCORED) >= 60
    assert len(BY_NAME) == len(SET)
    uncharger, tautomers = rdMolStandardize.Uncharger(), rdMolStandardize.TautomerEnumerator()
    for row in SET:
        assert row["source"].strip() and row["pka_note"].strip() and row["group"].strip(), row["name"]
        given = tautomers.Canonicalize(standardize(Chem.MolFromSmiles(row["input_smiles"])))
        expected = tautomers.Canonicalize(uncharger.uncharge(Chem.MolFromSmiles(row["expected_smiles"])))
        assert Chem.MolToSmiles(given) == Chem.MolToSmiles(expected), row["name"]
    groups = " ".join(row["group"] for row in SCORED)
    for group in ("phenol", "aniline", "carboxylic acid", "tetrazole", "aliphatic amine", "amidine", "guanidine",
                  "sulfonamide", "pyridine", "imidazole", "hydroxamic acid", "acylsulfonamide", "amide",
                  "morpholine", "piperazine", "quaternary", "zwitterion"):  # fmt: skip
        assert group in groups, group


def test_default_tool_meets_the_acceptance_criterion():
    """>= 95% of the scored molecules in the expected state (charges and tautomer) with the default settings."""
    assert SETTINGS.protonation == "molscrub"
    wrong = [
        f"{row['name']}: got {Chem.MolToSmiles(mol)}, expected {row['expected_smiles']}"
        for row in SCORED
        if state_key(mol := _prepared(row["name"])) != state_key(Chem.MolFromSmiles(row["expected_smiles"]))
    ]
    assert len(wrong) <= 0.05 * len(SCORED), "\n".join(wrong)


HOLDOUT = load_set(REPO / "resources" / "protonation" / "states_ph74_holdout.csv")
#: Share of the second set's scored molecules the default tool gets right (136 of 137, 99.3%;
#: benchmarks/results/protonation_holdout.json), as a floor. In-sample: the round-2 rules were written
#: on this set too. Out of sample, when it was first measured, the default got 123 of 137 (89.8%).
HOLDOUT_FLOOR = 0.99


def test_holdout_set_is_disjoint_from_the_development_set():
    """Each held-out expected state is its input compound; none is a development-set molecule (see the README)."""
    tautomers = rdMolStandardize.TautomerEnumerator()

    def parent(smiles: str) -> str:
        return Chem.MolToSmiles(tautomers.Canonicalize(standardize(Chem.MolFromSmiles(smiles))), isomericSmiles=False)

    uncharger = rdMolStandardize.Uncharger()
    assert len(HOLDOUT) >= 60 and all(row["source"].strip() and row["pka_note"].strip() for row in HOLDOUT)
    for row in HOLDOUT:  # each expected state is its input compound
        expected = tautomers.Canonicalize(uncharger.uncharge(Chem.MolFromSmiles(row["expected_smiles"])))
        assert parent(row["input_smiles"]) == Chem.MolToSmiles(expected, isomericSmiles=False), row["name"]
    assert not {parent(row["input_smiles"]) for row in HOLDOUT} & {parent(row["input_smiles"]) for row in SET}


def test_default_tool_on_the_holdout_set():
    """The default's share correct stays at or above what was measured (99.3% in-sample, floor 0.99; 89.8% blind)."""
    scored = [row for row in HOLDOUT if row["scored"]]
    correct = sum(
        state_key(protonated_molecule(row["input_smiles"], SETTINGS))
        == state_key(Chem.MolFromSmiles(row["expected_smiles"]))
        for row in scored
    )
    assert correct / len(scored) >= HOLDOUT_FLOOR, f"{correct} of {len(scored)}"


BLIND3 = load_set(REPO / "resources" / "protonation" / "states_ph74_blind3.csv")
#: Share of the round-3 blind set's scored molecules the default tool got right when first measured
#: (125 of 129, 96.9%; benchmarks/results/protonation_blind3.json), as a floor: not rounded up. The set
#: was written blind to the rules and measured once; no rule was changed after it (see the README).
BLIND3_FLOOR = 125 / 129


def test_blind3_set_is_disjoint_from_the_other_sets():
    """Each round-3 expected state is its input compound; no molecule is in the development or held-out set."""
    tautomers, uncharger = rdMolStandardize.TautomerEnumerator(), rdMolStandardize.Uncharger()

    def parent(smiles: str) -> str:
        return Chem.MolToSmiles(tautomers.Canonicalize(standardize(Chem.MolFromSmiles(smiles))), isomericSmiles=False)

    assert len(BLIND3) >= 80 and all(row["source"].strip() and row["pka_note"].strip() for row in BLIND3)
    blind = [parent(row["input_smiles"]) for row in BLIND3]
    for row, key in zip(BLIND3, blind, strict=True):
        expected = tautomers.Canonicalize(uncharger.uncharge(Chem.MolFromSmiles(row["expected_smiles"])))
        assert key == Chem.MolToSmiles(expected, isomericSmiles=False), row["name"]
    assert len(set(blind)) == len(blind)
    assert not set(blind) & {parent(row["input_smiles"]) for row in SET + HOLDOUT}


def test_default_tool_on_the_blind3_set():
    """The default's share correct stays at or above the blind measurement (125 of 129).

    Measured as the benchmark does (standardize, then protonate; no element check: the set has
    boronic acids, which ligand preparation itself rejects for Vina)."""
    scored = [row for row in BLIND3 if row["scored"]]
    correct = sum(
        state_key(protonate(standardize(Chem.MolFromSmiles(row["input_smiles"])), SETTINGS.ph, SETTINGS.protonation))
        == state_key(Chem.MolFromSmiles(row["expected_smiles"]))
        for row in scored
    )
    assert correct / len(scored) >= BLIND3_FLOOR, f"{correct} of {len(scored)}"


def test_paracetamol_keeps_its_phenol():
    """pKa 9.5: neutral at 7.4 (dimorphite-dl made it a phenolate)."""
    mol = _prepared("paracetamol")
    assert Chem.MolToSmiles(mol) == "CC(=O)Nc1ccc(O)cc1"
    assert all(atom.GetFormalCharge() == 0 for atom in mol.GetAtoms())


def test_serotonin_is_a_cation_with_a_neutral_phenol():
    """Amine pKa 10: protonated; 5-hydroxyindole pKa about 10.7: neutral."""
    mol = _prepared("serotonin")
    assert Chem.GetFormalCharge(mol) == 1
    assert mol.HasSubstructMatch(Chem.MolFromSmarts("[NX4H3+]CCc1c[nH]c2ccc([OX2H1])cc12"))


def test_ibuprofen_is_a_carboxylate():
    mol = _prepared("ibuprofen")
    assert Chem.GetFormalCharge(mol) == -1
    assert mol.HasSubstructMatch(Chem.MolFromSmarts("C(=O)[O-]"))


def test_piperazine_and_sulfonamide_anions():
    """One piperazine nitrogen protonated (imatinib: the N-methyl one); sulfamethoxazole (pKa 5.7) an anion."""
    imatinib = _prepared("imatinib")
    assert Chem.GetFormalCharge(imatinib) == 1
    assert imatinib.HasSubstructMatch(Chem.MolFromSmarts("C[NX4H1+]1CCN(Cc)CC1"))
    assert Chem.GetFormalCharge(_prepared("sulfamethoxazole")) == -1


def test_one_state_whatever_way_the_smiles_is_written():
    """The state does not depend on the atom order of the input (molscrub matches rule sites in order)."""
    written = ["CN1CCN(Cc2ccccc2)CC1", "c1ccc(CN2CCN(C)CC2)cc1", "C1CN(C)CCN1Cc1ccccc1"]
    states = {Chem.MolToSmiles(protonated_molecule(smiles, SETTINGS)) for smiles in written}
    assert states == {"C[NH+]1CCN(Cc2ccccc2)CC1"}


def test_states_of_a_ph_range_come_in_a_fixed_order():
    """Both forms of a site whose pKa is in the range; the least charged first; the single-pH state is one of them."""
    mol = standardize(Chem.MolFromSmiles("CCN(CC)CC(=O)Nc1c(C)cccc1C"))  # lidocaine, amine rule pKa 10
    states = [Chem.MolToSmiles(m) for m in protonation_states(mol, 9.0, 11.0)]
    assert states == ["CCN(CC)CC(=O)Nc1c(C)cccc1C", "CC[NH+](CC)CC(=O)Nc1c(C)cccc1C"]
    assert Chem.MolToSmiles(protonate(mol, 7.4)) == states[1]


def test_dimorphite_is_still_selectable():
    """``ligands.protonation: dimorphite`` is the previous behaviour (paracetamol a phenolate, the issue)."""
    mol = _prepared("paracetamol", LigandSettings(protonation="dimorphite"))
    assert charge_key(mol)[0] == -1


def test_protonation_key_is_plumbed_through_config_and_cli():
    assert PROTONATION_TOOLS[0] == "molscrub"
    ligands = load_schema()["properties"]["ligands"]["properties"]["protonation"]
    assert ligands["enum"] == list(PROTONATION_TOOLS)
    assert fill_defaults({}, load_schema())["ligands"]["protonation"] == "molscrub"
    args = build_parser().parse_args(["prepare-ligands", "chunk.parquet", "--out-dir", "x"])
    assert args.protonation is None  # not given: the run config's value
    assert _config_with_flags(args)["ligands"]["protonation"] == "molscrub"
    assert LigandSettings().protonation == "molscrub"
    args = build_parser().parse_args(["prepare-ligands", "c.parquet", "--out-dir", "x", "--protonation", "dimorphite"])
    assert _config_with_flags(args)["ligands"]["protonation"] == "dimorphite"
    with pytest.raises(ValueError, match="ligands.protonation"):
        LigandSettings(protonation="openbabel")


def test_molscrub_uses_rules_only():
    """No machine-learned pKa model: molscrub would download it at run time."""
    conjugator = molscrub_conjugator()
    assert conjugator.pka_model is None
    names = [rule["name"] for rule in conjugator.pka_reactions]
    assert "carboxylate" in names and "acylsulfonamide" in names  # molscrub's rules, then vscreen's
    assert len(names) == len(set(names))
