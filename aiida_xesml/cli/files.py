"""Files the ``verdi data xesml`` commands write: the output options and checks, npz and csv writers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click

FORMATS = ("npz", "csv", "txt")


def output_option(help_text: str, required: bool = True):
    return click.option("-o", "--output", required=required, default=None,
                        type=click.Path(path_type=Path, dir_okay=True), help=help_text)


def force_option():
    return click.option("-f", "--force", is_flag=True, help="Overwrite the output if it already exists.")


def format_option():
    return click.option("-F", "--format", "fmt", type=click.Choice(FORMATS), default="npz", show_default=True,
                        help="npz: every array of the node; csv: one table; txt: one text file per spectrum.")


def check_output_file(path: Path, force: bool) -> Path:
    """Refuse an existing file without ``--force`` and any existing directory; create parent folders."""
    if path.is_dir():
        raise click.ClickException(f"output {str(path)!r} is a directory; give a file name")
    if path.exists() and not force:
        raise click.ClickException(f"output {str(path)!r} already exists; use --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def check_output_folder(path: Path, force: bool) -> Path:
    if path.exists() and not path.is_dir():
        raise click.ClickException(f"output {str(path)!r} exists and is not a folder; txt export writes a folder")
    if path.exists() and not force:
        raise click.ClickException(f"output {str(path)!r} already exists; use --force to write into it")
    path.mkdir(parents=True, exist_ok=True)
    return path


def only_npz(node, fmt: str) -> None:
    if fmt != "npz":
        raise click.ClickException(
            f"format {fmt!r} is not available for {type(node).__name__} {node.pk}: its arrays have different "
            "shapes and make no single table; use --format npz"
        )


def export_npz(node, path: Path) -> None:
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


def write_csv(path: Path, header: list[str], columns: list) -> None:
    """Write columns (1-D arrays of equal length) as CSV; floats in their shortest exact form."""
    rows = zip(*(column.tolist() for column in columns))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def exported(node, fmt: str, output: Path) -> None:
    from aiida.cmdline.utils import echo

    echo.echo_success(f"{type(node).__name__} {node.pk} exported as {fmt} to {output}")
