"""``verdi data xesml eca``: emulator-based component analyses and the variance they cover."""

import click
from aiida.cmdline.groups import VerdiCommandGroup
from aiida.cmdline.utils import decorators, echo

from aiida_xesml.cli.figures import plot, plot_output
from aiida_xesml.cli.files import check_output_file, export_npz, exported, force_option, format_option, only_npz, output_option
from aiida_xesml.cli.params import data_argument
from aiida_xesml.cli.tables import list_nodes, section, settings_table, summary, table


@click.group("eca", cls=VerdiCommandGroup)
def eca():
    """Emulator-based component analyses (`xesml.eca`).

    \b
    Example:
        verdi data xesml eca list
        verdi data xesml eca plot 1260 -o covered_variance.png
    """


@eca.command("list")
@decorators.with_dbenv()
def eca_list():
    """List the ECA nodes: components, features and the variance of the moments they cover (training, held out).

    \b
    Example:
        verdi data xesml eca list
    """
    list_nodes("eca", ["Components", "Features", "Covered variance", "Held out"],
               lambda a: (a.get("n_components"), a.get("n_features"), (a.get("covered_variance") or [None])[-1],
                          (a.get("covered_variance_held_out") or [None])[-1]))


@eca.command("show")
@data_argument("eca")
@decorators.with_dbenv()
def eca_show(datum):
    """Show an ECA: cumulative covered variance of moments (Y) and descriptors (X) per component, on the rows
    it was fitted on and on the emulator's held-out rows.

    \b
    Example:
        verdi data xesml eca show 1260
    """
    attributes = datum.base.attributes
    n_train, n_test = attributes.get("n_train", None), attributes.get("n_test", None)
    rows = [("Components", datum.n_components), ("Features", datum.n_features),
            ("Targets", ", ".join(datum.target_names))]
    if n_train is not None:
        rows += [("Fitted on", f"{n_train} training rows"), ("Held out", f"{n_test} rows")]
    summary(datum, rows)
    held_y, held_x = datum.covered_variance_held_out, attributes.get("covered_variance_x_held_out", None) or []
    section("Cumulative covered variance")
    columns = [datum.covered_variance, datum.covered_variance_x]
    headers = ["Components", "Moments (Y)", "Descriptors (X)"]
    if held_y:
        columns += [held_y, held_x or [None] * len(held_y)]
        headers += ["Moments (Y), held out", "Descriptors (X), held out"]
    table([(k, *values) for k, values in enumerate(zip(*columns), start=1)], headers=headers)
    if not held_y:
        echo.echo("(no held-out covered variance: fitted before held-out scoring, or without a split)")
    if datum.target_r2:
        section("Emulator held-out R² per target")
        names = datum.target_names or [f"y{i}" for i in range(len(datum.target_r2))]
        table(list(zip(names, datum.target_r2)), headers=("Target", "R²"))
    settings_table(attributes.get("settings", {}))


@eca.command("export")
@data_argument("eca")
@format_option()
@output_option("File to write.")
@force_option()
@decorators.with_dbenv()
def eca_export(datum, fmt, output, force):
    """Export an ECA's arrays (components, covered variance, its emulator as emulator__*) as npz.

    The npz also holds `attributes_json`. Other formats are not available.

    \b
    Example:
        verdi data xesml eca export 1260 -o eca.npz
    """
    only_npz(datum, fmt)
    export_npz(datum, check_output_file(output, force))
    exported(datum, fmt, output)


@eca.command("plot")
@data_argument("eca")
@output_option("PNG file to write.")
@force_option()
@decorators.with_dbenv()
def eca_plot(datum, output, force):
    """Plot the cumulative variance covered by the first 1..k components, in Y and in X, on the training rows
    and (when the ECA has them) on the emulator's held-out rows.

    \b
    Example:
        verdi data xesml eca plot 1260 -o covered_variance.png
    """
    from aiida_xesml.plotting import covered_variance_plot

    held_out = datum.covered_variance_held_out or None
    plot(covered_variance_plot, datum.covered_variance, datum.covered_variance_x, plot_output(output, force),
         covered_y_held_out=held_out)
