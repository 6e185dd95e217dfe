"""Learning curves grow by whole snapshots and never train on the held-out snapshots."""

import json

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin

from aiida_xesml.ml.emulator import LinearEmulator
from aiida_xesml.ml.learning_curve import learning_curve, learning_curve_plot_data

CALLS = []


class Recorder(RegressorMixin, BaseEstimator):
    """Remembers which snapshots (column 0 of X holds the id) it was fitted on and asked about."""

    def fit(self, X, Y):
        CALLS.append(("fit", set(X[:, 0].astype(int))))
        self.n_outputs_ = Y.shape[1]
        return self

    def predict(self, X):
        CALLS.append(("predict", set(X[:, 0].astype(int))))
        return np.zeros((len(X), self.n_outputs_))


def grouped_linear(n_groups=20, per_group=6, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), per_group)
    X = rng.normal(size=(len(groups), 8))
    Y = X[:, :2] @ np.array([[1.0, 0.5], [-0.5, 1.0]]) + noise * rng.normal(size=(len(X), 2))
    return X, Y, groups


def test_training_subsets_are_whole_snapshots_disjoint_from_the_held_out_ones():
    X, Y, groups = grouped_linear()
    X[:, 0] = groups
    CALLS.clear()
    curve = learning_curve(Recorder(), X, Y, groups, train_fractions=[0.25, 0.5, 1.0], n_repeats=2, seed=1)
    fits = [c[1] for c in CALLS if c[0] == "fit"]
    predicts = [c[1] for c in CALLS if c[0] == "predict"]
    assert len(fits) == len(predicts) == 6  # 3 sizes x 2 repeats; one prediction serves all scorers
    for fitted, asked in zip(fits, predicts):
        assert fitted.isdisjoint(asked)
    np.testing.assert_array_equal(curve["n_train_snapshots"], [4, 8, 16])
    assert np.all(curve["n_train_sites"] == curve["n_train_snapshots"][:, None] * 6)
    # the subsets of one repeat are nested: each size adds snapshots
    assert fits[0] < fits[1] < fits[2] and fits[3] < fits[4] < fits[5]
    assert curve["pearson_r"].shape == (3, 2, 2) and np.all(np.isnan(curve["pearson_r"]))  # constant predictions


def test_ridge_skill_grows_with_training_size_toward_the_noise_ceiling():
    X, Y, groups = grouped_linear(n_groups=30, per_group=5)
    curve = learning_curve(LinearEmulator(alpha=1.0), X, Y, groups, train_fractions=[0.05, 1.0], n_repeats=3)
    r = curve["pearson_r"].mean(axis=1)  # (sizes, targets)
    assert np.all(r[1] > r[0])
    signal = np.array([np.sqrt(1.25), np.sqrt(1.25)])
    ceiling = signal / np.sqrt(signal**2 + 0.3**2)  # r of the exact linear model against noisy truth
    np.testing.assert_allclose(r[1], ceiling, atol=0.05)
    plot = learning_curve_plot_data(curve, ["a", "b"], label="ridge")
    json.dumps(plot)
    assert [s["name"] for s in plot["series"]] == ["a", "b"] and plot["x"][0] < plot["x"][1]
    assert plot["series"][0]["mean"][1] == pytest.approx(r[1, 0])


def test_learning_curve_errors_name_the_argument():
    X, Y, groups = grouped_linear(n_groups=4)
    with pytest.raises(ValueError, match="`groups` holds 2 snapshot"):
        learning_curve(LinearEmulator(), X[:12], Y[:12], groups[:12])
    with pytest.raises(ValueError, match=r"`train_fractions` must lie in \(0, 1\]"):
        learning_curve(LinearEmulator(), X, Y, groups, train_fractions=[0.0, 1.0])
    with pytest.raises(ValueError, match="`test_fraction`"):
        learning_curve(LinearEmulator(), X, Y, groups, test_fraction=1.0)
    with pytest.raises(ValueError, match="`groups` has shape"):
        learning_curve(LinearEmulator(), X, Y, groups[:-1])
    curve = learning_curve(LinearEmulator(), X, Y, groups, n_repeats=1)
    with pytest.raises(ValueError, match="`target_names` has 1 names"):
        learning_curve_plot_data(curve, ["a"])
    with pytest.raises(ValueError, match="`metric`"):
        learning_curve_plot_data(curve, metric="rmse")
