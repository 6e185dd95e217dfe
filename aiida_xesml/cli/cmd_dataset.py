"""``verdi data xesml dataset``: descriptors and moments of emitting sites, and the learning curve."""

import click
from aiida.cmdline.groups import VerdiCommandGroup
from aiida.cmdline.utils import decorators, echo

from aiida_xesml.cli.figures import check_emulator_fits, curve_models, parity, plot, plot_output, trained_on
from aiida_xesml.cli.files import (
    check_output_file,
    export_npz,
    exported,
    force_option,
    format_option,
    output_option,
    write_csv,
)
from aiida_xesml.cli.params import data_argument, data_option
from aiida_xesml.cli.tables import label_counts, labels_text, list_nodes, section, settings_table, summary, table


@click.group("dataset", cls=VerdiCommandGroup)
def dataset():
    """Descriptors and spectral moments of emitting sites, the emulator's training data (`xesml.dataset`).

    \b
    Example:
        verdi data xesml dataset list
        verdi data xesml dataset show 1240
        verdi data xesml dataset learning-curve 1240 -o learning_curve.png
    """


@dataset.command("list")
@decorators.with_dbenv()
def dataset_list():
    """List the data sets: rows × features, moments and labels.

    \b
    Example:
        verdi data xesml dataset list
    """
    list_nodes("dataset", ["Rows", "Features", "Moments", "Labels"],
               lambda a: (a.get("n_rows"), a.get("n_features"), len(a.get("moment_names") or []),
                          labels_text(a.get("labels"))))


@dataset.command("show")
@data_argument("dataset")
@decorators.with_dbenv()
def dataset_show(datum):
    """Show a data set: sizes, moment names, labels, descriptor settings and moment windows.

    \b
    Example:
        verdi data xesml dataset show 1240
    """
    attributes = datum.base.attributes
    summary(datum, [("Rows", datum.n_rows), ("Features", datum.n_features),
                    ("Moments", ", ".join(datum.moment_names)),
                    ("Label range", "(no labels)" if attributes.get("label_min", None) is None
                     else f"{attributes.get('label_min'):g} to {attributes.get('label_max'):g}")])
    section("Rows per label")
    table(label_counts(datum.row_labels), headers=("Label", "Rows"))
    settings_table(attributes.get("descriptor", {}), "Descriptor")
    section("Windows (eV)")
    windows = attributes.get("windows", {})
    if windows:
        table([(name, *pair) for name, pair in windows.items()], headers=("Window", "From", "To"))
    else:
        echo.echo("(none)")


@dataset.command("export")
@data_argument("dataset")
@format_option()
@output_option("File to write.")
@force_option()
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
        export_npz(datum, check_output_file(output, force))
    else:
        descriptors, moments = datum.descriptors, datum.moments
        header = (["snapshot_index", "site_index", "label", *datum.moment_names]
                  + [f"descriptor_{j}" for j in range(descriptors.shape[1])])
        columns = [datum.snapshot_index, datum.site_index, datum.row_labels, *moments.T, *descriptors.T]
        write_csv(check_output_file(output, force), header, columns)
    exported(datum, fmt, output)


@dataset.command("plot")
@data_argument("dataset")
@data_option("emulator", "-e", "--emulator",
             help="Emulator whose predictions to plot against the moments (required: a data set alone has no figure).")
@output_option("PNG file to write.")
@force_option()
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
    parity(emulator, datum, plot_output(output, force))


@dataset.command("learning-curve")
@data_argument("dataset")
@data_option("emulator", "-e", "--emulator",
             help="Emulator whose selected hyper-parameters and feature sets to use (default: the newest one trained "
                  "on this data set, else mid-grid defaults on all columns).")
@output_option("PNG file to write (without it, only the table is printed).", required=False)
@force_option()
@click.option("--fast", is_flag=True, help="One repeat, three training sizes and at most 100 iterations per network.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Repeats with other held-out snapshots (ignored with --fast).")
@decorators.with_dbenv()
def dataset_learning_curve(datum, emulator, output, force, fast, repeats):
    """Held-out Pearson r per moment against the number of training sites, ridge baseline and network.

    In each repeat, 20 % of the snapshots are held out whole; the training set grows by whole snapshots
    in a seeded random order (aiida_xesml.ml.learning_curve). The figure and the table show the mean
    over the repeats (the band: ± one standard deviation). Nothing is stored.

    \b
    Example:
        verdi data xesml dataset learning-curve 1240 -o learning_curve.png
        verdi data xesml dataset learning-curve 1240 --fast
    """
    import warnings

    import numpy as np

    from aiida_xesml.cli.figures import FAST_CURVE
    from aiida_xesml.ml.learning_curve import DEFAULT_TRAIN_FRACTIONS, learning_curve
    from aiida_xesml.plotting import learning_curve_plot

    output = plot_output(output, force) if output is not None else None
    if emulator is None:
        emulator = trained_on(datum)
    else:
        check_emulator_fits(emulator, datum)
    selected = emulator is not None and bool(emulator.base.attributes.get("selection", None))
    source = (f"the selection of emulator {emulator.pk}" if selected else
              f"defaults (emulator {emulator.pk} has no selection record)" if emulator is not None else
              "defaults (no emulator with a selection record was trained on this data set)")
    models = curve_models(emulator if selected else None, datum.n_features, fast)
    X, Y = datum.get_xy()
    groups, names = datum.snapshot_index, datum.moment_names
    settings = ({"n_repeats": FAST_CURVE["n_repeats"], "train_fractions": FAST_CURVE["train_fractions"]} if fast
                else {"n_repeats": repeats, "train_fractions": DEFAULT_TRAIN_FRACTIONS})
    echo.echo_report(f"learning curve of dataset {datum.pk} ({len(X)} sites, {len(np.unique(groups))} snapshots), "
                     f"hyper-parameters from {source}")
    curves = {}
    for kind, (estimator, columns, text) in models.items():
        echo.echo_report(f"{kind}: {text}")
        try:
            curves[kind] = learning_curve(estimator, X[:, columns], Y, groups, **settings)
        except ValueError as exc:
            raise click.ClickException(f"cannot compute a learning curve of dataset {datum.pk}: {exc}") from exc
    for kind, curve in curves.items():
        section(f"{kind}: held-out Pearson r (mean over {curve['pearson_r'].shape[1]} repeat(s); "
                f"{int(curve['n_test_sites'].mean())} held-out sites per repeat)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a size where every repeat is undefined: NaN
            mean = np.nanmean(curve["pearson_r"], axis=1)
        rows = [(f"{sites.mean():.0f} ({k})", *row) for sites, k, row in
                zip(curve["n_train_sites"], curve["n_train_snapshots"], mean)]
        table(rows, headers=("Sites (snapshots)", *names), floatfmt=".3f")
    if output is not None:
        plot(learning_curve_plot, curves, names, output)
