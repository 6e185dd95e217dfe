"""Calcfunction: seeded Maxwell–Boltzmann starting velocities for an MD run (recorded in the provenance)."""

from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.ml.dynamics import maxwell_boltzmann_velocities


@calcfunction
def initial_velocities(structure: orm.StructureData, temperature_k: orm.Float, seed: orm.Int):
    """Velocities (ArrayData, array ``velocities`` in Å/fs, one row per site) at ``temperature_k`` (K).

    The masses are those of the structure's kinds (amu), the ones pw.x is given.
    """
    masses = [structure.get_kind(site.kind_name).mass for site in structure.sites]
    array = orm.ArrayData()
    array.set_array("velocities", maxwell_boltzmann_velocities(masses, temperature_k.value, seed.value))
    array.base.attributes.set("units", "angstrom/fs")
    return array
