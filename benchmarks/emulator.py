"""Benchmark: emulator skill measured honestly (issue 13): ridge baseline against the selected model.

One run prints, for the ridge baseline and for the model that grouped cross-validation selects:

1. the selection itself (``fit_emulators`` on a snapshot split: every candidate's grouped-CV
   score, the verdict, both models on the same held-out snapshots, and the time it took);
2. Pearson r and R² per moment on (a) the old random split by site within each label (optimistic),
   (b) 5-fold cross-validation grouped by snapshot, (c) leave-one-label-out (each label, e.g. each
   pressure, held out in turn: extrapolation); with the difference selected − ridge;
3. the learning curve: held-out r per moment against the number of training sites, grown by whole
   snapshots, for both models.

Hyper-parameters: by default chosen once, by grouped CV on the training rows of the snapshot split
of step 1, and then held fixed in step 2. Folds of (b) and (c) overlap those training rows, so
the selected model's figures there are mildly optimistic; ``--nested`` re-runs the whole selection
inside every outer fold instead (about 5 + n_labels times the cost of step 1).

Data: ``--npz PATH`` with arrays ``X`` (n, d) descriptors, ``Y`` (n, m) moments, ``groups`` (n,)
snapshot ids, ``labels`` (n,) e.g. pressure in GPa, ``target_names`` (m,) strings, and optionally
``feature_set__<name>`` (int column indices) for the feature sets to choose from (otherwise
``descriptors.feature_blocks`` of the species ordering, N inferred from d). Without ``--npz``: a
synthetic set, written with ``--write-npz PATH`` if asked (see :func:`synthetic_dataset`; the
spectra are a smooth model, not physics).

Run: ``python benchmarks/emulator.py [--npz PATH | --reference NAME ...] [--grid default|fast] [--nested] [--n-jobs 1]``
(``--reference crystalline-rattled`` reads the plugin's real data set of examples/data).
Wall-clock timings depend on what else the machine runs: compare them only within one run. The
selection also prints the CPU time of this process, which does not (with ``OMP_NUM_THREADS=1``
and ``--n-jobs 1`` it is the time on one idle core).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import LeaveOneGroupOut

from aiida_xesml.ml.dataset import split_rows
from aiida_xesml.ml.descriptors import feature_blocks, local_coulomb_matrix
from aiida_xesml.ml.emulator import regression_metrics
from aiida_xesml.ml.learning_curve import learning_curve
from aiida_xesml.ml.model_selection import (
    FAST_NETWORK_GRID,
    FAST_RIDGE_GRID,
    NETWORK_GRID,
    RIDGE_GRID,
    grouped_folds,
    select_models,
)
from aiida_xesml.ml.moments import MOMENT_NAMES, spectral_moments
from aiida_xesml.ml.spectra import energy_grid
from aiida_xesml.ml.structures import quartz_geo2, rattle_and_strain, rutile_geo2, supercell
from aiida_xesml.ml.synthetic import first_shell_geometry, synthetic_site_spectra
from aiida_xesml.ml.training import fit_emulators

N_ATOMS = 20
#: Nominal labels (GPa-like) and the isotropic scale of the cell that stands for them.
SYNTHETIC_LABELS = {0.0: 1.00, 5.0: 0.98, 10.0: 0.96, 15.0: 0.94}
#: Standard deviation (eV) of the per-snapshot energy offset: all sites of a snapshot share it,
#: as they share the VBM reference of real spectra, and no local descriptor can see it.
SNAPSHOT_OFFSET_EV = 0.3


def synthetic_dataset(snapshots_per_label: int = 20, seed: int = 0, ordering: str = "species") -> dict:
    """Rattled and strained α-quartz-type (2x2x2, 72 atoms, 24 Ge) and rutile-type (2x2x4, 96
    atoms, 32 Ge) GeO2 supercells, alternating, at each label's isotropic compression.

    Per snapshot: a random rattle (0.03-0.12 Å), a random strain (up to 3 %), and an energy offset
    (σ = :data:`SNAPSHOT_OFFSET_EV`) shared by its sites. Spectra: ``synthetic_site_spectra`` of each
    Ge site's first shell, moments with the default windows, descriptors: local Coulomb matrices
    (N = 20) in ``ordering``. Returns the arrays of the ``--npz`` format.
    """
    rng = np.random.default_rng(seed)
    grid = energy_grid()
    X, Y, groups, labels = [], [], [], []
    for label, scale in SYNTHETIC_LABELS.items():
        for i in range(snapshots_per_label):
            base = supercell(quartz_geo2(), (2, 2, 2)) if i % 2 == 0 else supercell(rutile_geo2(), (2, 2, 4))
            base.set_cell(base.cell * scale, scale_atoms=True)
            atoms = rattle_and_strain(base, rattle=rng.uniform(0.03, 0.12), strain=0.03,
                                      seed=int(rng.integers(2**31)))
            sites, r, spread, cn = first_shell_geometry(atoms)
            offset = rng.normal(0.0, SNAPSHOT_OFFSET_EV)
            Y.append(spectral_moments(grid, synthetic_site_spectra(r, spread, cn, grid - offset)))
            X.append(local_coulomb_matrix(atoms, n_atoms=N_ATOMS, ordering=ordering))
            groups.append(np.full(len(sites), len(groups)))
            labels.append(np.full(len(sites), label))
    arrays = {"X": np.concatenate(X), "Y": np.concatenate(Y), "groups": np.concatenate(groups),
              "labels": np.concatenate(labels), "target_names": np.array(MOMENT_NAMES)}
    for name, columns in feature_blocks(N_ATOMS, ordering).items():
        arrays[f"feature_set__{name}"] = columns
    return arrays


def reference_arrays(names) -> dict:
    """The ``--npz`` arrays of reference data sets of examples/data (real pw.x + projwfc.x spectra), joined: species-
    resolved descriptors of every site, its moments, its snapshot (groups, unique across the sets) and its label."""
    from aiida_xesml.ml.dataset import featurize_snapshots, join_rows
    from aiida_xesml.ml.reference_data import load_reference_npz, reference_path

    X, Y, groups, labels, offset = [], [], [], [], 0
    for name in names:
        data = load_reference_npz(reference_path(name))
        rows = featurize_snapshots(data.structures(), N_ATOMS, ordering="species")
        ia, _ = join_rows(np.column_stack([rows["snapshot_index"], rows["site_index"]]),
                          np.column_stack([data.snapshot_index, data.site_index]))
        X.append(rows["descriptors"][ia])
        Y.append(spectral_moments(data.energy_ev, data.intensity))
        groups.append(data.snapshot_index + offset)
        labels.append(data.label)
        offset += data.n_snapshots
    arrays = {"X": np.concatenate(X), "Y": np.concatenate(Y), "groups": np.concatenate(groups),
              "labels": np.concatenate(labels), "target_names": np.array(MOMENT_NAMES)}
    for name, columns in feature_blocks(N_ATOMS, "species").items():
        arrays[f"feature_set__{name}"] = columns
    return arrays


def load(path: str | None, write: str | None, reference=None) -> tuple[dict, str]:
    if reference:
        arrays = reference_arrays(reference)
        source = f"real QE spectra, examples/data: {', '.join(reference)}"
        if write:
            np.savez(write, **arrays)
    elif path is None:
        arrays = synthetic_dataset()
        source = "synthetic (benchmarks/emulator.py: quartz/rutile supercells, smooth model spectra)"
        if write:
            np.savez(write, **arrays)
    else:
        with np.load(path, allow_pickle=False) as data:
            arrays = dict(data)
        source = path
    if not any(key.startswith("feature_set__") for key in arrays):
        d = arrays["X"].shape[1]
        n_atoms = int(round((np.sqrt(8 * d + 1) - 1) / 2))
        for name, columns in feature_blocks(n_atoms, "species").items():
            arrays[f"feature_set__{name}"] = columns
    return arrays, source


def feature_sets_of(arrays) -> dict:
    prefix = "feature_set__"
    return {key[len(prefix):]: np.asarray(value, dtype=int) for key, value in arrays.items() if key.startswith(prefix)}


def fit_quietly(model, X, Y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clone(model).fit(X, Y)


def evaluate(splits, X, Y, groups, models, columns, nested: dict | None, pooled: bool):
    """Per model: held-out Pearson r and R² per target. ``pooled``: over the out-of-fold
    predictions of all splits together (each row predicted once, by a model that never saw its
    snapshot); otherwise the mean over the splits of each split's figures. ``nested``: select
    again on each split's training rows (the select_models keyword arguments)."""
    predictions = {"ridge": np.full(Y.shape, np.nan), "selected": np.full(Y.shape, np.nan)}
    scores = {"ridge": [], "selected": []}
    chosen = []
    for train, test in splits:
        if nested is not None:
            selection = select_models(X[train], Y[train], groups[train], **nested)
            fold_models = {"ridge": selection["ridge"], "selected": selection[selection["selected"]]}
            fold_columns = {"ridge": selection["columns"]["ridge"],
                            "selected": selection["columns"][selection["selected"]]}
            chosen.append(selection["selected"])
        else:
            fold_columns = columns
            fold_models = {kind: fit_quietly(models[kind], X[train][:, columns[kind]], Y[train])
                           for kind in ("ridge", "selected")}
        for kind in ("ridge", "selected"):
            P = fold_models[kind].predict(X[test][:, fold_columns[kind]])
            predictions[kind][test] = P
            scores[kind].append(regression_metrics(Y[test], P))
    if pooled:
        rows = np.flatnonzero(np.isfinite(predictions["ridge"][:, 0]))
        summary = {kind: regression_metrics(Y[rows], predictions[kind][rows]) for kind in scores}
    else:
        summary = {kind: {metric: np.nanmean([s[metric] for s in scores[kind]], axis=0)
                          for metric in ("pearson_r", "r2")} for kind in scores}
    return summary, chosen


def row(name, values, width=7):
    return f"{name:<34}" + "".join(f"{v:>{width}.3f}" if np.isfinite(v) else f"{'n/a':>{width}}" for v in values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--npz", help="data set (.npz, see the module docstring); default: synthetic")
    parser.add_argument("--reference", nargs="+", metavar="NAME",
                        help="reference data set(s) of examples/data instead (e.g. crystalline-rattled)")
    parser.add_argument("--write-npz", help="write the synthetic data set here")
    parser.add_argument("--grid", choices=("default", "fast"), default="default")
    parser.add_argument("--nested", action="store_true", help="select again inside every outer fold")
    parser.add_argument("--repeats", type=int, default=3, help="learning-curve repeats")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    arrays, source = load(args.npz, args.write_npz, args.reference)
    X, Y, groups, labels = arrays["X"], arrays["Y"], arrays["groups"], arrays["labels"].astype(float)
    names = [str(n) for n in arrays["target_names"]]
    feature_sets = feature_sets_of(arrays)
    grids = ({"network_grid": NETWORK_GRID, "ridge_grid": RIDGE_GRID} if args.grid == "default"
             else {"network_grid": FAST_NETWORK_GRID, "ridge_grid": FAST_RIDGE_GRID})
    print(f"data: {source}")
    print(f"  {len(X)} sites, {len(np.unique(groups))} snapshots, labels {sorted(set(labels.tolist()))}, "
          f"{X.shape[1]} features, feature sets { {k: len(v) for k, v in feature_sets.items()} } "
          f"(loaded in {time.perf_counter() - t0:.1f} s)")

    # ----- 1. selection on a snapshot split --------------------------------------------------
    settings = dict(grids, seed=args.seed, n_jobs=args.n_jobs, n_members=5)
    t0, c0 = time.perf_counter(), time.process_time()
    result = fit_emulators(X, Y, groups, labels, settings, feature_sets=feature_sets)
    t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
    record = result["selection"]
    single = np.mean([c["fit_time_s"] for c in record["candidates"] if c["model"] == "network"])
    print(f"\n1. selection: fit_emulators, {args.grid} grid, grouped {record['cv']['n_splits']}-fold CV on "
          f"{record['cv']['n_rows']} training rows ({record['cv']['n_groups']} snapshots)")
    print(f"   {len(record['candidates'])} candidates; {t_fit:.0f} s wall, {c_fit:.0f} s CPU of this process in all "
          f"(selection, refits and {settings['n_members']} ensemble members) = {t_fit / single:.0f} x the mean "
          f"network fit ({single:.1f} s wall)")
    print(f"   {'model':<8}{'features':<10}{'params':<44}{'CV score':>14}{'CV R² (fold)':>14}{'CV r':>14}")
    for c in sorted(record["candidates"], key=lambda c: -(c["score_mean"] or -np.inf)):
        print(f"   {c['model']:<8}{c['feature_set']:<10}{str(c['params']):<44}{c['score_mean']:>8.3f}±{c['score_std']:.3f}"
              f"{c['r2_mean']:>8.3f}±{c['r2_std']:.3f}{c['pearson_r_mean']:>8.3f}±{c['pearson_r_std']:.3f}")
    print(f"   verdict: {result['verdict']}")
    print(f"\n   held out ({result['metrics']['n_test']} sites of {result['metrics']['n_test_groups']} snapshots), "
          "Pearson r per moment:")
    print(" " * 37 + "".join(f"{n:>7}"[-7:] for n in names))
    for kind in ("ridge", "network", "ensemble"):
        values = [np.nan if v is None else v for v in result["metrics"][kind]["pearson_r"]]
        print("   " + row(kind + (" (ensemble mean)" if kind == "ensemble" else ""), values))

    # ----- 2. the table of issue 13 ------------------------------------------------------------
    selected = result["selected"]
    models = {"ridge": result["baseline"], "selected": result["emulator"]}
    columns = {"ridge": result["columns"]["ridge"], "selected": result["feature_columns"]}
    nested = ({"feature_sets": feature_sets, "cv_folds": 5, "seed": args.seed, "n_jobs": args.n_jobs, **grids}
              if args.nested else None)
    site = [split_rows("site", label=labels, seed=args.seed)]
    grouped = grouped_folds(groups, 5, seed=args.seed)
    by_label = list(LeaveOneGroupOut().split(X, Y, labels))
    print(f"\n2. ridge against the selected model ({selected}, feature set '{result['feature_set']}'); "
          + ("selection nested in every outer fold" if args.nested else
             "hyper-parameters fixed from step 1 (folds of b and c overlap its training rows)"))
    print(" " * 37 + "".join(f"{n:>7}"[-7:] for n in names) + f"{'mean':>7}")
    summaries = {}
    cases = (("a", "(a) random sites within label", site, False),
             ("b", "(b) 5-fold grouped by snapshot, pooled out-of-fold predictions", grouped, True),
             ("c", "(c) leave one label out, mean over the held-out labels", by_label, False))
    for key, title, splits, pooled in cases:
        t0 = time.perf_counter()
        summary, chosen = evaluate(splits, X, Y, groups, models, columns, nested, pooled)
        summaries[key] = summary
        print(f"   {title}  ({len(splits)} fold(s), {time.perf_counter() - t0:.0f} s"
              + (f"; selected per fold: {chosen}" if chosen else "") + ")")
        for metric, label in (("pearson_r", "r"), ("r2", "R²")):
            for kind in ("ridge", "selected"):
                values = summary[kind][metric]
                print("     " + row(f"{label} {kind}", np.append(values, np.nanmean(values))))
            diff = summary["selected"][metric] - summary["ridge"][metric]
            print("     " + row(f"{label} selected − ridge", np.append(diff, np.nanmean(diff))))
    optimism = summaries["a"]["ridge"]["pearson_r"] - summaries["b"]["ridge"]["pearson_r"]
    print("   optimism of the site split, ridge r (a) − (b): " + " ".join(f"{v:+.3f}" for v in optimism))

    # ----- 3. learning curve -------------------------------------------------------------------
    print(f"\n3. learning curve: held-out r per moment against training sites ({args.repeats} repeats, "
          "20 % of the snapshots held out, training grown by whole snapshots)")
    for kind in ("ridge", "selected"):
        t0 = time.perf_counter()
        curve = learning_curve(models[kind], X[:, columns[kind]], Y, groups, n_repeats=args.repeats, seed=args.seed,
                               n_jobs=args.n_jobs)
        print(f"   {kind} ({time.perf_counter() - t0:.0f} s)")
        print("     " + f"{'sites (snapshots)':<34}" + "".join(f"{n:>7}"[-7:] for n in names))
        r = np.nanmean(curve["pearson_r"], axis=1)
        for i, k in enumerate(curve["n_train_snapshots"]):
            print("     " + row(f"{curve['n_train_sites'][i].mean():.0f} ({k})", r[i]))


if __name__ == "__main__":
    main()
