"""The population (mixture) inverse: an ensemble's structure from its mean spectrum (SCIENCE.md §6).

A measured or ensemble-mean spectrum is the mean of its sites' spectra, so its windowed moments follow
exactly from the site moments (with equal site weights ``w_i``, per window)::

    M0 = Σ w_i M0_i
    M1 = Σ w_i M0_i M1_i / M0
    M2² = Σ w_i M0_i (M2_i² + (M1_i − M1)²) / M0
    M3 = Σ w_i M0_i (M3_i M2_i³ + 3 M2_i² (M1_i − M1) + (M1_i − M1)³) / (M0 M2³)

A single point in ECA score space cannot hold the spread of the M1_i that M2 and M3 of a mean
spectrum contain. :class:`PopulationInverse` reconstructs a *population* instead: weights over the
training sites. Matching the mixture moments means matching the weighted sums
``S_q = Σ w_i a_q(i)`` of each site's raw-moment integrands (``a_0 = M0``, ``a_1 = M0 M1``,
``a_2 = M0 (M2² + M1²)``, ``a_3 = M0 (M3 M2³ + 3 M1 M2² + M1³)`` per window), which are linear in w.
The least-committal weights that match linear constraints (maximum entropy relative to the training
population) have the exponential-family form

    w_i ∝ exp(λ · ψ_i),   ψ_i = the standardized a_q(i) of the emulator's moments of site i,

so λ (4 per window) is fitted to make the emulated mixture moments match the target moments, with
a small ridge prior on λ for targets the population cannot reach exactly. The ensemble-mean structure
is the weighted mean of the training sites' true structures (smooth CN, distances per slot,
first-shell distance): the same quantities as the true ensemble means, by construction.
Measured on mixtures of known composition (tests/ml/test_mixture.py, docs/topics/reconstruction.md):
a Gaussian tilt in ECA score space cannot produce the bimodal populations that 4/6-fold mixtures
are, and misses their CN by up to 1; the moment tilt recovers it to a few hundredths. The
reconstructed population can still be described in ECA score space (:func:`score_distribution`).

The emulator predicts each site's moments from its descriptor; the part of a site's M1 and M2 that
the descriptor does not predict still widens a real mean spectrum. Its variance (the emulator's
held-out residual variance of M1 and of M2 per window, ``residual_variance``) is added to the
mixture's variance; for symmetric, independent residuals the third central moment is unchanged.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from .validation import as_finite_array, check_integer, check_matching_rows

#: Above this inverse loss (the standardized, weighted moment mismatch plus the prior, mean over the
#: ensemble) the training sites cannot mix to the target: the sample is probably unlike the training
#: data. Measured with benchmarks/reconstruction.py on real QE spectra (2026-11-28, 32 mixtures in four
#: train/hold-out pairings, seed 0): the 8 losses above 0.5 (0.67-18) include 5 of the 7 readings off by
#: more than 0.3 in CN (0.39-0.99; the other 3 were off by 0.06-0.20); the 2 bad readings it missed
#: (0.38, 0.39) had losses of 0.16-0.19; all 22 readings within 0.26 had losses of 0.01-0.25. A loss
#: above it says "do not trust"; a loss below it does not prove the reading.
MISFIT_WARNING = 0.5

__all__ = ["MISFIT_WARNING", "mixture_moments", "LinearMixtureReadout", "PopulationInverse", "score_distribution"]

# Floors for predicted site moments that a regression can push to unphysical values.
_M0_FLOOR = 1e-6
_M2_FLOOR = 1e-3


def _split_windows(moments, name):
    moments = as_finite_array(moments, name, ndim=(1, 2))
    moments = np.atleast_2d(moments)
    if moments.shape[1] % 4:
        raise ValueError(f"`{name}` must have 4 moments (M0..M3) per window; got {moments.shape[1]} columns")
    return moments.reshape(len(moments), -1, 4)


def _site_sums(site, center):
    """Per site and window the raw-moment integrands a_q (n, W, 4) about ``center`` (W,) eV:
    M0, M0 δ, M0 (M2² + δ²), M0 (M3 M2³ + 3 δ M2² + δ³) with δ = M1 − center."""
    m0 = np.maximum(site[..., 0], _M0_FLOOR * np.maximum(np.abs(site[..., 0]).max(axis=0), 1e-300))
    delta = site[..., 1] - center
    m2 = np.maximum(site[..., 2], _M2_FLOOR)
    m3 = site[..., 3]
    return np.stack([m0, m0 * delta, m0 * (m2**2 + delta**2), m0 * (m3 * m2**3 + 3 * delta * m2**2 + delta**3)],
                    axis=-1)


def _moments_from_sums(S, center, extra_variance):
    """Mixture moments (n, W, 4) from weighted sums S (n, W, 4), and their Jacobian d moments / d S (n, W, 4, 4)."""
    s0, s1, s2, s3 = (S[..., q] for q in range(4))
    m1 = s1 / s0
    r2, r3 = s2 / s0, s3 / s0
    var = r2 - m1**2 + extra_variance
    var = np.maximum(var, 1e-12)
    m2 = np.sqrt(var)
    c3 = r3 - 3 * m1 * r2 + 2 * m1**3
    m3 = c3 / var**1.5
    moments = np.stack([s0, m1 + center, m2, m3], axis=-1)

    zero = np.zeros_like(s0)
    d_s0 = np.stack([np.ones_like(s0), zero, zero, zero], axis=-1)
    d_m1 = np.stack([-s1 / s0**2, 1 / s0, zero, zero], axis=-1)
    d_r2 = np.stack([-s2 / s0**2, zero, 1 / s0, zero], axis=-1)
    d_r3 = np.stack([-s3 / s0**2, zero, zero, 1 / s0], axis=-1)
    d_var = d_r2 - 2 * m1[..., None] * d_m1
    d_m2 = d_var / (2 * m2[..., None])
    d_c3 = d_r3 - 3 * (r2[..., None] * d_m1 + m1[..., None] * d_r2) + 6 * (m1**2)[..., None] * d_m1
    d_m3 = d_c3 / var[..., None] ** 1.5 - 1.5 * (c3 / var**2.5)[..., None] * d_var
    jacobian = np.stack([d_s0, d_m1, d_m2, d_m3], axis=-2)
    return moments, jacobian


def _target_sums(target, center, extra_variance):
    """The weighted sums S (n, W, 4) (per unit weight) that mixture moments ``target`` (n, W, 4) require: the inverse
    of :func:`_moments_from_sums`, with the residual variance taken off the target's M2²."""
    m0, m2, m3 = target[..., 0], target[..., 2], target[..., 3]
    delta = target[..., 1] - center
    r2 = m2**2 - extra_variance + delta**2
    r3 = m3 * m2**3 + 3 * delta * r2 - 2 * delta**3
    return np.stack([m0, m0 * delta, m0 * r2, m0 * r3], axis=-1)


def mixture_moments(site_moments, weights=None, residual_variance=None) -> np.ndarray:
    """Windowed moments of the mean spectrum of a weighted population of sites.

    :param site_moments: (n_sites, 4 W) moments of each site, per window [M0, M1 eV, M2 eV, M3].
    :param weights: (n_sites,) or (n_mixtures, n_sites) non-negative weights (normalized here);
        None means equal weights (the plain mean spectrum).
    :param residual_variance: (W,) eV², variance added to each window's M2² for the spread of the
        sites' M1 and M2 that ``site_moments`` do not hold (see the module docstring); default 0.
    :returns: (n_mixtures, 4 W) mixture moments, or (4 W,) for 1-D ``weights``.
    """
    site = _split_windows(site_moments, "site_moments")
    n, n_windows = site.shape[:2]
    single = weights is not None and np.ndim(weights) == 1
    w = np.full((1, n), 1.0 / n) if weights is None else np.atleast_2d(as_finite_array(weights, "weights"))
    if w.shape[1] != n or np.any(w < 0) or np.any(w.sum(axis=1) <= 0):
        raise ValueError(f"`weights` must be non-negative with {n} columns (one per site) and a positive sum per row; "
                         f"got shape {w.shape}")
    w = w / w.sum(axis=1, keepdims=True)
    extra = _residual_variance(residual_variance, n_windows)
    center = site[..., 1].mean(axis=0)
    S = np.einsum("tn,nwq->twq", w, _site_sums(site, center))
    moments = _moments_from_sums(S, center, extra)[0].reshape(len(w), -1)
    return moments[0] if single else moments


def _target_weights(target_weights, m) -> np.ndarray:
    """(m,) weights of the moment mismatch: all 1 for None, else m values >= 0, not all 0."""
    if target_weights is None:
        return np.ones(m)
    tw = as_finite_array(target_weights, "target_weights", ndim=1)
    if tw.shape != (m,) or np.any(tw < 0) or not np.any(tw > 0):
        raise ValueError(f"`target_weights` must hold {m} values >= 0, not all 0; got {tw.tolist()}")
    return tw


def _residual_variance(residual_variance, n_windows):
    if residual_variance is None:
        return np.zeros(n_windows)
    extra = as_finite_array(residual_variance, "residual_variance", ndim=1)
    if extra.shape != (n_windows,) or np.any(extra < 0):
        raise ValueError(f"`residual_variance` must hold {n_windows} values >= 0 (eV², one per window); got {extra.tolist()}")
    return extra


class PopulationInverse:
    """Weights over training sites whose emulated mixture moments match target moments.

    :param emulator: a fitted :class:`~aiida_xesml.ml.emulator.MLPEmulator` (or a linear one); it
        predicts each training site's moments.
    :param prior: ridge penalty on the tilt parameters λ; keeps the population near the training one
        when a target cannot be matched exactly (default 1e-3).
    :param residual_variance: (W,) eV² added to each window's mixture variance (module docstring);
        e.g. the emulator's held-out RMSE² of M1 plus that of M2, per window. Default 0.
    :param n_starts: optimizer starts per target: λ = 0 and seeded random ones.
    :param random_state: seed of the random starts.
    :param max_iter: L-BFGS iterations per start.
    :param transform: None (match the moments themselves) or a callable mapping moments (n, 4W) to
        ``(targets (n, t), jacobian (n, t, 4W))``, e.g. targets a rigid energy shift and an intensity scale
        cannot change; the targets given to :meth:`weights` are then in that space, and each is
        standardized by its spread over the training sites.
    :param first_targets: indices of the targets matched in a first stage, from which the fit of all
        targets starts (besides the other starts); default M0 and M1 of every window (the moments a
        mixture keeps without its spread), none for a transform.

    Fitted attributes (``fit``): ``site_moments_`` (n, 4W) emulated site moments, ``features_`` (n, 4W)
    the standardized integrands ψ, ``structure_`` (dict of per-site arrays), ``n_sites_``. After
    ``reconstruct``: ``weights_`` (n_targets, n), ``loss_`` (n_targets,), ``effective_sites_``
    (n_targets,) = 1 / Σ w² (how many sites the population effectively holds).
    """

    def __init__(self, emulator, prior: float = 1e-3, residual_variance=None, n_starts: int = 2,
                 random_state: int | None = 0, max_iter: int = 500, transform=None, first_targets=None):
        self.emulator = emulator
        self.transform = transform
        self.first_targets = first_targets
        self.prior = prior
        self.residual_variance = residual_variance
        self.n_starts = n_starts
        self.random_state = random_state
        self.max_iter = max_iter

    def fit(self, X, structure: dict):
        """Learn the training population: ``X`` (n, d) descriptors in the emulator's input units and
        ``structure`` a dict of per-site arrays (n, ...) to average (e.g. CN, distances in Å). Returns self."""
        try:
            prior = float(self.prior)
        except (TypeError, ValueError):
            prior = -1.0
        if not np.isfinite(prior) or prior < 0:
            raise ValueError(f"`prior` must be a number >= 0; got {self.prior!r}")
        check_integer(self.n_starts, "n_starts", minimum=1)
        X = as_finite_array(X, "X", ndim=2)
        if not isinstance(structure, dict) or not structure:
            raise ValueError("`structure` must be a non-empty dict of per-site arrays (e.g. {'cn': ...})")
        structure = {name: np.asarray(values, dtype=float) for name, values in structure.items()}
        for name, values in structure.items():
            check_matching_rows(X, "X", values, f"structure['{name}']")
        self.site_moments_ = self.emulator.predict(X)
        site = _split_windows(self.site_moments_, "site moments")
        self._center = site[..., 1].mean(axis=0)
        self._sums = _site_sums(site, self._center)
        sums = self._sums.reshape(len(X), -1)
        self.features_ = (sums - sums.mean(axis=0)) / np.where(sums.std(axis=0) > 0, sums.std(axis=0), 1.0)
        if self.transform is None:
            self.target_scale_ = np.asarray(self.emulator.y_scale_, dtype=float)
        else:
            if not callable(self.transform):
                raise ValueError(f"`transform` must be None or a callable moments -> (targets, jacobian); got {self.transform!r}")
            targets = np.asarray(self.transform(self.site_moments_)[0], dtype=float)
            spread = targets.std(axis=0)
            self.target_scale_ = np.where(spread > 0, spread, 1.0)
        self.structure_ = structure
        self.n_sites_ = len(X)
        return self

    def _check_fitted(self):
        if not hasattr(self, "features_"):
            raise ValueError("this PopulationInverse is not fitted yet; call fit(X, structure) first")

    def _loss(self, lam, target, root_w, scale, extra):
        """Loss and gradient of the weighted, standardized moment mismatch plus the ridge prior."""
        logits = self.features_ @ lam
        w = np.exp(logits - logsumexp(logits))
        S = np.einsum("n,nwq->wq", w, self._sums)[None]
        moments, jac = _moments_from_sums(S, self._center, extra)
        predicted = moments.reshape(1, -1)
        if self.transform is not None:
            predicted, d_transform = self.transform(predicted)
        r = (np.asarray(predicted)[0] - target) / scale * root_w
        loss = float(r @ r) + self.prior * float(lam @ lam)
        g_predicted = 2 * r * root_w / scale
        g_moments = (g_predicted if self.transform is None else g_predicted @ np.asarray(d_transform)[0]).reshape(-1, 4)
        g_sums = np.einsum("wm,wmq->wq", g_moments, jac[0])
        g_w = np.einsum("wq,nwq->n", g_sums, self._sums)
        g_lam = self.features_.T @ (w * (g_w - w @ g_w)) + 2 * self.prior * lam
        return loss, g_lam

    def weights(self, Y, target_weights=None) -> np.ndarray:
        """(n_targets, n_sites) population weights (rows sum to 1) matching each target row of ``Y``.

        The mismatch of target m is standardized by the emulator's output scale (the spread of the
        training sites' moment m) and weighted by ``target_weights``.

        :param Y: (n_targets, 4W) or (4W,) target moments in the emulator's output units.
        :param target_weights: (4W,) >= 0 per-target weights of the mismatch (e.g. the emulator's held-out
            R² clipped to [0, 1]); default all 1.
        """
        self._check_fitted()
        Y = np.atleast_2d(as_finite_array(Y, "Y", ndim=(1, 2)))
        m = len(self.target_scale_)
        if Y.shape[1] != m:
            source = "the emulator predicts" if self.transform is None else "the transform gives"
            raise ValueError(f"`Y` has {Y.shape[1]} targets; {source} {m}")
        root_w = np.sqrt(_target_weights(target_weights, m))
        extra = _residual_variance(self.residual_variance, self.site_moments_.shape[1] // 4)
        scale = self.target_scale_
        rng = np.random.default_rng(self.random_state)
        p = self.features_.shape[1]
        weights, losses = [], []
        first = self._first_stage(m)
        options = {"maxiter": int(self.max_iter), "ftol": 1e-12, "gtol": 1e-8}
        for target in Y:
            # The spread moments (M2, M3) of a mixture can be far from every site's in site-spread units, and
            # matching them first can trap the fit in a population of the wrong composition (measured on
            # 4/6-fold crystal mixtures): match the composition moments first, then everything from there.
            starts = [np.zeros(p)] + [0.3 * rng.standard_normal(p) for _ in range(int(self.n_starts) - 1)]
            if first is not None and first.any() and not first.all():
                staged = minimize(self._loss, np.zeros(p), args=(target, root_w * first, scale, extra), jac=True,
                                  method="L-BFGS-B", options=options)
                starts.insert(0, staged.x)
            best = None
            for lam0 in starts:
                result = minimize(self._loss, lam0, args=(target, root_w, scale, extra), jac=True, method="L-BFGS-B",
                                  options=options)
                if best is None or result.fun < best.fun:
                    best = result
            logits = self.features_ @ best.x
            weights.append(np.exp(logits - logsumexp(logits)))
            losses.append(float(best.fun))
        self.loss_ = np.array(losses)
        return np.array(weights)

    def structure_ranges(self, Y, tolerance: float, target_weights=None, keys=None) -> dict:
        """The range of each ensemble-mean structure value over *every* population of training sites whose mixture
        moments match ``Y`` within ``tolerance``: the inverse's own non-uniqueness, which the maximum-entropy
        weights of :meth:`weights` hide by picking one population.

        The matching conditions are linear in the weights when written for the raw-moment integrands (module
        docstring), so each bound is a linear programme over the weights w >= 0, Σ w = 1:
        ``|Σ_i w_i ψ_iq − ψ_q(Y)| <= tolerance / sqrt(target_weight_q)`` for every integrand q, with ψ standardized
        by its spread over the training sites (the units of :attr:`features_`). A target that no population
        matches within the tolerance gets NaN bounds: the training sites cannot mix to it.

        :param Y: (n_targets, 4W) or (4W,) target moments in the emulator's output units (no ``transform``).
        :param tolerance: > 0, in units of the training sites' spread of each integrand (e.g. 0.05).
        :param target_weights: (4W,) >= 0, as in :meth:`weights`; a weight of 0 leaves that integrand free.
        :param keys: structure keys to bound (default: every ``structure`` array with one finite value per site).
        :returns: {key: (n_targets, 2) [lowest, highest] ensemble mean}, in the units of ``structure``.
        """
        from scipy.optimize import linprog

        self._check_fitted()
        if self.transform is not None:
            raise ValueError("structure_ranges matches the moments themselves; this inverse has a `transform`")
        try:
            tolerance = float(tolerance)
        except (TypeError, ValueError):
            tolerance = -1.0
        if not np.isfinite(tolerance) or tolerance <= 0:
            raise ValueError(f"`tolerance` must be a number > 0; got {tolerance!r}")
        Y = _split_windows(Y, "Y")
        if Y.shape[1] * 4 != self.site_moments_.shape[1]:
            raise ValueError(f"`Y` has {Y.shape[1] * 4} targets; the emulator predicts {self.site_moments_.shape[1]}")
        m = self.site_moments_.shape[1]
        tw = _target_weights(target_weights, m)
        if keys is None:
            keys = [key for key, values in self.structure_.items() if values.ndim == 1 and np.all(np.isfinite(values))]
        for key in keys:
            if key not in self.structure_ or self.structure_[key].ndim != 1 or not np.all(np.isfinite(self.structure_[key])):
                raise ValueError(f"`keys`: {key!r} is not a structure array with one finite value per site")
        extra = _residual_variance(self.residual_variance, Y.shape[1])
        sums = self._sums.reshape(self.n_sites_, -1)
        mean, spread = sums.mean(axis=0), np.where(sums.std(axis=0) > 0, sums.std(axis=0), 1.0)
        targets = (_target_sums(Y, self._center, extra).reshape(len(Y), -1) - mean) / spread
        bound = np.where(tw > 0, tolerance / np.sqrt(np.where(tw > 0, tw, 1.0)), np.inf)
        rows = np.isfinite(bound)
        A_ub = np.vstack([self.features_[:, rows].T, -self.features_[:, rows].T])
        ranges = {key: np.full((len(Y), 2), np.nan) for key in keys}
        def lowest(values, b_ub):
            """The lowest weighted mean of ``values`` over the matching populations; NaN when none matches."""
            result = linprog(values, A_ub=A_ub, b_ub=b_ub, A_eq=np.ones((1, self.n_sites_)), b_eq=[1.0],
                             bounds=(0, None), method="highs")
            return result.fun if result.status == 0 else np.nan

        for t, target in enumerate(targets):
            b_ub = np.concatenate([target[rows] + bound[rows], bound[rows] - target[rows]])
            for key in keys:
                low = lowest(self.structure_[key], b_ub)
                if np.isnan(low):  # no population matches within the tolerance: the same for every key
                    break
                ranges[key][t] = low, -lowest(-self.structure_[key], b_ub)
        return ranges

    def _first_stage(self, m):
        """Targets matched first: M0 and M1 (the moments a mixture keeps without its spread), or those
        ``first_targets`` names for a transform; None when there is no first stage."""
        if self.first_targets is not None:
            mask = np.zeros(m, dtype=bool)
            mask[np.asarray(self.first_targets, dtype=int)] = True
            return mask
        return np.arange(m) % 4 < 2 if self.transform is None else None

    def reconstruct(self, Y, target_weights=None) -> dict:
        """Ensemble-mean structure per target row: the population-weighted mean of every ``structure``
        array (NaN entries are left out of that entry's mean), plus ``fitted_moments`` (n, 4W) the
        emulated mixture moments, ``inverse_loss`` (n,) and ``effective_sites`` (n,) = 1 / Σ w²."""
        w = self.weights(Y, target_weights)
        self.weights_ = w
        self.effective_sites_ = 1.0 / np.sum(w**2, axis=1)
        result = {name: _weighted_nanmean(w, values) for name, values in self.structure_.items()}
        result["fitted_moments"] = mixture_moments(self.site_moments_, w, self.residual_variance)
        if self.transform is not None:
            result["fitted_targets"] = np.asarray(self.transform(result["fitted_moments"])[0])
        result["inverse_loss"] = self.loss_
        result["effective_sites"] = self.effective_sites_
        return result


class LinearMixtureReadout:
    """A structure value read *linearly* from the raw-moment integrands of a spectrum: the baseline of the inverses.

    Ridge regression of each site's value (e.g. its smooth CN) on its standardized integrands (``a_0 = M0``,
    ``a_1 = M0 δ``, ``a_2 = M0 (M2² + δ²)``, ``a_3``; module docstring), fitted on training sites. Because the
    integrands of a mean spectrum are the means of its sites' integrands, the readout of a mean spectrum is
    exactly the mean of its sites' readouts: the mixture step adds no error, and no emulator is involved. What it
    cannot do is read what the site moments do not hold linearly. Its other limit is regression dilution: a site's
    value that its moments do not determine is read towards the training mean, so a selection of sites by that
    value (e.g. by CN) reads less extreme than it is; ensembles that differ in structure as a whole (pressures) do not
    suffer from this (docs/topics/reconstruction.md).

    :param alphas: ridge penalties tried by leave-one-out CV (scikit-learn's ``RidgeCV``), per output column.

    Fitted attributes: ``center_`` (W,) eV, the training sites' mean M1 per window; ``mean_`` and ``scale_``
    (4W,) of the integrands; ``models_`` (one fitted ``RidgeCV`` per output column, None for a column with fewer
    than 2 finite values); ``n_sites_``.
    """

    def __init__(self, alphas=(1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)):
        self.alphas = alphas

    def _integrands(self, moments, name):
        return _site_sums(_split_windows(moments, name), self.center_).reshape(len(np.atleast_2d(moments)), -1)

    def fit(self, site_moments, values):
        """``site_moments`` (n, 4W) of the training sites (their computed moments); ``values`` (n,) or (n, k) per
        site, NaN where a site has no value (each column is fitted on its sites with a value)."""
        from sklearn.linear_model import RidgeCV

        site = _split_windows(site_moments, "site_moments")
        values = np.asarray(values, dtype=float)
        if values.ndim not in (1, 2) or np.any(np.isinf(values)):
            raise ValueError(f"`values` must be a 1-D or 2-D array of finite numbers or NaN; got shape {values.shape}")
        check_matching_rows(site.reshape(len(site), -1), "site_moments", values, "values")
        self.center_ = site[..., 1].mean(axis=0)
        sums = self._integrands(site.reshape(len(site), -1), "site_moments")
        self.mean_ = sums.mean(axis=0)
        self.scale_ = np.where(sums.std(axis=0) > 0, sums.std(axis=0), 1.0)
        features = (sums - self.mean_) / self.scale_
        self._single = values.ndim == 1
        columns = values.reshape(len(values), -1)
        self.models_ = []
        for column in columns.T:
            finite = np.isfinite(column)
            self.models_.append(RidgeCV(alphas=self.alphas).fit(features[finite], column[finite])
                                if finite.sum() >= 2 else None)
        self.n_sites_ = len(values)
        return self

    def predict(self, moments, residual_variance=None) -> np.ndarray:
        """(n,) or (n, k) values read from mean-spectrum (or site) ``moments`` (n, 4W); ``residual_variance`` (W,) eV²
        is taken off M2² as in :class:`PopulationInverse` (0 for moments of real spectra read by real-site fits)."""
        if not hasattr(self, "models_"):
            raise ValueError("this LinearMixtureReadout is not fitted yet; call fit(site_moments, values) first")
        target = _split_windows(moments, "moments")
        if target.shape[1] != len(self.center_):
            raise ValueError(f"`moments` has {target.shape[1] * 4} columns; the readout was fitted on "
                             f"{len(self.center_) * 4}")
        sums = _target_sums(target, self.center_, _residual_variance(residual_variance, target.shape[1]))
        features = (sums.reshape(len(target), -1) - self.mean_) / self.scale_
        out = np.column_stack([model.predict(features) if model is not None else np.full(len(target), np.nan)
                               for model in self.models_])
        return out[:, 0] if self._single else out


def score_distribution(eca, X, weights) -> dict:
    """The reconstructed populations described in ECA score space.

    :param eca: a fitted :class:`~aiida_xesml.ml.eca.ECA`.
    :param X: (n, d) the descriptors the population weights refer to (emulator input units).
    :param weights: (n_targets, n) population weights (rows sum to 1).
    :returns: ``mean`` (n_targets, k) and ``covariance`` (n_targets, k, k) of the weighted scores.
    """
    scores = eca.transform(X)
    w = np.atleast_2d(as_finite_array(weights, "weights"))
    if w.shape[1] != len(scores):
        raise ValueError(f"`weights` has {w.shape[1]} columns but `X` has {len(scores)} rows")
    w = w / w.sum(axis=1, keepdims=True)
    mean = w @ scores
    centred = scores[None, :, :] - mean[:, None, :]
    return {"mean": mean, "covariance": np.einsum("tn,tna,tnb->tab", w, centred, centred)}


def _weighted_nanmean(w, values):
    """(n_targets, ...) weighted means over sites of ``values`` (n_sites, ...), NaN entries skipped."""
    flat = values.reshape(len(values), -1)
    finite = np.isfinite(flat)
    num = w @ np.where(finite, flat, 0.0)
    den = w @ finite.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return mean.reshape((len(w),) + values.shape[1:])
