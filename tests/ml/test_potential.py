"""Sphere averages of periodic grid functions (the 'potential' alignment)."""

import numpy as np
import pytest

from aiida_xesml.ml.potential import sphere_average


def _grid(shape, cell):
    voxel = cell / np.array(shape)[:, None]
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return voxel, index @ voxel


def test_constant_and_linear_fields_average_to_the_centre_value():
    cell = np.array([[6.0, 0, 0], [1.0, 5.0, 0], [0.5, 0.3, 7.0]])  # triclinic
    voxel, points = _grid((30, 25, 35), cell)
    sites = np.array([[2.1, 2.2, 3.3], [0.05, 0.1, 0.2]])
    assert np.allclose(sphere_average(np.full((30, 25, 35), 2.5), voxel, sites, 0.8), 2.5)
    # A smooth periodic field: the sphere average of cos(k·r) is cos(k·r0) * 3 j1(kR)/(kR) ≈ cos(k·r0)(1 - (kR)²/10)
    reciprocal = 2 * np.pi * np.linalg.inv(cell).T
    k = reciprocal[0]
    field = np.cos(points @ k)
    radius = 0.5
    kr = np.linalg.norm(k) * radius
    expected = np.cos(sites @ k) * 3 * (np.sin(kr) - kr * np.cos(kr)) / kr**3
    np.testing.assert_allclose(sphere_average(field, voxel, sites, radius), expected, atol=0.02)


def test_periodic_images_are_used_near_the_boundary():
    cell = np.eye(3) * 4.0
    voxel, points = _grid((20, 20, 20), cell)
    field = np.cos(2 * np.pi * points[..., 0] / 4.0)
    inside = sphere_average(field, voxel, np.array([[2.0, 2.0, 2.0]]), 0.6)
    shifted = sphere_average(field, voxel, np.array([[2.0 + 4.0, 2.0 - 8.0, 2.0]]), 0.6)
    np.testing.assert_allclose(inside, shifted)


def test_radius_without_grid_points_is_an_error():
    voxel, _ = _grid((4, 4, 4), np.eye(3) * 8.0)
    with pytest.raises(ValueError, match="radius"):
        sphere_average(np.ones((4, 4, 4)), voxel, np.array([[1.0, 1.0, 1.0]]), 0.1)
