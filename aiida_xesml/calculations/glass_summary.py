"""Calcfunction: the structure of a melt-quenched GeO2 cell, and what its melt and quench did."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.ml.dynamics import squared_displacements
from aiida_xesml.ml.glass import glass_analysis

#: Density of GeO2 glass at ambient conditions (g/cm³), the reference of the summary's deviation.
EXPERIMENTAL_GLASS_DENSITY_G_CM3 = 3.66


def _melt_summary(trajectory: orm.TrajectoryData) -> dict:
    """Mean temperature (K) and mean squared displacement (Å²) of Ge and O over the melt's second
    half. In a liquid it grows in proportion to the time; in a solid it stays at the size of the
    thermal vibrations. Over a hold of only 0.1 ps (the balanced protocol) the two are hard to tell
    apart: compare runs, or hold longer."""
    frames = np.arange(trajectory.numsteps // 2, trajectory.numsteps)
    cells = trajectory.get_array("cells")
    squared = squared_displacements(trajectory.get_array("positions")[frames], cells[frames[0]])[-1]
    symbols = np.asarray(trajectory.symbols)
    times = trajectory.get_array("times")
    return {
        "melt_hold_duration_fs": float(times[frames[-1]] - times[frames[0]]),
        "melt_hold_temperature_mean_k": float(trajectory.get_array("temperature")[frames].mean()),
        "melt_hold_msd_ge_A2": float(squared[symbols == "Ge"].mean()),
        "melt_hold_msd_o_A2": float(squared[symbols == "O"].mean()),
    }


def _quench_summary(trajectory: orm.TrajectoryData) -> dict:
    """Duration (fs), mean temperature (K) over the first and last tenth of the frames, and the mean
    cooling rate between them (K/ps)."""
    times, temperature = trajectory.get_array("times"), trajectory.get_array("temperature")
    tenth = max(1, len(times) // 10)
    start, end = float(temperature[:tenth].mean()), float(temperature[-tenth:].mean())
    span = float(times[-tenth:].mean() - times[:tenth].mean())
    return {
        "quench_duration_fs": float(times[-1] - times[0]),
        "quench_temperature_start_k": start,
        "quench_temperature_end_k": end,
        "quench_rate_k_per_ps": (start - end) / span * 1000.0 if span > 0 else None,
    }


@calcfunction
def glass_summary(structure: orm.StructureData, melt_trajectory: orm.TrajectoryData,
                  quench_trajectory: orm.TrajectoryData, cn_cutoff_angstrom: orm.Float,
                  relax_converged: orm.Bool | None = None):
    """Summary (Dict) and distributions (ArrayData) of a melt-quenched ``structure``.

    ``summary``: :func:`aiida_xesml.ml.glass.glass_analysis` of ``structure`` (density g/cm³ and its
    relative deviation from the experimental 3.66 g/cm³, CN histogram at ``cn_cutoff_angstrom``, Ge–O
    distance, O–Ge–O and Ge–O–Ge angles, the largest structure factor per atom), the melt's hold
    (second half: temperature, Ge and O mean squared displacement) and the quench (temperatures at
    its ends, cooling rate), and ``relax_converged`` when given (whether the final vc-relax met its
    thresholds). ``distributions``: pair distribution functions, Ge–O distances, CN per Ge
    and the angle histograms, with their units in the attribute ``units``.
    """
    scalars, arrays = glass_analysis(structure.get_ase(), cutoff=cn_cutoff_angstrom.value)
    scalars.update({
        "cn_cutoff_angstrom": cn_cutoff_angstrom.value,
        "experimental_density_g_cm3": EXPERIMENTAL_GLASS_DENSITY_G_CM3,
        "density_deviation_from_experiment": scalars["density_g_cm3"] / EXPERIMENTAL_GLASS_DENSITY_G_CM3 - 1.0,
    })
    if relax_converged is not None:
        scalars["relax_converged"] = relax_converged.value
    scalars.update(_melt_summary(melt_trajectory))
    scalars.update(_quench_summary(quench_trajectory))
    distributions = orm.ArrayData()
    for name, values in arrays.items():
        distributions.set_array(name, np.asarray(values))
    distributions.base.attributes.set("units", {"pdf_r": "angstrom", "ge_o_distances": "angstrom",
                                                "angle_bins_deg": "degree", "cn": "count",
                                                "o_ge_o_histogram": "count", "ge_o_ge_histogram": "count"})
    return {"summary": orm.Dict(scalars), "distributions": distributions}
