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
