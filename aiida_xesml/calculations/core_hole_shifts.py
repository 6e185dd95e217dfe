"""Calcfunction: per-site 1s binding energies and ``core_hole`` shifts from the ΔSCF runs."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.ml.core_hole import binding_energies
from aiida_xesml.ml.core_hole import core_hole_shifts as shifts_from
from aiida_xesml.ml.spectra import occupied_bands


def highest_occupied_level(parameters: orm.Dict, bands: orm.BandsData) -> float:
    """The highest occupied level (eV) of a spin-unpolarized insulator's SCF: the top of its lowest
    N_electrons / 2 bands over all k-points."""
    eigenvalues = bands.get_bands()
    if eigenvalues.ndim != 2:
        raise ValueError(f"`bands` has eigenvalues of shape {eigenvalues.shape}; a spin-unpolarized (n_k, n_bands) "
                         "run is expected")
    n_occupied = occupied_bands(parameters["number_of_electrons"], eigenvalues.shape[1])
    return float(eigenvalues[:, :n_occupied].max())


@calcfunction
def core_hole_shifts(ground_parameters: orm.Dict, ground_bands: orm.BandsData, offset_ev: orm.Float,
                     **holes: orm.Dict):
    """Per-site ΔSCF 1s binding energies and the shifts of the ``core_hole`` alignment.

    :param ground_parameters: the ground-state SCF's ``output_parameters`` (``energy`` in eV).
    :param ground_bands: its ``output_band`` (eigenvalues eV), for the highest occupied level.
    :param offset_ev: C of :mod:`aiida_xesml.ml.core_hole` (eV).
    :param holes: ``site_<i>``: the ``output_parameters`` of the SCF with the hole on site i.
    :returns: ArrayData with arrays ``site_index`` (n,), ``binding_energy_ev`` (n,) = E(hole on the
        site) − E(ground) in eV (pseudopotential scale), ``shift_ev`` (n,) = homo + ΔE − C, the move
        of the site's vbm-aligned spectrum, and ``reference_ev`` (n,) = C − ΔE, the site's reference on
        the ΔSCF run's eigenvalue scale; attributes ``homo_ev``, ``offset_ev``, ``ground_energy_ev`` and
        ``units``.
    """
    if not holes:
        raise ValueError("give at least one `site_<i>` output_parameters of a core-hole SCF")
    keys = sorted(holes, key=lambda key: int(key.rsplit("_", 1)[1]))
    sites = np.array([int(key.rsplit("_", 1)[1]) for key in keys])
    ground = float(ground_parameters["energy"])
    delta = binding_energies([holes[key]["energy"] for key in keys], ground)
    homo = highest_occupied_level(ground_parameters, ground_bands)
    shifts = shifts_from(delta, homo, offset_ev.value)
    node = orm.ArrayData()
    node.set_array("site_index", sites)
    node.set_array("binding_energy_ev", delta)
    node.set_array("shift_ev", shifts)
    node.set_array("reference_ev", offset_ev.value - delta)
    node.base.attributes.set_many({
        "homo_ev": homo, "offset_ev": float(offset_ev.value), "ground_energy_ev": ground,
        "units": {"binding_energy_ev": "eV", "shift_ev": "eV", "reference_ev": "eV", "homo_ev": "eV"},
    })
    return node
