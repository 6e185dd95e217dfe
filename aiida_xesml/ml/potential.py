"""Local electrostatic potential at atomic sites, from a periodic grid (pp.x ``plot_num=11``).

Used by the ``'potential'`` alignment (SCIENCE.md §2): the bare local + Hartree potential averaged
in a small sphere around an emitter tracks its core-level shift in the initial-state picture.
"""

from __future__ import annotations

import numpy as np

from .validation import as_finite_array, check_positive

RY_EV = 13.605693122994
BOHR_ANGSTROM = 0.529177210903


def sphere_average(values, voxel, positions, radius: float = 0.6) -> np.ndarray:
    """Average of a periodic grid function in a sphere of ``radius`` around each position.

    :param values: grid values (n1, n2, n3); grid point (i, j, k) sits at i v1 + j v2 + k v3.
    :param voxel: (3, 3) rows v1, v2, v3: the grid steps, in the same length unit as ``positions``.
    :param positions: (n_sites, 3) cartesian positions.
    :param radius: sphere radius, same length unit (default 0.6, meant as Å).
    :returns: (n_sites,) averages, in the unit of ``values``.
    :raises ValueError: when the sphere holds no grid point (radius below the grid spacing).
    """
    values = as_finite_array(values, "values", ndim=3)
    voxel = as_finite_array(voxel, "voxel", ndim=2)
    positions = as_finite_array(positions, "positions", ndim=2)
    radius = check_positive(radius, "radius")
    shape = np.array(values.shape)
    # Site positions in grid-index coordinates, and every integer offset that can reach the sphere.
    index_coordinates = positions @ np.linalg.inv(voxel)
    heights = 1.0 / np.linalg.norm(np.linalg.inv(voxel), axis=0)  # distance between grid planes
    reach = np.ceil(radius / heights).astype(int) + 1
    axes = [np.arange(-r, r + 1) for r in reach]
    offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    base = np.floor(index_coordinates).astype(int)
    points = base[:, None, :] + offsets[None, :, :]  # (n_sites, n_offsets, 3) grid indices, unwrapped
    separation = (points - index_coordinates[:, None, :]) @ voxel
    inside = np.einsum("sox,sox->so", separation, separation) <= radius**2
    counts = inside.sum(axis=1)
    if np.any(counts == 0):
        raise ValueError(f"`radius` = {radius} holds no grid point for some sites; use a larger radius or a finer grid")
    wrapped = np.mod(points, shape)
    sampled = values[wrapped[..., 0], wrapped[..., 1], wrapped[..., 2]]
    return np.where(inside, sampled, 0.0).sum(axis=1) / counts


def site_potentials_ev(values_ry, voxel_bohr, positions_angstrom, radius_angstrom: float = 0.6) -> np.ndarray:
    """pp.x potential (Ry, on a grid with voxel in bohr) averaged around sites (Å), in eV."""
    voxel = as_finite_array(voxel_bohr, "voxel_bohr", ndim=2) * BOHR_ANGSTROM
    return RY_EV * sphere_average(values_ry, voxel, positions_angstrom, radius_angstrom)
