"""Calcfunction: the last frame of an MD run, scaled isotropically towards a target pressure."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction
from ase.data import atomic_masses, atomic_numbers

from aiida_xesml.ml.dynamics import md_summary, pressure_correction_ratio


@calcfunction
def rescale_to_pressure(trajectory: orm.TrajectoryData, n_equilibration: orm.Int, target_pressure_gpa: orm.Float,
                        bulk_modulus_gpa: orm.Float):
    """Scale the last frame of ``trajectory`` so that the MD's pressure moves to the target.

    The measured pressure is the production average (frames from ``n_equilibration`` on) of the PBE
    pressure including the ions' kinetic term, as in the per-pressure summary. The volume changes by
    :func:`~aiida_xesml.ml.dynamics.pressure_correction_ratio` with ``bulk_modulus_gpa`` (GPa); the
    cell and all positions scale by its cube root (fractional coordinates kept).

    Outputs ``structure`` (Å) and ``correction`` (Dict: measured and target pressure in GPa, the bulk
    modulus used, the volume ratio, and the volumes before and after in Å³).
    """
    start = n_equilibration.value
    masses = atomic_masses[[atomic_numbers[symbol] for symbol in trajectory.symbols]]
    measured = md_summary(trajectory.get_array("cells")[start:], trajectory.get_array("stress")[start:],
                          trajectory.get_array("temperature")[start:], masses)["pressure_gpa"]
    ratio = pressure_correction_ratio(measured, target_pressure_gpa.value, bulk_modulus_gpa.value)
    atoms = trajectory.get_step_structure(trajectory.numsteps - 1).get_ase()
    volume = float(atoms.cell.volume)
    atoms.set_cell(atoms.cell.array * ratio ** (1.0 / 3.0), scale_atoms=True)
    correction = {
        "measured_pressure_gpa": float(measured), "target_pressure_gpa": target_pressure_gpa.value,
        "bulk_modulus_gpa": bulk_modulus_gpa.value, "volume_ratio": ratio,
        "volume_before_a3": volume, "volume_after_a3": float(np.abs(atoms.cell.volume)),
    }
    return {"structure": orm.StructureData(ase=atoms), "correction": orm.Dict(correction)}
