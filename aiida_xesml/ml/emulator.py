"""The emulator: descriptor -> spectral moments, with its Jacobian (SCIENCE.md §5).

``MLPEmulator`` is a z-score scaler on X, a scikit-learn ``MLPRegressor`` and a z-score scaler on
Y. After fitting, the network is held as plain numpy arrays and evaluated by this module's own
forward pass, so predictions are bit-identical before and after :meth:`MLPEmulator.to_arrays` /
:meth:`MLPEmulator.from_arrays` (no pickle anywhere). The Jacobian is analytic, through the layers.

``LinearEmulator`` is the linear baseline: ridge regression on the same z-scored X and Y, held as
a network with one identity layer, so it is an ``MLPEmulator`` in every respect (prediction,
Jacobian, arrays, ECA). An ensemble of emulators (bootstrap members) is stored as one flat dict of
arrays (:func:`ensemble_to_arrays`) and gives a mean and a spread (:func:`ensemble_predict`).
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor
from sklearn.utils._param_validation import Interval, StrOptions

from .validation import as_finite_array, check_matching_rows, check_training_rows

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
REQUIRED_ARRAYS = ("x_mean", "x_scale", "y_mean", "y_scale", "activation", "n_layers")
#: The one default L2 penalty of the network (standardized units), shared by :class:`MLPEmulator`
#: and :data:`aiida_xesml.ml.training.DEFAULT_TRAINING`.
DEFAULT_ALPHA = 1e-3
#: Keys of a member's arrays in :func:`ensemble_to_arrays`: ``member_<i>__<name>``. Not a dot:
#: AiiDA array names may hold only letters, digits and underscores.
MEMBER_PREFIX = "member_"
MEMBER_SEPARATOR = "__"


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


def regression_metrics(Y, P) -> dict[str, np.ndarray]:
    """Per-target ``pearson_r``, ``r2`` and ``rmse`` (Y units) of predictions P against truth Y,
    both (n, m); NaN where r or R² is undefined (a target constant over the rows)."""
    Y, P = np.asarray(Y, dtype=float), np.asarray(P, dtype=float)
    residual = Y - P
    ss_res = (residual**2).sum(axis=0)
    yc, pc = Y - Y.mean(axis=0), P - P.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (yc * pc).sum(axis=0) / np.sqrt((yc**2).sum(axis=0) * (pc**2).sum(axis=0))
        r2 = 1.0 - ss_res / (yc**2).sum(axis=0)
    return {"pearson_r": r, "r2": r2, "rmse": np.sqrt(ss_res / len(Y))}


class MLPEmulator(RegressorMixin, BaseEstimator):
    """z-scored MLP regression with an analytic input Jacobian and a pickle-free array form.

    :param hidden_layer_sizes: neurons per hidden layer (default (64, 64)).
    :param activation: 'tanh' (default), 'relu', 'logistic' or 'identity'.
    :param alpha: L2 penalty of the MLP (default :data:`DEFAULT_ALPHA`).
    :param max_iter: optimizer iterations.
    :param solver: MLPRegressor solver; 'lbfgs' (default) is deterministic for a given seed and
        fits the few-thousand-sample data sets of this project well.
    :param random_state: seed of the weight initialization.

    Fitted attributes: ``coefs_``, ``intercepts_`` (lists of arrays, standardized units),
    ``x_mean_``, ``x_scale_``, ``y_mean_``, ``y_scale_``, ``n_features_in_``, ``n_outputs_``.

    The parameters' rules are :attr:`_parameter_constraints` (scikit-learn's), checked by :meth:`fit`; the
    training settings of the shell are checked against the same constraints
    (:func:`aiida_xesml.ml.training.checked_training_settings`).
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like"],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "solver": [StrOptions({"lbfgs", "adam", "sgd"})],
        "random_state": ["random_state"],
    }

    def __init__(self, hidden_layer_sizes=(64, 64), activation: str = "tanh", alpha: float = DEFAULT_ALPHA,
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
        self._validate_params()
        X, Y, _ = check_training_rows(X, Y, y_ndim=(1, 2))
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
    def from_sklearn(cls, mlp, x_scaler=None, y_scaler=None) -> MLPEmulator:
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
    def from_arrays(cls, arrays) -> MLPEmulator:
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
        return regression_metrics(Y, self.predict(X))

    def score(self, X, Y) -> float:
        """Mean R² over the targets (scikit-learn's convention for regressors)."""
        return float(np.nanmean(self.metrics(X, Y)["r2"]))


class LinearEmulator(MLPEmulator):
    """The linear baseline: ridge regression from z-scored X to z-scored Y.

    Fitted with scikit-learn's ``Ridge`` and held as a network with a single identity layer
    (``coefs_ = [W]``, ``intercepts_ = [b]``, activation ``"identity"``), so prediction, the
    Jacobian (constant, ``W`` through the scalers), ECA and the array form are the ones of
    :class:`MLPEmulator`; its arrays load with :meth:`MLPEmulator.from_arrays` too.

    :param alpha: ridge penalty on the coefficients in standardized units (default 1.0, >= 0),
        as scikit-learn's ``Ridge`` defines it (added to the sum of squared residuals over the
        rows, so its effect shrinks as the number of rows grows).
    """

    _parameter_constraints: dict = {"alpha": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def fit(self, X, Y):
        """Standardize X and Y and fit the ridge regression. ``Y`` may be 1-D. Returns self."""
        self._validate_params()
        X, Y, _ = check_training_rows(X, Y, y_ndim=(1, 2))
        x_mean, x_scale = X.mean(axis=0), _scale(X)
        y_mean, y_scale = Y.mean(axis=0), _scale(Y)
        ridge = Ridge(alpha=float(self.alpha)).fit((X - x_mean) / x_scale, (Y - y_mean) / y_scale)
        coef = np.atleast_2d(ridge.coef_).T  # Ridge holds (n_targets, n_features)
        self._set_network([coef], [np.atleast_1d(ridge.intercept_)], "identity", x_mean, x_scale, y_mean, y_scale)
        return self

    @classmethod
    def from_arrays(cls, arrays) -> LinearEmulator:
        """Rebuild a fitted baseline from ``to_arrays()`` output (one identity layer)."""
        network = MLPEmulator.from_arrays(arrays)
        if len(network.coefs_) != 1 or network.activation_ != "identity":
            raise ValueError("`arrays` hold a network with hidden layers; load it with MLPEmulator.from_arrays")
        emulator = cls()
        emulator._set_network(network.coefs_, network.intercepts_, "identity", network.x_mean_, network.x_scale_,
                              network.y_mean_, network.y_scale_)
        return emulator


def ensemble_to_arrays(members) -> dict[str, np.ndarray]:
    """One flat dict of plain arrays for a list of fitted emulators, keys ``member_<i>__<name>``.

    Each member's arrays are its :meth:`MLPEmulator.to_arrays`. No pickle: safe for ``np.savez``
    with ``allow_pickle=False`` and valid AiiDA array names. :func:`ensemble_from_arrays` inverts it.
    """
    members = list(members)
    if not members:
        raise ValueError("`members` is empty; give at least one fitted emulator")
    arrays = {}
    for i, member in enumerate(members):
        if not isinstance(member, MLPEmulator):
            raise ValueError(f"`members[{i}]` is a {type(member).__name__}, not an MLPEmulator")
        arrays.update({f"{MEMBER_PREFIX}{i}{MEMBER_SEPARATOR}{name}": value for name, value in member.to_arrays().items()})
    return arrays


def ensemble_from_arrays(arrays) -> list[MLPEmulator]:
    """The emulators of :func:`ensemble_to_arrays` output, in member order (as :class:`MLPEmulator`)."""
    by_member: dict[int, dict] = {}
    for key, value in dict(arrays).items():
        head, separator, name = key.partition(MEMBER_SEPARATOR)
        if not (head.startswith(MEMBER_PREFIX) and separator and name and head[len(MEMBER_PREFIX):].isdigit()):
            raise ValueError(f"`arrays` key {key!r} is not of the form '{MEMBER_PREFIX}<i>{MEMBER_SEPARATOR}<name>'; "
                             "it must come from ensemble_to_arrays()")
        by_member.setdefault(int(head[len(MEMBER_PREFIX):]), {})[name] = value
    if not by_member:
        raise ValueError("`arrays` is empty; it must come from ensemble_to_arrays()")
    if sorted(by_member) != list(range(len(by_member))):
        raise ValueError(f"`arrays` holds members {sorted(by_member)}; expected 0..{len(by_member) - 1} without gaps")
    return [MLPEmulator.from_arrays(by_member[i]) for i in range(len(by_member))]


def ensemble_predict(members, X) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of the members' predictions for X (n, n_in), in Y units.

    :returns: ``(mean, std)``, each (n, n_out); ``std`` is the sample standard deviation over the
        members (ddof = 1; zeros for a single member): the emulator part of an error bar.
    """
    members = list(members)
    if not members:
        raise ValueError("`members` is empty; give at least one fitted emulator")
    predictions = np.stack([member.predict(X) for member in members])
    std = predictions.std(axis=0, ddof=1) if len(members) > 1 else np.zeros(predictions.shape[1:])
    return predictions.mean(axis=0), std
