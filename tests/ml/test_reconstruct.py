"""Distances, species and coordination read back from (pseudo-)Coulomb matrices."""

import math

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list

from aiida_xesml.ml.descriptors import local_coulomb_matrix
from aiida_xesml.ml.reconstruct import (
    analyze_coulomb,
    coordination_number,
    distances_from_coulomb,
    first_shell_distance,
    fractional_coordination,
)
from aiida_xesml.ml.structures import coordination_numbers, quartz_geo2, rattle_and_strain, rutile_geo2

N = 20


def _triclinic_rattled():
    cell = np.array([[5.0, 0.0, 0.0], [1.2, 4.8, 0.0], [0.7, -0.9, 5.2]])
    fractional = [[0.0, 0.0, 0.0], [0.5, 0.5, 0.1], [0.1, 0.6, 0.6], [0.3, 0.1, 0.2],
                  [0.7, 0.3, 0.4], [0.25, 0.4, 0.8], [0.6, 0.8, 0.9], [0.8, 0.05, 0.7], [0.45, 0.9, 0.35]]
    atoms = Atoms("Ge3O6", scaled_positions=fractional, cell=cell, pbc=True)
    return rattle_and_strain(atoms, rattle=0.04, strain=0.03, seed=7)


STRUCTURES = {"rutile": rutile_geo2, "quartz": quartz_geo2, "triclinic": _triclinic_rattled}


def _true_neighbours(atoms, center, n_neighbours, cutoff=7.0):
    """(distance, Z) of the n nearest images around ``center``, from ASE's neighbour list."""
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    pick = i == center
    pairs = sorted(zip(d[pick], atoms.numbers[j[pick]]))
    assert len(pairs) > n_neighbours
    return pairs[:n_neighbours]


@pytest.mark.parametrize("name", STRUCTURES)
def test_distances_and_species_are_exact_for_true_matrices(name):
    atoms = STRUCTURES[name]()
    features = local_coulomb_matrix(atoms, n_atoms=N)
    distances, z = distances_from_coulomb(features, N)
    assert distances.shape == z.shape == (len(features), N - 1)
    centers = np.flatnonzero(atoms.numbers == 32)
    for row, center in enumerate(centers):
        truth = _true_neighbours(atoms, center, N - 1)
        # distances come in increasing order; equal ones may hold either species first
        np.testing.assert_allclose(distances[row], [d for d, _ in truth], rtol=1e-12, atol=0)
        assert sorted(zip(np.round(distances[row], 8), z[row])) == sorted(
            (round(float(d), 8), int(s)) for d, s in truth)
    assert set(np.unique(z)) <= {8, 32}
    np.testing.assert_array_equal(coordination_number(distances, z), coordination_numbers(atoms))


def test_first_shell_and_fractional_cn_of_crystals():
    rutile = analyze_coulomb(local_coulomb_matrix(rutile_geo2()), N)
    a, c, u = 4.3975, 2.8625, 0.306
    short, long = math.sqrt(2 * ((0.5 - u) * a) ** 2 + (c / 2) ** 2), math.sqrt(2) * u * a
    np.testing.assert_allclose(rutile["first_shell_mean_angstrom"], (4 * short + 2 * long) / 6, rtol=1e-12)
    assert rutile["cn"].tolist() == [6, 6]
    # every first-shell O is closer than 2.2 Å and the next O (~3.34 Å) beyond 2.4 Å: the smooth CN is exact
    np.testing.assert_array_equal(rutile["cn_fractional"], [6.0, 6.0])
    quartz = analyze_coulomb(local_coulomb_matrix(quartz_geo2()), N)
    assert quartz["cn"].tolist() == [4, 4, 4]
    np.testing.assert_array_equal(quartz["cn_fractional"], [4.0, 4.0, 4.0])
    assert np.all(np.abs(quartz["first_shell_mean_angstrom"] - 1.739) < 0.01)
    assert quartz["species"].shape == quartz["distances_angstrom"].shape == (3, N - 1)


def test_padding_and_non_positive_entries_mean_no_atom():
    cluster = Atoms("GeO2", positions=[[0, 0, 0], [1.75, 0, 0], [0, 0, -1.8]])
    features = local_coulomb_matrix(cluster, n_atoms=5)
    distances, z = distances_from_coulomb(features[0], 5)  # 1-D input: one row
    assert distances.shape == (1, 4)
    np.testing.assert_allclose(distances[0, :2], [1.75, 1.8], rtol=1e-12)
    assert np.all(np.isinf(distances[0, 2:])) and z[0].tolist() == [8, 8, 0, 0]
    pseudo = features.copy()
    pseudo[0, 1] = -3.0  # a reconstruction that undershoots M_01
    pseudo[0, 5 + 4 + 3] = -1.0  # and M_33 (padding diagonal made negative)
    distances, z = distances_from_coulomb(pseudo, 5)
    assert np.isinf(distances[0, 0]) and z[0, 0] == 0 and z[0, 1] == 8
    assert coordination_number(distances, z).tolist() == [1]
    assert fractional_coordination(distances, z)[0] == 1.0  # the O at 1.8 Å counts fully
    summary = analyze_coulomb(np.zeros((2, 15)), 5)
    assert summary["cn"].tolist() == [0, 0] and np.all(np.isnan(summary["first_shell_mean_angstrom"]))


def test_species_rounding_and_z_center():
    n = 3
    z_center, z1, z2, r1, r2 = 14, 8, 32, 1.6, 3.1
    matrix = np.zeros((n, n))
    matrix[0, 0], matrix[1, 1], matrix[2, 2] = 0.5 * z_center**2.4, 0.5 * z1**2.4, 0.5 * z2**2.4
    matrix[0, 1], matrix[0, 2] = z_center * z1 / r1, z_center * z2 / r2
    features = matrix[np.triu_indices(n)]
    distances, z = distances_from_coulomb(features, n, z_center=z_center)
    np.testing.assert_allclose(distances, [[r1, r2]], rtol=1e-14)
    assert z.tolist() == [[8, 32]]
    noisy = features.copy()
    noisy[3] *= 1.3  # M_11 off by 30 %: (2 M)**(1/2.4) ~ 8.9, still nearest to O
    noisy[5] *= 0.5  # M_22 halved: ~24.9, nearest to Ge
    distances, z = distances_from_coulomb(noisy, n, z_center=z_center)
    assert z.tolist() == [[8, 32]]
    np.testing.assert_allclose(distances, [[r1, r2]], rtol=1e-14)  # the rounded Z is used
    _, z = distances_from_coulomb(noisy, n, z_center=z_center, species=(8, 14, 32))
    assert z.tolist() == [[8, 32]]
    _, z = distances_from_coulomb(noisy, n, z_center=z_center, species=(8, 14, 26))
    assert z.tolist() == [[8, 26]]


def test_fractional_coordination_is_a_cosine_switch_sum():
    # s(2.3) = 1/2, s(2.35) = (1 + cos(3π/4))/2, s(2.15) = 1, s(2.45) = 0; Ge and absent atoms count 0
    distances = np.array([[2.3, 2.35, 1.0, np.inf, 2.15], [2.45, 9.0, 9.0, 9.0, 9.0]])
    z = np.array([[8, 8, 32, 8, 8], [8, 8, 8, 8, 8]])
    np.testing.assert_allclose(fractional_coordination(distances, z),
                               [0.5 + (1 + math.cos(0.75 * math.pi)) / 2 + 1.0, 0.0], rtol=1e-12)
    # a Ge at 1.0 Å with cutoff 2.0 ± 0.2 counts 1; first-shell distances weight by the switch
    np.testing.assert_allclose(fractional_coordination(distances, z, cutoff=2.0, width=0.2, neighbour_z=32),
                               [1.0, 0.0], atol=1e-15)
    w = np.array([0.5, (1 + math.cos(0.75 * math.pi)) / 2, 1.0])
    np.testing.assert_allclose(first_shell_distance(distances, z)[0], (w @ [2.3, 2.35, 2.15]) / w.sum(), rtol=1e-12)
    assert np.isnan(first_shell_distance(distances, z)[1])
    assert coordination_number(distances, z).tolist() == [1, 0]  # 2.15 Å; 2.3 Å is not strictly closer
    assert coordination_number(distances, z, cutoff=2.31).tolist() == [2, 0]
    assert coordination_number(distances, z, cutoff=2.5, neighbour_z=32).tolist() == [1, 0]


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="features.*210"):
        distances_from_coulomb(np.ones((2, 200)), 20)
    with pytest.raises(ValueError, match="n_atoms"):
        distances_from_coulomb(np.ones(1), 1)
    with pytest.raises(ValueError, match="features"):
        distances_from_coulomb(np.full(3, np.nan), 2)
    with pytest.raises(ValueError, match="species"):
        distances_from_coulomb(np.ones(3), 2, species=(0, 8))
    with pytest.raises(ValueError, match="Z"):
        coordination_number(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="width"):
        fractional_coordination(np.ones((1, 3)), np.ones((1, 3)), width=0)
    with pytest.raises(ValueError, match="distances"):
        coordination_number(np.full((1, 2), np.nan), np.ones((1, 2)))


def test_mean_matrix_of_an_ensemble_reads_back_its_first_shell_without_ghosts():
    """Averaging mixes O and Ge in the outer slots; read raw, such a slot looks like a close O."""
    from aiida_xesml.ml.descriptors import local_coulomb_matrices
    from aiida_xesml.ml.reconstruct import analyze_coulomb
    from aiida_xesml.ml.structures import coordination_numbers, quartz_geo2, rattle_and_strain, supercell

    cells = [rattle_and_strain(supercell(quartz_geo2(), 2), 0.08, 0.03, seed=seed) for seed in range(5)]
    mean = local_coulomb_matrices(cells).mean(axis=0, keepdims=True)
    true_cn = np.mean(np.concatenate([coordination_numbers(atoms) for atoms in cells]))
    assert abs(analyze_coulomb(mean, 20)["cn_fractional"][0] - true_cn) < 0.1
    assert analyze_coulomb(mean, 20, monotonic=False)["cn_fractional"][0] > true_cn + 0.5


@pytest.fixture(scope="module")
def crystal_sites():
    """Rattled, strained quartz-type (4-fold) and rutile-type (6-fold) sites, species-resolved descriptors, and
    synthetic spectra whose peaks follow each site's first shell (computed with ASE, not the descriptor)."""
    from aiida_xesml.ml.descriptors import local_coulomb_matrices, slot_atomic_numbers
    from aiida_xesml.ml.structures import supercell
    from aiida_xesml.ml.synthetic import first_shell_geometry, synthetic_site_spectra

    grid = np.arange(-30.0, 5.0001, 0.05)
    cells = [rattle_and_strain(supercell(quartz_geo2(), 2), 0.06, 0.02, seed=s) for s in range(8)]
    cells += [rattle_and_strain(supercell(rutile_geo2(), (2, 2, 3)), 0.06, 0.02, seed=100 + s) for s in range(8)]
    X = local_coulomb_matrices(cells, N, ordering="species")
    geometry = [first_shell_geometry(atoms) for atoms in cells]
    r, spread, cn = (np.concatenate([g[k] for g in geometry]) for k in (1, 2, 3))
    spectra = synthetic_site_spectra(r, spread, cn, grid)
    return X, spectra, grid, slot_atomic_numbers(N, ordering="species"), cn


def test_ensemble_reconstruction_gives_values_with_spreads(crystal_sites):
    from aiida_xesml.ml.eca import ECA
    from aiida_xesml.ml.emulator import MLPEmulator
    from aiida_xesml.ml.moments import spectral_moments
    from aiida_xesml.ml.reconstruct import reconstruct_ensemble, site_structure

    X, spectra, grid, slot_z, cn = crystal_sites
    Y = spectral_moments(grid, spectra)
    rng = np.random.default_rng(0)
    members = [MLPEmulator((16,), alpha=1e-2, random_state=i).fit(X[rows], Y[rows])
               for i, rows in enumerate(rng.integers(0, len(X), size=(3, len(X))))]
    structure = site_structure(X, N, slot_z=slot_z)
    np.testing.assert_array_equal(structure["cn_fractional"], cn)  # crystals: smooth CN = integer count
    four, six = cn == 4, cn == 6
    targets = spectral_moments(grid, np.array([spectra[four].mean(axis=0), spectra[six].mean(axis=0)]))
    population = reconstruct_ensemble(members, targets, X=X, structure=structure, range_tolerance=0.1)
    assert population["members"]["cn_fractional"].shape == (3, 2)
    assert population["value"]["distances_angstrom"].shape == (2, N - 1)
    np.testing.assert_allclose(population["value"]["cn_fractional"], [4.0, 6.0], atol=0.3)
    assert np.all(population["spread"]["cn_fractional"] >= 0) and np.any(population["spread"]["cn_fractional"] > 0)
    low, high = population["range"]["cn_fractional"].T  # the union of the members' ranges holds every reading
    assert np.all(low <= population["members"]["cn_fractional"].min(axis=0) + 1e-6)
    assert np.all(population["members"]["cn_fractional"].max(axis=0) <= high + 1e-6)
    assert high[0] < low[1]  # pure 4- and pure 6-fold sites: ranges apart
    assert population["range"]["first_shell_mean_angstrom"].shape == (2, 2)
    with pytest.raises(ValueError, match="range_tolerance"):
        reconstruct_ensemble(members, targets, method="single_point", ecas=[], n_atoms=N, range_tolerance=0.1)
    ecas = [ECA(member, n_components=2).fit(X, Y) for member in members]
    single = reconstruct_ensemble(members, targets, method="single_point", ecas=ecas, n_atoms=N,
                                  analysis_options={"slot_z": slot_z})
    assert single["scores"].shape == (3, 2, 2)
    assert np.all(np.isfinite(single["value"]["first_shell_mean_angstrom"]))
    with pytest.raises(ValueError, match="method"):
        reconstruct_ensemble(members, targets, method="median", X=X, structure=structure)
    with pytest.raises(ValueError, match="ecas"):
        reconstruct_ensemble(members, targets, method="single_point")
    with pytest.raises(ValueError, match="structure"):
        reconstruct_ensemble(members, targets, X=X, structure={"cn": cn})


def test_linear_readout_of_an_ensemble_reads_pure_polymorphs_and_their_mixture(crystal_sites):
    """Method 'linear' needs no emulator: a ridge readout of the training sites' computed moment integrands, exact
    for mixtures, with a spread over bootstrap resamples of whole snapshots."""
    from aiida_xesml.ml.dataset import bootstrap_rows
    from aiida_xesml.ml.mixture import LinearMixtureReadout
    from aiida_xesml.ml.moments import spectral_moments
    from aiida_xesml.ml.reconstruct import reconstruct_ensemble, site_structure

    X, spectra, grid, slot_z, cn = crystal_sites
    Y = spectral_moments(grid, spectra)
    structure = site_structure(X, N, slot_z=slot_z)
    groups = np.repeat(np.arange(16), [len(X) // 16] * 16)  # 16 cells of equal size
    four, six = np.flatnonzero(cn == 4), np.flatnonzero(cn == 6)
    mixed = np.concatenate([four[: len(four) // 2], six[: len(six) // 2]])
    truth = [structure["cn_fractional"][rows].mean() for rows in (four, mixed, six)]
    shell = [structure["first_shell_mean_angstrom"][rows].mean() for rows in (four, mixed, six)]
    targets = spectral_moments(grid, np.array([spectra[rows].mean(axis=0) for rows in (four, mixed, six)]))
    result = reconstruct_ensemble([None] * 4, targets, method="linear", site_moments=Y, structure=structure,
                                  groups=groups)
    assert "inverse_loss" not in result and result["members"]["cn_fractional"].shape == (4, 3)
    np.testing.assert_allclose(result["value"]["cn_fractional"], truth, atol=0.3)
    np.testing.assert_allclose(result["value"]["first_shell_mean_angstrom"], shell, atol=0.03)
    assert np.all(np.diff(result["value"]["cn_fractional"]) > 0.5)
    assert np.all(result["spread"]["cn_fractional"] > 0)  # the resamples differ
    assert result["value"]["distances_angstrom"].shape == (3, N - 1)
    # member 0 is the readout fitted on every training site
    direct = LinearMixtureReadout().fit(Y, structure["cn_fractional"]).predict(targets)
    np.testing.assert_allclose(result["members"]["cn_fractional"][0], direct, rtol=1e-12)
    # the bootstrap draws whole snapshots
    for rows in bootstrap_rows(groups, 3, seed=1)[1:]:
        drawn = groups[rows]
        assert all(np.sum(drawn == g) % (len(X) // 16) == 0 for g in np.unique(drawn))
    with pytest.raises(ValueError, match="site_moments"):
        reconstruct_ensemble([None], targets, method="linear", structure=structure)
    with pytest.raises(ValueError, match="site_moments"):
        reconstruct_ensemble([None], targets, method="linear", site_moments=Y[:, :4], structure=structure)
    with pytest.raises(ValueError, match="groups"):
        reconstruct_ensemble([None] * 2, targets, method="linear", site_moments=Y, structure=structure, groups=groups[1:])
    with pytest.raises(ValueError, match="range_tolerance"):
        reconstruct_ensemble([None], targets, method="linear", site_moments=Y, structure=structure, range_tolerance=0.1)
