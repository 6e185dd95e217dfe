"""GeO2 builders and structural analysis, against hand-computed references."""

import json
import math

import numpy as np
import pytest
from ase import Atoms

from aiida_xesml.ml.structures import (
    analyze,
    coordination_numbers,
    density,
    first_shell_distance,
    ge_o_distances,
    neighbour_distances,
    quartz_geo2,
    random_network,
    rattle_and_strain,
    rutile_geo2,
    supercell,
)

M_GEO2 = 72.630 + 2 * 15.999  # g/mol, standard atomic weights
AMU_A3 = 1.66053906660  # g/cm3 per amu/Å3


def _min_image_distances(atoms):
    """All pair distances in a cubic cell by the minimum image convention (side > 2 * distances)."""
    length = atoms.cell[0, 0]
    delta = atoms.positions[:, None, :] - atoms.positions[None, :, :]
    delta -= length * np.round(delta / length)
    return np.sqrt((delta**2).sum(-1))


def test_rutile_is_six_fold_with_four_short_and_two_long_bonds():
    a, c, u = 4.3975, 2.8625, 0.306
    atoms = rutile_geo2()
    assert atoms.get_chemical_formula() == "Ge2O4"
    assert coordination_numbers(atoms).tolist() == [6, 6]
    equatorial = math.sqrt(2 * ((0.5 - u) * a) ** 2 + (c / 2) ** 2)  # to O at (1/2±..., 1/2∓..., 1/2)
    apical = math.sqrt(2) * u * a  # to O at (u, u, 0)
    centre, distances = neighbour_distances(atoms)
    for ge in (0, 1):
        np.testing.assert_allclose(distances[centre == ge], [equatorial] * 4 + [apical] * 2, rtol=1e-10)
    assert 1.86 < equatorial < 1.88 and 1.89 < apical < 1.91
    assert first_shell_distance(atoms) == pytest.approx((4 * equatorial + 2 * apical) / 6, rel=1e-12)
    assert density(atoms) == pytest.approx(2 * M_GEO2 / (a * a * c) * AMU_A3, rel=1e-4)


def test_quartz_is_four_fold_near_1_74():
    a, c = 4.987, 5.652
    atoms = quartz_geo2()
    assert atoms.get_chemical_formula() == "Ge3O6"
    assert coordination_numbers(atoms).tolist() == [4, 4, 4]
    distances = ge_o_distances(atoms)
    assert len(distances) == 12 and np.all(np.abs(distances - 1.74) < 0.01)
    volume = a * a * c * math.sin(math.radians(120))
    assert density(atoms) == pytest.approx(3 * M_GEO2 / volume * AMU_A3, rel=1e-4)
    assert 4.2 < density(atoms) < 4.35 and 6.2 < density(rutile_geo2()) < 6.35
    # O is 2-fold (bridging) in quartz
    assert coordination_numbers(atoms, center="O", neighbour="Ge").tolist() == [2] * 6


def test_supercell_keeps_density_and_coordination():
    atoms = quartz_geo2()
    for repeats in (2, (2, 2, 2)):
        big = supercell(atoms, repeats)
        assert len(big) == 8 * len(atoms)
        np.testing.assert_array_equal(big.positions[: len(atoms)], atoms.positions)
        assert density(big) == pytest.approx(density(atoms), rel=1e-12)
        assert coordination_numbers(big).tolist() == [4] * 24
    assert len(supercell(atoms, (1, 2, 3))) == 6 * len(atoms)
    for bad in (0, (1, 2), 1.5, (1, -1, 1)):
        with pytest.raises(ValueError, match="repeats"):
            supercell(atoms, bad)


def test_rattle_and_strain_bounds_and_reproducibility():
    atoms = supercell(rutile_geo2(), 3)
    moved = rattle_and_strain(atoms, rattle=0.05, strain=0.02, seed=4)
    deformation = np.linalg.solve(np.array(atoms.cell), np.array(moved.cell))  # cell @ F = new cell
    strain = deformation - np.eye(3)
    np.testing.assert_allclose(strain, strain.T, atol=1e-12)
    assert 0 < np.abs(strain).max() <= 0.02
    displacement = moved.positions - atoms.get_scaled_positions() @ np.array(moved.cell)
    assert np.std(displacement) == pytest.approx(0.05, rel=0.15)  # 486 Gaussian samples
    assert abs(np.mean(displacement)) < 0.01
    np.testing.assert_array_equal(rattle_and_strain(atoms, seed=4).positions, moved.positions)
    assert not np.allclose(rattle_and_strain(atoms, seed=5).positions, moved.positions)
    still = rattle_and_strain(atoms, rattle=0.0, strain=0.0)
    np.testing.assert_allclose(still.positions, atoms.positions, atol=1e-12)
    with pytest.raises(ValueError, match="rattle"):
        rattle_and_strain(atoms, rattle=-0.1)
    with pytest.raises(ValueError, match="strain"):
        rattle_and_strain(atoms, strain=float("nan"))


def test_random_network_density_and_minimum_distances():
    atoms = random_network(12, density=3.6, seed=1)
    assert atoms.get_chemical_formula() == "Ge12O24" and all(atoms.pbc)
    assert np.allclose(atoms.cell.array, np.eye(3) * atoms.cell[0, 0])
    mass = 12 * M_GEO2
    assert atoms.cell.volume == pytest.approx(mass * AMU_A3 / 3.6, rel=1e-4)
    assert density(atoms) == pytest.approx(3.6, rel=1e-12)
    distances = _min_image_distances(atoms)
    ge = atoms.numbers == 32
    off = ~np.eye(len(atoms), dtype=bool)
    assert distances[np.ix_(ge, ge)][off[np.ix_(ge, ge)]].min() >= 2.8
    assert distances[np.ix_(~ge, ~ge)][off[np.ix_(~ge, ~ge)]].min() >= 2.4
    assert distances[np.ix_(ge, ~ge)].min() >= 1.6
    assert atoms.info["min_distances_A"] == {"Ge-Ge": 2.8, "Ge-O": 1.6, "O-O": 2.4}
    np.testing.assert_array_equal(random_network(12, seed=1).positions, atoms.positions)
    assert not np.allclose(random_network(12, seed=2).positions, atoms.positions)


def test_random_network_custom_distances_relaxation_and_failure():
    atoms = random_network(4, min_distances={("O", "Ge"): 1.9}, seed=0)
    assert _min_image_distances(atoms)[np.ix_(atoms.numbers == 32, atoms.numbers == 8)].min() >= 1.9
    with pytest.warns(RuntimeWarning, match="relaxing"):
        dense = random_network(12, density=3.6, min_distances={("O", "O"): 2.9}, seed=0)
    used = dense.info["min_distances_A"]
    assert used["O-O"] < 2.9 and used["Ge-O"] < 1.6  # all scaled together
    distances = _min_image_distances(dense)
    o = dense.numbers == 8
    assert distances[np.ix_(o, o)][~np.eye(o.sum(), dtype=bool)].min() >= used["O-O"]
    with pytest.raises(ValueError, match="density"):
        random_network(4, density=40.0)
    with pytest.raises(ValueError, match="n_ge"):
        random_network(0)
    with pytest.raises(ValueError, match="min_distances"):
        random_network(2, min_distances={("Ge", "Si"): 2.0})


def test_analyze_returns_plain_json_values():
    summary = analyze(supercell(rutile_geo2(), (1, 1, 2)))
    assert json.loads(json.dumps(summary)) == summary
    assert summary["n_atoms"] == 12 and summary["n_ge"] == 4
    assert summary["cn_mean"] == 6.0 and summary["cn_histogram"] == {"6": 4}
    assert summary["volume_A3"] == pytest.approx(4.3975**2 * 2.8625 * 2)
    assert summary["mean_ge_o_A"] == pytest.approx(first_shell_distance(rutile_geo2()))
    cluster_summary = analyze(rattle_and_strain(quartz_geo2(), rattle=0.3, seed=2), cutoff=1.8)
    assert sum(cluster_summary["cn_histogram"].values()) == 3
    assert cluster_summary["cn_mean"] == pytest.approx(
        sum(int(k) * v for k, v in cluster_summary["cn_histogram"].items()) / 3)


def test_analysis_errors():
    with pytest.raises(ValueError, match="atoms"):
        density("GeO2")
    with pytest.raises(ValueError, match="periodic"):
        density(Atoms("GeO2", positions=[[0, 0, 0], [1.7, 0, 0], [-1.7, 0, 0]]))
    with pytest.raises(ValueError, match="cutoff"):
        coordination_numbers(rutile_geo2(), cutoff=0)
    with pytest.raises(ValueError, match="center"):
        coordination_numbers(rutile_geo2(), center="Si")
    with pytest.raises(ValueError, match="cutoff"):
        first_shell_distance(rutile_geo2(), cutoff=1.0)
