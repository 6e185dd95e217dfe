"""Training the emulator on a data set with a seeded, label-stratified held-out split (SCIENCE.md §5)."""

from __future__ import annotations

import numpy as np

from .dataset import stratified_split
from .emulator import MLPEmulator
from .validation import as_finite_array, check_matching_rows

#: Defaults of :func:`train_emulator`; every key may be overridden.
DEFAULT_TRAINING = {
    "hidden_layer_sizes": [64, 64],
    "activation": "tanh",
    "alpha": 1e-3,
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
    X = as_finite_array(X, "X", ndim=2)
    Y = as_finite_array(Y, "Y", ndim=2)
    check_matching_rows(X, "X", Y, "Y")
    label = np.zeros(len(X)) if label is None else np.asarray(label, dtype=float)
    settings = training_settings(settings)
    train, test = stratified_split(label, settings["test_fraction"], settings["seed"])
    if len(test) == 0 or len(train) < 2:
        raise ValueError(f"{len(X)} rows are too few for a training and a held-out set; give more samples")
    emulator = MLPEmulator(hidden_layer_sizes=tuple(settings["hidden_layer_sizes"]), activation=settings["activation"],
                           alpha=settings["alpha"], max_iter=settings["max_iter"], random_state=settings["seed"])
    emulator.fit(X[train], Y[train])
    scores = emulator.metrics(X[test], Y[test])
    # None where a metric is undefined: a target constant over the held-out rows (equivalent sites of a
    # small data set) has no Pearson r and no R². Stored metrics must be finite (and JSON).
    metrics = {name: [float(v) if np.isfinite(v) else None for v in values] for name, values in scores.items()}
    metrics.update({"n_train": int(len(train)), "n_test": int(len(test))})
    return emulator, metrics, train, test
