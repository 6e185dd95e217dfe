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

from aiida_xesml.environment import SEMICORE_CUTOFFS_RY, SEMICORE_FAMILY, code_label, ensure_semicore_family
from aiida_xesml.ml.descriptors import local_coulomb_matrix
from aiida_xesml.ml.moments import MOMENT_NAMES, spectral_moments
from aiida_xesml.ml.structures import quartz_geo2, rattle_and_strain, rutile_geo2, supercell
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=12, help="cells per polymorph")
    parser.add_argument("--protocol", default="fast")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    parser.add_argument("--semicore", action="store_true",
                        help="also run every cell with the Ge 3d family and the 'semicore' alignment (~2x the cost)")
    args = parser.parse_args()
    load_profile(args.profile)
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
