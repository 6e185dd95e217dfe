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

from .progress import show_progress
from .validation import as_finite_array, check_matching_rows, check_positive

__all__ = [
    "DEFAULT_SPECIES",
    "distances_from_coulomb",
    "coordination_number",
    "fractional_coordination",
    "analyze_coulomb",
    "ENSEMBLE_MOMENT_ORDERS",
    "inverse_weights",
    "reconstruct_targets",
    "true_ensemble_means",
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


#: Moment orders that the inverse compares by default: M0 and M1. They are the moments an ensemble
#: mean keeps (M0 of the mean spectrum is the mean M0; M1 is the M0-weighted mean M1), while M2 and M3
#: of a mean spectrum also hold the spread between sites, which no single descriptor predicts.
ENSEMBLE_MOMENT_ORDERS = (0, 1)


def inverse_weights(target_names, r2, orders=ENSEMBLE_MOMENT_ORDERS) -> np.ndarray:
    """Per-target weights of the inverse: the emulator's held-out R² clipped to [0, 1] for targets of
    the given moment ``orders`` (names ending in ``_m<order>``), 0 for the others.

    :raises ValueError: when no target gets a positive weight.
    """
    r2 = as_finite_array(r2, "r2", ndim=1)
    names = list(target_names)
    if len(names) != len(r2):
        raise ValueError(f"`target_names` has {len(names)} names but `r2` has {len(r2)} values")
    used = np.array([any(name.endswith(f"_m{order}") for order in orders) for name in names])
    weights = np.where(used, np.clip(r2, 0.0, 1.0), 0.0)
    if not np.any(weights > 0):
        raise ValueError(f"no target of moment orders {list(orders)} is predicted (held-out R² > 0) by the emulator; "
                         "nothing to invert")
    return weights


def reconstruct_targets(eca, Y, n_atoms: int, n_starts: int = 4, target_weights=None, verbose: bool = False,
                        **analysis_options) -> dict:
    """Structure read off the moments ``Y`` through a fitted ECA (SCIENCE.md §6).

    For each target row: ECA scores ``t`` that the emulator maps closest to it (``eca.inverse``),
    the pseudo-Coulomb matrix ``t·V`` (un-standardized), and what :func:`analyze_coulomb` reads
    from it.

    :param eca: a fitted :class:`~aiida_xesml.ml.eca.ECA`.
    :param Y: (n, m) or (m,) moments in the emulator's output units.
    :param n_atoms: descriptor size N the emulator was trained on.
    :param target_weights: per-target weights of the inverse (see :meth:`ECA.inverse`), e.g. the
        emulator's held-out R² clipped to [0, 1]; None weighs all targets equally.
    :param verbose: show the inverse's progress bar (starts done) on stderr, as ``ECA(verbose=True)`` does.
    :param analysis_options: passed to :func:`analyze_coulomb` (z_center, species, cutoff Å, width Å).
    :returns: dict of arrays, one row per target: ``scores`` (n, k), ``pseudo_coulomb`` (n, d),
        ``predicted_moments`` (n, m) the emulator's moments of the reconstruction, ``inverse_loss``
        (n,), and the keys of :func:`analyze_coulomb`.
    """
    with show_progress(verbose):
        scores = eca.inverse(Y, n_starts=n_starts, target_weights=target_weights)
    pseudo = eca.expand(scores)
    result = {
        "scores": scores,
        "pseudo_coulomb": pseudo,
        "predicted_moments": eca.emulator.predict(pseudo),
        "inverse_loss": np.asarray(eca.inverse_loss_, dtype=float),
    }
    result.update(analyze_coulomb(pseudo, n_atoms, **analysis_options))
    return result


def true_ensemble_means(descriptors, label, n_atoms: int, **analysis_options) -> dict:
    """Per-label ensemble means of the structure read from the true descriptors, for comparison.

    :param descriptors: (n, d) true local Coulomb matrices.
    :param label: (n,) row labels (e.g. GPa).
    :returns: ``label`` (k,) sorted unique labels; per label ``distances_angstrom`` (k, n_atoms-1)
        mean distance of each neighbour slot; ``first_shell_mean_angstrom`` (k,) mean over sites of
        each site's mean first-shell Ge–O distance; ``cn_mean`` and ``cn_fractional_mean`` (k,);
        ``n_sites`` (k,).
    """
    analysis = analyze_coulomb(descriptors, n_atoms, **analysis_options)
    label = np.asarray(label, dtype=float)
    check_matching_rows(np.atleast_2d(descriptors), "descriptors", label, "label")
    labels = np.unique(label)
    rows = [label == value for value in labels]
    distances = np.where(np.isfinite(analysis["distances_angstrom"]), analysis["distances_angstrom"], np.nan)
    return {
        "label": labels,
        "distances_angstrom": np.array([np.nanmean(distances[r], axis=0) for r in rows]),
        "first_shell_mean_angstrom": np.array([np.nanmean(analysis["first_shell_mean_angstrom"][r]) for r in rows]),
        "cn_mean": np.array([analysis["cn"][r].mean() for r in rows]),
        "cn_fractional_mean": np.array([analysis["cn_fractional"][r].mean() for r in rows]),
        "n_sites": np.array([int(r.sum()) for r in rows]),
    }
