"""Calcfunction: the structure and velocities from which MD continues after a failed segment."""

from aiida import orm
from aiida.engine import calcfunction
from ase.data import atomic_masses, atomic_numbers

from aiida_xesml.ml.dynamics import velocities_from_positions


@calcfunction
def md_continuation(trajectory: orm.TrajectoryData, timestep_fs: orm.Float, frame: orm.Int):
    """Frame ``frame`` (>= 1) of a segment's ``trajectory`` as the start of the next segment.

    Outputs ``structure`` and ``velocities`` (ArrayData, array ``velocities`` in Å/fs) from the
    velocity-Verlet identity with the frame's forces, v = (r_f - r_{f-1}) / dt + dt F_f / (2 m).
    """
    index = frame.value
    positions = trajectory.get_array("positions")[index - 1: index + 1]
    forces = trajectory.get_array("forces")[index]
    masses = atomic_masses[[atomic_numbers[symbol] for symbol in trajectory.symbols]]
    velocities = velocities_from_positions(positions, trajectory.get_array("cells")[index], timestep_fs.value,
                                           forces=forces, masses_amu=masses)
    array = orm.ArrayData()
    array.set_array("velocities", velocities)
    array.base.attributes.set("units", "angstrom/fs")
    return {"structure": trajectory.get_step_structure(index), "velocities": array}
