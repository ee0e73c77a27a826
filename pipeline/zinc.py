"""Zinc sites: Vina's own zinc typing, and why the AutoDock4Zn route is refused here.

Receptor preparation keeps zinc ions in the docking PDBQT, where AutoDock Vina types them
as metal donors (``Met_D``): a ligand acceptor near the zinc gets Vina's hydrogen-bond
reward, with no coordination geometry. That is the route the pipeline docks with.

AutoDock4Zn (Santos-Martins et al., J. Chem. Inf. Model. 2014, 54, 2371) is the better
zinc model: tetrahedral zinc pseudo atoms (``TZ``) placed at the free coordination site,
``nbp_r_eps`` pair potentials in the grid parameter file, AD4 maps computed by autogrid4,
docked with Vina's ``sf_name='ad4'``. It cannot be run faithfully with what this project
may install, for two independent reasons:

* meeko 0.8 does not place ``TZ`` atoms: its receptor preparation (``mk_prepare_receptor``,
  ``--write_gpf``) writes plain Zn and a GPF without the AD4Zn pair terms; the
  ``zinc_pseudo.py`` script of the Vina examples is not part of any installable package.
* the only autogrid4 obtainable is Debian's 4.2.6 (package ``autogrid``); the Vina
  documentation of the protocol warns that ``nbp_r_eps`` changed behaviour between 4.2.6
  and 4.2.7 and requires 4.2.7 (ADFR Suite), which cannot be installed here. Maps from
  4.2.6 would not be the potentials AutoDock4Zn was calibrated with.

So :func:`require_ad4zn` refuses with that explanation, and :func:`zinc_note` records
for a run that zinc in the box was scored by Vina's metal-donor typing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .box import Box
from .errors import VscreenError

AD4ZN_UNAVAILABLE = (
    "AutoDock4Zn docking is not available: it needs tetrahedral zinc pseudo atoms (TZ), which meeko 0.8 "
    "does not write, and autogrid 4.2.7 (ADFR Suite) for its nbp_r_eps pair potentials, while only "
    "Debian's autogrid 4.2.6 can be installed here (nbp_r_eps behaves differently there). Zinc is docked "
    "with Vina's own typing instead (Zn as metal donor); use scoring 'vina'."
)
#: How a zinc ion inside the box is scored on the route the pipeline docks with.
VINA_ZINC_TYPING = "Vina metal donor (Met_D); AutoDock4Zn unavailable, see pipeline.zinc"


class ZincRouteError(VscreenError, ValueError):
    """A zinc-specific docking route was asked for that this installation cannot run."""


def require_ad4zn() -> None:
    """Refuse the AutoDock4Zn route with the reason (see the module docstring).

    Raises
    ------
    ZincRouteError
        Always: the route cannot be run with meeko 0.8 and Debian's autogrid 4.2.6.
    """
    raise ZincRouteError(AD4ZN_UNAVAILABLE)


def zinc_coordinates(receptor_pdbqt: str | Path) -> np.ndarray:
    """Coordinates (N×3, Å) of the atoms typed ``Zn`` in a receptor PDBQT."""
    xyz = [
        (float(line[30:38]), float(line[38:46]), float(line[46:54]))
        for line in Path(receptor_pdbqt).read_text().splitlines()
        if line.startswith(("ATOM", "HETATM")) and line[77:79].strip().lower() == "zn"
    ]
    return np.asarray(xyz, dtype=float).reshape(-1, 3)


def zinc_note(receptor_pdbqt: str | Path, box: Box) -> dict | None:
    """What happens to zinc inside the box on the Vina route, for a run's record.

    Returns
    -------
    dict or None
        ``{"zinc_in_box": n, "typing": ...}`` when the box holds zinc ions, else None.
    """
    n = int(box.contains(zinc_coordinates(receptor_pdbqt)).sum())
    return dict(zinc_in_box=n, typing=VINA_ZINC_TYPING) if n else None
