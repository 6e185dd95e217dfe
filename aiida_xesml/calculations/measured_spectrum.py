"""Calcfunction: a measured Kβ spectrum (XyData) as a one-row XesSpectraData on the common grid.

The parsing and interpolation live in :mod:`aiida_xesml.ml.measured`; this records the step.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.common.exceptions import NotExistent
from aiida.engine import calcfunction

from aiida_xesml.data.spectra import XesSpectraData
from aiida_xesml.ml.measured import DEFAULT_GRID, grid_from, shift_and_interpolate


def xy_arrays(spectrum: orm.XyData) -> tuple[np.ndarray, np.ndarray]:
    """(energy eV, intensity) of a measured spectrum stored as XyData (x and the first y array).

    :raises ValueError: naming the input ``spectrum`` when either array is missing.
    """
    try:
        _, energy, _ = spectrum.get_x()
        intensity = spectrum.get_y()[0][1]
    except (AttributeError, KeyError, IndexError, NotExistent) as exc:
        raise ValueError(f"input `spectrum` (XyData pk {spectrum.pk}) has no x (energy, eV) and y (intensity) "
                         f"arrays: {exc}; set them with set_x and set_y") from None
    return energy, intensity


@calcfunction
def measured_spectrum(spectrum: orm.XyData, reference_ev: orm.Float, grid: orm.List | None = None,
                      label: orm.Float | None = None):
    """A measured spectrum (``spectrum``: x energy eV, y intensity) as a one-row XesSpectraData.

    Energies are shifted by ``-reference_ev`` (eV, the measurement's energy of the calculations'
    valence-band maximum) and interpolated linearly onto ``grid`` ([start, stop, step] eV, default
    [-30, 5, 0.05]); intensity is zero outside the measured range. ``label`` (e.g. GPa) is NaN
    when not given. The output's ``parameters`` name the source file and its SHA-256.
    """
    energy, intensity = xy_arrays(spectrum)
    grid_values = list(grid.get_list()) if grid is not None else list(DEFAULT_GRID)
    energies = grid_from(grid_values)
    on_grid = shift_and_interpolate(energy, intensity, reference_ev.value, energies)
    node = XesSpectraData()
    node.set_spectra(
        energy_ev=energies, intensity=on_grid[None, :], site_index=[0], reference_ev=[reference_ev.value],
        snapshot_index=[0], label=[label.value if label is not None else np.nan],
        parameters={
            "source": "measured", "filename": spectrum.base.attributes.get("filename", None),
            "sha256": spectrum.base.attributes.get("sha256", None), "grid": [float(v) for v in grid_values],
            "alignment": "measured energy minus reference_ev", "reference_ev": float(reference_ev.value),
            "measured_range_ev": [float(energy[0]), float(energy[-1])], "interpolation": "linear, zero outside",
        },
    )
    return {"spectra": node}
