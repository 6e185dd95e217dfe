"""``verdi data xesml spectra``: Kβ site spectra on a common energy grid."""

import click
from aiida.cmdline.groups import VerdiCommandGroup
from aiida.cmdline.utils import decorators

from aiida_xesml.cli.figures import finite_labels, plot, plot_output
from aiida_xesml.cli.files import (
    check_output_file,
    check_output_folder,
    export_npz,
    exported,
    force_option,
    format_option,
    output_option,
    write_csv,
)
from aiida_xesml.cli.params import data_argument
from aiida_xesml.cli.tables import label_counts, list_nodes, section, settings_table, shape_of, summary, table


@click.group("spectra", cls=VerdiCommandGroup)
def spectra():
    """Kβ emission spectra of emitting sites on a common energy grid (`xesml.spectra`).

    \b
    Example:
        verdi data xesml spectra list
        verdi data xesml spectra plot 1234 -o spectra.png
    """


@spectra.command("list")
@decorators.with_dbenv()
def spectra_list():
    """List the spectra nodes: number of spectra and of energy points.

    \b
    Example:
        verdi data xesml spectra list
    """
    list_nodes("spectra", ["Spectra", "Energy points"], lambda a: (a.get("n_spectra"), shape_of(a, "energy_ev", 0)))


@spectra.command("show")
@data_argument("spectra")
@decorators.with_dbenv()
def spectra_show(datum):
    """Show a spectra node: grid, spectra per label and the parameters they were made with.

    \b
    Example:
        verdi data xesml spectra show 1234
    """
    energy = datum.energy_ev
    step = float(energy[1] - energy[0]) if len(energy) > 1 else float("nan")
    summary(datum, [("Spectra", datum.n_spectra), ("Energy points", len(energy)),
                    ("Energy range (eV)", f"{energy[0]:g} to {energy[-1]:g}, step {step:g}")])
    section("Spectra per label")
    table(label_counts(datum.row_labels), headers=("Label", "Spectra"))
    settings_table(datum.parameters, "Parameters")


@spectra.command("export")
@data_argument("spectra")
@format_option()
@output_option("File (npz, csv) or folder (txt) to write.")
@force_option()
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
        export_npz(datum, check_output_file(output, force))
    elif fmt == "csv":
        header = ["energy_eV"] + [f"snap{s}_site{i}_label{label:g}" for s, i, label in zip(snapshots, sites, labels)]
        write_csv(check_output_file(output, force), header, [energy, *intensity])
    else:
        folder = check_output_folder(output, force)
        width = max(4, len(str(len(intensity) - 1)))
        for row, (s, i, label) in enumerate(zip(snapshots, sites, labels)):
            name = folder / f"spectrum_{row:0{width}d}_snap{s}_site{i}.txt"
            header = (f"spectra node {datum.pk} row {row}: snapshot {s}, site {i}, label {label:g}\n"
                      "energy_eV intensity")
            np.savetxt(name, np.column_stack([energy, intensity[row]]), fmt="%.10g", header=header)
    exported(datum, fmt, output)


@spectra.command("plot")
@data_argument("spectra")
@output_option("PNG file to write.")
@force_option()
@decorators.with_dbenv()
def spectra_plot(datum, output, force):
    """Plot the mean spectrum per label, stacked, with the moment windows shaded.

    Rows without a label (NaN) are left out, with a warning.

    \b
    Example:
        verdi data xesml spectra plot 1234 -o spectra.png
    """
    from aiida_xesml.plotting import mean_spectra_plot

    output = plot_output(output, force)
    keep = finite_labels(datum.row_labels, f"spectra {datum.pk}")
    plot(mean_spectra_plot, datum.energy_ev, datum.intensity[keep], datum.row_labels[keep], output)
