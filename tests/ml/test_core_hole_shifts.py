"""The core of the core_hole alignment: shifts, moving spectra, supercells."""

import numpy as np
import pytest

from aiida_xesml.ml.core_hole import (
    binding_energies,
    core_hole_shifts,
    shift_rows,
    shift_spectra,
    shortest_lattice_vector,
    supercell_repetitions,
)
from aiida_xesml.ml.structures import quartz_geo2, rutile_geo2

GRID = np.arange(-30.0, 5.0 + 1e-9, 0.05)


def gaussian(center, sigma=0.8):
    return np.exp(-0.5 * ((GRID - center) / sigma) ** 2)


def test_shift_rows_moves_each_row_by_its_own_shift():
    rows = np.stack([gaussian(-18.0), gaussian(-5.0)])
    moved = shift_rows(GRID, rows, [0.7, -1.33])
    for row, center in zip(moved, (-17.3, -6.33)):
        mean = np.trapezoid(row * GRID, GRID) / np.trapezoid(row, GRID)
        assert mean == pytest.approx(center, abs=1e-6)
    # a shift by whole grid steps is exact
    np.testing.assert_allclose(shift_rows(GRID, rows[:1], [0.5])[0, 10:], rows[0, :-10], atol=1e-12)
    # what moves out of the grid is lost, nothing moves in
    assert shift_rows(GRID, rows[:1], [100.0]).max() == 0.0


def test_shift_spectra_composes_the_alignment_change():
    """A potential-aligned row (reference r) moved by s lands where the vbm-aligned row moved by s lands."""
    homo, reference, s = 8.4, 5.1, 0.6
    vbm_row = gaussian(-18.0)
    potential_row = shift_rows(GRID, vbm_row[None], [homo - reference])  # E_potential = E_vbm + homo − r
    from_potential, new_reference = shift_spectra(GRID, potential_row, [reference], homo, [s])
    from_vbm, _ = shift_spectra(GRID, vbm_row[None], [homo], homo, [s])
    np.testing.assert_allclose(from_potential, from_vbm, atol=2e-3)
    assert new_reference[0] == pytest.approx(homo - s)


def test_core_hole_shifts_definition():
    delta = binding_energies([201.0, 200.5], 0.25)
    np.testing.assert_allclose(delta, [200.75, 200.25])
    np.testing.assert_allclose(core_hole_shifts(delta, homo_ev=8.0, offset_ev=208.5), [0.25, -0.25])


def test_supercells_keep_holes_apart():
    for atoms, expected in ((rutile_geo2(), [2, 2, 3]), (quartz_geo2(), [2, 2, 2])):
        reps = supercell_repetitions(atoms.cell[:], 8.0)
        assert reps == expected
        assert shortest_lattice_vector(atoms.cell[:] * np.array(reps)[:, None]) >= 8.0
        # one repetition fewer along any repeated axis is too short
        for axis in range(3):
            if reps[axis] > 1:
                fewer = list(reps)
                fewer[axis] -= 1
                assert shortest_lattice_vector(atoms.cell[:] * np.array(fewer)[:, None]) < 8.0
    # hexagonal cell: a − b is as short as a
    assert shortest_lattice_vector(quartz_geo2().cell[:]) == pytest.approx(4.987, abs=1e-3)


@pytest.mark.parametrize("call, match", [
    (lambda: shift_rows(GRID, np.ones((2, len(GRID))), [0.1]), "one per row"),
    (lambda: shift_rows(GRID[::-1], np.ones((1, len(GRID))), [0.1]), "increasing"),
    (lambda: supercell_repetitions(np.eye(3), 0.0), "min_distance"),
    (lambda: shortest_lattice_vector(np.zeros((3, 3))), "non-coplanar"),
    (lambda: core_hole_shifts([np.nan], 1.0), "NaN"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
