"""Calcfunction: the spectral moments of every row of an XesSpectraData."""

from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.ml.moments import (
    DEFAULT_WINDOWS,
    check_windows,
    moment_names,
    spectral_moments,
)
from aiida_xesml.ml.validation import check_known_keys

#: The keys ``compute_moments``'s ``parameters`` may have.
MOMENT_KEYS = ("windows",)


def moment_windows(parameters: orm.Dict | None) -> dict:
    """The windows (eV, name -> [lo, hi]) in ``parameters['windows']``, or the defaults.

    :raises ValueError: naming ``parameters['windows']`` when they are not name -> [lo, hi] with lo < hi.
    """
    windows = (parameters.get_dict() if parameters is not None else {}).get("windows") or DEFAULT_WINDOWS
    return {name: [lo, hi] for name, (lo, hi) in check_windows(windows, "parameters['windows']").items()}


@calcfunction
def compute_moments(spectra: orm.ArrayData, parameters: orm.Dict):
    """Moments M0..M3 per window (SCIENCE.md §3) of every spectrum, keyed like the spectra rows.

    ``parameters['windows']``: name -> [lo, hi] in eV relative to each row's reference (default
    Kβ″ [-24, -13], Kβ2 [-12, 2]). Output ``moments`` (ArrayData): ``moments`` (n, 4 × windows)
    with M0 in states, M1 and M2 in eV, M3 dimensionless; ``snapshot_index``, ``site_index``,
    ``label`` per row; attributes ``moment_names`` and ``windows``.
    """
    check_known_keys(parameters.get_dict(), MOMENT_KEYS, "moment parameters")
    windows = moment_windows(parameters)
    node = orm.ArrayData()
    node.set_array("moments", spectral_moments(spectra.energy_ev, spectra.intensity, windows=windows))
    for name in ("snapshot_index", "site_index", "label"):
        node.set_array(name, spectra.get_array(name))
    node.base.attributes.set("moment_names", moment_names(windows))
    node.base.attributes.set("windows", windows)
    node.base.attributes.set("units", {"m0": "states", "m1": "eV", "m2": "eV", "m3": "1"})
    return {"moments": node}
