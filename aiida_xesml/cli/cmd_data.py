"""``verdi data xesml``: list, show, export and plot the plugin's data nodes.

One sub-group per data type (``spectra``, ``dataset``, ``emulator``, ``eca``), each with ``list``,
``show``, ``export`` and ``plot``. The module is a thin shell: numbers come from the data classes
(:mod:`aiida_xesml.data`), figures from :mod:`aiida_xesml.plotting`. Heavy imports (numpy,
matplotlib, tabulate, the data classes) happen inside the commands so that ``verdi`` stays fast.

Registered as ``[project.entry-points."aiida.cmdline.data"] xesml``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click
from aiida.cmdline.groups import VerdiCommandGroup
from aiida.cmdline.params import arguments, types
from aiida.cmdline.utils import decorators, echo

#: Sub-group name -> (data entry point, class name); the class is loaded when a command runs.
DATA_TYPES = {
    "spectra": ("xesml.spectra", "XesSpectraData"),
    "dataset": ("xesml.dataset", "XesDatasetData"),
    "emulator": ("xesml.emulator", "EmulatorData"),
    "eca": ("xesml.eca", "XesEcaData"),
}
FORMATS = ("npz", "csv", "txt")


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------

def _data_class(kind: str):
    from aiida.plugins import DataFactory

    return DataFactory(DATA_TYPES[kind][0])


def _node_argument(kind: str, *param_decls, **kwargs):
    """The ``PK`` argument (a pk, UUID or label of a node), checked to be of type ``kind``."""
    entry_point, class_name = DATA_TYPES[kind]

    def check(_ctx, _param, node):
        if node is None or isinstance(node, _data_class(kind)):
            return node
        raise click.BadParameter(
            f"node {node.pk} is a {type(node).__name__} ({node.node_type}) but this command needs an "
            f"`{entry_point}` node ({class_name}); see `verdi data xesml {kind} list`"
        )

    return arguments.DATUM(*param_decls, metavar="PK", type=types.NodeParamType(), callback=check, **kwargs)


def _node_option(kind: str, *param_decls, **kwargs):
    """An option taking a node of type ``kind`` (pk, UUID or label), checked like the argument."""
    entry_point, class_name = DATA_TYPES[kind]

    def check(_ctx, param, node):
        if node is None or isinstance(node, _data_class(kind)):
            return node
        raise click.BadParameter(
            f"node {node.pk} is a {type(node).__name__} ({node.node_type}) but this option needs an "
            f"`{entry_point}` node ({class_name})",
            param=param,
        )

    return click.option(*param_decls, metavar="PK", type=types.NodeParamType(), callback=check, **kwargs)


def _output_option(help_text: str):
    return click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=True),
                        help=help_text)


def _force_option():
    return click.option("-f", "--force", is_flag=True, help="Overwrite the output if it already exists.")


def _format_option():
    return click.option("-F", "--format", "fmt", type=click.Choice(FORMATS), default="npz", show_default=True,
                        help="npz: every array of the node; csv: one table; txt: one text file per spectrum.")


def _check_output_file(path: Path, force: bool) -> Path:
    """Refuse an existing file without ``--force`` and any existing directory; create parent folders."""
    if path.is_dir():
        raise click.ClickException(f"output {str(path)!r} is a directory; give a file name")
    if path.exists() and not force:
        raise click.ClickException(f"output {str(path)!r} already exists; use --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _check_output_folder(path: Path, force: bool) -> Path:
    if path.exists() and not path.is_dir():
        raise click.ClickException(f"output {str(path)!r} exists and is not a folder; txt export writes a folder")
    if path.exists() and not force:
        raise click.ClickException(f"output {str(path)!r} already exists; use --force to write into it")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _only_npz(node, fmt: str) -> None:
    if fmt != "npz":
        raise click.ClickException(
            f"format {fmt!r} is not available for {type(node).__name__} {node.pk}: its arrays have different "
            "shapes and make no single table; use --format npz"
        )


def _export_npz(node, path: Path) -> None:
    """Every array of ``node`` plus ``attributes_json`` (its non-array attributes as a JSON string); no pickles."""
    import numpy as np

    arrays = {name: node.get_array(name) for name in node.get_arraynames()}
    attributes = {key: value for key, value in node.base.attributes.all.items() if not key.startswith("array|")}
    arrays["attributes_json"] = np.array(json.dumps(attributes, sort_keys=True))
    for name, array in arrays.items():
        if array.dtype == object:  # never write something that would need allow_pickle=True to read
            raise click.ClickException(f"array {name!r} of node {node.pk} has dtype object and cannot be exported")
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


def _write_csv(path: Path, header: list[str], columns: list) -> None:
    """Write columns (1-D arrays of equal length) as CSV; floats in their shortest exact form."""
    rows = zip(*(column.tolist() for column in columns))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _plot_output(path: Path, force: bool) -> Path:
    if path.suffix.lower() != ".png":
        raise click.ClickException(f"output {str(path)!r} must be a .png file (the figures are written as PNG)")
    return _check_output_file(path, force)


def _plot(function, *args, **kwargs) -> None:
    """Call a :mod:`aiida_xesml.plotting` function, turning its ValueError into a clean CLI error."""
    try:
        path = function(*args, **kwargs)
    except ValueError as exc:
        raise click.ClickException(f"cannot plot: {exc}") from exc
    echo.echo_success(f"figure written to {path}")


def _finite_labels(label, what: str):
    """Rows of ``label`` that are set (not NaN): the figures group and colour by label."""
    import numpy as np

    keep = np.isfinite(label)
    if not keep.any():
        raise click.ClickException(f"{what} has no row with a label (all NaN); the figure groups rows by label")
    if not keep.all():
        echo.echo_warning(f"{what}: {int((~keep).sum())} row(s) without a label (NaN) are left out of the figure")
    return keep


def _table(rows, headers=(), floatfmt: str = ".4g") -> None:
    from tabulate import tabulate

    echo.echo(tabulate(rows, headers=list(headers), floatfmt=floatfmt))


def _value(value) -> str:
    return json.dumps(value) if isinstance(value, (dict, list, tuple)) else str(value)


def _number(value) -> str:
    return "" if value is None else f"{value:.4g}"


def _section(title: str) -> None:
    echo.echo("")
    echo.echo(click.style(title, bold=True))


def _ctime(ctime) -> str:
    from aiida.common import timezone

    return timezone.localtime(ctime).strftime("%Y-%m-%d %H:%M:%S")


def _summary(node, extra: list) -> None:
    rows = [("PK", node.pk), ("UUID", node.uuid), ("Type", type(node).__name__), ("Label", node.label),
            ("Created", _ctime(node.ctime)), *extra]
    _table(rows)


def _settings(settings: dict, title: str = "Settings") -> None:
    _section(title)
    if settings:
        _table(sorted((key, _value(value)) for key, value in settings.items()), headers=("Key", "Value"))
    else:
        echo.echo("(none)")


def _list(kind: str, headers: list[str], row) -> None:
    """A table of every node of type ``kind``: ``row(attributes)`` gives the type-specific columns."""
    from aiida import orm

    cls = _data_class(kind)
    query = orm.QueryBuilder().append(cls, project=["id", "label", "ctime", "attributes"])
    query.order_by({cls: {"id": "asc"}})
    rows = [(pk, label, *row(attributes or {}), _ctime(ctime)) for pk, label, ctime, attributes in query.all()]
    if not rows:
        echo.echo_report(f"no {DATA_TYPES[kind][1]} nodes found")
        return
    _table(rows, headers=["PK", "Label", *headers, "Created"])


def _shape(attributes: dict, name: str, axis: int):
    shape = attributes.get(f"array|{name}")
    return shape[axis] if shape and len(shape) > axis else None


def _labels_text(labels, limit: int = 6) -> str:
    if not labels:
        return ""
    text = ", ".join(f"{value:g}" for value in labels[:limit])
    return text + (f", … ({len(labels)})" if len(labels) > limit else "")


def _label_counts(label) -> list:
    import numpy as np

    values, counts = np.unique(label, return_counts=True)  # NaNs are grouped by np.unique's equal_nan
    return [(f"{value:g}", int(count)) for value, count in zip(values, counts)]


# ---------------------------------------------------------------------------------------------
# groups
# ---------------------------------------------------------------------------------------------

@click.group("xesml", cls=VerdiCommandGroup)
def data_xesml():
    """Inspect, export and plot aiida-xesml data: spectra, datasets, emulators and ECA.

    \b
    Example:
        verdi data xesml spectra list
        verdi data xesml emulator show 1234
        verdi data xesml dataset export 1240 --format csv -o dataset.csv
    """


@data_xesml.group("spectra")
def spectra():
    """Kβ emission spectra of emitting sites on a common energy grid (`xesml.spectra`).

    \b
    Example:
        verdi data xesml spectra list
        verdi data xesml spectra plot 1234 -o spectra.png
    """


@data_xesml.group("dataset")
def dataset():
    """Descriptors and spectral moments of emitting sites, the emulator's training data (`xesml.dataset`).

    \b
    Example:
        verdi data xesml dataset list
        verdi data xesml dataset show 1240
    """


@data_xesml.group("emulator")
def emulator():
    """Trained emulators, descriptors -> spectral moments (`xesml.emulator`).

    \b
    Example:
        verdi data xesml emulator list
        verdi data xesml emulator plot 1250 --dataset 1240 -o parity.png
    """


@data_xesml.group("eca")
def eca():
    """Emulator-based component analyses (`xesml.eca`).

    \b
    Example:
        verdi data xesml eca list
        verdi data xesml eca plot 1260 -o covered_variance.png
    """


# ---------------------------------------------------------------------------------------------
# spectra
# ---------------------------------------------------------------------------------------------

@spectra.command("list")
@decorators.with_dbenv()
def spectra_list():
    """List the spectra nodes: number of spectra and of energy points.

    \b
    Example:
        verdi data xesml spectra list
    """
    _list("spectra", ["Spectra", "Energy points"],
          lambda a: (a.get("n_spectra"), _shape(a, "energy_ev", 0)))


@spectra.command("show")
@_node_argument("spectra")
@decorators.with_dbenv()
def spectra_show(datum):
    """Show a spectra node: grid, spectra per label and the parameters they were made with.

    \b
    Example:
        verdi data xesml spectra show 1234
    """
    energy = datum.energy_ev
    step = float(energy[1] - energy[0]) if len(energy) > 1 else float("nan")
    _summary(datum, [("Spectra", datum.n_spectra), ("Energy points", len(energy)),
                     ("Energy range (eV)", f"{energy[0]:g} to {energy[-1]:g}, step {step:g}")])
    _section("Spectra per label")
    _table(_label_counts(datum.row_labels), headers=("Label", "Spectra"))
    _settings(datum.parameters, "Parameters")


@spectra.command("export")
@_node_argument("spectra")
@_format_option()
@_output_option("File (npz, csv) or folder (txt) to write.")
@_force_option()
@decorators.with_dbenv()
def spectra_export(datum, fmt, output, force):
    """Export spectra as npz (all arrays), csv (energy + one column per spectrum) or txt (a folder).

    The csv header names each column snap<snapshot>_site<site>_label<label>. txt writes one
    two-column file (energy_eV intensity) per spectrum, with a header naming snapshot, site and
    label; with --force, files of the same names in an existing folder are overwritten.

    \b
    Example:
        verdi data xesml spectra export 1234 -o spectra.npz
        verdi data xesml spectra export 1234 --format csv -o spectra.csv
        verdi data xesml spectra export 1234 --format txt -o spectra_txt/
    """
    import numpy as np

    energy, intensity = datum.energy_ev, datum.intensity
    snapshots, sites, labels = datum.snapshot_index, datum.site_index, datum.row_labels
    if fmt == "npz":
        _export_npz(datum, _check_output_file(output, force))
    elif fmt == "csv":
        header = ["energy_eV"] + [f"snap{s}_site{i}_label{label:g}" for s, i, label in zip(snapshots, sites, labels)]
        _write_csv(_check_output_file(output, force), header, [energy, *intensity])
    else:
        folder = _check_output_folder(output, force)
        width = max(4, len(str(len(intensity) - 1)))
        for row, (s, i, label) in enumerate(zip(snapshots, sites, labels)):
            name = folder / f"spectrum_{row:0{width}d}_snap{s}_site{i}.txt"
            header = (f"spectra node {datum.pk} row {row}: snapshot {s}, site {i}, label {label:g}\n"
                      "energy_eV intensity")
            np.savetxt(name, np.column_stack([energy, intensity[row]]), fmt="%.10g", header=header)
    echo.echo_success(f"{type(datum).__name__} {datum.pk} exported as {fmt} to {output}")


@spectra.command("plot")
@_node_argument("spectra")
@_output_option("PNG file to write.")
@_force_option()
@decorators.with_dbenv()
def spectra_plot(datum, output, force):
    """Plot the mean spectrum per label, stacked, with the moment windows shaded.

    Rows without a label (NaN) are left out, with a warning.

    \b
    Example:
        verdi data xesml spectra plot 1234 -o spectra.png
    """
    from aiida_xesml.plotting import mean_spectra_plot

    output = _plot_output(output, force)
    keep = _finite_labels(datum.row_labels, f"spectra {datum.pk}")
    _plot(mean_spectra_plot, datum.energy_ev, datum.intensity[keep], datum.row_labels[keep], output)


# ---------------------------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------------------------

@dataset.command("list")
@decorators.with_dbenv()
def dataset_list():
    """List the data sets: rows × features, moments and labels.

    \b
    Example:
        verdi data xesml dataset list
    """
    _list("dataset", ["Rows", "Features", "Moments", "Labels"],
          lambda a: (a.get("n_rows"), a.get("n_features"), len(a.get("moment_names") or []),
                     _labels_text(a.get("labels"))))


@dataset.command("show")
@_node_argument("dataset")
@decorators.with_dbenv()
def dataset_show(datum):
    """Show a data set: sizes, moment names, labels, descriptor settings and moment windows.

    \b
    Example:
        verdi data xesml dataset show 1240
    """
    attributes = datum.base.attributes
    _summary(datum, [("Rows", datum.n_rows), ("Features", datum.n_features),
                     ("Moments", ", ".join(datum.moment_names)),
                     ("Label range", "(no labels)" if attributes.get("label_min") is None
                      else f"{attributes.get('label_min'):g} to {attributes.get('label_max'):g}")])
    _section("Rows per label")
    _table(_label_counts(datum.row_labels), headers=("Label", "Rows"))
    _settings(attributes.get("descriptor", {}), "Descriptor")
    _section("Windows (eV)")
    windows = attributes.get("windows", {})
    if windows:
        _table([(name, *pair) for name, pair in windows.items()], headers=("Window", "From", "To"))
    else:
        echo.echo("(none)")


@dataset.command("export")
@_node_argument("dataset")
@_format_option()
@_output_option("File to write.")
@_force_option()
@decorators.with_dbenv()
def dataset_export(datum, fmt, output, force):
    """Export a data set as npz (all arrays) or csv (one row per site).

    The csv columns are snapshot_index, site_index, label, the moments (by name) and the
    descriptors (descriptor_0 …).

    \b
    Example:
        verdi data xesml dataset export 1240 -o dataset.npz
        verdi data xesml dataset export 1240 --format csv -o dataset.csv
    """
    if fmt == "txt":
        raise click.ClickException(f"format 'txt' is for spectra only; export {type(datum).__name__} {datum.pk} "
                                   "with --format csv or npz")
    if fmt == "npz":
        _export_npz(datum, _check_output_file(output, force))
    else:
        descriptors, moments = datum.descriptors, datum.moments
        header = (["snapshot_index", "site_index", "label", *datum.moment_names]
                  + [f"descriptor_{j}" for j in range(descriptors.shape[1])])
        columns = [datum.snapshot_index, datum.site_index, datum.row_labels, *moments.T, *descriptors.T]
        _write_csv(_check_output_file(output, force), header, columns)
    echo.echo_success(f"{type(datum).__name__} {datum.pk} exported as {fmt} to {output}")


def _parity(emulator_node, dataset_node, output: Path) -> None:
    """Parity plot of an emulator's predictions on every row of a data set against its moments."""
    from aiida_xesml.plotting import parity_plot

    if emulator_node.n_features != dataset_node.n_features:
        raise click.ClickException(
            f"emulator {emulator_node.pk} takes {emulator_node.n_features} features but dataset {dataset_node.pk} "
            f"has {dataset_node.n_features}")
    n_outputs = emulator_node.base.attributes.get("n_outputs")
    if n_outputs != len(dataset_node.moment_names):
        raise click.ClickException(
            f"emulator {emulator_node.pk} predicts {n_outputs} targets but dataset {dataset_node.pk} has "
            f"{len(dataset_node.moment_names)} moments")
    if emulator_node.target_names and list(emulator_node.target_names) != list(dataset_node.moment_names):
        raise click.ClickException(
            f"emulator {emulator_node.pk} targets {emulator_node.target_names} differ from the moments of dataset "
            f"{dataset_node.pk}: {dataset_node.moment_names}")
    keep = _finite_labels(dataset_node.row_labels, f"dataset {dataset_node.pk}")
    descriptors = dataset_node.descriptors[keep]
    predicted = emulator_node.get_emulator().predict(descriptors)
    _plot(parity_plot, dataset_node.moments[keep], predicted, dataset_node.moment_names, dataset_node.row_labels[keep],
          output)


@dataset.command("plot")
@_node_argument("dataset")
@_node_option("emulator", "-e", "--emulator",
              help="Emulator whose predictions to plot against the moments (required: a data set alone has "
                   "no figure).")
@_output_option("PNG file to write.")
@_force_option()
@decorators.with_dbenv()
def dataset_plot(datum, emulator, output, force):
    """Parity plot of an emulator on this data set: predicted against known moments.

    The same figure as `verdi data xesml emulator plot EMULATOR --dataset PK`.

    \b
    Example:
        verdi data xesml dataset plot 1240 --emulator 1250 -o parity.png
    """
    if emulator is None:
        raise click.ClickException(
            f"a data set has no figure of its own: give --emulator PK for the parity plot of an emulator on dataset "
            f"{datum.pk} (see `verdi data xesml emulator list`)")
    _parity(emulator, datum, _plot_output(output, force))


# ---------------------------------------------------------------------------------------------
# emulator
# ---------------------------------------------------------------------------------------------

@emulator.command("list")
@decorators.with_dbenv()
def emulator_list():
    """List the emulators: features -> outputs and the worst held-out Pearson r.

    \b
    Example:
        verdi data xesml emulator list
    """
    _list("emulator", ["Features → outputs", "Pearson r (min)"],
          lambda a: (f"{a.get('n_features')} → {a.get('n_outputs')}", a.get("pearson_r_min")))


@emulator.command("show")
@_node_argument("emulator")
@decorators.with_dbenv()
def emulator_show(datum):
    """Show an emulator: held-out metrics per target (Pearson r, R², RMSE) and its settings.

    \b
    Example:
        verdi data xesml emulator show 1250
    """
    attributes = datum.base.attributes
    _summary(datum, [("Features", datum.n_features), ("Outputs", attributes.get("n_outputs")),
                     ("Pearson r (min)", _number(attributes.get("pearson_r_min")))])
    _section("Held-out metrics per target")
    by_target = attributes.get("metrics_by_target", {})
    if not by_target and datum.metrics:  # stored without target names: number the targets
        metrics = datum.metrics
        n = max(len(values) for values in metrics.values())
        by_target = {f"y{i}": {key: values[i] for key, values in metrics.items()} for i in range(n)}
    if by_target:
        _table([(name, values.get("pearson_r"), values.get("r2"), values.get("rmse"))
                for name, values in by_target.items()], headers=("Target", "Pearson r", "R²", "RMSE"))
    else:
        echo.echo("(none)")
    _settings(datum.settings)


@emulator.command("export")
@_node_argument("emulator")
@_format_option()
@_output_option("File to write.")
@_force_option()
@decorators.with_dbenv()
def emulator_export(datum, fmt, output, force):
    """Export an emulator's arrays (weights, scalers) as npz; other formats are not available.

    The npz also holds `attributes_json` (metrics, settings, target names). It reads with
    numpy.load(path, allow_pickle=False); MLPEmulator.from_arrays rebuilds the model.

    \b
    Example:
        verdi data xesml emulator export 1250 -o emulator.npz
    """
    _only_npz(datum, fmt)
    _export_npz(datum, _check_output_file(output, force))
    echo.echo_success(f"{type(datum).__name__} {datum.pk} exported as {fmt} to {output}")


@emulator.command("plot")
@_node_argument("emulator")
@_node_option("dataset", "-d", "--dataset", required=True,
              help="Data set whose descriptors to predict and whose moments to compare with.")
@_output_option("PNG file to write.")
@_force_option()
@decorators.with_dbenv()
def emulator_plot(datum, dataset, output, force):
    """Parity plot: the emulator's predictions on every row of a data set against the known moments.

    Rows used in training are included; the held-out metrics are in `show`.

    \b
    Example:
        verdi data xesml emulator plot 1250 --dataset 1240 -o parity.png
    """
    _parity(datum, dataset, _plot_output(output, force))


# ---------------------------------------------------------------------------------------------
# eca
# ---------------------------------------------------------------------------------------------

@eca.command("list")
@decorators.with_dbenv()
def eca_list():
    """List the ECA nodes: components, features and the variance of the moments they cover.

    \b
    Example:
        verdi data xesml eca list
    """
    _list("eca", ["Components", "Features", "Covered variance"],
          lambda a: (a.get("n_components"), a.get("n_features"), (a.get("covered_variance") or [None])[-1]))


@eca.command("show")
@_node_argument("eca")
@decorators.with_dbenv()
def eca_show(datum):
    """Show an ECA: cumulative covered variance of moments (Y) and descriptors (X) per component.

    \b
    Example:
        verdi data xesml eca show 1260
    """
    _summary(datum, [("Components", datum.n_components), ("Features", datum.n_features),
                     ("Targets", ", ".join(datum.target_names))])
    _section("Cumulative covered variance")
    _table([(k, y, x) for k, (y, x) in enumerate(zip(datum.covered_variance, datum.covered_variance_x), start=1)],
           headers=("Components", "Moments (Y)", "Descriptors (X)"))
    if datum.target_r2:
        _section("Emulator held-out R² per target")
        names = datum.target_names or [f"y{i}" for i in range(len(datum.target_r2))]
        _table(list(zip(names, datum.target_r2)), headers=("Target", "R²"))
    _settings(datum.base.attributes.get("settings", {}))


@eca.command("export")
@_node_argument("eca")
@_format_option()
@_output_option("File to write.")
@_force_option()
@decorators.with_dbenv()
def eca_export(datum, fmt, output, force):
    """Export an ECA's arrays (components, covered variance, its emulator as emulator__*) as npz.

    The npz also holds `attributes_json`. Other formats are not available.

    \b
    Example:
        verdi data xesml eca export 1260 -o eca.npz
    """
    _only_npz(datum, fmt)
    _export_npz(datum, _check_output_file(output, force))
    echo.echo_success(f"{type(datum).__name__} {datum.pk} exported as {fmt} to {output}")


@eca.command("plot")
@_node_argument("eca")
@_output_option("PNG file to write.")
@_force_option()
@decorators.with_dbenv()
def eca_plot(datum, output, force):
    """Plot the cumulative variance covered by the first 1..k components, in Y and in X.

    \b
    Example:
        verdi data xesml eca plot 1260 -o covered_variance.png
    """
    from aiida_xesml.plotting import covered_variance_plot

    _plot(covered_variance_plot, datum.covered_variance, datum.covered_variance_x, _plot_output(output, force))
