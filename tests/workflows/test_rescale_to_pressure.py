"""rescale_to_pressure and the summary of corrected MD runs, on synthetic trajectories (no QE).

The numbers are made by hand: a stress tensor of p·1 gives the static pressure p (GPa), and the
ions' kinetic term N k_B T / V is added as the summary adds it.
"""

import numpy as np
import pytest
from aiida import orm

from aiida_xesml.calculations.rescale_to_pressure import rescale_to_pressure
from aiida_xesml.calculations.sample_snapshots import sample_snapshots
from aiida_xesml.ml.structures import rutile_geo2

KB_EV, EV_A3_GPA = 8.617333262e-5, 160.21766208
N_EQUILIBRATION, N_FRAMES, TEMPERATURE = 2, 6, 300.0


def _trajectory(static_gpa: float, scale: float = 1.0) -> orm.TrajectoryData:
    atoms = rutile_geo2()
    cell = atoms.cell.array * scale
    positions = np.repeat((atoms.get_scaled_positions() @ cell)[None], N_FRAMES, axis=0)
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(symbols=atoms.get_chemical_symbols(), positions=positions,
                              cells=np.repeat(cell[None], N_FRAMES, axis=0), stepids=np.arange(N_FRAMES),
                              times=np.arange(N_FRAMES) * 2.0)
    trajectory.set_array("stress", np.repeat((np.eye(3) * static_gpa)[None], N_FRAMES, axis=0))
    trajectory.set_array("temperature", np.full(N_FRAMES, TEMPERATURE))
    trajectory.set_array("energy", np.linspace(0.0, 1e-3, N_FRAMES))
    return trajectory.store()


def _pressure(trajectory) -> float:
    volume = abs(np.linalg.det(trajectory.get_array("cells")[0]))
    return float(trajectory.get_array("stress")[0, 0, 0] + 6 * KB_EV * TEMPERATURE / volume * EV_A3_GPA)


def test_a_first_correction_uses_the_given_bulk_modulus(aiida_profile):
    trajectory = _trajectory(static_gpa=28.0)
    result = rescale_to_pressure(trajectory, orm.Int(N_EQUILIBRATION), orm.Float(20.0), orm.Float(100.0))
    correction = result["correction"].get_dict()
    measured = _pressure(trajectory)
    assert correction["measured_pressure_gpa"] == pytest.approx(measured)
    assert correction["bulk_modulus_source"] == "input"
    expected = 1 + (measured - 20.0) / 100.0
    volume = abs(np.linalg.det(trajectory.get_array("cells")[-1]))
    assert result["structure"].get_ase().cell.volume / volume == pytest.approx(expected)
    # fractional coordinates are kept
    np.testing.assert_allclose(result["structure"].get_ase().get_scaled_positions(),
                               rutile_geo2().get_scaled_positions(), atol=1e-12)


def test_a_second_correction_uses_the_secant_of_the_two_runs(aiida_profile):
    first, second = _trajectory(static_gpa=30.0), _trajectory(static_gpa=24.0, scale=1.01)
    result = rescale_to_pressure(second, orm.Int(N_EQUILIBRATION), orm.Float(20.0), orm.Float(100.0),
                                 previous_trajectory=first)
    correction = result["correction"].get_dict()
    volumes = [abs(np.linalg.det(t.get_array("cells")[0])) for t in (first, second)]
    pressures = [_pressure(t) for t in (first, second)]
    secant = -0.5 * sum(volumes) * (pressures[1] - pressures[0]) / (volumes[1] - volumes[0])
    assert correction["bulk_modulus_source"] == "secant"
    assert correction["bulk_modulus_gpa"] == pytest.approx(secant)
    assert correction["volume_ratio"] == pytest.approx(1 + (pressures[1] - 20.0) / secant)


def test_the_summary_lists_the_rejected_pressures_in_order(aiida_profile):
    runs = [_trajectory(static_gpa=p) for p in (35.0, 26.0)]
    corrections = {f"correction_{i + 1}": rescale_to_pressure(run, orm.Int(N_EQUILIBRATION), orm.Float(20.0),
                                                              orm.Float(100.0))["correction"]
                   for i, run in enumerate(runs)}
    accepted = _trajectory(static_gpa=20.5)
    result = sample_snapshots(accepted, orm.Int(N_EQUILIBRATION), orm.Int(1), orm.Float(2.3), orm.Float(20.0),
                              **corrections)
    summary = result["summary"].get_dict()
    assert summary["cell_corrections"] == 2
    assert summary["rejected_md_pressures_gpa"] == pytest.approx([_pressure(run) for run in runs])
    assert summary["pressure_gpa"] == pytest.approx(_pressure(accepted))
