"""Calcfunction: structure around Ge reconstructed from spectra through the ECA."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.calculations.compute_moments import moment_windows
from aiida_xesml.data.plain import set_label_attributes
from aiida_xesml.ml.dataset import ensemble_mean_spectra
from aiida_xesml.ml.moments import spectral_moments
from aiida_xesml.ml.reconstruct import ENSEMBLE_MOMENT_ORDERS, inverse_weights, reconstruct_targets, true_ensemble_means

DEFAULT_RECONSTRUCTION = {"ensemble_mean": True, "n_atoms": 20, "cutoff_angstrom": 2.3, "n_starts": 4,
                          "moment_orders": list(ENSEMBLE_MOMENT_ORDERS)}


@calcfunction
def reconstruct(eca: orm.ArrayData, spectra: orm.ArrayData, parameters: orm.Dict,
                dataset: orm.ArrayData | None = None):
    """Scores, pseudo-Coulomb matrix, distances (Å), species and CN from spectra (SCIENCE.md §6).

    ``parameters``: ``ensemble_mean`` (True: one target per label, the moments of the label's mean
    spectrum; False: every spectrum row), ``windows`` (eV, as for the moments), ``n_atoms`` (N of
    the descriptor), ``cutoff_angstrom`` (Ge–O distance counted as a bond, 2.3), ``n_starts``,
    ``moment_orders`` (the moments the inverse matches, default [0, 1]: M2 and M3 of a mean or
    measured spectrum also hold the spread between sites; each is weighted by the emulator's
    held-out R², see :func:`aiida_xesml.ml.reconstruct.inverse_weights`; equally when none of them
    has a positive held-out R², recorded in the attribute ``settings.weighting``).
    With ``dataset``, the ensemble means of the true structure per label are added for comparison.

    Output ``reconstruction`` (ArrayData), one row per target: ``label``, ``n_spectra``,
    ``target_moments``, ``predicted_moments``, ``scores``, ``pseudo_coulomb``, ``distances_angstrom``
    (n, N-1), ``species_z``, ``cn``, ``cn_fractional``, ``first_shell_mean_angstrom``, and with
    ``dataset`` ``true_distances_angstrom``, ``true_first_shell_mean_angstrom``, ``true_cn_mean``.
    Output ``summary`` (Dict): the same per label as a table of plain numbers.
    """
    settings = {**DEFAULT_RECONSTRUCTION, **parameters.get_dict()}
    windows = moment_windows(parameters)
    n_atoms = int(settings["n_atoms"])
    cutoff = float(settings["cutoff_angstrom"])
    if settings["ensemble_mean"]:
        labels, intensity, counts = ensemble_mean_spectra(spectra.intensity, spectra.row_labels)
    else:
        labels, intensity, counts = spectra.row_labels, spectra.intensity, np.ones(spectra.n_spectra, dtype=int)
    targets = spectral_moments(spectra.energy_ev, intensity, windows=windows)
    names = eca.target_names
    r2 = eca.target_r2 or [1.0] * len(names)  # an emulator without held-out metrics: equal weights
    try:
        weights = inverse_weights(names, r2, settings["moment_orders"])
        weighting = "held-out R2 of the emulator"
    except ValueError:
        # A held-out set of a few rows (a test-size data set) can score every chosen moment R2 <= 0:
        # the R2 says nothing then, so the chosen moments count equally, and the settings say so.
        weights = inverse_weights(names, [1.0] * len(names), settings["moment_orders"])
        weighting = "equal: no moment of these orders had a positive held-out R2"
    result = reconstruct_targets(eca.get_eca(), targets, n_atoms, n_starts=int(settings["n_starts"]),
                                 target_weights=weights, cutoff=cutoff)

    node = orm.ArrayData()
    arrays = {"label": labels, "n_spectra": counts, "target_moments": targets, "species_z": result.pop("species")}
    arrays.update(result)
    true = None
    if dataset is not None:
        true = true_ensemble_means(dataset.descriptors, dataset.row_labels, n_atoms, cutoff=cutoff)
        position = {float(v): i for i, v in enumerate(true["label"])}
        index = [position.get(float(v)) for v in labels]
        def pick(values):
            return np.array([values[i] if i is not None else np.full(np.shape(values[0]), np.nan) for i in index])
        arrays["true_distances_angstrom"] = pick(true["distances_angstrom"])
        arrays["true_first_shell_mean_angstrom"] = pick(true["first_shell_mean_angstrom"])
        arrays["true_cn_mean"] = pick(true["cn_mean"])
    for name, values in arrays.items():
        node.set_array(name, np.asarray(values))
    set_label_attributes(node, labels)
    node.base.attributes.set("settings", {**settings, "windows": windows, "target_weights": weights.tolist(),
                                          "weighting": weighting})

    rows = []
    for i, value in enumerate(labels):
        row = {
            "label": _plain(value), "n_spectra": int(counts[i]),
            "first_shell_mean_angstrom": _plain(arrays["first_shell_mean_angstrom"][i]),
            "cn": int(arrays["cn"][i]), "cn_fractional": float(arrays["cn_fractional"][i]),
            "distances_angstrom": [_plain(v) for v in arrays["distances_angstrom"][i][:8]],
        }
        if true is not None:
            row.update({"true_first_shell_mean_angstrom": _plain(arrays["true_first_shell_mean_angstrom"][i]),
                        "true_cn_mean": _plain(arrays["true_cn_mean"][i]),
                        "true_distances_angstrom": [_plain(v) for v in arrays["true_distances_angstrom"][i][:8]]})
        rows.append(row)
    summary = orm.Dict({"rows": rows, "ensemble_mean": bool(settings["ensemble_mean"]),
                        "note": "distances in Å from the emitting Ge (first 8 slots); CN: O within cutoff_angstrom",
                        "cutoff_angstrom": cutoff})
    return {"reconstruction": node, "summary": summary}


def _plain(value):
    """A float for JSON, None for NaN or inf."""
    value = float(value)
    return value if np.isfinite(value) else None
