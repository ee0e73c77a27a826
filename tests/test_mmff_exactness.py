"""The OpenMM translation of MMFF94 reproduces RDKit's energy and gradient.

Each molecule is embedded with ETKDG (fixed seed), hydrogens included, and then
every coordinate is displaced by up to 0.1 A (seeded) so that no term sits at its
minimum. RDKit's MMFF force field (``MMFFGetMoleculeForceField``) is the
reference; OpenMM runs on the Reference platform (double precision).
"""

from __future__ import annotations

import functools

import numpy as np
import openmm
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdForceFieldHelpers

from pipeline.forcefields.mmff import (
    TERM_NAMES,
    MMFFParameterizationError,
    mmff_ligand_forces,
    mmff_ligand_system,
)

KJ_PER_KCAL = 4.184
FORCE_TO_KCAL_A = 1.0 / (KJ_PER_KCAL * 10.0)  # kJ/mol/nm -> kcal/mol/A
E_TOL = 0.01  # kcal/mol
F_TOL = 0.01  # kcal/mol/A

MOLECULES = {
    # charged species
    "acetate": "CC(=O)[O-]",
    "lysine_zwitterion": "NCCCC[C@@H](C(=O)[O-])[NH3+]",
    "methylguanidinium": "CCCNC(=[NH2+])N",
    "benzamidinium": "NC(=[NH2+])c1ccccc1",
    "choline": "C[N+](C)(C)CCO",
    "imidazolium": "Cc1c[nH]c[nH+]1",
    "methylsulfonate": "CS(=O)(=O)[O-]",
    "methylphosphate_dianion": "COP(=O)([O-])[O-]",
    "phenolate": "[O-]c1ccccc1",
    "sodium_acetate": "CC(=O)[O-].[Na+]",
    # aromatic heterocycles
    "pyridine": "Cc1ccncc1",
    "imidazole": "c1c[nH]cn1",
    "tryptamine": "NCCc1c[nH]c2ccccc12",
    "thiophene": "Cc1cccs1",
    "furfuryl_alcohol": "OCc1ccco1",
    "aminopyrimidine": "Nc1ncccn1",
    "methyl_124_triazole": "Cn1cncn1",
    "methyl_123_triazole": "Cn1ccnn1",
    "tetrazole": "c1nnn[nH]1",
    "pyridine_n_oxide": "[O-][n+]1ccccc1",
    "caffeine": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    # functional groups
    "n_methylacetamide": "CC(=O)NC",
    "tosylamide": "Cc1ccc(cc1)S(=O)(=O)N",
    "halobenzene": "FC(F)(F)c1ccc(Cl)cc1Br",
    "iodobenzene": "Ic1ccccc1",
    "nitrotoluene": "Cc1ccc(cc1)[N+](=O)[O-]",
    "methyl_phenyl_sulfone": "CS(=O)(=O)c1ccccc1",
    "dimethyl_sulfoxide": "CS(C)=O",
    "trimethyl_phosphate": "COP(=O)(OC)OC",
    "ethyl_benzoate": "CCOC(=O)c1ccccc1",
    "methyl_carbamate": "CNC(=O)OC",
    "benzonitrile": "N#Cc1ccccc1",
    "pentynol": "CC#CC(O)C",
    "phenylacetylene": "C#Cc1ccccc1",
    "methyl_azide": "CN=[N+]=[N-]",
    "methyl_isocyanide": "C[N+]#[C-]",
    "allene": "C=C=CC",
    "thioacetamide": "CC(=S)N",
    "trimethylsilanol": "C[Si](C)(C)O",
    # small and fused rings
    "cyclopropylamine": "NC1CC1",
    "cyclobutanecarboxamide": "C1CC(C1)C(=O)N",
    "norbornane": "C1CC2CCC1C2",
    # drug-like molecules
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "ibuprofen": "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "celecoxib": "Cc1ccc(cc1)-c1cc(nn1-c1ccc(cc1)S(N)(=O)=O)C(F)(F)F",
    "diazepam": "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",
    "ciprofloxacin_zwitterion": "OC(=O)c1cn(C2CC2)c2cc(N3CC[NH2+]CC3)c(F)cc2c1=O",
    "imatinib": "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1",
    # macrocycles
    "cyclo_GAGAGA": "C[C@H]1NC(=O)CNC(=O)[C@H](C)NC(=O)CNC(=O)[C@H](C)NC(=O)CNC1=O",
    "oxacyclopentadecanone": "O=C1CCCCCCCCCCCCO1",
}

RDKIT_TERM_SETTERS = (
    "SetMMFFBondTerm",
    "SetMMFFAngleTerm",
    "SetMMFFStretchBendTerm",
    "SetMMFFOopTerm",
    "SetMMFFTorsionTerm",
    "SetMMFFVdWTerm",
    "SetMMFFEleTerm",
)


@functools.cache
def _perturbed(name: str) -> Chem.Mol:
    """ETKDG conformer (seed 42) of MOLECULES[name] with Hs, then a seeded 0.1 A jiggle."""
    mol = Chem.AddHs(Chem.MolFromSmiles(MOLECULES[name]))
    mol.SetProp("_Name", name)
    params = AllChem.ETKDGv3()
    params.randomSeed = 42
    assert AllChem.EmbedMolecule(mol, params) == 0, name
    rng = np.random.default_rng(sum(map(ord, name)))
    conf = mol.GetConformer()
    xyz = conf.GetPositions() + rng.uniform(-0.1, 0.1, size=(mol.GetNumAtoms(), 3))
    for i, p in enumerate(xyz):
        conf.SetAtomPosition(i, p.tolist())
    return mol


def perturbed(name: str) -> Chem.Mol:
    return Chem.Mol(_perturbed(name))


@functools.cache
def _ligand_context(name: str) -> openmm.Context:
    """Reference-platform context of the isolated ligand (shared by the tests below)."""
    mol = _perturbed(name)
    return openmm_context(mmff_ligand_system(mol), mol)


def rdkit_energy_grad(
    mol, *, variant="MMFF94", only_term=None, nonbonded_thresh=100.0, dielectric_constant=1.0, distance_dielectric=False
):
    """RDKit MMFF energy (kcal/mol) and gradient (kcal/mol/A), optionally a single term."""
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant=variant)
    assert props is not None
    props.SetMMFFDielectricConstant(dielectric_constant)
    props.SetMMFFDielectricModel(2 if distance_dielectric else 1)
    if only_term is not None:
        for k, setter in enumerate(RDKIT_TERM_SETTERS):
            getattr(props, setter)(k == only_term)
    ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(
        mol, props, nonBondedThresh=nonbonded_thresh, ignoreInterfragInteractions=False
    )
    return ff.CalcEnergy(), np.array(ff.CalcGrad()).reshape(-1, 3)


def openmm_context(system: openmm.System, mol: Chem.Mol, first: int = 0) -> openmm.Context:
    platform = openmm.Platform.getPlatformByName("Reference")
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
    xyz_nm = mol.GetConformer().GetPositions() * 0.1
    positions = np.zeros((system.getNumParticles(), 3))
    positions[first : first + len(xyz_nm)] = xyz_nm
    if first:  # dummy particles far away from the ligand
        positions[:first] = 50.0 + np.arange(first)[:, None]
    context.setPositions(positions)
    return context


def openmm_energy_forces(context: openmm.Context, groups=None):
    """Energy (kcal/mol) and forces (kcal/mol/A) of the given force groups."""
    kwargs = {} if groups is None else {"groups": set(groups)}
    state = context.getState(getEnergy=True, getForces=True, **kwargs)
    energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole) / KJ_PER_KCAL
    forces = (
        state.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer)
        * FORCE_TO_KCAL_A
    )
    return energy, forces


def assert_matches(mol, energy_forces, rdkit_kwargs=None, first=0, label=""):
    e_omm, f_omm = energy_forces
    e_rd, g_rd = rdkit_energy_grad(mol, **(rdkit_kwargs or {}))
    f_omm = f_omm[first : first + mol.GetNumAtoms()]
    assert abs(e_omm - e_rd) < E_TOL, f"{label}: E_openmm={e_omm:.6f} E_rdkit={e_rd:.6f}"
    dev = np.abs(f_omm - (-g_rd)).max()
    assert dev < F_TOL, f"{label}: max force deviation {dev:.3g} kcal/mol/A"


# ---------------------------------------------------------------------------
# exactness
# ---------------------------------------------------------------------------
def test_enough_varied_molecules():
    assert len(MOLECULES) >= 30


@pytest.mark.parametrize("name", sorted(MOLECULES))
def test_total_energy_and_forces_match_rdkit(name):
    mol = perturbed(name)
    context = _ligand_context(name)
    assert_matches(mol, openmm_energy_forces(context), label=name)


@pytest.mark.parametrize("name", sorted(MOLECULES))
def test_every_term_matches_rdkit(name):
    """Per-term comparison (RDKit terms switched on one at a time, OpenMM force groups)."""
    mol = perturbed(name)
    context = _ligand_context(name)
    for group, term in enumerate(TERM_NAMES):
        assert_matches(
            mol, openmm_energy_forces(context, [group]), rdkit_kwargs={"only_term": group}, label=f"{name}/{term}"
        )


def test_all_terms_are_exercised():
    """The set really contains non-zero energy in every term, incl. linear angles."""
    totals = np.zeros(len(TERM_NAMES))
    for name in ("imatinib", "pentynol", "methyl_azide", "methyl_isocyanide", "nitrotoluene"):
        context = _ligand_context(name)
        for group in range(len(TERM_NAMES)):
            totals[group] += abs(openmm_energy_forces(context, [group])[0])
    assert np.all(totals > 1e-3), dict(zip(TERM_NAMES, totals))


@pytest.mark.parametrize("name", ["imatinib", "celecoxib", "n_methylacetamide", "cyclo_GAGAGA"])
def test_mmff94s_variant_matches_rdkit(name):
    mol = perturbed(name)
    context = openmm_context(mmff_ligand_system(mol, variant="MMFF94s"), mol)
    assert_matches(mol, openmm_energy_forces(context), {"variant": "MMFF94s"}, label=name)


def test_dielectric_options_match_rdkit():
    mol = perturbed("lysine_zwitterion")
    for diel, distance in ((4.0, False), (2.0, True)):
        system = mmff_ligand_system(mol, dielectric_constant=diel, distance_dielectric=distance)
        context = openmm_context(system, mol)
        assert_matches(
            mol,
            openmm_energy_forces(context),
            {"dielectric_constant": diel, "distance_dielectric": distance},
            label=f"D={diel} distance={distance}",
        )


def test_cutoff_equals_rdkit_nonbonded_threshold():
    """A sharp intra-ligand cutoff drops the same pairs as RDKit's nonBondedThresh."""
    mol = perturbed("imatinib")
    lig = mmff_ligand_forces(mol, nonbonded_cutoff_nm=0.6)
    system = openmm.System()
    for mass in lig.masses:
        system.addParticle(float(mass))
    for force in lig.forces:
        system.addForce(force)
    context = openmm_context(system, mol)
    assert_matches(mol, openmm_energy_forces(context), {"nonbonded_thresh": 6.0}, label="cutoff")


def test_offset_places_ligand_inside_a_larger_system():
    mol = perturbed("diazepam")
    first = 5
    lig = mmff_ligand_forces(mol, offset=first)
    system = openmm.System()
    for _ in range(first):
        system.addParticle(12.0)
    for mass in lig.masses:
        system.addParticle(float(mass))
    for force in lig.forces:
        system.addForce(force)
    context = openmm_context(system, mol, first=first)
    energy, forces = openmm_energy_forces(context)
    assert np.abs(forces[:first]).max() == 0.0
    assert_matches(mol, (energy, forces), first=first, label="offset")
    pairs = lig.exclusion_pairs()
    n = mol.GetNumAtoms()
    assert len(pairs) == n * (n - 1) // 2
    assert min(min(p) for p in pairs) == first and max(max(p) for p in pairs) == first + n - 1


# ---------------------------------------------------------------------------
# per-atom data for the protein-ligand cross terms
# ---------------------------------------------------------------------------
def test_charges_masses_and_lj_derivation():
    mol = perturbed("celecoxib")
    lig = mmff_ligand_forces(mol)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(Chem.Mol(mol))
    n = mol.GetNumAtoms()
    assert lig.n_atoms == n
    assert np.allclose(lig.charges, [props.GetMMFFPartialCharge(i) for i in range(n)])
    assert abs(lig.charges.sum() - Chem.GetFormalCharge(mol)) < 1e-6
    assert np.allclose(lig.masses, [a.GetMass() for a in mol.GetAtoms()])
    r_star = np.array([props.GetMMFFVdWParams(i, i)[0] for i in range(n)])  # A
    eps = np.array([props.GetMMFFVdWParams(i, i)[1] for i in range(n)])  # kcal/mol
    # LJ minimum at R*_ii with depth eps_ii
    assert np.allclose(lig.lj_sigma_nm * 2 ** (1 / 6) * 10.0, r_star)
    assert np.allclose(lig.lj_epsilon_kj / KJ_PER_KCAL, eps)
    assert {f.getName() for f in lig.forces} == set(TERM_NAMES)
    assert len(lig.forces) == len(TERM_NAMES)


def test_input_molecule_is_not_modified():
    mol = perturbed("caffeine")
    before = [(a.GetIsAromatic(), a.GetHybridization()) for a in mol.GetAtoms()]
    bonds_before = [b.GetBondType() for b in mol.GetBonds()]
    mmff_ligand_forces(mol)
    assert before == [(a.GetIsAromatic(), a.GetHybridization()) for a in mol.GetAtoms()]
    assert bonds_before == [b.GetBondType() for b in mol.GetBonds()]


# ---------------------------------------------------------------------------
# failures
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("smiles", "element"),
    [("C[Fe]C", "Fe"), ("OB(O)c1ccccc1", "B"), ("C[Se]C", "Se"), ("[Fe]", "Fe")],
)
def test_untypable_molecule_raises_readable_error(smiles, element):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    mol.SetProp("_Name", "weird-ligand")
    with pytest.raises(MMFFParameterizationError) as excinfo:
        mmff_ligand_forces(mol)
    message = str(excinfo.value)
    assert "weird-ligand" in message
    assert f"({element}," in message
    assert "MMFF94" in message
    with pytest.raises(MMFFParameterizationError):
        mmff_ligand_system(mol)


def test_implicit_hydrogens_are_rejected():
    with pytest.raises(MMFFParameterizationError, match="hydrogen"):
        mmff_ligand_forces(Chem.MolFromSmiles("CCO"))


def test_bad_arguments():
    mol = perturbed("n_methylacetamide")
    with pytest.raises(ValueError, match="variant"):
        mmff_ligand_forces(mol, variant="MMFF95")
    with pytest.raises(ValueError, match="offset"):
        mmff_ligand_forces(mol, offset=-1)
    with pytest.raises(ValueError, match="cutoff"):
        mmff_ligand_forces(mol, nonbonded_cutoff_nm=0.0)
