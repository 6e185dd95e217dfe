"""Rows of the learning problem: one per emitting site of one snapshot (SCIENCE.md §3–5).

A row is keyed by ``(snapshot_index, site_index)``. Descriptors come from the snapshots' structures,
moments from their spectra; the two are joined on that key, so that the emulator never pairs the
descriptor of one site with the spectrum of another. Each row may carry a label (a number such as
the target pressure in GPa).
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers

from .descriptors import local_coulomb_matrices
from .validation import as_finite_array

__all__ = ["featurize_snapshots", "join_rows", "stratified_split", "ensemble_mean_spectra", "check_min_per_label"]


def featurize_snapshots(structures, n_atoms: int = 20, species: str = "Ge", verbose: bool = False) -> dict[str, np.ndarray]:
    """Local Coulomb matrices of every ``species`` site of each snapshot, with the row keys.

    :param structures: list of ``ase.Atoms`` (Å); its position is the ``snapshot_index``.
    :param n_atoms: atoms per matrix, centre included (default 20 -> 210 features).
    :param species: emitting element (default "Ge").
    :param verbose: show a progress bar (sites done) on stderr.
    :returns: ``descriptors`` (n, n_atoms(n_atoms+1)/2), ``snapshot_index`` (n,), ``site_index`` (n,)
        (atom index of the emitter in its snapshot); rows snapshot by snapshot, sites in index order.
    """
    structures = list(structures)
    if not structures:
        raise ValueError("`structures` is empty; give at least one snapshot")
    descriptors = local_coulomb_matrices(structures, n_atoms=n_atoms, species=species, verbose=verbose)
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
