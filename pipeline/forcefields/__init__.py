"""Force-field translations used by the refinement stage.

:mod:`pipeline.forcefields.mmff` turns RDKit's MMFF94/MMFF94s description of a
ligand into OpenMM forces that reproduce RDKit's energies and gradients, so a
ligand can be simulated with MMFF inside an Amber-parameterised protein.
"""
