"""``aiida-xesml reconstruct``: structure around Ge from a measured Kβ spectrum, through a fitted ECA."""

from pathlib import Path

import click

from aiida_xesml.cli import cli
from aiida_xesml.cli.common import load_node_of_type, load_profile_of
from aiida_xesml.cli.tables import pm


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


def training_inputs(eca) -> dict:
    """The data set, emulator (with its ensemble) and split an ECA was fitted with, from its provenance (fit_eca's
    inputs); empty for an ECA without them."""
    try:
        inputs = eca.creator.inputs
    except Exception:  # noqa: BLE001  (no creator: an ECA stored by hand)
        return {}
    return {name: inputs[name] for name in ("dataset", "emulator", "split") if name in inputs}


def training_spectra(dataset):
    """The spectra a data set's moments came from (build_dataset <- compute_moments <- spectra), or None."""
    try:
        return dataset.creator.inputs.moments.creator.inputs.spectra
    except Exception:  # noqa: BLE001  (a data set stored by hand: no provenance to follow)
        return None


@cli.command("reconstruct")
@click.argument("spectrum_file", metavar="SPECTRUM", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--eca", "eca_pk", required=True, type=int, metavar="PK", help="Pk of the fitted XesEcaData.")
@click.option("--reference-ev", type=float, default=None, metavar="E",
              help="Only for a spectrum already on the calculations' axis convention: the energy (eV, on the file's "
                   "axis) of the calculations' valence-band maximum; the moments are then matched directly. Without "
                   "it (the default) the windows are found from the spectrum's own Kβ″ and Kβ2 peaks and only "
                   "shift- and scale-free targets are matched: no reference energy and no intensity unit needed.")
@click.option("--label", type=float, default=None,
              help="A number for the spectrum, e.g. the pressure in GPa (default: none).")
@click.option("--moment-orders", default="0,1", show_default=True,
              help="With --reference-ev: the moments the inverse matches (comma-separated). M0 depends on the "
                   "intensity scale: use 1 alone unless the file is in the calculations' units (states/eV).")
@click.option("--method", type=click.Choice(["population", "single_point", "linear"]), default="population",
              show_default=True,
              help="population: weights over the ECA's training sites whose mixture moments match the spectrum's; "
                   "single_point: the published inverse, one point in ECA score space; linear: a ridge readout of the "
                   "moments fitted on the training sites' computed moments (no emulator). The last two need "
                   "--reference-ev.")
@click.option("--noise", type=float, default=None, metavar="SIGMA",
              help="Standard deviation of the intensity per point, in the file's unit (default: estimated from the "
                   "data); sets the error bars of the measured targets.")
@click.pass_context
def cmd_reconstruct(ctx, spectrum_file, eca_pk, reference_ev, label, moment_orders, method, noise):
    """Reconstruct the structure around Ge from a measured spectrum SPECTRUM.

    SPECTRUM is a text file of two columns, energy (eV, on any absolute axis) and intensity (any unit,
    background subtracted); '#' comment lines only at the top; at most 5 MB
    (aiida_xesml.ml.limits.MAX_SPECTRUM_FILE_BYTES). The file is stored as an XyData; its Kβ″ and Kβ2
    peaks place the moment windows, its shift-free targets are computed (xesml.measured_targets) and
    the population of training sites whose spectra match them is found (xesml.reconstruct), with
    provenance. CN and distances are printed with their spread over the emulator ensemble (±).

    \b
    Example:
        aiida-xesml reconstruct kbeta.txt --eca 1234 --label 0
    """
    import numpy as np

    from aiida_xesml.ml.measured import read_spectrum_file, sha256_hex

    # 1. The file and the options, checked before anything is stored.
    try:
        orders = [int(value) for value in moment_orders.replace(" ", ",").split(",") if value]
        if not orders or any(order not in (0, 1, 2, 3) for order in orders):
            raise ValueError
    except ValueError:
        raise click.ClickException(f"--moment-orders must be numbers among 0, 1, 2, 3; got {moment_orders!r}") from None
    if label is not None and not np.isfinite(label):
        raise click.ClickException(f"--label must be a finite number; got {label}")
    if noise is not None and not (np.isfinite(noise) and noise >= 0):
        raise click.ClickException(f"--noise must be a standard deviation >= 0; got {noise}")
    if reference_ev is None and method != "population":
        raise click.ClickException(f"--method {method} reads the moments themselves: give --reference-ev, or use "
                                   "the default population method with shift-free targets")
    try:
        energy, intensity, content = read_spectrum_file(spectrum_file)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"{spectrum_file}: cannot read the file: {exc}") from exc

    # 2. The ECA, its descriptor, windows and training data.
    load_profile_of(ctx)
    from aiida import orm

    from aiida_xesml.data.eca import XesEcaData
    from aiida_xesml.ml.descriptors import n_features
    from aiida_xesml.ml.moments import moment_names

    eca = load_node_of_type(eca_pk, XesEcaData, "an XesEcaData (xesml.eca)")
    n_atoms, windows = eca_settings(eca)
    full = n_features(n_atoms)
    if eca.feature_columns is None and eca.n_features is not None and full != eca.n_features:
        raise click.ClickException(
            f"XesEcaData {eca.pk} was fitted on {eca.n_features} descriptor features, but its descriptor settings give "
            f"n_atoms = {n_atoms} ({full} features); use an ECA made by xesml.analysis or fit_eca, "
            "which records its descriptor")
    if eca.target_names and len(eca.target_names) != len(moment_names(windows)):
        raise click.ClickException(
            f"XesEcaData {eca.pk} predicts {len(eca.target_names)} moments but its windows {sorted(windows)} give "
            f"{len(moment_names(windows))}; use an ECA made by xesml.analysis or fit_eca, which records its windows")
    # the file against the grid first (with a reference energy), then what the method needs from the provenance
    dry_run = None if reference_ev is None else _check_measured(energy, intensity, reference_ev, windows, None, noise)
    known = training_inputs(eca)
    method_needs = {"population": "reweight", "linear": "fit the linear readout on"}
    if method in ("population", "linear") and "dataset" not in known:
        raise click.ClickException(f"XesEcaData {eca.pk} has no data set in its provenance to {method_needs[method]}; use "
                                   "--method single_point with --reference-ev, or an ECA made by xesml.analysis or fit_eca")
    calculated = training_spectra(known["dataset"]) if reference_ev is None else None
    if reference_ev is None:
        if calculated is None:
            raise click.ClickException(f"the data set of XesEcaData {eca.pk} has no spectra in its provenance to place "
                                       "the windows from; give --reference-ev")
        dry_run = _check_measured(energy, intensity, reference_ev, windows, calculated, noise)

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
    try:
        outputs, node, stored = _run(xy, eca, known, calculated, reference_ev, label, windows, n_atoms, orders, method,
                                     noise)
    except Exception as exc:
        raise click.ClickException(f"reconstruction failed ({type(exc).__name__}): {exc} "
                                   f"(XyData {xy.pk} is stored)") from exc
    _report(spectrum_file, xy, energy, reference_ev, windows, dry_run, outputs, node, stored, method)


def _check_measured(energy, intensity, reference_ev, windows, calculated, noise):
    """The measured targets (shift-free path) or moments (reference path) as a dry run: a ClickException when the
    spectrum cannot give them, before anything is stored."""
    from aiida_xesml.ml.measured import DEFAULT_GRID, grid_from, measured_targets, shift_and_interpolate
    from aiida_xesml.ml.moments import spectral_moments

    try:
        if reference_ev is None:
            return measured_targets(energy, intensity, calculated.energy_ev, calculated.intensity.mean(axis=0),
                                    windows=windows, noise=noise)
        grid = grid_from(DEFAULT_GRID)
        return {"moments": spectral_moments(grid, shift_and_interpolate(energy, intensity, reference_ev, grid),
                                            windows=windows)}
    except ValueError as exc:
        where = "" if reference_ev is None else f" with --reference-ev {reference_ev}"
        raise click.ClickException(f"{energy.size}-point spectrum{where}: {exc}") from exc


def _run(xy, eca, known, calculated, reference_ev, label, windows, n_atoms, orders, method, noise):
    """measured_targets (or measured_spectrum) and reconstruct, with provenance; returns their outputs."""
    import sys

    from aiida import orm

    from aiida_xesml.calculations.measured_spectrum import measured_spectrum
    from aiida_xesml.calculations.measured_targets import measured_targets
    from aiida_xesml.calculations.reconstruct import reconstruct
    from aiida_xesml.ml.measured import DEFAULT_GRID
    from aiida_xesml.ml.progress import show_progress

    parameters = {"ensemble_mean": False, "n_atoms": n_atoms, "windows": windows, "method": method}
    extra = {"label": orm.Float(label)} if label is not None else {}
    if reference_ev is None:
        given = {"windows": windows, **({"noise": noise} if noise is not None else {})}
        stored = measured_targets(spectrum=xy, calculated=calculated, parameters=orm.Dict(given), **extra)["targets"]
        target = {"targets": stored}
    else:
        stored = measured_spectrum(spectrum=xy, reference_ev=orm.Float(reference_ev), grid=orm.List(list(DEFAULT_GRID)),
                                   **extra)["spectra"]
        target = {"spectra": stored}
        parameters["moment_orders"] = orders
    with show_progress(sys.stderr.isatty()):  # a bar over the inverse's starts, on a terminal only
        outputs, node = reconstruct.run_get_node(eca=eca, parameters=orm.Dict(parameters), **target, **known)
    return outputs, node, stored


def _report(spectrum_file, xy, energy, reference_ev, windows, dry_run, outputs, node, stored, method):
    import numpy as np
    from ase.data import chemical_symbols

    from aiida_xesml.calculations.reconstruct import read_reconstruction
    from aiida_xesml.ml.moments import moment_names

    result = outputs["reconstruction"]
    titles = {"kbpp": "Kβ″", "kb2": "Kβ2"}
    click.echo(f"Spectrum {spectrum_file.name} (sha256 {xy.base.attributes.get('sha256')[:12]}…), {len(energy)} points"
               + (f", reference {reference_ev:g} eV" if reference_ev is not None else ""))
    if reference_ev is None:
        peaks = stored.base.attributes.get("peaks_ev")
        placed = stored.base.attributes.get("windows_ev")
        click.echo("Peaks found on the measured axis: " + ", ".join(
            f"{titles.get(name, name)} {peaks[f'{name}_ev']:.2f} eV" for name in windows if f"{name}_ev" in peaks))
        click.echo("Windows put at the calculations' distance from each peak (eV, measured axis): " + ", ".join(
            f"{titles.get(name, name)} [{lo:.2f}, {hi:.2f}]" for name, (lo, hi) in placed.items()))
        names = stored.base.attributes.get("target_names")
        values, errors = stored.get_array("targets")[0], stored.get_array("target_errors")[0]
        fitted = result.get_array("fitted_targets")[0]
        click.echo("Shift-free targets (measured ± noise error | fitted by the population):")
        for name, value, error, fit in zip(names, values, errors, fitted):
            click.echo(f"  {name:22s} {value:10.4f} ± {error:.4f} | {fit:10.4f}")
    else:
        names = moment_names(windows)
        moments = result.get_array("target_moments")[0]
        click.echo("Moments (M0 intensity, M1 eV, M2 eV, M3 skewness):")
        for window in windows:
            values = [moments[names.index(f"{window}_m{order}")] for order in range(4)]
            click.echo(f"  {titles.get(window, window):6s} " + "  ".join(f"M{order} = {value:10.4f}"
                                                                       for order, value in enumerate(values)))
    values = read_reconstruction(result)
    n_members = result.base.attributes.get("settings", {}).get("n_members", 1)
    slot_z = result.base.attributes.get("slot_z")
    members = f"{n_members} bootstrap readouts" if method == "linear" else f"{n_members} emulators"
    click.echo(f"Reconstructed neighbours of the emitting Ge (Å, ± over {members}, {method}):")
    for index, (distance, spread) in enumerate(zip(values["distances_angstrom"][0][:8],
                                                    values["distances_angstrom_spread"][0][:8]), start=1):
        symbol = chemical_symbols[int(slot_z[index - 1])] if slot_z else "slot"
        click.echo(f"  {index:2d}  {symbol:4s}  {pm(distance, spread, '.3f')}")
    shell = values["first_shell_mean_angstrom"][0]
    shell_text = (f"{pm(shell, values['first_shell_mean_angstrom_spread'][0], '.3f')} Å" if np.isfinite(shell)
                  else "— (no O within the cutoff)")
    click.echo(f"First-shell mean Ge–O: {shell_text}")
    click.echo(f"CN: {pm(values['cn'][0], values['cn_spread'][0], '.2f')} "
               f"(count of O within the cutoff: {pm(values['cn_count'][0], values['cn_count_spread'][0], '.2f')})")
    if "cn_range" in values:
        tolerance = result.base.attributes.get("settings", {}).get("range_tolerance")
        low, high = values["cn_range"][0]
        if np.isfinite(low):
            click.echo(f"CN range: {low:.2f} to {high:.2f} over every population of training sites whose moments match "
                       f"within {tolerance:g} (the spectrum's moments do not tell these apart; the CN above is one of them)")
        else:
            click.echo(f"CN range: none: no population of training sites matches these moments within {tolerance:g}")
    if method == "population":
        from aiida_xesml.ml.mixture import MISFIT_WARNING

        misfit = float(result.get_array("inverse_loss")[0])
        click.echo(f"Inverse misfit: {misfit:.3f} (standardized moment mismatch, mean over the emulators)")
        if misfit > MISFIT_WARNING:
            click.echo(f"Warning: the misfit is above {MISFIT_WARNING}: no mixture of the training sites reproduces "
                       "this spectrum, so it is probably unlike the training data; on the project's benchmarks such "
                       "readings were off by up to 1 in CN. Train on data that covers this sample.")
    what = "targets" if reference_ev is None else "spectra"
    click.echo(f"Stored: XyData {xy.pk}, {what} {stored.pk}, reconstruction {result.pk} "
               f"(summary {outputs['summary'].pk}, calculation {node.pk})")
