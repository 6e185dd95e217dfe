"""Training the emulator (SCIENCE.md §5).

- :func:`fit_emulators`, the honest route: a held-out split of whole snapshots (by default),
  model selection by grouped cross-validation on the training rows only, the ridge baseline and
  the best network scored on the same held-out rows, a plain verdict, and a bootstrap ensemble of
  the selected model for error bars. Its settings: :data:`DEFAULT_FIT`, checked by
  :func:`fit_settings`.
- :func:`train_emulator`, the older single fit with a random split by site within each label
  (optimistic; kept for the callers that use it). Its settings: :data:`DEFAULT_TRAINING`, checked
  by :func:`checked_training_settings`.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from .dataset import SPLIT_KINDS, bootstrap_rows, split_rows, stratified_split
from .emulator import DEFAULT_ALPHA, MLPEmulator, ensemble_predict, regression_metrics
from .model_selection import DEFAULT_MAX_ITER, NETWORK_GRID, RIDGE_GRID, check_feature_sets, check_grid, select_models
from .validation import check_estimator_settings, check_integer, check_known_keys, check_training_rows

#: Defaults of :func:`train_emulator`; every key may be overridden.
DEFAULT_TRAINING = {
    "hidden_layer_sizes": [64, 64],
    "activation": "tanh",
    "alpha": DEFAULT_ALPHA,
    "max_iter": 2000,
    "test_fraction": 0.2,
    "seed": 0,
}


def training_settings(settings: dict | None = None) -> dict:
    """:data:`DEFAULT_TRAINING` updated with ``settings``; unknown keys are a ValueError."""
    merged = dict(DEFAULT_TRAINING)
    unknown = sorted(set(settings or {}) - set(merged))
    if unknown:
        raise ValueError(f"unknown training setting(s) {unknown}; allowed: {sorted(merged)}")
    merged.update(settings or {})
    return merged


def _check_fraction(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 < value < 1:
        raise ValueError(f"`{name}` must lie in (0, 1); got {value!r}")
    return float(value)


def checked_training_settings(settings: dict | None = None, name: str = "settings") -> dict:
    """:func:`training_settings` with each value checked too (the shell's calcfunction calls this).

    :param name: how the caller calls the settings, used in messages (e.g. ``"parameters"``).
    :raises ValueError: naming the key: unknown keys, ``hidden_layer_sizes`` not a non-empty list of
        whole numbers >= 1, ``activation``, ``alpha`` or ``max_iter`` outside the network's own
        constraints (:attr:`MLPEmulator._parameter_constraints`: the one home of those rules),
        ``test_fraction`` outside (0, 1), or ``seed`` not a whole number >= 0.
    """
    settings = training_settings(settings)
    sizes = settings["hidden_layer_sizes"]
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (list, tuple)) or not sizes:
        raise ValueError(f"`{name}['hidden_layer_sizes']` must be a non-empty list of layer widths, e.g. [32, 32]; "
                         f"got {sizes!r}")
    settings["hidden_layer_sizes"] = [check_integer(n, f"{name}['hidden_layer_sizes']", minimum=1) for n in sizes]
    check_estimator_settings(MLPEmulator, settings, ("activation", "alpha", "max_iter"), f"`{name}`")
    settings["test_fraction"] = _check_fraction(settings["test_fraction"], f"{name}['test_fraction']")
    settings["seed"] = check_integer(settings["seed"], f"{name}['seed']", minimum=0)
    return settings


def train_emulator(X, Y, label=None, settings: dict | None = None):
    """Fit an :class:`MLPEmulator` on a training split and score it on the held-out rows.

    Deterministic for a given ``settings['seed']`` (split and weight initialization).

    :param X: (n, d) descriptors.
    :param Y: (n, m) moments (M0 states, M1/M2 eV, M3 dimensionless).
    :param label: (n,) labels for the stratified split (None: one label).
    :param settings: see :data:`DEFAULT_TRAINING`.
    :returns: ``(emulator, metrics, train, test)``: metrics holds per-target lists ``pearson_r``,
        ``r2`` and ``rmse`` (target units) on the held-out rows (None where undefined: a target
        constant over the held-out rows), and ``n_train``, ``n_test``.
    """
    X, Y, _ = check_training_rows(X, Y)
    label = np.zeros(len(X)) if label is None else np.asarray(label, dtype=float)
    settings = training_settings(settings)
    train, test = stratified_split(label, settings["test_fraction"], settings["seed"])
    if len(test) == 0 or len(train) < 2:
        raise ValueError(f"{len(X)} rows are too few for a training and a held-out set; give more samples")
    emulator = MLPEmulator(hidden_layer_sizes=tuple(settings["hidden_layer_sizes"]), activation=settings["activation"],
                           alpha=settings["alpha"], max_iter=settings["max_iter"], random_state=settings["seed"])
    emulator.fit(X[train], Y[train])
    scores = emulator.metrics(X[test], Y[test])
    metrics = _plain_metrics(scores)
    metrics.update({"n_train": int(len(train)), "n_test": int(len(test))})
    return emulator, metrics, train, test


def _plain_metrics(scores: dict) -> dict[str, list]:
    # None where a metric is undefined: a target constant over the held-out rows (equivalent sites of a
    # small data set) has no Pearson r and no R². Stored metrics must be finite (and JSON).
    return {name: [float(v) if np.isfinite(v) else None for v in values] for name, values in scores.items()}


#: Defaults of :func:`fit_emulators`; :func:`fit_settings` checks every key and value.
#:
#: - ``split``: held-out split, one of :data:`~aiida_xesml.ml.dataset.SPLIT_KINDS` ("snapshot":
#:   whole snapshots; "label": whole labels, an extrapolation test; "site": optimistic).
#: - ``test_fraction``: share held out ("snapshot", "site"), in (0, 1).
#: - ``test_labels``: labels held out by a "label" split (None: the highest label).
#: - ``seed``: seed of the split, the folds, the networks' initial weights and the bootstrap.
#: - ``cv_folds``: grouped folds of the model selection on the training rows.
#: - ``network_grid`` / ``ridge_grid``: the grids searched (see :mod:`aiida_xesml.ml.model_selection`).
#: - ``max_iter``: L-BFGS iterations of every network fit.
#: - ``n_members``: emulators in the bootstrap ensemble (member 0 is the full-training-set fit).
#: - ``n_jobs``: parallel fits of the selection (1 on a shared machine).
DEFAULT_FIT = {
    "split": "snapshot",
    "test_fraction": 0.2,
    "test_labels": None,
    "seed": 0,
    "cv_folds": 5,
    "network_grid": NETWORK_GRID,
    "ridge_grid": RIDGE_GRID,
    "max_iter": DEFAULT_MAX_ITER,
    "n_members": 5,
    "n_jobs": 1,
}


def fit_settings(settings: dict | None = None, name: str = "settings") -> dict:
    """:data:`DEFAULT_FIT` updated with ``settings``, every key and value checked (JSON-able result).

    :param name: how the caller calls the settings, used in messages (e.g. ``"parameters"``).
    :raises ValueError: naming the key: unknown keys, an unknown ``split``, ``test_fraction``
        outside (0, 1), ``test_labels`` that are not finite numbers or are given with a split other
        than "label", ``seed`` < 0, ``cv_folds`` < 2, bad grids, ``max_iter`` < 1,
        ``n_members`` < 1 or ``n_jobs`` < 1.
    """
    merged = {**DEFAULT_FIT, **check_known_keys(settings or {}, DEFAULT_FIT, f"fit {name}")}
    if merged["split"] not in SPLIT_KINDS:
        raise ValueError(f"`{name}['split']` must be one of {', '.join(SPLIT_KINDS)}; got {merged['split']!r}")
    merged["test_fraction"] = _check_fraction(merged["test_fraction"], f"{name}['test_fraction']")
    labels = merged["test_labels"]
    if labels is not None:
        if merged["split"] != "label":
            raise ValueError(f"`{name}['test_labels']` applies to split 'label' only; the split is "
                             f"{merged['split']!r}: drop test_labels or set split='label'")
        values = labels if isinstance(labels, (list, tuple)) else [labels]
        if not values or any(isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))
                             or not np.isfinite(v) for v in values):
            raise ValueError(f"`{name}['test_labels']` must be a finite number or a non-empty list of them; "
                             f"got {labels!r}")
        merged["test_labels"] = [float(v) for v in values]
    merged["seed"] = check_integer(merged["seed"], f"{name}['seed']", minimum=0)
    merged["cv_folds"] = check_integer(merged["cv_folds"], f"{name}['cv_folds']", minimum=2)
    merged["network_grid"] = check_grid("network", merged["network_grid"], f"{name}['network_grid']")
    merged["ridge_grid"] = check_grid("ridge", merged["ridge_grid"], f"{name}['ridge_grid']")
    merged["max_iter"] = check_integer(merged["max_iter"], f"{name}['max_iter']", minimum=1)
    merged["n_members"] = check_integer(merged["n_members"], f"{name}['n_members']", minimum=1)
    merged["n_jobs"] = check_integer(merged["n_jobs"], f"{name}['n_jobs']", minimum=1)
    return merged


def _mean_r(metrics: dict) -> float | None:
    values = [v for v in metrics["pearson_r"] if v is not None]
    return float(np.mean(values)) if values else None


def _describe(kind: str, feature_set: str, params: dict) -> str:
    if kind == "ridge":
        return f"the ridge baseline (alpha {params['alpha']:g}, feature set '{feature_set}')"
    layers = "-".join(str(n) for n in params["hidden_layer_sizes"])
    return f"the network ({layers} tanh, alpha {params['alpha']:g}, feature set '{feature_set}')"


def _verdict(selection: dict, metrics: dict) -> str:
    best, selected = selection["record"]["best"], selection["selected"]
    other = "ridge" if selected == "network" else "network"
    folds = selection["record"]["cv"]["n_splits"]
    score = lambda value: "undefined" if value is None else f"{value:.3f}"  # noqa: E731
    text = (f"Selected {_describe(selected, best[selected]['feature_set'], best[selected]['params'])} by grouped "
            f"{folds}-fold cross-validation on the {metrics['n_train']} training rows "
            f"({metrics['n_train_groups']} snapshots): mean R² of the standardized targets "
            f"{score(best[selected]['score_mean'])} against {score(best[other]['score_mean'])} for the "
            f"{'ridge baseline' if other == 'ridge' else 'network'}. ")
    network, ridge = metrics["network"], metrics["ridge"]
    r_network, r_ridge = _mean_r(network), _mean_r(ridge)
    text += (f"On the {metrics['n_test']} held-out rows ({metrics['split']} split, {metrics['n_test_groups']} "
             f"snapshots) the mean Pearson r is {score(r_network)} for the network and {score(r_ridge)} for the "
             f"ridge baseline")
    if r_network is None or r_ridge is None:
        return text + "; the comparison is undefined (targets constant over the held-out rows)."
    pairs = [(a, b) for a, b in zip(network["pearson_r"], ridge["pearson_r"]) if a is not None and b is not None]
    better = sum(a > b for a, b in pairs)
    if r_network < r_ridge:
        return text + (f": the network is worse than the linear baseline on the held-out rows (better on {better} "
                       f"of {len(pairs)} targets).")
    return text + f": the network beats the linear baseline on the held-out rows (on {better} of {len(pairs)} targets)."


def _bootstrap_members(model, X, Y, groups, columns, n_members: int, seed: int) -> list:
    """``n_members - 1`` refits of ``model`` on bootstrap resamples of the snapshots (whole groups
    drawn with replacement), each with its own seed; ``model`` itself is member 0."""
    members = [model]
    for i, rows in enumerate(bootstrap_rows(groups, n_members, seed)[1:], start=1):
        member = clone(model)
        if "random_state" in member.get_params():
            member.set_params(random_state=seed + i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            members.append(member.fit(X[rows][:, columns], Y[rows]))
    return members


def fit_emulators(X, Y, groups, label=None, settings: dict | None = None, feature_sets=None) -> dict:
    """The honest training: split, grouped model selection, baseline, verdict and ensemble.

    1. Split the rows with :func:`~aiida_xesml.ml.dataset.split_rows` (``settings['split']``,
       whole snapshots by default).
    2. On the training rows only, choose the best network and the best ridge baseline (each over
       its grid and over ``feature_sets``) by grouped cross-validation
       (:func:`~aiida_xesml.ml.model_selection.select_models`), and the winner of the two by the
       same CV score. The held-out rows take no part in any choice.
    3. Score both on the same held-out rows; the verdict says in one sentence which was selected and
       whether the network beats the baseline on the held-out rows.
    4. Fit ``n_members - 1`` more emulators of the selected kind, hyper-parameters and feature set,
       each on a bootstrap resample of the training snapshots with its own seed; member 0 is the
       selected model fitted on all training rows. Their spread gives error bars.

    :param X: (n, d) descriptors.
    :param Y: (n, m) moments (M0 states, M1/M2 eV, M3 dimensionless).
    :param groups: (n,) snapshot id of every row.
    :param label: (n,) labels, e.g. pressure in GPa (None: one label); used by the split.
    :param settings: see :data:`DEFAULT_FIT`.
    :param feature_sets: dict name -> descriptor column indices to choose from (default: all
        columns as "full").
    :returns: dict with ``emulator`` (selected model, fitted on all training rows; it takes
        ``X[:, feature_columns]``), ``members`` (list, ``members[0] is emulator``), ``baseline``
        (ridge), ``network`` (best network), ``selected`` ("network" or "ridge"), ``feature_set``
        and ``feature_columns`` (of the selected model), ``columns`` ({"network", "ridge"} -> int
        array), ``metrics`` (``split``, ``n_train``, ``n_test``, ``n_train_groups``,
        ``n_test_groups``; per model ``selected``, ``network``, ``ridge`` and ``ensemble`` (the
        members' mean) a dict of per-target lists ``pearson_r``, ``r2``, ``rmse`` (target units)
        on the held-out rows, None where undefined; and the selected model's lists again at the
        top level, as :func:`train_emulator` gives them), ``selection`` (the JSON-able CV record),
        ``train`` and ``test`` (row indices), ``verdict`` (a sentence) and ``settings`` (checked).
    :raises ValueError: naming the argument or setting.
    """
    X, Y, groups = check_training_rows(X, Y, groups)
    if label is not None:
        label = np.asarray(label, dtype=float)
        if label.shape != (len(X),):
            raise ValueError(f"`label` has shape {label.shape}; expected ({len(X)},), one per row")
    settings = fit_settings(settings)
    feature_sets = check_feature_sets(feature_sets, X.shape[1])
    train, test = split_rows(settings["split"], groups=groups, label=label, test_fraction=settings["test_fraction"],
                             seed=settings["seed"], test_labels=settings["test_labels"])
    if len(test) == 0 or len(train) < 2:
        raise ValueError(f"{len(X)} rows are too few for a training and a held-out set; give more samples")
    selection = select_models(X[train], Y[train], groups[train], feature_sets=feature_sets,
                              network_grid=settings["network_grid"], ridge_grid=settings["ridge_grid"],
                              cv_folds=settings["cv_folds"], max_iter=settings["max_iter"], seed=settings["seed"],
                              n_jobs=settings["n_jobs"])
    selected = selection["selected"]
    models = {"network": selection["network"], "ridge": selection["ridge"]}
    columns = selection["columns"]
    metrics = {"split": settings["split"], "n_train": int(len(train)), "n_test": int(len(test)),
               "n_train_groups": int(len(np.unique(groups[train]))), "n_test_groups": int(len(np.unique(groups[test])))}
    for kind, model in models.items():
        metrics[kind] = _plain_metrics(model.metrics(X[test][:, columns[kind]], Y[test]))
    metrics["selected"] = metrics[selected]
    emulator = models[selected]
    members = _bootstrap_members(emulator, X[train], Y[train], groups[train], columns[selected],
                                 settings["n_members"], settings["seed"])
    mean, _ = ensemble_predict(members, X[test][:, columns[selected]])
    metrics["ensemble"] = _plain_metrics(regression_metrics(Y[test], mean))
    metrics.update(metrics["selected"])
    return {
        "emulator": emulator,
        "members": members,
        "baseline": models["ridge"],
        "network": models["network"],
        "selected": selected,
        "feature_set": selection["feature_set"][selected],
        "feature_columns": np.asarray(columns[selected], dtype=int),
        "columns": {kind: np.asarray(c, dtype=int) for kind, c in columns.items()},
        "metrics": metrics,
        "selection": selection["record"],
        "train": train,
        "test": test,
        "verdict": _verdict(selection, metrics),
        "settings": settings,
    }

