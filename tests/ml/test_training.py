"""fit_emulators: honest split, selection on training rows only, baseline beside, verdict, ensemble."""

import json

import numpy as np
import pytest
from sklearn.utils import resample

from aiida_xesml.ml.emulator import LinearEmulator, MLPEmulator, ensemble_predict
from aiida_xesml.ml.model_selection import FAST_NETWORK_GRID, FAST_RIDGE_GRID
from aiida_xesml.ml.training import (
    DEFAULT_FIT,
    _verdict,
    checked_training_settings,
    fit_emulators,
    fit_settings,
)

FAST = {"network_grid": FAST_NETWORK_GRID, "ridge_grid": FAST_RIDGE_GRID, "cv_folds": 3, "max_iter": 200,
        "n_members": 3}


def snapshots(target, n_groups=30, per_group=8, d=6, noise=0.05, seed=0):
    """Rows grouped in snapshots; each snapshot has a label (0, 10 or 20) and shifts its sites' X."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), per_group)
    label = (np.arange(n_groups) % 3 * 10.0)[groups]
    X = rng.normal(size=(len(groups), d)) + 0.3 * rng.normal(size=(n_groups, d))[groups]
    Y = target(X) + noise * rng.normal(size=(len(X), 2))
    return X, Y, groups, label


def linear(X):
    return X[:, :3] @ np.array([[1.0, -0.5], [0.5, 2.0], [-1.0, 0.3]])


def nonlinear(X):
    return np.column_stack([np.sin(2 * X[:, 0]) * X[:, 1], X[:, 2] ** 2 - np.abs(X[:, 3])])


def without_times(record):
    """The selection record minus its fit times (wall-clock, never equal between runs)."""
    strip = lambda c: {k: v for k, v in c.items() if k != "fit_time_s"}  # noqa: E731
    return dict(record, candidates=[strip(c) for c in record["candidates"]],
                best={kind: strip(c) for kind, c in record["best"].items()})


def test_on_linear_data_the_ridge_wins_and_the_verdict_says_so():
    X, Y, groups, label = snapshots(linear)
    result = fit_emulators(X, Y, groups, label, FAST)
    assert result["selected"] == "ridge"
    assert result["emulator"] is result["baseline"] and isinstance(result["baseline"], LinearEmulator)
    assert result["verdict"].startswith("Selected the ridge baseline")
    assert "held-out" in result["verdict"]
    metrics = result["metrics"]
    assert metrics["split"] == "snapshot"
    assert metrics["n_train"] + metrics["n_test"] == len(X)
    assert metrics["n_train_groups"] + metrics["n_test_groups"] == 30
    assert set(groups[result["train"]]).isdisjoint(groups[result["test"]])
    assert min(metrics["ridge"]["pearson_r"]) > 0.99
    assert metrics["selected"] == metrics["ridge"] and metrics["pearson_r"] == metrics["ridge"]["pearson_r"]
    json.dumps({key: value for key, value in result.items() if key in ("metrics", "selection", "verdict", "settings")})


def test_on_a_nonlinear_target_the_network_wins_and_beats_the_baseline_held_out():
    X, Y, groups, label = snapshots(nonlinear, n_groups=36, per_group=10)
    settings = dict(FAST, network_grid={"hidden_layer_sizes": [[16]], "alpha": [0.1]}, max_iter=300, n_members=2)
    result = fit_emulators(X, Y, groups, label, settings)
    assert result["selected"] == "network" and result["emulator"] is result["network"]
    assert "beats the linear baseline on the held-out rows" in result["verdict"]
    assert np.mean(result["metrics"]["network"]["r2"]) > np.mean(result["metrics"]["ridge"]["r2"]) + 0.3


def test_held_out_rows_take_no_part_in_any_choice():
    X, Y, groups, label = snapshots(linear)
    settings = dict(FAST, n_members=2)
    clean = fit_emulators(X, Y, groups, label, settings)
    corrupted_Y, corrupted_X = Y.copy(), X.copy()
    rng = np.random.default_rng(9)
    corrupted_Y[clean["test"]] = rng.normal(scale=100.0, size=(len(clean["test"]), 2))
    corrupted_X[clean["test"]] = rng.normal(scale=100.0, size=(len(clean["test"]), X.shape[1]))
    corrupted = fit_emulators(corrupted_X, corrupted_Y, groups, label, settings)
    np.testing.assert_array_equal(corrupted["test"], clean["test"])
    assert without_times(corrupted["selection"]) == without_times(clean["selection"])
    for a, b in zip(clean["members"], corrupted["members"]):
        assert np.array_equal(a.predict(X), b.predict(X))
    assert corrupted["metrics"]["ridge"] != clean["metrics"]["ridge"]  # the held-out figures did see the change


def test_bootstrap_members_differ_but_agree_in_distribution_and_use_training_snapshots_only():
    X, Y, groups, label = snapshots(nonlinear, n_groups=36, per_group=10)
    settings = dict(FAST, network_grid={"hidden_layer_sizes": [[16]], "alpha": [0.1]}, max_iter=300, n_members=4,
                    seed=2)
    result = fit_emulators(X, Y, groups, label, settings)
    members, train = result["members"], result["train"]
    assert len(members) == 4 and members[0] is result["emulator"]
    assert all(isinstance(m, MLPEmulator) for m in members)
    test_X = X[result["test"]][:, result["feature_columns"]]
    predictions = [m.predict(test_X) for m in members]
    assert all(not np.array_equal(predictions[0], p) for p in predictions[1:])
    _, std = ensemble_predict(members, test_X)
    assert np.median(std / Y.std(axis=0)) < 0.2
    # member i is fitted on whole training snapshots drawn with replacement (its X scaler shows which rows)
    unique = np.unique(groups[train])
    for i, member in enumerate(members[1:], start=1):
        drawn = resample(unique, replace=True, n_samples=len(unique), random_state=2 + i)
        rows = np.concatenate([np.flatnonzero(groups == g) for g in drawn])
        assert set(rows) <= set(train)
        np.testing.assert_allclose(member.x_mean_, X[rows].mean(axis=0), rtol=1e-12)


def test_label_split_holds_out_the_highest_label_and_feature_sets_are_offered():
    X, Y, groups, label = snapshots(linear)
    sets = {"full": np.arange(6), "first3": np.arange(3)}
    result = fit_emulators(X, Y, groups, label, dict(FAST, split="label", n_members=1), feature_sets=sets)
    assert set(label[result["test"]]) == {20.0} and set(label[result["train"]]) == {0.0, 10.0}
    assert result["metrics"]["split"] == "label"
    assert result["feature_set"] in sets
    np.testing.assert_array_equal(result["feature_columns"], sets[result["feature_set"]])
    assert result["emulator"].n_features_in_ == len(result["feature_columns"])
    assert len(result["members"]) == 1


def test_fit_emulators_is_deterministic():
    X, Y, groups, label = snapshots(nonlinear)
    first = fit_emulators(X, Y, groups, label, dict(FAST, n_members=2))
    second = fit_emulators(X, Y, groups, label, dict(FAST, n_members=2))
    assert without_times(first["selection"]) == without_times(second["selection"]) and first["verdict"] == second["verdict"]
    assert np.array_equal(first["members"][1].predict(X[:, first["feature_columns"]]),
                          second["members"][1].predict(X[:, second["feature_columns"]]))


def test_verdict_says_plainly_when_the_network_loses_held_out():
    selection = {"selected": "network", "record": {"cv": {"n_splits": 5}, "best": {
        "network": {"feature_set": "row0", "params": {"hidden_layer_sizes": [32], "alpha": 10.0}, "score_mean": 0.8},
        "ridge": {"feature_set": "full", "params": {"alpha": 100.0}, "score_mean": 0.7}}}}
    metrics = {"split": "snapshot", "n_train": 80, "n_test": 20, "n_train_groups": 8, "n_test_groups": 2,
               "network": {"pearson_r": [0.5, 0.9]}, "ridge": {"pearson_r": [0.8, 0.8]}}
    text = _verdict(selection, metrics)
    assert "the network is worse than the linear baseline on the held-out rows (better on 1 of 2 targets)" in text
    assert "Selected the network (32 tanh, alpha 10, feature set 'row0')" in text
    metrics["network"]["pearson_r"] = [None, None]
    assert "undefined" in _verdict(selection, metrics)


def test_fit_settings_defaults_are_json_and_checked():
    settings = fit_settings()
    assert json.loads(json.dumps(settings)) == settings
    assert set(settings) == set(DEFAULT_FIT)
    assert fit_settings({"split": "label", "test_labels": 30})["test_labels"] == [30.0]


@pytest.mark.parametrize("settings, message", [
    ({"splitting": "snapshot"}, r"unknown fit settings key\(s\) \['splitting'\]"),
    ({"split": "random"}, r"`settings\['split'\]` must be one of snapshot, label, site"),
    ({"test_fraction": 0}, r"`settings\['test_fraction'\]` must lie in \(0, 1\)"),
    ({"test_labels": [30]}, r"`settings\['test_labels'\]` applies to split 'label' only"),
    ({"split": "label", "test_labels": ["high"]}, r"`settings\['test_labels'\]` must be a finite number"),
    ({"seed": 1.5}, r"`settings\['seed'\]` must be a whole number"),
    ({"cv_folds": 1}, r"`settings\['cv_folds'\]` must be >= 2"),
    ({"network_grid": {"alpha": []}}, r"`settings\['network_grid'\]\['alpha'\]` must be a non-empty list"),
    ({"ridge_grid": [1.0]}, r"`settings\['ridge_grid'\]` must be a dict"),
    ({"max_iter": 0}, r"`settings\['max_iter'\]` must be >= 1"),
    ({"n_members": 0}, r"`settings\['n_members'\]` must be >= 1"),
    ({"n_jobs": True}, r"`settings\['n_jobs'\]` must be a whole number"),
])
def test_fit_settings_errors_name_the_key(settings, message):
    with pytest.raises(ValueError, match=message):
        fit_settings(settings)


def test_fit_emulators_errors_name_the_argument():
    X, Y, groups, label = snapshots(linear, n_groups=4)
    with pytest.raises(ValueError, match="`groups` has shape"):
        fit_emulators(X, Y, groups[:-1], label, FAST)
    with pytest.raises(ValueError, match="`groups`: the training rows hold 3 snapshot"):
        fit_emulators(X, Y, groups, None, dict(FAST, cv_folds=5))
    with pytest.raises(ValueError, match="`label` has shape"):
        fit_emulators(X, Y, groups, label[:3], FAST)


@pytest.mark.parametrize("settings, message", [
    ({"hidden_layer_sizes": "abc"}, r"`parameters\['hidden_layer_sizes'\]` must be a non-empty list"),
    ({"activation": "swish"}, r"The 'activation' parameter of `parameters` must be a str among .*Got 'swish'"),
    ({"alpha": -1}, r"The 'alpha' parameter of `parameters` must be a float in the range \[0.0, inf\)\. Got -1"),
    ({"max_iter": 0}, r"The 'max_iter' parameter of `parameters` must be an int in the range \[1, inf\)\. Got 0"),
    ({"test_fraction": 1.5}, r"`parameters\['test_fraction'\]` must lie in \(0, 1\)"),
    ({"seed": -2}, r"`parameters\['seed'\]` must be >= 0"),
])
def test_checked_training_settings_in_the_core_name_the_key(settings, message):
    with pytest.raises(ValueError, match=message):
        checked_training_settings(settings, name="parameters")
    assert checked_training_settings({"hidden_layer_sizes": [8.0]})["hidden_layer_sizes"] == [8]
