"""The pseudopotential families of ``aiida-xesml setup``: Debian's PBE PAW datasets, and (``--semicore``) the
same with a Ge dataset that has 3d in valence, generated with ``ld1.x``.

Each family carries the recommended cutoffs per protocol stringency ('fast', 'balanced', 'stringent',
Ry) of :data:`aiida_xesml.constants.CUTOFFS_RY` or :data:`~aiida_xesml.constants.SEMICORE_CUTOFFS_RY`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from aiida_xesml.constants import (
    CUTOFFS_RY,
    PSEUDO_DIR,
    PSEUDO_FAMILY,
    PSEUDO_FILES,
    SEMICORE_CUTOFFS_RY,
    SEMICORE_FAMILY,
)
from aiida_xesml.pseudos.ld1 import existing_family, install_family, run_ld1
from aiida_xesml.setup.errors import SetupError, echo

# ld1.x input for a Ge PAW dataset with 3d in valence, from the published pslibrary 1.0.0 parameters of
# Ge.pbe-dn-kjpaw (QE-NOTES.md). Card columns: label n l occupation energy(Ry) rcut rcutus (bohr).
GE_SEMICORE_LD1_INPUT = """&input
  title='Ge', zed=32.0, rel=1, config='[Ar] 4s2 4p2 3d10', iswitch=3, dft='PBE'
/
&inputp
  lpaw=.true., pseudotype=3, file_pseudopw='Ge.pbe-dn-kjpaw.UPF', author='aiida-xesml (pslibrary 1.0.0 recipe)',
  lloc=-1, rcloc=1.9, which_augfun='PSQ', rmatch_augfun_nc=.true., nlcc=.true., new_core_ps=.true., rcore=1.2,
  tm=.true.
/
6
4S  1  0  2.00  0.00  1.30  1.70
4S  1  0  0.00  6.00  1.30  1.70
4P  2  1  2.00  0.00  1.80  1.90
4P  2  1  0.00  6.00  1.80  1.90
3D  3  2 10.00  0.00  1.30  1.70
3D  3  2  0.00  0.05  1.30  1.70
"""
GE_SEMICORE_FILENAME = "Ge.pbe-dn-kjpaw.UPF"


def ensure_pseudo_family(label: str = PSEUDO_FAMILY, pseudo_dir: Path = PSEUDO_DIR):
    """Install (once) the Debian PBE datasets of :data:`~aiida_xesml.constants.PSEUDO_FILES` from
    ``pseudo_dir`` as the family ``label``, and return it."""
    from aiida.common.exceptions import NotExistent

    family = existing_family(label)
    if family is not None:
        return family
    files = [pseudo_dir / filename for filename in PSEUDO_FILES.values()]
    absent = [str(path) for path in files if not path.is_file()]
    if absent:
        raise SetupError(f"pseudopotential files not found: {', '.join(absent)}; install quantum-espresso-data.")
    try:
        family = install_family(label, files, CUTOFFS_RY, f"Debian PBE PAW datasets from {pseudo_dir}")
    except (ValueError, NotExistent) as exc:
        raise SetupError(f"could not install the pseudopotential family `{label}`: {exc}") from exc
    echo(f"installed pseudopotential family `{label}` from {pseudo_dir} ({', '.join(PSEUDO_FILES.values())})")
    return family


def ensure_semicore_family(label: str = SEMICORE_FAMILY, pseudo_dir: Path = PSEUDO_DIR):
    """Install (once) a family whose Ge dataset has 3d in valence (generated with ld1.x), for the
    'semicore' alignment; the other elements are the Debian ones. Returns the family.

    :raises SetupError: no ld1.x, or ld1.x failed (the tail of its output is in the message).
    """
    family = existing_family(label)
    if family is not None:
        return family
    others = [pseudo_dir / filename for element, filename in PSEUDO_FILES.items() if element != "Ge"]
    with tempfile.TemporaryDirectory() as folder:
        germanium = run_ld1(GE_SEMICORE_LD1_INPUT, GE_SEMICORE_FILENAME, Path(folder))
        family = install_family(label, [germanium, *others], SEMICORE_CUTOFFS_RY,
                                "Ge with 3d in valence (ld1.x, pslibrary 1.0.0 recipe), Debian O and Si")
    echo(f"installed pseudopotential family `{label}` (Ge with 3d in valence, generated with ld1.x)")
    return family
