"""Choosing the emulator by grouped cross-validation on the training rows (SCIENCE.md §5).

Two kinds of model compete, each over a small grid and over the feature sets the caller offers
(column subsets of the descriptor, e.g. the full matrix or its first row):

- ``"network"``: :class:`~aiida_xesml.ml.emulator.MLPEmulator` (tanh MLP between z-score
  scalers of X and Y), over ``hidden_layer_sizes`` and ``alpha``;
- ``"ridge"``: :class:`~aiida_xesml.ml.emulator.LinearEmulator` (ridge regression on the same
  z-scored X and Y), over ``alpha``.

Both are scikit-learn estimators, so scikit-learn's ``GridSearchCV`` scores them on the same
``GroupKFold`` folds, grouped by snapshot: no snapshot has rows in both the fitting and the
scoring part of a fold.

The score that ranks the candidates is the mean over targets of R² of the standardized targets,
standardized once by the mean and standard deviation over all training rows given
(:func:`standardized_r2`: ``1 - mean_j MSE_j / Var_j``). Every target weighs the same whatever
its unit, and every fold divides by the same variances. scikit-learn's per-fold R² divides by the
variance of the fold's own rows instead; for a heavy-tailed target such as a skewness, one fold
whose snapshots happen to vary little then scores far below zero (measured on the benchmark's
synthetic set: R² -2.6 in one fold at Pearson r 0.5, where the other folds gave 0.2-0.3) and
decides the ranking alone. The per-fold R² and the mean Pearson r over targets are recorded
beside the score.

Call :func:`select_models` with the training rows only. The held-out rows must stay out of every
choice, or their figures stop measuring skill.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import make_scorer
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline

from .emulator import LinearEmulator, MLPEmulator
from .validation import check_integer, check_training_rows

__all__ = [
    "MODEL_KINDS",
    "NETWORK_GRID",
    "RIDGE_GRID",
    "FAST_NETWORK_GRID",
    "FAST_RIDGE_GRID",
    "DEFAULT_MAX_ITER",
    "SCORING",
    "FeatureColumns",
    "mean_pearson_r",
    "standardized_r2",
    "check_feature_sets",
    "check_grid",
    "grouped_folds",
    "select_models",
]

#: The two kinds of emulator that compete.
MODEL_KINDS = ("network", "ridge")
#: Default network grid: 2 sizes x 3 penalties (standardized units). With 3 feature sets and
#: 5 folds that is 90 fits; the small-penalty fits on the full 210 features dominate the cost.
NETWORK_GRID = {"hidden_layer_sizes": [[32], [64, 64]], "alpha": [1.0, 10.0, 100.0]}
#: Default ridge grid (penalty in standardized units); ridge fits cost milliseconds.
RIDGE_GRID = {"alpha": [0.1, 1.0, 10.0, 100.0, 1000.0]}
#: A grid for tests and quick looks (seconds).
FAST_NETWORK_GRID = {"hidden_layer_sizes": [[8]], "alpha": [1.0]}
FAST_RIDGE_GRID = {"alpha": [0.1, 10.0]}
#: L-BFGS iterations of every network fit during and after selection; fewer than the
#: MLPEmulator default (2000) because selection fits many networks. Measured on the benchmark's
#: synthetic set (1,784 training sites, 64-64 tanh, alpha 10): the fit converges after 249
#: iterations on the 19 row-0 features and 889 on all 210; stopped at 300, the held-out mean R²
#: was 0.786 against 0.773 converged, at a third of the time.
DEFAULT_MAX_ITER = 300
#: What the selection ranks by (first), and what it records beside it.
SCORING = ("score", "r2", "pearson_r")


class FeatureColumns(TransformerMixin, BaseEstimator):
    """Keeps the descriptor columns of one named feature set (a step of the selection pipeline).

    :param feature_sets: dict name -> column indices into X.
    :param name: the feature set to keep.

    Fitted attributes: ``columns_`` (int array), ``n_features_in_``.
    """

    def __init__(self, feature_sets=None, name: str = "full"):
        self.feature_sets = feature_sets
        self.name = name

    def fit(self, X, y=None):
        X = np.asarray(X)
        sets = check_feature_sets(self.feature_sets, X.shape[1])
        if self.name not in sets:
            raise ValueError(f"`name` {self.name!r} is not a feature set; choose one of {sorted(sets)}")
        self.columns_ = sets[self.name]
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        return np.asarray(X)[:, self.columns_]


def check_feature_sets(feature_sets, n_features: int, name: str = "feature_sets") -> dict[str, np.ndarray]:
    """Feature sets as {name: sorted unique int column array}; None means {"full": every column}.

    :raises ValueError: naming ``name``: not a dict, an empty set, or a column outside [0, n_features).
    """
    if feature_sets is None:
        return {"full": np.arange(n_features)}
    if not isinstance(feature_sets, dict) or not feature_sets:
        raise ValueError(f"`{name}` must be a non-empty dict of name -> column indices; got {type(feature_sets).__name__}")
    checked = {}
    for key, columns in feature_sets.items():
        columns = np.asarray(columns)
        if not isinstance(key, str) or columns.ndim != 1 or columns.size == 0 \
                or not np.issubdtype(columns.dtype, np.integer):
            raise ValueError(f"`{name}[{key!r}]` must be a non-empty 1-D array of integer column indices under a "
                             f"string name; got {columns!r}")
        if columns.min() < 0 or columns.max() >= n_features:
            raise ValueError(f"`{name}[{key!r}]` holds columns outside [0, {n_features}); X has {n_features} features")
        checked[key] = np.unique(columns).astype(int)
    return checked


def _number_list(values, name: str, minimum: float, strict: bool) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"`{name}` must be a non-empty list of numbers; got {values!r}")
    checked = []
    for value in values:
        ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating)) \
            and np.isfinite(value) and (value > minimum if strict else value >= minimum)
        if not ok:
            raise ValueError(f"`{name}` must hold finite numbers {'>' if strict else '>='} {minimum:g}; got {value!r}")
        checked.append(float(value))
    return checked


def check_grid(kind: str, grid, name: str = "grid") -> dict:
    """A network or ridge grid with every value checked, as plain lists (JSON-able).

    :param kind: "network" (keys ``hidden_layer_sizes``, a list of layer-width lists, and
        ``alpha``) or "ridge" (key ``alpha``). Missing keys take the default grid's values.
    :raises ValueError: naming ``name`` and the key: unknown keys, empty lists, widths that are not
        whole numbers >= 1, penalties that are negative or not finite.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"`kind` must be one of {MODEL_KINDS}; got {kind!r}")
    default = NETWORK_GRID if kind == "network" else RIDGE_GRID
    if not isinstance(grid, dict):
        raise ValueError(f"`{name}` must be a dict like {default}; got {type(grid).__name__}")
    unknown = sorted(set(grid) - set(default))
    if unknown:
        raise ValueError(f"`{name}` has unknown key(s) {unknown}; allowed: {sorted(default)}")
    grid = {**default, **grid}
    checked = {"alpha": _number_list(grid["alpha"], f"{name}['alpha']", 0.0, strict=False)}
    if kind == "network":
        sizes = grid["hidden_layer_sizes"]
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (list, tuple)) or not sizes:
            raise ValueError(f"`{name}['hidden_layer_sizes']` must be a non-empty list of layer-width lists, "
                             f"e.g. [[32], [64, 64]]; got {sizes!r}")
        checked_sizes = []
        for widths in sizes:
            if isinstance(widths, (str, bytes)) or not isinstance(widths, (list, tuple)) or not widths:
                raise ValueError(f"`{name}['hidden_layer_sizes']` must hold non-empty lists of layer widths, "
                                 f"e.g. [64, 64]; got {widths!r}")
            checked_sizes.append([check_integer(n, f"{name}['hidden_layer_sizes']", minimum=1) for n in widths])
        checked = {"hidden_layer_sizes": checked_sizes, **checked}
    return checked


def mean_pearson_r(y_true, y_pred) -> float:
    """Mean over targets of the Pearson r between truth and prediction; targets where r is
    undefined (a constant column) are left out; NaN when none is defined."""
    y_true = np.asarray(y_true, dtype=float).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=float).reshape(len(y_pred), -1)
    yc, pc = y_true - y_true.mean(axis=0), y_pred - y_pred.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (yc * pc).sum(axis=0) / np.sqrt((yc**2).sum(axis=0) * (pc**2).sum(axis=0))
    r = r[np.isfinite(r)]
    return float(r.mean()) if len(r) else float("nan")


def standardized_r2(y_true, y_pred, scale=None) -> float:
    """Mean over targets of ``1 - MSE_j / scale_j**2``: R² of targets standardized by ``scale``.

    :param scale: (m,) standard deviation of each target over the reference rows (all training
        rows); None uses ``y_true``'s own (then it equals scikit-learn's uniform-average R²).
    """
    y_true = np.asarray(y_true, dtype=float).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=float).reshape(len(y_pred), -1)
    scale = y_true.std(axis=0) if scale is None else np.asarray(scale, dtype=float)
    scale = np.where(scale > 0, scale, 1.0)
    return float(1.0 - np.mean(((y_true - y_pred) / scale) ** 2))


def grouped_folds(groups, n_splits: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``GroupKFold`` folds (shuffled, seeded) as a list, so several searches share exactly them.

    :raises ValueError: naming ``groups`` when there are fewer snapshots than folds.
    """
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    n_splits = check_integer(n_splits, "cv_folds", minimum=2)
    if n_groups < n_splits:
        raise ValueError(f"`groups`: the training rows hold {n_groups} snapshot(s); grouped {n_splits}-fold "
                         f"cross-validation needs at least {n_splits}; lower `cv_folds` or add snapshots")
    splitter = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(groups), 1)), groups=groups))


def _search(kind, estimator, grid, feature_sets, folds, n_jobs, y_scale):
    param_grid = {"columns__name": list(feature_sets)}
    if kind == "network":
        param_grid["model__hidden_layer_sizes"] = [tuple(int(n) for n in sizes) for sizes in grid["hidden_layer_sizes"]]
    param_grid["model__alpha"] = [float(a) for a in grid["alpha"]]
    pipeline = Pipeline([("columns", FeatureColumns(feature_sets)), ("model", estimator)])
    # The emulators scale X and Y themselves (the network sits between z-score scalers, like a
    # StandardScaler + TransformedTargetRegressor pipeline would), so the model scored here is
    # exactly the one that is stored.
    scoring = {"score": make_scorer(standardized_r2, scale=y_scale), "r2": "r2", "pearson_r": make_scorer(mean_pearson_r)}
    return GridSearchCV(pipeline, param_grid, scoring=scoring, refit="score", cv=folds, n_jobs=n_jobs,
                        error_score="raise")


def _finite(value):
    value = float(value)
    return value if np.isfinite(value) else None


def _candidates(kind, search) -> list[dict]:
    results = search.cv_results_
    rows = []
    for i, params in enumerate(results["params"]):
        model_params = {"alpha": float(params["model__alpha"])}
        if kind == "network":
            model_params["hidden_layer_sizes"] = [int(n) for n in params["model__hidden_layer_sizes"]]
        rows.append({
            "model": kind,
            "feature_set": params["columns__name"],
            "params": model_params,
            "score_mean": _finite(results["mean_test_score"][i]),
            "score_std": _finite(results["std_test_score"][i]),
            "r2_mean": _finite(results["mean_test_r2"][i]),
            "r2_std": _finite(results["std_test_r2"][i]),
            "pearson_r_mean": _finite(results["mean_test_pearson_r"][i]),
            "pearson_r_std": _finite(results["std_test_pearson_r"][i]),
            "fit_time_s": _finite(results["mean_fit_time"][i]),
            "rank": int(results["rank_test_score"][i]),
        })
    return rows


def select_models(X, Y, groups, feature_sets=None, network_grid=None, ridge_grid=None, cv_folds: int = 5,
                  max_iter: int = DEFAULT_MAX_ITER, seed: int = 0, n_jobs: int | None = None) -> dict:
    """Grouped-CV grid search of the network and of the ridge baseline; both refit on all rows given.

    Pass the **training rows only**. Both searches use the same seeded ``GroupKFold`` folds.

    :param X: (n, d) descriptors of the training rows.
    :param Y: (n, m) targets (moments) of the training rows.
    :param groups: (n,) snapshot id of every row.
    :param feature_sets: dict name -> column indices of X (default: {"full": every column}).
    :param network_grid: {"hidden_layer_sizes": [[...], ...], "alpha": [...]} (default
        :data:`NETWORK_GRID`).
    :param ridge_grid: {"alpha": [...]} (default :data:`RIDGE_GRID`).
    :param cv_folds: number of grouped folds (>= 2, at most the number of snapshots).
    :param max_iter: L-BFGS iterations of every network fit.
    :param seed: seed of the folds' shuffle and of the networks' initial weights.
    :param n_jobs: parallel fits (joblib), None = 1.
    :returns: dict with ``"network"`` (fitted MLPEmulator on its feature set's columns),
        ``"ridge"`` (fitted LinearEmulator), ``"columns"`` and ``"feature_set"`` ({kind: int array /
        name}), ``"selected"`` ("network" if its best CV mean score is strictly higher than the
        ridge's, else "ridge": the simpler model wins a tie) and ``"record"``: a JSON-able dict with
        every candidate's parameters and CV mean/std of the score, of R² and of Pearson r, the
        folds' description, the grids, the best of each kind and the selection rule.
    """
    X, Y, groups = check_training_rows(X, Y, groups)
    feature_sets = check_feature_sets(feature_sets, X.shape[1])
    network_grid = check_grid("network", NETWORK_GRID if network_grid is None else network_grid, "network_grid")
    ridge_grid = check_grid("ridge", RIDGE_GRID if ridge_grid is None else ridge_grid, "ridge_grid")
    max_iter = check_integer(max_iter, "max_iter", minimum=1)
    seed = check_integer(seed, "seed", minimum=0)
    folds = grouped_folds(groups, cv_folds, seed)
    estimators = {"network": MLPEmulator(activation="tanh", max_iter=max_iter, random_state=seed),
                  "ridge": LinearEmulator()}
    grids = {"network": network_grid, "ridge": ridge_grid}
    searches, candidates = {}, []
    for kind in MODEL_KINDS:
        search = _search(kind, estimators[kind], grids[kind], feature_sets, folds, n_jobs, Y.std(axis=0))
        with warnings.catch_warnings():
            # L-BFGS stopping at max_iter is the intended budget here, not a fault.
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X, Y)
        searches[kind] = search
        candidates.extend(_candidates(kind, search))
    best = {}
    for kind in MODEL_KINDS:
        index = next(i for i, c in enumerate(candidates) if c["model"] == kind and c["rank"] == 1)
        best[kind] = dict(candidates[index], index=index)
    network_score, ridge_score = best["network"]["score_mean"], best["ridge"]["score_mean"]
    selected = "network" if (network_score is not None and (ridge_score is None or network_score > ridge_score)) \
        else "ridge"
    record = {
        "scoring": "score: mean over targets of R² of the targets standardized by their standard deviation over "
                   "all training rows (1 - mean MSE/Var), per fold; r2: scikit-learn's per-fold R² (uniform "
                   "average); pearson_r: mean Pearson r over targets",
        "cv": {"splitter": "GroupKFold", "grouped_by": "snapshot", "n_splits": len(folds), "shuffle": True,
               "seed": seed, "n_rows": int(len(X)), "n_groups": int(len(np.unique(groups)))},
        "max_iter": max_iter,
        "grids": grids,
        "feature_sets": {name: [int(c) for c in columns] for name, columns in feature_sets.items()},
        "candidates": candidates,
        "best": best,
        "selected": selected,
        "rule": "the network is selected only if its best CV mean score is strictly higher than the ridge baseline's",
    }
    models = {kind: searches[kind].best_estimator_ for kind in MODEL_KINDS}
    return {
        "network": models["network"].named_steps["model"],
        "ridge": models["ridge"].named_steps["model"],
        "columns": {kind: models[kind].named_steps["columns"].columns_ for kind in MODEL_KINDS},
        "feature_set": {kind: best[kind]["feature_set"] for kind in MODEL_KINDS},
        "selected": selected,
        "record": record,
    }
