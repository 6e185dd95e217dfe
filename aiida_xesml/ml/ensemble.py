"""Structural statistics over an ensemble of snapshots (the per-pressure summaries)."""

from __future__ import annotations

import numpy as np

from .progress import progress
from .structures import coordination_numbers, neighbour_distances


def ensemble_statistics(snapshots, cutoff: float = 2.3, verbose: bool = False) -> dict:
    """Ge–O statistics pooled over all Ge sites of all ``snapshots`` (ase.Atoms), as plain values.

    :param verbose: show a progress bar (snapshots done) on stderr.
    :returns: n_sites (Ge sites), ge_o_mean_angstrom (mean Ge–O distance within ``cutoff`` Å, None
        if there is none), cn_mean and cn_std (O within ``cutoff`` of Ge), cn_histogram {str(cn): count}.
    """
    snapshots = list(snapshots)
    if not snapshots:
        raise ValueError("`snapshots` is empty; give at least one structure")
    cn, distances = [], []
    for atoms in progress(snapshots, desc="ensemble statistics", enabled=verbose, unit="snapshot"):
        cn.append(coordination_numbers(atoms, cutoff, "Ge", "O"))
        distances.append(neighbour_distances(atoms, cutoff, "Ge", "O")[1])
    cn, distances = np.concatenate(cn), np.concatenate(distances)
    values, counts = np.unique(cn, return_counts=True)
    return {
        "n_sites": int(len(cn)),
        "ge_o_mean_angstrom": float(distances.mean()) if len(distances) else None,
        "cn_mean": float(cn.mean()),
        "cn_std": float(cn.std()),
        "cn_histogram": {str(int(v)): int(n) for v, n in zip(values, counts)},
    }
