"""vscreen: structure-based virtual screening.

Dock a compound library into a protein pocket, refine the best poses with short
molecular dynamics, describe each complex by its protein-ligand interactions and
rank the library. Each stage is a module of this package and a subcommand of the
``vscreen`` console script; the Snakefile chains the subcommands.
"""

__version__ = "0.1.0"
