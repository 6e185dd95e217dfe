"""Core MD bookkeeping: velocities, temperatures, stitching, summaries, sampling."""

import numpy as np
import pytest

from aiida_xesml.ml import dynamics


def test_verlet_velocity_is_exact_for_constant_force():
    """Under a constant force, r(t) = r0 + v0 t + a t²/2: the Verlet identity gives v(t) exactly."""
    dt, mass, force = 1.5, 16.0, np.array([[0.3, -0.2, 0.1]])
    acceleration = force / mass / dynamics.AMU_A2_PER_FS2_IN_EV
    v0 = np.array([[0.01, 0.02, -0.03]])
    times = np.array([0.0, dt])
    positions = np.array([v0 * t + 0.5 * acceleration * t**2 for t in times])
    cell = np.eye(3) * 10
    velocity = dynamics.velocities_from_positions(positions, cell, dt, forces=force[0:1], masses_amu=[mass])
    np.testing.assert_allclose(velocity, v0 + acceleration * dt, rtol=1e-12)


def test_backward_difference_is_second_order():
    dt = 0.5
    times = np.array([0.0, dt, 2 * dt])
    positions = np.sin(times)[:, None, None] * np.ones((1, 2, 3))
    velocity = dynamics.velocities_from_positions(positions, np.eye(3) * 20, dt)
    assert abs(velocity[0, 0] - np.cos(2 * dt)) < dt**2 / 2


def test_velocities_unwrap_across_the_cell_boundary():
    cell = np.eye(3) * 5.0
    positions = np.array([[[4.9, 0, 0]], [[0.05, 0, 0]]])  # moved +0.15 Å across the boundary
    velocity = dynamics.velocities_from_positions(positions, cell, 1.0)
    np.testing.assert_allclose(velocity, [[0.15, 0, 0]], atol=1e-12)


def test_kinetic_temperature_of_a_known_velocity_set():
    # one O atom moving at v: 3/2 k T = 1/2 m v²  =>  T = m v² / (3 k)
    v, mass = 0.01, 15.999
    expected = mass * v**2 * dynamics.AMU_A2_PER_FS2_IN_EV / (3 * dynamics.KB_EV_PER_K)
    assert dynamics.kinetic_temperature([[v, 0, 0]], [mass]) == pytest.approx(expected)


def test_parse_md_temperatures():
    text = """
     Entering Dynamics:    iteration =     1
     temperature           =         600.00000000 K
     Ekin + Etot (const)   =        -494.65982251 Ry
     Starting temperature  =   600.00 K
     temperature           =         651.85974529 K
"""
    np.testing.assert_allclose(dynamics.parse_md_temperatures(text), [600.0, 651.85974529])


def test_parse_md_times_reads_pw_x_clock_in_fs():
    # as QE 6.7 prints it (2 fs steps); the second block after a native restart continues the count
    text = """
     Time step             =    41.34 a.u.,  2.0000 femto-seconds

     Entering Dynamics:    iteration =     1
                           time      =   0.0020 pico-seconds


     temperature           =         300.00000000 K
     Entering Dynamics:    iteration =    12
                           time      =   0.0240 pico-seconds
"""
    iterations, times = dynamics.parse_md_times(text)
    np.testing.assert_array_equal(iterations, [1, 12])
    np.testing.assert_allclose(times, [2.0, 24.0])
    assert dynamics.parse_md_times("no dynamics here")[0].size == 0


def test_stitch_keeps_the_requested_frames_without_duplicates():
    a = {"positions": np.arange(4)[:, None], "energy": np.arange(4) * 1.0}
    b = {"positions": np.arange(3, 7)[:, None], "energy": np.arange(3, 7) * 1.0}
    stitched = dynamics.stitch_segments([a, b], [3, 4])
    np.testing.assert_array_equal(stitched["positions"][:, 0], np.arange(7))
    with pytest.raises(ValueError, match="frames"):
        dynamics.stitch_segments([a, b], [5, 4])


def test_summary_pressure_includes_the_ideal_gas_term():
    cells = np.repeat(np.eye(3)[None] * 10.0, 2, axis=0)
    stress = np.zeros((2, 3, 3))
    masses = np.full(10, 16.0)
    summary = dynamics.md_summary(cells, stress, [300.0, 300.0], masses)
    # N k T / V with V = 1000 Å^3: 10 * 0.025852 eV / 1000 Å^3 = 2.5852e-4 eV/Å^3 = 0.041420 GPa
    assert summary["pressure_static_gpa"] == 0.0
    assert summary["pressure_gpa"] == pytest.approx(10 * 8.617333e-5 * 300 / 1000 * 160.21766, rel=1e-6)
    assert summary["density_g_cm3"] == pytest.approx(160 * 1.66053907e-24 / 1e-21, rel=1e-6)


def test_autocorrelation_time_of_white_noise_and_of_a_slow_signal():
    rng = np.random.default_rng(0)
    assert dynamics.autocorrelation_time(rng.normal(size=2000)) < 1.5
    slow = np.convolve(rng.normal(size=4000), np.ones(20) / 20, mode="valid")
    assert dynamics.autocorrelation_time(slow) > 10


def test_choose_stride_and_sample_frames():
    energy = np.random.default_rng(1).normal(size=50)
    stride, tau = dynamics.choose_stride(energy, 10, 0)
    assert stride == int(np.ceil(tau))
    assert dynamics.choose_stride(energy, 10, 4)[0] == 4
    np.testing.assert_array_equal(dynamics.sample_frames(11, 2, 3), [2, 5, 8])
    with pytest.raises(ValueError, match="n_equilibration"):
        dynamics.choose_stride(energy, 50, 1)
    with pytest.raises(ValueError, match="stride"):
        dynamics.sample_frames(11, 2, 0)


def test_timestep_conversions():
    assert dynamics.fs_to_ry_time(dynamics.RY_TIME_FS) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="timestep_fs"):
        dynamics.fs_to_ry_time(0.0)


def test_parse_vc_md_temperatures():
    text = """
     Entering Dynamics;  it =     1   time =  0.00000 pico-seconds
     Ekin =     0.01425065 Ry    T =    0.0 K  Etot =     -493.20700385
     Ekin =     0.01946242 Ry    T =  292.7 K  Etot =     -493.20633196
"""
    np.testing.assert_allclose(dynamics.parse_md_temperatures(text), [0.0, 292.7])


def test_maxwell_boltzmann_velocities_are_seeded_at_the_temperature_without_drift():
    masses = np.array([72.63] * 20 + [16.00] * 40)
    first = dynamics.maxwell_boltzmann_velocities(masses, 600.0, seed=3)
    np.testing.assert_array_equal(first, dynamics.maxwell_boltzmann_velocities(masses, 600.0, seed=3))
    assert not np.allclose(first, dynamics.maxwell_boltzmann_velocities(masses, 600.0, seed=4))
    assert dynamics.kinetic_temperature(first, masses, remove_com=True) == pytest.approx(600.0, rel=1e-12)
    assert dynamics.kinetic_temperature(first, masses) == pytest.approx(600.0 * 177 / 180, rel=1e-12)
    np.testing.assert_allclose((masses[:, None] * first).sum(0), 0.0, atol=1e-12)
    # equipartition: O (16 amu) moves sqrt(72.63 / 16) ~ 2.1x faster than Ge on average
    ratio = np.sqrt((first[20:] ** 2).mean() / (first[:20] ** 2).mean())
    assert 1.5 < ratio < 3.0, ratio


@pytest.mark.parametrize("kwargs, argument", [
    ({"masses_amu": [16.0, 0.0], "temperature_k": 300.0, "seed": 0}, "masses_amu"),
    ({"masses_amu": [16.0, 16.0], "temperature_k": 0.0, "seed": 0}, "temperature_k"),
    ({"masses_amu": [16.0, 16.0], "temperature_k": 300.0, "seed": -1}, "seed"),
    ({"masses_amu": [16.0, 16.0], "temperature_k": 300.0, "seed": 1.5}, "seed"),
])
def test_maxwell_boltzmann_velocities_name_the_bad_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        dynamics.maxwell_boltzmann_velocities(**kwargs)


def test_pressure_correction_ratio_moves_the_volume_the_right_way_and_clips():
    from aiida_xesml.ml.dynamics import pressure_correction_ratio

    assert pressure_correction_ratio(24.0, 20.0, 40.0) == pytest.approx(1.1)  # too high: expand by 4/40
    assert pressure_correction_ratio(18.0, 20.0, 40.0) == pytest.approx(0.95)
    assert pressure_correction_ratio(60.0, 20.0, 40.0) == pytest.approx(1.1)  # clipped to +10 %
    assert pressure_correction_ratio(0.0, 20.0, 40.0, max_change=0.2) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="bulk_modulus_gpa"):
        pressure_correction_ratio(1.0, 0.0, 0.0)


def test_secant_bulk_modulus_recovers_a_linear_equation_of_state():
    from aiida_xesml.ml.dynamics import secant_bulk_modulus

    bulk, v0 = 60.0, 500.0
    volumes = [v0, 0.99 * v0]
    pressures = [-bulk * (v / v0 - 1) for v in volumes]
    assert secant_bulk_modulus(volumes, pressures, 40.0) == pytest.approx(bulk, rel=0.01)
    assert secant_bulk_modulus(volumes[:1], pressures[:1], 40.0) == 40.0
    assert secant_bulk_modulus(volumes, [0.0, -5.0], 40.0) == 40.0  # a negative slope: noise, not a modulus
