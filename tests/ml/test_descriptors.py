"""Local Coulomb matrix: brute-force agreement, ordering rules, invariances, padding and errors."""

import functools
import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from ase import Atoms
from ase.data import atomic_numbers
from ase.neighborlist import neighbor_list
from ase.spacegroup import crystal
from sklearn.base import clone

from aiida_xesml.ml.descriptors import (
    LocalCoulombMatrix,
    check_descriptor_settings,
    coulomb_features,
    default_species_counts,
    feature_blocks,
    feature_names,
    local_coulomb_matrices,
    local_coulomb_matrix,
    neighbour_shells,
    slot_atomic_numbers,
)
from aiida_xesml.ml.structures import random_network, supercell

TOL = 1e-8  # the documented tie tolerance, Å


# --- an independent brute-force reference: explicit loops, naive sort ------------------------------


def _brute_force_shell(atoms, center, n_atoms, reach=4):
    """(Z, atom index, offset, cartesian position) of the centre and its n_atoms-1 nearest images."""
    cell = np.array(atoms.cell)
    ranges = [range(-reach, reach + 1) if periodic else range(1) for periodic in atoms.pbc]
    origin = atoms.positions[center]
    entries = []
    for j in range(len(atoms)):
        for shift in itertools.product(*ranges):
            if j == center and shift == (0, 0, 0):
                continue
            position = atoms.positions[j] + np.array(shift) @ cell
            distance = math.sqrt(sum((position[k] - origin[k]) ** 2 for k in range(3)))
            entries.append((distance, int(atoms.numbers[j]), j, shift, position))

    def compare(a, b):
        if abs(a[0] - b[0]) > TOL:
            return -1 if a[0] < b[0] else 1
        key_a, key_b = (a[1], a[2], a[3]), (b[1], b[2], b[3])
        return (key_a > key_b) - (key_a < key_b)

    entries.sort(key=functools.cmp_to_key(compare))
    chosen = entries[: n_atoms - 1]
    if any(atoms.pbc):
        # the enumeration must provably hold everything up to the last chosen distance
        heights = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)
        assert chosen[-1][0] < (reach - 1) * heights[np.array(atoms.pbc)].min()
    return [(int(atoms.numbers[center]), center, (0, 0, 0), origin)] + [e[1:] for e in chosen]


def _brute_force_features(atoms, center, n_atoms):
    shell = _brute_force_shell(atoms, center, n_atoms)
    matrix = np.zeros((n_atoms, n_atoms))
    for a, (z_a, _, _, r_a) in enumerate(shell):
        for b, (z_b, _, _, r_b) in enumerate(shell):
            if a == b:
                matrix[a, b] = 0.5 * z_a**2.4
            else:
                matrix[a, b] = z_a * z_b / math.dist(r_a, r_b)
    return np.array([matrix[i, j] for i in range(n_atoms) for j in range(i, n_atoms)]), shell


def _triclinic(seed=1):
    """A triclinic GeO2-like cell with random (well separated) positions: no accidental ties."""
    cell = np.array([[5.1, 0.0, 0.0], [1.3, 4.7, 0.0], [0.9, -1.1, 5.3]])
    rng = np.random.default_rng(seed)
    fractional = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.1], [0.1, 0.6, 0.6],
                           [0.3, 0.1, 0.2], [0.7, 0.3, 0.4], [0.25, 0.4, 0.8],
                           [0.6, 0.8, 0.9], [0.8, 0.05, 0.7], [0.45, 0.9, 0.35]])
    fractional = fractional + rng.uniform(-0.03, 0.03, fractional.shape)
    return Atoms("Ge3O6", scaled_positions=fractional, cell=cell, pbc=True)


def _rutile():
    return crystal(["Ge", "O"], [(0, 0, 0), (0.306, 0.306, 0)], spacegroup=136,
                   cellpar=[4.3975, 4.3975, 2.8625, 90, 90, 90])


def _quartz():
    return crystal(["Ge", "O"], [(0.4513, 0, 2 / 3), (0.3969, 0.3021, 0.7576)], spacegroup=154,
                   cellpar=[4.987, 4.987, 5.652, 90, 90, 120])


def _rattled(atoms, seed=3, amount=0.08):
    rng = np.random.default_rng(seed)
    result = atoms.copy()
    result.set_cell(np.array(atoms.cell) @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))), scale_atoms=True)
    result.positions += rng.normal(0.0, amount, (len(atoms), 3))
    return result


def _check_against_brute_force(atoms, n_atoms=20, centers=None):
    centers = list(np.flatnonzero(atoms.numbers == 32)) if centers is None else centers
    features = local_coulomb_matrix(atoms, centers=centers, n_atoms=n_atoms)
    shells = neighbour_shells(atoms, centers=centers, n_atoms=n_atoms)
    assert features.shape == (len(centers), n_atoms * (n_atoms + 1) // 2)
    for row, center in enumerate(centers):
        expected, shell = _brute_force_features(atoms, center, n_atoms)
        np.testing.assert_allclose(features[row], expected, rtol=1e-10, atol=1e-12)
        assert shells.indices[row].tolist() == [s[1] for s in shell]
        assert [tuple(o) for o in shells.offsets[row].tolist()] == [s[2] for s in shell]
    return features


# --- agreement with the brute force ------------------------------------------------------------------


def test_triclinic_cell_matches_brute_force():
    _check_against_brute_force(_triclinic())


def test_small_cell_with_repeated_images_matches_brute_force():
    # heights ~2.4-3 Å: 19 neighbours need several images of every atom, the centre's own included
    atoms = Atoms("GeO2", scaled_positions=[[0.1, 0.2, 0.3], [0.6, 0.55, 0.7], [0.35, 0.9, 0.05]],
                  cell=[[2.9, 0.0, 0.0], [0.7, 2.6, 0.0], [-0.4, 0.5, 2.8]], pbc=True)
    _check_against_brute_force(atoms)
    shells = neighbour_shells(atoms)
    own_images = (shells.indices[0] == 0) & shells.offsets[0].any(axis=1)
    assert own_images.sum() >= 2
    for j in range(3):  # every atom shows up as several images
        assert (shells.indices[0] == j).sum() >= 3


@pytest.mark.parametrize("builder", [_rutile, _quartz])
def test_symmetric_crystals_follow_the_tie_rules(builder):
    # exact ties (equivalent O at the same distance) are ordered by Z, index, offset, like the brute force
    features = _check_against_brute_force(builder())
    # Equivalent Ge sites share distances and species (row 0, diagonal); the off-diagonal entries
    # may differ, since the index tie rule can order equivalent O differently around each site.
    n = 20
    rows, cols = np.triu_indices(n)
    same = (rows == 0) | (rows == cols)
    np.testing.assert_allclose(features[:, same], np.broadcast_to(features[0, same], features[:, same].shape),
                               rtol=1e-12)


def test_ties_are_broken_by_z_then_index_then_offset():
    # Ge(1) and O(2), O(3) all exactly 2 Å from the Ge centre: O first (lower Z) despite higher index
    atoms = Atoms("Ge2O2", positions=[[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 2]], cell=np.diag([4.0, 4.0, 4.0]),
                  pbc=True)
    shells = neighbour_shells(atoms, centers=[0], n_atoms=9)
    assert shells.numbers[0, :7].tolist() == [32, 8, 8, 8, 8, 32, 32]
    assert shells.indices[0, :7].tolist() == [0, 2, 2, 3, 3, 1, 1]
    assert shells.offsets[0, 1:3].tolist() == [[0, -1, 0], [0, 0, 0]]  # same atom: offsets in order
    _check_against_brute_force(atoms, n_atoms=9)


def test_mixed_pbc_slab_matches_brute_force():
    atoms = _triclinic(seed=2)
    atoms.pbc = (True, False, True)
    _check_against_brute_force(atoms, n_atoms=12)


def test_isolated_centre_enlarges_the_cutoff():
    # a Ge far from a dense group: the density-based first cutoff is too short for it
    rng = np.random.default_rng(5)
    group = rng.uniform(0, 4.0, (15, 3)) + 1.0
    atoms = Atoms("Ge" + "O" * 15, positions=np.vstack([[14.0, 14.0, 14.0], group]),
                  cell=np.diag([18.0, 17.0, 16.5]), pbc=True)
    assert local_coulomb_matrix(atoms, n_atoms=10).shape == (1, 55)
    _check_against_brute_force(atoms, n_atoms=10)


def test_explicit_centres_in_any_order():
    atoms = _triclinic()
    features = _check_against_brute_force(atoms, n_atoms=6, centers=[4, 0, 4])
    assert np.array_equal(features[0], features[2])
    # an O centre: diagonal 0.5 * 8**2.4 first
    assert features[0, 0] == pytest.approx(0.5 * 8**2.4)


def test_cluster_is_padded_with_zeros():
    atoms = Atoms("GeO3", positions=[[0, 0, 0], [1.8, 0, 0], [0, 1.7, 0.2], [-1.1, -0.9, 1.2]])
    n_atoms = 6
    features = local_coulomb_matrix(atoms, n_atoms=n_atoms)
    matrix = np.zeros((n_atoms, n_atoms))
    matrix[np.triu_indices(n_atoms)] = features[0]
    assert np.all(matrix[4:, :] == 0) and np.all(matrix[:, 4:] == 0)
    expected, _ = _brute_force_features(atoms, 0, 4)
    np.testing.assert_allclose(matrix[:4, :4][np.triu_indices(4)], expected, rtol=1e-12)
    shells = neighbour_shells(atoms, n_atoms=n_atoms)
    assert shells.indices[0].tolist() == [0, 2, 1, 3, -1, -1]  # 1.71 < 1.8 < 1.87 Å
    assert np.all(np.isinf(shells.distances[0, 4:]))
    lone = local_coulomb_matrix(Atoms("Ge"), n_atoms=3)
    np.testing.assert_array_equal(lone, [[0.5 * 32**2.4, 0, 0, 0, 0, 0]])


# --- invariances -------------------------------------------------------------------------------------


def test_translation_invariance():
    atoms = _rattled(_triclinic())
    moved = atoms.copy()
    moved.translate([3.3, -7.1, 0.77])
    moved.wrap()  # wrapping changes every image offset, never the descriptor of a tie-free cell
    np.testing.assert_allclose(local_coulomb_matrix(moved), local_coulomb_matrix(atoms), rtol=1e-10)
    quartz = _quartz()
    shifted = quartz.copy()
    shifted.translate([0.3, 0.2, -0.4])  # no wrap: same offsets, ties kept
    np.testing.assert_allclose(local_coulomb_matrix(shifted), local_coulomb_matrix(quartz), rtol=1e-10)


@pytest.mark.parametrize("builder", [_quartz, lambda: _rattled(_triclinic())])
def test_rotation_invariance(builder):
    atoms = builder()
    rotated = atoms.copy()
    rotated.rotate(37.0, (1.0, -2.0, 0.5), rotate_cell=True)
    rotated.rotate(-71.0, "z", rotate_cell=True)
    assert not np.allclose(rotated.positions, atoms.positions)
    np.testing.assert_allclose(local_coulomb_matrix(rotated), local_coulomb_matrix(atoms), rtol=1e-10)


def test_permutation_invariance():
    atoms = _rattled(_quartz(), seed=8)
    permutation = np.random.default_rng(0).permutation(len(atoms))
    permuted = atoms[permutation]
    new_index = np.argsort(permutation)  # old atom i is new atom new_index[i]
    centers = [0, 1, 2, 5]
    np.testing.assert_allclose(local_coulomb_matrix(permuted, centers=new_index[centers]),
                               local_coulomb_matrix(atoms, centers=centers), rtol=1e-10)


def test_site_in_cell_equals_site_in_supercell():
    cell = _rattled(_rutile(), seed=11)
    big = cell.repeat((2, 2, 2))  # ASE puts the original cell's atoms first
    for n_atoms in (20, 30):
        np.testing.assert_allclose(local_coulomb_matrix(big, centers=range(len(cell)), n_atoms=n_atoms),
                                   local_coulomb_matrix(cell, centers=range(len(cell)), n_atoms=n_atoms),
                                   rtol=1e-10)


# --- the transformer ---------------------------------------------------------------------------------


def test_transformer_stacks_sites_of_all_structures():
    structures = [_rutile(), _quartz(), _triclinic()]
    transformer = LocalCoulombMatrix(n_atoms=8)
    assert transformer.fit(structures) is transformer
    features = transformer.transform(structures)
    assert features.shape == (2 + 3 + 3, 36) and transformer.n_features_out_ == 36
    expected = np.vstack([local_coulomb_matrix(s, n_atoms=8) for s in structures])
    np.testing.assert_array_equal(features, expected)
    names = transformer.get_feature_names_out()
    assert list(names[:3]) == ["M_0_0", "M_0_1", "M_0_2"] and names[8] == "M_1_1" and len(names) == 36
    assert clone(transformer).get_params() == {"n_atoms": 8, "species": "Ge", "verbose": False,
                                               "ordering": "distance", "species_counts": None}
    assert LocalCoulombMatrix(species="O").fit_transform(structures[:1]).shape == (4, 210)


def test_batched_matrices_equal_per_structure_ones():
    # mixed sizes and pbc: several vectorized groups, rows still in input order
    slab = _triclinic(seed=4)
    slab.pbc = (True, True, False)
    structures = [_rattled(_rutile(), seed=1), _triclinic(), _rattled(_rutile(), seed=2), slab,
                  _rattled(_triclinic(), seed=5), Atoms("GeO2", positions=[[0, 0, 0], [1.7, 0, 0], [0, 1.8, 0]])]
    stacked = local_coulomb_matrices(structures, n_atoms=12)
    expected = np.vstack([local_coulomb_matrix(s, n_atoms=12) for s in structures])
    np.testing.assert_allclose(stacked, expected, rtol=1e-13)
    with pytest.raises(ValueError, match="structure 1 of `structures`.*species"):
        local_coulomb_matrices([_rutile(), Atoms("O2", positions=[[0, 0, 0], [1.2, 0, 0]])])


def test_coulomb_features_of_a_hand_made_cluster():
    vectors = np.array([[[0.0, 0, 0], [0, 0, 2.0], [0, 3.0, 0], [0, 0, 0]]])
    numbers = np.array([[32, 8, 14, 0]])
    expected = [0.5 * 32**2.4, 32 * 8 / 2, 32 * 14 / 3, 0, 0.5 * 8**2.4, 8 * 14 / math.sqrt(13), 0,
                0.5 * 14**2.4, 0, 0]
    np.testing.assert_allclose(coulomb_features(numbers, vectors)[0], expected, rtol=1e-14)
    with pytest.raises(ValueError, match="closer"):
        coulomb_features(numbers, np.zeros((1, 4, 3)))


def test_transformer_errors():
    with pytest.raises(ValueError, match="ase.Atoms"):
        LocalCoulombMatrix().fit([_rutile(), np.zeros((3, 3))])
    with pytest.raises(ValueError, match="n_atoms"):
        LocalCoulombMatrix(n_atoms=1).fit([_rutile()])
    with pytest.raises(ValueError, match="species"):
        LocalCoulombMatrix(species="Xx").fit([_rutile()])
    with pytest.raises(ValueError, match="structure 1 of `X`.*species"):
        LocalCoulombMatrix(species="O").fit_transform([_rutile(), Atoms("Ge2", positions=[[0, 0, 0], [2, 0, 0]])])


# --- errors ------------------------------------------------------------------------------------------


def test_errors_name_the_argument():
    rutile = _rutile()
    with pytest.raises(ValueError, match="`species` 'Si'"):
        local_coulomb_matrix(rutile, species="Si")
    with pytest.raises(ValueError, match="n_atoms"):
        local_coulomb_matrix(rutile, n_atoms=1)
    with pytest.raises(ValueError, match="centers"):
        local_coulomb_matrix(rutile, centers=[0, 6])
    with pytest.raises(ValueError, match="centers"):
        local_coulomb_matrix(rutile, centers=[-1])
    with pytest.raises(ValueError, match="atoms"):
        local_coulomb_matrix(np.zeros((3, 3)))
    overlapping = rutile.copy()
    overlapping.positions[3] = overlapping.positions[2] + [0, 0, 1e-9]
    with pytest.raises(ValueError, match="overlapping"):
        local_coulomb_matrix(overlapping)
    on_centre = rutile.copy()
    on_centre.positions[2] = on_centre.positions[0] + [3e-7, 0, 0]
    with pytest.raises(ValueError, match="overlapping.*centre 0"):
        local_coulomb_matrix(on_centre)
    singular = Atoms("GeO", positions=[[0, 0, 0], [1.7, 0, 0]], pbc=True)  # no cell
    with pytest.raises(ValueError, match="cell"):
        local_coulomb_matrix(singular)


# --- the species ordering ------------------------------------------------------------------------------


def _brute_force_species_shell(atoms, center, species_counts, reach=4):
    """(Z, atom index, offset, position) of the centre, then per (symbol, count) the count nearest images of
    that species (explicit image loop; ties by index, then offset); None entries are padding."""
    cell = np.array(atoms.cell)
    ranges = [range(-reach, reach + 1) if periodic else range(1) for periodic in atoms.pbc]
    origin = atoms.positions[center]
    shell = [(int(atoms.numbers[center]), center, (0, 0, 0), origin)]
    for symbol, count in species_counts:
        z = atomic_numbers[symbol]
        entries = []
        for j in range(len(atoms)):
            if atoms.numbers[j] != z:
                continue
            for shift in itertools.product(*ranges):
                if j == center and shift == (0, 0, 0):
                    continue
                position = atoms.positions[j] + np.array(shift) @ cell
                entries.append((math.dist(position, origin), j, shift, position))

        def compare(a, b):
            if abs(a[0] - b[0]) > TOL:
                return -1 if a[0] < b[0] else 1
            return ((a[1], a[2]) > (b[1], b[2])) - ((a[1], a[2]) < (b[1], b[2]))

        entries.sort(key=functools.cmp_to_key(compare))
        chosen = entries[:count]
        if any(atoms.pbc):
            heights = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)
            assert chosen[-1][0] < (reach - 1) * heights[np.array(atoms.pbc)].min()
        shell += [(z, e[1], e[2], e[3]) for e in chosen] + [None] * (count - len(chosen))
    return shell


def _brute_force_species_features(atoms, center, species_counts):
    shell = _brute_force_species_shell(atoms, center, species_counts)
    n = len(shell)
    matrix = np.zeros((n, n))
    for a, entry_a in enumerate(shell):
        for b, entry_b in enumerate(shell):
            if entry_a is None or entry_b is None:
                continue
            if a == b:
                matrix[a, b] = 0.5 * entry_a[0] ** 2.4
            else:
                matrix[a, b] = entry_a[0] * entry_b[0] / math.dist(entry_a[3], entry_b[3])
    return matrix[np.triu_indices(n)], shell


def _check_species_against_brute_force(atoms, species_counts=(("O", 12), ("Ge", 7)), centers=None):
    pairs = list(species_counts.items()) if isinstance(species_counts, dict) else list(species_counts)
    n_atoms = 1 + sum(count for _, count in pairs)
    centers = list(np.flatnonzero(atoms.numbers == 32)) if centers is None else centers
    features = local_coulomb_matrix(atoms, centers=centers, n_atoms=n_atoms, ordering="species",
                                    species_counts=species_counts)
    shells = neighbour_shells(atoms, centers=centers, n_atoms=n_atoms, ordering="species",
                              species_counts=species_counts)
    assert features.shape == (len(centers), n_atoms * (n_atoms + 1) // 2)
    for row, center in enumerate(centers):
        expected, shell = _brute_force_species_features(atoms, center, pairs)
        np.testing.assert_allclose(features[row], expected, rtol=1e-10, atol=1e-12)
        assert shells.indices[row].tolist() == [-1 if s is None else s[1] for s in shell]
        assert [tuple(o) for o in shells.offsets[row].tolist()] == [(0, 0, 0) if s is None else s[2] for s in shell]
    return features, shells


@pytest.mark.parametrize("builder", [_triclinic, _rutile, _quartz, lambda: _rattled(_quartz(), seed=4)])
def test_species_ordering_matches_brute_force(builder):
    _check_species_against_brute_force(builder())


def test_species_ordering_in_a_small_cell_counts_the_centres_own_images():
    atoms = Atoms("GeO2", scaled_positions=[[0.1, 0.2, 0.3], [0.6, 0.55, 0.7], [0.35, 0.9, 0.05]],
                  cell=[[2.9, 0.0, 0.0], [0.7, 2.6, 0.0], [-0.4, 0.5, 2.8]], pbc=True)
    _, shells = _check_species_against_brute_force(atoms)
    # the only Ge is the centre: all 7 Ge slots are its own images
    assert np.all(shells.indices[0, 13:] == 0) and np.all(shells.offsets[0, 13:].any(axis=1))


def test_species_ordering_with_other_counts_orders_and_centres():
    atoms = _rattled(_triclinic(seed=6), seed=2)
    # Ge slots first, as a dict; an O centre (its own images count among the O)
    _check_species_against_brute_force(atoms, species_counts={"Ge": 4, "O": 5}, centers=[3, 0, 7])
    _check_species_against_brute_force(atoms, species_counts=[["O", 3]])
    slab = _triclinic(seed=2)
    slab.pbc = (True, False, True)
    _check_species_against_brute_force(slab, species_counts=(("O", 8), ("Ge", 5)))


def test_species_ordering_pads_a_cluster_per_species():
    atoms = Atoms("GeO3Si", positions=[[0, 0, 0], [1.8, 0, 0], [0, 1.7, 0.2], [-1.1, -0.9, 1.2], [0, 0, -2.0]])
    counts = (("O", 5), ("Ge", 2))
    features, shells = _check_species_against_brute_force(atoms, species_counts=counts)
    assert shells.numbers[0].tolist() == [32, 8, 8, 8, 0, 0, 0, 0]  # the Si is not a slot species
    assert shells.indices[0].tolist() == [0, 2, 1, 3, -1, -1, -1, -1]
    matrix = np.zeros((8, 8))
    matrix[np.triu_indices(8)] = features[0]
    assert np.all(matrix[4:] == 0) and np.all(matrix[:, 4:] == 0)


def test_species_slots_are_fixed_and_sorted_within_a_species():
    structures = [random_network(16, density=3.6, seed=seed) for seed in range(4)]
    z_slot = slot_atomic_numbers(20)
    assert z_slot.tolist() == [32] + [8] * 12 + [32] * 7
    for atoms in structures:
        shells = neighbour_shells(atoms, ordering="species")
        np.testing.assert_array_equal(shells.numbers, np.broadcast_to(z_slot, shells.numbers.shape))
        assert np.all(np.diff(shells.distances[:, 1:13], axis=1) >= 0)
        assert np.all(np.diff(shells.distances[:, 13:], axis=1) >= 0)
    assert slot_atomic_numbers(20, ordering="distance") is None
    assert slot_atomic_numbers(9, species="O", species_counts={"Ge": 3, "O": 5}).tolist() == [8, 32, 32, 32] + [8] * 5


def test_row_zero_gives_back_the_true_o_distances_sorted():
    atoms = _rattled(supercell(_quartz(), (2, 2, 1)), seed=9)
    features = local_coulomb_matrix(atoms, ordering="species")
    z_slot = slot_atomic_numbers(20)
    readout = z_slot[0] * z_slot[1:] / features[:, 1:20]  # r_0j = Z_0 Z_j / M_0j
    # independently: ASE's neighbour list, every Ge-O and Ge-Ge image distance within 7 Å
    i, j, d = neighbor_list("ijd", atoms, 7.0)
    for row, center in enumerate(np.flatnonzero(atoms.numbers == 32)):
        mine = i == center
        o = np.sort(d[mine & (atoms.numbers[j] == 8)])[:12]
        ge = np.sort(d[mine & (atoms.numbers[j] == 32)])[:7]
        np.testing.assert_allclose(readout[row, :12], o, rtol=1e-12)
        np.testing.assert_allclose(readout[row, 12:], ge, rtol=1e-12)


def test_species_ordering_invariances_without_ties():
    atoms = _rattled(_triclinic(), seed=12)
    reference = local_coulomb_matrix(atoms, ordering="species")
    moved = atoms.copy()
    moved.translate([3.3, -7.1, 0.77])
    moved.wrap()
    np.testing.assert_allclose(local_coulomb_matrix(moved, ordering="species"), reference, rtol=1e-10)
    permutation = np.random.default_rng(1).permutation(len(atoms))
    permuted = atoms[permutation]
    new_index = np.argsort(permutation)
    centers = np.flatnonzero(atoms.numbers == 32)
    np.testing.assert_allclose(local_coulomb_matrix(permuted, centers=new_index[centers], ordering="species"),
                               reference, rtol=1e-10)
    big = atoms.repeat((2, 1, 3))  # the original cell's atoms first
    np.testing.assert_allclose(local_coulomb_matrix(big, centers=centers, ordering="species"), reference,
                               rtol=1e-10)
    rotated = atoms.copy()
    rotated.rotate(41.0, (1.0, 0.3, -0.5), rotate_cell=True)
    np.testing.assert_allclose(local_coulomb_matrix(rotated, ordering="species"), reference, rtol=1e-10)


def test_batched_species_matrices_equal_per_structure_ones():
    slab = _triclinic(seed=4)
    slab.pbc = (True, True, False)
    structures = [_rattled(_rutile(), seed=1), _triclinic(), slab, _rattled(_triclinic(), seed=5),
                  Atoms("GeO2", positions=[[0, 0, 0], [1.7, 0, 0], [0, 1.8, 0]])]
    counts = (("O", 7), ("Ge", 4))
    stacked = local_coulomb_matrices(structures, n_atoms=12, ordering="species", species_counts=counts)
    expected = np.vstack([local_coulomb_matrix(s, n_atoms=12, ordering="species", species_counts=counts)
                          for s in structures])
    np.testing.assert_allclose(stacked, expected, rtol=1e-13)


# --- defaults and settings -------------------------------------------------------------------------------


def test_default_species_counts():
    assert default_species_counts(20) == (("O", 12), ("Ge", 7))
    assert default_species_counts(10) == (("O", 6), ("Ge", 3))
    for n_atoms in range(4, 60):
        (_, n_o), (_, n_ge) = default_species_counts(n_atoms)
        assert n_o == math.ceil(Fraction(3, 5) * (n_atoms - 1)) and n_o + n_ge == n_atoms - 1
    assert default_species_counts(2) == (("O", 1),) and default_species_counts(3) == (("O", 2),)
    atoms = _rattled(_quartz())
    np.testing.assert_array_equal(local_coulomb_matrix(atoms, n_atoms=10, ordering="species"),
                                  local_coulomb_matrix(atoms, n_atoms=10, ordering="species",
                                                       species_counts=[("O", 6), ("Ge", 3)]))


def test_check_descriptor_settings_completes_and_validates():
    assert check_descriptor_settings({}) == {"n_atoms": 20, "species": "Ge", "ordering": "species",
                                             "species_counts": [["O", 12], ["Ge", 7]]}
    assert check_descriptor_settings(None) == check_descriptor_settings({"ordering": None})
    assert check_descriptor_settings({"ordering": "distance", "n_atoms": 8}) == {
        "n_atoms": 8, "species": "Ge", "ordering": "distance", "species_counts": None}
    settings = check_descriptor_settings({"n_atoms": 10, "species_counts": {"Ge": 4, "O": 5}})
    assert settings["species_counts"] == [["Ge", 4], ["O", 5]]
    assert json.loads(json.dumps(settings)) == settings  # storable as it is
    atoms = _rattled(_quartz())
    np.testing.assert_array_equal(local_coulomb_matrix(atoms, **settings),
                                  local_coulomb_matrix(atoms, n_atoms=10, ordering="species",
                                                       species_counts=(("Ge", 4), ("O", 5))))
    bad = [({"n_atom": 20}, "n_atom"), ({"n_atoms": 1}, r"parameters\['n_atoms'\]"),
           ({"n_atoms": "20"}, r"parameters\['n_atoms'\]"), ({"species": "Qq"}, r"parameters\['species'\]"),
           ({"ordering": "mixed"}, r"parameters\['ordering'\]"),
           ({"ordering": "distance", "species_counts": [["O", 19]]}, r"parameters\['species_counts'\]"),
           ({"species_counts": [["O", 12], ["Ge", 6]]}, r"parameters\['species_counts'\].*sum to 18"),
           ([("n_atoms", 20)], "parameters")]
    for settings, message in bad:
        with pytest.raises(ValueError, match=message):
            check_descriptor_settings(settings, name="parameters")


def test_feature_blocks():
    names = feature_names(20)
    blocks = feature_blocks(20, "species")
    assert set(blocks) == {"full", "row0", "center_o"}
    np.testing.assert_array_equal(blocks["full"], np.arange(210))
    assert list(names[blocks["row0"]]) == [f"M_0_{j}" for j in range(1, 20)]
    slots = [0] + list(range(1, 13))  # the centre and the 12 O slots
    assert list(names[blocks["center_o"]]) == [f"M_{i}_{j}" for i in slots for j in slots if i <= j]
    assert set(feature_blocks(20, "distance")) == {"full", "row0"}
    ge_first = feature_blocks(6, "species", [("Ge", 3), ("O", 2)])
    assert list(feature_names(6)[ge_first["center_o"]]) == ["M_0_0", "M_0_4", "M_0_5", "M_4_4", "M_4_5", "M_5_5"]
    assert "center_o" not in feature_blocks(5, "species", {"Ge": 4})


# --- the distance ordering is unchanged ------------------------------------------------------------------


def test_distance_ordering_is_the_default_and_matches_brute_force():
    structures = [random_network(4, density=3.6, seed=seed) for seed in range(2)]
    for atoms in structures:
        default = local_coulomb_matrix(atoms)
        np.testing.assert_array_equal(local_coulomb_matrix(atoms, ordering="distance", species_counts=None), default)
        np.testing.assert_array_equal(_check_against_brute_force(atoms), default)
    np.testing.assert_array_equal(local_coulomb_matrices(structures, ordering="distance"),
                                  local_coulomb_matrices(structures))


# --- errors of the new arguments --------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"ordering": "Species"}, "`ordering` must be one of"),
    ({"ordering": None}, "`ordering`"),
    ({"species_counts": [("O", 19)]}, "`species_counts` applies to the species ordering only"),
    ({"ordering": "species", "species_counts": [("O", 12), ("Ge", 6)]}, "`species_counts` counts sum to 18"),
    ({"ordering": "species", "species_counts": [("Oxygen", 12), ("Ge", 7)]}, "`species_counts` has 'Oxygen'"),
    ({"ordering": "species", "species_counts": [("O", 12), ("O", 7)]}, "`species_counts` names 'O' twice"),
    ({"ordering": "species", "species_counts": [("O", 19), ("Ge", 0)]}, "`species_counts` count of 'Ge'"),
    ({"ordering": "species", "species_counts": [("O", 12.0), ("Ge", 7)]}, "`species_counts` count of 'O'"),
    ({"ordering": "species", "species_counts": [("O", True), ("Ge", 18)]}, "`species_counts` count of 'O'"),
    ({"ordering": "species", "species_counts": [("O", 12, 1), ("Ge", 7)]}, "`species_counts` must hold"),
    ({"ordering": "species", "species_counts": "O12Ge7"}, "`species_counts` must be a sequence"),
    ({"ordering": "species", "species_counts": 19}, "`species_counts` must be a sequence"),
    ({"ordering": "species", "species_counts": []}, "`species_counts` is empty"),
])
def test_bad_ordering_arguments_name_the_argument(kwargs, message):
    rutile = _rutile()
    with pytest.raises(ValueError, match=message):
        local_coulomb_matrix(rutile, **kwargs)
    with pytest.raises(ValueError, match=message):
        local_coulomb_matrices([rutile], **kwargs)
    with pytest.raises(ValueError, match=message):
        neighbour_shells(rutile, **kwargs)
    with pytest.raises(ValueError, match=message):
        LocalCoulombMatrix(**kwargs).fit([rutile])
    with pytest.raises(ValueError, match=message):
        feature_blocks(20, kwargs.get("ordering", "distance"), kwargs.get("species_counts"))
    with pytest.raises(ValueError, match=message):
        slot_atomic_numbers(20, ordering=kwargs.get("ordering", "distance"),
                            species_counts=kwargs.get("species_counts"))


def test_periodic_structure_without_a_slot_species_is_refused():
    germanium = Atoms("Ge2", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=np.diag([3.0, 3.0, 3.0]), pbc=True)
    with pytest.raises(ValueError, match="no O atom.*`species_counts` asks for 12 O"):
        local_coulomb_matrix(germanium, ordering="species")
    with pytest.raises(ValueError, match="structure 1 of `X` has no O atom"):
        LocalCoulombMatrix(ordering="species").fit_transform([_rutile(), germanium])
    # the distance ordering needs no O
    assert local_coulomb_matrix(germanium).shape == (2, 210)


def test_transformer_with_species_ordering():
    structures = [_rattled(_rutile(), seed=3), _quartz(), _triclinic()]
    transformer = LocalCoulombMatrix(n_atoms=10, ordering="species", species_counts=(("O", 6), ("Ge", 3)))
    twin = clone(transformer)
    assert twin.get_params() == {"n_atoms": 10, "species": "Ge", "verbose": False, "ordering": "species",
                                 "species_counts": (("O", 6), ("Ge", 3))}
    features = twin.fit(structures).transform(structures)
    np.testing.assert_array_equal(features, local_coulomb_matrices(structures, n_atoms=10, ordering="species"))
    assert features.shape == (8, 55) and twin.n_features_out_ == 55
    assert list(twin.get_feature_names_out()) == list(feature_names(10))
    twin.set_params(ordering="distance")
    with pytest.raises(ValueError, match="`species_counts` applies to the species ordering only"):
        twin.fit(structures)
    twin.set_params(species_counts=None)
    np.testing.assert_array_equal(twin.fit_transform(structures), local_coulomb_matrices(structures, n_atoms=10))


@pytest.mark.parametrize("ordering", ["distance", "species"])
def test_chunked_image_search_gives_the_same_values(ordering, monkeypatch):
    # small cells (several image shifts per axis) searched a few centres at a time, as for large batches
    import aiida_xesml.ml.descriptors as descriptors

    structures = [_rattled(_rutile(), seed=s) for s in range(3)] + [_rattled(_quartz(), seed=s) for s in range(3)]
    whole = local_coulomb_matrices(structures, ordering=ordering)
    monkeypatch.setattr(descriptors, "_MAX_CANDIDATES", 500)
    np.testing.assert_array_equal(local_coulomb_matrices(structures, ordering=ordering), whole)
    for atoms in structures[:2]:
        expected, _ = (_brute_force_species_features(atoms, 0, default_species_counts(20)) if ordering == "species"
                       else _brute_force_features(atoms, 0, 20))
        np.testing.assert_allclose(local_coulomb_matrix(atoms, centers=[0], ordering=ordering)[0], expected,
                                   rtol=1e-10, atol=1e-12)
