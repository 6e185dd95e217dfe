"""Rows of the learning problem: one per emitting site of one snapshot (SCIENCE.md §3–5).

A row is keyed by ``(snapshot_index, site_index)``. Descriptors come from the snapshots' structures,
moments from their spectra; the two are joined on that key, so that the emulator never pairs the
descriptor of one site with the spectrum of another. Each row may carry a label (a number such as
the target pressure in GPa).
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers
from sklearn.model_selection import GroupShuffleSplit
from sklearn.utils import resample

from .descriptors import local_coulomb_matrices
from .validation import as_finite_array, check_integer

__all__ = ["featurize_snapshots", "join_rows", "SPLIT_KINDS", "split_rows", "bootstrap_rows", "stratified_split",
           "ensemble_mean_spectra", "check_min_per_label"]

#: Kinds of held-out split of :func:`split_rows`: whole snapshots (the default and the honest one),
#: whole labels (extrapolation to an unseen pressure), or random sites (optimistic: it leaks).
SPLIT_KINDS = ("snapshot", "label", "site")


def featurize_snapshots(structures, n_atoms: int = 20, species: str = "Ge", verbose: bool = False,
                        ordering: str = "distance", species_counts=None) -> dict[str, np.ndarray]:
    """Local Coulomb matrices of every ``species`` site of each snapshot, with the row keys.

    :param structures: list of ``ase.Atoms`` (Å); its position is the ``snapshot_index``.
    :param n_atoms: atoms per matrix, centre included (default 20 -> 210 features).
    :param species: emitting element (default "Ge").
    :param verbose: show a progress bar (sites done) on stderr.
    :param ordering: 'distance' (the published mixed ordering) or 'species' (SCIENCE.md §4).
    :param species_counts: the species ordering's (symbol, count) pairs (default 12 O + 7 Ge for N = 20).
    :returns: ``descriptors`` (n, n_atoms(n_atoms+1)/2), ``snapshot_index`` (n,), ``site_index`` (n,)
        (atom index of the emitter in its snapshot); rows snapshot by snapshot, sites in index order.
    """
    structures = list(structures)
    if not structures:
        raise ValueError("`structures` is empty; give at least one snapshot")
    descriptors = local_coulomb_matrices(structures, n_atoms=n_atoms, species=species, verbose=verbose,
                                         ordering=ordering, species_counts=species_counts)
    z = atomic_numbers[species]
    sites = [np.flatnonzero(atoms.numbers == z) for atoms in structures]
    return {
        "descriptors": descriptors,
        "snapshot_index": np.concatenate([np.full(len(s), k) for k, s in enumerate(sites)]).astype(int),
        "site_index": np.concatenate(sites).astype(int),
    }


def join_rows(keys_a, keys_b, name_a: str = "descriptors", name_b: str = "moments") -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(ia, ib)`` that pair the rows of two tables with equal ``(snapshot, site)`` keys.

    :param keys_a: (n_a, 2) integer keys (snapshot_index, site_index) of table A.
    :param keys_b: (n_b, 2) keys of table B.
    :returns: ``ia``, ``ib`` such that ``keys_a[ia] == keys_b[ib]``, in the row order of B.
    :raises ValueError: when a key is duplicated, or a key of B has no row in A (the message lists
        the first missing keys). Rows of A without a partner in B are allowed (a snapshot whose
        spectra failed).
    """
    keys_a = np.asarray(keys_a, dtype=int).reshape(-1, 2)
    keys_b = np.asarray(keys_b, dtype=int).reshape(-1, 2)
    for keys, name in ((keys_a, name_a), (keys_b, name_b)):
        if len(np.unique(keys, axis=0)) != len(keys):
            raise ValueError(f"`{name}` has duplicate (snapshot, site) rows; each site may appear once")
    lookup = {tuple(key): index for index, key in enumerate(keys_a.tolist())}
    missing = [tuple(key) for key in keys_b.tolist() if tuple(key) not in lookup]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{len(missing)} row(s) of `{name_b}` have no matching (snapshot, site) row in `{name_a}`: "
                         f"{shown}; the spectra and the snapshots must come from the same structures")
    ib = np.arange(len(keys_b))
    ia = np.array([lookup[tuple(key)] for key in keys_b.tolist()], dtype=int)
    return ia, ib


def check_min_per_label(label, min_samples: int) -> None:
    """Raise a ValueError naming the labels (e.g. pressures) that have fewer than ``min_samples`` rows."""
    label = np.asarray(label, dtype=float)
    values, counts = np.unique(label, return_counts=True)
    few = [(float(v), int(c)) for v, c in zip(values, counts) if c < min_samples]
    if few:
        listed = ", ".join(f"{v:g} ({c} rows)" for v, c in few)
        raise ValueError(f"label(s) {listed} have fewer than {min_samples} samples: too few to train on and to "
                         "hold out; run more snapshots at those labels or leave them out")


def stratified_split(label, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded training / held-out row indices, the same fraction held out within every label.

    Each label with at least two rows puts ``round(test_fraction * n)`` of them (at least one, at
    most n - 1) in the held-out set, so every pressure is both learned and tested.

    :param label: (n,) row labels (NaN counts as one label).
    :param test_fraction: share of each label's rows held out, in (0, 1).
    :returns: ``(train, test)`` sorted index arrays.
    """
    label = np.asarray(label, dtype=float)
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"`test_fraction` must lie in (0, 1); got {test_fraction}")
    rng = np.random.default_rng(seed)
    keys = np.where(np.isnan(label), np.inf, label)
    train, test = [], []
    for value in np.unique(keys):
        rows = np.flatnonzero(keys == value)
        rows = rows[rng.permutation(len(rows))]
        n_test = min(max(1, int(round(test_fraction * len(rows)))), len(rows) - 1) if len(rows) > 1 else 0
        test.extend(rows[:n_test])
        train.extend(rows[n_test:])
    return np.sort(np.array(train, dtype=int)), np.sort(np.array(test, dtype=int))


def bootstrap_rows(groups, n_members: int, seed: int = 0) -> list[np.ndarray]:
    """Row indices of ``n_members`` training sets: all rows first (member 0), then for member i the rows of
    ``len(unique groups)`` groups drawn with replacement (scikit-learn's ``resample``, ``random_state`` seed + i).

    :param groups: (n,) group of each row, e.g. its snapshot: the sites of one snapshot are correlated, so they are
        drawn together.
    """
    check_integer(n_members, "n_members", minimum=1)
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"`groups` must be a 1-D array, one group per row; got shape {groups.shape}")
    unique = np.unique(groups)
    rows_of = {g: np.flatnonzero(groups == g) for g in unique}
    rows = [np.arange(len(groups))]
    for i in range(1, n_members):
        drawn = resample(unique, replace=True, n_samples=len(unique), random_state=seed + i)
        rows.append(np.concatenate([rows_of[g] for g in drawn]))
    return rows


def split_rows(kind: str = "snapshot", groups=None, label=None, test_fraction: float = 0.2, seed: int = 0,
               test_labels=None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded training / held-out row indices of one of the :data:`SPLIT_KINDS`.

    - ``"snapshot"`` (default): whole snapshots are held out, so no snapshot has rows on both
      sides. Sites of one snapshot share its cell, strain and energy reference; splitting them
      leaks that shared part into the held-out score. scikit-learn's ``GroupShuffleSplit`` draws
      ``ceil(test_fraction * n)`` of the ``n`` snapshots (about ``test_fraction`` of the rows when
      snapshots have similar sizes). With ``label`` given, it draws within each label, so every
      label keeps training rows; a label with a single snapshot stays wholly in training.
    - ``"label"``: whole labels are held out (an extrapolation test, e.g. to an unseen pressure):
      the rows whose label is in ``test_labels``, by default the highest label only.
      ``test_fraction`` and ``seed`` are not used.
    - ``"site"``: :func:`stratified_split`, random sites within each label. Optimistic: the
      held-out sites share snapshots with training sites. Kept for comparison with old results.

    :param kind: one of :data:`SPLIT_KINDS`.
    :param groups: (n,) snapshot id of every row; required by ``"snapshot"``; with ``"label"`` it
        is checked that no snapshot spans both sides.
    :param label: (n,) row labels, e.g. the pressure in GPa (NaN counts as one label for
        ``"snapshot"`` and ``"site"``); required by ``"label"``.
    :param test_fraction: share held out, in (0, 1) (``"snapshot"`` and ``"site"``).
    :param seed: seed of the draw, a whole number >= 0.
    :param test_labels: labels to hold out with ``"label"`` (default: the highest label).
    :returns: ``(train, test)`` sorted integer index arrays, together covering every row once.
    :raises ValueError: naming the argument: an unknown ``kind``, a missing or misshapen ``groups``
        or ``label``, too few snapshots or labels to hold one out, a snapshot with two labels, or
        ``test_labels`` that are absent or cover every label.
    """
    if kind not in SPLIT_KINDS:
        raise ValueError(f"`kind` must be one of {', '.join(SPLIT_KINDS)}; got {kind!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float, np.floating)) \
            or not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"`test_fraction` must lie in (0, 1); got {test_fraction!r}")
    seed = check_integer(seed, "seed", minimum=0)
    n_rows = None
    if groups is not None:
        groups = np.asarray(groups)
        if groups.ndim != 1 or len(groups) == 0:
            raise ValueError(f"`groups` must be a non-empty 1-D array of snapshot ids; got shape {groups.shape}")
        n_rows = len(groups)
    if label is not None:
        label = as_finite_array(label, "label", ndim=1) if kind == "label" else np.asarray(label, dtype=float)
        if label.ndim != 1 or (n_rows is not None and len(label) != n_rows):
            raise ValueError(f"`label` has shape {label.shape}; expected ({n_rows},), one per row like `groups`"
                             if n_rows is not None else f"`label` must be 1-D; got shape {label.shape}")
    if kind == "site":
        if label is None:
            if groups is None:
                raise ValueError("`label` or `groups` is needed to know the number of rows of a site split")
            label = np.zeros(n_rows)
        return stratified_split(label, test_fraction, seed)
    if kind == "label":
        return _label_split(label, groups, test_labels)
    return _snapshot_split(groups, label, float(test_fraction), seed)


def _snapshot_split(groups, label, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if groups is None:
        raise ValueError("`groups` (the snapshot id of every row) is required by a snapshot split")
    if label is None:
        strata = [np.arange(len(groups))]
    else:
        keys = np.where(np.isnan(label), np.inf, label)
        _check_one_label_per_group(groups, keys)
        strata = [np.flatnonzero(keys == value) for value in np.unique(keys)]
    # One RandomState shared by the draws of all labels: seeded once, different draws per label.
    random_state = np.random.RandomState(seed)
    test = []
    for rows in strata:
        if len(np.unique(groups[rows])) < 2:
            continue  # a label with a single snapshot keeps it for training
        splitter = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=random_state)
        _, held_out = next(splitter.split(rows, groups=groups[rows]))
        test.append(rows[held_out])
    test = np.sort(np.concatenate(test)) if test else np.array([], dtype=int)
    if len(test) == 0:
        raise ValueError(f"`groups`: {len(np.unique(groups))} snapshot(s)" + ("" if label is None else ", none of the "
                         "labels with a second snapshot") + " cannot give a held-out snapshot and keep training rows; "
                         "add snapshots, or use kind='label' to hold out a whole label")
    train = np.setdiff1d(np.arange(len(groups)), test)
    return train, test


def _label_split(label, groups, test_labels) -> tuple[np.ndarray, np.ndarray]:
    if label is None:
        raise ValueError("`label` (e.g. the pressure of every row) is required by a label split")
    values = np.unique(label)
    if len(values) < 2:
        raise ValueError(f"`label` holds a single value ({values[0]:g}); a label split needs at least two labels")
    if test_labels is None:
        chosen = values[-1:]
    else:
        chosen = as_finite_array(test_labels, "test_labels", ndim=(0, 1)).reshape(-1)
        absent = [float(v) for v in chosen if not np.any(np.isclose(values, v, rtol=0, atol=1e-9))]
        if absent:
            raise ValueError(f"`test_labels` {absent} are not labels of the rows; the labels are {values.tolist()}")
    is_test = np.any(np.isclose(label[:, None], np.asarray(chosen)[None, :], rtol=0, atol=1e-9), axis=1)
    if is_test.all():
        raise ValueError(f"`test_labels` {np.asarray(chosen).tolist()} cover every label; leave at least one for training")
    if groups is not None:
        _check_one_label_per_group(groups, label)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _check_one_label_per_group(groups, keys) -> None:
    """A snapshot has one label (its pressure); otherwise a split by label would cut it in two."""
    _, group_index = np.unique(groups, return_inverse=True)
    pairs = np.unique(np.column_stack([group_index, np.unique(keys, return_inverse=True)[1]]), axis=0)
    if len(pairs) != group_index.max() + 1:
        spanning = np.unique(groups)[np.flatnonzero(np.bincount(pairs[:, 0]) > 1)]
        raise ValueError(f"`groups`: snapshot(s) {spanning[:5].tolist()} carry more than one `label`; every row of a "
                         "snapshot must have the snapshot's label")


def ensemble_mean_spectra(intensity, label) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean spectrum per label (the ensemble mean a measurement sees).

    :param intensity: (n, n_E) site spectra in states/eV.
    :param label: (n,) row labels.
    :returns: ``(labels, mean_intensity, counts)``: sorted unique labels (k,), (k, n_E) means, (k,) rows.
    """
    intensity = as_finite_array(intensity, "intensity", ndim=2)
    label = np.asarray(label, dtype=float)
    if label.shape != (len(intensity),):
        raise ValueError(f"`label` has shape {label.shape}; expected ({len(intensity)},), one per spectrum")
    labels, inverse, counts = np.unique(label, return_inverse=True, return_counts=True)
    means = np.zeros((len(labels), intensity.shape[1]))
    np.add.at(means, inverse, intensity)
    return labels, means / counts[:, None], counts
