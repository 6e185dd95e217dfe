"""Calcfunction: production part, decorrelated snapshots and the summary of one pressure."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction
from ase.data import atomic_masses, atomic_numbers

from aiida_xesml.ml.dynamics import choose_stride, md_summary, pressure_from_stress, sample_frames
from aiida_xesml.ml.ensemble import ensemble_statistics


def production_summary(trajectory: orm.TrajectoryData, n_equilibration: int) -> dict:
    """:func:`~aiida_xesml.ml.dynamics.md_summary` of the frames from ``n_equilibration`` on: the
    measured PBE pressure (GPa, with the ions' kinetic term), temperature, volume and density of a
    pressure's production run, as its summary and the cell correction read them."""
    masses = atomic_masses[[atomic_numbers[symbol] for symbol in trajectory.symbols]]
    frames = slice(n_equilibration, None)
    return md_summary(trajectory.get_array("cells")[frames], trajectory.get_array("stress")[frames],
                      trajectory.get_array("temperature")[frames], masses)


def _subset(trajectory: orm.TrajectoryData, indices: np.ndarray) -> orm.TrajectoryData:
    """A new TrajectoryData with the frames ``indices`` of ``trajectory`` (all per-frame arrays)."""
    subset = orm.TrajectoryData()
    times = trajectory.get_array("times")[indices] if "times" in trajectory.get_arraynames() else None
    subset.set_trajectory(
        symbols=trajectory.symbols, positions=trajectory.get_array("positions")[indices],
        cells=trajectory.get_array("cells")[indices], stepids=trajectory.get_array("steps")[indices], times=times,
        pbc=trajectory.pbc,
    )
    n_frames = trajectory.numsteps
    for name in trajectory.get_arraynames():
        if name not in ("positions", "cells", "steps", "times") and trajectory.get_shape(name)[:1] == (n_frames,):
            subset.set_array(name, trajectory.get_array(name)[indices])
    for key, value in trajectory.base.attributes.items():
        if key.startswith("units_") or key == "timestep_fs":
            subset.base.attributes.set(key, value)
    subset.set_array("frame_indices", np.asarray(indices, dtype=int))
    return subset


@calcfunction
def sample_snapshots(trajectory: orm.TrajectoryData, n_equilibration: orm.Int, stride: orm.Int,
                     cn_cutoff_angstrom: orm.Float, target_pressure_gpa: orm.Float,
                     variable_cell_trajectory: orm.TrajectoryData | None = None,
                     **corrections: orm.Dict):
    """Split off the production part (frames >= ``n_equilibration``) of an MD ``trajectory`` and
    sample every ``stride``-th frame of it (``stride`` 0: the energy autocorrelation time).

    Outputs ``trajectory`` (production frames), ``snapshots`` (sampled frames; array
    ``frame_indices`` gives their indices in the input trajectory) and ``summary``: target and
    measured PBE pressure (GPa, production average incl. the ions' kinetic term), temperature (K),
    density (g/cm³), mean first-shell Ge–O distance (Å), CN histogram, numbers of snapshots and Ge
    sites, and the pressure after the variable-cell step when its trajectory is given. With
    ``correction_<i>`` inputs (the ``correction`` outputs of ``rescale_to_pressure``, one per earlier MD
    run at this target whose cell was then scaled) it also records their measured pressures
    (``rejected_md_pressures_gpa``) and ``cell_corrections``, their number.
    """
    start = n_equilibration.value
    energy = trajectory.get_array("energy")
    step, tau = choose_stride(energy, start, stride.value)
    production_indices = np.arange(start, trajectory.numsteps)
    snapshot_indices = sample_frames(trajectory.numsteps, start, step)
    production = _subset(trajectory, production_indices)
    snapshots = _subset(trajectory, snapshot_indices)

    summary = production_summary(trajectory, start)
    atoms = [snapshots.get_step_structure(i).get_ase() for i in range(snapshots.numsteps)]
    summary.update(ensemble_statistics(atoms, cutoff=cn_cutoff_angstrom.value))
    summary.update({
        "target_pressure_gpa": target_pressure_gpa.value,
        "n_snapshots": int(len(snapshot_indices)),
        "snapshot_stride": int(step),
        "energy_autocorrelation_frames": float(tau),
        "n_equilibration": int(start),
        "cn_cutoff_angstrom": cn_cutoff_angstrom.value,
        "pressure_note": "PBE pressure of this set-up (pseudopotentials, cutoffs), not an experimental one",
    })
    order = sorted(corrections, key=lambda key: int(key.rsplit("_", 1)[1]))
    summary["cell_corrections"] = len(order)
    summary["rejected_md_pressures_gpa"] = [float(corrections[key]["measured_pressure_gpa"]) for key in order]
    if variable_cell_trajectory is not None:
        stress = variable_cell_trajectory.get_array("stress")
        summary["variable_cell_pressure_gpa"] = float(pressure_from_stress(stress[-1:])[0])
    return {"trajectory": production, "snapshots": snapshots, "summary": orm.Dict(summary)}
