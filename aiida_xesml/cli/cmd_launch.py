"""``aiida-xesml launch``: run or submit xesml.amorphous, xesml.compression, xesml.spectra, xesml.analysis or
xesml.pipeline."""

import math
import re
from pathlib import Path

import click

from aiida_xesml.cli import cli
from aiida_xesml.cli.common import load_node_of_type, load_profile_of

WORKFLOWS = ("amorphous", "compression", "spectra", "analysis", "pipeline")
NEEDS_STRUCTURE = ("amorphous", "compression", "spectra", "pipeline")
NEEDS_PRESSURES = ("compression", "pipeline")
BUILTINS = ("rutile", "quartz", "network")
#: ``--builtin network``: the start of a melt-quench, 16 GeO2 placed at random at the a-GeO2 density (g/cm³).
NETWORK_GE, NETWORK_DENSITY, NETWORK_SEED = 16, 3.66, 0


def parse_pressures(text: str) -> list[float]:
    """Pressures (GPa) from '0 15 30' or '0,15,30'; a ValueError for non-numbers, negatives or none."""
    cells = [cell for cell in re.split(r"[\s,;]+", text.strip()) if cell]
    try:
        values = [float(cell) for cell in cells]
    except ValueError:
        raise ValueError(f"--pressures must be numbers in GPa, e.g. '0 15 30'; got {text!r}") from None
    if not values:
        raise ValueError("--pressures is empty; give at least one pressure in GPa, e.g. '0 15 30'")
    bad = [value for value in values if not value >= 0 or value == float("inf")]
    if bad:
        raise ValueError(f"--pressures must be finite and non-negative (GPa); got {bad}")
    return values


def read_structure(path: Path):
    """An ASE Atoms with a cell from any ASE-readable file; a ValueError naming the problem.

    The file may be at most :data:`~aiida_xesml.ml.limits.MAX_STRUCTURE_FILE_BYTES` (10 MB) and the
    structure at most :data:`~aiida_xesml.ml.limits.MAX_STRUCTURE_ATOMS` atoms.
    """
    import ase.io

    from aiida_xesml.ml.limits import check_atom_count, check_file

    path = Path(path)
    check_file(path, "structure", "--structure")
    try:
        atoms = ase.io.read(path)
    except Exception as exc:
        raise ValueError(f"cannot read a structure from {str(path)!r}: {type(exc).__name__}: {exc}") from exc
    if isinstance(atoms, list):
        atoms = atoms[-1]
    if len(atoms) == 0:
        raise ValueError(f"{str(path)!r} holds no atoms")
    check_atom_count(len(atoms), f"--structure {str(path)!r}")
    if not atoms.cell.rank == 3 or atoms.cell.volume <= 0:
        raise ValueError(f"{str(path)!r} has no 3-D cell; the calculations need a periodic cell (.cif, extended .xyz, ...)")
    atoms.pbc = True
    if "Ge" not in atoms.get_chemical_symbols():
        raise ValueError(f"{str(path)!r} holds no Ge: the Kβ emitter is Ge")
    return atoms


def builtin_structure(name: str, repeats=(1, 1, 1)):
    """The built-in rutile- or quartz-type GeO2 cell repeated ``repeats`` times, or the random network
    (48 atoms at 3.66 g/cm³, seed 0) that a melt-quench starts from."""
    from aiida_xesml.ml.limits import check_atom_count
    from aiida_xesml.ml.structures import quartz_geo2, random_network, rutile_geo2, supercell

    if name not in BUILTINS:
        raise ValueError(f"unknown built-in structure {name!r}; choose from {', '.join(BUILTINS)}")
    if len(repeats) != 3 or any(int(n) < 1 for n in repeats):
        raise ValueError(f"--supercell repeats must be three positive integers; got {tuple(repeats)}")
    if name == "network":
        if tuple(int(n) for n in repeats) != (1, 1, 1):
            raise ValueError("--builtin network is a 48-atom random network, not repeated: leave --supercell at 1 1 1")
        return random_network(NETWORK_GE, density=NETWORK_DENSITY, seed=NETWORK_SEED)
    base = rutile_geo2() if name == "rutile" else quartz_geo2()
    n_atoms = len(base) * math.prod(int(n) for n in repeats)
    check_atom_count(n_atoms, f"--builtin {name} --supercell {' '.join(str(int(n)) for n in repeats)}")
    return supercell(base, tuple(int(n) for n in repeats))


def build_builder(workflow: str, protocol: str = "balanced", structure=None, pressures=None, pw_code=None,
                  projwfc_code=None, spectra=None, snapshots=None):
    """The builder of ``workflow`` ('amorphous', 'compression', 'spectra', 'analysis', 'pipeline') at ``protocol``.

    ``structure``: StructureData (amorphous, compression, spectra, pipeline); ``pressures``: GPa (compression,
    pipeline); ``pw_code``, ``projwfc_code``: codes or labels; ``spectra`` (XesSpectraData) and
    ``snapshots`` (TrajectoryData, or a list/dict of StructureData) for analysis.
    """
    if workflow not in WORKFLOWS:
        raise ValueError(f"unknown workflow {workflow!r}; choose from {', '.join(WORKFLOWS)}")
    if workflow in NEEDS_STRUCTURE and structure is None:
        raise ValueError(f"`{workflow}` needs a structure")
    if workflow in NEEDS_PRESSURES and not pressures:
        raise ValueError(f"`{workflow}` needs pressures (GPa)")
    if workflow == "amorphous":
        from aiida_xesml.workflows.amorphous import AmorphousWorkChain

        return AmorphousWorkChain.get_builder_from_protocol(pw_code, structure, protocol=protocol)
    if workflow == "compression":
        from aiida_xesml.workflows.compression import CompressionWorkChain

        return CompressionWorkChain.get_builder_from_protocol(pw_code, structure, pressures, protocol=protocol)
    if workflow == "spectra":
        from aiida_xesml.workflows.spectra import SpectraWorkChain

        return SpectraWorkChain.get_builder_from_protocol(pw_code, projwfc_code, [structure], protocol=protocol)
    if workflow == "pipeline":
        from aiida_xesml.workflows.pipeline import PipelineWorkChain

        return PipelineWorkChain.get_builder_from_protocol(pw_code, projwfc_code, structure, pressures,
                                                           protocol=protocol)
    if spectra is None or snapshots is None:
        raise ValueError("`analysis` needs spectra (XesSpectraData) and their snapshots (TrajectoryData)")
    from aiida_xesml.workflows.analysis import AnalysisWorkChain

    return AnalysisWorkChain.get_builder_from_protocol(spectra, snapshots, protocol=protocol)


def _load_code(label: str, option: str):
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        return orm.load_code(label)
    except (NotExistent, MultipleObjectsError, ValueError) as exc:
        raise click.ClickException(f"code {label!r} ({option}) not found: {exc}; run `aiida-xesml setup` "
                                   f"or pass {option} LABEL") from exc


def _flatten(results, prefix: str = ""):
    """(``namespace.name``, node) of every output node, namespaces (the pipeline's) included, sorted by name."""
    for key, value in sorted(results.items()):
        if hasattr(value, "pk"):
            yield f"{prefix}{key}", value
        elif hasattr(value, "items"):
            yield from _flatten(value, f"{prefix}{key}.")


def _show_reconstruction(node) -> None:
    """CN and first-shell distance per label, ± their spread over the emulator ensemble, then the held-out ones."""
    from aiida_xesml.cli.tables import reconstruction_table

    members = (node.base.attributes.get("settings", None) or {}).get("n_members")
    spread = f"± over {members} emulators" if members and members > 1 else "± over the emulator ensemble"
    reconstruction_table(node, title=f"Reconstruction <{node.pk}> per label ({spread}; distances in Å):")
    reconstruction_table(node, "held_out_", title="From the held-out snapshots only (sites the emulator never saw):")


@cli.command("launch")
@click.argument("workflow", type=click.Choice(WORKFLOWS))
@click.option("--protocol", default="balanced", show_default=True, type=click.Choice(["fast", "balanced", "stringent"]))
@click.option("--structure", "structure_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Structure file with a cell (any ASE-readable format: .cif, extended .xyz, POSCAR, ...); "
                   "at most 10 MB and 1000 atoms.")
@click.option("--builtin", type=click.Choice(BUILTINS), default=None,
              help="A built-in GeO2 cell instead of --structure (network: 48 atoms at random, to melt-quench).")
@click.option("--supercell", nargs=3, type=int, default=(1, 1, 1), show_default=True, metavar="NA NB NC",
              help="Repeats of the built-in cell.")
@click.option("--pressures", default="0 15 30", show_default=True, help="Pressures in GPa (compression, pipeline).")
@click.option("--pw-code", default=None, metavar="LABEL", help="pw.x code (default: the one setup creates).")
@click.option("--projwfc-code", default=None, metavar="LABEL", help="projwfc.x code (default: the one setup creates).")
@click.option("--spectra", "spectra_pk", type=int, default=None, metavar="PK", help="XesSpectraData (analysis).")
@click.option("--snapshots", "snapshots_pk", type=int, default=None, metavar="PK",
              help="TrajectoryData of the spectra's snapshots (analysis; step i = the spectra's snapshot_index i).")
@click.option("--daemon", is_flag=True, help="Submit to the daemon instead of running here.")
@click.pass_context
def cmd_launch(ctx, workflow, protocol, structure_file, builtin, supercell, pressures, pw_code, projwfc_code,
               spectra_pk, snapshots_pk, daemon):
    """Run (or with --daemon submit) WORKFLOW: amorphous, compression, spectra, analysis or pipeline.

    \b
    Examples:
        aiida-xesml launch amorphous --builtin network --daemon
        aiida-xesml launch compression --builtin rutile --supercell 2 2 1 --pressures "0 15 30" --daemon
        aiida-xesml launch spectra --structure GeO2.cif --protocol fast
        aiida-xesml launch analysis --spectra 123 --snapshots 124 --protocol fast
        aiida-xesml launch pipeline --builtin quartz --pressures "0 10" --daemon
    """
    # Everything that needs no database first.
    atoms, pressure_values = None, None
    try:
        if workflow in NEEDS_STRUCTURE:
            if (structure_file is None) == (builtin is None):
                raise ValueError(f"`{workflow}` needs exactly one of --structure FILE or --builtin "
                                 f"{'|'.join(BUILTINS)}")
            atoms = read_structure(structure_file) if structure_file else builtin_structure(builtin, supercell)
        if workflow in NEEDS_PRESSURES:
            pressure_values = parse_pressures(pressures)
        if workflow == "analysis" and (spectra_pk is None or snapshots_pk is None):
            raise ValueError("`analysis` needs --spectra PK (XesSpectraData) and --snapshots PK (TrajectoryData)")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc

    load_profile_of(ctx)
    from aiida import orm
    from aiida.engine import run_get_node, submit

    from aiida_xesml.constants import code_label
    from aiida_xesml.data.spectra import XesSpectraData

    structure = orm.StructureData(ase=atoms) if atoms is not None else None
    spectra = snapshots = pw = projwfc = None
    if workflow == "analysis":
        spectra = load_node_of_type(spectra_pk, XesSpectraData, "an XesSpectraData (--spectra)")
        snapshots = load_node_of_type(snapshots_pk, orm.TrajectoryData, "a TrajectoryData (--snapshots)")
    else:
        pw = _load_code(pw_code or code_label("pw"), "--pw-code")
        if workflow in ("spectra", "pipeline"):
            projwfc = _load_code(projwfc_code or code_label("projwfc"), "--projwfc-code")
    try:
        builder = build_builder(workflow, protocol, structure=structure, pressures=pressure_values, pw_code=pw,
                                projwfc_code=projwfc, spectra=spectra, snapshots=snapshots)
    except Exception as exc:
        raise click.ClickException(f"cannot build xesml.{workflow}: {type(exc).__name__}: {exc}") from exc

    if daemon:
        node = submit(builder)
        click.echo(f"Submitted xesml.{workflow} <{node.pk}> to the daemon (protocol {protocol}).")
        click.echo(f"Follow it with: verdi process status {node.pk}")
        click.echo("(Start the daemon first if it is not running: verdi daemon start)")
        return
    click.echo(f"Running xesml.{workflow} (protocol {protocol}) here; this can take a while ...")
    results, node = run_get_node(builder)
    flat = dict(_flatten(results))
    outputs = ", ".join(f"{key} <{value.pk}>" for key, value in flat.items())
    click.echo(f"xesml.{workflow} <{node.pk}> {node.process_state.value}, exit status {node.exit_status}"
               + (f": {node.exit_message}" if node.exit_message else ""))
    click.echo(f"Outputs: {outputs or '(none)'}")
    click.echo(f"Details: verdi process show {node.pk}")
    reconstruction = flat.get("reconstruction") or flat.get("analysis.reconstruction")
    if reconstruction is not None:
        _show_reconstruction(reconstruction)
    if not node.is_finished_ok:
        raise click.ClickException(f"xesml.{workflow} <{node.pk}> did not finish ok (exit status {node.exit_status})")
