"""The population (mixture) inverse: exact mixture moments, gradients, and structure read from mixtures."""

import numpy as np
import pytest

from aiida_xesml.ml.eca import ECA
from aiida_xesml.ml.emulator import MLPEmulator
from aiida_xesml.ml.mixture import PopulationInverse, mixture_moments, score_distribution
from aiida_xesml.ml.moments import spectral_moments

GRID = np.arange(-30.0, 5.0001, 0.05)


def _two_peak_spectra(n, seed=0):
    """Site spectra with a skewed Kβ″-like and a Kβ2-like peak at random energies, heights and widths."""
    rng = np.random.default_rng(seed)
    spectra = np.zeros((n, len(GRID)))
    for i in range(n):
        for center, height, width in ((-18 + rng.normal(0, 1), 0.3 + 0.1 * rng.random(), 0.6 + 0.3 * rng.random()),
                                      (-15 + rng.normal(0, 1), 0.05, 0.5),
                                      (-5 + rng.normal(0, 1), 3.0 * (1 + 0.2 * rng.random()), 1.5)):
            spectra[i] += height * np.exp(-0.5 * ((GRID - center) / width) ** 2) / (width * np.sqrt(2 * np.pi))
    return spectra


def test_mixture_moments_are_the_moments_of_the_mean_spectrum():
    spectra = _two_peak_spectra(40)
    site = spectral_moments(GRID, spectra)
    weights = np.random.default_rng(1).random((3, 40))
    weights[2, :30] = 0.0  # a mixture of 10 sites only
    for row in weights:
        mean_spectrum = (row / row.sum()) @ spectra
        np.testing.assert_allclose(mixture_moments(site, row), spectral_moments(GRID, mean_spectrum[None])[0],
                                   rtol=1e-10, atol=1e-12)
    equal = spectral_moments(GRID, spectra.mean(axis=0)[None])[0]
    np.testing.assert_allclose(mixture_moments(site)[0], equal, rtol=1e-10, atol=1e-12)
    assert mixture_moments(site, weights).shape == (3, 8)


def test_residual_variance_widens_m2_and_keeps_the_third_central_moment():
    site = spectral_moments(GRID, _two_peak_spectra(20, seed=3))
    plain = mixture_moments(site)[0]
    wider = mixture_moments(site, residual_variance=[0.3, 0.5])[0]
    np.testing.assert_allclose(wider[[0, 1, 4, 5]], plain[[0, 1, 4, 5]], rtol=1e-13)
    np.testing.assert_allclose(wider[[2, 6]] ** 2, plain[[2, 6]] ** 2 + [0.3, 0.5], rtol=1e-12)
    # M3 = c3 / M2^3 with c3 unchanged
    np.testing.assert_allclose(wider[[3, 7]] * wider[[2, 6]] ** 3, plain[[3, 7]] * plain[[2, 6]] ** 3, rtol=1e-10)


def test_bad_arguments_name_themselves():
    site = spectral_moments(GRID, _two_peak_spectra(5))
    with pytest.raises(ValueError, match="site_moments"):
        mixture_moments(site[:, :6])
    with pytest.raises(ValueError, match="weights"):
        mixture_moments(site, np.ones(4))
    with pytest.raises(ValueError, match="weights"):
        mixture_moments(site, -np.ones(5))
    with pytest.raises(ValueError, match="residual_variance"):
        mixture_moments(site, residual_variance=[1.0])


@pytest.fixture(scope="module")
def toy_population():
    """Sites described by 3 features; their 'spectra' (two Gaussians) depend on the first two only; the
    structure of interest (a 'CN') is a smooth step in the first feature."""
    rng = np.random.default_rng(0)
    n = 600
    X = rng.normal(size=(n, 3))
    spectra = np.zeros((n, len(GRID)))
    for i, (a, b, _) in enumerate(X):
        peaks = ((-18 - 0.8 * a, 0.3 + 0.03 * b, 0.7 + 0.1 * np.tanh(b)), (-5 - 0.6 * a + 0.3 * b, 3.0, 1.4))
        for center, height, width in peaks:
            spectra[i] += height * np.exp(-0.5 * ((GRID - center) / width) ** 2) / (width * np.sqrt(2 * np.pi))
    Y = spectral_moments(GRID, spectra)
    cn = 4.0 + 2.0 / (1.0 + np.exp(-3.0 * X[:, 0]))
    emulator = MLPEmulator((16, 16), alpha=1e-3, random_state=0).fit(X, Y)
    eca = ECA(emulator, n_components=2, random_state=0).fit(X, Y)
    return X, Y, spectra, cn, eca


def test_loss_gradient_matches_finite_differences(toy_population):
    X, Y, _, cn, eca = toy_population
    inverse = PopulationInverse(eca.emulator, prior=1e-2, residual_variance=[0.01, 0.02]).fit(X, {"cn": cn})
    extra = np.array([0.01, 0.02])
    target, root_w, scale = Y[:50].mean(axis=0), np.sqrt(np.linspace(0.2, 1.0, 8)), eca.emulator.y_scale_
    lam = np.random.default_rng(2).normal(0, 0.3, inverse.features_.shape[1])
    _, gradient = inverse._loss(lam, target, root_w, scale, extra)
    numeric = [(inverse._loss(lam + h, target, root_w, scale, extra)[0]
                - inverse._loss(lam - h, target, root_w, scale, extra)[0]) / 2e-6
               for h in 1e-6 * np.eye(len(lam))]
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-8)


def test_the_training_population_reads_back_as_itself(toy_population):
    X, _, _, cn, eca = toy_population
    inverse = PopulationInverse(eca.emulator).fit(X, {"cn": cn})
    own = mixture_moments(inverse.site_moments_)  # the emulated moments of the whole population
    result = inverse.reconstruct(own)
    assert result["cn"][0] == pytest.approx(cn.mean(), abs=0.02)
    assert result["effective_sites"][0] > 0.9 * len(X)


def test_mixtures_of_known_composition_read_back_their_mean_structure(toy_population):
    """Held-out sites (never seen by the emulator) mixed in known proportions: the reconstructed mean CN
    rises with the true one and lies close to it; a single point in score space cannot do that."""
    X, _, _, cn, eca = toy_population
    rng = np.random.default_rng(7)
    held_out = rng.normal(size=(400, 3))
    spectra = np.zeros((400, len(GRID)))
    for i, (a, b, _) in enumerate(held_out):
        peaks = ((-18 - 0.8 * a, 0.3 + 0.03 * b, 0.7 + 0.1 * np.tanh(b)), (-5 - 0.6 * a + 0.3 * b, 3.0, 1.4))
        for center, height, width in peaks:
            spectra[i] += height * np.exp(-0.5 * ((GRID - center) / width) ** 2) / (width * np.sqrt(2 * np.pi))
    true_cn = 4.0 + 2.0 / (1.0 + np.exp(-3.0 * held_out[:, 0]))
    low, high = np.flatnonzero(held_out[:, 0] < -0.5), np.flatnonzero(held_out[:, 0] > 0.5)
    targets, truth = [], []
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        n_high = int(round(fraction * 60))
        rows = np.concatenate([rng.choice(low, 60 - n_high), rng.choice(high, n_high)])
        targets.append(spectral_moments(GRID, spectra[rows].mean(axis=0)[None])[0])
        truth.append(true_cn[rows].mean())
    inverse = PopulationInverse(eca.emulator).fit(X, {"cn": cn})
    result = inverse.reconstruct(np.array(targets))
    assert np.all(np.diff(result["cn"]) > 0)
    np.testing.assert_allclose(result["cn"], truth, atol=0.1)
    assert np.all(np.abs(result["fitted_moments"][:, [1, 5]] - np.array(targets)[:, [1, 5]]) < 0.1)
    # in ECA score space the population moves along the first component as the 6-fold share grows
    scores = score_distribution(eca, X, inverse.weights_)
    assert scores["mean"].shape == (5, 2) and scores["covariance"].shape == (5, 2, 2)
    assert abs(np.corrcoef(scores["mean"][:, 0], truth)[0, 1]) > 0.95


def test_bad_inputs_of_the_inverse(toy_population):
    X, Y, _, cn, eca = toy_population
    emulator = eca.emulator
    with pytest.raises(ValueError, match="prior"):
        PopulationInverse(emulator, prior=-1).fit(X, {"cn": cn})
    with pytest.raises(ValueError, match="structure"):
        PopulationInverse(emulator).fit(X, {})
    with pytest.raises(ValueError, match="rows"):
        PopulationInverse(emulator).fit(X, {"cn": cn[:-1]})
    with pytest.raises(ValueError, match="not fitted"):
        PopulationInverse(emulator).weights(Y[:1])
    inverse = PopulationInverse(emulator).fit(X, {"cn": cn})
    with pytest.raises(ValueError, match="targets"):
        inverse.weights(Y[:1, :4])
    with pytest.raises(ValueError, match="target_weights"):
        inverse.weights(Y[:1], target_weights=np.zeros(8))


def test_a_target_transform_matches_functions_of_the_moments(toy_population):
    """Matching only shift- and scale-free functions of the moments (here: the M1 difference of the two
    windows, the M0 ratio and both widths) still reads the mixture, and the transform's gradient is right."""
    X, _, spectra, cn, eca = toy_population

    def shift_free(moments):
        moments = np.atleast_2d(moments)
        targets = np.column_stack([moments[:, 1] - moments[:, 5], moments[:, 0] / moments[:, 4], moments[:, 2],
                                   moments[:, 6]])
        jacobian = np.zeros((len(moments), 4, 8))
        jacobian[:, 0, 1], jacobian[:, 0, 5] = 1.0, -1.0
        jacobian[:, 1, 0], jacobian[:, 1, 4] = 1.0 / moments[:, 4], -moments[:, 0] / moments[:, 4] ** 2
        jacobian[:, 2, 2], jacobian[:, 3, 6] = 1.0, 1.0
        return targets, jacobian

    inverse = PopulationInverse(eca.emulator, transform=shift_free, prior=1e-2).fit(X, {"cn": cn})
    target = shift_free(spectral_moments(GRID, spectra[:200].mean(axis=0)[None]) + [0, 7.3, 0, 0, 0, 7.3, 0, 0])[0][0]
    lam = np.random.default_rng(3).normal(0, 0.3, inverse.features_.shape[1])
    args = (target, np.ones(4), inverse.target_scale_, np.zeros(2))
    numeric = [(inverse._loss(lam + h, *args)[0] - inverse._loss(lam - h, *args)[0]) / 2e-6
               for h in 1e-6 * np.eye(len(lam))]
    np.testing.assert_allclose(inverse._loss(lam, *args)[1], numeric, rtol=1e-5, atol=1e-8)
    first, last = np.argsort(X[:, 0])[:150], np.argsort(X[:, 0])[-150:]
    for rows in (first, last):
        shifted = spectral_moments(GRID, spectra[rows].mean(axis=0)[None]) * [40, 1, 1, 1, 40, 1, 1, 1]
        result = inverse.reconstruct(shift_free(shifted)[0])
        assert result["cn"][0] == pytest.approx(cn[rows].mean(), abs=0.25)


def test_target_sums_invert_the_mixture_moments():
    """The sums a target requires are the weighted sums of the site integrands whose mixture it is."""
    from aiida_xesml.ml.mixture import _site_sums, _split_windows, _target_sums

    site = spectral_moments(GRID, _two_peak_spectra(40, seed=3))
    weights = np.random.default_rng(4).random(40)
    extra = np.array([0.02, 0.05])
    target = mixture_moments(site, weights, residual_variance=extra)
    windows = _split_windows(site, "site")
    center = windows[..., 1].mean(axis=0) + 0.3  # any centre
    expected = np.einsum("n,nwq->wq", weights / weights.sum(), _site_sums(windows, center))
    np.testing.assert_allclose(_target_sums(_split_windows(target, "t"), center, extra)[0], expected, rtol=1e-9)


class _Exact:
    """An 'emulator' that returns given moments for the rows it was made with."""

    def __init__(self, Y):
        self.Y, self.y_scale_ = Y, Y.std(axis=0)

    def predict(self, X):
        return self.Y


def test_structure_ranges_hold_the_truth_and_the_max_entropy_reading_and_reject_unreachable_targets(toy_population):
    """Mixtures of training sites whose moments are known exactly: their true mean CN is feasible, so it lies in the
    range at any tolerance, as does the maximum-entropy reading; a wider tolerance gives a wider range; a
    target shifted 5 eV from every site has no population (NaN)."""
    X, Y, _, cn, _ = toy_population
    inverse = PopulationInverse(_Exact(Y), prior=0.0).fit(X, {"cn": cn, "x0": X[:, 0]})
    rng = np.random.default_rng(11)
    low, high = np.flatnonzero(X[:, 0] < -0.5), np.flatnonzero(X[:, 0] > 0.5)
    rows = [np.concatenate([rng.choice(low, 40 - k, replace=False), rng.choice(high, k, replace=False)])
            for k in (0, 20, 40)]
    targets = np.array([mixture_moments(Y[r])[0] for r in rows])
    truth = np.array([cn[r].mean() for r in rows])
    narrow = inverse.structure_ranges(targets, tolerance=0.02)
    wide = inverse.structure_ranges(targets, tolerance=0.2)
    assert set(narrow) == {"cn", "x0"}
    reading = inverse.reconstruct(targets)["cn"]
    for ranges in (narrow, wide):
        assert np.all(ranges["cn"][:, 0] <= truth + 1e-9) and np.all(truth <= ranges["cn"][:, 1] + 1e-9)
        assert np.all(ranges["cn"][:, 0] <= reading + 1e-6) and np.all(reading <= ranges["cn"][:, 1] + 1e-6)
    assert np.all(np.diff(wide["cn"], axis=1) > np.diff(narrow["cn"], axis=1))
    # in this toy the moments do tell the three compositions apart: the narrow ranges do not overlap
    assert narrow["cn"][0, 1] < narrow["cn"][1, 0] and narrow["cn"][1, 1] < narrow["cn"][2, 0]
    assert np.all(narrow["cn"][:, 0] >= cn.min() - 1e-9) and np.all(narrow["cn"][:, 1] <= cn.max() + 1e-9)
    shifted = targets[1].copy()
    shifted[[1, 5]] += 5.0
    assert np.all(np.isnan(inverse.structure_ranges(shifted, tolerance=0.2)["cn"]))
    with pytest.raises(ValueError, match="`tolerance`"):
        inverse.structure_ranges(targets, tolerance=0)
    with pytest.raises(ValueError, match="`keys`"):
        inverse.structure_ranges(targets, tolerance=0.1, keys=["missing"])
    with pytest.raises(ValueError, match="`target_weights`"):
        inverse.structure_ranges(targets, tolerance=0.1, target_weights=[1.0] * 7)


def test_the_linear_readout_of_a_mixture_is_the_mean_of_its_sites_readouts(toy_population):
    """Linear in the integrands, which a mixture averages: the reading of any weighted mean spectrum equals the
    weighted mean of the sites' readings; on mixtures of held-out-like sites it rises with the true CN."""
    from aiida_xesml.ml.mixture import LinearMixtureReadout

    X, Y, spectra, cn, _ = toy_population
    readout = LinearMixtureReadout().fit(Y[:400], cn[:400])
    weights = np.random.default_rng(5).random((3, 200))
    weights[1, :150] = 0.0
    mixtures = mixture_moments(Y[400:], weights)
    per_site = readout.predict(Y[400:])
    np.testing.assert_allclose(readout.predict(mixtures), weights @ per_site / weights.sum(axis=1), rtol=1e-9)
    # mixtures of the unseen sites 400..599 (their mean spectra) by the share of high-x0 sites
    low, high = 400 + np.flatnonzero(X[400:, 0] < -0.5), 400 + np.flatnonzero(X[400:, 0] > 0.5)
    truth, readings = [], []
    for k in (0, 10, 20):
        rows = np.concatenate([low[:20 - k], high[:k]])
        truth.append(cn[rows].mean())
        readings.append(readout.predict(spectral_moments(GRID, spectra[rows].mean(axis=0)[None]))[0])
    assert np.all(np.diff(readings) > 0)
    np.testing.assert_allclose(readings, truth, atol=0.3)
    with pytest.raises(ValueError, match="not fitted"):
        LinearMixtureReadout().predict(Y[:2])
    with pytest.raises(ValueError, match="`moments`"):
        readout.predict(Y[:2, :4])
    with pytest.raises(ValueError, match="`values`"):
        LinearMixtureReadout().fit(Y[:10], cn[:9])
