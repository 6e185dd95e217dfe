"""Calcfunction: one table over the pressures of a compression run."""

from aiida import orm
from aiida.engine import calcfunction

COLUMNS = ("target_pressure_gpa", "variable_cell_pressure_gpa", "pressure_gpa", "cell_corrections", "temperature_mean_k",
           "density_g_cm3", "ge_o_mean_angstrom", "cn_mean", "n_snapshots", "n_sites")


@calcfunction
def compression_table(**summaries):
    """Rows (one per pressure namespace, in target-pressure order) of the per-pressure summaries.

    Pressures are PBE pressures in GPa, density in g/cm³, distances in Å.
    """
    rows = []
    for label, summary in summaries.items():
        values = summary.get_dict()
        rows.append({"label": label, **{column: values.get(column) for column in COLUMNS}})
    rows.sort(key=lambda row: row["target_pressure_gpa"])
    return orm.Dict({"columns": ["label", *COLUMNS], "rows": rows})
