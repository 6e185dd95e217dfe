"""Emulator-based component analysis (ECA, SCIENCE.md §6).

In standardized descriptor space (dimension d) find orthonormal directions v_1..v_k, one at a
time, that explain most of the variance of the standardized targets through the emulator f. With V
the directions found so far and v the candidate (unit norm, orthogonal to V), a sample projects to
P(x) = (x·Vᵀ)V + (x·v)v and the loss is the missing variance

    L(v) = Σ_i ||y_i − f(P(x_i))||² / Σ_i ||y_i − ȳ||²;   covered variance = 1 − L.

How the fit is made fast (docs/topics/emulator-eca.md has the measured figures):

- **One cheap pass per evaluation.** P(x) enters the network only through its first layer, and
  P(x)·W₁ = (x·Vᵀ)(V W₁) + (x·v)(vᵀW₁): the fixed part is computed once per component, the
  candidate adds a rank-one term. An evaluation of L and of its exact gradient is one forward and
  one backward pass through the hidden layers (float64), over blocks of rows.
- **Starts from the active subspace.** The leading eigenvectors of the emulator's mean JᵀJ,
  projected on the orthogonal complement of V (a projector I − VᵀV, no null-space basis), are the
  first starts. Random starts are screened only when the two leading active-subspace starts end in
  different optima; when they agree the landscape gives no sign of a better basin.
- **Coarse to fine.** Starts are screened on a small seeded subsample, and the best one is refined
  on nested subsamples four times larger, then on all rows. A small quasi-Newton (L-BFGS) carries
  its curvature pairs from one level to the next, so each finer level takes a few steps.
- **Tolerances in covered-variance units.** A level stops when the quasi-Newton model predicts
  less than ``tol`` (times the level's subsampling factor) of further gain.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval
from threadpoolctl import threadpool_limits

from .emulator import _activate, _derivative
from .progress import progress
from .validation import as_finite_array, check_matching_rows

_BLOCK_ROWS = 1024  # rows per block of an evaluation (bounds the work arrays)
_JACOBIAN_ROWS = 500  # rows whose emulator Jacobians give the active-subspace starts
_SCREEN_MAX_ITER = 50  # quasi-Newton iterations per start on the screening subsample
_LEVEL_GROWTH = 4  # each refinement level has this many times more rows than the previous one


def _level_sizes(n_rows: int, n_screen: int) -> list[int]:
    """Row counts of the nested levels: n_screen, 4 n_screen, ... and finally all rows."""
    sizes = [min(n_rows, n_screen)]
    while sizes[-1] < n_rows:
        grown = _LEVEL_GROWTH * sizes[-1]
        sizes.append(n_rows if 2 * grown > n_rows else grown)
    return sizes


class _ProjectionLoss:
    """L(v) and its gradient d L / d v (d,) on fixed rows, for fixed components V.

    ``first_fixed`` (n, h₁) is (x·Vᵀ)(V W₁) + b₁, the part of the first layer's input that does
    not depend on the candidate v. ``total`` is Σ_i ||y_i − ȳ||² over these rows.
    """

    def __init__(self, emulator, Xs, Ys, first_fixed, total):
        self.coefs, self.intercepts = emulator.coefs_, emulator.intercepts_
        self.activation = emulator.activation_
        self.Xs, self.Ys, self.first_fixed, self.total = Xs, Ys, first_fixed, float(total)
        self.n_evaluations = 0
        # Work arrays reused by every block, so that no layer allocates a fresh half-megabyte
        # temporary (in some allocator states each costs more in page faults than its arithmetic).
        rows = min(len(Xs), _BLOCK_ROWS)
        self._layers = [np.empty((rows, coef.shape[1])) for coef in self.coefs]
        self._grads = [np.empty((rows, coef.shape[1])) for coef in self.coefs[:-1]]
        self._scratch = [np.empty((rows, coef.shape[1])) for coef in self.coefs[:-1]]

    def _block(self, Xs, Ys, first_fixed, v, c):
        coefs, intercepts, activation = self.coefs, self.intercepts, self.activation
        n = len(Xs)
        layers = [buffer[:n] for buffer in self._layers]
        xv = Xs @ v
        np.multiply(xv[:, None], c, out=layers[0])
        layers[0] += first_fixed
        last = len(coefs) - 1
        for i in range(len(coefs)):
            if i > 0:
                np.matmul(layers[i - 1], coefs[i], out=layers[i])
                layers[i] += intercepts[i]
            if i < last:
                _activate_in_place(activation, layers[i])
        r = layers[-1]
        r -= Ys
        loss = float(np.vdot(r, r))
        g = r  # backpropagated to d (Σ r²) / d (first layer input), up to the factor 2
        for i in range(last, 0, -1):
            g = np.matmul(g, coefs[i].T, out=self._grads[i - 1][:n])
            _times_derivative(activation, g, layers[i - 1], self._scratch[i - 1][:n])
        # first layer input = fixed + (x·v) c with c = W₁ᵀv: d/dv = x (g·c) + W₁ gᵀ(x·v)
        return loss, Xs.T @ (g @ c) + coefs[0] @ (g.T @ xv)

    def __call__(self, v):
        self.n_evaluations += 1
        c = self.coefs[0].T @ v
        loss, gradient = 0.0, np.zeros_like(v)
        for start in range(0, len(self.Xs), _BLOCK_ROWS):
            rows = slice(start, start + _BLOCK_ROWS)
            block_loss, block_gradient = self._block(self.Xs[rows], self.Ys[rows], self.first_fixed[rows], v, c)
            loss += block_loss
            gradient += block_gradient
        return loss / self.total, gradient * (2.0 / self.total)


def _activate_in_place(name: str, z: np.ndarray) -> None:
    """z ← activation(z), as :func:`aiida_xesml.ml.emulator._activate` computes it."""
    if name == "tanh":
        np.tanh(z, out=z)
    elif name == "relu":
        np.maximum(z, 0.0, out=z)
    elif name == "logistic":
        expit(z, out=z)
    elif name != "identity":
        z[...] = _activate(name, z)


def _times_derivative(name: str, g: np.ndarray, activated: np.ndarray, scratch: np.ndarray) -> None:
    """g ← g · activation'(z), from the activated values (as :func:`~.emulator._derivative`)."""
    if name == "tanh":
        np.multiply(activated, activated, out=scratch)
        np.subtract(1.0, scratch, out=scratch)
        g *= scratch
    elif name == "logistic":
        np.subtract(1.0, activated, out=scratch)
        scratch *= activated
        g *= scratch
    elif name != "identity":
        g *= _derivative(name, activated)


def _on_sphere(loss, V):
    """L as a function of an unconstrained u (v = u' / |u'|, u' = u without its part along V)."""

    def fun(u):
        u = u - V.T @ (V @ u)
        norm = np.linalg.norm(u)
        v = u / norm
        value, g = loss(v)
        g = g - v * (v @ g)
        return value, (g - V.T @ (V @ g)) / norm

    return fun


def _lbfgs(fun, x, pairs=(), max_iter=100, tol=1e-7, memory=10, first_step=0.1):
    """Minimize ``fun`` (value, gradient) from ``x`` by L-BFGS with a backtracking Armijo search.

    ``pairs``: curvature pairs (s, y) to start from (those of a previous, similar problem).
    Stops when the quasi-Newton model predicts a decrease below ``tol``, when the line search
    fails, or after ``max_iter`` iterations. Returns (x, value, pairs, iterations).
    """
    S, Z = [list(p) for p in zip(*pairs)] if pairs else ([], [])
    f, g = fun(x)
    iterations = 0
    while iterations < max_iter:
        q, alphas = g.copy(), []
        for s, z in zip(reversed(S), reversed(Z)):
            alphas.append((s @ q) / (s @ z))
            q -= alphas[-1] * z
        if S:
            q *= (S[-1] @ Z[-1]) / (Z[-1] @ Z[-1])
        for s, z, alpha in zip(S, Z, reversed(alphas)):
            q += (alpha - (z @ q) / (s @ z)) * s
        p = -q
        slope = g @ p
        if not S or slope >= 0:  # no curvature yet, or not a descent direction: a short gradient step
            S, Z = [], []
            p = -g * (first_step * np.linalg.norm(x) / max(np.linalg.norm(g), 1e-300))
            slope = g @ p
        if -0.5 * slope < tol:
            break
        step = 1.0
        for _ in range(30):
            x_new = x + step * p
            f_new, g_new = fun(x_new)
            if f_new <= f + 1e-4 * step * slope:
                break
            curvature = f_new - f - step * slope
            step = min(0.5 * step, max(0.1 * step, -slope * step * step / (2.0 * curvature)))
        else:
            break
        iterations += 1
        s, z = x_new - x, g_new - g
        if s @ z > 1e-12 * np.linalg.norm(s) * np.linalg.norm(z):
            S.append(s)
            Z.append(z)
            del S[:-memory], Z[:-memory]
        x, f, g = x_new, f_new, g_new
    return x, f, list(zip(S, Z)), iterations


def _unit(vector):
    return vector / np.linalg.norm(vector)


class ECA(TransformerMixin, BaseEstimator):
    """Emulator-based component analysis.

    :param emulator: a fitted :class:`~aiida_xesml.ml.emulator.MLPEmulator` (X and Y passed to this
        class are in the emulator's input and output units; standardization happens inside).
    :param n_components: number of directions k (1 <= k <= d).
    :param random_state: seed of the row subsamples and of the random starts.
    :param n_restarts: starts per component: the two leading active-subspace directions, then
        ``n_restarts - 2`` random ones, screened only when the first two end in different optima.
    :param n_screen: rows of the screening subsample (all rows if fewer); refinement levels of 4x
        more rows follow, then all rows.
    :param max_iter: quasi-Newton iterations per refinement level of each component.
    :param tol: stopping tolerance in covered-variance units (dimensionless): on all rows, a
        component stops when the quasi-Newton model predicts a further gain below ``tol``; on a
        subsample of n_level of the n rows the tolerance is ``min(1e-3, tol * n / n_level)``.
    :param always_screen: screen the random starts even when the two active-subspace starts agree
        (slower; for rugged landscapes where both can fall into the same, not the best, optimum).
    :param verbose: show progress bars on stderr: one step per start (screened or skipped) and
        one per final refinement in ``fit``, one per start in ``inverse``. The results do not
        depend on it.

    Fitted attributes: ``components_`` (k, d) orthonormal rows in standardized X space;
    ``covered_variance_`` (k,) cumulative covered variance of Y on the training rows;
    ``covered_variance_x_`` (k,) the same for standardized X; ``scores_mean_``, ``scores_std_`` (k,)
    of the training scores; ``n_features_in_``; ``restart_losses_`` (list per component of the
    screened starts' losses on the screening subsample; skipped starts are left out);
    ``level_sizes_`` (rows of each level); ``n_evaluations_`` (k, levels) loss evaluations.
    Held-out figures: :meth:`covered_variance`, :meth:`covered_variance_x`, :meth:`score`.
    """

    #: scikit-learn's parameter rules, checked by :meth:`fit`; the one bound that needs the data
    #: (``n_components`` at most the number of input features) is checked there too.
    _parameter_constraints: dict = {
        "emulator": "no_validation",  # checked with the data: fitted, and the data's widths
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "n_restarts": [Interval(Integral, 0, None, closed="left")],
        "n_screen": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "always_screen": ["boolean"],
        "verbose": ["verbose"],
    }

    def __init__(self, emulator, n_components: int = 3, random_state: int | None = 0, n_restarts: int = 4,
                 n_screen: int = 500, max_iter: int = 300, tol: float = 1e-6, always_screen: bool = False,
                 verbose: bool = False):
        self.emulator = emulator
        self.n_components = n_components
        self.random_state = random_state
        self.n_restarts = n_restarts
        self.n_screen = n_screen
        self.max_iter = max_iter
        self.tol = tol
        self.always_screen = always_screen
        self.verbose = verbose

    # ----- helpers --------------------------------------------------------------------------------

    def _check_data(self, X, Y=None):
        emulator = self.emulator
        if not hasattr(emulator, "coefs_"):
            raise ValueError("`emulator` is not fitted; fit it (or load it with from_arrays) first")
        X = as_finite_array(X, "X", ndim=2)
        if X.shape[1] != emulator.n_features_in_:
            raise ValueError(f"`emulator` expects {emulator.n_features_in_} input features but `X` has {X.shape[1]}")
        if Y is None:
            return X, None
        Y = as_finite_array(Y, "Y", ndim=2)
        if Y.shape[1] != emulator.n_outputs_:
            raise ValueError(f"`emulator` predicts {emulator.n_outputs_} targets but `Y` has {Y.shape[1]}")
        check_matching_rows(X, "X", Y, "Y")
        return X, Y

    def _check_fitted(self):
        if not hasattr(self, "components_"):
            raise NotFittedError("this ECA is not fitted yet; call fit() first")

    # ----- estimator API --------------------------------------------------------------------------

    def fit(self, X, Y):
        """Find ``n_components`` directions for data X (n, d) and targets Y (n, m). Returns self.

        Deterministic for a given ``random_state``. BLAS runs on one thread while it works.
        """
        self._validate_params()
        X, Y = self._check_data(X, Y)
        d = X.shape[1]
        if self.n_components > d:
            raise ValueError(f"`n_components` must lie in [1, {d}] (the number of input features); got {self.n_components}")
        k_max, n_restarts, n_screen = int(self.n_components), int(self.n_restarts), int(self.n_screen)
        max_iter, tol = int(self.max_iter), float(self.tol)
        # The blocks are small matrix products: threads only add overhead (and contend on a
        # shared machine), so BLAS runs on one thread during the fit.
        with threadpool_limits(limits=1, user_api="blas"):
            self._fit(X, Y, k_max, n_restarts, n_screen, max_iter, tol)
        return self

    def _fit(self, X, Y, k_max, n_restarts, n_screen, max_iter, tol):
        emulator = self.emulator
        Xs, Ys = emulator.scale_x(X), emulator.scale_y(Y)
        n, d = Xs.shape
        if np.all(Y == Y[0]):  # tested exactly: the mean of equal numbers need not be exact
            raise ValueError("`Y` has no variance: there is nothing for ECA to explain")
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(n)
        Xs_p, Ys_p = Xs[order], Ys[order]  # every level is a leading block of this seeded order
        sizes, totals = [], []
        for size in _level_sizes(n, n_screen):
            total = float(np.sum((Ys_p[:size] - Ys_p[:size].mean(axis=0)) ** 2))
            if size == n or not np.all(Ys_p[:size] == Ys_p[0]):  # a subsample without variance cannot screen
                sizes.append(size)
                totals.append(total)
        J = emulator.jacobian_scaled(Xs_p[:_JACOBIAN_ROWS])
        outer = np.einsum("nmd,nme->de", J, J) / len(J)  # mean JᵀJ: the active subspace
        X_centered = Xs - Xs.mean(axis=0)
        total_x = 0.0 if np.all(X == X[0]) else float(np.sum(X_centered**2))
        coef0, intercept0 = emulator.coefs_[0], emulator.intercepts_[0]

        V = np.zeros((0, d))
        covered, covered_x, restart_losses, evaluations = [], [], [], []
        n_random = max(0, n_restarts - 2)
        steps = sum(min(2, d - i) + n_random + 1 for i in range(k_max))  # starts + final refinement
        with progress(total=steps, desc="ECA fit", enabled=self.verbose, unit="fit") as bar:
            for i in range(k_max):
                bar.set_postfix_str(f"component {i + 1}/{k_max}")
                complement = np.eye(d) - V.T @ V
                values, vectors = np.linalg.eigh(complement @ outer @ complement)
                starts = []
                for j in range(min(2, d - i)):
                    guess = complement @ vectors[:, -1 - j]
                    if np.linalg.norm(guess) < 0.5:  # a flat emulator: the eigenvector fell in span(V)
                        guess = complement @ rng.standard_normal(d)
                    starts.append(_unit(guess))
                randoms = [_unit(complement @ rng.standard_normal(d)) for _ in range(n_random)]
                first_fixed = (Xs_p @ V.T) @ (V @ coef0) + intercept0

                losses = [_ProjectionLoss(emulator, Xs_p[:size], Ys_p[:size], first_fixed[:size], total)
                          for size, total in zip(sizes, totals)]
                funs = [_on_sphere(loss, V) for loss in losses]
                level_tols = [min(1e-3, tol * n / size) for size in sizes]
                screen_fun, screen_tol = funs[0], level_tols[0]
                screened = []
                for u0 in starts:
                    screened.append(_lbfgs(screen_fun, u0, max_iter=min(_SCREEN_MAX_ITER, max_iter), tol=screen_tol))
                    bar.update()
                agree = (not self.always_screen and len(screened) == 2
                         and abs(screened[0][1] - screened[1][1]) <= max(1e-4, 10 * screen_tol))
                for u0 in randoms:
                    if not agree:
                        screened.append(_lbfgs(screen_fun, u0, max_iter=min(_SCREEN_MAX_ITER, max_iter),
                                               tol=screen_tol))
                    bar.update()
                restart_losses.append([float(result[1]) for result in screened])
                u, value, pairs, _ = min(screened, key=lambda result: result[1])
                for index in range(1, len(sizes)) if len(sizes) > 1 else [0]:
                    u, value, pairs, _ = _lbfgs(funs[index], u, pairs, max_iter=max_iter, tol=level_tols[index])
                V = np.vstack([V, _unit(complement @ u)])
                covered.append(1.0 - float(value))
                evaluations.append([loss.n_evaluations for loss in losses])
                # for orthonormal V, |x_c − x_c VᵀV|² = |x_c|² − |x_c Vᵀ|²: the centred scores' share
                covered_x.append(float(np.sum((X_centered @ V.T) ** 2)) / total_x if total_x > 0 else 1.0)
                bar.update()
                bar.set_postfix_str(f"component {i + 1}/{k_max}, covered variance {covered[-1]:.3f}")
        self.components_ = V
        self.covered_variance_ = np.array(covered)
        self.covered_variance_x_ = np.array(covered_x)
        scores = Xs @ V.T
        self.scores_mean_ = scores.mean(axis=0)
        self.scores_std_ = np.where(scores.std(axis=0) > 0, scores.std(axis=0), 1.0)
        self.n_features_in_ = d
        self.restart_losses_ = restart_losses
        self.level_sizes_ = list(sizes)
        self.n_evaluations_ = np.array(evaluations)

    def covered_variance(self, X, Y) -> np.ndarray:
        """Cumulative covered variance of Y (k,) on any rows, e.g. held-out ones (dimensionless).

        Entry k−1 is 1 − Σ_i ||y_i − f(P_k(x_i))||² / Σ_i ||y_i − ȳ||² in the emulator's
        standardized Y space, with P_k the projection on the first k components and ȳ the mean of
        these rows. On the training rows it equals ``covered_variance_``. It can be negative on
        rows the emulator does not describe.
        """
        self._check_fitted()
        X, Y = self._check_data(X, Y)
        Xs, Ys = self.emulator.scale_x(X), self.emulator.scale_y(Y)
        total = float(np.sum((Ys - Ys.mean(axis=0)) ** 2))
        if np.all(Y == Y[0]):
            raise ValueError(f"`Y` has no variance over its {len(Y)} row(s); the covered variance needs rows "
                             "whose targets differ")
        scores = Xs @ self.components_.T
        covered = []
        for k in range(1, len(self.components_) + 1):
            missing = 0.0
            for start in range(0, len(Xs), _BLOCK_ROWS):
                rows = slice(start, start + _BLOCK_ROWS)
                residual = self.emulator.predict_scaled(scores[rows, :k] @ self.components_[:k]) - Ys[rows]
                missing += float(np.einsum("ij,ij->", residual, residual))
            covered.append(1.0 - missing / total)
        return np.array(covered)

    def covered_variance_x(self, X) -> np.ndarray:
        """Cumulative covered variance of standardized X (k,) on any rows (dimensionless).

        Entry k−1 is 1 − Σ_i ||r_i − r̄||² / Σ_i ||x_i − x̄||² with r_i = x_i − P_k(x_i), in the
        emulator's standardized X space; on the training rows it equals ``covered_variance_x_``.
        """
        self._check_fitted()
        X, _ = self._check_data(X)
        Xs = self.emulator.scale_x(X)
        total = float(np.sum((Xs - Xs.mean(axis=0)) ** 2))
        if np.all(X == X[0]):
            raise ValueError(f"`X` has no variance over its {len(X)} row(s); the covered variance needs rows "
                             "that differ")
        # for orthonormal V, |x_c − x_c VᵀV|² = |x_c|² − |x_c Vᵀ|²: the centred scores' share
        scores = (Xs - Xs.mean(axis=0)) @ self.components_.T
        return np.cumsum(np.sum(scores**2, axis=0)) / total

    def score(self, X, Y) -> float:
        """Covered variance of Y with all k components on rows X, Y (scikit-learn's ``score``:
        higher is better); the last entry of :meth:`covered_variance`."""
        return float(self.covered_variance(X, Y)[-1])

    def transform(self, X) -> np.ndarray:
        """Scores T = x_s Vᵀ (n, k) of samples X in emulator input units."""
        self._check_fitted()
        X, _ = self._check_data(X)
        return self.emulator.scale_x(X) @ self.components_.T

    def expand(self, T) -> np.ndarray:
        """Samples x' = un-standardized (T V) in emulator input units, from scores T (n, k)."""
        self._check_fitted()
        T = as_finite_array(T, "T", ndim=(1, 2))
        T = T[None, :] if T.ndim == 1 else T
        if T.shape[1] != len(self.components_):
            raise ValueError(f"`T` has {T.shape[1]} columns; the ECA has {len(self.components_)} components")
        return self.emulator.unscale_x(T @ self.components_)

    def inverse(self, Y, n_starts: int = 4, max_iter: int = 100, prior: float = 1e-3,
                target_weights=None) -> np.ndarray:
        """Scores T (n, k) whose expansion the emulator maps closest to each target row of Y.

        Minimizes ||f(t_i V) − y_i||² + prior ||(t_i − t̄)/σ_t||² (standardized Y; t̄ and σ_t the
        training scores' mean and spread) for every row i at once. The small ``prior`` keeps the
        scores where the emulator was trained: far outside, an extrapolating network can match a
        target with an unphysical score along a weak direction. The minimization is a batched
        Levenberg–Marquardt (Gauss–Newton with per-row damping): each iteration takes the
        emulator's analytic Jacobian at all rows and solves one k × k system per row. Starts: the
        training-score mean and ``n_starts - 1`` seeded draws with the training scores' spread; the
        best start is kept per row. ``inverse_loss_`` holds each row's final loss (residual + prior).

        ``target_weights`` (m,), >= 0, multiply each target's squared standardized residual (default
        all 1). Giving a target the emulator's held-out R² (clipped to [0, 1]) as its weight keeps
        targets that the emulator cannot predict (noise, as far as the descriptor is concerned) from
        pulling the scores far outside the training data.
        """
        self._check_fitted()
        Y = as_finite_array(Y, "Y", ndim=(1, 2))
        Y = Y[None, :] if Y.ndim == 1 else Y
        if Y.shape[1] != self.emulator.n_outputs_:
            raise ValueError(f"`Y` has {Y.shape[1]} targets; the emulator predicts {self.emulator.n_outputs_}")
        Ys = self.emulator.scale_y(Y)
        if target_weights is None:
            root_w = np.ones(Ys.shape[1])
        else:
            w = as_finite_array(target_weights, "target_weights", ndim=1)
            if w.shape != (Ys.shape[1],) or np.any(w < 0) or not np.any(w > 0):
                raise ValueError(f"`target_weights` must hold {Ys.shape[1]} values >= 0, not all 0; got {w.tolist()}")
            root_w = np.sqrt(w)
        n, k = len(Ys), len(self.components_)
        rng = np.random.default_rng(self.random_state)
        best_T, best_loss = None, np.full(n, np.inf)
        for start in progress(range(max(1, int(n_starts))), desc="ECA inverse", enabled=self.verbose, unit="start"):
            T0 = np.tile(self.scores_mean_, (n, 1))
            if start:
                T0 = T0 + rng.standard_normal((n, k)) * self.scores_std_
            T, loss = self._levenberg_marquardt(T0, Ys, max_iter, prior, root_w)
            better = loss < best_loss
            best_T = T if best_T is None else np.where(better[:, None], T, best_T)
            best_loss = np.minimum(best_loss, loss)
        self.inverse_loss_ = best_loss
        return best_T

    def _levenberg_marquardt(self, T, Ys, max_iter: int, prior: float, root_w, tol: float = 1e-12):
        """Batched LM on the rows of T (n, k) against targets Ys, residuals scaled by ``root_w`` (m,);
        returns (T, per-row loss)."""
        V, emulator = self.components_, self.emulator
        weight = np.sqrt(float(prior)) / self.scores_std_

        def residuals(T):
            r = np.hstack([(emulator.predict_scaled(T @ V) - Ys) * root_w, (T - self.scores_mean_) * weight])
            return r, np.sum(r * r, axis=1)

        r, loss = residuals(T)
        damping = np.full(len(T), 1e-3)
        eye = np.eye(T.shape[1])
        for _ in range(int(max_iter)):
            J = (emulator.jacobian_scaled(T @ V) @ V.T) * root_w[:, None]  # (n, m, k), then the prior's rows
            J = np.concatenate([J, np.broadcast_to(np.diag(weight), (len(T),) + eye.shape)], axis=1)
            A = np.einsum("nmk,nml->nkl", J, J)
            g = np.einsum("nmk,nm->nk", J, r)
            diagonal = np.einsum("nkk->nk", A)
            floor = 1e-8 * diagonal.max(axis=1, keepdims=True) + 1e-12
            scale = np.maximum(diagonal, floor)[:, :, None] * eye
            system = A + damping[:, None, None] * scale + floor[:, :, None] * eye  # floor: flat directions
            step = np.linalg.solve(system, -g[:, :, None])[:, :, 0]
            r_new, loss_new = residuals(T + step)
            accept = loss_new < loss
            improvement = np.where(accept, (loss - loss_new) / np.maximum(loss, 1e-300), 0.0)
            T = np.where(accept[:, None], T + step, T)
            r = np.where(accept[:, None], r_new, r)
            loss = np.where(accept, loss_new, loss)
            damping = np.clip(np.where(accept, damping * 0.3, damping * 10.0), 1e-9, 1e12)
            if np.all(((improvement < tol) & accept) | (damping > 1e10)) or np.all(loss < 1e-20):
                break
        return T, loss

    def reconstruct(self, Y, n_starts: int = 4, target_weights=None) -> np.ndarray:
        """X' = expand(inverse(Y)): a pseudo-descriptor (emulator input units) per target row."""
        return self.expand(self.inverse(Y, n_starts=n_starts, target_weights=target_weights))

    # ----- plain arrays ---------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Fitted state as plain arrays (the emulator's under ``emulator.``), no pickle."""
        self._check_fitted()
        arrays = {
            "components": self.components_, "covered_variance": self.covered_variance_,
            "covered_variance_x": self.covered_variance_x_, "scores_mean": self.scores_mean_,
            "scores_std": self.scores_std_,
        }
        arrays.update({f"emulator.{name}": value for name, value in self.emulator.to_arrays().items()})
        return {name: np.asarray(value) for name, value in arrays.items()}

    @classmethod
    def from_arrays(cls, arrays) -> ECA:
        """Rebuild a fitted ECA (and its emulator) from :meth:`to_arrays` output."""
        from .emulator import MLPEmulator

        missing = [name for name in ("components", "covered_variance", "covered_variance_x", "scores_mean",
                                     "scores_std") if name not in arrays]
        if missing:
            raise ValueError(f"`arrays` lacks {missing}; it must come from ECA.to_arrays()")
        emulator = MLPEmulator.from_arrays({name[len("emulator."):]: value for name, value in arrays.items()
                                            if name.startswith("emulator.")})
        components = np.asarray(arrays["components"], float)
        eca = cls(emulator, n_components=len(components))
        eca.components_ = components
        eca.covered_variance_ = np.asarray(arrays["covered_variance"], float)
        eca.covered_variance_x_ = np.asarray(arrays["covered_variance_x"], float)
        eca.scores_mean_ = np.asarray(arrays["scores_mean"], float)
        eca.scores_std_ = np.asarray(arrays["scores_std"], float)
        eca.n_features_in_ = components.shape[1]
        return eca
