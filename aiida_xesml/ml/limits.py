"""Size limits of the files the plugin reads (measured spectra, structures), in one place.

A measured Kβ spectrum has thousands of points, not millions, and a structure for a DFT calculation
has tens to hundreds of atoms. Files far larger than that are a mistake (a wrong file, a whole
trajectory, a binary dump) or an attempt to exhaust memory, so they are refused before they are
parsed, with a message that states the limit, the actual size and what to do instead.

Plain functions, no AiiDA: the CLI (``aiida-xesml reconstruct``, ``aiida-xesml launch``) calls them
before anything is stored.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Largest measured spectrum file accepted, in bytes (5 MB).
MAX_SPECTRUM_FILE_BYTES = 5 * 1024 * 1024
#: Largest structure file accepted, in bytes (10 MB; ASE reads the whole file to take one frame).
MAX_STRUCTURE_FILE_BYTES = 10 * 1024 * 1024
#: Most atoms accepted in one structure: far beyond what a pw.x MD of GeO2 can run.
MAX_STRUCTURE_ATOMS = 1000

#: kind -> (limit in bytes, what the file must hold, what to do when it is too large).
FILE_LIMITS = {
    "spectrum": (MAX_SPECTRUM_FILE_BYTES, "two columns: energy (eV) and intensity",
                 "give the measured spectrum alone (a few thousand lines), not a raw detector dump"),
    "structure": (MAX_STRUCTURE_FILE_BYTES, "one structure with a cell (.cif, extended .xyz, POSCAR, ...)",
                  "write the one structure you want (e.g. the last frame of a trajectory) to its own file"),
}

__all__ = [
    "FILE_LIMITS",
    "MAX_SPECTRUM_FILE_BYTES",
    "MAX_STRUCTURE_ATOMS",
    "MAX_STRUCTURE_FILE_BYTES",
    "check_atom_count",
    "check_file",
    "check_size",
]


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.3g} MB"


def check_size(size: int, kind: str, argument: str = "the file") -> None:
    """Raise a ValueError when ``size`` bytes is 0 or above the limit of a ``kind`` file.

    :param size: the file's size in bytes.
    :param kind: a key of :data:`FILE_LIMITS` ('spectrum' or 'structure').
    :param argument: how the message names the file (an option or argument name, or a path).
    :raises ValueError: naming ``argument``, the limit and the actual size, and what to do.
    """
    if kind not in FILE_LIMITS:
        raise ValueError(f"unknown file kind {kind!r}; choose from {', '.join(FILE_LIMITS)}")
    limit, content, hint = FILE_LIMITS[kind]
    size = int(size)
    if size > limit:
        raise ValueError(f"{argument}: the file has {size} bytes ({_mb(size)}), more than the limit of {limit} bytes "
                         f"({limit / 1024 / 1024:g} MB) for a {kind} file; {hint}")
    if size == 0:
        raise ValueError(f"{argument}: the file is empty; it must hold {content}")


def check_file(path, kind: str, argument: str | None = None) -> int:
    """Check that ``path`` is an existing regular file within the size limit of ``kind``; return its size.

    Call it before reading the file, so that nothing is parsed or stored for a bad one.

    :param path: the file (str or Path).
    :param kind: a key of :data:`FILE_LIMITS` ('spectrum' or 'structure').
    :param argument: how the message names the file, e.g. ``"--structure"``; the path is added.
    :raises ValueError: a missing path, a directory or other non-regular file (a device, a pipe), an
        empty file, or one larger than the limit (the message states the limit and the size).
    """
    path = Path(path)
    name = f"{argument} {str(path)!r}" if argument else repr(str(path))
    if not path.exists():
        raise ValueError(f"{name}: the file does not exist")
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file (a device, pipe or socket)"
        raise ValueError(f"{name} is {what}; give a {kind} file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{name}: the file is not readable (permissions)")
    size = path.stat().st_size
    check_size(size, kind, name)
    return size


def check_atom_count(n_atoms: int, argument: str = "the structure", limit: int = MAX_STRUCTURE_ATOMS) -> None:
    """Raise a ValueError when a structure of ``n_atoms`` atoms is larger than ``limit``.

    :raises ValueError: naming ``argument``, the limit and the actual number of atoms.
    """
    if int(n_atoms) > limit:
        raise ValueError(f"{argument} has {int(n_atoms)} atoms, more than the limit of {limit} atoms for a DFT "
                         "calculation of this plugin; use a smaller cell (fewer --supercell repeats) or cut a "
                         "smaller periodic cell from the structure")
