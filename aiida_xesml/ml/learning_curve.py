"""Learning curves: held-out skill per target against the number of training sites (SCIENCE.md §5).

The training set grows by whole snapshots, and the held-out rows are whole snapshots that no
training subset touches. Several seeded repeats draw different held-out snapshots and a
different order in which the training snapshots are added.

scikit-learn's ``learning_curve`` is not used: it grows the training set by taking the first rows of
each training fold, which cuts snapshots in two and, without its row shuffle, always adds the same
(e.g. lowest-pressure) snapshots first. Here the splits are built from ``GroupShuffleSplit`` and a
seeded order of whole training snapshots, and scikit-learn's ``cross_validate`` fits and scores the
estimator on them.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import make_scorer
from sklearn.model_selection import GroupShuffleSplit, cross_validate

from .validation import as_finite_array, check_integer, check_training_rows

__all__ = ["DEFAULT_TRAIN_FRACTIONS", "learning_curve", "learning_curve_plot_data"]

#: Shares of the training snapshots used, smallest to largest.
DEFAULT_TRAIN_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)


def _pearson_of_target(y_true, y_pred, target: int = 0) -> float:
    y = np.asarray(y_true, dtype=float).reshape(len(y_true), -1)[:, target]
    p = np.asarray(y_pred, dtype=float).reshape(len(y_pred), -1)[:, target]
    yc, pc = y - y.mean(), p - p.mean()
    denominator = np.sqrt((yc**2).sum() * (pc**2).sum())
    return float((yc * pc).sum() / denominator) if denominator > 0 else float("nan")


def _r2_of_target(y_true, y_pred, target: int = 0) -> float:
    y = np.asarray(y_true, dtype=float).reshape(len(y_true), -1)[:, target]
    p = np.asarray(y_pred, dtype=float).reshape(len(y_pred), -1)[:, target]
    total = ((y - y.mean()) ** 2).sum()
    return float(1.0 - ((y - p) ** 2).sum() / total) if total > 0 else float("nan")


def learning_curve(estimator, X, Y, groups, train_fractions=DEFAULT_TRAIN_FRACTIONS, n_repeats: int = 3,
                   test_fraction: float = 0.2, seed: int = 0, n_jobs: int | None = None) -> dict:
    """Held-out Pearson r and R² per target against training size, grown by whole snapshots.

    For each repeat, ``GroupShuffleSplit`` holds out ``ceil(test_fraction * n_snapshots)`` whole
    snapshots; the other snapshots are put in a seeded random order, and the estimator is fitted on
    the first ``k`` of them for each size ``k`` and scored on the held-out snapshots.

    :param estimator: an unfitted scikit-learn regressor for (n, d) X and (n, m) Y, e.g.
        ``LinearEmulator(alpha=...)`` or ``MLPEmulator(...)`` with the selected hyper-parameters
        (give it X already reduced to the selected feature columns).
    :param X: (n, d) descriptors.
    :param Y: (n, m) targets.
    :param groups: (n,) snapshot id of every row.
    :param train_fractions: shares of the training snapshots, in (0, 1]; each gives
        ``max(1, round(f * n_train_snapshots))`` snapshots (duplicates dropped).
    :param n_repeats: seeded repeats (different held-out snapshots and snapshot order).
    :param test_fraction: share of the snapshots held out, in (0, 1).
    :param seed: seed of the splits and of the order.
    :param n_jobs: parallel fits (joblib), None = 1.
    :returns: plain arrays: ``n_train_snapshots`` (k,), ``n_train_sites`` (k, n_repeats),
        ``n_test_sites`` (n_repeats,), ``pearson_r`` and ``r2`` (k, n_repeats, m), NaN where
        undefined; and ``train_fractions`` (k,) as realized (snapshots used / training snapshots of
        the smallest repeat).
    :raises ValueError: naming the argument: fewer than 3 snapshots, fractions outside (0, 1].
    """
    X, Y, groups = check_training_rows(X, Y, groups, y_ndim=(1, 2))
    n_groups = len(np.unique(groups))
    if n_groups < 3:
        raise ValueError(f"`groups` holds {n_groups} snapshot(s); a learning curve needs at least 3 "
                         "(held-out ones and at least two training sizes)")
    fractions = as_finite_array(train_fractions, "train_fractions", ndim=1)
    if np.any(fractions <= 0) or np.any(fractions > 1):
        raise ValueError(f"`train_fractions` must lie in (0, 1]; got {fractions.tolist()}")
    if isinstance(test_fraction, bool) or not 0 < float(test_fraction) < 1:
        raise ValueError(f"`test_fraction` must lie in (0, 1); got {test_fraction!r}")
    n_repeats = check_integer(n_repeats, "n_repeats", minimum=1)
    seed = check_integer(seed, "seed", minimum=0)

    outer = list(GroupShuffleSplit(n_splits=n_repeats, test_size=test_fraction, random_state=seed)
                 .split(X, Y, groups))
    n_train_groups = min(len(np.unique(groups[train])) for train, _ in outer)
    sizes = np.unique(np.clip(np.round(fractions * n_train_groups).astype(int), 1, n_train_groups))
    rng = np.random.default_rng(seed)
    splits, n_sites = [], np.zeros((len(sizes), n_repeats), dtype=int)
    for repeat, (train, test) in enumerate(outer):
        order = rng.permutation(np.unique(groups[train]))
        for i, k in enumerate(sizes):
            rows = train[np.isin(groups[train], order[:k])]
            n_sites[i, repeat] = len(rows)
            splits.append((rows, test))
    m = Y.shape[1]
    scoring = {f"r_{j}": make_scorer(_pearson_of_target, target=j) for j in range(m)}
    scoring.update({f"r2_{j}": make_scorer(_r2_of_target, target=j) for j in range(m)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_validate(estimator, X, Y, cv=splits, scoring=scoring, n_jobs=n_jobs, error_score="raise")
    # cross_validate keeps the order of ``splits``: repeat-major, size-minor.
    shape = (n_repeats, len(sizes), m)
    pearson = np.stack([scores[f"test_r_{j}"] for j in range(m)], axis=-1).reshape(shape).transpose(1, 0, 2)
    r2 = np.stack([scores[f"test_r2_{j}"] for j in range(m)], axis=-1).reshape(shape).transpose(1, 0, 2)
    return {
        "train_fractions": sizes / n_train_groups,
        "n_train_snapshots": sizes,
        "n_train_sites": n_sites,
        "n_test_sites": np.array([len(test) for _, test in outer]),
        "pearson_r": pearson,
        "r2": r2,
    }


def learning_curve_plot_data(curve: dict, target_names=None, metric: str = "pearson_r", label: str = "") -> dict:
    """A plotting-ready, JSON-able summary of :func:`learning_curve` output.

    :param target_names: one name per target (default ``target_0`` ...).
    :param metric: ``"pearson_r"`` or ``"r2"``.
    :param label: the estimator's name for a legend, e.g. ``"ridge"``.
    :returns: ``x`` (mean training sites per size), ``x_label``, ``y_label``, ``label``,
        ``n_repeats`` and ``series``: one ``{"name", "mean", "std"}`` per target (mean and standard
        deviation over the repeats; None where undefined).
    """
    if metric not in ("pearson_r", "r2"):
        raise ValueError(f"`metric` must be 'pearson_r' or 'r2'; got {metric!r}")
    values = np.asarray(curve[metric], dtype=float)
    m = values.shape[-1]
    names = [f"target_{j}" for j in range(m)] if target_names is None else [str(n) for n in target_names]
    if len(names) != m:
        raise ValueError(f"`target_names` has {len(names)} names; the curve has {m} targets")

    def plain(array):
        return [float(v) if np.isfinite(v) else None for v in array]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN sizes give None below
        mean, std = np.nanmean(values, axis=1), np.nanstd(values, axis=1)
    return {
        "x": [float(v) for v in np.asarray(curve["n_train_sites"]).mean(axis=1)],
        "x_label": "training sites (whole snapshots)",
        "y_label": "held-out Pearson r" if metric == "pearson_r" else "held-out R²",
        "label": label,
        "n_repeats": int(values.shape[1]),
        "series": [{"name": names[j], "mean": plain(mean[:, j]), "std": plain(std[:, j])} for j in range(m)],
    }
