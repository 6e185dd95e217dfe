"""aiida_xesml.ml.glass against geometry known by hand: crystals with fixed bond counts and angles,
random cells without order."""

import numpy as np
import pytest

from aiida_xesml.ml.dynamics import squared_displacements
from aiida_xesml.ml.glass import bond_angles, glass_analysis, half_cell_width, max_structure_factor, pair_distribution
from aiida_xesml.ml.structures import quartz_geo2, random_network, rattle_and_strain, rutile_geo2, supercell


def _integrated_coordination(atoms, r, g, r_cut):
    """CN from g_GeO: ρ_O ∫ g(r) dV up to r_cut over the bins' shells (the textbook relation, independent of
    neighbour counting)."""
    return float(np.sum((g * _shells(r) * _density(atoms, "O"))[r < r_cut]))


def _shells(r):
    """Volumes (Å³) of the spherical shells of bins centred at r."""
    half = 0.5 * (r[1] - r[0])
    return 4.0 * np.pi / 3.0 * ((r + half) ** 3 - (r - half) ** 3)


def _density(atoms, symbol):
    return np.sum(np.asarray(atoms.get_chemical_symbols()) == symbol) / atoms.cell.volume


@pytest.mark.parametrize(("atoms", "cn"), [(supercell(rutile_geo2(), (2, 2, 2)), 6.0),
                                           (supercell(quartz_geo2(), (2, 2, 1)), 4.0)], ids=["rutile", "quartz"])
def test_ge_o_pair_distribution_integrates_to_the_coordination_number(atoms, cn):
    r, g = pair_distribution(atoms, bin_width=0.01)
    assert set(g) == {"Ge-Ge", "Ge-O", "O-O", "total"}
    assert _integrated_coordination(atoms, r, g["Ge-O"], 2.3) == pytest.approx(cn, abs=1e-9)


def test_rutile_ge_o_peaks_sit_at_its_two_bond_lengths():
    # rutile_geo2's defaults: apical sqrt(2) u a = 1.9030 Å (2 per Ge), equatorial
    # sqrt(2 (1/2 - u)^2 a^2 + c^2 / 4) = 1.8717 Å (4 per Ge)
    a, c, u = 4.3975, 2.8625, 0.306
    apical, equatorial = np.sqrt(2) * u * a, np.sqrt(2 * (0.5 - u) ** 2 * a**2 + c**2 / 4)
    atoms = supercell(rutile_geo2(), (2, 2, 2))
    r, g = pair_distribution(atoms, bin_width=0.01)
    for distance, count in ((apical, 2.0), (equatorial, 4.0)):
        window = np.abs(r - distance) < 0.006
        assert np.sum((g["Ge-O"] * _shells(r) * _density(atoms, "O"))[window]) == pytest.approx(count, abs=1e-9)


def test_random_positions_give_a_flat_pair_distribution():
    rng = np.random.default_rng(3)
    from ase import Atoms

    atoms = Atoms("Ge" * 400 + "O" * 800, positions=rng.uniform(0, 20.0, (1200, 3)), cell=np.eye(3) * 20.0, pbc=True)
    r, g = pair_distribution(atoms, bin_width=0.5)
    far = r > 3.0
    assert np.mean(g["total"][far]) == pytest.approx(1.0, abs=0.03)
    assert np.mean(g["Ge-O"][far]) == pytest.approx(1.0, abs=0.05)


def test_half_cell_width_is_half_the_smallest_face_distance():
    atoms = supercell(rutile_geo2(), (2, 2, 2))
    assert half_cell_width(atoms) == pytest.approx(2.8625)  # c = 2.8625 Å, doubled, halved
    r, _ = pair_distribution(atoms)
    assert r[-1] < 2.8625


def test_bond_angles_of_a_tetrahedron_and_an_octahedron():
    quartz = supercell(quartz_geo2(), (2, 2, 1))
    angles = bond_angles(quartz)
    assert len(angles) == 6 * 12  # 6 O-Ge-O pairs at each of 12 Ge
    assert np.mean(angles) == pytest.approx(109.47, abs=0.5)  # near-regular tetrahedra
    rutile = supercell(rutile_geo2(), (2, 2, 2))
    angles = bond_angles(rutile)
    assert len(angles) == 15 * 16
    # a centrosymmetric octahedron: 12 cis angles in pairs (θ, 180° − θ) and 3 trans angles of 180°
    assert np.mean(angles) == pytest.approx((12 * 90 + 3 * 180) / 15, abs=1e-6)
    assert np.sum(np.isclose(angles, 180.0)) == 3 * 16
    ge_o_ge = bond_angles(rutile, "O", "Ge")
    assert len(ge_o_ge) == 3 * 32  # each O bonds to 3 Ge


def test_crystals_show_bragg_peaks_and_random_cells_do_not():
    for crystal in (supercell(rutile_geo2(), (2, 2, 2)), rattle_and_strain(supercell(quartz_geo2(), (2, 2, 1)), 0.1,
                                                                          0.02, seed=1)):
        assert max_structure_factor(crystal)[0] > 0.5
    for seed in range(3):
        assert max_structure_factor(random_network(16, 3.66, seed=seed))[0] < 0.25


def test_glass_analysis_histograms_count_every_angle_and_site():
    atoms = random_network(16, 3.66, seed=0)
    scalars, arrays = glass_analysis(atoms, cutoff=2.3)
    assert arrays["o_ge_o_histogram"].sum() == len(bond_angles(atoms))
    assert arrays["cn"].sum() == pytest.approx(scalars["cn_mean"] * 16)
    assert arrays["angle_bins_deg"][[0, -1]].tolist() == [0.0, 180.0]
    assert scalars["max_structure_factor_per_atom"] == max_structure_factor(atoms)[0]


def test_squared_displacements_follow_atoms_across_the_boundary():
    cell = np.eye(3) * 5.0
    x = np.array([4.8, 4.9, 0.0, 0.1])  # moves +0.1 Å per frame and wraps at 5 Å
    positions = np.zeros((4, 2, 3))
    positions[:, 0, 0] = x
    result = squared_displacements(positions, cell)
    assert result[:, 0] == pytest.approx([0.0, 0.01, 0.04, 0.09])
    assert result[:, 1] == pytest.approx(0.0)


@pytest.mark.parametrize("bad", [None, "Ge"])
def test_non_atoms_are_refused(bad):
    with pytest.raises(ValueError, match="atoms"):
        pair_distribution(bad)


def test_max_structure_factor_sees_every_wave_vector_of_a_sheared_cell():
    """Against a brute-force search over a grid far larger than needed (a cell with γ = 150°)."""
    from ase import Atoms

    for seed in range(5):
        atoms = Atoms("Ge4O8", scaled_positions=np.random.default_rng(seed).random((12, 3)),
                      cell=[5.0, 5.0, 10.0, 90.0, 90.0, 150.0], pbc=True)
        reciprocal = 2 * np.pi * np.asarray(atoms.cell.reciprocal())
        grid = np.stack(np.meshgrid(*[np.arange(-30, 31)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
        q = grid @ reciprocal
        norms = np.linalg.norm(q, axis=1)
        q = q[(norms > 1e-9) & (norms <= 8.0)]
        s = np.abs(np.exp(1j * q @ atoms.positions.T).sum(axis=1)) ** 2 / len(atoms) ** 2
        assert max_structure_factor(atoms, q_max=8.0)[0] == pytest.approx(s.max(), rel=1e-12)
