"""``aiida-xesml reconstruct``: structure around Ge from a measured Kβ spectrum, through a fitted ECA."""

from pathlib import Path

import click

from aiida_xesml.cli import cli


def load_profile_of(ctx) -> None:
    """Load the ``-p`` profile, else the set-up profile, else the default profile (lazily, as demo does)."""
    from aiida import load_profile
    from aiida.common.exceptions import (
        MissingConfigurationError,
        ProfileConfigurationError,
    )
    from aiida.manage import get_manager

    from aiida_xesml.environment import DEFAULT_PROFILE

    name = ctx.obj.get("profile_name") if ctx.obj else None
    try:
        if name is None:
            loaded = get_manager().get_profile()
            if loaded is not None:
                return
            try:
                load_profile(DEFAULT_PROFILE, allow_switch=True)
                return
            except ProfileConfigurationError:
                name = None  # no set-up profile: the config's default
        load_profile(name, allow_switch=True)
    except (MissingConfigurationError, ProfileConfigurationError) as exc:
        raise click.ClickException(f"cannot load the AiiDA profile {name or '(default)'}: {exc}; "
                                   "run `aiida-xesml setup` or pass -p NAME") from exc


def load_node_of_type(pk: int, cls, what: str):
    """The node ``pk``, which must be an instance of ``cls``; a ClickException otherwise."""
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        node = orm.load_node(pk)
    except (NotExistent, MultipleObjectsError) as exc:
        raise click.ClickException(f"no node with pk {pk}: {what} expected") from exc
    if not isinstance(node, cls):
        raise click.ClickException(f"node {pk} is a {type(node).__name__}, not {what}")
    return node


def eca_settings(eca) -> tuple[int, dict]:
    """(n_atoms, windows) the ECA was trained with: its descriptor, the windows of its settings or data set."""
    from aiida_xesml.ml.moments import DEFAULT_WINDOWS

    descriptor = eca.base.attributes.get("descriptor", {}) or {}
    n_atoms = int(descriptor.get("n_atoms", 20))
    windows = (eca.base.attributes.get("settings", {}) or {}).get("windows")
    if not windows:
        try:  # fit_eca's data set records the windows of its moments
            windows = eca.creator.inputs.dataset.base.attributes.get("windows", None)
        except Exception:  # noqa: BLE001  (no creator or no dataset input: the defaults)
            windows = None
    windows = windows or DEFAULT_WINDOWS
    return n_atoms, {name: [float(lo), float(hi)] for name, (lo, hi) in windows.items()}


@cli.command("reconstruct")
@click.argument("spectrum_file", metavar="SPECTRUM", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--eca", "eca_pk", required=True, type=int, metavar="PK", help="Pk of the fitted XesEcaData.")
@click.option("--reference-ev", required=True, type=float, metavar="E",
              help="Energy (eV, on the file's axis) of the calculations' valence-band maximum; energies are shifted by -E.")
@click.option("--label", type=float, default=None,
              help="A number for the spectrum, e.g. the pressure in GPa (default: none).")
@click.option("--moment-orders", default="0,1", show_default=True,
              help="Moments the inverse matches (comma-separated). M0 depends on the intensity scale: "
                   "use 1 alone unless the file is in the calculations' units (states/eV).")
@click.pass_context
def cmd_reconstruct(ctx, spectrum_file, eca_pk, reference_ev, label, moment_orders):
    """Reconstruct the structure around Ge from a measured spectrum SPECTRUM.

    SPECTRUM is a text file of two columns, energy (eV) and intensity; '#' comment lines only at
    the top; at most 5 MB (aiida_xesml.ml.limits.MAX_SPECTRUM_FILE_BYTES). The file is stored as an XyData, put on the common grid (xesml.measured_spectrum) and
    reconstructed with the ECA (xesml.reconstruct), all with provenance.

    \b
    Example:
        aiida-xesml reconstruct kbeta.txt --eca 1234 --reference-ev 11098.5 --label 0
    """
    import sys

    import numpy as np
    from ase.data import chemical_symbols

    from aiida_xesml.ml.measured import (
        DEFAULT_GRID,
        grid_from,
        read_spectrum_file,
        sha256_hex,
        shift_and_interpolate,
    )
    from aiida_xesml.ml.descriptors import n_features
    from aiida_xesml.ml.moments import moment_names, spectral_moments

    # 1. The file, checked before anything is stored.
    try:
        orders = [int(value) for value in moment_orders.replace(" ", ",").split(",") if value]
        if not orders or any(order not in (0, 1, 2, 3) for order in orders):
            raise ValueError
    except ValueError:
        raise click.ClickException(f"--moment-orders must be numbers among 0, 1, 2, 3; got {moment_orders!r}") from None
    if label is not None and not np.isfinite(label):
        raise click.ClickException(f"--label must be a finite number; got {label}")
    try:
        energy, intensity, content = read_spectrum_file(spectrum_file)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"{spectrum_file}: cannot read the file: {exc}") from exc

    # 2. The ECA, its descriptor and windows; the moments of the spectrum as a dry run.
    load_profile_of(ctx)
    from aiida import orm

    from aiida_xesml.calculations.measured_spectrum import measured_spectrum
    from aiida_xesml.calculations.reconstruct import reconstruct
    from aiida_xesml.ml.progress import show_progress
    from aiida_xesml.data.eca import XesEcaData

    eca = load_node_of_type(eca_pk, XesEcaData, "an XesEcaData (xesml.eca)")
    n_atoms, windows = eca_settings(eca)
    if eca.n_features is not None and n_features(n_atoms) != eca.n_features:
        raise click.ClickException(
            f"XesEcaData {eca.pk} was fitted on {eca.n_features} descriptor features, but its descriptor settings give "
            f"n_atoms = {n_atoms} ({n_features(n_atoms)} features); use an ECA made by xesml.analysis or fit_eca, "
            "which records its descriptor")
    if eca.target_names and len(eca.target_names) != len(moment_names(windows)):
        raise click.ClickException(
            f"XesEcaData {eca.pk} predicts {len(eca.target_names)} moments but its windows {sorted(windows)} give "
            f"{len(moment_names(windows))}; use an ECA made by xesml.analysis or fit_eca, which records its windows")
    try:
        grid = grid_from(DEFAULT_GRID)
        spectral_moments(grid, shift_and_interpolate(energy, intensity, reference_ev, grid), windows=windows)
    except ValueError as exc:
        raise click.ClickException(f"{spectrum_file} with --reference-ev {reference_ev}: {exc}") from exc

    # 3. Store and run, with provenance.
    xy = orm.XyData()
    xy.set_x(energy, "energy", "eV")
    xy.set_y(intensity, "intensity", "arb. units")
    xy.base.attributes.set("filename", spectrum_file.name)
    xy.base.attributes.set("sha256", sha256_hex(content))
    xy.base.repository.put_object_from_bytes(content, spectrum_file.name)
    xy.label = spectrum_file.name
    xy.description = f"measured Kβ spectrum from {spectrum_file.name}"
    xy.store()
    inputs = {"spectrum": xy, "reference_ev": orm.Float(reference_ev), "grid": orm.List(list(DEFAULT_GRID))}
    if label is not None:
        inputs["label"] = orm.Float(label)
    try:
        spectra = measured_spectrum(**inputs)["spectra"]
        parameters = {"ensemble_mean": False, "n_atoms": n_atoms, "windows": windows, "moment_orders": orders}
        with show_progress(sys.stderr.isatty()):  # a bar over the inverse's starts, on a terminal only
            outputs, node = reconstruct.run_get_node(eca=eca, spectra=spectra, parameters=orm.Dict(parameters))
    except Exception as exc:
        raise click.ClickException(f"reconstruction failed ({type(exc).__name__}): {exc} "
                                   f"(XyData {xy.pk} is stored)") from exc
    result = outputs["reconstruction"]

    # 4. Report.
    names = moment_names(windows)
    moments = result.get_array("target_moments")[0]
    click.echo(f"Spectrum {spectrum_file.name} (sha256 {xy.base.attributes.get('sha256')[:12]}…), "
               f"{len(energy)} points, reference {reference_ev:g} eV")
    click.echo("Moments (M0 intensity, M1 eV, M2 eV, M3 skewness):")
    for window in windows:
        values = [moments[names.index(f"{window}_m{order}")] for order in range(4)]
        title = {"kbpp": "Kβ″", "kb2": "Kβ2"}.get(window, window)
        click.echo(f"  {title:6s} " + "  ".join(f"M{order} = {value:10.4f}" for order, value in enumerate(values)))
    distances = result.get_array("distances_angstrom")[0][:8]
    species = result.get_array("species_z")[0][:8]
    click.echo("Reconstructed neighbours of the emitting Ge (Å):")
    for index, (distance, z) in enumerate(zip(distances, species), start=1):
        symbol = chemical_symbols[int(z)] if 0 < int(z) < len(chemical_symbols) else "?"
        text = f"{distance:.3f}" if np.isfinite(distance) else "—"
        click.echo(f"  {index:2d}  {symbol:2s}  {text}")
    shell = float(result.get_array("first_shell_mean_angstrom")[0])
    shell_text = f"{shell:.3f} Å" if np.isfinite(shell) else "— (no O within the cutoff)"
    click.echo(f"First-shell mean Ge–O: {shell_text}")
    click.echo(f"CN: {int(result.get_array('cn')[0])} (fractional {float(result.get_array('cn_fractional')[0]):.2f})")
    click.echo(f"Stored: XyData {xy.pk}, spectra {spectra.pk}, reconstruction {result.pk} "
               f"(summary {outputs['summary'].pk}, calculation {node.pk})")
