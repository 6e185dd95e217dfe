"""Calcfunction: the last frame of an MD run, scaled isotropically towards a target pressure."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.calculations.sample_snapshots import production_summary
from aiida_xesml.ml.dynamics import pressure_correction_ratio, secant_bulk_modulus


@calcfunction
def rescale_to_pressure(trajectory: orm.TrajectoryData, n_equilibration: orm.Int, target_pressure_gpa: orm.Float,
                        bulk_modulus_gpa: orm.Float, previous_trajectory: orm.TrajectoryData | None = None):
    """Scale the last frame of ``trajectory`` so that the MD's pressure moves to the target.

    The measured pressure is the production average (frames from ``n_equilibration`` on) of the PBE
    pressure including the ions' kinetic term, as in the per-pressure summary. The volume changes by
    :func:`~aiida_xesml.ml.dynamics.pressure_correction_ratio`. The bulk modulus is the secant of this
    run and ``previous_trajectory`` when that is given and gives a plausible value
    (:func:`~aiida_xesml.ml.dynamics.secant_bulk_modulus`), else ``bulk_modulus_gpa`` (GPa).
    xesml.compression passes as ``previous_trajectory`` the MD before the last correction at the same
    target, or, when it scales a frame towards the next pressure, the accepted MD of the pressure before.
    The cell and all positions scale by the cube root of the volume ratio
    (fractional coordinates kept).

    Outputs ``structure`` (Å) and ``correction`` (Dict: measured and target pressure in GPa, the bulk
    modulus used and where it came from, the volume ratio, and the volumes before and after in Å³).
    """
    start = n_equilibration.value
    current = production_summary(trajectory, start)
    volume_mean, measured = current["volume_mean_a3"], current["pressure_gpa"]
    bulk, source = bulk_modulus_gpa.value, "input"
    if previous_trajectory is not None:
        previous = production_summary(previous_trajectory, start)
        secant = secant_bulk_modulus([previous["volume_mean_a3"], volume_mean], [previous["pressure_gpa"], measured],
                                     default_gpa=float("nan"))
        if np.isfinite(secant):
            bulk, source = secant, "secant"
    ratio = pressure_correction_ratio(measured, target_pressure_gpa.value, bulk)
    atoms = trajectory.get_step_structure(trajectory.numsteps - 1).get_ase()
    volume = float(atoms.cell.volume)
    atoms.set_cell(atoms.cell.array * ratio ** (1.0 / 3.0), scale_atoms=True)
    correction = {
        "measured_pressure_gpa": float(measured), "target_pressure_gpa": target_pressure_gpa.value,
        "bulk_modulus_gpa": float(bulk), "bulk_modulus_source": source, "volume_ratio": ratio,
        "volume_before_a3": volume, "volume_after_a3": float(np.abs(atoms.cell.volume)),
    }
    return {"structure": orm.StructureData(ase=atoms), "correction": orm.Dict(correction)}
