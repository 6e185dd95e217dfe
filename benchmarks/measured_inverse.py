"""A measured spectrum end to end (issue 16): the population inverse on shift-free targets, with and
without a rigid shift, a scale and noise, against the true coordination of held-out snapshots.

From every ``xesml.spectrum`` run of the profile (site spectra recomputed from the real projections,
``vbm``, 1 eV Gaussian): hold out the snapshot with the lowest and the one with the highest mean
coordination, train a small ensemble of networks on the rest, and reconstruct each held-out
snapshot's mean spectrum three ways:

- ``moments``: all 8 moments on the calculations' axis (needs the VBM: what a measurement lacks);
- ``shift_free``: the 6 shift-free targets, same axis;
- ``measured``: the mean spectrum put on an absolute axis (+11097.3 eV), scaled by 40, with 1 % noise,
  through :func:`aiida_xesml.ml.measured.measured_targets` (windows from the peaks, errors from the
  noise as weights).

    AIIDA_PATH=... .venv/bin/python benchmarks/measured_inverse.py [--profile NAME]
"""

import argparse
import warnings

import numpy as np
from aiida import load_profile
from broadening import GRID, site_rows, spectrum_runs

from aiida_xesml.ml.descriptors import local_coulomb_matrix, slot_atomic_numbers
from aiida_xesml.ml.emulator import MLPEmulator
from aiida_xesml.ml.measured import measured_targets
from aiida_xesml.ml.moments import shift_free_targets, shift_free_transform, spectral_moments
from aiida_xesml.ml.reconstruct import reconstruct_ensemble, site_structure
from aiida_xesml.ml.spectra import site_spectra


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    load_profile(args.profile)
    slot_z = slot_atomic_numbers(20)
    rows = []
    for node, projections in spectrum_runs():
        atoms, emitters, occupied, p_weights, k_weights, homo = site_rows(node, projections)
        spectra = site_spectra(occupied, p_weights, k_weights, grid=GRID, alignment="vbm", homo=homo)
        X = local_coulomb_matrix(atoms, centers=emitters, ordering="species")
        rows.append((node.pk, spectra.intensities, X, site_structure(X, 20, slot_z=slot_z)["cn_fractional"]))
    order = sorted(range(len(rows)), key=lambda i: rows[i][3].mean())
    held = [order[0], order[-1]]
    train = [row for i, row in enumerate(rows) if i not in held]
    X = np.vstack([row[2] for row in train])
    intensity = np.vstack([row[1] for row in train])
    Y = spectral_moments(GRID, intensity)
    structure = site_structure(X, 20, slot_z=slot_z)
    counts = np.unique(np.round(structure["cn_fractional"]), return_counts=True)
    print(f"{len(rows)} snapshots; training on {len(X)} sites of {len(train)} (CN counts {dict(zip(*counts))})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        members = [MLPEmulator(hidden_layer_sizes=(16,), alpha=1.0, max_iter=500, random_state=seed).fit(X, Y)
                   for seed in range(3)]
    calculated_mean = intensity.mean(axis=0)
    rng = np.random.default_rng(0)
    for index in held:
        pk, site_intensity, _, cn = rows[index]
        mean = site_intensity.mean(axis=0)
        moments = spectral_moments(GRID, mean)
        measured = measured_targets(GRID + 11097.3, 40 * mean + rng.normal(0, 0.01 * 40 * mean.max(), len(GRID)),
                                    GRID, calculated_mean)
        weights = 1 / measured["target_errors"] ** 2
        cases = {"moments": (moments, None, None), "shift_free": (shift_free_targets(moments), shift_free_transform, None),
                 "measured": (measured["targets"][None], shift_free_transform, weights / weights.mean())}
        print(f"snapshot pk {pk}: true CN {cn.mean():.2f} ({len(cn)} sites)")
        for name, (targets, transform, target_weights) in cases.items():
            out = reconstruct_ensemble(members, targets, method="population", X=X, structure=structure,
                                       transform=transform, target_weights=target_weights)
            print(f"  {name:10s} CN {out['value']['cn_fractional'][0]:.2f} ± {out['spread']['cn_fractional'][0]:.2f}, "
                  f"first shell {out['value']['first_shell_mean_angstrom'][0]:.3f} Å, inverse loss "
                  f"{out['inverse_loss'][:, 0].mean():.3f}")


if __name__ == "__main__":
    main()
