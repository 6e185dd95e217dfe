"""Calcfunction: the frames of a trajectory as structures, linked to it in the provenance graph."""

from aiida import orm
from aiida.engine import calcfunction


@calcfunction
def extract_snapshots(trajectory: orm.TrajectoryData):
    """One StructureData per frame (Å), as outputs ``snapshot_0``, ``snapshot_1``, ..."""
    return {f"snapshot_{index}": trajectory.get_step_structure(index) for index in range(trajectory.numsteps)}
