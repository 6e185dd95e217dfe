"""Site-resolved Kβ emission spectra from projections on atomic p orbitals (SCIENCE.md §2).

For emitting site s, with k-point weights w_k (normalized to sum 1) and occupied states n::

    I_s(E) = Σ_{n,k} w_k |<p_s|ψ_nk>|² G(E − (ε_nk − E_ref,s))

where ``|<p_s|ψ>|²`` is summed over the three p orbitals of the site and G is a unit-area Gaussian
of full width at half maximum ``fwhm`` (eV), cut off beyond 8 σ, optionally convolved with a
Lorentzian (Voigt) of FWHM ``lorentzian_fwhm`` for the 1s core-hole lifetime. Intensities are in
states/eV per site.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import voigt_profile

from .validation import as_finite_array, check_positive

ALIGNMENTS = ("vbm", "semicore", "potential")
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: A Gaussian line shape is cut off beyond this many standard deviations (exp(-32) = 1.3e-14 of its peak).
GAUSSIAN_REACH_SIGMA = 8.0
# Highest-occupied tolerance (eV): states up to homo + this count as occupied.
OCCUPATION_TOLERANCE = 1e-6


@dataclass(frozen=True)
class SiteSpectra:
    """Spectra of several sites on one grid.

    :ivar energies: (n_E,) energy grid in eV, relative to each site's reference.
    :ivar intensities: (n_sites, n_E) in states/eV.
    :ivar references: (n_sites,) absolute reference energy (eV) subtracted for each site.
    """

    energies: np.ndarray
    intensities: np.ndarray
    references: np.ndarray


def energy_grid(start: float = -30.0, stop: float = 5.0, step: float = 0.05) -> np.ndarray:
    """The common energy grid in eV: start, start + step, ..., up to stop (included when it falls
    on the grid within 1e-9 eV)."""
    step = check_positive(step, "step")
    try:
        start, stop = float(start), float(stop)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`start` and `stop` must be numbers (eV); got {start!r}, {stop!r}") from exc
    if not np.isfinite(start) or not np.isfinite(stop) or stop <= start:
        raise ValueError(f"`stop` ({stop}) must be larger than `start` ({start}) eV")
    count = int(np.floor((stop - start) / step + 1e-9)) + 1
    return start + step * np.arange(count)


def broaden(centers, weights, grid, fwhm: float = 1.0, lorentzian_fwhm: float = 0.0) -> np.ndarray:
    """Sum of unit-area line shapes at ``centers`` (n_sites, n_states) eV with ``weights`` (n_sites,
    n_states) on ``grid`` (n_E,) eV: Gaussian of FWHM ``fwhm``, or Voigt with a Lorentzian FWHM.

    :returns: (n_sites, n_E) in weight units per eV.
    """
    centers = as_finite_array(centers, "centers", ndim=2)
    weights = as_finite_array(weights, "weights", ndim=2)
    grid = as_finite_array(grid, "grid", ndim=1)
    if centers.shape != weights.shape:
        raise ValueError(f"`centers` {centers.shape} and `weights` {weights.shape} must have the same shape")
    sigma = check_positive(fwhm, "fwhm") * FWHM_TO_SIGMA
    gamma = float(lorentzian_fwhm) / 2.0
    if not np.isfinite(gamma) or gamma < 0:
        raise ValueError(f"`lorentzian_fwhm` must be >= 0 eV; got {lorentzian_fwhm!r}")
    # Drop states far outside the grid: they add nothing (Gaussian) or a negligible tail.
    reach = GAUSSIAN_REACH_SIGMA * sigma + (50.0 * gamma if gamma > 0 else 0.0)
    keep = np.any((centers > grid[0] - reach) & (centers < grid[-1] + reach), axis=0)
    centers, weights = centers[:, keep], weights[:, keep]
    offsets = grid[None, None, :] - centers[:, :, None]  # (n_sites, n_states, n_E)
    if gamma > 0:
        shapes = voigt_profile(offsets, sigma, gamma)
    else:
        # Each Gaussian ends at GAUSSIAN_REACH_SIGMA σ (its tail there is 1e-14 of its peak): the spectra
        # are exactly zero far from every state instead of float noise, which also stores compactly.
        scaled = offsets / sigma
        shapes = np.where(np.abs(scaled) <= GAUSSIAN_REACH_SIGMA, np.exp(-0.5 * scaled**2), 0.0)
        shapes /= sigma * np.sqrt(2.0 * np.pi)
    return np.einsum("sn,sne->se", weights, shapes)


def map_orbitals_to_sites(orbital_positions, site_positions, cell, pbc=(True, True, True), tol: float = 0.05) -> np.ndarray:
    """Index of the site of each orbital, by position with the minimum-image convention.

    projwfc.x orbitals carry a position but no atom index; MD cells may hold atoms outside the cell.

    :param orbital_positions: (n_orb, 3) Å.
    :param site_positions: (n_sites, 3) Å.
    :param cell: (3, 3) cell rows in Å.
    :param pbc: periodic axes.
    :param tol: largest accepted orbital–site distance in Å.
    :raises ValueError: when an orbital has no site within ``tol`` Å.
    """
    orbitals = as_finite_array(orbital_positions, "orbital_positions", ndim=2)
    sites = as_finite_array(site_positions, "site_positions", ndim=2)
    cell = as_finite_array(cell, "cell", ndim=2)
    periodic = np.asarray(pbc, dtype=bool)
    delta = orbitals[:, None, :] - sites[None, :, :]
    if periodic.any():
        fractional = delta @ np.linalg.inv(cell)
        fractional[..., periodic] -= np.round(fractional[..., periodic])
        delta = fractional @ cell
    distance = np.linalg.norm(delta, axis=-1)
    site = np.argmin(distance, axis=1)
    nearest = distance[np.arange(len(orbitals)), site]
    lost = np.flatnonzero(nearest > tol)
    if len(lost):
        raise ValueError(f"orbitals {lost[:5].tolist()} lie {nearest[lost[0]]:.3f} Å or more from every site "
                         f"(tolerance `tol` = {tol} Å); the projections do not belong to this structure")
    return site


def project_sites(orbital_projections, orbital_site, orbital_l, n_sites: int, l: int = 1) -> np.ndarray:
    """Sum ``|<orbital|ψ_nk>|²`` over the orbitals of angular momentum ``l`` of each site.

    :param orbital_projections: (n_orb, n_k, n_bands).
    :param orbital_site: (n_orb,) site index.
    :param orbital_l: (n_orb,) angular momentum.
    :returns: (n_sites, n_k, n_bands).
    """
    weights = as_finite_array(orbital_projections, "orbital_projections", ndim=3)
    site = np.asarray(orbital_site, dtype=int)
    angular = np.asarray(orbital_l, dtype=int)
    if site.shape != (len(weights),) or angular.shape != (len(weights),):
        raise ValueError(f"`orbital_site` and `orbital_l` need one entry per orbital ({len(weights)})")
    if np.any(site < 0) or np.any(site >= n_sites):
        raise ValueError(f"`orbital_site` holds indices outside [0, {n_sites})")
    result = np.zeros((n_sites,) + weights.shape[1:])
    selected = angular == l
    np.add.at(result, site[selected], weights[selected])
    return result


def occupied_bands(n_electrons: float, n_bands: int) -> int:
    """Number of doubly occupied bands of a spin-unpolarized insulator: ⌊round(N_electrons) / 2⌋.

    :raises ValueError: when that is not between 1 and ``n_bands`` (projwfc.x had too few bands).
    """
    try:
        count = int(round(float(n_electrons))) // 2
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"`n_electrons` must be a number; got {n_electrons!r}") from exc
    if not 1 <= count <= n_bands:
        raise ValueError(f"{n_electrons} electrons fill {count} bands, but {n_bands} bands were computed: "
                         "set `nbnd` to at least the number of occupied bands")
    return count


def site_spectra(eigenvalues, projections, k_weights, grid=None, fwhm: float = 1.0, lorentzian_fwhm: float = 0.0,
                 alignment: str = "vbm", homo: float | None = None, d_projections=None, reference=None) -> SiteSpectra:
    """Broadened p-projected occupied DOS of each site, aligned (SCIENCE.md §2).

    :param eigenvalues: (n_k, n_bands) Kohn–Sham energies, eV, absolute.
    :param projections: (n_sites, n_k, n_bands) ``Σ_p |<p_s|ψ_nk>|²`` of each site.
    :param k_weights: (n_k,) weights; normalized here to sum 1 (QE's sum to 2 without spin).
    :param grid: (n_E,) energies relative to the reference, eV; default: the grid of :func:`energy_grid`.
    :param fwhm: Gaussian FWHM in eV (default 1.0).
    :param lorentzian_fwhm: Lorentzian FWHM, eV (default 0).
    :param alignment: 'vbm' (default): E_ref = ``homo`` for every site; 'semicore': E_ref = the
        site's d-band centroid over occupied states (``d_projections`` needed); 'potential':
        E_ref = ``reference`` per site, given by the caller (eV).
    :param homo: highest occupied level (eV); states with ε <= homo count as occupied. Default: the
        highest eigenvalue, for insulators where projwfc.x reports only occupied bands.
    :returns: :class:`SiteSpectra`.
    """
    eigenvalues = as_finite_array(eigenvalues, "eigenvalues", ndim=2)
    projections = as_finite_array(projections, "projections", ndim=3)
    k_weights = as_finite_array(k_weights, "k_weights", ndim=1)
    if projections.shape[1:] != eigenvalues.shape:
        raise ValueError(f"`projections` must be (n_sites, {eigenvalues.shape[0]}, {eigenvalues.shape[1]}) "
                         f"to match `eigenvalues`; got {projections.shape}")
    if k_weights.shape != (eigenvalues.shape[0],) or np.any(k_weights < 0) or k_weights.sum() <= 0:
        raise ValueError(f"`k_weights` must be {eigenvalues.shape[0]} non-negative numbers with a positive sum")
    if alignment not in ALIGNMENTS:
        raise ValueError(f"`alignment` must be one of {', '.join(ALIGNMENTS)}; got {alignment!r}")
    grid = energy_grid() if grid is None else as_finite_array(grid, "grid", ndim=1)
    homo = float(eigenvalues.max()) if homo is None else float(homo)
    occupied = eigenvalues <= homo + OCCUPATION_TOLERANCE
    weights_k = k_weights / k_weights.sum()
    n_sites = projections.shape[0]

    if alignment == "vbm":
        references = np.full(n_sites, homo)
    elif alignment == "semicore":
        if d_projections is None:
            raise ValueError("alignment 'semicore' needs `d_projections` (n_sites, n_k, n_bands)")
        d_weights = as_finite_array(d_projections, "d_projections", ndim=3)
        if d_weights.shape != projections.shape:
            raise ValueError(f"`d_projections` must have the shape of `projections` {projections.shape}")
        d_weights = d_weights * occupied[None] * weights_k[None, :, None]
        total = d_weights.sum(axis=(1, 2))
        if np.any(total <= 0):
            raise ValueError(f"sites {np.flatnonzero(total <= 0).tolist()} have no occupied d weight; alignment "
                             "'semicore' needs a pseudopotential with the semicore d shell in valence")
        references = (d_weights * eigenvalues[None]).sum(axis=(1, 2)) / total
    else:
        if reference is None:
            raise ValueError("alignment 'potential' needs `reference` (n_sites,) in eV")
        references = as_finite_array(reference, "reference", ndim=1)
        if references.shape != (n_sites,):
            raise ValueError(f"`reference` must hold one energy per site ({n_sites}); got {references.shape}")

    mask = occupied.reshape(-1)
    states = eigenvalues.reshape(-1)[mask]
    weights = (projections * weights_k[None, :, None]).reshape(n_sites, -1)[:, mask]
    centers = states[None, :] - references[:, None]
    intensities = broaden(centers, weights, grid, fwhm=fwhm, lorentzian_fwhm=lorentzian_fwhm)
    return SiteSpectra(energies=grid, intensities=intensities, references=references)
