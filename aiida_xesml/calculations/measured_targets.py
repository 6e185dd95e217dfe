"""Calcfunction: the shift-free targets of a measured Kβ spectrum on its own energy axis.

The peak finding, window placement and targets live in :mod:`aiida_xesml.ml.measured`; this records
the step, with where the windows went, so that the reconstruction's provenance shows them.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.calculations.checks import require_type
from aiida_xesml.calculations.compute_moments import moment_windows
from aiida_xesml.calculations.measured_spectrum import xy_arrays
from aiida_xesml.data.spectra import XesSpectraData
from aiida_xesml.ml.measured import measured_targets as core_measured_targets
from aiida_xesml.ml.validation import check_known_keys

#: The keys of ``parameters``: the calculations' windows (eV) and the measurement's noise per point.
MEASURED_KEYS = ("windows", "noise")


@calcfunction
def measured_targets(spectrum: orm.XyData, calculated: orm.ArrayData, parameters: orm.Dict,
                     label: orm.Float | None = None):
    """Targets a rigid energy shift and an intensity scale cannot change, from a measured spectrum.

    ``spectrum`` (XyData: x energy in eV on any absolute axis, y intensity in any unit, background
    subtracted); ``calculated`` (XesSpectraData: the spectra the emulator was trained on; their mean is
    the reference the windows are placed from); ``parameters``: ``windows`` (the calculations' windows,
    eV) and ``noise`` (standard deviation per point in the intensity unit; default from the data).
    The Kβ2 and Kβ″ peaks are found on both spectra, each window is put at the calculations' distance
    from its own peak, and the measured intensity enters only as the Kβ″/Kβ2 ratio.

    Output ``targets`` (ArrayData): ``targets`` (1, 6) (Kβ″−Kβ2 M1 difference eV, Kβ″/Kβ2 M0 ratio,
    widths M2 eV, skewnesses M3), ``target_errors`` (1, 6) propagated from the noise, ``label`` (1,);
    attributes ``target_set`` ('shift_free'), ``target_names``, ``windows_ev`` (where the windows were
    put, on the measured axis), ``peaks_ev`` (measured Kβ″ and Kβ2), ``reference_ev`` (the measured
    energy of the calculations' zero, for display only).
    """
    require_type(calculated, XesSpectraData, "calculated", "xesml.spectra (the spectra the emulator learned from)")
    check_known_keys(parameters.get_dict(), MEASURED_KEYS, "measured-target parameters")
    energy, intensity = xy_arrays(spectrum)
    windows = moment_windows(parameters)
    result = core_measured_targets(energy, intensity, calculated.energy_ev, calculated.intensity.mean(axis=0),
                                   windows=windows, noise=parameters.get_dict().get("noise"))
    node = orm.ArrayData()
    node.set_array("targets", np.asarray(result["targets"], dtype=float)[None, :])
    node.set_array("target_errors", np.asarray(result["target_errors"], dtype=float)[None, :])
    node.set_array("label", np.array([label.value if label is not None else np.nan]))
    node.base.attributes.set("target_set", "shift_free")
    node.base.attributes.set("target_names", list(result["names"]))
    node.base.attributes.set("windows_ev", {name: [float(lo), float(hi)] for name, (lo, hi) in result["windows"].items()})
    node.base.attributes.set("calculated_windows_ev", windows)
    node.base.attributes.set("peaks_ev", {key: float(value) for key, value in result["peaks"].items()
                                          if isinstance(value, (int, float, np.floating))})
    node.base.attributes.set("reference_ev", float(result["reference_ev"]))
    node.base.attributes.set("noise_sigma", float(result["noise_sigma"]))
    node.base.attributes.set("source", {"filename": spectrum.base.attributes.get("filename", None),
                                        "sha256": spectrum.base.attributes.get("sha256", None)})
    return {"targets": node}
