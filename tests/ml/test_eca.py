"""ECA: the analytic linear case, recovery of a hidden subspace, inverse, round trip, errors."""

import numpy as np
import pytest
from scipy.linalg import subspace_angles

from aiida_xesml.ml.eca import ECA
from aiida_xesml.ml.emulator import MLPEmulator


def linear_emulator(A):
    """y = x A with identity scalers: an MLP with no hidden layer and identity activation."""
    d, m = A.shape
    return MLPEmulator.from_arrays({
        "coef_0": A, "intercept_0": np.zeros(m), "n_layers": np.array(1), "activation": np.array("identity"),
        "x_mean": np.zeros(d), "x_scale": np.ones(d), "y_mean": np.zeros(m), "y_scale": np.ones(m),
    })


def test_linear_emulator_matches_the_analytic_answer():
    rng = np.random.default_rng(0)
    d, m, n = 8, 5, 4000
    A = rng.normal(size=(d, m))
    X = np.linalg.qr(rng.normal(size=(n, d)))[0] * np.sqrt(n)  # exactly white: Xᵀ X = n I
    X -= X.mean(axis=0)
    X = np.linalg.qr(X)[0] * np.sqrt(n)
    Y = X @ A
    eca = ECA(linear_emulator(A), n_components=3).fit(X, Y)
    # Best k-dim subspace for white X and linear map: top-k eigenvectors of A Aᵀ.
    values, vectors = np.linalg.eigh(A @ A.T)
    values, vectors = values[::-1], vectors[:, ::-1]
    for k in (1, 2, 3):
        assert np.sin(subspace_angles(eca.components_[:k].T, vectors[:, :k])).max() < 1e-3
    np.testing.assert_allclose(eca.covered_variance_, np.cumsum(values[:3]) / values.sum(), atol=1e-6)
    np.testing.assert_allclose(eca.components_ @ eca.components_.T, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(eca.covered_variance_x_, np.arange(1, 4) / d, atol=1e-6)


@pytest.fixture(scope="module")
def hidden_problem():
    rng = np.random.default_rng(3)
    n, d = 3000, 20
    X = rng.normal(size=(n, d)) * 2.0 + 1.0
    hidden = np.linalg.qr(rng.normal(size=(d, 2)))[0]
    t = ((X - 1.0) / 2.0) @ hidden
    Y = np.column_stack([t[:, 0], t[:, 1], np.tanh(t[:, 0] + t[:, 1]), t[:, 0] * t[:, 1], np.sin(t[:, 1])])
    emulator = MLPEmulator(hidden_layer_sizes=(32, 32), max_iter=800).fit(X, Y)
    eca = ECA(emulator, n_components=3).fit(X, Y)
    return X, Y, hidden, emulator, eca


def test_recovers_a_known_two_dimensional_active_subspace(hidden_problem):
    X, Y, hidden, emulator, eca = hidden_problem
    # ECA works in the emulator's standardized X space; the hidden directions there are the same
    # because every column has the same scale here.
    assert np.sin(subspace_angles(eca.components_[:2].T, hidden)).max() < 0.05
    assert eca.covered_variance_[1] > 0.98
    assert np.all(np.diff(eca.covered_variance_) >= -1e-9)


def test_inverse_then_reconstruct_recovers_scores_in_the_subspace(hidden_problem):
    X, Y, hidden, emulator, eca = hidden_problem
    rng = np.random.default_rng(5)
    T = np.column_stack([rng.uniform(-1, 1, size=(20, 2)), np.zeros(20)])
    x = eca.expand(T)
    np.testing.assert_allclose(eca.transform(x), T, atol=1e-10)
    y = emulator.predict(x)
    recovered = eca.inverse(y)
    np.testing.assert_allclose(recovered[:, :2], T[:, :2], atol=0.05)
    np.testing.assert_allclose(emulator.predict(eca.reconstruct(y)), y, atol=0.02)


def test_array_round_trip(hidden_problem):
    X, Y, hidden, emulator, eca = hidden_problem
    restored = ECA.from_arrays(eca.to_arrays())
    assert np.array_equal(restored.transform(X[:10]), eca.transform(X[:10]))
    assert np.array_equal(restored.covered_variance_, eca.covered_variance_)


def test_errors_name_the_argument(hidden_problem):
    X, Y, hidden, emulator, eca = hidden_problem
    with pytest.raises(ValueError, match="n_components"):
        ECA(emulator, n_components=21).fit(X, Y)
    with pytest.raises(ValueError, match="`emulator` expects 20 input features but `X` has 19"):
        ECA(emulator).fit(X[:, :19], Y)
    with pytest.raises(ValueError, match="`emulator` predicts 5 targets but `Y` has 4"):
        ECA(emulator).fit(X, Y[:, :4])
    with pytest.raises(ValueError, match="not fitted"):
        ECA(MLPEmulator()).fit(X, Y)
