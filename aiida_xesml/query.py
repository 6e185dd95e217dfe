"""Provenance queries that users of the plugin need, each one QueryBuilder query (no link walking in Python).

Examples::

    from aiida_xesml import query
    query.calculations_behind(reconstruction, plugin="quantumespresso.pw")   # the pw.x runs behind it
    query.datasets_by_label(10, 30)                  # data sets with a label (GPa) in [10, 30]
    query.emulators_by_metric(0.95, target="kbpp_m1")  # emulators with held-out r >= 0.95 for Kβ″ M1
    query.reconstruction_for_label(15.0)             # the newest reconstruction that holds 15 GPa
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.plugins import DataFactory


def calculations_behind(node: orm.Node, plugin: str | None = None, process_class=orm.CalcJobNode) -> list[orm.Node]:
    """Every calculation of ``process_class`` that is an ancestor of ``node`` in the provenance graph.

    :param plugin: a calculation entry point, to keep only those calculations: e.g. ``'quantumespresso.pw'``,
        or ``'xesml.projwfc'`` for the plugin's projwfc.x runs.
    :returns: the calculation nodes, oldest first.
    """
    filters = {"process_type": f"aiida.calculations:{plugin}"} if plugin else {}
    builder = orm.QueryBuilder()
    builder.append(orm.Node, filters={"id": node.pk}, tag="target")
    builder.append(process_class, with_descendants="target", filters=filters, project="*", tag="calculation")
    builder.order_by({"calculation": {"ctime": "asc"}})
    return builder.distinct().all(flat=True)  # one row per path otherwise


def datasets_by_label(minimum: float | None = None, maximum: float | None = None) -> list[orm.Node]:
    """``xesml.dataset`` nodes that hold at least one label (e.g. pressure in GPa) in [minimum, maximum].

    ``None`` leaves that side open. Newest first. The database selects the nodes whose label span
    overlaps the range; of those, the ones with a label inside it are kept (labels 0 and 30 span 5–25
    but hold none of it).
    """
    filters = {}
    if minimum is not None:
        filters["attributes.label_max"] = {">=": float(minimum)}
    if maximum is not None:
        filters["attributes.label_min"] = {"<=": float(maximum)}
    builder = orm.QueryBuilder().append(DataFactory("xesml.dataset"), filters=filters, tag="dataset")
    builder.order_by({"dataset": {"ctime": "desc"}})
    low = -np.inf if minimum is None else float(minimum)
    high = np.inf if maximum is None else float(maximum)
    return [node for node in builder.all(flat=True)
            if any(low <= label <= high for label in node.base.attributes.get("labels", []))]


def emulators_by_metric(threshold: float, target: str | None = None, metric: str = "pearson_r") -> list[orm.Node]:
    """``xesml.emulator`` nodes whose held-out ``metric`` is at least ``threshold``.

    :param target: a moment name such as ``'kbpp_m1'``; None means every target (the worst Pearson r,
        attribute ``pearson_r_min``; only ``metric='pearson_r'`` then).
    :param metric: ``'pearson_r'`` or ``'r2'`` (per target).
    :returns: best first.
    """
    if metric not in ("pearson_r", "r2"):
        raise ValueError(f"`metric` must be 'pearson_r' or 'r2'; got {metric!r}")
    if target is None:
        if metric != "pearson_r":
            raise ValueError("without `target` only metric='pearson_r' (the worst target's r) can be filtered")
        attribute = "attributes.pearson_r_min"
    else:
        attribute = f"attributes.metrics_by_target.{target}.{metric}"
    builder = orm.QueryBuilder().append(DataFactory("xesml.emulator"), filters={attribute: {">=": float(threshold)}},
                                        tag="emulator")
    builder.order_by({"emulator": {attribute: {"order": "desc", "cast": "f"}}})
    return builder.all(flat=True)


def reconstruction_for_label(label: float) -> orm.ArrayData | None:
    """The newest ``reconstruction`` output of the ``reconstruct`` calcfunction whose labels span ``label``.

    The row of that label is ``list(node.get_array('label')).index(label)``; see also :func:`reconstruction_row`.
    """
    builder = orm.QueryBuilder()
    builder.append(orm.CalcFunctionNode, filters={"attributes.process_label": "reconstruct"}, tag="calculation")
    builder.append(orm.ArrayData, with_incoming="calculation", edge_filters={"label": "reconstruction"},
                   filters={"attributes.label_min": {"<=": float(label)}, "attributes.label_max": {">=": float(label)}},
                   tag="reconstruction", project="*")
    builder.order_by({"reconstruction": {"ctime": "desc"}})
    for node in builder.iterall():
        if float(label) in node[0].base.attributes.get("labels", []):
            return node[0]
    return None


def reconstruction_row(node: orm.ArrayData, label: float, held_out: bool = False) -> dict:
    """The arrays of ``node`` (a reconstruction) at the row of ``label``, as a dict of numpy values, in the
    current layout (``cn`` the smooth CN, ``cn_count``, ``*_spread``; version-1 nodes are translated).

    :param held_out: the row reconstructed from the label's held-out snapshots alone.
    """
    from aiida_xesml.calculations.reconstruct import read_reconstruction

    arrays = read_reconstruction(node, "held_out_" if held_out else "")
    if "label" not in arrays:
        raise ValueError(f"this reconstruction (pk {node.pk}) has no {'held-out ' if held_out else ''}rows")
    labels = [float(v) for v in arrays["label"]]
    if float(label) not in labels:
        raise ValueError(f"`label` {label} is not in this reconstruction (labels {labels})")
    row = labels.index(float(label))
    return {name: values[row] for name, values in arrays.items() if values is not None and np.ndim(values) > 0}


def pipeline_summary(node, wall_time_s: float | None = None) -> dict:
    """The figures of a finished (or partly finished) ``xesml.pipeline`` node, as plain values (the demo's
    ``summary.json``): per pressure the target and measured pressure, density, snapshots, site spectra, and
    the true and reconstructed first-shell distance (Å) and CN with their spreads; the emulator's held-out
    Pearson r and R² beside the ridge baseline; the ECA covered variance; the pks of the outputs."""
    outputs = node.outputs
    summary = {"pipeline_pk": node.pk, "exit_status": node.exit_status, "exit_message": node.exit_message,
               "wall_time_s": None if wall_time_s is None else round(wall_time_s, 1), "pks": {}, "pressures": []}
    compression = outputs.compression if "compression" in outputs else {}
    table = compression["summary_table"].get_dict() if "summary_table" in compression else {"rows": []}
    reconstruction, held_out = {}, {}
    analysis = outputs.analysis if "analysis" in outputs else {}
    if "reconstruction_summary" in analysis:
        rows = analysis["reconstruction_summary"].get_dict()
        reconstruction = {row["label"]: row for row in rows["rows"]}
        held_out = {row["label"]: row for row in rows.get("held_out_rows", [])}
    for row in table["rows"]:
        target = row["target_pressure_gpa"]
        rec, rec_held_out = reconstruction.get(float(target), {}), held_out.get(float(target), {})
        summary["pressures"].append({
            "target_pressure_gpa": target,
            "measured_pressure_gpa": row["pressure_gpa"],
            "variable_cell_pressure_gpa": row["variable_cell_pressure_gpa"],
            "density_g_cm3": row["density_g_cm3"],
            "n_snapshots": row["n_snapshots"],
            "n_site_spectra": rec.get("n_spectra"),
            "true_first_shell_angstrom": rec.get("true_first_shell_mean_angstrom"),
            "reconstructed_first_shell_angstrom": rec.get("first_shell_mean_angstrom"),
            "reconstructed_first_shell_spread_angstrom": rec.get("first_shell_mean_angstrom_spread"),
            "true_cn": rec.get("true_cn"),
            "reconstructed_cn": rec.get("cn"),
            "reconstructed_cn_spread": rec.get("cn_spread"),
            "held_out_n_site_spectra": rec_held_out.get("n_spectra"),
            "held_out_true_cn": rec_held_out.get("true_cn"),
            "held_out_reconstructed_cn": rec_held_out.get("cn"),
            "held_out_reconstructed_cn_spread": rec_held_out.get("cn_spread"),
        })
    if "metrics" in analysis:
        metrics = analysis["metrics"].get_dict()
        summary["emulator_pearson_r"] = {name: values["pearson_r"] for name, values in metrics["targets"].items()}
        summary["emulator_r2"] = {name: values["r2"] for name, values in metrics["targets"].items()}
        summary["n_train"], summary["n_test"] = metrics["n_train"], metrics["n_test"]
        if "ridge" in metrics:
            summary["ridge_pearson_r"] = {name: values["pearson_r"] for name, values in metrics["ridge"].items()}
            summary["split"], summary["verdict"] = metrics["split"], metrics["verdict"]
            summary["n_test_snapshots"] = metrics["n_test_groups"]
    if "eca" in analysis:
        summary["eca_covered_variance_y"] = analysis["eca"].covered_variance
        summary["eca_covered_variance_x"] = analysis["eca"].covered_variance_x
        summary["eca_covered_variance_y_held_out"] = analysis["eca"].covered_variance_held_out
    for key in ("spectra",):
        if key in outputs:
            summary["pks"][key] = outputs[key].pk
    for key in ("dataset", "emulator", "eca", "reconstruction"):
        if key in analysis:
            summary["pks"][key] = analysis[key].pk
    if "summary_table" in compression:
        summary["pks"]["compression_summary_table"] = compression["summary_table"].pk
    return summary


def pipeline_figure_data(node) -> dict:
    """The arrays that :func:`aiida_xesml.plotting.pipeline_figures` draws, from a finished ``xesml.pipeline``
    node: the data set's moments and the emulator's predictions of them, the site spectra, the ECA covered
    variance and the reconstruction (distances in Å, CN)."""
    from aiida_xesml.calculations.reconstruct import read_reconstruction

    analysis, spectra = node.outputs.analysis, node.outputs.spectra
    dataset = analysis.dataset
    emulator = analysis.emulator
    return {
        "moments": dataset.moments, "moment_names": dataset.moment_names, "row_labels": dataset.row_labels,
        "predicted_moments": emulator.get_emulator().predict(emulator.select_features(dataset.descriptors)),
        "energy_ev": spectra.energy_ev, "intensity": spectra.intensity, "spectra_labels": spectra.row_labels,
        "covered_variance_y": analysis.eca.covered_variance, "covered_variance_x": analysis.eca.covered_variance_x,
        "covered_variance_y_held_out": analysis.eca.covered_variance_held_out or None,
        "reconstruction": read_reconstruction(analysis.reconstruction),
    }
