"""Calcfunction: the structure around Ge reconstructed from spectra, with error bars from the emulator ensemble."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.calculations.checks import require_arrays, require_type
from aiida_xesml.calculations.compute_moments import moment_windows
from aiida_xesml.calculations.featurize import descriptor_of
from aiida_xesml.calculations.fit_eca import split_rows_of
from aiida_xesml.data.dataset import XesDatasetData
from aiida_xesml.data.eca import XesEcaData
from aiida_xesml.data.emulator import EmulatorData
from aiida_xesml.data.plain import set_label_attributes
from aiida_xesml.data.spectra import XesSpectraData
from aiida_xesml.ml.dataset import ensemble_mean_spectra
from aiida_xesml.ml.descriptors import n_features, slot_atomic_numbers
from aiida_xesml.ml.moments import check_windows, moment_names, shift_free_transform, spectral_moments
from aiida_xesml.ml.reconstruct import (
    CN_CUTOFF,
    CN_WIDTH,
    RANGE_KEYS,
    RECONSTRUCTION_METHODS,
    inverse_weights,
    reconstruct_ensemble,
    site_structure,
)
from aiida_xesml.ml.validation import check_integer, check_known_keys, check_n_atoms, check_positive

#: Moment orders each method matches by default: the population inverse matches all four (a mixture's
#: M2 and M3 hold the spread between its sites); one point in score space can only hold M0 and M1.
DEFAULT_ORDERS = {"population": [0, 1, 2, 3], "single_point": [0, 1], "linear": [0, 1, 2, 3]}
DEFAULT_RECONSTRUCTION = {"method": "population", "ensemble_mean": True, "n_atoms": 20,
                          "cutoff_angstrom": CN_CUTOFF, "width_angstrom": CN_WIDTH, "n_starts": 4,
                          "moment_orders": None, "prior": 1e-3, "held_out": True, "range_tolerance": 0.1}
#: What the ± of each method is a standard deviation over.
SPREAD_SOURCE = {"population": "the emulator ensemble's members", "single_point": "the emulator ensemble's members",
                 "linear": "readouts fitted on bootstrap resamples of the training snapshots (as many as emulators)"}
#: The keys ``reconstruct``'s ``parameters`` may have: the defaults' and ``windows``.
RECONSTRUCTION_KEYS = (*DEFAULT_RECONSTRUCTION, "windows")
#: Version of the reconstruction node's layout: 2 has the smooth CN as ``cn`` with ``*_spread`` arrays
#: (version 1, without the attribute, had the integer count as ``cn`` and the smooth CN as ``cn_fractional``).
FORMAT_VERSION = 2
#: Structure quantities reported (value and spread): array name -> key of ml.reconstruct.STRUCTURE_KEYS.
QUANTITIES = {"cn": "cn_fractional", "cn_count": "cn", "first_shell_mean_angstrom": "first_shell_mean_angstrom",
              "distances_angstrom": "distances_angstrom"}
#: Quantities with a range over every matching population (array ``<name>_range``): those of ml's RANGE_KEYS.
RANGES = {name: key for name, key in QUANTITIES.items() if key in RANGE_KEYS}


def reconstruction_settings(parameters: dict) -> dict:
    """:data:`DEFAULT_RECONSTRUCTION` updated with ``parameters``, each value checked.

    :raises ValueError: naming the key: an unknown key, an unknown ``method``, ``ensemble_mean`` or
        ``held_out`` not a boolean, ``n_atoms`` not a whole number >= 2, ``cutoff_angstrom``,
        ``width_angstrom`` or ``prior`` not positive numbers, ``n_starts`` not a whole number >= 1,
        ``moment_orders`` not a non-empty list of orders 0..3, ``range_tolerance`` neither None nor a positive
        number, or bad ``windows``.
    """
    given = check_known_keys(parameters, RECONSTRUCTION_KEYS, "reconstruction parameters")
    settings = {**DEFAULT_RECONSTRUCTION, **given}
    if settings["method"] not in RECONSTRUCTION_METHODS:
        raise ValueError(f"`parameters['method']` must be one of {', '.join(RECONSTRUCTION_METHODS)}; "
                         f"got {settings['method']!r}")
    for key in ("ensemble_mean", "held_out"):
        if not isinstance(settings[key], (bool, np.bool_)):
            raise ValueError(f"`parameters['{key}']` must be true or false; got {settings[key]!r}")
    settings["n_atoms"] = check_n_atoms(settings["n_atoms"], "parameters['n_atoms']")
    for key in ("cutoff_angstrom", "width_angstrom", "prior"):
        settings[key] = check_positive(settings[key], f"parameters['{key}']")
    settings["n_starts"] = check_integer(settings["n_starts"], "parameters['n_starts']", minimum=1)
    if settings["method"] != "population":
        settings["range_tolerance"] = None  # a range over populations: the population inverse only
    elif settings["range_tolerance"] is not None:
        settings["range_tolerance"] = check_positive(settings["range_tolerance"], "parameters['range_tolerance']")
    orders = settings["moment_orders"]
    if orders is None:
        orders = DEFAULT_ORDERS[settings["method"]]
    if isinstance(orders, (str, bytes)) or not isinstance(orders, (list, tuple)) or not orders:
        raise ValueError(f"`parameters['moment_orders']` must be a non-empty list of moment orders (0, 1, 2, 3); "
                         f"got {orders!r}")
    settings["moment_orders"] = [check_integer(order, "parameters['moment_orders']", minimum=0, maximum=3)
                                 for order in orders]
    if "windows" in given:
        check_windows(given["windows"], "parameters['windows']")
    return settings


def _target_weights(names, emulator_r2, orders):
    """Held-out R² of the chosen moment orders as weights, or equal weights when none is positive."""
    r2 = [0.0 if value is None else value for value in (emulator_r2 or [1.0] * len(names))]
    try:
        return inverse_weights(names, r2, orders), "held-out R2 of the emulator"
    except ValueError:
        # A held-out set of a few rows (a test-size data set) can score every chosen moment R2 <= 0:
        # the R2 says nothing then, so the chosen moments count equally, and the settings say so.
        return inverse_weights(names, [1.0] * len(names), orders), "equal: no moment of these orders had a positive held-out R2"


def _residual_variance(names, rmse, windows):
    """Per window, the emulator's held-out RMSE² of M1 plus that of M2 (eV²): the spread a mean spectrum
    holds that the emulated site moments do not (ml.mixture); 0 where unknown."""
    rmse = {name: (value or 0.0) for name, value in zip(names, rmse or [])}
    return np.array([rmse.get(f"{window}_m1", 0.0) ** 2 + rmse.get(f"{window}_m2", 0.0) ** 2 for window in windows])


def _targets(spectra, windows, rows, ensemble_mean):
    """``(labels, counts, target moments)`` of the chosen spectra rows: per label means, or row by row."""
    if ensemble_mean:
        labels, intensity, counts = ensemble_mean_spectra(spectra.intensity[rows], spectra.row_labels[rows])
    else:
        labels, intensity, counts = spectra.row_labels[rows], spectra.intensity[rows], np.ones(len(rows), dtype=int)
    return labels, counts, spectral_moments(spectra.energy_ev, intensity, windows=windows)


@calcfunction
def reconstruct(eca: orm.ArrayData, spectra: orm.ArrayData | None = None, parameters: orm.Dict | None = None,
                dataset: orm.ArrayData | None = None, emulator: orm.ArrayData | None = None,
                split: orm.ArrayData | None = None, targets: orm.ArrayData | None = None):
    """CN, first-shell and slot distances (Å) from spectra, each with an error bar (SCIENCE.md §4, §6).

    ``parameters``: ``method`` ('population', the default: weights over the data set's training sites whose
    emulated mixture moments match the target's, the structure their weighted mean; 'single_point': the
    published inverse, one point in ECA score space read as a pseudo-Coulomb matrix; 'linear': a ridge readout of
    each structure value from the moment integrands of the data set's training sites, exact for mixtures, no
    emulator, its ± over bootstrap resamples of the training snapshots), ``ensemble_mean``
    (True: one target per label, the moments of the label's mean spectrum; False: every spectrum row),
    ``held_out`` (True: also one target per label from the held-out rows of ``split`` only, whose sites the
    emulator and the population never saw), ``windows`` (eV), ``n_atoms`` (N of the descriptor),
    ``cutoff_angstrom`` and ``width_angstrom`` (the CN switch, 2.3 ± 0.1 Å), ``moment_orders`` (default all
    four for 'population', M0 and M1 for 'single_point'; each weighted by the emulator's held-out R²),
    ``prior`` (of the population tilt), ``n_starts`` (of the single-point inverse), ``range_tolerance``
    ('population' on moments: the CN and first-shell range over every population matching the target within
    this tolerance, in units of the training sites' spread of each moment integrand; None: no range).

    ``dataset`` (the training data) is required by 'population' and 'linear' and gives the true ensemble means per label;
    ``emulator`` (EmulatorData) gives the ensemble (default: the ECA's emulator alone, no error bar);
    ``split`` (train_emulator's) chooses the training rows (the population) and the held-out rows.
    Instead of ``spectra``, ``targets`` (from the measured_targets calcfunction) gives the shift-free targets
    of a measured spectrum on its own energy axis: the population inverse then matches those functions of
    its mixture moments (no reference energy, no intensity unit), with equal weights.

    Output ``reconstruction`` (ArrayData, layout version 2), one row per target: ``label``, ``n_spectra``,
    ``target_moments``, ``fitted_moments``; ``cn`` (the smooth CN), ``cn_count`` (the mean integer count of O
    within the cutoff), ``first_shell_mean_angstrom``, ``distances_angstrom`` (n, N-1; with the species
    ordering slot j is the j-th nearest O, then Ge: see attribute ``slot_z``), each with ``<name>_spread``
    (the standard deviation over the ensemble's members); with ``dataset`` the true values
    ``true_cn``, ``true_cn_count``, ``true_first_shell_mean_angstrom``, ``true_distances_angstrom``; the
    same with prefix ``held_out_`` for the held-out targets; with a ``range_tolerance``, ``cn_range`` and
    ``first_shell_mean_angstrom_range`` (n, 2): the lowest and highest value any matching population gives (NaN:
    no population of training sites matches the target). Output ``summary`` (Dict): the same per label as a
    table of plain numbers.
    """
    require_type(eca, XesEcaData, "eca", "the fit_eca calcfunction (an XesEcaData)")
    if (spectra is None) == (targets is None):
        raise ValueError("give either `spectra` (spectra to reconstruct) or `targets` (shift-free targets of a measured "
                         "spectrum, from measured_targets), not both and not neither")
    if spectra is not None:
        require_type(spectra, XesSpectraData, "spectra", "xesml.spectra or measured_spectrum (an XesSpectraData)")
    else:
        require_arrays(targets, ("targets", "label"), "targets", "the measured_targets calcfunction")
    if dataset is not None:
        require_type(dataset, XesDatasetData, "dataset", "the build_dataset calcfunction (an XesDatasetData)")
    if emulator is not None:
        require_type(emulator, EmulatorData, "emulator", "the train_emulator calcfunction (an EmulatorData)")
    settings = reconstruction_settings(parameters.get_dict() if parameters is not None else {})
    windows = moment_windows(parameters)
    n_atoms, method = settings["n_atoms"], settings["method"]
    descriptor = descriptor_of(dataset if dataset is not None else eca)
    full = n_features(n_atoms)
    fitted_on = n_features(descriptor["n_atoms"]) if "n_atoms" in descriptor else eca.n_features
    if fitted_on is not None and fitted_on != full and (eca.feature_columns is None or "n_atoms" in descriptor):
        raise ValueError(f"`parameters['n_atoms']` = {n_atoms} gives {full} descriptor features, but the ECA (pk {eca.pk}) "
                         f"was fitted on {fitted_on}; use the n_atoms of its descriptor")
    if eca.target_names and len(eca.target_names) != len(moment_names(windows)):
        raise ValueError(f"`parameters['windows']` give {len(moment_names(windows))} moments, but the ECA (pk {eca.pk}) "
                         f"predicts {len(eca.target_names)} ({eca.target_names}); use the windows it was fitted with")
    if method == "population" and dataset is None:
        raise ValueError("method 'population' reweights the training sites: give the `dataset` the ECA was fitted on "
                         "(or choose method 'single_point')")
    if method == "linear" and dataset is None:
        raise ValueError("method 'linear' is fitted on the training sites' moments: give the `dataset` the ECA was fitted "
                         "on (or choose method 'single_point')")
    columns = emulator.feature_columns if emulator is not None else eca.feature_columns
    if dataset is not None and dataset.n_features != full:
        raise ValueError(f"`dataset` has {dataset.n_features} descriptor columns, but `parameters['n_atoms']` = "
                         f"{n_atoms} gives {full}")
    slot_z = (slot_atomic_numbers(n_atoms, descriptor.get("species", "Ge"), "species", descriptor.get("species_counts"))
              if descriptor.get("ordering") == "species" else None)
    options = {"cutoff": settings["cutoff_angstrom"], "width": settings["width_angstrom"]}
    members = emulator.get_members() if emulator is not None else [eca.get_eca().emulator]
    names = eca.target_names or moment_names(windows)
    metrics = emulator.metrics if emulator is not None else {"r2": eca.target_r2}
    weights, weighting = _target_weights(names, metrics.get("r2"), settings["moment_orders"])
    if method == "linear":  # the readout uses every moment integrand, fitted on the computed site moments
        weighting = "none: method 'linear' matches no moments"
    transform = None
    if targets is not None:
        target_set = targets.base.attributes.get("target_set", None)
        if target_set != "shift_free" or method != "population":  # 'linear' too: shift-free targets are not linear
            raise ValueError(f"`targets` of set {target_set!r} need method 'population' and shift-free targets (from "
                             "measured_targets); reconstruct spectra on the calculations' axis through `spectra`")
        transform = shift_free_transform
        settings["range_tolerance"] = None  # the ranges bound the moments themselves, not functions of them
        weights = np.ones(targets.get_array("targets").shape[1])
        weighting = "equal: shift-free targets of a measured spectrum"

    train = test = None
    inputs = {"method": method, "target_weights": weights, "prior": settings["prior"], "n_starts": settings["n_starts"],
              "transform": transform}
    if dataset is not None:
        train, test = split_rows_of(split, dataset.n_rows)
        X = dataset.descriptors
        truth_table = site_structure(X, n_atoms, slot_z=slot_z, **options)
        if method == "population":
            x_train = X[train] if columns is None else X[train][:, columns]
            inputs.update(X=x_train, structure={key: truth_table[key][train] for key in QUANTITIES.values()},
                          residual_variance=_residual_variance(names, metrics.get("rmse"), windows),
                          range_tolerance=settings["range_tolerance"])
        elif method == "linear":
            if dataset.moments.shape[1] != len(names):
                raise ValueError(f"`dataset` holds {dataset.moments.shape[1]} moments per site, but the windows give "
                                 f"{len(names)}; use the windows it was computed with")
            inputs.update(site_moments=dataset.moments[train], groups=dataset.snapshot_index[train],
                          structure={key: truth_table[key][train] for key in QUANTITIES.values()})
    if method == "single_point":
        inputs["fill"] = None if columns is None else (X[train].mean(axis=0) if dataset is not None else eca.descriptor_mean)
        if columns is not None and inputs["fill"] is None:
            raise ValueError(f"the ECA (pk {eca.pk}) reads a subset of the descriptor and holds no descriptor mean to "
                             "expand its reconstruction with; give the `dataset` it was fitted on")
        main = eca.get_eca()
        if len(members) > 1:  # one ECA per member, fitted as the main one was, on the training rows
            from aiida_xesml.ml.eca import ECA

            if dataset is None:
                raise ValueError("error bars of method 'single_point' refit ECA per member: give the `dataset`")
            x_fit = X[train] if columns is None else X[train][:, columns]
            ecas = [main] + [ECA(member, n_components=len(main.components_), random_state=main.random_state)
                             .fit(x_fit, dataset.moments[train]) for member in members[1:]]
        else:
            ecas = [main]
        inputs.update(ecas=ecas, n_atoms=n_atoms, feature_columns=columns, analysis_options={"slot_z": slot_z, **options})

    node = orm.ArrayData()
    if spectra is not None:
        subsets = {"": np.arange(spectra.n_spectra)}
        if settings["held_out"] and settings["ensemble_mean"] and test is not None and len(test) and \
                dataset is not None and spectra.n_spectra == dataset.n_rows:
            subsets["held_out_"] = test  # the analysis's spectra rows are the data set's rows, in order
        subsets = {prefix: (rows, _targets(spectra, windows, rows, settings["ensemble_mean"]))
                   for prefix, rows in subsets.items()}
    else:
        given = targets.get_array("targets")
        subsets = {"": (None, (targets.get_array("label"), np.ones(len(given), dtype=int), given))}
    summary_rows = {}
    for prefix, (rows, (labels, counts, wanted)) in subsets.items():
        result = reconstruct_ensemble(members, wanted, **inputs)
        arrays = {"label": labels, "n_spectra": counts, "target_moments" if transform is None else "targets": wanted}
        if "fitted_moments" in result:  # 'linear' fits no moments
            arrays.update(fitted_moments=result["fitted_moments"].mean(axis=0),
                          inverse_loss=result["inverse_loss"].mean(axis=0))
        if transform is not None:
            arrays["fitted_targets"] = transform(arrays["fitted_moments"])[0]
        for name, key in QUANTITIES.items():
            arrays[name] = result["value"][key]
            arrays[f"{name}_spread"] = result["spread"][key]
        if "range" in result:
            arrays.update({f"{name}_range": result["range"][key] for name, key in RANGES.items()})
        if "effective_sites" in result:
            arrays["effective_sites"] = result["effective_sites"].mean(axis=0)
        if "scores" in result:
            arrays["scores"] = result["scores"][0]
        if dataset is not None and settings["ensemble_mean"] and rows is not None:
            truth = _true_means(truth_table, dataset.row_labels, rows, labels)
            arrays.update({f"true_{name}": values for name, values in truth.items()})
        for name, values in arrays.items():
            node.set_array(f"{prefix}{name}", np.asarray(values))
        summary_rows[prefix] = _summary_rows(arrays)
        if not prefix:
            set_label_attributes(node, labels)
    node.base.attributes.set("format_version", FORMAT_VERSION)
    node.base.attributes.set("settings", {**settings, "windows": windows, "target_weights": weights.tolist(),
                                          "weighting": weighting, "n_members": len(members)})
    node.base.attributes.set("descriptor", descriptor)
    node.base.attributes.set("target_set", "moments" if transform is None else "shift_free")
    if slot_z is not None:
        node.base.attributes.set("slot_z", [int(z) for z in slot_z[1:]])
    summary = orm.Dict({
        "rows": summary_rows[""], "held_out_rows": summary_rows.get("held_out_", []),
        "method": method, "ensemble_mean": bool(settings["ensemble_mean"]), "n_members": len(members),
        "cutoff_angstrom": settings["cutoff_angstrom"], "width_angstrom": settings["width_angstrom"],
        "note": ("CN: the smooth count of O (cosine switch, cutoff ± width Å), the same function for the truth; "
                 f"± is the standard deviation over {SPREAD_SOURCE[method]}; distances in Å from the emitting Ge "
                 "(first 8 slots); held_out_rows: targets made of held-out snapshots only"),
    })
    return {"reconstruction": node, "summary": summary}


def _true_means(table, row_labels, rows, labels) -> dict:
    """True ensemble means per label over ``rows``, the same quantities as reconstructed."""
    result = {name: [] for name in QUANTITIES}
    for value in labels:
        chosen = rows[row_labels[rows] == value] if np.isfinite(value) else rows[np.isnan(row_labels[rows])]
        for name, key in QUANTITIES.items():
            values = np.asarray(table[key][chosen], dtype=float)
            values = np.where(np.isfinite(values), values, np.nan)
            result[name].append(np.nanmean(values, axis=0) if len(chosen) else np.full(values.shape[1:], np.nan))
    return {name: np.array(values) for name, values in result.items()}


def _summary_rows(arrays) -> list[dict]:
    rows = []
    for i, value in enumerate(arrays["label"]):
        row = {"label": _plain(value), "n_spectra": int(arrays["n_spectra"][i])}
        for name in ("cn", "cn_count", "first_shell_mean_angstrom"):
            row[name] = _plain(arrays[name][i])
            row[f"{name}_spread"] = _plain(arrays[f"{name}_spread"][i])
        for name in RANGES:
            if f"{name}_range" in arrays:
                row[f"{name}_range"] = [_plain(v) for v in arrays[f"{name}_range"][i]]
        row["distances_angstrom"] = [_plain(v) for v in arrays["distances_angstrom"][i][:8]]
        row["distances_angstrom_spread"] = [_plain(v) for v in arrays["distances_angstrom_spread"][i][:8]]
        if "true_cn" in arrays:
            for name in ("cn", "cn_count", "first_shell_mean_angstrom"):
                row[f"true_{name}"] = _plain(arrays[f"true_{name}"][i])
            row["true_distances_angstrom"] = [_plain(v) for v in arrays["true_distances_angstrom"][i][:8]]
        rows.append(row)
    return rows


def _plain(value):
    """A float for JSON, None for NaN or inf."""
    value = float(value)
    return value if np.isfinite(value) else None


def read_reconstruction(node: orm.ArrayData, prefix: str = "") -> dict:
    """The arrays of a reconstruction node in the current layout (version 2), also from version-1 nodes.

    Version 1 (no ``format_version`` attribute) stored the integer count as ``cn``, the smooth CN as
    ``cn_fractional`` and ``true_cn_mean`` (an integer-count mean), and no spreads: those read as
    ``cn_count``, ``cn`` and ``true_cn_count``, with spreads of NaN (unknown).
    """
    names = set(node.get_arraynames())
    arrays = {name[len(prefix):]: node.get_array(name) for name in names if name.startswith(prefix)}
    if prefix == "":
        arrays = {name: value for name, value in arrays.items() if not name.startswith("held_out_")}
    if node.base.attributes.get("format_version", 1) >= 2:
        return arrays
    old = dict(arrays)
    arrays["cn_count"] = old.get("cn")
    arrays["cn"] = old.get("cn_fractional")
    if "true_cn_mean" in old:
        arrays["true_cn_count"] = old["true_cn_mean"]
    for name in ("cn", "cn_count", "first_shell_mean_angstrom", "distances_angstrom"):
        if arrays.get(name) is not None:
            arrays[f"{name}_spread"] = np.full(np.shape(arrays[name]), np.nan)
    return arrays
