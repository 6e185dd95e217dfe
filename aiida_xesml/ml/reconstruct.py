"""From a (pseudo-)local Coulomb matrix back to distances, species and coordination (SCIENCE.md §4, §6).

Row 0 of a local Coulomb matrix holds ``M_0j = Z_0 Z_j / r_0j`` and the diagonal ``M_jj = 0.5 Z_j**2.4``,
so each neighbour's species and its distance (Å) from the centre can be read back:
``Z_j = (2 M_jj)**(1/2.4)``, rounded to the nearest allowed element, and ``r_0j = Z_0 Z_j / M_0j``.
A pseudo-matrix reconstructed from ECA scores is not an exact Coulomb matrix: its diagonal is
rounded to the nearest element present in the training data, and entries that are not positive
(padding, or a reconstruction that undershoots) mean "no atom": distance ``inf``, Z 0.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from .validation import as_finite_array, check_matching_rows, check_positive

__all__ = [
    "DEFAULT_SPECIES",
    "distances_from_coulomb",
    "coordination_number",
    "fractional_coordination",
    "analyze_coulomb",
]

#: Atomic numbers the diagonal is rounded to by default: the elements of GeO2 (O, Ge).
DEFAULT_SPECIES = (8, 32)
_DIAGONAL_EXPONENT = 2.4


def distances_from_coulomb(features, n_atoms: int, z_center: float = 32, species=DEFAULT_SPECIES):
    """Distances (Å) from the centre and atomic numbers of the neighbours, from Coulomb-matrix features.

    :param features: (n, n_atoms*(n_atoms+1)//2) features (upper triangle incl. diagonal,
        row-major, as :func:`aiida_xesml.ml.descriptors.local_coulomb_matrix` makes), or one 1-D sample.
    :param n_atoms: matrix size N, the centre included.
    :param z_center: atomic number of the centre, Z_0 (default 32, Ge).
    :param species: atomic numbers a diagonal entry is rounded to (nearest in Z; default (8, 32)).
    :returns: ``(distances, Z)``, both (n, n_atoms - 1): r_0j in Å (``inf`` where M_jj <= 0 or
        M_0j <= 0) and the rounded atomic numbers (int, 0 at those entries). A 1-D input still gives
        2-D outputs with one row.
    """
    features = as_finite_array(features, "features", ndim=(1, 2))
    features = np.atleast_2d(features)
    n_atoms = _check_n_atoms(n_atoms)
    expected = n_atoms * (n_atoms + 1) // 2
    if features.shape[1] != expected:
        raise ValueError(f"`features` must have n_atoms*(n_atoms+1)/2 = {expected} columns for "
                         f"`n_atoms` = {n_atoms}; got {features.shape[1]}")
    z_center = check_positive(z_center, "z_center")
    allowed = as_finite_array(species, "species", ndim=1)
    if np.any(allowed <= 0):
        raise ValueError(f"`species` must hold positive atomic numbers; got {list(species)}")

    j = np.arange(1, n_atoms)
    # In the row-major upper triangle, row i starts at i*N - i*(i-1)/2 and begins with M_ii.
    diagonal = features[:, j * n_atoms - j * (j - 1) // 2]
    row0 = features[:, j]
    present = (diagonal > 0) & (row0 > 0)
    raw_z = (2.0 * np.clip(diagonal, 0.0, None)) ** (1.0 / _DIAGONAL_EXPONENT)
    z = allowed[np.argmin(np.abs(raw_z[..., None] - allowed), axis=-1)]
    with np.errstate(divide="ignore"):
        distances = np.where(present, z_center * z / np.where(present, row0, 1.0), np.inf)
    return distances, np.where(present, z, 0).astype(int)


def coordination_number(distances, Z, cutoff: float = 2.3, neighbour_z: int = 8) -> np.ndarray:
    """Count of neighbours with atomic number ``neighbour_z`` closer than ``cutoff`` Å, per row.

    :param distances: (n, k) distances in Å (``inf`` allowed for absent atoms), or 1-D for one row.
    :param Z: atomic numbers, same shape.
    :returns: (n,) int counts (strictly closer than the cutoff, as ``ase.neighborlist`` counts).
    """
    distances, Z = _check_distances_and_z(distances, Z)
    cutoff = check_positive(cutoff, "cutoff")
    return np.count_nonzero((Z == neighbour_z) & (distances < cutoff), axis=1)


def fractional_coordination(distances, Z, cutoff: float = 2.3, width: float = 0.1, neighbour_z: int = 8) -> np.ndarray:
    """Smooth coordination number: sum over ``neighbour_z`` neighbours of 1 / (1 + exp((r - cutoff)/width)).

    A Fermi switching function instead of a hard step, so that the coordination read off a
    reconstructed (ensemble-mean) pseudo-matrix varies continuously with the distances instead of
    being forced to an integer. A neighbour at r = cutoff counts 1/2; at cutoff ∓ 4.6 width it
    counts 0.99 / 0.01.

    :param distances: (n, k) distances in Å (``inf`` counts 0), or 1-D for one row.
    :param Z: atomic numbers, same shape.
    :param cutoff: switching distance in Å (default 2.3).
    :param width: switching width in Å (default 0.1).
    :returns: (n,) float.
    """
    distances, Z = _check_distances_and_z(distances, Z)
    cutoff = check_positive(cutoff, "cutoff")
    width = check_positive(width, "width")
    weights = expit((cutoff - distances) / width)  # = 1/(1+exp((r-cutoff)/width)); inf -> 0
    return np.sum(np.where(Z == neighbour_z, weights, 0.0), axis=1)


def analyze_coulomb(features, n_atoms: int, z_center: float = 32, species=DEFAULT_SPECIES,
                    cutoff: float = 2.3, width: float = 0.1, neighbour_z: int = 8, monotonic: bool = True) -> dict:
    """Distances, species and coordination read from (pseudo-)Coulomb-matrix features.

    With ``monotonic`` (default) the distances are made non-decreasing along the slots, as the
    descriptor orders neighbours by distance. A pseudo-matrix (an ensemble mean, or an ECA
    reconstruction) mixes species in the outer slots; such a slot reads back as a spuriously short
    distance of the rounded species, and would count as a neighbour inside ``cutoff``.

    :returns: dict of arrays, one row per sample: ``distances_angstrom`` (n, n_atoms-1),
        ``species`` (n, n_atoms-1) atomic numbers, ``cn`` (n,) int, ``cn_fractional`` (n,) float
        (Fermi switching, see :func:`fractional_coordination`), ``first_shell_mean_angstrom`` (n,)
        mean distance of the ``neighbour_z`` atoms closer than ``cutoff`` Å (NaN when there is none).
    """
    distances, z = distances_from_coulomb(features, n_atoms, z_center=z_center, species=species)
    if monotonic:
        distances = np.maximum.accumulate(distances, axis=1)
    cn = coordination_number(distances, z, cutoff=cutoff, neighbour_z=neighbour_z)
    in_shell = (z == neighbour_z) & (distances < cutoff)
    total = np.sum(np.where(in_shell, distances, 0.0), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        first_shell = np.where(cn > 0, total / np.maximum(cn, 1), np.nan)
    return {
        "distances_angstrom": distances,
        "species": z,
        "cn": cn,
        "cn_fractional": fractional_coordination(distances, z, cutoff=cutoff, width=width,
                                                 neighbour_z=neighbour_z),
        "first_shell_mean_angstrom": first_shell,
    }


def _check_n_atoms(n_atoms) -> int:
    if isinstance(n_atoms, (bool, np.bool_)) or not isinstance(n_atoms, (int, np.integer)) or n_atoms < 2:
        raise ValueError(f"`n_atoms` must be an integer >= 2; got {n_atoms!r}")
    return int(n_atoms)


def _check_distances_and_z(distances, Z):
    try:
        distances = np.atleast_2d(np.asarray(distances, dtype=float))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`distances` must be a numeric array of Å; got {type(distances).__name__}") from exc
    if distances.ndim != 2 or distances.size == 0:
        raise ValueError(f"`distances` must be a non-empty 1-D or 2-D array; got shape {distances.shape}")
    if np.any(np.isnan(distances)) or np.any(distances < 0):
        raise ValueError("`distances` must be >= 0 Å or inf (no NaN)")
    Z = np.atleast_2d(as_finite_array(Z, "Z", ndim=(1, 2)))
    check_matching_rows(distances, "distances", Z, "Z")
    if Z.shape != distances.shape:
        raise ValueError(f"`Z` must have the shape of `distances` {distances.shape}; got {Z.shape}")
    return distances, Z
