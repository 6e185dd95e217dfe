"""Reconstruction against ground truth: mixtures of known coordination, population vs single-point inverse.

Run: ``.venv/bin/python benchmarks/reconstruction.py`` (real QE spectra of examples/data, when present) or
``--synthetic`` (synthetic spectra of rattled crystals, for a machine without the data sets).

1. The emulator (model selection by grouped CV, a bootstrap ensemble of ``--members``) is trained on the
   *training* data set only (examples/data: the rattled and strained crystal cells plus compressed MD snapshots).
2. Mixtures of known composition are drawn from a *different* data set (the hold-out cells, other seeds): a
   mixture is the mean spectrum of chosen sites of 4-, 5- and 6-fold Ge (by the integer count within 2.3 Å).
   Its truth is the mean over those sites of the plugin's smooth CN and first-shell distance.
3. Each mixture's moments are inverted twice with every emulator of the ensemble: the population inverse (weights
   over the training sites) and the published single-point inverse (one point in ECA score space, read as a
   pseudo-Coulomb matrix); value = the members' mean, ± = their standard deviation.
4. Two figures that separate the emulator's error from the inverse's own: the CN *range* over every population of
   training sites whose mixture moments match the target within ``--range-tolerance`` (a linear programme per
   bound; "none" when no population matches), and the population inverse run on the training sites' *computed*
   moments instead of emulated ones (``true site moments``: no emulator error at all).
5. The linear baseline: a ridge readout of the CN and first shell from the raw-moment integrands, fitted on the
   training sites' computed moments (:class:`~aiida_xesml.ml.mixture.LinearMixtureReadout`); a mixture's reading
   is exactly the mean of its sites' readings, so it has no mixture error and no emulator.

It prints one row per mixture, and checks issue 12's criteria: along the 4→6 and 4→5→6 series (on the mixtures
the hold-out set can make) the reconstructed CN rises monotonically, every CN lies within 0.3 of the truth and
every first shell within 0.03 Å.

By default the training sets are ``crystalline-rattled`` + ``compressed-md`` (4-, 5- and 6-fold sites) and the
mixtures come from ``crystalline-holdout`` + ``compressed-md-holdout`` (other seeds, another MD cell shape and
other pressures). ``--train`` and ``--holdout`` (repeatable; a name in examples/data or an .npz path) choose
others: ``--train crystalline-rattled`` alone shows what the crystals cannot do (no 5-fold site to learn from).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"
N_ATOMS = 20
#: Mixtures: fractions of 4-, 5- and 6-fold sites.
COMPOSITIONS = [(1.0, 0.0, 0.0), (0.75, 0.0, 0.25), (0.5, 0.0, 0.5), (0.25, 0.0, 0.75), (0.0, 0.0, 1.0),
                (0.5, 0.5, 0.0), (0.0, 1.0, 0.0), (0.0, 0.5, 0.5), (1 / 3, 1 / 3, 1 / 3)]
#: The series along which the reconstructed CN must rise (positions in COMPOSITIONS): 4→6 and 4→5→6-fold.
SERIES = {"4→6": [0, 1, 2, 3, 4], "4→5→6": [0, 5, 6, 7, 4]}


def synthetic_sets(seed: int = 0) -> tuple[dict, dict]:
    """Training and hold-out sets of synthetic spectra on rattled quartz-, rutile- and 5-fold-rich cells."""
    from aiida_xesml.ml.spectra import energy_grid
    from aiida_xesml.ml.structures import quartz_geo2, rattle_and_strain, rutile_geo2, supercell
    from aiida_xesml.ml.synthetic import first_shell_geometry, synthetic_site_spectra

    grid = energy_grid(-30.0, 5.0, 0.05)

    def make(offset, n_cells):
        structures, rows = [], {"intensity": [], "snapshot": [], "site": [], "label": []}
        for k in range(n_cells):
            kind = k % 3
            if kind == 0:
                atoms = rattle_and_strain(supercell(quartz_geo2(), (2, 2, 1)), 0.08, 0.03, seed=offset + k)
            elif kind == 1:
                atoms = rattle_and_strain(supercell(rutile_geo2(), (2, 2, 2)), 0.08, 0.03, seed=offset + k)
            else:  # an expanded, strongly rattled rutile cell: some Ge lose an O beyond 2.3 Å (5-fold)
                atoms = rattle_and_strain(supercell(rutile_geo2(), (2, 2, 2)), 0.14, 0.10, seed=offset + k)
            ge, r, spread, cn = first_shell_geometry(atoms)
            structures.append(atoms)
            rows["intensity"].append(synthetic_site_spectra(r, spread, cn, grid))
            rows["snapshot"].append(np.full(len(ge), k))
            rows["site"].append(ge)
            rows["label"].append(np.full(len(ge), float(kind)))
        return {"structures": structures, "energy": grid, **{key: np.concatenate(value) if key != "intensity"
                                                            else np.vstack(value) for key, value in rows.items()}}

    return make(seed * 1000, 36), make(seed * 1000 + 500, 24)


def reference_set(name) -> dict:
    """A reference data set (a name in examples/data, or a path to an .npz) in this script's layout; a dict in
    that layout is returned as it is."""
    from aiida_xesml.ml.reference_data import load_reference_npz, reference_path

    if isinstance(name, dict):
        return name
    data = load_reference_npz(name if name.endswith(".npz") else reference_path(name))
    return {"structures": data.structures(), "energy": data.energy_ev, "intensity": data.intensity,
            "snapshot": data.snapshot_index, "site": data.site_index, "label": data.label}


def combined_set(names: list[str]) -> dict:
    """Several data sets as one, snapshots renumbered so that each keeps its own group.

    :raises SystemExit: when their spectra are on different energy grids.
    """
    parts = [reference_set(name) for name in names]
    for name, part in zip(names[1:], parts[1:]):
        if not np.array_equal(part["energy"], parts[0]["energy"]):
            raise SystemExit(f"{name if isinstance(name, str) else 'the split'}: its spectra are on another energy "
                             f"grid than {names[0]}'s")
    offsets = np.cumsum([0] + [len(part["structures"]) for part in parts[:-1]])
    return {"structures": [atoms for part in parts for atoms in part["structures"]], "energy": parts[0]["energy"],
            "intensity": np.vstack([part["intensity"] for part in parts]),
            "snapshot": np.concatenate([part["snapshot"] + offset for part, offset in zip(parts, offsets)]),
            **{key: np.concatenate([part[key] for part in parts]) for key in ("site", "label")}}


def split_by_snapshot(data: dict, fraction: float, seed: int) -> tuple[dict, dict]:
    """Training and hold-out sets from one data set: ``fraction`` of the snapshots of every label, drawn at
    random (``seed``), are held out whole, so no hold-out site shares a snapshot with a training site."""
    rng = np.random.default_rng(seed)
    snapshot_label = {int(s): float(l) for s, l in zip(data["snapshot"], data["label"])}
    held = set()
    for label in sorted(set(snapshot_label.values())):
        mine = sorted(s for s, l in snapshot_label.items() if l == label)
        held.update(rng.choice(mine, max(1, int(round(fraction * len(mine)))), replace=False).tolist())

    def subset(keep_held: bool) -> dict:
        snapshots = [s for s in range(len(data["structures"])) if (s in held) == keep_held]
        renumber = {s: i for i, s in enumerate(snapshots)}
        rows = np.flatnonzero([(int(s) in held) == keep_held for s in data["snapshot"]])
        return {"structures": [data["structures"][s] for s in snapshots], "energy": data["energy"],
                "intensity": data["intensity"][rows], "site": data["site"][rows], "label": data["label"][rows],
                "snapshot": np.array([renumber[int(s)] for s in data["snapshot"][rows]])}

    return subset(False), subset(True)


def featurize(data: dict) -> dict:
    """Species-resolved descriptors, moments, and the per-site true structure of a data set."""
    from aiida_xesml.ml.dataset import featurize_snapshots, join_rows
    from aiida_xesml.ml.descriptors import slot_atomic_numbers
    from aiida_xesml.ml.moments import spectral_moments
    from aiida_xesml.ml.reconstruct import site_structure

    rows = featurize_snapshots(data["structures"], N_ATOMS, ordering="species")
    ia, ib = join_rows(np.column_stack([rows["snapshot_index"], rows["site_index"]]),
                       np.column_stack([data["snapshot"], data["site"]]))
    X = rows["descriptors"][ia]
    slot_z = slot_atomic_numbers(N_ATOMS, ordering="species")
    return {"X": X, "Y": spectral_moments(data["energy"], data["intensity"][ib]), "intensity": data["intensity"][ib],
            "energy": data["energy"], "groups": data["snapshot"][ib], "label": data["label"][ib],
            "structure": site_structure(X, N_ATOMS, slot_z=slot_z), "slot_z": slot_z}


def mixtures(holdout: dict, n_sites: int, seed: int):
    """(composition, rows) per mixture that the hold-out set can make; sites drawn without replacement."""
    rng = np.random.default_rng(seed)
    count = holdout["structure"]["cn"]
    pools = {4: np.flatnonzero(count == 4), 5: np.flatnonzero(count == 5), 6: np.flatnonzero(count == 6)}
    made = []
    for composition in COMPOSITIONS:
        wanted = {cn: int(round(f * n_sites)) for cn, f in zip((4, 5, 6), composition)}
        scale = min([1.0] + [len(pools[cn]) / k for cn, k in wanted.items() if k > 0])
        wanted = {cn: int(np.floor(k * scale)) for cn, k in wanted.items()}
        if sum(wanted.values()) < 5 or any(f > 0 and wanted[cn] == 0 for cn, f in zip((4, 5, 6), composition)):
            made.append((composition, None))
            continue
        rows = np.concatenate([rng.choice(pools[cn], k, replace=False) for cn, k in wanted.items() if k])
        made.append((composition, rows))
    return made


class TrueSiteMoments:
    """A stand-in emulator that "predicts" the training sites' computed moments exactly (an oracle).

    The population inverse built on it mixes the training sites by their real spectra's moments, so its errors
    are what the moments themselves cannot tell apart (and the maximum-entropy prior), with no emulator error.
    It answers only for the rows it was made with.
    """

    def __init__(self, X, Y):
        self._X, self._Y = np.asarray(X), np.asarray(Y, dtype=float)
        self.y_scale_ = self._Y.std(axis=0)

    def predict(self, X):
        if not np.array_equal(np.asarray(X), self._X):
            raise ValueError("TrueSiteMoments predicts only the training rows it was made with")
        return self._Y.copy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", action="store_true", help="synthetic spectra instead of the real data sets")
    parser.add_argument("--members", type=int, default=5, help="emulators in the ensemble (default 5)")
    parser.add_argument("--sites", type=int, default=60, help="sites per mixture (default 60)")
    parser.add_argument("--npz", help="one data set (.npz, aiida_xesml.ml.reference_data layout) split by snapshot "
                                       "instead of the --train / --holdout data sets of examples/data")
    parser.add_argument("--holdout-fraction", type=float, default=0.3,
                        help="with --npz: the fraction of every label's snapshots held out (default 0.3)")
    parser.add_argument("--train", action="append", help="training data set (repeatable; a name in examples/data or "
                                                         "an .npz; default crystalline-rattled + compressed-md; with "
                                                         "--npz: added to the split's training part)")
    parser.add_argument("--holdout", action="append", help="data set the mixtures are drawn from (repeatable; same "
                                                           "spectrum settings; default crystalline-holdout + "
                                                           "compressed-md-holdout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--range-tolerance", type=float, default=0.1,
                        help="tolerance of the CN range over all populations that match a mixture's moments, in "
                             "units of the training sites' spread of each moment integrand (default 0.1)")
    parser.add_argument("--json", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)

    from aiida_xesml.ml.eca import ECA
    from aiida_xesml.ml.mixture import LinearMixtureReadout
    from aiida_xesml.ml.moments import spectral_moments
    from aiida_xesml.ml.reconstruct import inverse_weights, reconstruct_ensemble
    from aiida_xesml.ml.training import fit_emulators

    start = time.perf_counter()
    if args.synthetic:
        train_data, holdout_data = synthetic_sets(args.seed)
        source = "synthetic spectra of rattled/strained crystal cells"
    elif args.npz:
        train_data, holdout_data = split_by_snapshot(reference_set(args.npz), args.holdout_fraction, args.seed)
        source = f"real QE spectra of {args.npz}, {args.holdout_fraction:.0%} of each label's snapshots held out"
        if args.train:  # more training data beside the split's training part
            train_data = combined_set([*args.train, train_data])
            source += f", training also on {' + '.join(args.train)}"
    else:
        train_names = args.train or ["crystalline-rattled", "compressed-md"]
        holdout_names = args.holdout or ["crystalline-holdout", "compressed-md-holdout"]
        train_data, holdout_data = combined_set(train_names), combined_set(holdout_names)
        if not np.array_equal(train_data["energy"], holdout_data["energy"]):
            raise SystemExit("the hold-out spectra are on another energy grid than the training spectra")
        source = f"real QE spectra (pw.x + projwfc.x), training {' + '.join(train_names)}, mixtures from " \
                 f"{' + '.join(holdout_names)}"
    train, holdout = featurize(train_data), featurize(holdout_data)
    holdout_counts = dict(zip(*np.unique(holdout["structure"]["cn"], return_counts=True)))
    print(f"data: {source}; training {len(train['X'])} sites of {len(np.unique(train['groups']))} snapshots, "
          f"hold-out {len(holdout['X'])} sites (CN counts {holdout_counts})")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from aiida_xesml.ml.descriptors import feature_blocks

        blocks = feature_blocks(N_ATOMS, "species")
        fit = fit_emulators(train["X"], train["Y"], train["groups"], train["label"],
                            {"n_members": args.members, "seed": args.seed}, feature_sets=blocks)
    members, columns = fit["members"], fit["feature_columns"]
    print(f"emulator: {fit['verdict']} ({time.perf_counter() - start:.0f} s so far)")
    r2 = [0.0 if v is None else v for v in fit["metrics"]["r2"]]
    names = [f"{w}_m{o}" for w in ("kbpp", "kb2") for o in range(4)]
    rmse = dict(zip(names, fit["metrics"]["rmse"]))
    residual = np.array([rmse[f"{w}_m1"] ** 2 + rmse[f"{w}_m2"] ** 2 for w in ("kbpp", "kb2")])
    x_train = train["X"][fit["train"]][:, columns]
    structure = {key: value[fit["train"]] for key, value in train["structure"].items()}
    ecas = [ECA(member, n_components=3, random_state=0).fit(x_train, train["Y"][fit["train"]]) for member in members]

    made = mixtures(holdout, args.sites, args.seed)
    usable = [(c, rows) for c, rows in made if rows is not None]
    targets = spectral_moments(holdout["energy"], np.array([holdout["intensity"][rows].mean(axis=0) for _, rows in usable]))
    truth = [(holdout["structure"]["cn_fractional"][rows].mean(),
              np.nanmean(holdout["structure"]["first_shell_mean_angstrom"][rows])) for _, rows in usable]
    t0 = time.perf_counter()
    population = reconstruct_ensemble(members, targets, X=x_train, structure=structure,
                                      target_weights=inverse_weights(names, r2, (0, 1, 2, 3)), residual_variance=residual,
                                      range_tolerance=args.range_tolerance)
    t_population = time.perf_counter() - t0
    y_train = train["Y"][fit["train"]]
    linear = {}
    for key in ("cn_fractional", "first_shell_mean_angstrom"):
        finite = np.isfinite(structure[key])
        linear[key] = LinearMixtureReadout().fit(y_train[finite], structure[key][finite]).predict(targets)
    oracle = reconstruct_ensemble([TrueSiteMoments(x_train, train["Y"][fit["train"]])], targets, X=x_train,
                                  structure=structure, target_weights=np.ones(len(names)),
                                  range_tolerance=args.range_tolerance)
    t0 = time.perf_counter()
    single = reconstruct_ensemble(members, targets, method="single_point", ecas=ecas, n_atoms=N_ATOMS,
                                  target_weights=inverse_weights(names, r2, (0, 1)), feature_columns=columns,
                                  fill=train["X"][fit["train"]].mean(axis=0),
                                  analysis_options={"slot_z": train["slot_z"]})
    t_single = time.perf_counter() - t0

    print(f"\n{'4/5/6-fold':>14s} {'sites':>5s} | {'CN true':>7s} {'population':>13s} {'single point':>13s} | "
          f"{'r true':>6s} {'population':>15s} {'single point':>15s} | {'misfit':>6s} {'CN range':>12s} | "
          f"true site moments: CN, r, misfit, CN range | linear: CN, r")
    table = []
    for i, ((composition, rows), (cn_true, r_true)) in enumerate(zip(usable, truth)):
        row = {"composition": [round(f, 3) for f in composition], "n_sites": int(len(rows)), "true_cn": float(cn_true),
               "true_first_shell": float(r_true)}
        for name, result in (("population", population), ("single_point", single)):
            row[name] = {key: [float(result["value"][source][i]), float(result["spread"][source][i])]
                         for key, source in (("cn", "cn_fractional"), ("first_shell", "first_shell_mean_angstrom"))}
        # the population inverse's loss (standardized moment mismatch + prior), mean over the members
        row["population"]["misfit"] = float(np.mean(population["inverse_loss"][:, i]))
        row["population"]["cn_range"] = [float(v) for v in population["range"]["cn_fractional"][i]]
        # the same inverse over the training sites' computed moments: what the moments cannot resolve
        row["true_site_moments"] = {"cn": [float(oracle["value"]["cn_fractional"][i]), 0.0],
                                    "first_shell": [float(oracle["value"]["first_shell_mean_angstrom"][i]), 0.0],
                                    "misfit": float(oracle["inverse_loss"][0, i]),
                                    "cn_range": [float(v) for v in oracle["range"]["cn_fractional"][i]]}
        row["linear"] = {"cn": [float(linear["cn_fractional"][i]), 0.0],
                         "first_shell": [float(linear["first_shell_mean_angstrom"][i]), 0.0]}
        table.append(row)
        text = "/".join(f"{f:.2f}" for f in composition)
        pm = lambda v, spec: f"{v[0]:{spec}} ± {v[1]:{spec}}"  # noqa: E731
        span = lambda v: "none" if np.isnan(v[0]) else f"[{v[0]:.2f}, {v[1]:.2f}]"  # noqa: E731
        print(f"{text:>14s} {len(rows):5d} | {cn_true:7.2f} {pm(row['population']['cn'], '.2f'):>13s} "
              f"{pm(row['single_point']['cn'], '.2f'):>13s} | {r_true:6.3f} {pm(row['population']['first_shell'], '.3f'):>15s} "
              f"{pm(row['single_point']['first_shell'], '.3f'):>15s} | {row['population']['misfit']:6.3f} "
              f"{span(row['population']['cn_range']):>12s} | {row['true_site_moments']['cn'][0]:.2f} "
              f"{row['true_site_moments']['first_shell'][0]:.3f} {row['true_site_moments']['misfit']:.3f} "
              f"{span(row['true_site_moments']['cn_range'])} | {row['linear']['cn'][0]:.2f} "
              f"{row['linear']['first_shell'][0]:.3f}")
    skipped = [c for c, rows in made if rows is None]
    if skipped:
        print(f"(not enough hold-out sites for {len(skipped)} composition(s): "
              + ", ".join("/".join(f"{f:.2f}" for f in c) for c in skipped) + ")")

    def verdict(name):
        cn = np.array([row[name]["cn"][0] for row in table])
        shell = np.array([row[name]["first_shell"][0] for row in table])
        cn_true = np.array([row["true_cn"] for row in table])
        shell_true = np.array([row["true_first_shell"] for row in table])
        position = {COMPOSITIONS.index(c): i for i, (c, _) in enumerate(usable)}
        rising = {}
        for label, members in SERIES.items():  # a series is checked on the mixtures the hold-out set could make
            rows = [position[m] for m in members if m in position]
            if len(rows) >= 2:
                rising[label] = bool(np.all(np.diff(cn[rows]) > 0))
        monotonic = bool(rising) and all(rising.values())
        cn_error, shell_error = float(np.max(np.abs(cn - cn_true))), float(np.nanmax(np.abs(shell - shell_true)))
        ok = monotonic and cn_error <= 0.3 and shell_error <= 0.03
        series = ", ".join(f"{label} {flag}" for label, flag in rising.items()) or "no series of 2 mixtures"
        print(f"{name}: CN rises along the series ({series}): {monotonic}; worst |ΔCN| {cn_error:.2f} (≤ 0.3), worst "
              f"|Δr| {shell_error:.3f} Å (≤ 0.03): {'PASS' if ok else 'FAIL'}")
        return ok

    print()
    passed = {name: verdict(name) for name in ("population", "single_point", "true_site_moments", "linear")}
    for name in ("population", "true_site_moments"):
        ranges = np.array([row[name]["cn_range"] for row in table])
        truth_cn = np.array([row["true_cn"] for row in table])
        feasible = np.isfinite(ranges[:, 0])
        inside = feasible & (ranges[:, 0] <= truth_cn) & (truth_cn <= ranges[:, 1])
        print(f"{name}: CN range (tolerance {args.range_tolerance:g}) holds the true CN for {inside.sum()} of {len(table)} "
              f"mixtures; no population matches {np.sum(~feasible)}; mean width "
              f"{np.mean(np.diff(ranges[feasible], axis=1)) if feasible.any() else float('nan'):.2f}")
    print(f"time: population inverse {t_population:.1f} s, single point {t_single:.1f} s for {len(table)} mixtures x "
          f"{len(members)} members; whole run {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"source": source, "rows": table, "passed": passed}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
