"""A measured spectrum on its own absolute energy axis: peaks, windows and shift-free targets."""

import numpy as np
import pytest

from aiida_xesml.ml.measured import find_kbeta_peaks, measured_targets, measured_windows
from aiida_xesml.ml.moments import DEFAULT_WINDOWS, SHIFT_FREE_NAMES, shift_free_targets, spectral_moments

CALC_GRID = np.arange(-30.0, 5.0 + 1e-9, 0.05)  # the calculations' grid, eV relative to the VBM


def gaussian(e, center, sigma, area):
    return area * np.exp(-0.5 * ((e - center) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))


def kbeta_like(e):
    """A calculated-like mean spectrum (states/eV): skewed Kβ″ near −17.8 eV, Kβ2 with sub-bands."""
    return (gaussian(e, -18.2, 0.9, 0.22) + gaussian(e, -17.0, 0.7, 0.10) + gaussian(e, -7.8, 1.3, 0.45)
            + gaussian(e, -5.1, 1.0, 0.80) + gaussian(e, -2.6, 0.8, 0.55) + gaussian(e, -10.5, 1.5, 0.12))


def measurement(shift, scale, noise, seed=0, step=0.1, origin=11080.0):
    """The calculated-like spectrum on an absolute axis (``origin`` + ``shift`` is where the calculation's
    zero lands), scaled, with Gaussian noise of ``noise`` times the maximum on every point."""
    energy = np.arange(origin - 40.0, origin + 12.0, step)
    clean = scale * kbeta_like(energy - origin - shift)
    rng = np.random.default_rng(seed)
    return energy, clean + rng.normal(0.0, noise * clean.max(), len(energy))


def test_shifted_scaled_noisy_spectrum_gives_the_same_windows_and_targets():
    calc = kbeta_like(CALC_GRID)
    reference = measured_targets(CALC_GRID, calc, CALC_GRID, calc)
    # the calculated spectrum against itself: windows and targets of the plain route
    assert reference["windows"] == {name: pytest.approx(pair) for name, pair in DEFAULT_WINDOWS.items()}
    np.testing.assert_allclose(reference["targets"], shift_free_targets(spectral_moments(CALC_GRID, calc))[0])
    assert reference["names"] == SHIFT_FREE_NAMES

    origin, shift = 11080.0, 7.3
    for seed in range(3):
        energy, intensity = measurement(shift, 40.0, noise=0.01, seed=seed, origin=origin)
        result = measured_targets(energy, intensity, CALC_GRID, calc)
        for name, (lo, hi) in DEFAULT_WINDOWS.items():
            placed = result["windows"][name]
            assert placed == pytest.approx((lo + origin + shift, hi + origin + shift), abs=0.05), (seed, name)
        assert result["reference_ev"] == pytest.approx(origin + shift, abs=0.05)
        # equal within the noise: 4 standard errors propagated from the noise estimate (checked below)
        np.testing.assert_array_less(np.abs(result["targets"] - reference["targets"]), 4 * result["target_errors"])
        assert result["names"] == reference["names"]
        assert result["noise_sigma"] == pytest.approx(0.01 * 40.0 * kbeta_like(CALC_GRID).max(), rel=0.1)


def test_propagated_target_errors_match_the_spread_over_noise_realizations():
    calc = kbeta_like(CALC_GRID)
    runs = [measured_targets(*measurement(7.3, 40.0, noise=0.01, seed=seed), CALC_GRID, calc) for seed in range(100)]
    spread = np.std([run["targets"] for run in runs], axis=0)
    predicted = np.mean([run["target_errors"] for run in runs], axis=0)
    # first-order propagation with fixed windows; the windows' jitter adds a little (Kβ2 M2: ~20 %)
    np.testing.assert_allclose(predicted, spread, rtol=0.3)
    # at 1 % noise the Kβ″ skewness is not measurable: its error is larger than typical values
    assert predicted[3] > 0.3


def test_the_targets_do_not_depend_on_the_intensity_unit_or_the_axis_origin():
    calc = kbeta_like(CALC_GRID)
    energy, intensity = measurement(7.3, 1.0, noise=0.0)
    one = measured_targets(energy, intensity, CALC_GRID, calc)
    other = measured_targets(energy + 1234.5, intensity * 1e4, CALC_GRID, calc)
    np.testing.assert_allclose(other["targets"], one["targets"], rtol=1e-6, atol=1e-6)
    assert other["reference_ev"] == pytest.approx(one["reference_ev"] + 1234.5, abs=1e-6)


def test_peaks_of_the_calculated_like_spectrum():
    peaks = find_kbeta_peaks(CALC_GRID, kbeta_like(CALC_GRID))
    # Kβ″: the maximum of the two-component band, between its components and nearer the stronger one
    assert -18.2 < peaks["kbpp_ev"] < -17.4
    # Kβ2 anchored at the middle of its half-maximum range, between its sub-bands
    assert -7.0 < peaks["kb2_ev"] < -3.5
    assert peaks["kbpp_prominence"] > 0.1


@pytest.mark.parametrize("name, spectrum", [
    ("Kβ2 only", lambda e: gaussian(e, -5.0, 1.5, 1.0)),
    ("Kβ2 on a rising Kβ1,3 tail", lambda e: gaussian(e, -5.0, 1.5, 1.0) + 0.05 * np.exp(-(e + 5.0) / 6.0)),
])
def test_a_spectrum_without_a_second_peak_is_a_clear_error(name, spectrum):
    with pytest.raises(ValueError, match="no Kβ″ peak found 8–20 eV below the Kβ2 maximum"):
        find_kbeta_peaks(CALC_GRID, spectrum(CALC_GRID))
    with pytest.raises(ValueError, match="measured spectrum: no Kβ″ peak"):
        measured_targets(CALC_GRID, spectrum(CALC_GRID), CALC_GRID, kbeta_like(CALC_GRID))


def test_windows_follow_each_peak_and_are_cut_when_they_would_overlap():
    calc = {"kbpp_ev": -18.0, "kb2_ev": -5.0}
    placed = measured_windows({"kbpp_ev": 100.0, "kb2_ev": 113.0}, calc)
    assert placed["windows"] == {"kbpp": (94.0, 105.0), "kb2": (106.0, 120.0)}
    assert placed["shifts_ev"] == {"kbpp": 118.0, "kb2": 118.0} and placed["overlap_cut_ev"] is None
    # peaks 2 eV closer than calculated: the 1 eV gap between the windows becomes a 1 eV overlap, cut in its middle
    closer = measured_windows({"kbpp_ev": 100.0, "kb2_ev": 111.0}, calc)
    assert closer["windows"] == {"kbpp": (94.0, 104.5), "kb2": (104.5, 118.0)} and closer["overlap_cut_ev"] == 104.5


def test_windows_outside_the_measured_range_name_the_range_needed():
    calc = kbeta_like(CALC_GRID)
    energy, intensity = measurement(7.3, 40.0, noise=0.0)
    keep = energy > 11080.0 + 7.3 - 21.0  # cut inside the Kβ″ window (which starts 24 eV below the zero)
    with pytest.raises(ValueError, match=r"cover \[11063\.3\d, 11089\.3\d\] eV"):
        measured_targets(energy[keep], intensity[keep], CALC_GRID, calc)


@pytest.mark.parametrize("kwargs, match", [
    ({"search_below_kb2": (20, 8)}, "near < far"),
    ({"search_below_kb2": 5}, "search_below_kb2"),
    ({"kb2_anchor": "centroid"}, "kb2_anchor"),
    ({"smoothing_fwhm": 0}, "smoothing_fwhm"),
])
def test_bad_peak_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        find_kbeta_peaks(CALC_GRID, kbeta_like(CALC_GRID), **kwargs)


def test_bad_arrays():
    with pytest.raises(ValueError, match="increasing"):
        find_kbeta_peaks(CALC_GRID[::-1], kbeta_like(CALC_GRID))
    with pytest.raises(ValueError, match="no peak"):
        find_kbeta_peaks(CALC_GRID, -np.ones_like(CALC_GRID))
    with pytest.raises(ValueError, match="kbpp_ev"):
        measured_windows({"kb2_ev": 1.0}, {"kbpp_ev": -18.0, "kb2_ev": -5.0})


def test_real_calculated_spectra_shifted_scaled_and_noisy():
    """The ensemble-mean spectra of the two polymorphs computed with pw.x + projwfc.x (tests/ml/data)."""
    from pathlib import Path

    data = np.loadtxt(Path(__file__).parent / "data" / "polymorph_mean_spectra.txt")
    grid, rutile, quartz = data.T
    rng = np.random.default_rng(7)
    for calc in (rutile, quartz):
        reference = measured_targets(grid, calc, grid, calc)
        energy = grid + 11090.0 + 7.3
        noisy = 40.0 * calc + rng.normal(0.0, 0.01 * 40.0 * calc.max(), len(grid))
        result = measured_targets(energy, noisy, grid, calc)
        for name, (lo, hi) in reference["windows"].items():
            assert result["windows"][name] == pytest.approx((lo + 11097.3, hi + 11097.3), abs=0.05)
        np.testing.assert_array_less(np.abs(result["targets"] - reference["targets"]), 4 * result["target_errors"])
    # 6-fold and 4-fold Ge differ in the Kβ″/Kβ2 ratio and the Kβ″ width by more than 4 errors at
    # 1 % noise (the separation of the mean energies hardly differs: −13.24 against −13.18 eV)
    six, four = (measured_targets(grid, calc, grid, calc) for calc in (rutile, quartz))
    for index in (1, 2):  # kbpp_over_kb2_m0, kbpp_m2
        assert abs(six["targets"][index] - four["targets"][index]) > 4 * result["target_errors"][index]
