"""What the plugin expects on a machine, by name: Debian's Quantum ESPRESSO packages and executables,
the pseudopotential files and families, their cutoffs, and the default profile.

Constants only (no imports of AiiDA): the work chains, the command line and :mod:`aiida_xesml.setup`
all read them from here.
"""

from __future__ import annotations

from pathlib import Path

DEBIAN_PACKAGES = ("quantum-espresso", "quantum-espresso-data", "openmpi-bin", "libopenblas0-serial")
QE_EXECUTABLES = {"pw": "pw.x", "projwfc": "projwfc.x", "pp": "pp.x"}
CODE_PLUGINS = {"pw": "quantumespresso.pw", "projwfc": "quantumespresso.projwfc", "pp": "quantumespresso.pp"}
PSEUDO_DIR = Path("/usr/share/espresso/pseudo")
# One file per element: the Debian PAW datasets (Ge has only 4s4p in valence, see QE-NOTES.md).
PSEUDO_FILES = {"Ge": "Ge.pbe-kjpaw.UPF", "O": "O.pbe-kjpaw.UPF", "Si": "Si.pbe-nl-rrkjus_psl.1.0.0.UPF"}
PSEUDO_FAMILY = "xesml-debian-pbe-paw"
# Recommended cutoffs (Ry) per stringency, matching the protocols: forces converge at 25-30 Ry and
# the pressure at 35 Ry for rutile GeO2 with these PAW datasets; dual 6 is enough.
CUTOFFS_RY = {"fast": (25.0, 150.0), "balanced": (30.0, 180.0), "stringent": (45.0, 270.0)}
SEMICORE_FAMILY = "xesml-pbe-paw-ge3d"
SEMICORE_CUTOFFS_RY = {"fast": (35.0, 210.0), "balanced": (40.0, 240.0), "stringent": (50.0, 300.0)}
DEFAULT_PROFILE = "xesml"


def code_label(name: str) -> str:
    """Label of the code for QE executable ``name`` ('pw', 'projwfc', 'pp')."""
    return f"{name}-qe"
