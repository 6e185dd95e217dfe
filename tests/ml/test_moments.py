"""Spectral moments: analytic line shapes, stacks, windows and errors."""

import numpy as np
import pytest

from aiida_xesml.ml.moments import DEFAULT_WINDOWS, MOMENT_NAMES, spectral_moments, windows_from_mean_spectrum

GRID = np.arange(-30.0, 5.0 + 1e-9, 0.01)


def gaussian(center, sigma, area):
    return area * np.exp(-0.5 * ((GRID - center) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))


def test_moments_of_two_gaussians_are_exact():
    spectrum = gaussian(-18.3, 0.7, 2.5) + gaussian(-4.1, 1.1, 7.0)
    moments = spectral_moments(GRID, spectrum)
    # exact up to the tails cut off by the windows (the Kβ2 line ends 5.5 sigma above its centre)
    np.testing.assert_allclose(moments[0], [2.5, -18.3, 0.7, 0.0, 7.0, -4.1, 1.1, 0.0], atol=1e-5)
    assert MOMENT_NAMES == ["kbpp_m0", "kbpp_m1", "kbpp_m2", "kbpp_m3", "kb2_m0", "kb2_m1", "kb2_m2", "kb2_m3"]


def test_skewness_of_a_two_component_mixture():
    """Mixture of two Gaussians: the moments follow from the component ones analytically."""
    w1, m1, s1, w2, m2, s2 = 1.0, -19.0, 0.5, 0.5, -17.0, 0.8
    spectrum = gaussian(m1, s1, w1) + gaussian(m2, s2, w2)
    w = w1 + w2
    mean = (w1 * m1 + w2 * m2) / w
    d1, d2 = m1 - mean, m2 - mean
    var = (w1 * (s1**2 + d1**2) + w2 * (s2**2 + d2**2)) / w
    third = (w1 * (d1**3 + 3 * d1 * s1**2) + w2 * (d2**3 + 3 * d2 * s2**2)) / w
    moments = spectral_moments(GRID, spectrum, windows={"kbpp": (-24, -13)})
    np.testing.assert_allclose(moments[0], [w, mean, np.sqrt(var), third / var**1.5], rtol=2e-5)


def test_a_stack_gives_the_rows_of_single_spectra():
    stack = np.stack([gaussian(-18, 0.6, 1) + gaussian(-5, 1, 3), gaussian(-16, 0.9, 2) + gaussian(-3, 1, 1)])
    together = spectral_moments(GRID, stack)
    np.testing.assert_allclose(together, np.vstack([spectral_moments(GRID, row) for row in stack]), atol=1e-10)
    assert together.shape == (2, 4 * len(DEFAULT_WINDOWS))


def test_window_without_intensity_names_the_window_and_spectrum():
    stack = np.stack([gaussian(-18, 0.6, 1) + gaussian(-5, 1, 3), gaussian(-5, 1, 3)])
    with pytest.raises(ValueError, match=r"kbpp.*spectra 1"):
        spectral_moments(GRID, stack)


@pytest.mark.parametrize("windows", [{"a": (-40, -13)}, {"a": (-13, -24)}, {}])
def test_bad_windows(windows):
    with pytest.raises(ValueError, match="window"):
        spectral_moments(GRID, gaussian(-18, 0.6, 1), windows=windows)


def test_bad_energy_axis():
    with pytest.raises(ValueError, match="increasing"):
        spectral_moments(GRID[::-1], gaussian(-18, 0.6, 1))
    with pytest.raises(ValueError, match="NaN"):
        spectral_moments(GRID, np.full(GRID.shape, np.nan))


def test_window_split_lands_at_the_minimum_between_the_peaks():
    mean = gaussian(-18.0, 1.0, 1.0) + gaussian(-6.0, 1.5, 3.0)
    windows = windows_from_mean_spectrum(GRID, mean)
    split = windows["kbpp"][1]
    between = (GRID > -18) & (GRID < -6)
    assert split == pytest.approx(GRID[between][np.argmin(mean[between])], abs=0.011)
    assert windows["kbpp"][0] == -24.0 and windows["kb2"] == (split, 2.0)


# ----- shift-free targets ----------------------------------------------------------------------

from aiida_xesml.ml.moments import (  # noqa: E402
    SHIFT_FREE_NAMES,
    TARGET_SETS,
    shift_free_jacobian,
    shift_free_targets,
    target_names,
    targets_from_moments,
    targets_jacobian,
)


def kbeta_like(energy, shift=0.0, scale=1.0):
    """A Kβ VtC-like spectrum (states/eV): a skewed Kβ″ band and a Kβ2 band with three sub-bands and
    a tail towards lower energies, the shapes of the calculated GeO2 spectra (docs/topics/spectra)."""
    e = np.asarray(energy) - shift

    def g(center, sigma, area):
        return area * np.exp(-0.5 * ((e - center) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))

    kbpp = g(-18.2, 0.9, 0.22) + g(-17.0, 0.7, 0.10)
    kb2 = g(-7.8, 1.3, 0.45) + g(-5.1, 1.0, 0.80) + g(-2.6, 0.8, 0.55) + g(-10.5, 1.5, 0.12)
    return scale * (kbpp + kb2)


def test_shift_free_targets_do_not_move_with_a_rigid_shift_and_scale():
    grid = np.arange(-30.0, 15.0 + 1e-9, 0.05)
    reference = spectral_moments(grid, kbeta_like(grid))
    # shifts by whole grid steps are exact up to rounding; 0.013 eV moves the window edges between grid
    # points (a window edge cuts the Kβ2 band's low-energy tail), which costs a few meV
    for shift, scale, tol in ((7.3, 40.0, 1e-9), (-2.45, 1e-3, 1e-9), (0.013, 1.0, 1e-2)):
        windows = {name: (lo + shift, hi + shift) for name, (lo, hi) in DEFAULT_WINDOWS.items()}
        moved = spectral_moments(grid, kbeta_like(grid, shift, scale), windows=windows)
        # the plain moments do move: M1 by the shift, M0 by the scale
        np.testing.assert_allclose(moved[0, [1, 5]], reference[0, [1, 5]] + shift, atol=max(tol, 1e-7))
        np.testing.assert_allclose(moved[0, [0, 4]], reference[0, [0, 4]] * scale, rtol=max(tol, 1e-7))
        # the shift-free targets do not
        np.testing.assert_allclose(shift_free_targets(moved), shift_free_targets(reference), rtol=tol, atol=tol)


def test_shift_free_targets_are_the_named_functions_of_the_moments():
    grid = np.arange(-30.0, 5.0 + 1e-9, 0.01)
    moments = spectral_moments(grid, kbeta_like(grid))[0]
    targets = shift_free_targets(moments)[0]
    assert SHIFT_FREE_NAMES == ["kbpp_minus_kb2_m1", "kbpp_over_kb2_m0", "kbpp_m2", "kbpp_m3", "kb2_m2", "kb2_m3"]
    expected = {"kbpp_minus_kb2_m1": moments[1] - moments[5], "kbpp_over_kb2_m0": moments[0] / moments[4],
                "kbpp_m2": moments[2], "kbpp_m3": moments[3], "kb2_m2": moments[6], "kb2_m3": moments[7]}
    np.testing.assert_allclose(targets, [expected[name] for name in SHIFT_FREE_NAMES])
    # the two-Gaussian case: exact separation and ratio
    exact = spectral_moments(GRID, gaussian(-18.3, 0.7, 2.5) + gaussian(-4.1, 1.1, 7.0))
    np.testing.assert_allclose(shift_free_targets(exact)[0], [-14.2, 2.5 / 7.0, 0.7, 0.0, 1.1, 0.0], atol=1e-5)


def test_shift_free_jacobian_matches_finite_differences():
    rng = np.random.default_rng(3)
    moments = np.column_stack([rng.uniform(0.1, 0.5, 5), rng.uniform(-19, -16, 5), rng.uniform(0.6, 1.5, 5),
                               rng.normal(0, 0.3, 5), rng.uniform(1.0, 2.5, 5), rng.uniform(-6, -3, 5),
                               rng.uniform(1.5, 3.0, 5), rng.normal(0, 0.3, 5)])
    analytic = shift_free_jacobian(moments)
    assert analytic.shape == (5, 6, 8)
    step = 1e-6
    for j in range(8):
        up, down = moments.copy(), moments.copy()
        up[:, j] += step
        down[:, j] -= step
        numeric = (shift_free_targets(up) - shift_free_targets(down)) / (2 * step)
        np.testing.assert_allclose(analytic[:, :, j], numeric, rtol=1e-6, atol=1e-8)


def test_target_sets_dispatch():
    assert TARGET_SETS == ("moments", "shift_free")
    rows = np.tile([0.3, -17.0, 1.0, 0.1, 2.0, -5.0, 2.0, -0.2], (3, 1))
    assert target_names("moments") == MOMENT_NAMES and target_names("shift_free") == SHIFT_FREE_NAMES
    np.testing.assert_array_equal(targets_from_moments(rows, "moments"), rows)
    np.testing.assert_array_equal(targets_from_moments(rows, "shift_free"), shift_free_targets(rows))
    np.testing.assert_array_equal(targets_jacobian(rows, "moments"), np.broadcast_to(np.eye(8), (3, 8, 8)))
    np.testing.assert_array_equal(targets_jacobian(rows, "shift_free"), shift_free_jacobian(rows))


@pytest.mark.parametrize("bad, match", [
    (np.ones((2, 7)), "8 moments"),
    (np.array([0.3, -17, 1, 0, 0.0, -5, 2, 0]), "M0 <= 0"),
    (np.array([0.3, np.nan, 1, 0, 2, -5, 2, 0]), "NaN"),
])
def test_shift_free_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        shift_free_targets(bad)
    with pytest.raises(ValueError, match="target_set"):
        targets_from_moments(np.ones((1, 8)), "vbm")
    with pytest.raises(ValueError, match="exactly two windows"):
        target_names("shift_free", {"a": (-24, -13)})


def test_moments_intensity_jacobian_matches_finite_differences():
    from aiida_xesml.ml.moments import moments_intensity_jacobian

    grid = np.arange(-30.0, 5.0 + 1e-9, 0.1)
    spectrum = kbeta_like(grid)
    analytic = moments_intensity_jacobian(grid, spectrum)
    assert analytic.shape == (8, len(grid))
    step = 1e-6
    for j in (10, 60, 80, 150, 170, 175, 180, 240, 320, 330):  # outside, inside and on the edges of the windows
        up, down = spectrum.copy(), spectrum.copy()
        up[j] += step
        down[j] -= step
        numeric = (spectral_moments(grid, up) - spectral_moments(grid, down))[0] / (2 * step)
        np.testing.assert_allclose(analytic[:, j], numeric, rtol=1e-5, atol=1e-7)


def test_shift_free_transform_is_the_pair_the_population_inverse_takes():
    from aiida_xesml.ml.moments import shift_free_transform

    rows = np.array([[0.3, -17.0, 1.0, 0.1, 2.0, -5.0, 2.0, -0.2], [0.25, -18.5, 1.2, 0.3, 2.2, -5.6, 2.1, -0.1]])
    targets, jacobian = shift_free_transform(rows)
    np.testing.assert_array_equal(targets, shift_free_targets(rows))
    np.testing.assert_array_equal(jacobian, shift_free_jacobian(rows))
