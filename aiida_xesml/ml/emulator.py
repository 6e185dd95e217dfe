"""The emulator: descriptor -> spectral moments, with its Jacobian (SCIENCE.md §5).

``MLPEmulator`` is a z-score scaler on X, a scikit-learn ``MLPRegressor`` and a z-score scaler on
Y. After fitting, the network is held as plain numpy arrays and evaluated by this module's own
forward pass, so predictions are bit-identical before and after :meth:`MLPEmulator.to_arrays` /
:meth:`MLPEmulator.from_arrays` (no pickle anywhere). The Jacobian is analytic, through the layers.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError
from sklearn.neural_network import MLPRegressor

from .validation import as_finite_array, check_matching_rows

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
REQUIRED_ARRAYS = ("x_mean", "x_scale", "y_mean", "y_scale", "activation", "n_layers")


def _activate(name: str, z: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "logistic":
        return expit(z)
    return z


def _derivative(name: str, activated: np.ndarray) -> np.ndarray:
    """d activation / d z, written in terms of the activated values a = f(z)."""
    if name == "tanh":
        return 1.0 - activated**2
    if name == "relu":
        return (activated > 0).astype(float)
    if name == "logistic":
        return activated * (1.0 - activated)
    return np.ones_like(activated)


def _scale(values: np.ndarray) -> np.ndarray:
    """Standard deviation per column with zeros replaced by 1 (as StandardScaler does)."""
    scale = values.std(axis=0)
    return np.where(scale > 0, scale, 1.0)


class MLPEmulator(RegressorMixin, BaseEstimator):
    """z-scored MLP regression with an analytic input Jacobian and a pickle-free array form.

    :param hidden_layer_sizes: neurons per hidden layer (default (64, 64)).
    :param activation: 'tanh' (default), 'relu', 'logistic' or 'identity'.
    :param alpha: L2 penalty of the MLP.
    :param max_iter: optimizer iterations.
    :param solver: MLPRegressor solver; 'lbfgs' (default) is deterministic for a given seed and
        fits the few-thousand-sample data sets of this project well.
    :param random_state: seed of the weight initialization.

    Fitted attributes: ``coefs_``, ``intercepts_`` (lists of arrays, standardized units),
    ``x_mean_``, ``x_scale_``, ``y_mean_``, ``y_scale_``, ``n_features_in_``, ``n_outputs_``.
    """

    def __init__(self, hidden_layer_sizes=(64, 64), activation: str = "tanh", alpha: float = 1e-4,
                 max_iter: int = 2000, solver: str = "lbfgs", random_state: int | None = 0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.max_iter = max_iter
        self.solver = solver
        self.random_state = random_state

    # ----- fitting and construction -----------------------------------------------------------

    def fit(self, X, Y):
        """Standardize X and Y and fit the MLP. ``Y`` may be 1-D (one target). Returns self."""
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}")
        X = as_finite_array(X, "X", ndim=2)
        Y = as_finite_array(Y, "Y", ndim=(1, 2))
        Y = Y[:, None] if Y.ndim == 1 else Y
        check_matching_rows(X, "X", Y, "Y")
        x_mean, x_scale = X.mean(axis=0), _scale(X)
        y_mean, y_scale = Y.mean(axis=0), _scale(Y)
        mlp = MLPRegressor(hidden_layer_sizes=tuple(self.hidden_layer_sizes), activation=self.activation,
                           alpha=self.alpha, max_iter=self.max_iter, solver=self.solver,
                           random_state=self.random_state)
        mlp.fit((X - x_mean) / x_scale, (Y - y_mean) / y_scale)
        self._set_network(mlp.coefs_, mlp.intercepts_, self.activation, x_mean, x_scale, y_mean, y_scale)
        self.n_iter_ = int(mlp.n_iter_)
        return self

    def _set_network(self, coefs, intercepts, activation, x_mean, x_scale, y_mean, y_scale):
        self.coefs_ = [np.array(c, dtype=float) for c in coefs]
        self.intercepts_ = [np.array(b, dtype=float) for b in intercepts]
        self.activation_ = str(activation)
        self.x_mean_, self.x_scale_ = np.asarray(x_mean, float), np.asarray(x_scale, float)
        self.y_mean_, self.y_scale_ = np.asarray(y_mean, float), np.asarray(y_scale, float)
        self.n_features_in_ = int(self.coefs_[0].shape[0])
        self.n_outputs_ = int(self.coefs_[-1].shape[1])
        shapes_ok = (self.x_mean_.shape == self.x_scale_.shape == (self.n_features_in_,)
                     and self.y_mean_.shape == self.y_scale_.shape == (self.n_outputs_,))
        if not shapes_ok:
            raise ValueError("scaler arrays do not match the network's input/output sizes")

    @classmethod
    def from_sklearn(cls, mlp, x_scaler=None, y_scaler=None) -> "MLPEmulator":
        """Wrap an already fitted ``MLPRegressor`` (and optional fitted scalers with ``mean_`` and
        ``scale_``; None means identity). The MLP must work on the scaled data."""
        if not hasattr(mlp, "coefs_"):
            raise ValueError("`mlp` is not a fitted MLPRegressor (it has no coefs_)")
        n_in, n_out = mlp.coefs_[0].shape[0], mlp.coefs_[-1].shape[1]
        emulator = cls(hidden_layer_sizes=tuple(c.shape[1] for c in mlp.coefs_[:-1]), activation=mlp.activation)
        x_mean, x_scale = (np.zeros(n_in), np.ones(n_in)) if x_scaler is None else (x_scaler.mean_, x_scaler.scale_)
        y_mean, y_scale = (np.zeros(n_out), np.ones(n_out)) if y_scaler is None else (y_scaler.mean_, y_scaler.scale_)
        emulator._set_network(mlp.coefs_, mlp.intercepts_, mlp.activation, x_mean, x_scale, y_mean, y_scale)
        return emulator

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (numbers, and the activation name as a unicode array) that rebuild the
        emulator exactly with :meth:`from_arrays`; safe for ``np.savez`` / ``allow_pickle=False``."""
        self._check_fitted()
        arrays = {f"coef_{i}": c for i, c in enumerate(self.coefs_)}
        arrays.update({f"intercept_{i}": b for i, b in enumerate(self.intercepts_)})
        arrays.update({
            "x_mean": self.x_mean_, "x_scale": self.x_scale_, "y_mean": self.y_mean_, "y_scale": self.y_scale_,
            "activation": np.array(self.activation_), "n_layers": np.array(len(self.coefs_)),
            "hidden_layer_sizes": np.array([c.shape[1] for c in self.coefs_[:-1]], dtype=int),
        })
        return {name: np.array(value) for name, value in arrays.items()}

    @classmethod
    def from_arrays(cls, arrays) -> "MLPEmulator":
        """Rebuild a fitted emulator from :meth:`to_arrays` output."""
        missing = [name for name in REQUIRED_ARRAYS if name not in arrays]
        if missing:
            raise ValueError(f"`arrays` lacks {missing}; it must come from MLPEmulator.to_arrays()")
        n_layers = int(np.asarray(arrays["n_layers"]))
        missing = [f"{kind}_{i}" for i in range(n_layers) for kind in ("coef", "intercept") if f"{kind}_{i}" not in arrays]
        if missing:
            raise ValueError(f"`arrays` lacks the layer arrays {missing}")
        activation = str(np.asarray(arrays["activation"]))
        if activation not in ACTIVATIONS:
            raise ValueError(f"`arrays['activation']` must be one of {ACTIVATIONS}; got {activation!r}")
        coefs = [np.asarray(arrays[f"coef_{i}"], float) for i in range(n_layers)]
        emulator = cls(hidden_layer_sizes=tuple(c.shape[1] for c in coefs[:-1]), activation=activation)
        emulator._set_network(coefs, [np.asarray(arrays[f"intercept_{i}"], float) for i in range(n_layers)],
                              activation, arrays["x_mean"], arrays["x_scale"], arrays["y_mean"], arrays["y_scale"])
        return emulator

    # ----- evaluation ---------------------------------------------------------------------------

    def _check_fitted(self):
        if not hasattr(self, "coefs_"):
            raise NotFittedError("this MLPEmulator is not fitted yet; call fit() or build it with from_arrays()")

    def _check_x(self, X, name: str = "X") -> np.ndarray:
        self._check_fitted()
        X = as_finite_array(X, name, ndim=(1, 2))
        X = X[None, :] if X.ndim == 1 else X
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"`{name}` has {X.shape[1]} features; the emulator expects {self.n_features_in_}")
        return X

    def scale_x(self, X) -> np.ndarray:
        return (self._check_x(X) - self.x_mean_) / self.x_scale_

    def unscale_x(self, Xs) -> np.ndarray:
        return np.asarray(Xs) * self.x_scale_ + self.x_mean_

    def scale_y(self, Y) -> np.ndarray:
        self._check_fitted()
        Y = as_finite_array(Y, "Y", ndim=(1, 2))
        Y = Y[None, :] if Y.ndim == 1 else Y
        if Y.shape[1] != self.n_outputs_:
            raise ValueError(f"`Y` has {Y.shape[1]} targets; the emulator predicts {self.n_outputs_}")
        return (Y - self.y_mean_) / self.y_scale_

    def unscale_y(self, Ys) -> np.ndarray:
        return np.asarray(Ys) * self.y_scale_ + self.y_mean_

    def _forward(self, Xs: np.ndarray) -> list[np.ndarray]:
        """Activations of every layer (input first, linear output last), standardized units."""
        layers = [Xs]
        for i, (coef, intercept) in enumerate(zip(self.coefs_, self.intercepts_)):
            z = layers[-1] @ coef + intercept
            layers.append(z if i == len(self.coefs_) - 1 else _activate(self.activation_, z))
        return layers

    def predict_scaled(self, Xs) -> np.ndarray:
        """Network output (n, n_out) for standardized inputs (n, n_in), in standardized Y units."""
        self._check_fitted()
        return self._forward(np.asarray(Xs, dtype=float))[-1]

    def forward_backward_scaled(self, Xs, residual_fn):
        """Output ``Ys`` (n, n_out) for standardized ``Xs`` and the input gradient of a loss.

        ``residual_fn(Ys)`` returns (loss, G) with G = d loss / d Ys (n, n_out); the result is
        (loss, Ys, d loss / d Xs (n, n_in)). One forward and one backward pass: what ECA calls
        hundreds of times.
        """
        layers = self._forward(np.asarray(Xs, dtype=float))
        loss, grad = residual_fn(layers[-1])
        for i in range(len(self.coefs_) - 1, -1, -1):
            if i < len(self.coefs_) - 1:
                grad = grad * _derivative(self.activation_, layers[i + 1])
            grad = grad @ self.coefs_[i].T
        return loss, layers[-1], grad

    def vjp_scaled(self, Xs, G) -> np.ndarray:
        """Vector–Jacobian product: G (n, n_out) backpropagated to the standardized inputs (n, n_in)."""
        G = np.asarray(G, dtype=float)
        return self.forward_backward_scaled(Xs, lambda _: (0.0, G))[2]

    def jacobian_scaled(self, Xs) -> np.ndarray:
        """d Ys / d Xs (n, n_out, n_in) in standardized units."""
        self._check_fitted()
        layers = self._forward(np.asarray(Xs, dtype=float))
        jac = np.broadcast_to(self.coefs_[-1].T, (len(layers[0]),) + self.coefs_[-1].T.shape)
        for i in range(len(self.coefs_) - 2, -1, -1):
            jac = jac * _derivative(self.activation_, layers[i + 1])[:, None, :]
            jac = jac @ self.coefs_[i].T
        return np.array(jac)

    def predict(self, X) -> np.ndarray:
        """Predicted targets (n, n_out) in Y units for X (n, n_in), or (1, n_out) for one sample."""
        return self.unscale_y(self.predict_scaled(self.scale_x(X)))

    def jacobian(self, X) -> np.ndarray:
        """Analytic d Y / d X (n, n_out, n_in) in original units (chain rule through the scalers)."""
        J = self.jacobian_scaled(self.scale_x(X))
        return J * self.y_scale_[None, :, None] / self.x_scale_[None, None, :]

    def metrics(self, X, Y) -> dict[str, np.ndarray]:
        """Held-out metrics per target: ``pearson_r``, ``r2`` and ``rmse`` (Y units)."""
        X = self._check_x(X)
        Y = as_finite_array(Y, "Y", ndim=(1, 2))
        Y = Y[:, None] if Y.ndim == 1 else Y
        check_matching_rows(X, "X", Y, "Y")
        P = self.predict(X)
        residual = Y - P
        ss_res = (residual**2).sum(axis=0)
        ss_tot = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
        yc, pc = Y - Y.mean(axis=0), P - P.mean(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (yc * pc).sum(axis=0) / np.sqrt((yc**2).sum(axis=0) * (pc**2).sum(axis=0))
            r2 = 1.0 - ss_res / ss_tot
        return {"pearson_r": r, "r2": r2, "rmse": np.sqrt(ss_res / len(Y))}

    def score(self, X, Y) -> float:
        """Mean R² over the targets (scikit-learn's convention for regressors)."""
        return float(np.nanmean(self.metrics(X, Y)["r2"]))
