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
