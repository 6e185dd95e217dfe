"""``xesml.spectra``: Kβ X-ray emission spectra of many emitting sites on one energy grid."""

from __future__ import annotations

import numpy as np
from aiida import orm

from aiida_xesml.ml.validation import as_finite_array


class XesSpectraData(orm.ArrayData):
    """Spectra of emitting sites (rows) on a common grid.

    Arrays: ``energy_ev`` (n_E,) energies relative to each row's reference in eV; ``intensity``
    (n, n_E) in states/eV (the site's p-projected occupied DOS, broadened); ``site_index`` (n,) the
    emitter's index in its structure; ``snapshot_index`` (n,) which snapshot the row comes from;
    ``label`` (n,) a number per row such as the pressure in GPa (NaN when unset); ``reference_ev``
    (n,) the absolute energy (eV) that was subtracted (the alignment reference).
    Attribute ``parameters``: how the spectra were made (emitter, fwhm in eV, alignment, grid, homo_ev, projections_source, ...).
    """

    def set_spectra(self, energy_ev, intensity, site_index, reference_ev, snapshot_index=None, label=None,
                    parameters: dict | None = None) -> None:
        """Store the spectra; all row arrays must have one entry per row of ``intensity``."""
        energy = as_finite_array(energy_ev, "energy_ev", ndim=1)
        intensity = as_finite_array(intensity, "intensity", ndim=2)
        if intensity.shape[1] != energy.shape[0]:
            raise ValueError(f"`intensity` has {intensity.shape[1]} columns but `energy_ev` has {energy.shape[0]} points")
        n_rows = intensity.shape[0]
        rows = {
            "site_index": np.asarray(site_index, dtype=int),
            "reference_ev": np.asarray(reference_ev, dtype=float),
            "snapshot_index": np.zeros(n_rows, dtype=int) if snapshot_index is None else np.asarray(snapshot_index, int),
            "label": np.full(n_rows, np.nan) if label is None else np.asarray(label, dtype=float),
        }
        for name, values in rows.items():
            if values.shape != (n_rows,):
                raise ValueError(f"`{name}` has shape {values.shape}; expected ({n_rows},), one per spectrum")
        self.set_array("energy_ev", energy)
        self.set_array("intensity", intensity)
        for name, values in rows.items():
            self.set_array(name, values)
        self.base.attributes.set("parameters", dict(parameters or {}))
        self.base.attributes.set("n_spectra", n_rows)
        self.base.attributes.set("units", {"energy_ev": "eV", "intensity": "states/eV", "reference_ev": "eV"})

    @property
    def energy_ev(self) -> np.ndarray:
        return self.get_array("energy_ev")

    @property
    def intensity(self) -> np.ndarray:
        return self.get_array("intensity")

    @property
    def site_index(self) -> np.ndarray:
        return self.get_array("site_index")

    @property
    def snapshot_index(self) -> np.ndarray:
        return self.get_array("snapshot_index")

    @property
    def row_labels(self) -> np.ndarray:
        """Array ``label`` (n,): the number of each row, e.g. GPa (the node's own ``label`` stays aiida's)."""
        return self.get_array("label")

    @property
    def reference_ev(self) -> np.ndarray:
        return self.get_array("reference_ev")

    @property
    def parameters(self) -> dict:
        return self.base.attributes.get("parameters", {})

    @property
    def n_spectra(self) -> int:
        return self.base.attributes.get("n_spectra")

    def moments(self, windows=None) -> np.ndarray:
        """Spectral moments (n, 4 × n_windows) of every row; see :func:`aiida_xesml.ml.moments.spectral_moments`."""
        from aiida_xesml.ml.moments import DEFAULT_WINDOWS, spectral_moments

        return spectral_moments(self.energy_ev, self.intensity, windows=windows or DEFAULT_WINDOWS)
