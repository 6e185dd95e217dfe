"""Calcfunction: one trajectory and summary from the segments of an MD run."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction
from ase.data import atomic_masses, atomic_numbers

from aiida_xesml.ml.dynamics import md_summary, parse_md_temperatures, stitch_segments, velocities_from_positions

# Per-frame arrays of pw.x's output_trajectory that are kept, with their units.
FRAME_ARRAYS = {"energy": "eV", "forces": "eV/angstrom", "stress": "GPa"}


def _segment_arrays(trajectory: orm.TrajectoryData, retrieved: orm.FolderData) -> dict:
    arrays = {"positions": trajectory.get_array("positions"), "cells": trajectory.get_array("cells")}
    names = trajectory.get_arraynames()
    for name in FRAME_ARRAYS:
        if name in names:
            arrays[name] = trajectory.get_array(name)
    with retrieved.base.repository.open("aiida.out") as handle:
        arrays["temperature"] = parse_md_temperatures(handle.read())
    return arrays


@calcfunction
def stitch_md_segments(timestep_fs: orm.Float, n_kept: orm.List, **segments):
    """Concatenate MD segments (inputs ``segment_<i>_trajectory`` and ``segment_<i>_retrieved``,
    i = 0, 1, ...) keeping the first ``n_kept[i]`` frames of each, so that seams hold no
    duplicate and no gap.

    Outputs ``trajectory`` (TrajectoryData: positions Å, cells Å, times fs, energy eV, forces
    eV/Å, stress GPa, temperature K), ``velocities`` (Å/fs at the last frame) and ``summary``
    (Dict of averages; see :func:`aiida_xesml.ml.dynamics.md_summary`) and ``structure`` (the
    last frame).
    """
    count = len(n_kept.get_list())
    parts = [
        _segment_arrays(segments[f"segment_{index}_trajectory"], segments[f"segment_{index}_retrieved"])
        for index in range(count)
    ]
    frames = stitch_segments(parts, n_kept.get_list())
    first = segments["segment_0_trajectory"]
    symbols = first.symbols
    dt = timestep_fs.value
    n_frames = len(frames["positions"])

    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(
        symbols=symbols, positions=frames["positions"], cells=frames["cells"],
        stepids=np.arange(n_frames), times=np.arange(n_frames) * dt, pbc=first.get_step_structure(0).pbc,
    )
    for name, unit in FRAME_ARRAYS.items():
        if name in frames:
            trajectory.set_array(name, frames[name])
            trajectory.base.attributes.set(f"units_{name}", unit)
    trajectory.set_array("temperature", frames["temperature"])
    trajectory.base.attributes.set("units_temperature", "K")
    trajectory.base.attributes.set("units_times", "fs")
    trajectory.base.attributes.set("timestep_fs", dt)

    masses = atomic_masses[[atomic_numbers[symbol] for symbol in symbols]]
    velocities = orm.ArrayData()
    velocities.set_array("velocities", velocities_from_positions(
        frames["positions"][-2:], frames["cells"][-1], dt, forces=frames["forces"][-1], masses_amu=masses))
    velocities.base.attributes.set("units", "angstrom/fs")

    summary = md_summary(frames["cells"], frames["stress"], frames["temperature"], masses)
    summary.update({"nstep": n_frames - 1, "timestep_fs": dt, "n_segments": count,
                    "pressure_note": "PBE pressure of this set-up (pseudopotentials, cutoff), not an experimental one"})
    return {"trajectory": trajectory, "velocities": velocities, "summary": orm.Dict(summary),
            "structure": trajectory.get_step_structure(n_frames - 1)}
