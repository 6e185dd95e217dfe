"""The ``core_hole`` alignment: each site's own 1s binding energy from a ΔSCF (SCIENCE.md §2).

A Kβ photon has the energy of the 1s hole minus that of the valence hole left behind:
``E_photon = BE(1s, site i) − BE(valence state)``. In one periodic calculation both binding
energies are measured from the same zero (the cell-average electrostatic potential), so, with the
ΔSCF binding energy ``ΔE_i = E(1s hole on site i, one electron removed) − E(ground)`` and a
valence state's removal energy ``−ε``,

    E_photon − K = ε + ΔE_i,

where the constant K holds what the pseudopotentials leave out (the core's own energy) and is the
same for every site and structure made with the same pair of datasets
(:mod:`aiida_xesml.pseudos.core_hole`). Measured from the snapshot's highest occupied level
(``homo``, the zero of the ``vbm`` alignment), a site's spectrum moves by

    s_i = homo + ΔE_i − C

with C (:data:`CORE_HOLE_OFFSET_EV`) a constant chosen once so that the experimental rutile-type
cell has s = 0: core-hole-aligned energies are then on the ``vbm`` scale of that cell, and E_ref,i =
homo − s_i = C − ΔE_i is the site's reference. Sites with a larger 1s binding energy emit at higher
photon energy for the same valence level, so their spectra move up.

``homo`` and ΔE_i must come from the same calculation (same datasets, cell and k-points): the
eigenvalue zero of pw.x depends on the local pseudopotentials. The spectra's own energies relative
to their highest occupied level do not, so :func:`shift_spectra` combines a spectrum made with any
alignment with shifts from the ΔSCF run.
"""

from __future__ import annotations

import numpy as np

from .validation import as_finite_array

#: eV; C of the module docstring: homo + ΔE of the experimental rutile-type cell, measured with
#: ``benchmarks/alignment_study.py --experimental`` (2×2×4 supercell, 96 atoms, Γ, 25/150 Ry, the 1s
#: electron removed, the datasets of :mod:`aiida_xesml.pseudos.core_hole`): 8.0770 + 200.7451 eV.
#: The 2×2×2 supercell gives 208.840 eV. Other cutoffs or datasets need their own C.
CORE_HOLE_OFFSET_EV = 208.822


def binding_energies(hole_energies_ev, ground_energy_ev: float) -> np.ndarray:
    """ΔSCF 1s binding energies ``E(hole on site i) − E(ground)`` in eV (pseudopotential scale: up to
    the constant K of the module docstring).

    :param hole_energies_ev: (n,) total energies (eV) of the cells with the hole on each site.
    :param ground_energy_ev: total energy (eV) of the same cell in its ground state.
    """
    hole = as_finite_array(hole_energies_ev, "hole_energies_ev", ndim=1)
    ground = float(as_finite_array([ground_energy_ev], "ground_energy_ev", ndim=1)[0])
    return hole - ground


def core_hole_shifts(binding_energies_ev, homo_ev: float, offset_ev: float = CORE_HOLE_OFFSET_EV) -> np.ndarray:
    """Per-site shifts ``s_i = homo + ΔE_i − C`` (eV) that take ``vbm``-aligned energies to the
    ``core_hole`` alignment (``E_core_hole = E_vbm + s_i``).

    :param binding_energies_ev: (n,) ΔE_i of :func:`binding_energies`, eV.
    :param homo_ev: highest occupied level of the ΔSCF's ground-state run, eV.
    :param offset_ev: C, eV (default :data:`CORE_HOLE_OFFSET_EV`).
    """
    delta = as_finite_array(binding_energies_ev, "binding_energies_ev", ndim=1)
    homo, offset = (float(as_finite_array([value], name, ndim=1)[0])
                    for value, name in ((homo_ev, "homo_ev"), (offset_ev, "offset_ev")))
    return homo + delta - offset


def shift_rows(energy, intensity, shifts) -> np.ndarray:
    """Each row of ``intensity`` moved up in energy by its shift, on the same grid.

    ``I_new(E) = I(E − s)``, linearly interpolated; zero where ``E − s`` falls outside the grid.

    :param energy: (n_E,) strictly increasing grid, eV.
    :param intensity: (n, n_E).
    :param shifts: (n,) eV.
    :returns: (n, n_E).
    """
    energy = as_finite_array(energy, "energy", ndim=1)
    intensity = as_finite_array(intensity, "intensity", ndim=2)
    shifts = as_finite_array(shifts, "shifts", ndim=1)
    if intensity.shape[1] != len(energy):
        raise ValueError(f"`intensity` has {intensity.shape[1]} columns but `energy` has {len(energy)} points")
    if len(shifts) != len(intensity):
        raise ValueError(f"`shifts` has {len(shifts)} values but `intensity` has {len(intensity)} rows; one per row")
    if np.any(np.diff(energy) <= 0):
        raise ValueError("`energy` must be strictly increasing")
    return np.vstack([np.interp(energy - shift, energy, row, left=0.0, right=0.0)
                      for shift, row in zip(shifts, intensity)])


def shift_spectra(energy, intensity, reference_ev, homo_ev: float, shifts):
    """Spectra of any alignment moved to the ``core_hole`` alignment.

    A row aligned on ``reference_ev[i]`` (E = ε − reference) is first put on its run's highest
    occupied level (E_vbm = E + reference − homo), then moved by its ``core_hole`` shift s_i.

    :param energy: (n_E,) grid, eV.
    :param intensity: (n, n_E).
    :param reference_ev: (n,) the rows' references (XesSpectraData ``reference_ev``), eV.
    :param homo_ev: the spectra run's highest occupied level (XesSpectraData ``parameters['homo_ev']``), eV.
    :param shifts: (n,) :func:`core_hole_shifts` of the rows' sites, eV.
    :returns: (intensity (n, n_E) on the same grid, new references (n,) eV: ``homo − s_i``).
    """
    reference = as_finite_array(reference_ev, "reference_ev", ndim=1)
    shifts = as_finite_array(shifts, "shifts", ndim=1)
    homo = float(as_finite_array([homo_ev], "homo_ev", ndim=1)[0])
    if reference.shape != shifts.shape:
        raise ValueError(f"`reference_ev` has {len(reference)} values but `shifts` has {len(shifts)}; one per row")
    total = reference - homo + shifts
    return shift_rows(energy, intensity, total), homo - shifts


#: Default least distance (Å) between a core hole and its periodic images.
MIN_IMAGE_DISTANCE = 8.0


def shortest_lattice_vector(cell) -> float:
    """Length (Å) of the shortest non-zero lattice vector of ``cell`` (3, 3 rows in Å): the distance
    between a site and its nearest periodic image (searched over combinations of -2..2)."""
    cell = as_finite_array(cell, "cell", ndim=2)
    if cell.shape != (3, 3) or abs(np.linalg.det(cell)) < 1e-9:
        raise ValueError(f"`cell` must be three non-coplanar vectors (3, 3) in Å; got shape {cell.shape}")
    span = np.arange(-2, 3)
    combos = np.array(np.meshgrid(span, span, span, indexing="ij")).reshape(3, -1).T
    combos = combos[np.any(combos != 0, axis=1)]
    return float(np.linalg.norm(combos @ cell, axis=1).min())


def supercell_repetitions(cell, min_distance: float = MIN_IMAGE_DISTANCE) -> list[int]:
    """The smallest diagonal repetitions [n1, n2, n3] of ``cell`` whose shortest lattice vector is at
    least ``min_distance`` Å (the core hole's distance to its images): the shortest cell vector is
    repeated once more until the condition holds.

    :param cell: (3, 3) cell rows in Å.
    :param min_distance: Å, > 0.
    """
    cell = as_finite_array(cell, "cell", ndim=2)
    if not np.isfinite(min_distance) or min_distance <= 0:
        raise ValueError(f"`min_distance` must be a positive distance in Å; got {min_distance!r}")
    reps = np.ones(3, dtype=int)
    while shortest_lattice_vector(cell * reps[:, None]) < min_distance - 1e-9:
        lengths = np.linalg.norm(cell * reps[:, None], axis=1)
        reps[int(np.argmin(lengths))] += 1
    return reps.tolist()
