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
