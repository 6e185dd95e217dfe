"""Calcfunction: structure around Ge reconstructed from spectra through the ECA."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.calculations.checks import require_type
from aiida_xesml.calculations.compute_moments import moment_windows
from aiida_xesml.data.dataset import XesDatasetData
from aiida_xesml.data.eca import XesEcaData
from aiida_xesml.data.plain import set_label_attributes
from aiida_xesml.data.spectra import XesSpectraData
from aiida_xesml.ml.dataset import ensemble_mean_spectra
from aiida_xesml.ml.descriptors import n_features
from aiida_xesml.ml.moments import check_windows, moment_names, spectral_moments
from aiida_xesml.ml.reconstruct import (
    ENSEMBLE_MOMENT_ORDERS,
    inverse_weights,
    reconstruct_targets,
    true_ensemble_means,
)
from aiida_xesml.ml.validation import check_integer, check_known_keys, check_positive

DEFAULT_RECONSTRUCTION = {"ensemble_mean": True, "n_atoms": 20, "cutoff_angstrom": 2.3, "n_starts": 4,
                          "moment_orders": list(ENSEMBLE_MOMENT_ORDERS)}
#: The keys ``reconstruct``'s ``parameters`` may have: the defaults' and ``windows``.
RECONSTRUCTION_KEYS = (*DEFAULT_RECONSTRUCTION, "windows")


def reconstruction_settings(parameters: dict) -> dict:
    """:data:`DEFAULT_RECONSTRUCTION` updated with ``parameters``, each value checked.

    :raises ValueError: naming the key: an unknown key, ``ensemble_mean`` not a boolean, ``n_atoms``
        not a whole number >= 2, ``cutoff_angstrom`` not a positive number, ``n_starts`` not a whole
        number >= 1, ``moment_orders`` not a non-empty list of orders 0..3, or bad ``windows``.
    """
    given = check_known_keys(parameters, RECONSTRUCTION_KEYS, "reconstruction parameters")
    settings = {**DEFAULT_RECONSTRUCTION, **given}
    if not isinstance(settings["ensemble_mean"], (bool, np.bool_)):
        raise ValueError(f"`parameters['ensemble_mean']` must be true or false; got {settings['ensemble_mean']!r}")
    settings["n_atoms"] = check_integer(settings["n_atoms"], "parameters['n_atoms']", minimum=2)
    settings["cutoff_angstrom"] = check_positive(settings["cutoff_angstrom"], "parameters['cutoff_angstrom']")
    settings["n_starts"] = check_integer(settings["n_starts"], "parameters['n_starts']", minimum=1)
    orders = settings["moment_orders"]
    if isinstance(orders, (str, bytes)) or not isinstance(orders, (list, tuple)) or not orders:
        raise ValueError(f"`parameters['moment_orders']` must be a non-empty list of moment orders (0, 1, 2, 3); "
                         f"got {orders!r}")
    settings["moment_orders"] = [check_integer(order, "parameters['moment_orders']", minimum=0, maximum=3)
                                 for order in orders]
    if "windows" in given:
        check_windows(given["windows"], "parameters['windows']")
    return settings


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
    require_type(eca, XesEcaData, "eca", "the fit_eca calcfunction (an XesEcaData)")
    require_type(spectra, XesSpectraData, "spectra", "xesml.spectra or measured_spectrum (an XesSpectraData)")
    if dataset is not None:
        require_type(dataset, XesDatasetData, "dataset", "the build_dataset calcfunction (an XesDatasetData)")
    settings = reconstruction_settings(parameters.get_dict())
    windows = moment_windows(parameters)
    n_atoms = settings["n_atoms"]
    cutoff = settings["cutoff_angstrom"]
    if eca.n_features is not None and eca.n_features != n_features(n_atoms):
        raise ValueError(f"`parameters['n_atoms']` = {n_atoms} gives {n_features(n_atoms)} descriptor features, but the "
                         f"ECA (pk {eca.pk}) was fitted on {eca.n_features}; use the n_atoms of its descriptor")
    if eca.target_names and len(eca.target_names) != len(moment_names(windows)):
        raise ValueError(f"`parameters['windows']` give {len(moment_names(windows))} moments, but the ECA (pk {eca.pk}) "
                         f"predicts {len(eca.target_names)} ({eca.target_names}); use the windows it was fitted with")
    if settings["ensemble_mean"]:
        labels, intensity, counts = ensemble_mean_spectra(spectra.intensity, spectra.row_labels)
    else:
        labels, intensity, counts = spectra.row_labels, spectra.intensity, np.ones(spectra.n_spectra, dtype=int)
    targets = spectral_moments(spectra.energy_ev, intensity, windows=windows)
    names = eca.target_names
    r2 = eca.target_r2 or [1.0] * len(names)  # an emulator without held-out metrics: equal weights
    r2 = [0.0 if value is None else value for value in r2]  # an undefined R² shows no skill
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
