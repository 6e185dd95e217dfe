"""A Ge PAW dataset with a 1s core hole, and its ground-state partner, generated with ``ld1.x``.

The ``core_hole`` alignment needs each Ge site's own 1s binding energy, E(1s hole on the site) −
E(ground), from two SCF runs (ΔSCF, :mod:`aiida_xesml.workflows.core_hole`). The 1s level is in
the pseudopotential's frozen core, so the hole goes into the core: a second dataset, generated from
the all-electron atom with one 1s electron removed, stands for the excited atom.

Recipe (the same pseudization for both; only the all-electron configuration differs):

- PAW (``pseudotype=3``), PBE, scalar-relativistic, 4s and 4p in valence (the 3d shell stays in
  the core, as in the Debian ``Ge.pbe-kjpaw.UPF`` the spectra use), two projectors per channel
  (the bound state and an unbound one at 1 Ry), ``rcut``/``rcutus`` 1.5/2.0 bohr for 4s and
  1.6/2.2 bohr for 4p, local potential from the pseudized all-electron potential (``lloc=-1``,
  ``rcloc=2.1``), Bessel-pseudized augmentation (``PSQ``), non-linear core correction with a
  pseudized core inside 1.4 bohr (``new_core_ps``). ld1.x estimates 18–20 Ry for the wave functions
  and about 100 Ry for the density: the protocols' 25/150 Ry are enough.
- Ground state: ``1s2 2s2 2p6 3s2 3p6 3d10 4s2 4p2``.
- Core hole: ``1s1 2s2 2p6 3s2 3p6 3d10 4s2 4p3``. A **full** hole: the ΔSCF takes the difference
  of two total energies, each of a real state (a half hole, Slater's transition state, is the
  device for estimating that difference from one eigenvalue, which is not needed here). The atom is
  kept neutral by the extra 4p electron, so the dataset's valence charge is 5 and the 1s-ionized
  site in a solid is made by removing one electron from the cell (``tot_charge = +1``, see the work
  chain). The core (2s..3d) is relaxed around the hole in the atom and frozen in the solid; the
  valence relaxes (screens the hole) in the solid.

Checks made when the recipe was written (ld1.x of QE 6.7): the all-electron atomic ΔSCF 1s
energy E(1s1 4p3) − E(ground) is 819.10 Ry = 11144 eV (measured Ge K edge: 11103 eV; scalar-
relativistic PBE without Breit/QED terms); the pseudo-atom reproduces the all-electron 4s and 4p
eigenvalues of both configurations to 1e-5 Ry; the ground dataset's pseudo-atom total energy
(−163.7876 Ry) equals that of the Debian dataset (−163.7874 Ry).

ld1.x writes lines longer than pw.x 6.7 reads; :func:`aiida_xesml.pseudos.ld1.reflow_upf` reflows them.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from aiida_xesml.constants import CUTOFFS_RY, PSEUDO_DIR, PSEUDO_FILES
from aiida_xesml.pseudos.ld1 import install_family, run_ld1

#: ld1.x all-electron configurations: the ground state and the full 1s core hole (neutral atom).
GROUND_CONFIGURATION = "1s2 2s2 2p6 3s2 3p6 3d10 4s2 4p2"
CORE_HOLE_CONFIGURATION = "1s1 2s2 2p6 3s2 3p6 3d10 4s2 4p3"
#: The two files.
GROUND_FILENAME = "Ge.pbe-kjpaw-xesml-gs.UPF"
CORE_HOLE_FILENAME = "Ge.pbe-kjpaw-xesml-1s1.UPF"
#: aiida-pseudo families: the ground-state partner with the Debian O and Si, and the core-hole dataset alone.
GROUND_FAMILY = "xesml-pbe-paw-ge1s-ground"
CORE_HOLE_FAMILY = "xesml-pbe-paw-ge1s-hole"
#: Valence electrons the core-hole dataset has more than the ground one (the extra 4p electron).
EXTRA_VALENCE = 1

_LD1_TEMPLATE = """&input
  title='Ge', zed=32.0, rel=1, config='{configuration}', iswitch=3, dft='PBE'
/
&inputp
  lpaw=.true., pseudotype=3, file_pseudopw='{filename}', author='aiida-xesml',
  lloc=-1, rcloc=2.1, which_augfun='PSQ', rmatch_augfun_nc=.true., nlcc=.true., new_core_ps=.true., rcore=1.4,
  tm=.true.
/
4
4S  1  0  2.00  0.00  1.50  2.00
4S  1  0  0.00  1.00  1.50  2.00
4P  2  1  {p_occupation:.2f}  0.00  1.60  2.20
4P  2  1  0.00  1.00  1.60  2.20
"""


def ld1_input(core_hole: bool) -> str:
    """The ld1.x input of the ground-state (``core_hole=False``) or the 1s core-hole dataset."""
    return _LD1_TEMPLATE.format(
        configuration=CORE_HOLE_CONFIGURATION if core_hole else GROUND_CONFIGURATION,
        filename=CORE_HOLE_FILENAME if core_hole else GROUND_FILENAME,
        p_occupation=3.0 if core_hole else 2.0,
    )


def recipe_hash() -> str:
    """SHA-256 (first 16 hex digits) of both ld1.x inputs: it identifies the recipe in the families' descriptions."""
    return hashlib.sha256((ld1_input(False) + ld1_input(True)).encode()).hexdigest()[:16]


def generate_ge_core_hole_pair(folder: Path) -> tuple[Path, Path]:
    """Generate the ground-state and the 1s core-hole Ge datasets with Debian's ld1.x in ``folder``.

    :returns: (ground path, core-hole path), both reflowed for pw.x 6.7.
    :raises SetupError: no ld1.x, or ld1.x failed (its output's tail is in the message).
    """
    return (run_ld1(ld1_input(False), GROUND_FILENAME, folder), run_ld1(ld1_input(True), CORE_HOLE_FILENAME, folder))


def ensure_core_hole_families(pseudo_dir: Path = PSEUDO_DIR):
    """Install (once) the two families of the ΔSCF and return them: (ground family, core-hole family).

    The ground family holds the ground-state Ge partner and the Debian O and Si datasets; the
    core-hole family holds only the 1s core-hole Ge dataset (``family.get_pseudo('Ge')``). Both get
    the cutoffs of :data:`aiida_xesml.constants.CUTOFFS_RY` per stringency.
    """
    with tempfile.TemporaryDirectory() as scratch:
        ground_path, hole_path = generate_ge_core_hole_pair(Path(scratch))
        others = [pseudo_dir / name for element, name in PSEUDO_FILES.items() if element != "Ge"]
        recipe = f"ld1.x recipe {recipe_hash()} (aiida_xesml.pseudos.core_hole)"
        ground = install_family(GROUND_FAMILY, [ground_path, *others], CUTOFFS_RY,
                                f"aiida-xesml 1s core-hole ΔSCF, ground-state partner; {recipe}")
        hole = install_family(CORE_HOLE_FAMILY, [hole_path], CUTOFFS_RY,
                              f"aiida-xesml 1s core-hole ΔSCF, Ge 1s1 core hole; {recipe}")
    return ground, hole
