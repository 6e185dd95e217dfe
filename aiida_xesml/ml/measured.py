"""A measured Kβ spectrum: parsing a two-column text file and putting it on the common energy grid.

Plain functions, no AiiDA: :func:`read_spectrum_file` checks a file's size (the limit lives in
:mod:`aiida_xesml.ml.limits`) and encoding and parses it with :func:`read_two_column`, and
:func:`shift_and_interpolate` shifts by the energy reference and interpolates. The calcfunction
:func:`aiida_xesml.calculations.measured_spectrum.measured_spectrum` records the step in the
provenance graph.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from .limits import MAX_SPECTRUM_FILE_BYTES, check_file, check_size
from .spectra import energy_grid
from .validation import as_finite_array

#: Largest spectrum file accepted (bytes): a measured spectrum has thousands of points, not millions.
#: The same number as :data:`aiida_xesml.ml.limits.MAX_SPECTRUM_FILE_BYTES`.
MAX_FILE_BYTES = MAX_SPECTRUM_FILE_BYTES
#: Fewest points a spectrum must have.
MIN_POINTS = 10
#: Default common grid [start, stop, step] in eV, as the calculated spectra.
DEFAULT_GRID = (-30.0, 5.0, 0.05)

_SEPARATORS = re.compile(r"[\s,;]+")


def check_file_size(size: int, limit: int = MAX_FILE_BYTES) -> None:
    """Raise a ValueError when a file of ``size`` bytes is empty or larger than ``limit``."""
    if limit == MAX_SPECTRUM_FILE_BYTES:
        check_size(size, "spectrum")
        return
    if size > limit:
        raise ValueError(f"the file has {size} bytes, more than the limit of {limit} bytes "
                         f"({limit / 1024 / 1024:g} MB) for a measured spectrum")
    if size == 0:
        raise ValueError("the file is empty; it needs two columns: energy (eV) and intensity")


def read_spectrum_file(path, argument: str | None = None) -> tuple[np.ndarray, np.ndarray, bytes]:
    """Energies (eV), intensities and the raw bytes of a two-column spectrum file.

    The size is checked before the file is read (:func:`aiida_xesml.ml.limits.check_file`), then the
    bytes are decoded as UTF-8 (a UTF-8 byte-order mark is allowed) and parsed with
    :func:`read_two_column`.

    :param path: the file.
    :param argument: how error messages name the file (e.g. ``"SPECTRUM"``); the path is always given.
    :raises ValueError: a missing, non-regular, empty or too large file, one that is not UTF-8 text,
        or any problem :func:`read_two_column` finds; the message starts with the path.
    """
    path = Path(path)
    check_file(path, "spectrum", argument)
    content = path.read_bytes()
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: the file is not UTF-8 text (byte {exc.start} is {content[exc.start:exc.start + 1]!r}); "
                         "it must be two columns of numbers, saved as plain text") from None
    try:
        energy, intensity = read_two_column(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return energy, intensity, content


def sha256_hex(content: bytes) -> str:
    """The SHA-256 of ``content`` as a hex string."""
    return hashlib.sha256(content).hexdigest()


def read_two_column(text: str, min_points: int = MIN_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Energies (eV) and intensities of a two-column text spectrum.

    Columns are separated by whitespace, commas or semicolons. Lines starting with ``#`` are
    comments and are allowed only before the first data line; blank lines are ignored.

    :raises ValueError: with the line number for a comment, header or non-numeric line after the
        data starts, a line without exactly two columns, a NaN or inf value; and for fewer than
        ``min_points`` points or an energy axis that is not strictly increasing.
    """
    energy, intensity = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if energy:
                raise ValueError(f"line {number}: a comment/header line ({line[:40]!r}) after the data started; "
                                 "'#' lines are allowed only at the top of the file")
            continue
        cells = [cell for cell in _SEPARATORS.split(line) if cell]
        try:
            values = [float(cell) for cell in cells]
        except ValueError:
            where = "in the middle of the data" if energy else "before the data"
            raise ValueError(f"line {number}: non-numeric line {where} ({line[:40]!r}); mark header lines "
                             "with '#' at the top of the file") from None
        if len(values) != 2:
            raise ValueError(f"line {number}: {len(values)} column(s); expected 2 (energy in eV, intensity)")
        if not all(np.isfinite(values)):
            raise ValueError(f"line {number}: NaN or inf value ({line[:40]!r}); every value must be a finite number")
        energy.append(values[0])
        intensity.append(values[1])
    if len(energy) < min_points:
        raise ValueError(f"the spectrum has {len(energy)} data point(s); at least {min_points} are needed")
    energy, intensity = np.array(energy), np.array(intensity)
    steps = np.diff(energy)
    if np.any(steps <= 0):
        first = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(f"the energy axis is not strictly increasing: point {first + 2} ({energy[first + 1]:g} eV) "
                         f"follows {energy[first]:g} eV; sort the file by energy and remove duplicates")
    return energy, intensity


def shift_and_interpolate(energy, intensity, reference_ev: float, grid) -> np.ndarray:
    """``intensity`` at the energies ``grid`` (eV relative to the reference), zero outside the measured range.

    :param energy: (n,) strictly increasing absolute energies (eV) of the measurement.
    :param reference_ev: absolute energy (eV) on the measurement's axis of the calculations' reference
        (the valence-band maximum); the measured energies are shifted by ``-reference_ev``.
    :param grid: (n_E,) energies (eV) relative to the reference.
    :raises ValueError: a non-finite reference; ``energy`` and ``intensity`` not finite 1-D arrays of
        one length, or ``energy`` not strictly increasing; a bad ``grid``; or a measurement that does
        not overlap the grid.
    """
    try:
        reference_ev = float(reference_ev)
    except (TypeError, ValueError):
        raise ValueError(f"`reference_ev` must be a finite number of eV; got {reference_ev!r}") from None
    if not np.isfinite(reference_ev):
        raise ValueError(f"`reference_ev` must be a finite number of eV; got {reference_ev!r}")
    energy = as_finite_array(energy, "energy", ndim=1)
    intensity = as_finite_array(intensity, "intensity", ndim=1)
    if intensity.shape != energy.shape:
        raise ValueError(f"`intensity` has {len(intensity)} points but `energy` has {len(energy)}; one per energy")
    if np.any(np.diff(energy) <= 0):
        first = int(np.flatnonzero(np.diff(energy) <= 0)[0])
        raise ValueError(f"`energy` is not strictly increasing: point {first + 1} ({energy[first + 1]:g} eV) follows "
                         f"{energy[first]:g} eV; sort the spectrum by energy and remove duplicates")
    grid = as_finite_array(grid, "grid", ndim=1)
    shifted = energy - reference_ev
    if shifted[-1] < grid[0] or shifted[0] > grid[-1]:
        raise ValueError(f"the measured range [{shifted[0]:g}, {shifted[-1]:g}] eV relative to the reference "
                         f"({reference_ev:g} eV) does not overlap the grid [{grid[0]:g}, {grid[-1]:g}] eV; "
                         "check --reference-ev")
    return np.interp(grid, shifted, intensity, left=0.0, right=0.0)


def grid_from(values) -> np.ndarray:
    """The energy grid of ``[start, stop, step]`` (eV)."""
    values = list(values)
    if len(values) != 3:
        raise ValueError(f"the grid must be [start, stop, step] in eV; got {values!r}")
    return energy_grid(*values)
