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

``--reference`` uses the plugin's data sets instead (no profile): the emulator (grouped-CV selection,
5-member ensemble, ``fit_emulators``) is trained on ``crystalline-rattled``; it prints the held-out
skill of the 6 shift-free targets beside the 8 ``vbm`` moments (Pearson r on the held-out snapshots,
the shift-free values computed from the predicted and the true moments), then reconstructs mixtures
of ``crystalline-holdout`` sites (pure 4-fold, 1 : 1, pure 6-fold) the three ways above, the
``measured`` one shifted by +7.3 eV from an absolute axis and scaled by 40.

    .venv/bin/python benchmarks/measured_inverse.py --reference
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


def reference_run(seed: int = 0, n_sites: int = 60):
    """The --reference mode (see the module docstring)."""
    from reconstruction import featurize, mixtures, reference_set

    from aiida_xesml.ml.descriptors import feature_blocks
    from aiida_xesml.ml.moments import moment_names, shift_free_names
    from aiida_xesml.ml.reconstruct import inverse_weights
    from aiida_xesml.ml.training import fit_emulators

    train, holdout = featurize(reference_set("crystalline-rattled")), featurize(reference_set("crystalline-holdout"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_emulators(train["X"], train["Y"], train["groups"], train["label"], {"n_members": 5, "seed": seed},
                            feature_sets=feature_blocks(20, "species"))
    members, columns = fit["members"], fit["feature_columns"]
    test = fit["test"]
    predicted = np.mean([member.predict(train["X"][test][:, columns]) for member in members], axis=0)
    truth = train["Y"][test]
    r_moments = [np.corrcoef(predicted[:, j], truth[:, j])[0, 1] for j in range(truth.shape[1])]
    free_pred, free_true = shift_free_targets(predicted), shift_free_targets(truth)
    r_free = [np.corrcoef(free_pred[:, j], free_true[:, j])[0, 1] for j in range(free_true.shape[1])]
    print(f"emulator: {fit['verdict']}")
    print(f"held-out Pearson r ({len(test)} sites of {len(np.unique(train['groups'][test]))} snapshots), ensemble mean:")
    print("  vbm moments: " + ", ".join(f"{n} {r:.3f}" for n, r in zip(moment_names(), r_moments)))
    print("  shift-free:  " + ", ".join(f"{n} {r:.3f}" for n, r in zip(shift_free_names(), r_free)))

    rmse = dict(zip(moment_names(), fit["metrics"]["rmse"]))
    r2 = [0.0 if v is None else v for v in fit["metrics"]["r2"]]
    residual = np.array([rmse[f"{w}_m1"] ** 2 + rmse[f"{w}_m2"] ** 2 for w in ("kbpp", "kb2")])
    x_train = train["X"][fit["train"]][:, columns]
    structure = {key: value[fit["train"]] for key, value in train["structure"].items()}
    calculated_mean = train["intensity"][fit["train"]].mean(axis=0)
    grid = train["energy"]
    rng = np.random.default_rng(seed)
    wanted = {(1.0, 0.0, 0.0), (0.5, 0.0, 0.5), (0.0, 0.0, 1.0)}
    for composition, rows in mixtures(holdout, n_sites, seed):
        if rows is None or composition not in wanted:
            continue
        mean = holdout["intensity"][rows].mean(axis=0)
        cn = holdout["structure"]["cn_fractional"][rows].mean()
        shell = np.nanmean(holdout["structure"]["first_shell_mean_angstrom"][rows])
        moments = spectral_moments(grid, mean[None])  # (1, 8)
        measured_axis = grid + 11097.3 + 7.3
        cases = {"moments": (moments, None, inverse_weights(moment_names(), r2, (0, 1, 2, 3)), residual),
                 "shift_free": (shift_free_targets(moments), shift_free_transform, None, None)}
        try:
            measured = measured_targets(measured_axis, 40 * mean + rng.normal(0, 0.01 * 40 * mean.max(), len(grid)),
                                        grid, calculated_mean)
        except ValueError as exc:
            measured = str(exc)
        else:
            weights = 1 / measured["target_errors"] ** 2
            cases["measured"] = (measured["targets"][None], shift_free_transform, weights / weights.mean(), None)
        print(f"4:6-fold {composition[0]:.2f}:{composition[2]:.2f} ({len(rows)} hold-out sites): true CN {cn:.2f}, "
              f"first shell {shell:.3f} Å")
        for name, (targets, transform, target_weights, variance) in cases.items():
            out = reconstruct_ensemble(members, targets, method="population", X=x_train, structure=structure,
                                       transform=transform, target_weights=target_weights, residual_variance=variance)
            print(f"  {name:10s} CN {out['value']['cn_fractional'][0]:.2f} ± {out['spread']['cn_fractional'][0]:.2f}, "
                  f"first shell {out['value']['first_shell_mean_angstrom'][0]:.3f} "
                  f"± {out['spread']['first_shell_mean_angstrom'][0]:.3f} Å")
        if isinstance(measured, str):
            print(f"  measured   not read: {measured}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--reference", action="store_true", help="the plugin's reference data sets, no profile")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.reference:
        return reference_run(args.seed)
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
