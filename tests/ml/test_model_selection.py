"""Model selection by grouped CV: the right kind and feature set win, the record is complete."""

import json

import numpy as np
import pytest

from aiida_xesml.ml.emulator import LinearEmulator, MLPEmulator
from aiida_xesml.ml.model_selection import (
    FAST_NETWORK_GRID,
    FAST_RIDGE_GRID,
    FeatureColumns,
    check_feature_sets,
    check_grid,
    grouped_folds,
    mean_pearson_r,
    select_models,
    standardized_r2,
)

FAST = {"network_grid": FAST_NETWORK_GRID, "ridge_grid": FAST_RIDGE_GRID, "cv_folds": 3, "max_iter": 200}


def grouped_data(target, n_groups=24, per_group=10, d=6, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_groups * per_group, d))
    Y = target(X) + noise * rng.normal(size=(len(X), 2))
    return X, Y, np.repeat(np.arange(n_groups), per_group)


def linear(X):
    return X @ np.array([[1.0, -0.5], [0.5, 2.0], [-1.0, 0.3], [0.0, 0.0], [0.2, 0.0], [0.0, 1.0]])


def nonlinear(X):
    return np.column_stack([np.sin(2 * X[:, 0]) * X[:, 1], X[:, 2] ** 2 - np.abs(X[:, 3])])


def test_ridge_wins_on_linear_data():
    X, Y, groups = grouped_data(linear)
    result = select_models(X, Y, groups, **FAST)
    assert result["selected"] == "ridge"
    best = result["record"]["best"]
    assert best["ridge"]["score_mean"] > best["network"]["score_mean"]
    assert isinstance(result["ridge"], LinearEmulator) and isinstance(result["network"], MLPEmulator)
    # both refit on all rows given
    assert result["ridge"].score(X, Y) > 0.99


def test_network_wins_on_a_nonlinear_target():
    X, Y, groups = grouped_data(nonlinear, n_groups=30)
    result = select_models(X, Y, groups, network_grid={"hidden_layer_sizes": [[16]], "alpha": [0.1]},
                           ridge_grid=FAST_RIDGE_GRID, cv_folds=3, max_iter=300)
    best = result["record"]["best"]
    assert result["selected"] == "network"
    assert best["network"]["score_mean"] > best["ridge"]["score_mean"] + 0.3


def test_the_informative_feature_set_wins_against_many_noise_columns():
    rng = np.random.default_rng(2)
    X, Y, groups = grouped_data(linear, n_groups=15)
    X = np.hstack([X, rng.normal(size=(len(X), 150))])
    sets = {"full": np.arange(X.shape[1]), "signal": np.arange(6)}
    result = select_models(X, Y, groups, feature_sets=sets, **FAST)
    assert result["feature_set"]["ridge"] == "signal"
    np.testing.assert_array_equal(result["columns"]["ridge"], np.arange(6))
    assert result["ridge"].n_features_in_ == 6


def test_record_holds_every_candidate_and_is_json():
    X, Y, groups = grouped_data(linear)
    sets = {"full": np.arange(6), "first": np.arange(3)}
    grid = {"hidden_layer_sizes": [[4], [4, 4]], "alpha": [0.1, 1.0]}
    record = select_models(X, Y, groups, feature_sets=sets, network_grid=grid, ridge_grid={"alpha": [1.0, 2.0, 3.0]},
                           cv_folds=3, max_iter=50)["record"]
    json.dumps(record)
    kinds = [c["model"] for c in record["candidates"]]
    assert kinds.count("network") == 2 * 2 * 2 and kinds.count("ridge") == 3 * 2
    for candidate in record["candidates"]:
        assert set(candidate) >= {"feature_set", "params", "score_mean", "score_std", "r2_mean", "r2_std",
                                  "pearson_r_mean", "pearson_r_std"}
        assert candidate["feature_set"] in sets
    assert record["cv"]["splitter"] == "GroupKFold" and record["cv"]["n_splits"] == 3
    assert record["best"]["network"]["rank"] == 1


def test_grouped_folds_keep_snapshots_whole_and_are_seeded():
    groups = np.repeat(np.arange(12), np.arange(1, 13))
    folds = grouped_folds(groups, 4, seed=1)
    assert len(folds) == 4
    for train, test in folds:
        assert set(groups[train]).isdisjoint(groups[test])
    tested = np.concatenate([test for _, test in folds])
    np.testing.assert_array_equal(np.sort(tested), np.arange(len(groups)))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, grouped_folds(groups, 4, seed=1)))
    with pytest.raises(ValueError, match="`groups`: the training rows hold 12 snapshot"):
        grouped_folds(groups, 13)


def test_mean_pearson_r_skips_undefined_targets():
    y = np.column_stack([np.arange(5.0), np.ones(5)])
    assert mean_pearson_r(y, y) == pytest.approx(1.0)
    assert np.isnan(mean_pearson_r(y[:, 1:], y[:, 1:]))


def test_standardized_r2_divides_by_the_reference_variance_not_the_folds():
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(3)
    y = rng.normal(size=(50, 3)) * [1.0, 10.0, 0.1]
    p = y + rng.normal(size=(50, 3)) * [0.1, 1.0, 0.01]
    assert standardized_r2(y, p) == pytest.approx(r2_score(y, p))
    # a fold whose truth barely varies: per-fold R² collapses, the standardized score does not
    narrow = np.column_stack([np.full(50, 2.0) + 1e-3 * rng.normal(size=50), y[:, 1:]])
    error = 0.1 * rng.normal(size=50)
    narrow_pred = narrow + np.column_stack([error, np.zeros((50, 2))])
    assert r2_score(narrow, narrow_pred) < -100
    scale = np.array([1.0, 10.0, 0.1])
    assert standardized_r2(narrow, narrow_pred, scale) == pytest.approx(1 - np.mean(error**2) / 3)


def test_feature_columns_and_checks_name_the_argument():
    X = np.arange(12.0).reshape(2, 6)
    np.testing.assert_array_equal(FeatureColumns({"a": [4, 1]}, "a").fit_transform(X), X[:, [1, 4]])
    with pytest.raises(ValueError, match="`name` 'b' is not a feature set"):
        FeatureColumns({"a": [1]}, "b").fit(X)
    with pytest.raises(ValueError, match=r"`feature_sets\['a'\]` holds columns outside \[0, 6\)"):
        check_feature_sets({"a": [6]}, 6)
    with pytest.raises(ValueError, match=r"`feature_sets\['a'\]` must be a non-empty 1-D array"):
        check_feature_sets({"a": []}, 6)
    with pytest.raises(ValueError, match="`g` has unknown key"):
        check_grid("ridge", {"alpha": [1.0], "l1": [0]}, "g")
    with pytest.raises(ValueError, match=r"`g\['alpha'\]` must hold finite numbers >= 0"):
        check_grid("ridge", {"alpha": [-1.0]}, "g")
    with pytest.raises(ValueError, match=r"`g\['hidden_layer_sizes'\]` must be >= 1"):
        check_grid("network", {"hidden_layer_sizes": [[0]]}, "g")
    with pytest.raises(ValueError, match=r"`g\['hidden_layer_sizes'\]` must hold non-empty lists"):
        check_grid("network", {"hidden_layer_sizes": [8]}, "g")
    assert check_grid("network", {"alpha": [2]}) == {"hidden_layer_sizes": [[32], [64, 64]], "alpha": [2.0]}
