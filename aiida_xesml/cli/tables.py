"""Text output of the commands: tables, sections, node summaries, value ± spread, reconstructions.

Heavy imports (numpy, tabulate) happen inside the functions so that ``verdi`` stays fast.
"""

from __future__ import annotations

import json
import math

import click
from aiida.cmdline.utils import echo

from aiida_xesml.cli.params import DATA_TYPES


def table(rows, headers=(), floatfmt: str = ".4g", numparse: bool = True) -> None:
    """Print ``rows`` as a plain-text table; ``numparse=False`` prints pre-formatted cells as they are."""
    from tabulate import tabulate

    echo.echo(tabulate(rows, headers=list(headers), floatfmt=floatfmt, disable_numparse=not numparse))


def value_text(value) -> str:
    return json.dumps(value) if isinstance(value, (dict, list, tuple)) else str(value)


def number(value, spec: str = ".4g") -> str:
    """``value`` formatted, '' for None (a metric that is undefined)."""
    return "" if value is None else format(value, spec)


def pm(value, spread, spec: str) -> str:
    """``value ± spread``, '—' for a missing value, no ± when the spread is unknown (NaN or None)."""
    if value is None or not math.isfinite(value):
        return "—"
    return format(value, spec) + (f" ± {format(spread, spec)}" if spread is not None and math.isfinite(spread) else "")


def section(title: str) -> None:
    echo.echo("")
    echo.echo(click.style(title, bold=True))


def ctime_text(ctime) -> str:
    from aiida.common import timezone

    return timezone.localtime(ctime).strftime("%Y-%m-%d %H:%M:%S")


def summary(node, extra: list) -> None:
    """PK, UUID, type, label and creation time of ``node``, then the ``extra`` (key, value) rows."""
    rows = [("PK", node.pk), ("UUID", node.uuid), ("Type", type(node).__name__), ("Label", node.label),
            ("Created", ctime_text(node.ctime)), *extra]
    table(rows)


def settings_table(settings: dict, title: str = "Settings") -> None:
    section(title)
    if settings:
        table(sorted((key, value_text(value)) for key, value in settings.items()), headers=("Key", "Value"))
    else:
        echo.echo("(none)")


def list_nodes(kind: str, headers: list[str], row) -> None:
    """A table of every node of type ``kind``: ``row(attributes)`` gives the type-specific columns."""
    from aiida import orm
    from aiida.plugins import DataFactory

    cls = DataFactory(DATA_TYPES[kind][0])
    query = orm.QueryBuilder().append(cls, project=["id", "label", "ctime", "attributes"])
    query.order_by({cls: {"id": "asc"}})
    rows = [(pk, label, *row(attributes or {}), ctime_text(ctime)) for pk, label, ctime, attributes in query.all()]
    if not rows:
        echo.echo_report(f"no {DATA_TYPES[kind][1]} nodes found")
        return
    table(rows, headers=["PK", "Label", *headers, "Created"])


def shape_of(attributes: dict, name: str, axis: int):
    """Length of axis ``axis`` of array ``name`` from a node's attributes (no array read)."""
    shape = attributes.get(f"array|{name}")
    return shape[axis] if shape and len(shape) > axis else None


def labels_text(labels, limit: int = 6) -> str:
    if not labels:
        return ""
    text = ", ".join(f"{value:g}" for value in labels[:limit])
    return text + (f", … ({len(labels)})" if len(labels) > limit else "")


def label_counts(label) -> list:
    import numpy as np

    values, counts = np.unique(label, return_counts=True)  # NaNs are grouped by np.unique's equal_nan
    return [(f"{value:g}", int(count)) for value, count in zip(values, counts)]


def reconstruction_table(node, prefix: str = "", title: str | None = None) -> bool:
    """Print a reconstruction node's rows (one per target): CN and first-shell Ge–O distance as value ± spread
    over the emulator ensemble, beside the truth where the node has it. Reads layout versions 1 and 2
    (:func:`aiida_xesml.calculations.reconstruct.read_reconstruction`). Returns False when there are no rows
    with this ``prefix`` (e.g. no ``held_out_`` targets); ``title`` heads the table when there is one."""
    from aiida_xesml.calculations.reconstruct import read_reconstruction

    values = read_reconstruction(node, prefix)
    if values.get("cn") is None or len(values["cn"]) == 0:
        return False
    if title:
        section(title)
    truths = [(name, title, spec) for name, title, spec in (("true_cn", "True CN", ".2f"),
                                                             ("true_cn_count", "True CN count", ".2f"),
                                                             ("true_first_shell_mean_angstrom", "True first shell (Å)",
                                                              ".3f")) if values.get(name) is not None]
    headers = ["Label", "Sites", "CN", "CN count", "First shell (Å)", *(title for _, title, _ in truths)]
    rows = []
    for i, label in enumerate(values["label"]):
        rows.append([f"{label:g}", int(values["n_spectra"][i]) if "n_spectra" in values else "",
                     pm(values["cn"][i], values["cn_spread"][i], ".2f"),
                     pm(values["cn_count"][i], values["cn_count_spread"][i], ".2f"),
                     pm(values["first_shell_mean_angstrom"][i], values["first_shell_mean_angstrom_spread"][i], ".3f"),
                     *(pm(values[name][i], None, spec) for name, _, spec in truths)])
    table(rows, headers=headers, numparse=False)
    return True
