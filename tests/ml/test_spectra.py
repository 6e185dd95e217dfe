"""Site spectra: broadening, occupations, alignments, orbital-to-site mapping."""

import numpy as np
import pytest

from aiida_xesml.ml.spectra import broaden, energy_grid, map_orbitals_to_sites, project_sites, site_spectra

FINE = np.arange(-10.0, 10.0, 0.001)


def test_energy_grid_defaults():
    grid = energy_grid()
    assert grid[0] == -30.0 and grid[-1] == pytest.approx(5.0) and len(grid) == 701
    with pytest.raises(ValueError, match="stop"):
        energy_grid(1.0, 1.0)
    with pytest.raises(ValueError, match="step"):
        energy_grid(0.0, 1.0, 0.0)


def test_gaussian_has_the_requested_fwhm_and_area():
    line = broaden([[0.3]], [[2.0]], FINE, fwhm=1.3)[0]
    assert np.trapezoid(line, FINE) == pytest.approx(2.0, rel=1e-6)
    above = FINE[line >= line.max() / 2]
    assert above[-1] - above[0] == pytest.approx(1.3, abs=0.002)
    assert FINE[np.argmax(line)] == pytest.approx(0.3, abs=0.001)


def test_voigt_with_zero_lorentzian_is_the_gaussian_and_wider_otherwise():
    gauss = broaden([[0.0]], [[1.0]], FINE, fwhm=1.0)
    voigt = broaden([[0.0]], [[1.0]], FINE, fwhm=1.0, lorentzian_fwhm=1e-12)
    np.testing.assert_allclose(voigt, gauss, atol=1e-9)
    wide = broaden([[0.0]], [[1.0]], FINE, fwhm=1.0, lorentzian_fwhm=0.5)[0]
    above = FINE[wide >= wide.max() / 2]
    assert above[-1] - above[0] > 1.2


def _two_site_case():
    eigenvalues = np.array([[-20.0, -6.0, -1.0, 3.0], [-19.0, -5.0, 0.0, 4.0]])  # 2 k-points, 3 occupied
    projections = np.zeros((2, 2, 4))
    projections[0, :, 0] = 0.5  # site 0: weight in the deep band
    projections[1, :, 1] = 0.8  # site 1: weight in the middle band
    projections[:, :, 3] = 1.0  # unoccupied band: must not appear
    return eigenvalues, projections


def test_vbm_alignment_and_occupations():
    eigenvalues, projections = _two_site_case()
    result = site_spectra(eigenvalues, projections, [1.0, 1.0], homo=0.0)
    np.testing.assert_allclose(result.references, [0.0, 0.0])
    grid = result.energies
    areas = np.trapezoid(result.intensities, grid, axis=1)
    np.testing.assert_allclose(areas, [0.5, 0.8], rtol=1e-4)  # k weights normalized to 1; band 3 excluded
    centroid = np.trapezoid(result.intensities[0] * grid, grid) / areas[0]
    assert centroid == pytest.approx(-19.5, abs=1e-4)  # two k-points at -20 and -19 eV, equal weights


def test_semicore_and_potential_alignments_shift_each_site():
    eigenvalues, projections = _two_site_case()
    d = np.zeros_like(projections)
    d[0, :, 0] = 1.0
    d[1, :, 0] = 1.0
    d[1, 1, 0] = 3.0  # site 1's d weight leans to the second k-point
    result = site_spectra(eigenvalues, projections, [0.5, 0.5], alignment="semicore", homo=0.0, d_projections=d)
    np.testing.assert_allclose(result.references, [-19.5, (-20.0 + 3 * -19.0) / 4])
    shifted = site_spectra(eigenvalues, projections, [0.5, 0.5], alignment="potential", homo=0.0,
                           reference=[-2.0, 3.0])
    base = site_spectra(eigenvalues, projections, [0.5, 0.5], homo=0.0)
    step = shifted.energies[1] - shifted.energies[0]
    np.testing.assert_allclose(shifted.intensities[0, 40:], base.intensities[0, :-40], atol=1e-12)  # E + 2 eV
    assert step == pytest.approx(0.05)
    with pytest.raises(ValueError, match="alignment"):
        site_spectra(eigenvalues, projections, [1, 1], alignment="core")
    with pytest.raises(ValueError, match="d weight"):
        site_spectra(eigenvalues, projections, [1, 1], alignment="semicore", d_projections=np.zeros_like(d))


def test_orbitals_map_to_sites_across_periodic_boundaries_in_a_triclinic_cell():
    cell = np.array([[5.0, 0.0, 0.0], [1.5, 4.5, 0.0], [0.7, 0.4, 6.0]])
    sites = np.array([[0.1, 0.1, 0.1], [2.5, 2.0, 3.0]])
    orbitals = np.array([sites[1] + cell[0] - cell[2], sites[0] + cell[1] + 0.01, sites[1]])
    np.testing.assert_array_equal(map_orbitals_to_sites(orbitals, sites, cell), [1, 0, 1])
    with pytest.raises(ValueError, match="tol"):
        map_orbitals_to_sites(orbitals + 1.0, sites, cell)


def test_project_sites_sums_the_p_orbitals_of_each_site():
    weights = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)
    result = project_sites(weights, [0, 0, 0, 1, 1], [0, 1, 1, 1, 2], n_sites=2, l=1)
    np.testing.assert_allclose(result[0], weights[1] + weights[2])
    np.testing.assert_allclose(result[1], weights[3])


def test_occupied_bands_from_the_electron_count():
    from aiida_xesml.ml.spectra import occupied_bands

    assert occupied_bands(256.0, 128) == 128
    assert occupied_bands(31.9999999, 20) == 16
    with pytest.raises(ValueError, match="nbnd"):
        occupied_bands(258, 128)
    with pytest.raises(ValueError, match="n_electrons"):
        occupied_bands("many", 128)


def test_gaussian_ends_at_eight_sigma_with_its_area_kept():
    from aiida_xesml.ml.spectra import FWHM_TO_SIGMA, GAUSSIAN_REACH_SIGMA

    sigma = 1.0 * FWHM_TO_SIGMA
    line = broaden([[0.0]], [[1.0]], FINE, fwhm=1.0)[0]
    outside = np.abs(FINE) > GAUSSIAN_REACH_SIGMA * sigma
    assert np.all(line[outside] == 0.0) and np.all(line[~outside] > 0.0)
    assert np.trapezoid(line, FINE) == pytest.approx(1.0, abs=1e-12)
    inside = ~outside
    exact = np.exp(-0.5 * (FINE[inside] / sigma) ** 2) / (sigma * np.sqrt(2.0 * np.pi))
    np.testing.assert_allclose(line[inside], exact, rtol=1e-13)
