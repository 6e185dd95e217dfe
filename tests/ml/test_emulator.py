"""MLPEmulator: Jacobian, pickle-free round trip, sklearn wrapping, accuracy and errors."""

import io

import numpy as np
import pytest
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler

from aiida_xesml.ml.emulator import MLPEmulator


def smooth_data(n=400, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * [1, 2, 0.5, 3, 1][:d] + 10.0
    Y = np.column_stack([np.sin(X[:, 0]) + X[:, 1] / 3, X[:, 2] * X[:, 3] / 5, np.tanh(X[:, 4] - 10)])
    return X, Y


@pytest.mark.parametrize("activation", ["tanh", "logistic", "relu", "identity"])
def test_jacobian_matches_finite_differences(activation):
    X, Y = smooth_data(200)
    emulator = MLPEmulator(hidden_layer_sizes=(16, 8), activation=activation, max_iter=200).fit(X, Y)
    points = X[:5]
    analytic = emulator.jacobian(points)
    h = 1e-5 * emulator.x_scale_
    numeric = np.stack([(emulator.predict(points + np.eye(5)[j] * h[j]) - emulator.predict(points - np.eye(5)[j] * h[j]))
                        / (2 * h[j]) for j in range(5)], axis=-1)
    assert analytic.shape == (5, 3, 5)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7 * np.abs(numeric).max())


def test_vjp_equals_jacobian_transpose_product():
    X, Y = smooth_data(100)
    emulator = MLPEmulator(hidden_layer_sizes=(8,), max_iter=100).fit(X, Y)
    Xs = emulator.scale_x(X[:7])
    G = np.random.default_rng(1).normal(size=(7, 3))
    np.testing.assert_allclose(emulator.vjp_scaled(Xs, G), np.einsum("nm,nmd->nd", G, emulator.jacobian_scaled(Xs)))


def test_array_round_trip_is_bit_identical_and_pickle_free():
    X, Y = smooth_data()
    emulator = MLPEmulator(hidden_layer_sizes=(12, 12), max_iter=200).fit(X, Y)
    arrays = emulator.to_arrays()
    assert all(np.asarray(value).dtype != object for value in arrays.values())
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as loaded:
        restored = MLPEmulator.from_arrays(dict(loaded))
    assert np.array_equal(restored.predict(X), emulator.predict(X))
    assert np.array_equal(restored.jacobian(X[:3]), emulator.jacobian(X[:3]))


def test_from_sklearn_agrees_with_the_fitted_regressor():
    X, Y = smooth_data()
    x_scaler, y_scaler = StandardScaler().fit(X), StandardScaler().fit(Y)
    mlp = MLPRegressor(hidden_layer_sizes=(10,), max_iter=300, random_state=0).fit(
        x_scaler.transform(X), y_scaler.transform(Y))
    emulator = MLPEmulator.from_sklearn(mlp, x_scaler, y_scaler)
    expected = y_scaler.inverse_transform(mlp.predict(x_scaler.transform(X)))
    np.testing.assert_allclose(emulator.predict(X), expected, rtol=1e-12, atol=1e-12)


def test_held_out_accuracy_on_a_smooth_function():
    X, Y = smooth_data(1500, seed=2)
    emulator = MLPEmulator(hidden_layer_sizes=(32, 32), max_iter=1000).fit(X[:1200], Y[:1200])
    metrics = emulator.metrics(X[1200:], Y[1200:])
    assert np.all(metrics["pearson_r"] > 0.99), metrics
    assert emulator.score(X[1200:], Y[1200:]) == pytest.approx(np.mean(metrics["r2"]))


def test_constant_column_does_not_produce_nan():
    X, Y = smooth_data(200)
    X[:, 2] = 4.0
    emulator = MLPEmulator(hidden_layer_sizes=(8,), max_iter=100).fit(X, Y)
    assert np.all(np.isfinite(emulator.predict(X)))


def test_errors_name_the_argument():
    X, Y = smooth_data(50)
    with pytest.raises(ValueError, match="`X` has 50 rows"):
        MLPEmulator().fit(X, Y[:40])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="`X` holds 1 NaN"):
        MLPEmulator().fit(bad, Y)
    emulator = MLPEmulator(hidden_layer_sizes=(4,), max_iter=50).fit(X, Y)
    with pytest.raises(ValueError, match="`X` has 4 features; the emulator expects 5"):
        emulator.predict(X[:, :4])
    with pytest.raises(ValueError, match="lacks"):
        MLPEmulator.from_arrays({"x_mean": np.zeros(5)})
    with pytest.raises(ValueError, match="activation"):
        MLPEmulator(activation="swish").fit(X, Y)


# ----- the linear baseline ---------------------------------------------------------------------

def test_linear_emulator_agrees_with_an_independent_sklearn_ridge_pipeline():
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    from aiida_xesml.ml.emulator import LinearEmulator

    X, Y = smooth_data(300)
    reference = TransformedTargetRegressor(make_pipeline(StandardScaler(), Ridge(alpha=3.0)),
                                           transformer=StandardScaler()).fit(X, Y)
    emulator = LinearEmulator(alpha=3.0).fit(X, Y)
    np.testing.assert_allclose(emulator.predict(X), reference.predict(X), rtol=1e-10, atol=1e-10)
    assert len(emulator.coefs_) == 1 and emulator.activation_ == "identity"


def test_linear_emulator_is_exact_on_linear_data_and_its_jacobian_is_the_slope():
    from aiida_xesml.ml.emulator import LinearEmulator

    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 4)) * [1, 10, 0.1, 3] + 5
    slope = rng.normal(size=(4, 2))
    Y = X @ slope + [1.0, -2.0]
    emulator = LinearEmulator(alpha=1e-9).fit(X, Y)
    np.testing.assert_allclose(emulator.predict(X), Y, atol=1e-6)
    J = emulator.jacobian(X[:3])
    np.testing.assert_allclose(J, np.broadcast_to(slope.T, (3, 2, 4)), rtol=1e-6)


def test_linear_emulator_arrays_load_as_an_mlp_emulator_bit_identically():
    from aiida_xesml.ml.emulator import LinearEmulator

    X, Y = smooth_data(150)
    emulator = LinearEmulator(alpha=0.5).fit(X, Y)
    arrays = emulator.to_arrays()
    as_network = MLPEmulator.from_arrays(arrays)
    as_linear = LinearEmulator.from_arrays(arrays)
    for restored in (as_network, as_linear):
        assert np.array_equal(restored.predict(X), emulator.predict(X))
        assert np.array_equal(restored.jacobian(X[:4]), emulator.jacobian(X[:4]))
    assert type(as_linear) is LinearEmulator
    with pytest.raises(ValueError, match="hidden layers"):
        LinearEmulator.from_arrays(MLPEmulator(hidden_layer_sizes=(4,), max_iter=20).fit(X, Y).to_arrays())
    with pytest.raises(ValueError, match=r"The 'alpha' parameter of LinearEmulator must be a float in the range \[0.0, inf\)"):
        LinearEmulator(alpha=-1).fit(X, Y)


def test_linear_emulator_drives_eca():
    from aiida_xesml.ml.eca import ECA
    from aiida_xesml.ml.emulator import LinearEmulator

    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 6))
    Y = X[:, :2] @ rng.normal(size=(2, 3))  # spectra respond to a 2-D subspace only
    eca = ECA(LinearEmulator(alpha=1e-6).fit(X, Y), n_components=2).fit(X, Y)
    assert eca.covered_variance_[-1] > 0.999


def test_one_alpha_default_for_the_emulator_and_the_training_settings():
    from aiida_xesml.ml.emulator import DEFAULT_ALPHA
    from aiida_xesml.ml.training import DEFAULT_TRAINING

    assert MLPEmulator().alpha == DEFAULT_TRAINING["alpha"] == DEFAULT_ALPHA


# ----- ensembles -------------------------------------------------------------------------------

def test_ensemble_arrays_round_trip_bit_identically_without_pickles():
    import re

    from aiida_xesml.ml.emulator import LinearEmulator, ensemble_from_arrays, ensemble_predict, ensemble_to_arrays

    X, Y = smooth_data(120)
    members = [MLPEmulator(hidden_layer_sizes=(6,), max_iter=50, random_state=i).fit(X, Y) for i in range(2)]
    members.append(LinearEmulator().fit(X, Y))
    arrays = ensemble_to_arrays(members)
    assert all(re.fullmatch(r"member_\d+__[0-9A-Za-z_]+", key) for key in arrays)  # valid AiiDA array names
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as loaded:
        restored = ensemble_from_arrays(dict(loaded))
    assert len(restored) == 3
    for member, copy in zip(members, restored):
        assert np.array_equal(copy.predict(X), member.predict(X))
    mean, std = ensemble_predict(restored, X[:5])
    predictions = np.stack([m.predict(X[:5]) for m in members])
    np.testing.assert_allclose(mean, predictions.mean(axis=0))
    np.testing.assert_allclose(std, predictions.std(axis=0, ddof=1))
    assert np.all(ensemble_predict(members[:1], X[:5])[1] == 0)


def test_ensemble_errors_name_the_argument():
    from aiida_xesml.ml.emulator import ensemble_from_arrays, ensemble_predict, ensemble_to_arrays

    X, Y = smooth_data(60)
    arrays = ensemble_to_arrays([MLPEmulator(hidden_layer_sizes=(4,), max_iter=20).fit(X, Y)])
    with pytest.raises(ValueError, match="`members` is empty"):
        ensemble_to_arrays([])
    with pytest.raises(ValueError, match=r"`members\[0\]` is a str"):
        ensemble_to_arrays(["not an emulator"])
    with pytest.raises(ValueError, match="not of the form"):
        ensemble_from_arrays({"x_mean": np.zeros(5)})
    with pytest.raises(ValueError, match=r"holds members \[1\]"):
        ensemble_from_arrays({key.replace("member_0", "member_1"): value for key, value in arrays.items()})
    with pytest.raises(ValueError, match="`members` is empty"):
        ensemble_predict([], X)
