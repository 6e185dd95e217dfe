"""From a (pseudo-)local Coulomb matrix back to distances, species and coordination (SCIENCE.md §4, §6).

Row 0 of a local Coulomb matrix holds ``M_0j = Z_0 Z_j / r_0j`` and the diagonal ``M_jj = 0.5 Z_j**2.4``,
so each neighbour's distance (Å) from the centre can be read back as ``r_0j = Z_0 Z_j / M_0j``.

- With the species-resolved ordering (``slot_z`` given: every slot has a known atomic number), the
  slot's Z is known and ``r_0j`` is exact for a true matrix and continuous for an average or an
  ECA reconstruction ("the mean distance of the 5th-nearest O").
- With the published distance ordering (``slot_z`` None), a slot's species varies between sites and
  is guessed from the diagonal, rounded to the nearest allowed element. That is exact for one true
  matrix, but an average over a mixed ensemble cannot be read this way: a slot reads as O only when
  most of the averaged sites have an O there (see docs/topics/descriptor.md).

Entries that are not positive (padding, or a reconstruction that undershoots) mean "no atom":
distance ``inf``, Z 0.

**Coordination number, one definition everywhere** (truth and reconstruction alike): a smooth sum
over the O neighbours ``CN = Σ_j s(r_0j)`` with the cosine switch ``s(r) = 1`` for
``r <= cutoff - width``, ``0`` for ``r >= cutoff + width``, and ``(1 + cos(π (r - cutoff + width) / (2 width))) / 2``
between (defaults cutoff 2.3 Å, width 0.1 Å: every O closer than 2.2 Å counts fully, so crystals
give integer CNs, and an O at 2.3 Å counts 1/2). The integer count (O strictly closer than the
cutoff) is reported beside it. The first-shell distance is the switch-weighted mean Ge–O distance
``Σ s(r_j) r_j / Σ s(r_j)``. A true ensemble value is the mean of the same per-site function.
"""

from __future__ import annotations

import warnings

import numpy as np

from .progress import show_progress
from .validation import as_finite_array, check_matching_rows, check_n_atoms, check_positive

__all__ = [
    "DEFAULT_SPECIES",
    "CN_CUTOFF",
    "CN_WIDTH",
    "switching",
    "distances_from_coulomb",
    "coordination_number",
    "fractional_coordination",
    "first_shell_distance",
    "analyze_coulomb",
    "site_structure",
    "ENSEMBLE_MOMENT_ORDERS",
    "inverse_weights",
    "reconstruct_targets",
    "RECONSTRUCTION_METHODS",
    "STRUCTURE_KEYS",
    "reconstruct_ensemble",
    "true_ensemble_means",
]

#: Atomic numbers the diagonal is rounded to by default: the elements of GeO2 (O, Ge).
DEFAULT_SPECIES = (8, 32)
#: Ge–O bond cutoff (Å) of the coordination number and its switching half-width (Å).
CN_CUTOFF = 2.3
CN_WIDTH = 0.1
_DIAGONAL_EXPONENT = 2.4


def _row0_columns(n_atoms: int):
    """Columns of the diagonal M_jj and of row 0 M_0j, j = 1..N-1, in the row-major upper triangle."""
    j = np.arange(1, n_atoms)
    # row i starts at i*N - i*(i-1)/2 and begins with M_ii
    return j * n_atoms - j * (j - 1) // 2, j


def _slot_z(slot_z, n_atoms):
    """The neighbours' atomic numbers (n_atoms - 1,) from ``slot_z`` given with or without the centre."""
    z = np.asarray(as_finite_array(slot_z, "slot_z", ndim=1), dtype=int)
    if len(z) == n_atoms:
        z = z[1:]
    if len(z) != n_atoms - 1 or np.any(z <= 0):
        raise ValueError(f"`slot_z` must hold the positive atomic number of each of the {n_atoms} slots (or of the "
                         f"{n_atoms - 1} neighbour slots); got {len(z)} values")
    return z


def distances_from_coulomb(features, n_atoms: int, z_center: float = 32, species=DEFAULT_SPECIES, slot_z=None):
    """Distances (Å) from the centre and atomic numbers of the neighbours, from Coulomb-matrix features.

    :param features: (n, n_atoms*(n_atoms+1)//2) features (upper triangle incl. diagonal,
        row-major, as :func:`aiida_xesml.ml.descriptors.local_coulomb_matrix` makes), or one 1-D sample.
    :param n_atoms: matrix size N, the centre included.
    :param z_center: atomic number of the centre, Z_0 (default 32, Ge).
    :param species: atomic numbers a diagonal entry is rounded to when ``slot_z`` is None (nearest in Z;
        default (8, 32)).
    :param slot_z: the atomic number of every slot when the ordering fixes them (species-resolved
        ordering; :func:`aiida_xesml.ml.descriptors.slot_atomic_numbers`), with or without the centre's;
        the diagonal is then not read. None: the distance ordering, species read from the diagonal.
    :returns: ``(distances, Z)``, both (n, n_atoms - 1): r_0j in Å (``inf`` where M_0j <= 0, or M_jj <= 0
        when species are read from the diagonal) and the atomic numbers (int, 0 at those entries). A 1-D
        input still gives 2-D outputs with one row.
    """
    features = as_finite_array(features, "features", ndim=(1, 2))
    features = np.atleast_2d(features)
    n_atoms = check_n_atoms(n_atoms)
    expected = n_atoms * (n_atoms + 1) // 2
    if features.shape[1] != expected:
        raise ValueError(f"`features` must have n_atoms*(n_atoms+1)/2 = {expected} columns for "
                         f"`n_atoms` = {n_atoms}; got {features.shape[1]}")
    z_center = check_positive(z_center, "z_center")
    diagonal_columns, row0_columns = _row0_columns(n_atoms)
    row0 = features[:, row0_columns]
    if slot_z is not None:
        z = np.broadcast_to(_slot_z(slot_z, n_atoms), row0.shape)
        present = row0 > 0
    else:
        allowed = as_finite_array(species, "species", ndim=1)
        if np.any(allowed <= 0):
            raise ValueError(f"`species` must hold positive atomic numbers; got {list(species)}")
        diagonal = features[:, diagonal_columns]
        present = (diagonal > 0) & (row0 > 0)
        raw_z = (2.0 * np.clip(diagonal, 0.0, None)) ** (1.0 / _DIAGONAL_EXPONENT)
        z = allowed[np.argmin(np.abs(raw_z[..., None] - allowed), axis=-1)]
    with np.errstate(divide="ignore"):
        distances = np.where(present, z_center * z / np.where(present, row0, 1.0), np.inf)
    return distances, np.where(present, z, 0).astype(int)


def switching(distances, cutoff: float = CN_CUTOFF, width: float = CN_WIDTH) -> np.ndarray:
    """The coordination switch s(r): 1 below ``cutoff - width`` Å, 0 above ``cutoff + width`` Å, a
    cosine in between (s(cutoff) = 1/2); ``inf`` gives 0."""
    r = np.asarray(distances, dtype=float)
    cutoff = check_positive(cutoff, "cutoff")
    width = check_positive(width, "width")
    x = np.clip((r - (cutoff - width)) / (2.0 * width), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def coordination_number(distances, Z, cutoff: float = CN_CUTOFF, neighbour_z: int = 8) -> np.ndarray:
    """Integer count of neighbours with atomic number ``neighbour_z`` closer than ``cutoff`` Å, per row.

    :param distances: (n, k) distances in Å (``inf`` allowed for absent atoms), or 1-D for one row.
    :param Z: atomic numbers, same shape.
    :returns: (n,) int counts (strictly closer than the cutoff, as ``ase.neighborlist`` counts).
    """
    distances, Z = _check_distances_and_z(distances, Z)
    cutoff = check_positive(cutoff, "cutoff")
    return np.count_nonzero((Z == neighbour_z) & (distances < cutoff), axis=1)


def fractional_coordination(distances, Z, cutoff: float = CN_CUTOFF, width: float = CN_WIDTH,
                            neighbour_z: int = 8) -> np.ndarray:
    """The smooth coordination number ``Σ_j s(r_j)`` over the ``neighbour_z`` neighbours (module docstring).

    The CN of the plugin: the same function gives the true per-site value, the true ensemble mean
    (averaged over sites) and the reconstructed one.

    :param distances: (n, k) distances in Å (``inf`` counts 0), or 1-D for one row.
    :param Z: atomic numbers, same shape.
    :param cutoff: switching midpoint in Å (default 2.3).
    :param width: switching half-width in Å (default 0.1).
    :returns: (n,) float.
    """
    distances, Z = _check_distances_and_z(distances, Z)
    weights = switching(distances, cutoff, width)
    return np.sum(np.where(Z == neighbour_z, weights, 0.0), axis=1)


def first_shell_distance(distances, Z, cutoff: float = CN_CUTOFF, width: float = CN_WIDTH,
                         neighbour_z: int = 8) -> np.ndarray:
    """Switch-weighted mean distance (Å) of the ``neighbour_z`` neighbours, per row; NaN without any."""
    distances, Z = _check_distances_and_z(distances, Z)
    weights = np.where(Z == neighbour_z, switching(distances, cutoff, width), 0.0)
    total = weights.sum(axis=1)
    weighted = np.sum(weights * np.where(weights > 0, distances, 0.0), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weighted / np.where(total > 0, total, 1.0), np.nan)


def _monotonic_per_block(distances, z):
    """Distances made non-decreasing along the slots of each species block (slot_z given) or all slots."""
    result = distances.copy()
    blocks = np.flatnonzero(np.diff(z[0]) != 0) + 1 if z.shape[1] else []
    for block in np.split(np.arange(z.shape[1]), blocks):
        result[:, block] = np.maximum.accumulate(distances[:, block], axis=1)
    return result


def analyze_coulomb(features, n_atoms: int, z_center: float = 32, species=DEFAULT_SPECIES,
                    cutoff: float = CN_CUTOFF, width: float = CN_WIDTH, neighbour_z: int = 8, monotonic: bool = True,
                    slot_z=None) -> dict:
    """Distances, species and coordination read from (pseudo-)Coulomb-matrix features.

    With ``monotonic`` (default) the distances are made non-decreasing along the slots (within each
    species block when ``slot_z`` is given), as the descriptor orders neighbours by distance. Without
    ``slot_z``, a pseudo-matrix (an ensemble mean, or an ECA reconstruction) mixes species in the outer
    slots; such a slot reads back as a spuriously short distance of the rounded species.

    :param slot_z: atomic numbers of the slots for the species-resolved ordering (see
        :func:`distances_from_coulomb`); None for the distance ordering.
    :returns: dict of arrays, one row per sample: ``distances_angstrom`` (n, n_atoms-1),
        ``species`` (n, n_atoms-1) atomic numbers, ``cn`` (n,) int count within ``cutoff``,
        ``cn_fractional`` (n,) the smooth CN (:func:`fractional_coordination`, the plugin's CN),
        ``first_shell_mean_angstrom`` (n,) (:func:`first_shell_distance`, NaN without neighbours).
    """
    distances, z = distances_from_coulomb(features, n_atoms, z_center=z_center, species=species, slot_z=slot_z)
    if monotonic:
        distances = _monotonic_per_block(distances, z) if slot_z is not None else np.maximum.accumulate(distances, axis=1)
    return {
        "distances_angstrom": distances,
        "species": z,
        "cn": coordination_number(distances, z, cutoff=cutoff, neighbour_z=neighbour_z),
        "cn_fractional": fractional_coordination(distances, z, cutoff=cutoff, width=width, neighbour_z=neighbour_z),
        "first_shell_mean_angstrom": first_shell_distance(distances, z, cutoff=cutoff, width=width,
                                                          neighbour_z=neighbour_z),
    }


def site_structure(descriptors, n_atoms: int, slot_z=None, **options) -> dict:
    """Per-site true structure from true local Coulomb matrices: what ensemble means average.

    :param descriptors: (n, N(N+1)/2) true descriptors (exact matrices: no monotonic correction).
    :param slot_z: slot atomic numbers for the species-resolved ordering, None for the distance ordering.
    :param options: z_center, species, cutoff (Å), width (Å), neighbour_z of :func:`analyze_coulomb`.
    :returns: the dict of :func:`analyze_coulomb`, one row per site.
    """
    return analyze_coulomb(descriptors, n_atoms, monotonic=False, slot_z=slot_z, **options)


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
                        feature_columns=None, fill=None, **analysis_options) -> dict:
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
    :param feature_columns: when the emulator reads only some descriptor columns (a feature set), their
        indices into the full descriptor; the other columns of the pseudo-matrix are taken from ``fill``.
    :param fill: (N(N+1)/2,) full-descriptor values for the columns the emulator does not read (e.g. the
        training mean); required with ``feature_columns``.
    :param analysis_options: passed to :func:`analyze_coulomb` (z_center, species, cutoff Å, width Å, slot_z).
    :returns: dict of arrays, one row per target: ``scores`` (n, k), ``pseudo_coulomb`` (n, N(N+1)/2),
        ``predicted_moments`` (n, m) the emulator's moments of the reconstruction, ``inverse_loss``
        (n,), and the keys of :func:`analyze_coulomb`.
    """
    with show_progress(verbose):
        scores = eca.inverse(Y, n_starts=n_starts, target_weights=target_weights)
    expanded = eca.expand(scores)
    pseudo = _full_descriptor(expanded, n_atoms, feature_columns, fill)
    result = {
        "scores": scores,
        "pseudo_coulomb": pseudo,
        "predicted_moments": eca.emulator.predict(expanded),
        "inverse_loss": np.asarray(eca.inverse_loss_, dtype=float),
    }
    result.update(analyze_coulomb(pseudo, n_atoms, **analysis_options))
    return result


def _full_descriptor(features, n_atoms, feature_columns, fill):
    """Emulator-input rows placed into full descriptors (other columns from ``fill``)."""
    if feature_columns is None:
        return features
    columns = np.asarray(feature_columns, dtype=int)
    fill = as_finite_array(fill, "fill", ndim=1)
    if len(fill) != n_atoms * (n_atoms + 1) // 2 or features.shape[1] != len(columns):
        raise ValueError(f"`fill` must hold the {n_atoms * (n_atoms + 1) // 2} descriptor columns and `feature_columns` "
                         f"one index per emulator input ({features.shape[1]}); got {len(fill)} and {len(columns)}")
    full = np.tile(fill, (len(features), 1))
    full[:, columns] = features
    return full


#: Reconstruction methods: the population (mixture) inverse, the published single-point inverse, and the linear
#: readout of the moment integrands (:class:`~aiida_xesml.ml.mixture.LinearMixtureReadout`, no emulator).
RECONSTRUCTION_METHODS = ("population", "single_point", "linear")
#: Structure quantities a reconstruction reports (the keys of :func:`analyze_coulomb` it averages).
STRUCTURE_KEYS = ("cn_fractional", "cn", "first_shell_mean_angstrom", "distances_angstrom")
#: The per-site scalars that the population inverse can bound (``range_tolerance``).
RANGE_KEYS = ("cn_fractional", "first_shell_mean_angstrom")


def reconstruct_ensemble(members, Y, *, method: str = "population", X=None, structure=None, ecas=None,
                         n_atoms: int | None = None, target_weights=None, residual_variance=None, prior: float = 1e-3,
                         n_starts: int = 4, feature_columns=None, fill=None, analysis_options=None,
                         transform=None, range_tolerance: float | None = None, site_moments=None, groups=None,
                         random_state: int = 0, verbose: bool = False) -> dict:
    """Structure from target moments ``Y`` with every emulator of an ensemble: value ± spread.

    :param members: fitted emulators (the ensemble; one member gives a zero spread).
    :param Y: (n, m) target moments (emulator output units): ensemble-mean or measured spectra.
    :param method: 'population' (default; :class:`~aiida_xesml.ml.mixture.PopulationInverse`: weights
        over the training sites ``X`` whose mixture moments match Y, structure = the weighted mean of
        their true ``structure``) or 'single_point' (the published inverse: one point in ECA score space
        per target through ``ecas[i]``, expanded into a pseudo-Coulomb matrix and read with
        :func:`analyze_coulomb`) or 'linear' (:class:`~aiida_xesml.ml.mixture.LinearMixtureReadout`: a ridge
        readout of each structure value from the training sites' computed ``site_moments``; the emulators are not
        used, only their number: member 0 is fitted on every training site, the others on bootstrap resamples of
        the ``groups``, so the spread is the readout's sampling uncertainty).
    :param X: (n_train, d) training descriptors in the emulators' input units ('population').
    :param structure: per-site true structure of the training rows ('population'), a dict with the
        :data:`STRUCTURE_KEYS` (e.g. from :func:`site_structure`); 'linear' too.
    :param ecas: one fitted ECA per member ('single_point').
    :param n_atoms: descriptor size N ('single_point').
    :param target_weights: (m,) per-target weights of the mismatch (e.g. held-out R² clipped to [0, 1]).
    :param residual_variance: (W,) eV², see :mod:`aiida_xesml.ml.mixture` ('population').
    :param prior: ridge prior of the population tilt.
    :param feature_columns: see :func:`reconstruct_targets` ('single_point').
    :param fill: see :func:`reconstruct_targets` ('single_point').
    :param analysis_options: passed to :func:`analyze_coulomb` ('single_point'), e.g. slot_z, cutoff, width.
    :param transform: 'population' only: match functions of the moments instead of the moments (see
        :class:`~aiida_xesml.ml.mixture.PopulationInverse`); ``Y`` and ``target_weights`` are then in that space.
    :param range_tolerance: 'population' only: also bound the CN and first shell over every population that matches
        the targets within this tolerance (:meth:`~aiida_xesml.ml.mixture.PopulationInverse.structure_ranges`, in
        units of the training sites' spread of each moment integrand); the result then has ``range``: {key: (n, 2)},
        the lowest and highest value over all members (NaN where no member's population can match).
    :param site_moments: (n_train, m) the training sites' computed moments ('linear'), rows as ``structure``'s.
    :param groups: (n_train,) group of each training site for the bootstrap ('linear'; e.g. the snapshot index).
    :param random_state: seed of the bootstrap ('linear'; :func:`~aiida_xesml.ml.dataset.bootstrap_rows`, the draw of
        the emulator ensemble's members).
    :returns: ``value`` and ``spread`` (dicts over :data:`STRUCTURE_KEYS`: the members' mean and standard
        deviation, ddof 1), ``members`` (the same keys, (n_members, n, ...)), ``fitted_moments``
        (n_members, n, m) and ``inverse_loss`` (n_members, n) (not for 'linear', which fits no moments), and per
        method ``effective_sites`` (n_members, n, population) or ``scores`` (n_members, n, k, single point).
    """
    from .dataset import bootstrap_rows
    from .mixture import LinearMixtureReadout, PopulationInverse  # here: mixture builds on this module's readout

    members = list(members)
    if not members:
        raise ValueError("`members` is empty; give at least one fitted emulator")
    if method not in RECONSTRUCTION_METHODS:
        raise ValueError(f"`method` must be one of {', '.join(RECONSTRUCTION_METHODS)}; got {method!r}")
    if transform is not None and method != "population":
        raise ValueError("a target `transform` works with method 'population' only")
    if range_tolerance is not None and (method != "population" or transform is not None):
        raise ValueError("`range_tolerance` works with method 'population' and no `transform` only")
    ranges = []
    Y = np.atleast_2d(as_finite_array(Y, "Y", ndim=(1, 2)))
    per_member, fitted, losses, extra = [], [], [], []
    if method in ("population", "linear") and structure is not None:
        missing = [key for key in STRUCTURE_KEYS if key not in structure]
        if missing:
            raise ValueError(f"`structure` lacks {missing}; give the keys of site_structure()")
    if method == "linear":
        if site_moments is None or structure is None:
            raise ValueError("method 'linear' needs the training sites' computed `site_moments` and their true `structure`")
        site_moments = as_finite_array(site_moments, "site_moments", ndim=2)
        if site_moments.shape[1] != Y.shape[1]:
            raise ValueError(f"`site_moments` has {site_moments.shape[1]} moments per site; `Y` has {Y.shape[1]}")
        # no atom in a slot (inf) is no value to regress on: NaN, which the readout leaves out per column
        table = {key: np.where(np.isinf(structure[key]), np.nan, np.asarray(structure[key], dtype=float))
                 for key in STRUCTURE_KEYS}
        for key, values in table.items():
            check_matching_rows(site_moments, "site_moments", values, f"structure['{key}']")
        groups = np.arange(len(site_moments)) if groups is None else np.asarray(groups)
        if groups.shape != (len(site_moments),):
            raise ValueError(f"`groups` must hold one group per training site ({len(site_moments)}); got shape {groups.shape}")
        for rows in bootstrap_rows(groups, len(members), random_state):
            per_member.append({key: LinearMixtureReadout().fit(site_moments[rows], values[rows]).predict(Y)
                               for key, values in table.items()})
        extra_key = None
    elif method == "population":
        if X is None or structure is None:
            raise ValueError("method 'population' needs the training descriptors `X` and their true `structure`")
        table = {key: np.asarray(structure[key], dtype=float) for key in STRUCTURE_KEYS}
        for emulator in members:
            inverse = PopulationInverse(emulator, prior=prior, residual_variance=residual_variance,
                                        transform=transform).fit(X, table)
            result = inverse.reconstruct(Y, target_weights)
            per_member.append({key: result[key] for key in STRUCTURE_KEYS})
            if range_tolerance is not None:
                bounded = [key for key in RANGE_KEYS if np.all(np.isfinite(table[key]))]  # e.g. no first shell: NaN
                found = inverse.structure_ranges(Y, range_tolerance, target_weights, keys=bounded)
                ranges.append({key: found.get(key, np.full((len(Y), 2), np.nan)) for key in RANGE_KEYS})
            fitted.append(result["fitted_moments"])
            losses.append(result["inverse_loss"])
            extra.append(result["effective_sites"])
        extra_key = "effective_sites"
    else:
        if ecas is None or len(ecas) != len(members) or n_atoms is None:
            raise ValueError("method 'single_point' needs one fitted ECA per member in `ecas` and `n_atoms`")
        with show_progress(verbose):
            for eca in ecas:
                result = reconstruct_targets(eca, Y, n_atoms, n_starts=n_starts, target_weights=target_weights,
                                             feature_columns=feature_columns, fill=fill, **(analysis_options or {}))
                per_member.append({key: np.asarray(result[key], dtype=float) for key in STRUCTURE_KEYS})
                fitted.append(result["predicted_moments"])
                losses.append(result["inverse_loss"])
                extra.append(result["scores"])
        extra_key = "scores"
    stacked = {key: np.stack([values[key] for values in per_member]) for key in STRUCTURE_KEYS}
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slots (no atom in any member)
        value = {key: np.nanmean(values, axis=0) for key, values in stacked.items()}
        spread = {key: (np.nanstd(values, axis=0, ddof=1) if len(members) > 1 else np.zeros_like(value[key]))
                  for key, values in stacked.items()}
    out = {"value": value, "spread": spread, "members": stacked}
    if extra_key is not None:
        out.update({"fitted_moments": np.stack(fitted), "inverse_loss": np.stack(losses), extra_key: np.stack(extra)})
    if ranges:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # every member infeasible: NaN
            out["range"] = {key: np.stack([np.nanmin([r[key][:, 0] for r in ranges], axis=0),
                                           np.nanmax([r[key][:, 1] for r in ranges], axis=0)], axis=1)
                            for key in RANGE_KEYS}
    return out


def true_ensemble_means(descriptors, label, n_atoms: int, slot_z=None, **analysis_options) -> dict:
    """Per-label ensemble means of the structure read from the true descriptors, for comparison.

    :param descriptors: (n, d) true local Coulomb matrices.
    :param label: (n,) row labels (e.g. GPa).
    :param slot_z: slot atomic numbers of the species-resolved ordering (None: distance ordering).
    :returns: ``label`` (k,) sorted unique labels; per label ``distances_angstrom`` (k, n_atoms-1)
        mean distance of each neighbour slot (with the species ordering: the mean distance of the
        j-th nearest O, then Ge); ``first_shell_mean_angstrom`` (k,) mean over sites of each site's
        first-shell distance; ``cn_mean`` (k,) mean integer count and ``cn_fractional_mean`` (k,) mean
        smooth CN (the plugin's CN); ``n_sites`` (k,).
    """
    analysis = site_structure(descriptors, n_atoms, slot_z=slot_z, **analysis_options)
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
