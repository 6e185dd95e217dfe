"""Emulator-based component analysis (ECA, SCIENCE.md §6).

In standardized descriptor space (dimension d) find orthonormal directions v_1..v_k, one at a
time, that explain most of the variance of the standardized targets through the emulator f. With V
the directions found so far and v the candidate (unit norm, orthogonal to V), a sample projects to
P(x) = (x·Vᵀ)V + (x·v)v and the loss is the missing variance

    L(v) = Σ_i ||y_i − f(P(x_i))||² / Σ_i ||y_i − ȳ||²;   covered variance = 1 − L.

The fit is full-batch L-BFGS over an unconstrained parametrization of the unit sphere in
the orthogonal complement of V (``v = Q u / |Q u|``), with analytic gradients backpropagated through the
emulator. Several seeded starts per component: the leading eigenvectors of the average outer product
of the emulator's gradients (an active-subspace guess) and random directions, screened on a
subsample and the best polished on all samples.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import null_space
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from .progress import progress
from .validation import as_finite_array, check_matching_rows


class ECA(TransformerMixin, BaseEstimator):
    """Emulator-based component analysis.

    :param emulator: a fitted :class:`~aiida_xesml.ml.emulator.MLPEmulator` (X and Y passed to this
        class are in the emulator's input and output units; standardization happens inside).
    :param n_components: number of directions k (1 <= k <= d).
    :param random_state: seed of the random starts.
    :param n_restarts: starts per component (the active-subspace guesses count among them).
    :param n_screen: samples used to screen the starts (all samples if fewer).
    :param max_iter: L-BFGS iterations of the final optimization of each component.
    :param verbose: show progress bars on stderr: one step per screened start and per final
        optimization in ``fit``, one per start in ``inverse``. The results do not depend on it.

    Fitted attributes: ``components_`` (k, d) orthonormal rows in standardized X space;
    ``covered_variance_`` (k,) cumulative covered variance of Y; ``covered_variance_x_`` (k,) the
    same for standardized X; ``scores_mean_``, ``scores_std_`` (k,) of the training scores;
    ``n_features_in_``; ``restart_losses_`` (list per component of the screened losses).
    """

    def __init__(self, emulator, n_components: int = 3, random_state: int | None = 0, n_restarts: int = 4,
                 n_screen: int = 2000, max_iter: int = 300, verbose: bool = False):
        self.emulator = emulator
        self.n_components = n_components
        self.random_state = random_state
        self.n_restarts = n_restarts
        self.n_screen = n_screen
        self.max_iter = max_iter
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

    def _projection_loss(self, Xs, Ys, total, V, Q):
        """Loss L(u) and its gradient for candidate ``v = Q u / |Q u|`` with fixed directions V."""
        emulator = self.emulator

        def loss_and_grad(u):
            w = Q @ u
            norm = np.linalg.norm(w)
            v = w / norm
            basis = np.vstack([V, v[None, :]])
            P = (Xs @ basis.T) @ basis

            def residual(Yp):
                r = Yp - Ys
                return float(np.sum(r * r) / total), 2.0 * r / total

            loss, _, gP = emulator.forward_backward_scaled(P, residual)
            xv, gv = Xs @ v, gP @ v
            gradient = gP.T @ xv + Xs.T @ gv  # dP/dv = x·v I + v xᵀ (the V part does not depend on v)
            g_w = (gradient - v * (v @ gradient)) / norm
            return loss, Q.T @ g_w

        return loss_and_grad

    def _starts(self, Xs, Q, rng, n_random):
        """Active-subspace guesses (in u coordinates) followed by random ones."""
        sample = Xs[rng.choice(len(Xs), size=min(len(Xs), 500), replace=False)]
        J = self.emulator.jacobian_scaled(sample)  # (n, m, d)
        C = np.einsum("nmd,nme->de", J, J) / len(sample)
        values, vectors = np.linalg.eigh(Q.T @ C @ Q)
        guided = [vectors[:, -1 - i] for i in range(min(2, Q.shape[1]))]
        randoms = [rng.standard_normal(Q.shape[1]) for _ in range(n_random)]
        return guided + randoms

    # ----- estimator API --------------------------------------------------------------------------

    def fit(self, X, Y):
        """Find ``n_components`` directions for data X (n, d) and targets Y (n, m). Returns self."""
        X, Y = self._check_data(X, Y)
        d = X.shape[1]
        k_max = int(self.n_components)
        if not 1 <= k_max <= d:
            raise ValueError(f"`n_components` must lie in [1, {d}] (the number of input features); got {self.n_components}")
        emulator = self.emulator
        Xs, Ys = emulator.scale_x(X), emulator.scale_y(Y)
        rng = np.random.default_rng(self.random_state)
        screen = rng.choice(len(Xs), size=min(len(Xs), int(self.n_screen)), replace=False)
        total = float(np.sum((Ys - Ys.mean(axis=0)) ** 2))
        total_screen = float(np.sum((Ys[screen] - Ys[screen].mean(axis=0)) ** 2))
        total_x = float(np.sum((Xs - Xs.mean(axis=0)) ** 2))
        if total <= 0:
            raise ValueError("`Y` has no variance: there is nothing for ECA to explain")

        V = np.zeros((0, d))
        covered, covered_x, restart_losses = [], [], []
        n_random = max(0, int(self.n_restarts) - 2)
        steps = sum(min(2, d - i) + n_random + 1 for i in range(k_max))  # screened starts + final fit
        with progress(total=steps, desc="ECA fit", enabled=self.verbose, unit="fit") as bar:
            for i in range(k_max):
                bar.set_postfix_str(f"component {i + 1}/{k_max}")
                Q = null_space(V) if len(V) else np.eye(d)
                starts = self._starts(Xs, Q, rng, n_random)
                screen_fn = self._projection_loss(Xs[screen], Ys[screen], total_screen, V, Q)
                screened = []
                for u0 in starts:
                    screened.append(minimize(screen_fn, u0, jac=True, method="L-BFGS-B", options={"maxiter": 40}))
                    bar.update()
                restart_losses.append([float(result.fun) for result in screened])
                best = min(screened, key=lambda result: result.fun)
                full_fn = self._projection_loss(Xs, Ys, total, V, Q)
                result = minimize(full_fn, best.x, jac=True, method="L-BFGS-B",
                                  options={"maxiter": int(self.max_iter), "ftol": 1e-12, "gtol": 1e-8})
                w = Q @ result.x
                V = np.vstack([V, w / np.linalg.norm(w)])
                covered.append(1.0 - float(result.fun))
                residual_x = Xs - (Xs @ V.T) @ V
                covered_x.append(1.0 - float(np.sum((residual_x - residual_x.mean(axis=0)) ** 2)) / total_x
                                 if total_x > 0 else 1.0)
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
        return self

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
    def from_arrays(cls, arrays) -> "ECA":
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
