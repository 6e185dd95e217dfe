"""The plugin's reference data sets of Ge Kβ site spectra, made with real pw.x + projwfc.x (issue 13 §5, issue 14 §3).

Data sets, each an AiiDA archive with its provenance, an .npz for use without AiiDA
(:func:`aiida_xesml.ml.reference_data.load_reference_npz`) and an entry in ``examples/data/MANIFEST.json``:

- ``crystalline-rattled``: rattled and strained α-quartz-type (3x2x1, 54 atoms, 4-fold Ge) and
  rutile-type (2x2x2, 48 atoms, 6-fold) supercells;
- ``crystalline-holdout``: the same recipe with other seeds, fewer cells, to test on data the
  emulator never saw;
- ``compressed-md``: MD snapshots of a 2x1x1 α-quartz-type cell (18 atoms) compressed by
  ``xesml.compression`` at 10 / 20 / 30 GPa, where Ge turns 5-fold: the 5-fold sites that the crystals
  lack (issue 12: a crystal-trained emulator reads a pure 5-fold mixture as 4-fold);
- ``compressed-md-holdout``: the same recipe on another cell shape (1x1x2) and seed at 15 / 25 GPa, held
  out from every training, to test the reconstruction on 4-/5-fold mixtures.
- ``glass-ladder``: a 48-atom GeO2 glass made by ``xesml.amorphous`` (melt-quench from a random
  network at 3.66 g/cm³), then compressed by ``xesml.compression`` at 0 / 10 / 20 / 30 / 40 GPa at
  300 K: the system of the published study, at a small scale.

A 2x2x1 (36-atom) version was tried first and dropped: its first vc-relax, with the protocol's k-points,
had made 6 BFGS steps in 15 min on 2 cores, so one pressure would cost over an hour.

Labels (what analyses group by): 4 for the α-quartz-type family, 6 for the rutile-type family, and
the target PBE pressure in GPa (0, 10, 15, 20, ...: never 4 or 6) for the MD snapshots. The data card is
docs/reference/dataset.md.

The campaign runs in stages. Each stage submits its work chains to the daemon, waits for them and
records them by an extra (``xesml_reference_stage``) on their nodes; the export stage of a data set
writes its files. Run it again and finished stages are skipped, running ones are waited for; so
the script can be stopped at any time (the daemon keeps the calculations going).

    export AIIDA_PATH=/work/campaign/.aiida        # a profile made by `aiida-xesml setup`
    python examples/reference_dataset.py run            # every stage, in order
    python examples/reference_dataset.py run --dataset crystalline-rattled
    python examples/reference_dataset.py status

Costs are measured from the profile and written to the manifest (wall time of every stage's work
chains, QE's own wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
MANIFEST = DATA_DIR / "MANIFEST.json"
PART_DIR = DATA_DIR / "glass-parts"  # finished melts and quenches, for a later sitting to continue from
STAGE_EXTRA = "xesml_reference_stage"
PART_EXTRA = "xesml_reference_part"  # on the data nodes of an archived pressure (export_pressure_part)
SPECTRA_DONE = (0, 410)  # xesml.spectra's exit statuses with spectra: 410 = some snapshots failed, the rest are there
SPECTRUM_PROTOCOL = "balanced"  # Γ, 30/180 Ry, nosym, SCF from atomic wavefunctions
ONE_PROCESS = {"resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1}}
# MD segments and vc-relaxes of 36 atoms can take an hour on a loaded machine: room before pw.x stops itself.
TWO_PROCESSES = {"resources": {"num_machines": 1, "num_mpiprocs_per_machine": 2}, "max_wallclock_seconds": 4 * 3600}
# Two snapshots at a time with one MPI process each: the faster layout on 2 cores once `localhost` leaves
# MPI ranks unbound, as `aiida-xesml setup` makes it (benchmarks/throughput.py: 1.09-1.11 x the hand-made
# QE runs, against 1.20 x for one at a time with two processes). The shipped data sets were made in it
# with bound ranks, which put both runs on one core.
MAX_CONCURRENT = 2
CN_CUTOFF = 2.3  # Å, O within this of Ge
LABEL_QUARTZ, LABEL_RUTILE = 4.0, 6.0
MIN_GE_O = 1.5  # Å; equilibrium Ge-O is 1.74 (α-quartz type) and 1.87-1.90 (rutile type)

#: Compression of the MD part: `balanced` protocol, with a loosely converged vc-relax (no Pulay-stress
#: repetition; the MD's stress gives the measured pressure anyway) and a hot NVT run that lets the
#: compressed quartz-type network collapse towards 5- and 6-fold Ge.
COMPRESSION_OVERRIDES = {
    "temperature_k": 600.0,
    "nstep_equilibration": 6,
    "vc_relax": {
        "meta_convergence": False,
        "pw": {"parameters": {"CONTROL": {"forc_conv_thr": 1.0e-2, "etot_conv_thr": 1.0e-3},
                              "CELL": {"press_conv_thr": 10.0}}},
    },
    "md": {"thermostat_rise_steps": 3},
}

DATASETS = {
    "crystalline-rattled": {
        "description": "rattled/strained α-quartz-type 3x2x1 and rutile-type 2x2x2 supercells at Γ (4- and 6-fold Ge)",
        "crystals": {"quartz_seeds": list(range(0, 14)), "rutile_seeds": list(range(100, 114))},
    },
    "crystalline-holdout": {
        "description": "the same recipe with other seeds: held out from every training",
        "crystals": {"quartz_seeds": list(range(500, 505)), "rutile_seeds": list(range(600, 605))},
    },
    "compressed-md": {
        "description": "MD snapshots of a rattled 2x1x1 α-quartz-type cell (18 atoms) compressed by xesml.compression "
                       "at 10 / 20 / 30 GPa (4- and 5-fold Ge)",
        "compression": {"supercell": [2, 1, 1], "seed": 21, "pressures": [10.0, 20.0, 30.0], "nstep_production": 20,
                        "snapshot_stride": 2},
    },
    "compressed-md-holdout": {
        "description": "the compressed-md recipe on a 1x1x2 cell with another seed at 15 / 25 GPa: held out from every "
                       "training",
        "compression": {"supercell": [1, 1, 2], "seed": 31, "pressures": [15.0, 25.0], "nstep_production": 20,
                        "snapshot_stride": 2},
    },
    "rutile-md": {
        "description": "MD snapshots of a rattled 2x2x2 rutile-type cell (48 atoms) compressed by xesml.compression at "
                       "0 / 20 / 40 GPa and heated to 600 K (6-fold Ge at three densities, thermally disordered)",
        "compression": {"family": "rutile", "supercell": [2, 2, 2], "seed": 41, "pressures": [0.0, 20.0, 40.0],
                        "nstep_production": 20, "snapshot_stride": 2, "in_parts": True,
                        "bulk_modulus_gpa": 250.0},  # rutile-type GeO2, for the first prescale (xesml's default: 40)
    },
    "glass-ladder": {
        "description": "MD snapshots of a 48-atom melt-quenched GeO2 glass (xesml.amorphous, balanced) compressed by "
                       "xesml.compression at 0 / 10 / 20 / 30 / 40 GPa, 300 K",
        "glass": {"n_ge": 16, "density": 3.66, "seed": 0, "protocol": "balanced"},
        "compression": {"from_glass": True, "pressures": [0.0, 10.0, 20.0, 30.0, 40.0], "nstep_production": 20,
                        "snapshot_stride": 2, "temperature_k": 300.0},
    },
}


# --- structures (plain ASE) ------------------------------------------------------------------------


def crystal_cell(family: str, seed: int):
    """A rattled, strained and isotropically compressed or expanded supercell (seeded).

    Per seed: a random symmetric strain with components up to ±3 % (``rattle_and_strain``), an
    isotropic volume change uniform in [-6 %, +6 %], and Gaussian displacements whose
    root-mean-square length is uniform in [0.03, 0.15] Å (σ = rms / √3 per cartesian component,
    each component clipped at 2σ). A draw that still brings a Ge and an O closer than ``MIN_GE_O``
    Å is redrawn (displacement seed + 10000 k), so that no site is an unphysical outlier.
    Returns (atoms, settings).
    """
    from aiida_xesml.ml.structures import neighbour_distances, quartz_geo2, rattle_and_strain, rutile_geo2, supercell

    rng = np.random.default_rng(seed)
    rms = float(rng.uniform(0.03, 0.15))
    strain = 0.03
    volume = float(rng.uniform(-0.06, 0.06))
    base = supercell(quartz_geo2(), (3, 2, 1)) if family == "quartz" else supercell(rutile_geo2(), (2, 2, 2))
    strained = rattle_and_strain(base, rattle=0.0, strain=strain, seed=seed)
    strained.set_cell(strained.cell[:] * (1.0 + volume) ** (1.0 / 3.0), scale_atoms=True)
    sigma = rms / np.sqrt(3.0)
    for attempt in range(100):
        displacement_seed = seed + 10000 * attempt
        displacements = np.random.default_rng(displacement_seed).normal(0.0, sigma, size=(len(base), 3))
        atoms = strained.copy()
        atoms.positions += np.clip(displacements, -2.0 * sigma, 2.0 * sigma)
        if neighbour_distances(atoms, MIN_GE_O, "Ge", "O")[1].size == 0:
            break
    else:
        raise RuntimeError(f"no draw of {family} seed {seed} keeps Ge-O >= {MIN_GE_O} Å")
    return atoms, {"family": family, "seed": seed, "displacement_seed": displacement_seed, "rattle_rms_A": rms,
                   "max_strain": strain, "volume_change": volume}


#: The crystal families a compression can start from (``compression.family``; default quartz).
FAMILY_NAMES = {"quartz": "α-quartz-type", "rutile": "rutile-type"}


def compression_start(settings: dict):
    """The MD part's starting cell: the ``supercell`` of α-quartz-type (or, with ``family`` 'rutile', rutile-type)
    GeO2, rattled by 0.02 Å (``seed``)."""
    from aiida_xesml.ml.structures import quartz_geo2, rutile_geo2, supercell

    family = settings.get("family", "quartz")
    if family not in FAMILY_NAMES:
        raise ValueError(f"compression `family` must be one of {sorted(FAMILY_NAMES)}; got {family!r}")
    atoms = supercell(quartz_geo2() if family == "quartz" else rutile_geo2(), tuple(settings["supercell"]))
    atoms.rattle(0.02, seed=settings["seed"])
    return atoms


# --- stages -----------------------------------------------------------------------------------------


def find_stage(key: str):
    """The newest process node recorded for stage ``key``, or None."""
    from aiida import orm

    query = orm.QueryBuilder().append(orm.ProcessNode, filters={f"extras.{STAGE_EXTRA}": key},
                                      project="*", tag="process")
    query.order_by({"process": {"ctime": "desc"}})
    found = query.first(flat=True)
    return found


def wait(node, what: str, poll: float = 15.0, on_poll=None):
    """Block until ``node`` terminates; print progress; call ``on_poll(node)`` every ``poll`` seconds."""
    from aiida import orm

    last = 0.0
    while True:
        node = orm.load_node(node.pk)
        if on_poll is not None:
            on_poll(node)
        if node.is_terminated:
            break
        if time.monotonic() - last > 300:
            print(f"  waiting for {what} <{node.pk}> ({datetime.now():%H:%M})", flush=True)
            last = time.monotonic()
        time.sleep(poll)
    print(f"  {what} <{node.pk}>: {node.process_state.value}, exit {node.exit_status} {node.exit_message or ''}",
          flush=True)
    return node


def run_stage(key: str, build, accept=(0,), on_poll=None):
    """Submit ``build()`` once for stage ``key`` (unless a finished or running node exists) and wait.

    A node that ended with an exit status in ``accept`` counts as done (xesml.spectra's 410: some
    snapshots failed, the others are in the outputs). Anything else is resubmitted on the next run.
    ``on_poll(node)`` is called while waiting and once at the end.
    """
    from aiida.engine import submit

    node = find_stage(key)
    if node is not None and node.is_terminated and node.exit_status not in accept:
        print(f"stage {key}: <{node.pk}> ended with exit {node.exit_status}; submitting again")
        node = None
    if node is None:
        node = submit(build())
        node.base.extras.set(STAGE_EXTRA, key)
        print(f"stage {key}: submitted <{node.pk}>", flush=True)
    elif node.is_terminated:
        print(f"stage {key}: done <{node.pk}> (exit {node.exit_status})")
        return node
    node = wait(node, key, on_poll=on_poll)
    if node.exit_status not in accept:
        raise SystemExit(f"stage {key} failed: <{node.pk}> exit {node.exit_status}: {node.exit_message}")
    return node


def spectra_builder(codes, structures, labels):
    from aiida import orm

    from aiida_xesml.workflows.spectra import SpectraWorkChain

    builder = SpectraWorkChain.get_builder_from_protocol(
        codes["pw"], codes["projwfc"], structures, protocol=SPECTRUM_PROTOCOL, labels=labels, options=ONE_PROCESS)
    builder.max_concurrent = orm.Int(MAX_CONCURRENT)
    builder.clean_workdir = orm.Bool(True)  # the SCF's wavefunctions are not needed once the spectra exist
    return builder


def crystal_stage(name: str, config: dict, codes):
    from aiida import orm

    def build():
        structures, labels = [], []
        for family, label in (("quartz", LABEL_QUARTZ), ("rutile", LABEL_RUTILE)):
            for seed in config["crystals"][f"{family}_seeds"]:
                atoms, settings = crystal_cell(family, seed)
                structure = orm.StructureData(ase=atoms)
                structure.label = f"{name}/{family}-{seed}"
                structure.base.extras.set("xesml_reference_cell", settings)
                structures.append(structure)
                labels.append(label)
        return spectra_builder(codes, structures, labels)

    return run_stage(f"{name}/crystals", build, accept=SPECTRA_DONE)


def read_manifest() -> dict:
    """examples/data/MANIFEST.json, or an empty one."""
    return json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {"format": 1, "datasets": {}}


def glass_part_archive(key: str) -> Path:
    """Where the finished melt, quench or whole glass of stage ``key`` (``<data set>/glass/melt``,
    ``<data set>/glass``) is kept."""
    return PART_DIR / f"{key.replace('/', '-')}.aiida"


def glass_part(key: str):
    """The finished node of a glass part in this profile (the xesml.md of a melt or quench, or the whole
    xesml.amorphous), imported from its archive (made by an earlier sitting) when the profile lacks it;
    None if there is none."""
    from aiida.tools.archive import import_archive

    node = find_stage(key)
    if node is None and glass_part_archive(key).is_file():
        print(f"stage {key}: importing {glass_part_archive(key).name}", flush=True)
        import_archive(glass_part_archive(key))
        node = find_stage(key)
    return node if node is not None and node.is_finished_ok else None


def export_glass_parts(name: str, glass):
    """Archive each finished melt or quench of ``glass``, and the glass itself once it has finished, so that a
    later sitting can start from them.

    A part's archive holds the xesml.md run, its pw.x calculations and their inputs and outputs, but not the
    xesml.amorphous that called it (it is still running); the glass's archive holds the xesml.amorphous with
    everything it ran, the melt it continued from included. The manifest records each checksum.
    """
    from aiida.common.links import LinkType

    key = f"{name}/glass"
    if glass.is_finished_ok and not glass_part_archive(key).is_file():
        summary = glass.outputs.summary.get_dict()
        archive_glass_part(key, glass, {"density_g_cm3": summary.get("density_g_cm3"),
                                        "cn_histogram": summary.get("cn_histogram")})
    for part in ("melt", "quench"):
        key = f"{name}/glass/{part}"
        called = glass.base.links.get_outgoing(link_type=LinkType.CALL_WORK, link_label_filter=part).all_nodes()
        if glass_part_archive(key).is_file() or not called or not called[0].is_finished_ok:
            continue
        md = called[0]
        fields = {"nstep": int(md.inputs.nstep.value), "temperature_k": float(md.inputs.temperature_k.value),
                  "final_temperature_k": float(md.inputs.final_temperature_k.value)
                  if "final_temperature_k" in md.inputs else None}
        archive_glass_part(key, md, fields, call_calc_backward=False, call_work_backward=False)


def archive_glass_part(key: str, node, fields: dict, **archive_options):
    """Write ``node`` (with what ``create_archive``'s ``archive_options`` take along) to the archive of glass
    part ``key`` and record it in the manifest: checksum, size, UUID, the part's ``fields``, wall time, code.

    The node carries the stage extra ``key`` in the archive, so that a later sitting finds it after the import.
    The wall time is read before that extra is set: setting an extra moves the node's mtime to now.
    """
    from aiida.tools.archive import create_archive


    wall_seconds = (node.mtime - node.ctime).total_seconds()
    node.base.extras.set(STAGE_EXTRA, key)
    path = glass_part_archive(key)
    PART_DIR.mkdir(parents=True, exist_ok=True)
    create_archive([node], filename=path, include_authinfos=False, **archive_options)
    record_glass_part(key, {"archive": path}, {"process_uuid": node.uuid, **fields, "wall_seconds": wall_seconds})
    print(f"stage {key}: exported <{node.pk}> to {path} ({path.stat().st_size / 1e6:.2f} MB)", flush=True)


def record_glass_part(key: str, files: dict, fields: dict) -> None:
    """Write the manifest entry of glass part ``key``: each of ``files`` ({kind: path}) with its path relative to
    examples/data, SHA-256 and size (``<kind>``, ``<kind>_sha256``, ``<kind>_bytes``), then ``fields``, the code and
    the time of the export."""
    from aiida_xesml.ml.reference_data import sha256

    entry = {}
    for kind, path in files.items():
        entry.update({kind: str(path.relative_to(DATA_DIR)), f"{kind}_sha256": sha256(path),
                      f"{kind}_bytes": path.stat().st_size})
    manifest = read_manifest()
    manifest.setdefault("glass_parts", {})[key] = {
        **entry, **fields, "code": code_version(), "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    MANIFEST.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")


def interrupted_relax(glass, quench):
    """The last structure of the vc-relax of ``glass`` (an earlier xesml.amorphous of this stage) if that relax of
    ``quench``'s last frame stopped unfinished (its pw.x killed with the machine: the glass's exit 403), else None."""
    from aiida import orm

    from aiida_xesml.workflows.amorphous import AmorphousWorkChain

    if glass is None or glass.exit_status != AmorphousWorkChain.exit_codes.ERROR_RELAX_FAILED.status:
        return None
    if glass.outputs.quenched_structure.uuid != quench.outputs.structure.uuid:
        return None  # a relax of another quench
    relax = glass.base.links.get_outgoing(link_label_filter="relax").all_nodes()
    calcs = [calc for calc in relax[0].called_descendants if isinstance(calc, orm.CalcJobNode)
             and "output_structure" in calc.outputs] if relax else []
    return max(calcs, key=lambda calc: calc.ctime).outputs.output_structure if calcs else None


def glass_stage(name: str, config: dict, codes):
    """The melt-quench (xesml.amorphous) of a random network: the glass that the compression starts from.

    The melt and the quench take hours each at 48 atoms. Each is archived when it finishes
    (examples/data/glass-parts), and a later run of this script starts the glass from the parts it
    finds there (``from_melt``/``from_quench`` of xesml.amorphous) instead of running them again.
    """
    from aiida import orm

    from aiida_xesml.ml.structures import random_network
    from aiida_xesml.workflows.amorphous import AmorphousWorkChain

    settings = config["glass"]
    glass_part(f"{name}/glass")  # a glass finished in an earlier sitting: run_stage then finds it

    def build():
        melt, quench = glass_part(f"{name}/glass/melt"), glass_part(f"{name}/glass/quench")
        if melt is not None:  # the same random network, as the very node the melt started from
            structure = melt.inputs.structure
        else:
            atoms = random_network(settings["n_ge"], density=settings["density"], seed=settings["seed"])
            structure = orm.StructureData(ase=atoms)
        builder = AmorphousWorkChain.get_builder_from_protocol(codes["pw"], structure, protocol=settings["protocol"],
                                                               options=TWO_PROCESSES)
        if melt is not None:
            builder.from_melt = {key: melt.outputs[key] for key in ("trajectory", "structure", "velocities")}
            print(f"  starting from the melt <{melt.pk}>", flush=True)
            if quench is not None:
                builder.from_quench = {key: quench.outputs[key] for key in ("trajectory", "structure")}
                print(f"  starting from the quench <{quench.pk}>", flush=True)
                relax_from = interrupted_relax(find_stage(f"{name}/glass"), quench)
                if relax_from is not None:
                    builder.relax_from = relax_from
                    print(f"  continuing the vc-relax from <{relax_from.pk}>", flush=True)
        builder.metadata.label = f"{name}/glass"
        return builder

    node = run_stage(f"{name}/glass", build, on_poll=lambda glass: export_glass_parts(name, glass))
    summary = node.outputs.summary.get_dict()
    print(f"  glass: density {summary['density_g_cm3']:.3f} g/cm3, CN {summary['cn_histogram']}, "
          f"largest S(q)/N {summary['max_structure_factor_per_atom']:.3f}")
    return node


def in_parts(settings: dict) -> bool:
    """Whether a compression is kept in parts, one archive per finished pressure (the glass ladder, and any with
    ``in_parts``): a ladder of 48-atom cells is longer than a sitting. The parts go to PART_DIR (named for the glass,
    the first data set made this way)."""
    return bool(settings.get("in_parts", settings.get("from_glass", False)))


def compression_builder(name: str, config: dict, codes, glass=None):
    """The xesml.compression of a data set; a ladder kept in parts continues from its archived pressures."""
    from aiida import orm

    from aiida_xesml.workflows.compression import CompressionWorkChain

    settings = config["compression"]
    pressures = remaining_pressures(name, settings) if in_parts(settings) else settings["pressures"]
    if settings.get("from_glass"):
        structure = glass.outputs.structure
    else:
        structure = orm.StructureData(ase=compression_start(settings))
        structure.label = f"{name}/compression-start"
    overrides = {**COMPRESSION_OVERRIDES, "nstep_production": settings["nstep_production"],
                 "snapshot_stride": settings["snapshot_stride"]}
    overrides.update({key: settings[key] for key in ("temperature_k", "bulk_modulus_gpa") if key in settings})
    builder = CompressionWorkChain.get_builder_from_protocol(
        codes["pw"], structure, pressures, protocol="balanced", overrides=overrides, options=TWO_PROCESSES)
    if pressures != settings["pressures"]:
        builder.structure = continued_structure(name, settings, pressures[0], builder)
        print(f"  continuing the ladder at {pressures[0]:g} GPa from the archived parts", flush=True)
    return builder


def compression_stage(name: str, config: dict, codes, glass=None):
    settings = config["compression"]
    keeps_parts = in_parts(settings)  # a 48-atom ladder is longer than a sitting

    def build():
        return compression_builder(name, config, codes, glass)

    def on_poll(compression):
        submit_finished_pressures(name, compression, codes)
        if keeps_parts:
            export_pressure_parts(name, compression)

    # The spectra of a pressure start as soon as its snapshots exist, while the compression goes on: a
    # compression of a 48-atom glass is longer than a sitting, and what it finished is then not lost.
    if keeps_parts and find_stage(f"{name}/compression") is None and not remaining_pressures(name, settings):
        print(f"stage {name}/compression: every pressure is an archived part")
        return None
    node = run_stage(f"{name}/compression", build, on_poll=on_poll)
    for row in node.outputs.summary_table.get_dict()["rows"]:
        print(f"  {row}")
    return node


def pressure_outputs(compression) -> dict:
    """The outputs of each pressure a compression (running or not) has finished: {label: {summary, snapshots}}."""
    from aiida.common.links import LinkType

    returned = {link.link_label: link.node for link in compression.base.links.get_outgoing(link_type=LinkType.RETURN).all()}
    labels = [link[:-len("__summary")] for link in returned if link.endswith("__summary")]
    return {label: {"summary": returned[f"{label}__summary"], "snapshots": returned[f"{label}__snapshots"]}
            for label in labels if f"{label}__snapshots" in returned}


def finished_pressures(compression) -> dict:
    """The pressures a compression (running or not) has finished: {label: (target GPa, snapshots)}."""
    return {label: (float(outputs["summary"]["target_pressure_gpa"]), outputs["snapshots"])
            for label, outputs in pressure_outputs(compression).items()}


# --- the glass ladder in parts: one archive per finished pressure ---------------------------------------


def pressure_part_key(name: str, pressure: float) -> str:
    """The part (and spectra stage) key of one pressure of a ladder, e.g. ``glass-ladder/md-spectra/p_10``."""
    from aiida_xesml.workflows.compression import pressure_label

    return f"{name}/md-spectra/{pressure_label(pressure)}"


def export_pressure_parts(name: str, compression) -> None:
    """Archive every pressure of ``compression`` whose spectra have finished (and that has no archive yet)."""
    for label, outputs in pressure_outputs(compression).items():
        key = f"{name}/md-spectra/{label}"
        spectra = find_stage(key)
        if glass_part_archive(key).is_file() or spectra is None or not spectra.is_terminated \
                or spectra.exit_status not in SPECTRA_DONE:
            continue
        export_pressure_part(key, spectra, outputs["summary"], compression)


def export_pressure_part(key: str, spectra, summary, compression) -> None:
    """Write one pressure's site spectra as a part: an archive and an .npz beside the glass's, and a manifest entry.

    The archive holds each snapshot's XesSpectraData (extras ``xesml_reference_part`` = ``key`` and
    ``xesml_reference_part_index``) and the pressure's summary (the same extra), each with its data
    provenance: the spectra's pw.x and projwfc.x runs, the snapshots, the MD and vc-relax of this pressure and
    everything back to the glass. The MD's trajectory (the summary's creator's input) is what a later sitting
    continues the ladder from (:func:`continued_structure`). The .npz has the layout of the data sets'
    (:func:`write_npz`), so the spectra are usable without AiiDA.
    """
    from aiida.tools.archive import create_archive


    parts = snapshot_parts([spectra])
    spectra_costs = costs([spectra], None)
    for index, part in enumerate(parts):
        part.base.extras.set_many({PART_EXTRA: key, f"{PART_EXTRA}_index": index})
    summary.base.extras.set(PART_EXTRA, key)
    path = glass_part_archive(key)
    npz = path.with_suffix(".npz")
    PART_DIR.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    create_archive([*parts, summary], filename=path, include_authinfos=False, call_calc_backward=False,
                   call_work_backward=False)
    data_counts = write_npz(npz, parts)
    values = summary.get_dict()
    record_glass_part(key, {"archive": path, "npz": npz}, {
        "target_pressure_gpa": values["target_pressure_gpa"], "summary_uuid": summary.uuid,
        "md_trajectory_uuid": summary.creator.inputs.trajectory.uuid,
        "compression_uuid": compression.uuid, "spectra_process_uuid": spectra.uuid,
        "spectra_uuids": [part.uuid for part in parts], **data_counts,
        "summary": {column: values.get(column) for column in (
            "pressure_gpa", "pressure_std_gpa", "variable_cell_pressure_gpa", "temperature_mean_k", "density_g_cm3",
            "ge_o_mean_angstrom", "cn_mean", "cn_histogram", "n_snapshots", "snapshot_stride", "n_equilibration")},
        "costs": spectra_costs})
    print(f"stage {key}: exported {len(parts)} snapshots to {path.name} ({path.stat().st_size / 1e6:.2f} MB) "
          f"and {npz.name}", flush=True)


def pressure_part(key: str):
    """(snapshot XesSpectraData in order, summary Dict) of an archived pressure, imported when the profile
    lacks it; None if the pressure has no archive."""
    from aiida import orm
    from aiida.tools.archive import import_archive

    def found():
        query = orm.QueryBuilder().append(orm.Data, filters={f"extras.{PART_EXTRA}": key}, project="*")
        return query.all(flat=True)

    nodes = found()
    if not nodes and glass_part_archive(key).is_file():
        print(f"stage {key}: importing {glass_part_archive(key).name}", flush=True)
        import_archive(glass_part_archive(key))
        nodes = found()
    if not nodes:
        return None
    summaries = [node for node in nodes if isinstance(node, orm.Dict)]
    parts = sorted((node for node in nodes if not isinstance(node, orm.Dict)),
                   key=lambda node: node.base.extras.get(f"{PART_EXTRA}_index"))
    return parts, summaries[0]


def remaining_pressures(name: str, settings: dict) -> list:
    """The ladder's pressures from the first one without an archived part on (the ladder runs in order)."""
    pressures = list(settings["pressures"])
    done = 0
    while done < len(pressures) and glass_part_archive(pressure_part_key(name, pressures[done])).is_file():
        done += 1
    return pressures[done:]


def continued_structure(name: str, settings: dict, pressure: float, builder):
    """The structure a ladder continued at ``pressure`` starts from: the last MD frame of the archived pressure
    before it, scaled towards ``pressure`` by ``rescale_to_pressure``, as xesml.compression does between two of
    its own pressures (a secant bulk modulus through the two archived pressures before, when there are two)."""
    from aiida import orm

    from aiida_xesml.calculations.rescale_to_pressure import rescale_to_pressure
    from aiida_xesml.workflows.compression import CompressionWorkChain

    before = [p for p in settings["pressures"] if p < pressure][-2:]
    summaries = [pressure_part(pressure_part_key(name, p))[1] for p in before]
    trajectories = [summary.creator.inputs.trajectory for summary in summaries]
    summary = summaries[-1]
    kwargs = {"previous_trajectory": trajectories[0]} if len(trajectories) == 2 else {}
    bulk = builder.bulk_modulus_gpa if "bulk_modulus_gpa" in builder else \
        CompressionWorkChain.spec().inputs["bulk_modulus_gpa"].default()
    rescaled = rescale_to_pressure(
        trajectory=trajectories[-1], n_equilibration=orm.Int(summary["n_equilibration"]),
        target_pressure_gpa=orm.Float(pressure), bulk_modulus_gpa=bulk, **kwargs)
    return rescaled["structure"]


def md_spectra_builder(codes, snapshots, pressure: float):
    from aiida import orm

    from aiida_xesml.workflows.spectra import SpectraWorkChain

    builder = SpectraWorkChain.get_builder_from_protocol(
        codes["pw"], codes["projwfc"], snapshots, protocol=SPECTRUM_PROTOCOL,
        labels=[pressure] * snapshots.numsteps, options=ONE_PROCESS)
    builder.max_concurrent = orm.Int(MAX_CONCURRENT)
    builder.clean_workdir = orm.Bool(True)
    return builder


def submit_finished_pressures(name: str, compression, codes) -> None:
    """Submit (without waiting) the spectra stage of every pressure the compression has finished."""
    from aiida.engine import submit

    for label, (pressure, snapshots) in finished_pressures(compression).items():
        key = f"{name}/md-spectra/{label}"
        if find_stage(key) is None:
            node = submit(md_spectra_builder(codes, snapshots, pressure))
            node.base.extras.set(STAGE_EXTRA, key)
            print(f"stage {key}: submitted <{node.pk}> while the compression runs", flush=True)


def md_spectra_stages(name: str, compression, codes) -> list:
    nodes = []
    for label, (pressure, snapshots) in sorted(finished_pressures(compression).items(), key=lambda item: item[1][0]):
        nodes.append(run_stage(f"{name}/md-spectra/{label}",
                               lambda snapshots=snapshots, pressure=pressure: md_spectra_builder(codes, snapshots, pressure),
                               accept=SPECTRA_DONE))
    return nodes


# --- export -----------------------------------------------------------------------------------------


def snapshot_parts(spectra_nodes) -> list:
    """Per finished snapshot, in data-set order: its XesSpectraData (xesml.spectrum's output, from compute_spectra)."""
    parts = []
    for node in spectra_nodes:
        outputs = node.outputs.snapshot_spectra
        for key in sorted(outputs, key=lambda k: int(k.rsplit("_", 1)[1])):
            parts.append(outputs[key])
    return parts


def snapshot_structure(part):
    """The StructureData a per-snapshot XesSpectraData was computed from (compute_spectra's input)."""
    return part.creator.inputs.structure


def dataset_arrays(parts):
    """The rows of all snapshots stacked, snapshot index = position in ``parts`` (what merge_spectra would give)."""
    energy = parts[0].energy_ev
    for part in parts[1:]:
        if not np.array_equal(part.energy_ev, energy):
            raise ValueError("the snapshots' spectra are on different energy grids")
    return {
        "energy_ev": energy,
        "intensity": np.concatenate([part.intensity for part in parts]),
        "site_index": np.concatenate([part.site_index for part in parts]),
        "reference_ev": np.concatenate([part.reference_ev for part in parts]),
        "label": np.concatenate([part.row_labels for part in parts]),
        "snapshot_index": np.concatenate([np.full(part.n_spectra, index) for index, part in enumerate(parts)]),
    }


def write_npz(path: Path, parts) -> dict:
    """The data set as plain arrays (see aiida_xesml.ml.reference_data); returns the counts."""
    from aiida_xesml.ml.structures import coordination_numbers

    rows = dataset_arrays(parts)
    structures = [snapshot_structure(part) for part in parts]
    frames = [structure.get_ase() for structure in structures]
    snapshot_index, site_index = rows["snapshot_index"], rows["site_index"]
    cn = np.empty(len(site_index), dtype=int)
    for index, atoms in enumerate(frames):
        mine = np.flatnonzero(snapshot_index == index)
        ge = np.flatnonzero(atoms.numbers == 32)
        per_ge = dict(zip(ge, coordination_numbers(atoms, CN_CUTOFF)))
        cn[mine] = [per_ge[site] for site in site_index[mine]]
    offsets = np.concatenate([[0], np.cumsum([len(atoms) for atoms in frames])])
    snapshot_label = np.array([part.row_labels[0] for part in parts])
    np.savez_compressed(
        path, **rows, cn=cn, cells=np.stack([atoms.cell[:] for atoms in frames]), snapshot_label=snapshot_label,
        atom_offsets=offsets, positions=np.concatenate([atoms.positions for atoms in frames]),
        numbers=np.concatenate([atoms.numbers for atoms in frames]),
        snapshot_uuid=np.array([structure.uuid for structure in structures]),
    )
    return counts(cn, rows["label"], snapshot_label)


def counts(cn, labels, snapshot_label) -> dict:
    def histogram(values):
        unique, number = np.unique(values, return_counts=True)
        return {str(int(value)): int(count) for value, count in zip(unique, number)}

    return {
        "n_snapshots": int(len(snapshot_label)),
        "n_sites": int(len(cn)),
        "sites_per_cn": histogram(cn),
        "sites_per_label": {f"{label:g}": int(np.sum(labels == label)) for label in np.unique(labels)},
        "snapshots_per_label": {f"{label:g}": int(np.sum(snapshot_label == label))
                                for label in np.unique(snapshot_label)},
        "cn_histogram_per_label": {f"{label:g}": histogram(cn[labels == label]) for label in np.unique(labels)},
    }


def costs(spectra_nodes, compression) -> dict:
    """Wall times (s) measured from the profile: work chains, and QE's own wall time of their calculations."""
    from aiida import orm

    def qe_seconds(node):
        total = 0.0
        for child in node.called_descendants:
            if isinstance(child, orm.CalcJobNode) and "output_parameters" in child.outputs:
                total += child.outputs.output_parameters.get("wall_time_seconds") or 0.0
        return total

    spectra_wall = sum((node.mtime - node.ctime).total_seconds() for node in spectra_nodes)
    n_snapshots = sum(len(node.outputs.snapshot_spectra) for node in spectra_nodes)
    n_sites = sum(node.outputs.spectra.n_spectra for node in spectra_nodes)
    return {
        "spectra_wall_s": round(spectra_wall, 1),
        "spectra_qe_wall_s": round(sum(qe_seconds(node) for node in spectra_nodes), 1),
        "spectra_wall_per_snapshot_s": round(spectra_wall / max(n_snapshots, 1), 1),
        "site_spectra_per_hour": round(3600.0 * n_sites / max(spectra_wall, 1e-9)),
        "compression_wall_s": round((compression.mtime - compression.ctime).total_seconds(), 1) if compression else None,
        "compression_qe_wall_s": round(qe_seconds(compression), 1) if compression else None,
        "note": f"{os.cpu_count()}-core machine, load average {os.getloadavg()[1]:.1f} over the last 5 min at export; "
                "spectra: 2 snapshots at a time x 1 MPI process, compression: 2 MPI processes",
    }


def ladder_table(ladder: dict) -> dict:
    """The per-pressure summary table of a ladder kept in parts (xesml.compression's ``summary_table``, made by
    the same calcfunction from the archived summaries)."""
    from aiida_xesml.calculations.compression_table import compression_table

    return compression_table(**{key.rsplit("/", 1)[1]: summary for key, (_, summary) in ladder.items()}).get_dict()


def code_version() -> str:
    """The commit of the code that ran: the COMMIT file of a frozen copy (what the campaign's daemon runs: start the
    script with the same PYTHONPATH), else the git commit of the package's checkout (with '+uncommitted changes'
    when its tree differs), else the package's path."""
    import subprocess

    import aiida_xesml

    root = Path(aiida_xesml.__file__).resolve().parents[1]
    if (root / "COMMIT").is_file():
        return (root / "COMMIT").read_text().strip()
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "aiida_xesml"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(root / "aiida_xesml")
    return commit + (" +uncommitted changes" if changed else "")


def labels_of(config: dict) -> dict:
    """What each label of a data set means (the manifest's ``labels``)."""
    labels = {}
    if "crystals" in config:
        labels[f"{LABEL_QUARTZ:g}"] = "α-quartz-type 3x2x1 (54 atoms), rattled and strained"
        labels[f"{LABEL_RUTILE:g}"] = "rutile-type 2x2x2 (48 atoms), rattled and strained"
    compression = config.get("compression", {})
    for pressure in compression.get("pressures", []) if "glass" in config else []:
        labels[f"{pressure:g}"] = (f"MD snapshot of the {3 * config['glass']['n_ge']}-atom melt-quenched glass "
                                   f"compressed at {pressure:g} GPa (PBE), {compression['temperature_k']:g} K")
    for pressure in compression.get("pressures", []) if "glass" not in config else []:
        cell = "x".join(str(n) for n in compression["supercell"])
        family = FAMILY_NAMES[compression.get("family", "quartz")]
        labels[f"{pressure:g}"] = (f"MD snapshot of {cell} {family} ({len(compression_start(compression))} atoms) "
                                   f"compressed at {pressure:g} GPa (PBE), {COMPRESSION_OVERRIDES['temperature_k']:g} K")
    return labels


def ladder_parts(name: str, config: dict) -> dict:
    """{pressure part key: (snapshot XesSpectraData, summary Dict)} of a ladder kept in parts, in pressure order;
    raises SystemExit naming the first pressure without an archive."""
    ladder = {}
    for pressure in config["compression"]["pressures"]:
        key = pressure_part_key(name, pressure)
        part = pressure_part(key)
        if part is None:
            raise SystemExit(f"stage {name}/export: {key} has no archived part yet; run the script again")
        ladder[key] = part
    return ladder


def export_stage(name: str, config: dict, spectra_nodes, compression, glass=None, ladder=None):
    """Export the archive (provenance), write the .npz and the manifest entry.

    ``ladder`` (from :func:`ladder_parts`) replaces ``spectra_nodes`` and ``compression`` for a ladder made in
    parts over several sittings: its spectra, its per-pressure summaries and the costs the parts recorded.

    The archive holds each snapshot's XesSpectraData once, in the group ``xesml-reference/<name>``
    (extra ``xesml_reference_snapshot``: its index in the data set), with its data provenance:
    compute_spectra, projwfc.x, pw.x, the structure and, for MD snapshots, the compression's
    calculations back to the starting cell. The work chains' bookkeeping (and their merged copies of
    the same spectra) is left out, to keep the archive small.
    """
    from aiida import orm
    from aiida.tools.archive import create_archive

    from aiida_xesml.ml.reference_data import reference_path, sha256

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    parts = snapshot_parts(spectra_nodes) if ladder is None else [part for nodes, _ in ladder.values() for part in nodes]
    archive, npz = reference_path(name, ".aiida", DATA_DIR), reference_path(name, ".npz", DATA_DIR)
    manifest = read_manifest()
    entry = manifest["datasets"].get(name, {})
    if entry.get("spectra_uuids") == [part.uuid for part in parts] and archive.is_file() and npz.is_file() \
            and entry.get("archive_sha256") == sha256(archive) and entry.get("npz_sha256") == sha256(npz):
        print(f"stage {name}/export: done ({archive.name}, {npz.name})")
        return entry

    group, _ = orm.Group.collection.get_or_create(f"xesml-reference/{name}")
    group.add_nodes(parts)
    for index, part in enumerate(parts):
        part.base.extras.set("xesml_reference_snapshot", index)
    archive.unlink(missing_ok=True)
    create_archive([group], filename=archive, include_authinfos=False, call_calc_backward=False,
                   call_work_backward=False)
    data_counts = write_npz(npz, parts)
    structures = [snapshot_structure(part) for part in parts]
    entry = {
        "description": config["description"],
        "archive": archive.name, "archive_sha256": sha256(archive), "archive_bytes": archive.stat().st_size,
        "npz": npz.name, "npz_sha256": sha256(npz), "npz_bytes": npz.stat().st_size,
        "group": group.label,
        "spectra_uuids": [part.uuid for part in parts],
        "snapshot_uuids": [structure.uuid for structure in structures],
        "n_atoms_per_snapshot": sorted({len(structure.sites) for structure in structures}),
        **data_counts,
        "labels": labels_of(config),
        "settings": {"spectrum_protocol": SPECTRUM_PROTOCOL, "spectrum_parameters": parts[0].parameters,
                     "crystals": config.get("crystals"), "glass": config.get("glass"),
                     "compression": config.get("compression"),
                     "compression_overrides": COMPRESSION_OVERRIDES if "compression" in config else None,
                     "cn_cutoff_A": CN_CUTOFF},
        "compression_summary": ladder_table(ladder) if ladder is not None
        else compression.outputs.summary_table.get_dict() if compression is not None else None,
        "glass_summary": glass.outputs.summary.get_dict() if glass is not None else None,
        "costs": costs(spectra_nodes, compression) if ladder is None
        else {key: manifest["glass_parts"][key]["costs"] for key in ladder},
        "code": code_version(),
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    manifest["datasets"][name] = entry
    MANIFEST.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    print(f"stage {name}/export: {archive} ({entry['archive_bytes'] / 1e6:.2f} MB), {npz} "
          f"({entry['npz_bytes'] / 1e6:.2f} MB), {entry['n_sites']} sites, CN {entry['sites_per_cn']}")
    return entry


# --- command line -------------------------------------------------------------------------------------


def load_codes():
    from aiida import orm

    return {"pw": orm.load_code("pw-qe@localhost"), "projwfc": orm.load_code("projwfc-qe@localhost")}


def run(names):
    codes = load_codes()
    for name in names:
        config = DATASETS[name]
        print(f"== {name}: {config['description']}", flush=True)
        crystals = [crystal_stage(name, config, codes)] if "crystals" in config else []
        glass = glass_stage(name, config, codes) if "glass" in config else None
        compression = compression_stage(name, config, codes, glass) if "compression" in config else None
        md = md_spectra_stages(name, compression, codes) if compression is not None else []
        if in_parts(config.get("compression", {})):  # a ladder kept in parts: the data set is made of them
            if compression is not None:
                export_pressure_parts(name, compression)
            export_stage(name, config, [], None, glass, ladder=ladder_parts(name, config))
        else:
            export_stage(name, config, [*crystals, *md], compression, glass)


def status(names):
    from aiida import orm

    for name in names:
        query = orm.QueryBuilder().append(orm.Node, filters={f"extras.{STAGE_EXTRA}": {"like": f"{name}/%"}},
                                          project=["id", f"extras.{STAGE_EXTRA}", "attributes.exit_status",
                                                   "attributes.process_state"])
        for pk, key, exit_status, state in sorted(query.all(), key=lambda row: row[0]):
            print(f"{key:45s} <{pk}> {state or 'data'} {'' if exit_status is None else exit_status}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "status"))
    parser.add_argument("--dataset", choices=sorted(DATASETS), action="append",
                        help="only this data set (repeatable); default: all, in order")
    args = parser.parse_args(argv)
    from aiida import load_profile

    load_profile()
    names = args.dataset or list(DATASETS)
    {"run": run, "status": status}[args.command](names)


if __name__ == "__main__":
    sys.exit(main())
