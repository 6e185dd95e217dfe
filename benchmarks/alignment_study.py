"""Alignment study (issue 4): what the 'vbm', 'potential' and 'semicore' references do to the moments.

Runs ``xesml.spectrum`` (pw.x SCF + projwfc.x + pp.x) on rattled and strained supercells of
rutile-type (6-fold) and α-quartz-type (4-fold) GeO2, then reports per alignment: the share of
the M1 variance that lies between snapshots, the 6-fold minus 4-fold difference of the Kβ″ mean
energy, and how well a local model (ridge on the descriptor's first row, cross-validated with whole
snapshots held out) predicts each moment. One 'potential' run per cell gives both alignments: the
stored reference and highest occupied level convert one into the other exactly. With
``--semicore`` each cell also runs with the Ge 3d-in-valence family (``aiida-xesml setup
--semicore``; its own cutoffs) and the 'semicore' alignment. Its energies are relative to each
site's 3d level; one constant for all cells (the mean 3d level below the VBM) puts them on the vbm
scale, so that the same moment windows apply.

    AIIDA_PATH=$PWD/.aiida .venv/bin/python benchmarks/alignment_study.py [--cells 12] [--protocol fast] [--semicore]

``--experimental`` (issue 16) instead compares all four alignments at the experimental cells of
the two polymorphs, with the ``core_hole`` column computed for real: ``xesml.spectrum`` on each
unit cell (``potential`` alignment, which also gives ``vbm``; with ``--semicore`` a second run with
the Ge 3d family) and ``xesml.core_hole`` on one Ge site of a supercell of each (all Ge sites of
these cells are equivalent), the 1s electron removed. Every alignment is put on the rutile-type
cell's vbm scale (its references are calibrated there), so the columns' 6-fold − 4-fold Kβ″ shifts
compare directly. ``--madelung`` adds a second, smaller supercell per polymorph to show how much of
the core-hole shift is the charged cell's finite-size error.

    AIIDA_PATH=... .venv/bin/python benchmarks/alignment_study.py --experimental --semicore --madelung \
        --output docs/_static/alignment_study.json
"""

import argparse
import json
import time

import numpy as np
from aiida import load_profile, orm
from aiida.engine import run_get_node
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aiida_xesml.constants import SEMICORE_CUTOFFS_RY, SEMICORE_FAMILY, code_label
from aiida_xesml.ml.descriptors import local_coulomb_matrix
from aiida_xesml.ml.moments import MOMENT_NAMES, shift_free_names, shift_free_targets, spectral_moments
from aiida_xesml.ml.structures import quartz_geo2, rattle_and_strain, rutile_geo2, supercell
from aiida_xesml.pseudos.families import ensure_semicore_family
from aiida_xesml.workflows.core_hole import CoreHoleWorkChain
from aiida_xesml.workflows.spectrum import SpectrumWorkChain

GRID = [-40.0, 15.0, 0.05]  # eV, wide enough for the vbm and the potential reference
SEMICORE_GRID = [-10.0, 45.0, 0.05]  # eV above the site's 3d level (about 28 eV below the VBM)


def cells(count):
    for seed in range(count):
        yield "rutile", 6, rattle_and_strain(supercell(rutile_geo2(), (1, 1, 2)), 0.05, 0.02, seed=seed)
        yield "quartz", 4, rattle_and_strain(quartz_geo2(), 0.05, 0.02, seed=1000 + seed)


def between_share(values, groups):
    mean = values.mean()
    total = np.sum((values - mean) ** 2)
    between = sum(np.sum(groups == g) * (values[groups == g].mean() - mean) ** 2 for g in np.unique(groups))
    return between / total


#: Experimental cells: coordination, and the ΔSCF supercells (holes 8.8-11.5 Å from their images; even
#: repetitions fold the high-symmetry k-points (0 or 1/2) onto Γ, where the VBM is read) and, for
#: --madelung, a smaller one (5.7 Å / 5.65 Å along c).
EXPERIMENTAL_CELLS = {"rutile": (6, [2, 2, 4], [2, 2, 2]), "quartz": (4, [2, 2, 2], [2, 2, 1])}


def experimental_study(args):
    """All four alignments at the experimental cells; core_hole from ΔSCF supercells."""
    builders = {"rutile": rutile_geo2, "quartz": quartz_geo2}
    if args.semicore:
        ensure_semicore_family()
    codes = {name: f"{code_label(name)}@localhost" for name in ("pw", "projwfc", "pp")}
    runs, start = {}, time.perf_counter()
    for name, (cn, reps, small) in EXPERIMENTAL_CELLS.items():
        structure = orm.StructureData(ase=builders[name]())
        run = {"cn": cn}
        builder = SpectrumWorkChain.get_builder_from_protocol(
            codes["pw"], codes["projwfc"], structure, protocol=args.protocol, pp_code=codes["pp"],
            overrides={"parameters": {"alignment": "potential", "grid": GRID}})
        results, node = run_get_node(builder)
        assert node.is_finished_ok, f"{name} spectrum: {node.exit_message}"
        run["spectra"] = results["spectra"]
        print(f"{name}: spectra <{node.pk}>, {time.perf_counter() - start:.0f} s", flush=True)
        if args.semicore:
            ecutwfc, ecutrho = SEMICORE_CUTOFFS_RY[args.protocol]
            builder = SpectrumWorkChain.get_builder_from_protocol(
                codes["pw"], codes["projwfc"], structure, protocol=args.protocol, pseudo_family=SEMICORE_FAMILY,
                overrides={"parameters": {"alignment": "semicore", "grid": SEMICORE_GRID},
                           "scf": {"pw": {"parameters": {"SYSTEM": {"ecutwfc": ecutwfc, "ecutrho": ecutrho}}}}})
            results, node = run_get_node(builder)
            assert node.is_finished_ok, f"{name} semicore: {node.exit_message}"
            run["semicore"] = results["spectra"]
            print(f"{name}: semicore spectra <{node.pk}>, {time.perf_counter() - start:.0f} s", flush=True)
        for key, repetitions in (("core_hole", reps), ("core_hole_small", small)):
            if key == "core_hole_small" and not args.madelung:
                continue
            builder = CoreHoleWorkChain.get_builder_from_protocol(codes["pw"], structure, protocol=args.protocol,
                                                                  sites=[0], supercell=repetitions)
            results, node = run_get_node(builder)
            assert node.is_finished_ok, f"{name} core hole {repetitions}: {node.exit_message}"
            shifts = results["shifts"]
            atoms = results["supercell"].get_ase()
            run[key] = {"pk": node.pk, "supercell": repetitions, "n_atoms": len(atoms),
                        "volume_angstrom3": float(atoms.get_volume()),
                        "binding_energy_ev": float(shifts.get_array("binding_energy_ev")[0]),
                        "homo_ev": float(shifts.base.attributes.get("homo_ev"))}
            print(f"{name}: core hole {repetitions} ({len(atoms)} atoms) <{node.pk}>: ΔE = "
                  f"{run[key]['binding_energy_ev']:.4f} eV, homo {run[key]['homo_ev']:.4f} eV, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        runs[name] = run

    # every alignment on the rutile cell's vbm scale: references calibrated on rutile
    moments = {}
    for name, run in runs.items():
        spectra = run["spectra"]
        vbm_shift = spectra.reference_ev - spectra.parameters["homo_ev"]  # E_vbm = E_potential + shift
        vbm = spectral_moments(spectra.energy_ev + vbm_shift[0], spectra.intensity).mean(axis=0)
        potential = spectral_moments(spectra.energy_ev, spectra.intensity).mean(axis=0)
        moments[name] = {"vbm": vbm, "potential": potential}
        if "semicore" in run:
            semicore = run["semicore"]
            run["semicore_level_ev"] = float(np.mean(semicore.reference_ev - semicore.parameters["homo_ev"]))
        run["ref_from_homo"] = {"core_hole": run["core_hole"]["homo_ev"] + run["core_hole"]["binding_energy_ev"]}
    level = runs["rutile"].get("semicore_level_ev")
    offset = runs["rutile"]["ref_from_homo"]["core_hole"]
    for name, run in runs.items():
        if "semicore" in run:
            semicore = run["semicore"]
            moments[name]["semicore"] = spectral_moments(semicore.energy_ev + level, semicore.intensity).mean(axis=0)
        shift = run["ref_from_homo"]["core_hole"] - offset  # s = homo + ΔE − C, C from rutile
        moments[name]["core_hole"] = moments[name]["vbm"] + np.array([0, shift, 0, 0, 0, shift, 0, 0])
        run["core_hole_shift_ev"] = float(shift)
    table = {}
    for alignment in ("vbm", "potential", "semicore", "core_hole"):
        if alignment not in moments["rutile"]:
            continue
        six, four = moments["rutile"][alignment], moments["quartz"][alignment]
        table[alignment] = {
            "kbpp_m1_fourfold_ev": float(four[1]), "kbpp_m1_sixfold_ev": float(six[1]),
            "kbpp_m1_sixfold_minus_fourfold_ev": float(six[1] - four[1]),
            "kb2_m1_sixfold_minus_fourfold_ev": float(six[5] - four[5]),
            "kbpp_m0_ratio_six_over_four": float(six[0] / four[0]),
        }
    shift_free = {name: dict(zip(shift_free_names(), shift_free_targets(moments[name]["vbm"])[0].tolist()))
                  for name in runs}
    report = {"protocol": args.protocol, "cells": {name: {
        "coordination": run["cn"], "core_hole": run["core_hole"], "core_hole_small": run.get("core_hole_small"),
        "core_hole_shift_ev": run["core_hole_shift_ev"], "semicore_level_below_vbm_ev": run.get("semicore_level_ev"),
        "shift_free_targets": shift_free[name]} for name, run in runs.items()},
        "core_hole_offset_ev": float(offset), "table": table, "seconds": time.perf_counter() - start}
    if args.madelung:
        report["madelung"] = madelung_check(runs)
    print(f"\nexperimental cells, every alignment on the rutile cell's vbm scale ({report['seconds']:.0f} s)")
    print(f"{'alignment':10s} {'Kb″ M1 4-fold':>14s} {'Kb″ M1 6-fold':>14s} {'6-4 Kb″ M1':>11s} {'6-4 Kb2 M1':>11s} "
          f"{'M0 ratio 6/4':>13s}")
    for alignment, row in table.items():
        print(f"{alignment:10s} {row['kbpp_m1_fourfold_ev']:14.2f} {row['kbpp_m1_sixfold_ev']:14.2f} "
              f"{row['kbpp_m1_sixfold_minus_fourfold_ev']:11.2f} {row['kb2_m1_sixfold_minus_fourfold_ev']:11.2f} "
              f"{row['kbpp_m0_ratio_six_over_four']:13.3f}")
    print("shift-free targets (no alignment):")
    for name, values in shift_free.items():
        print(f"  {name}: " + ", ".join(f"{key} {value:.3f}" for key, value in values.items()))
    print(f"core_hole: C = {offset:.3f} eV; quartz-type shift s = {runs['quartz']['core_hole_shift_ev']:+.3f} eV")
    return report


def madelung_check(runs) -> dict:
    """The core-hole reference (homo + ΔE) at two supercell sizes per polymorph, and its value
    extrapolated to an infinite cell assuming the leading 1/L (L = V^(1/3)) error of a charged cell."""
    result = {}
    for name, run in runs.items():
        big, small = run["core_hole"], run.get("core_hole_small")
        if small is None:
            continue
        values = [cell["homo_ev"] + cell["binding_energy_ev"] for cell in (small, big)]
        inverse = [cell["volume_angstrom3"] ** (-1 / 3) for cell in (small, big)]
        slope = (values[1] - values[0]) / (inverse[1] - inverse[0])
        result[name] = {"reference_small_ev": values[0], "reference_large_ev": values[1],
                        "one_over_l": inverse, "extrapolated_ev": values[1] - slope * inverse[1],
                        "binding_energy_small_ev": small["binding_energy_ev"],
                        "binding_energy_large_ev": big["binding_energy_ev"]}
    if len(result) == 2:
        result["quartz_minus_rutile"] = {
            key: result["quartz"][key] - result["rutile"][key]
            for key in ("reference_small_ev", "reference_large_ev", "extrapolated_ev")}
        print("finite-size check (homo + ΔE, eV): " + ", ".join(
            f"{name} {values['reference_small_ev']:.3f} -> {values['reference_large_ev']:.3f} "
            f"(1/L extrapolated {values['extrapolated_ev']:.3f})" for name, values in result.items()
            if name != "quartz_minus_rutile"))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=12, help="cells per polymorph")
    parser.add_argument("--protocol", default="fast")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    parser.add_argument("--semicore", action="store_true",
                        help="also run every cell with the Ge 3d family and the 'semicore' alignment (~2x the cost)")
    parser.add_argument("--experimental", action="store_true",
                        help="the four alignments at the experimental cells, core_hole by ΔSCF (issue 16)")
    parser.add_argument("--madelung", action="store_true",
                        help="with --experimental: a second, smaller ΔSCF supercell per polymorph")
    args = parser.parse_args()
    load_profile(args.profile)
    if args.experimental:
        report = experimental_study(args)
        if args.output:
            merged = {}
            try:
                with open(args.output) as handle:
                    merged = json.load(handle)
            except (OSError, ValueError):
                pass
            merged["experimental_cells"] = report
            with open(args.output, "w") as handle:
                json.dump(merged, handle, indent=2)
        return
    rows = {"vbm": [], "potential": []}
    semicore_runs = []  # (energy_ev, intensity, 3d level - VBM per site) per cell
    if args.semicore:
        ensure_semicore_family()
    features, groups, coordination = [], [], []
    start = time.perf_counter()
    for index, (name, cn, atoms) in enumerate(cells(args.cells)):
        builder = SpectrumWorkChain.get_builder_from_protocol(
            f"{code_label('pw')}@localhost", f"{code_label('projwfc')}@localhost", orm.StructureData(ase=atoms),
            protocol=args.protocol, pp_code=f"{code_label('pp')}@localhost",
            overrides={"parameters": {"alignment": "potential", "grid": GRID}})
        results, node = run_get_node(builder)
        if not node.is_finished_ok:
            print(f"cell {index} ({name}) failed: {node.exit_message}; left out")
            continue
        if args.semicore:
            ecutwfc, ecutrho = SEMICORE_CUTOFFS_RY[args.protocol]
            builder = SpectrumWorkChain.get_builder_from_protocol(
                f"{code_label('pw')}@localhost", f"{code_label('projwfc')}@localhost", orm.StructureData(ase=atoms),
                protocol=args.protocol, pseudo_family=SEMICORE_FAMILY,
                overrides={"parameters": {"alignment": "semicore", "grid": SEMICORE_GRID},
                           "scf": {"pw": {"parameters": {"SYSTEM": {"ecutwfc": ecutwfc, "ecutrho": ecutrho}}}}})
            semicore, semicore_node = run_get_node(builder)
            if not semicore_node.is_finished_ok:
                print(f"cell {index} ({name}) semicore run failed: {semicore_node.exit_message}; left out")
                continue
            semicore = semicore["spectra"]
            semicore_runs.append((semicore.energy_ev, semicore.intensity,
                                  semicore.reference_ev - semicore.parameters["homo_ev"]))
        spectra = results["spectra"]
        shift = spectra.reference_ev - spectra.parameters["homo_ev"]  # E_vbm = E_potential + shift
        for site, delta in enumerate(shift):
            rows["potential"].append(spectral_moments(spectra.energy_ev, spectra.intensity[site])[0])
            rows["vbm"].append(spectral_moments(spectra.energy_ev + delta, spectra.intensity[site])[0])
        features.append(local_coulomb_matrix(atoms)[:, :20])  # first row: Z_0 Z_j / r_0j
        groups.extend([index] * len(shift))
        coordination.extend([cn] * len(shift))
        print(f"cell {index:2d} {name}: {len(shift)} sites, {time.perf_counter() - start:.0f} s", flush=True)
    if semicore_runs:
        level = float(np.mean(np.concatenate([offsets for _, _, offsets in semicore_runs])))
        print(f"semicore: mean Ge 3d level {level:.2f} eV relative to the VBM; energies shifted by it")
        rows["semicore"] = [spectral_moments(energy + level, site)[0]
                            for energy, intensity, _ in semicore_runs for site in intensity]
    X, groups, coordination = np.vstack(features), np.array(groups), np.array(coordination)
    report = {"n_cells": int(len(np.unique(groups))), "n_sites": int(len(groups)), "alignments": {}}
    folds = GroupKFold(n_splits=min(6, len(np.unique(groups))))
    for alignment, values in rows.items():
        Y = np.array(values)
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
        predicted = cross_val_predict(model, X, Y, groups=groups, cv=folds)
        r2 = 1 - np.sum((Y - predicted) ** 2, axis=0) / np.sum((Y - Y.mean(axis=0)) ** 2, axis=0)
        report["alignments"][alignment] = {
            "between_snapshot_share_kbpp_m1": float(between_share(Y[:, 1], groups)),
            "between_snapshot_share_kb2_m1": float(between_share(Y[:, 5], groups)),
            "kbpp_m1_sixfold_minus_fourfold_ev": float(Y[coordination == 6, 1].mean() - Y[coordination == 4, 1].mean()),
            "kbpp_m0_ratio_six_over_four": float(Y[coordination == 6, 0].mean() / Y[coordination == 4, 0].mean()),
            "ridge_r2": {name: float(value) for name, value in zip(MOMENT_NAMES, r2)},
        }
    print(f"\n{report['n_sites']} Ge sites from {report['n_cells']} cells, {time.perf_counter() - start:.0f} s")
    print(f"{'alignment':10s} {'between share Kb″ M1':>20s} {'between share Kb2 M1':>20s} {'6-4 Kb″ M1 (eV)':>16s} "
          f"{'M0 ratio':>9s}  ridge R2 per moment (grouped CV)")
    for alignment, figures in report["alignments"].items():
        r2 = " ".join(f"{value:5.2f}" for value in figures["ridge_r2"].values())
        print(f"{alignment:10s} {figures['between_snapshot_share_kbpp_m1']:20.3f} "
              f"{figures['between_snapshot_share_kb2_m1']:20.3f} {figures['kbpp_m1_sixfold_minus_fourfold_ev']:16.3f} "
              f"{figures['kbpp_m0_ratio_six_over_four']:9.3f}  {r2}")
    print("moments: " + " ".join(MOMENT_NAMES))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
