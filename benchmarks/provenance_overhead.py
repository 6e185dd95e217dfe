"""Provenance overhead of xesml.analysis against calling the core functions directly (issue target).

A synthetic data set of about 10^4 Ge sites: rattled and strained 3x3x3 rutile-type cells (54 Ge
each, label 20) and 3x3x2 α-quartz-type cells (54 Ge, label 0), with the synthetic two-Gaussian
spectra of :mod:`aiida_xesml.ml.synthetic`. The same steps run twice, side by side in one process:

- direct: featurize_snapshots, spectral_moments, join_rows, train_emulator, ECA.fit,
  reconstruct_targets (numpy only);
- provenance: ``xesml.analysis`` on a throw-away ``verdi presto`` profile (SQLite), every step a
  calcfunction whose inputs and outputs are stored.

It prints the wall times, their ratio, the nodes the analysis created (the count must not grow with
the number of samples: one node per step, not per sample, which a second, 4x smaller run shows),
and the largest difference between the two routes' reconstructed CN (0 when both see the same
inputs; storing the snapshots is not timed).

    python benchmarks/provenance_overhead.py [--cells 186]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aiida_xesml.ml.dataset import ensemble_mean_spectra, featurize_snapshots, join_rows
from aiida_xesml.ml.eca import ECA
from aiida_xesml.ml.moments import spectral_moments
from aiida_xesml.ml.reconstruct import inverse_weights, reconstruct_targets
from aiida_xesml.ml.spectra import energy_grid
from aiida_xesml.ml.structures import quartz_geo2, rattle_and_strain, rutile_geo2, supercell
from aiida_xesml.ml.synthetic import first_shell_geometry, synthetic_site_spectra
from aiida_xesml.ml.training import train_emulator

TRAINING = {"hidden_layer_sizes": [32, 32], "alpha": 0.1, "max_iter": 300}
ECA_SETTINGS = {"n_components": 2, "seed": 0}


def make_data(n_cells: int):
    grid = energy_grid(-30.0, 5.0, 0.05)
    structures, intensity, site, snapshot, label = [], [], [], [], []
    for k in range(n_cells):
        quartz = k % 2 == 0
        base = supercell(quartz_geo2(), (3, 3, 2)) if quartz else supercell(rutile_geo2(), (3, 3, 3))
        atoms = rattle_and_strain(base, rattle=0.06, strain=0.02, seed=k)
        ge, r, spread, cn = first_shell_geometry(atoms)
        structures.append(atoms)
        intensity.append(synthetic_site_spectra(r, spread, cn, grid))
        site.append(ge)
        snapshot.append(np.full(len(ge), k))
        label.append(np.full(len(ge), 0.0 if quartz else 20.0))
    return structures, grid, np.vstack(intensity), np.concatenate(site), np.concatenate(snapshot), np.concatenate(label)


def direct_route(structures, grid, intensity, site, snapshot, label):
    rows = featurize_snapshots(structures)
    moments = spectral_moments(grid, intensity)
    ia, ib = join_rows(np.column_stack([rows["snapshot_index"], rows["site_index"]]), np.column_stack([snapshot, site]))
    X, Y = rows["descriptors"][ia], moments[ib]
    emulator, metrics, _, _ = train_emulator(X, Y, label, TRAINING)
    eca = ECA(emulator, n_components=ECA_SETTINGS["n_components"], random_state=0).fit(X, Y)
    labels, means, _ = ensemble_mean_spectra(intensity, label)
    names = [f"{w}_m{o}" for w in ("kbpp", "kb2") for o in range(4)]
    weights = inverse_weights(names, metrics["r2"])
    return reconstruct_targets(eca, spectral_moments(grid, means), 20, target_weights=weights)


def store_inputs(structures, grid, intensity, site, snapshot, label):
    """Store the snapshots and spectra; returns them and the structures as read back from the profile.

    Both routes use the read-back structures: the SQLite profile keeps positions to ~5e-13 Å, and
    an emulator trained from descriptors that differ in the last bits can end somewhere else."""
    from aiida import orm

    from aiida_xesml.data.spectra import XesSpectraData

    spectra = XesSpectraData()
    spectra.set_spectra(grid, intensity, site, np.zeros(len(site)), snapshot_index=snapshot, label=label)
    nodes = {f"snapshot_{k}": orm.StructureData(ase=atoms) for k, atoms in enumerate(structures)}
    for node in [spectra, *nodes.values()]:
        node.store()
    read_back = [orm.load_node(node.pk).get_ase() for node in nodes.values()]
    return spectra, nodes, read_back


def provenance_route(spectra, nodes):
    """Runs xesml.analysis; returns (result, nodes created by the analysis, input nodes stored first)."""
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_xesml.workflows.analysis import AnalysisWorkChain

    before = orm.QueryBuilder().append(orm.Node).count()
    builder = AnalysisWorkChain.get_builder_from_protocol(spectra, nodes, protocol="balanced",
                                                          overrides={"training_parameters": TRAINING,
                                                                     "eca_parameters": ECA_SETTINGS,
                                                                     "min_samples_per_label": 4})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    created = orm.QueryBuilder().append(orm.Node).count() - before
    return results, created, len(nodes) + 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=186, help="cells of 54 Ge sites each (186 -> 10,044 sites)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        os.environ["AIIDA_PATH"] = folder
        verdi = str(Path(sys.executable).with_name("verdi"))
        subprocess.run([verdi, "presto", "--profile-name", "bench", "--use-zeromq"], check=True, capture_output=True)
        from aiida import load_profile

        load_profile("bench", allow_switch=True)
        rows = []
        for n_cells in (max(2, args.cells // 4), args.cells):
            data = make_data(n_cells)
            spectra, nodes, read_back = store_inputs(*data)
            start = time.perf_counter()
            direct = direct_route(read_back, *data[1:])
            t_direct = time.perf_counter() - start
            start = time.perf_counter()
            results, created, stored_inputs = provenance_route(spectra, nodes)
            t_prov = time.perf_counter() - start
            difference = np.abs(results["reconstruction"].get_array("cn_fractional") - direct["cn_fractional"]).max()
            rows.append((len(data[3]), t_direct, t_prov, created, stored_inputs, difference))

    print(f"{'sites':>6s} {'direct s':>9s} {'AiiDA s':>8s} {'ratio':>6s} {'nodes made by analysis':>23s} "
          f"{'input nodes':>11s} {'max |dCN|':>9s}")
    for sites, t_direct, t_prov, created, inputs, difference in rows:
        print(f"{sites:6d} {t_direct:9.1f} {t_prov:8.1f} {t_prov / t_direct:6.2f} {created:23d} {inputs:11d} "
              f"{difference:9.2e}")
    small, large = rows
    print(f"nodes per step: {large[3]} at {large[0]} sites vs {small[3]} at {small[0]} sites "
          f"(ratio {large[3] / small[3]:.2f}; O(1) per step means 1.00)")
    print(f"provenance overhead at {large[0]} sites: {large[2] / large[1]:.2f}x the direct route's wall time")


if __name__ == "__main__":
    main()
