"""Running ``ld1.x`` and installing what it makes: the steps every generated dataset shares."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from aiida_xesml.setup.errors import SetupError

MAX_UPF_LINE = 200  # pw.x 6.7 rejects much longer lines ("line too long")


def reflow_upf(text: str, max_length: int = MAX_UPF_LINE) -> str:
    """Make a UPF file readable by pw.x 6.7: put a long tag's attributes on separate lines and split
    long data lines into lines of four numbers. The content is unchanged."""
    lines = []
    for line in text.splitlines():
        if len(line) <= max_length:
            lines.append(line)
        elif line.lstrip().startswith("<"):
            lines.extend(part for part in re.split(r"\s+(?=[A-Za-z_]+=\")", line.rstrip()))
        else:
            tokens = line.split()
            lines.extend("  ".join(tokens[i:i + 4]) for i in range(0, len(tokens), 4))
    return "\n".join(lines) + "\n"


def run_ld1(input_text: str, filename: str, folder: Path) -> Path:
    """Run Debian's ld1.x on ``input_text`` in ``folder`` and return the UPF file ``filename`` it wrote,
    reflowed for pw.x 6.7 (:func:`reflow_upf`).

    :raises SetupError: no ld1.x on PATH, or ld1.x failed or wrote no ``filename`` (the tail of its
        output is in the message).
    """
    if shutil.which("ld1.x") is None:
        raise SetupError("`ld1.x` not found: install the Debian package quantum-espresso.")
    folder = Path(folder)
    result = subprocess.run(["ld1.x"], input=input_text, capture_output=True, text=True, cwd=folder, check=False)
    path = folder / filename
    if result.returncode != 0 or not path.is_file():
        raise SetupError(f"ld1.x failed to generate {filename}:\n{result.stdout[-2000:]}{result.stderr}")
    path.write_text(reflow_upf(path.read_text()))
    return path


def existing_family(label: str):
    """The aiida-pseudo ``CutoffsPseudoPotentialFamily`` called ``label``, or None."""
    from aiida.orm import QueryBuilder
    from aiida_pseudo.groups.family import CutoffsPseudoPotentialFamily

    return QueryBuilder().append(CutoffsPseudoPotentialFamily, filters={"label": label}).first(flat=True)


def install_family(label: str, files, cutoffs_ry: dict, description: str = ""):
    """An aiida-pseudo ``CutoffsPseudoPotentialFamily`` ``label`` made of the UPF ``files`` (paths), with
    ``cutoffs_ry`` = {stringency: (ecutwfc, ecutrho)} in Ry for every element and 'balanced' as the
    default stringency; the existing family when one has that label already."""
    import tempfile

    from aiida_pseudo.data.pseudo.upf import UpfData
    from aiida_pseudo.groups.family import CutoffsPseudoPotentialFamily

    existing = existing_family(label)
    if existing is not None:
        return existing
    with tempfile.TemporaryDirectory() as folder:
        for path in files:
            shutil.copy(path, folder)
        family = CutoffsPseudoPotentialFamily.create_from_folder(Path(folder), label, pseudo_type=UpfData)
    family.description = description
    elements = [pseudo.element for pseudo in family.nodes]
    for stringency, (ecutwfc, ecutrho) in cutoffs_ry.items():
        family.set_cutoffs({e: {"cutoff_wfc": ecutwfc, "cutoff_rho": ecutrho} for e in elements}, stringency, unit="Ry")
    family.set_default_stringency("balanced")
    return family
