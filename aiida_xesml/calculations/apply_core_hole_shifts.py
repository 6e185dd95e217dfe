"""Calcfunction: spectra moved to the ``core_hole`` alignment by the per-site ΔSCF shifts."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.calculations.checks import require_arrays, require_type
from aiida_xesml.data.spectra import XesSpectraData
from aiida_xesml.ml.core_hole import shift_spectra


@calcfunction
def apply_core_hole_shifts(spectra: orm.ArrayData, shifts: orm.ArrayData):
    """The rows of ``spectra`` whose site has a ΔSCF shift, moved to the ``core_hole`` alignment.

    Each row is first put on its run's highest occupied level (``parameters['homo_ev']``), whatever
    its alignment, then moved up by the site's ``shift_ev`` (linear interpolation on the same grid,
    zero where nothing moves in). Its ``reference_ev`` becomes ``homo − shift``.

    :param spectra: an XesSpectraData of one structure (``xesml.spectrum``'s output).
    :param shifts: the ``shifts`` output of ``xesml.core_hole`` on the same structure.
    :returns: XesSpectraData of the calibrated rows, with ``parameters.alignment = 'core_hole'`` and
        the spectra's former alignment in ``parameters.source_alignment``.
    :raises ValueError: wrong node types, spectra of several snapshots, no ``homo_ev``, or no row whose
        site has a shift.
    """
    require_type(spectra, XesSpectraData, "spectra", "xesml.spectrum")
    require_arrays(shifts, ("site_index", "shift_ev"), "shifts", "xesml.core_hole")
    if len(np.unique(spectra.snapshot_index)) != 1:
        raise ValueError("`spectra` holds rows of several snapshots; the shifts belong to one structure: give the "
                         "spectra of that structure alone")
    parameters = dict(spectra.parameters)
    if "homo_ev" not in parameters:
        raise ValueError("`spectra` has no parameters['homo_ev'] (the run's highest occupied level); give the output "
                         "of xesml.spectrum")
    by_site = dict(zip(shifts.get_array("site_index").tolist(), shifts.get_array("shift_ev").tolist()))
    rows = np.array([index for index, site in enumerate(spectra.site_index) if int(site) in by_site], dtype=int)
    if len(rows) == 0:
        raise ValueError(f"no row of `spectra` (sites {spectra.site_index.tolist()}) has a shift (sites "
                         f"{sorted(by_site)}); run xesml.core_hole on these sites")
    site_shifts = np.array([by_site[int(spectra.site_index[row])] for row in rows])
    intensity, reference = shift_spectra(spectra.energy_ev, spectra.intensity[rows], spectra.reference_ev[rows],
                                         parameters["homo_ev"], site_shifts)
    node = XesSpectraData()
    node.set_spectra(
        energy_ev=spectra.energy_ev, intensity=intensity, site_index=spectra.site_index[rows], reference_ev=reference,
        snapshot_index=spectra.snapshot_index[rows], label=spectra.row_labels[rows],
        parameters={**parameters, "alignment": "core_hole", "source_alignment": parameters.get("alignment"),
                    "core_hole_offset_ev": shifts.base.attributes.get("offset_ev", None),
                    "core_hole_shift_ev": site_shifts.tolist()},
    )
    return node
