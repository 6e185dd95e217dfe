"""Lifetime broadening (issue 16): what the Ge 1s natural width does to the moments and to emulator skill.

The Ge K-level natural width is 1.96 eV (Krause & Oliver, J. Phys. Chem. Ref. Data 8, 329 (1979);
the value tabulated by XrayDB's ``core_width('Ge', 'K')``). It is a Lorentzian of that FWHM on every
emission line. The final state of a valence-to-core line is a valence hole, whose width is not
included: atomic N-shell widths are meV (XrayDB: N1 0.006 eV, N2,3 0.001 eV); the O 2s-derived
final state of Kβ″ may be broader in the solid, which no table gives.

Real projections only: every finished ``xesml.spectrum`` of the profile (its ``xesml.projwfc``
``site_projections``: eigenvalues, per-site p weights, k weights) is recomputed with
:func:`aiida_xesml.ml.spectra.site_spectra` twice, side by side: the default Gaussian (1.0 eV FWHM,
no Lorentzian) and a Voigt with the same Gaussian and the K-level Lorentzian. Reported:

- per moment, the mean and spread of the change, and how well the two settings' values correlate
  over the sites (a change that is the same for every site shifts the targets but loses nothing);
- emulator skill (``aiida_xesml.ml.training.fit_emulators``: a held-out split of whole snapshots,
  network and ridge chosen by snapshot-grouped CV) per target, for the ``moments`` and the
  ``shift_free`` target sets, with and without the Lorentzian.

    AIIDA_PATH=... .venv/bin/python benchmarks/broadening.py [--profile NAME] [--output FILE.json]
"""

import argparse
import json
import time

import numpy as np
from aiida import load_profile, orm
from aiida.common.links import LinkType

from aiida_xesml.calculations.compute_spectra import _weights_from_site_projections
from aiida_xesml.ml.descriptors import local_coulomb_matrix
from aiida_xesml.ml.model_selection import FAST_NETWORK_GRID
from aiida_xesml.ml.moments import MOMENT_NAMES, SHIFT_FREE_NAMES, shift_free_targets, spectral_moments
from aiida_xesml.ml.spectra import energy_grid, occupied_bands, site_spectra
from aiida_xesml.ml.structures import coordination_numbers
from aiida_xesml.ml.training import fit_emulators

#: Ge K-level natural width, eV (Krause & Oliver 1979).
GE_K_WIDTH_EV = 1.96
GAUSSIAN_FWHM_EV = 1.0
SETTINGS = {"gaussian": (GAUSSIAN_FWHM_EV, 0.0), "voigt": (GAUSSIAN_FWHM_EV, GE_K_WIDTH_EV)}
GRID = energy_grid(-40.0, 15.0, 0.05)


def spectrum_runs():
    """Finished SpectrumWorkChain nodes whose projwfc child has ``site_projections``."""
    query = orm.QueryBuilder().append(orm.WorkChainNode, filters={
        "attributes.process_label": "SpectrumWorkChain", "attributes.exit_status": 0}, project="*")
    runs = []
    for (node,) in query.all():
        parameters = node.inputs.parameters.get_dict() if "parameters" in node.inputs else {}
        if parameters.get("alignment") == "semicore":
            continue  # the same structures again, with the 3d-valence dataset
        for link in node.base.links.get_outgoing(link_type=LinkType.CALL_CALC).all():
            if link.link_label == "projwfc" and "site_projections" in link.node.outputs:
                runs.append((node, link.node.outputs.site_projections))
    return runs


def site_rows(node, site_projections):
    """(eigenvalues, p weights of the Ge sites, k weights, homo, n_occupied) of one run."""
    structure = node.inputs.structure
    atoms = structure.get_ase()
    emitters = np.flatnonzero(np.array(atoms.get_chemical_symbols()) == "Ge")
    eigenvalues, k_weights, p_weights, _, n_electrons = _weights_from_site_projections(
        site_projections, [site.kind_name for site in structure.sites], emitters)
    n_occupied = occupied_bands(n_electrons, eigenvalues.shape[1])
    occupied = eigenvalues[:, :n_occupied]
    return atoms, emitters, occupied, p_weights[:, :, :n_occupied], k_weights, float(occupied.max())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--output", default=None)
    parser.add_argument("--min-snapshots", type=int, default=8, help="fewest snapshots for the skill figures")
    args = parser.parse_args()
    load_profile(args.profile)
    start = time.perf_counter()
    moments = {name: [] for name in SETTINGS}
    features, groups, structures, coordination = [], [], [], []
    runs = spectrum_runs()
    for index, (node, projections) in enumerate(runs):
        atoms, emitters, occupied, p_weights, k_weights, homo = site_rows(node, projections)
        for name, (fwhm, lorentzian) in SETTINGS.items():
            spectra = site_spectra(occupied, p_weights, k_weights, grid=GRID, fwhm=fwhm, lorentzian_fwhm=lorentzian,
                                   alignment="vbm", homo=homo)
            moments[name].append(spectral_moments(spectra.energies, spectra.intensities))
        features.append(local_coulomb_matrix(atoms, centers=emitters, ordering="species"))
        groups.extend([index] * len(emitters))
        coordination.extend(np.asarray(coordination_numbers(atoms), dtype=int).tolist())
        structures.append(node.pk)
    Y = {name: np.vstack(values) for name, values in moments.items()}
    X, groups = np.vstack(features), np.array(groups)
    print(f"{len(X)} Ge sites from {len(runs)} xesml.spectrum runs ({time.perf_counter() - start:.1f} s)")

    report = {"ge_k_width_ev": GE_K_WIDTH_EV, "gaussian_fwhm_ev": GAUSSIAN_FWHM_EV, "n_sites": int(len(X)),
              "n_snapshots": int(len(runs)), "spectrum_workchains": structures, "moments": {}, "skill": {}}
    gaussian, voigt = Y["gaussian"], Y["voigt"]
    print(f"\nper moment, Voigt (Lorentzian {GE_K_WIDTH_EV} eV) minus Gaussian only, over the sites:")
    print(f"{'moment':10s} {'Gaussian mean':>14s} {'Voigt mean':>11s} {'change mean':>12s} {'change sd':>10s} "
          f"{'site sd (G)':>12s} {'r(G, V)':>8s}")
    for column, name in enumerate(MOMENT_NAMES):
        change = voigt[:, column] - gaussian[:, column]
        spread = gaussian[:, column].std()
        r = (float(np.corrcoef(gaussian[:, column], voigt[:, column])[0, 1])
             if spread > 1e-9 * (1 + abs(gaussian[:, column].mean())) else None)
        report["moments"][name] = {"gaussian_mean": float(gaussian[:, column].mean()),
                                   "voigt_mean": float(voigt[:, column].mean()), "change_mean": float(change.mean()),
                                   "change_sd": float(change.std()), "site_sd_gaussian": float(spread), "r": r}
        print(f"{name:10s} {gaussian[:, column].mean():14.3f} {voigt[:, column].mean():11.3f} {change.mean():12.3f} "
              f"{change.std():10.3f} {spread:12.3f} {r if r is not None else float('nan'):8.3f}")
    for column, name in enumerate(SHIFT_FREE_NAMES):
        g, v = shift_free_targets(gaussian)[:, column], shift_free_targets(voigt)[:, column]
        report["moments"][name] = {"gaussian_mean": float(g.mean()), "voigt_mean": float(v.mean()),
                                   "change_mean": float((v - g).mean()), "change_sd": float((v - g).std())}

    coordination = np.array(coordination)
    if {4, 6} <= set(coordination.tolist()):
        print("\n6-fold minus 4-fold Ge (site means), shift-free targets:")
        report["sixfold_minus_fourfold"] = {}
        for setting, values in Y.items():
            targets = shift_free_targets(values)
            contrast = targets[coordination == 6].mean(axis=0) - targets[coordination == 4].mean(axis=0)
            spread = np.sqrt(0.5 * (targets[coordination == 6].var(axis=0) + targets[coordination == 4].var(axis=0)))
            report["sixfold_minus_fourfold"][setting] = {"difference": dict(zip(SHIFT_FREE_NAMES, contrast.tolist())),
                                                         "site_sd": dict(zip(SHIFT_FREE_NAMES, spread.tolist()))}
            print(f"  {setting:9s} " + ", ".join(f"{n} {c:+.3f}" for n, c in zip(SHIFT_FREE_NAMES, contrast)))

    if len(np.unique(groups)) < args.min_snapshots:
        print(f"\nskill: only {len(np.unique(groups))} snapshots (< {args.min_snapshots}); no emulator figures")
    else:
        settings = {"cv_folds": 3, "n_members": 1, "network_grid": FAST_NETWORK_GRID, "test_fraction": 0.25}
        print("\nheld-out Pearson r per target (whole snapshots held out; network | ridge):")
        for setting, values in Y.items():
            for target_set, targets, names in (("moments", values, MOMENT_NAMES),
                                               ("shift_free", shift_free_targets(values), SHIFT_FREE_NAMES)):
                fitted = fit_emulators(X, targets, groups, settings=settings)
                metrics = fitted["metrics"]
                key = f"{setting}/{target_set}"
                report["skill"][key] = {"network_r": metrics["network"]["pearson_r"],
                                        "ridge_r": metrics["ridge"]["pearson_r"], "names": names,
                                        "n_test": metrics["n_test"], "n_test_groups": metrics["n_test_groups"],
                                        "selected": fitted["selected"]}
                text = ", ".join(f"{n} {'-' if a is None else f'{a:.2f}'}|{'-' if b is None else f'{b:.2f}'}"
                                 for n, a, b in zip(names, metrics["network"]["pearson_r"],
                                                    metrics["ridge"]["pearson_r"]))
                print(f"  {key:22s} ({metrics['n_test']} rows, {metrics['n_test_groups']} snapshots): {text}")
    report["seconds"] = time.perf_counter() - start
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
