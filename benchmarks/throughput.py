"""Throughput of site spectra: the plugin against raw pw.x + projwfc.x, side by side in one run (issue 14 §4).

N rattled and strained 48-atom rutile-type GeO2 supercells (2x2x2) at Γ, `balanced` spectrum
protocol (30/180 Ry, nosym, Γ tricks). Three passes, one after the other on the same machine:

1. **raw**: for each snapshot, ``mpirun -np R pw.x`` then ``mpirun -np R projwfc.x`` by hand, in a
   plain folder, with the very input files the plugin writes (pw.x's from a dry run of the same
   PwCalculation inputs, projwfc.x's from the same namelist). No AiiDA. Snapshots one after the other,
   with OpenMPI's defaults (each run's ranks bound to cores), as at the shell.
2. **plugin**: one ``xesml.spectra`` (all N snapshots) submitted to the daemon of a throw-away
   ``verdi presto`` profile (SQLite, built-in broker); ``max_concurrent`` snapshots at a time with
   ``r`` MPI processes each. Timed from submission until the work chain has terminated.
3. **raw** again (the machine's load drifts; the ratio uses the mean of both raw passes).
4. with ``--paired``: raw QE by hand in the plugin's layout (``--concurrent`` snapshots at a time,
   ``--ranks`` MPI processes each, in the environment of the plugin's codes), to separate AiiDA's own
   cost from the gain of that layout.

It prints the times, the ratio plugin / raw (target <= 1.15), where the plugin's time goes
(per calculation: QE's own wall time and the rest), the equality of the spectra with the raw
projections, and the repository bytes per snapshot, with the projwfc.x part also measured for
aiida-quantumespresso's own ProjwfcCalculation (what the plugin stored before) on the same SCF.

    python benchmarks/throughput.py [--snapshots 6] [--raw-ranks 2] [--concurrent 2] [--ranks 1] [--paired]

Uses at most 2 QE processes at a time with the defaults. Timings are noisy on a shared machine:
compare the ratio, not the absolute times.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: The raw runs' environment: what ``mpirun`` needs as root, one OpenMP thread, and otherwise OpenMPI's
#: defaults (each run's ranks bound to cores), as a user at the shell gets them.
RAW_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMP_NUM_THREADS": "1"}


def plugin_env() -> dict:
    """The environment of the plugin's QE runs: the ``export`` lines of ``localhost``'s and the codes'
    prepend texts."""
    from aiida_xesml.setup.codes import LOCAL_PREPEND_TEXT, PREPEND_TEXT

    text = LOCAL_PREPEND_TEXT + PREPEND_TEXT
    lines = [line.removeprefix("export ").split("=", 1) for line in text.splitlines() if line.strip()]
    return dict(lines)


def make_structures(count: int, seed: int = 100):
    from aiida_xesml.ml.structures import rattle_and_strain, rutile_geo2, supercell

    base = supercell(rutile_geo2(), 2)
    return [rattle_and_strain(base, rattle=0.05, strain=0.02, seed=seed + index) for index in range(count)]


def spectrum_builder(structures, concurrent: int, ranks: int):
    from aiida import orm

    from aiida_xesml.workflows.spectra import SpectraWorkChain

    builder = SpectraWorkChain.get_builder_from_protocol(
        "pw-qe@localhost", "projwfc-qe@localhost", [orm.StructureData(ase=atoms) for atoms in structures],
        protocol="balanced", options={"resources": {"num_machines": 1, "num_mpiprocs_per_machine": ranks}})
    builder.max_concurrent = orm.Int(concurrent)
    return builder


def write_raw_inputs(builder, folder: Path) -> list[Path]:
    """One folder per snapshot with the pw.x input of a dry run of the plugin's PwCalculation and the
    projwfc.x input from the same namelist (outdir, prefix and blocked keywords as upstream sets them)."""
    from aiida import orm
    from aiida.engine import run
    from aiida_quantumespresso.calculations.pw import PwCalculation

    from aiida_xesml.calculations.projwfc import ProjwfcCalculation

    spectrum = builder.spectrum
    scf = spectrum.scf
    projwfc_parameters = ProjwfcCalculation.set_blocked_keywords(copy.deepcopy(spectrum.projwfc.parameters.get_dict()))
    projwfc_input = ProjwfcCalculation.generate_input_file(ProjwfcCalculation.filter_namelists(
        projwfc_parameters, ProjwfcCalculation._default_namelists))  # noqa: SLF001
    folders = []
    here = os.getcwd()
    for index, key in enumerate(sorted(builder.structures, key=lambda k: int(k.rsplit("_", 1)[1]))):
        parameters = copy.deepcopy(scf.pw.parameters.get_dict())  # PwCalculation fills its copy in place
        parameters["CONTROL"]["calculation"] = "scf"
        inputs = {name: scf.pw[name] for name in scf.pw if name not in ("metadata", "parameters")}
        inputs.update(structure=builder.structures[key], parameters=orm.Dict(parameters), kpoints=scf.kpoints,
                      metadata={"dry_run": True, "store_provenance": False, "options": dict(scf.pw.metadata.options)})
        target = folder / f"snapshot_{index}"
        os.chdir(folder)
        try:
            run(PwCalculation, **inputs)
        finally:
            os.chdir(here)
        dry = max((folder / "submit_test").iterdir(), key=lambda path: path.stat().st_mtime)
        shutil.move(str(dry), target)
        (target / "projwfc.in").write_text(projwfc_input)
        folders.append(target)
    return folders


def run_raw(folders: list[Path], ranks: int, tag: str, qe_env: dict = RAW_ENV) -> list[tuple[float, float]]:
    """Run pw.x then projwfc.x in a copy of each folder (environment ``qe_env``); return (pw, projwfc) wall
    seconds per snapshot."""
    env = dict(os.environ, **qe_env)
    times = []
    for folder in folders:
        work = folder.with_name(f"{folder.name}-{tag}")
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(folder, work)
        spent = []
        for exe, stdin, stdout in (("pw.x", "aiida.in", "aiida.out"), ("projwfc.x", "projwfc.in", "projwfc.out")):
            start = time.perf_counter()
            with open(work / stdin) as fin, open(work / stdout, "w") as fout:
                subprocess.run(["mpirun", "-np", str(ranks), exe], stdin=fin, stdout=fout, cwd=work, env=env,
                               check=True)
            spent.append(time.perf_counter() - start)
        times.append(tuple(spent))
    return times


def run_raw_paired(folders: list[Path], workers: int, ranks: int, tag: str) -> float:
    """The plugin's layout by hand: ``workers`` snapshots at a time, ``ranks`` MPI processes each, in the
    plugin's environment (its codes' prepend text); wall seconds."""
    from concurrent.futures import ThreadPoolExecutor

    env = plugin_env()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda folder: run_raw([folder], ranks, tag, env), folders))
    return time.perf_counter() - start


def run_plugin(builder) -> tuple[float, object]:
    from aiida import orm
    from aiida.engine import submit

    start = time.perf_counter()
    node = submit(builder)
    while not orm.load_node(node.pk).is_terminated:
        time.sleep(0.2)
    return time.perf_counter() - start, orm.load_node(node.pk)


def repository_bytes(nodes) -> int:
    """Bytes in the file repository (files and array .npy) of ``nodes``."""
    total = 0
    for node in nodes:
        repository = node.base.repository
        for root, _, files in repository.walk():
            for name in files:
                total += len(repository.get_object_content(str(root / name), mode="rb"))
    return total


def created_nodes(process) -> list:
    """``process``, every process it called (recursively) and every node these created or returned."""
    from aiida.common.links import LinkType

    processes = [process, *process.called_descendants]
    nodes = {node.pk: node for node in processes}
    for node in processes:
        for link in node.base.links.get_outgoing(link_type=(LinkType.CREATE, LinkType.RETURN)).all():
            nodes[link.node.pk] = link.node
    return list(nodes.values())


def upstream_projwfc_bytes(spectrum_node) -> tuple[int, int]:
    """Repository bytes of aiida-quantumespresso's own ProjwfcCalculation, with the xesml.projwfc parser and
    atomic_proj.xml retrieved (what xesml.spectrum ran before), on the same SCF; and of the plugin's."""
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory

    calculation = next(c for c in spectrum_node.called if c.process_label == "ProjwfcCalculation")
    scf = next(c for c in spectrum_node.called if c.process_label == "PwBaseWorkChain")
    builder = CalculationFactory("quantumespresso.projwfc").get_builder()
    builder.code = calculation.inputs.code
    builder.parameters = calculation.inputs.parameters
    builder.parent_folder = scf.outputs.remote_folder
    builder.metadata.options = {"resources": {"num_machines": 1, "num_mpiprocs_per_machine": 2},
                                "parser_name": "xesml.projwfc",
                                "additional_retrieve_list": ["out/aiida.save/atomic_proj.xml"]}
    _, upstream = run_get_node(builder)
    return repository_bytes(created_nodes(upstream)), repository_bytes(created_nodes(calculation))


def breakdown(root) -> list[dict]:
    """Per snapshot: duration of the xesml.spectrum, QE wall time of pw.x and projwfc.x, overhead."""
    rows = []
    for child in sorted((c for c in root.called if c.process_label == "SpectrumWorkChain"), key=lambda n: n.ctime):
        calcs = [c for c in child.called_descendants if c.process_label in ("PwCalculation", "ProjwfcCalculation")]
        qe = {c.process_label: c.outputs.output_parameters.get("wall_time_seconds") for c in calcs
              if "output_parameters" in c.outputs}
        spans = {c.process_label: (c.mtime - c.ctime).total_seconds() for c in calcs}
        rows.append({"duration": (child.mtime - child.ctime).total_seconds(), "qe": qe, "calcjob": spans})
    return rows


def compare_spectra(root, folders: list[Path], tag: str) -> float:
    """Largest |p-weight| difference (dimensionless) between the plugin's site_projections and the raw runs'
    atomic_proj.xml, over all snapshots: the plugin must compute the same numbers."""
    from aiida_xesml.ml.atomic_proj import read_atomic_proj, read_projwfc_states
    from aiida_xesml.ml.spectra import project_sites

    worst = 0.0
    children = sorted((c for c in root.called if c.process_label == "SpectrumWorkChain"), key=lambda n: n.ctime)
    for child, folder in zip(children, folders):
        work = folder.with_name(f"{folder.name}-{tag}")
        raw = read_atomic_proj((work / "out/aiida.save/atomic_proj.xml").read_bytes())
        states = read_projwfc_states((work / "projwfc.out").read_text())
        p_raw = project_sites(raw.weights, states.atom_index, states.l, int(states.atom_index.max()) + 1, l=1)
        calculation = next(c for c in child.called if c.process_label == "ProjwfcCalculation")
        p_plugin = calculation.outputs.site_projections.get_array("p_weights")
        worst = max(worst, float(np.abs(p_plugin - p_raw).max()))
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshots", type=int, default=6, help="number of 48-atom snapshots (default 6)")
    parser.add_argument("--raw-ranks", type=int, default=2, help="MPI processes of the raw runs (default 2)")
    parser.add_argument("--concurrent", type=int, default=2, help="xesml.spectra max_concurrent (default 2)")
    parser.add_argument("--ranks", type=int, default=1, help="MPI processes per plugin calculation (default 1)")
    parser.add_argument("--paired", action="store_true",
                        help="also run raw QE by hand in the plugin's layout (--concurrent at a time, --ranks MPI)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary profile and folders")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="xesml-throughput-"))
    os.environ["AIIDA_PATH"] = str(folder / ".aiida")
    verdi = str(Path(sys.executable).with_name("verdi"))
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    from aiida_xesml.setup import setup

    setup(profile="throughput", install_packages=False)
    from aiida import load_profile

    load_profile("throughput", allow_switch=True)
    structures = make_structures(args.snapshots)
    builder = spectrum_builder(structures, args.concurrent, args.ranks)
    raw_folders = write_raw_inputs(builder, folder)
    print(f"{args.snapshots} snapshots of {len(structures[0])} atoms (rutile-type 2x2x2, rattled 0.05 Å, "
          f"strained 2 %), balanced protocol at Γ; scratch {folder}", flush=True)

    subprocess.run([verdi, "-p", "throughput", "daemon", "start", "1"], check=True, capture_output=True)
    try:
        raw_first = run_raw(raw_folders, args.raw_ranks, "raw1")
        print(f"raw pass 1: {sum(map(sum, raw_first)):.1f} s", flush=True)
        plugin_seconds, root = run_plugin(builder)
        print(f"plugin: {plugin_seconds:.1f} s (exit {root.exit_status})", flush=True)
        raw_second = run_raw(raw_folders, args.raw_ranks, "raw2")
        print(f"raw pass 2: {sum(map(sum, raw_second)):.1f} s", flush=True)
        paired = run_raw_paired(raw_folders, args.concurrent, args.ranks, "paired") if args.paired else None
        if paired:
            print(f"raw, plugin's layout ({args.concurrent} at a time x {args.ranks} MPI): {paired:.1f} s", flush=True)
    finally:
        subprocess.run([verdi, "-p", "throughput", "daemon", "stop"], check=False, capture_output=True)
    if not root.is_finished_ok:
        raise SystemExit(f"xesml.spectra failed: {root.exit_status} {root.exit_message}")

    raw_seconds = statistics.mean([sum(map(sum, raw_first)), sum(map(sum, raw_second))])
    print()
    print(f"| snapshots | raw pw.x + projwfc.x ({args.raw_ranks} MPI, one at a time) | plugin (xesml.spectra, "
          f"{args.concurrent} at a time x {args.ranks} MPI) | plugin / raw |")
    print("|---|---|---|---|")
    print(f"| {args.snapshots} | {raw_seconds:.1f} s (passes {sum(map(sum, raw_first)):.1f}, "
          f"{sum(map(sum, raw_second)):.1f}) | {plugin_seconds:.1f} s | **{plugin_seconds / raw_seconds:.3f}** |")
    print(f"\nper snapshot: raw {raw_seconds / args.snapshots:.1f} s, plugin {plugin_seconds / args.snapshots:.1f} s"
          f" (target: plugin <= 1.15 x raw)")
    if paired:
        print(f"raw in the plugin's layout ({args.concurrent} at a time x {args.ranks} MPI, by hand): {paired:.1f} s; "
              f"plugin / that = {plugin_seconds / paired:.3f} (AiiDA's own cost, the layout factored out)")

    rows = breakdown(root)
    print("\nwhere the plugin's time goes (per snapshot, s): xesml.spectrum | pw.x QE wall / its CalcJob | "
          "projwfc.x QE wall / its CalcJob")
    for index, row in enumerate(rows):
        qe, span = row["qe"], row["calcjob"]
        print(f"  {index}: {row['duration']:6.1f} | {qe.get('PwCalculation', 0):6.1f} / "
              f"{span.get('PwCalculation', 0):6.1f} | {qe.get('ProjwfcCalculation', 0):5.1f} / "
              f"{span.get('ProjwfcCalculation', 0):5.1f}")
    durations = [row["duration"] for row in rows]
    qe_total = [sum(v for v in row["qe"].values() if v) for row in rows]
    print(f"  median xesml.spectrum {statistics.median(durations):.1f} s, of which QE {statistics.median(qe_total):.1f} s"
          f" ({100 * statistics.median(qe_total) / statistics.median(durations):.0f} %)")

    print(f"\nlargest |p weight| difference, plugin vs raw atomic_proj.xml: {compare_spectra(root, raw_folders, 'raw1'):.2e}"
          " (dimensionless; same inputs, same machine)")

    children = sorted((c for c in root.called if c.process_label == "SpectrumWorkChain"), key=lambda n: n.ctime)
    per_snapshot = [repository_bytes(created_nodes(child)) for child in children]
    upstream, lean = upstream_projwfc_bytes(children[0])
    merged = repository_bytes(created_nodes(next(c for c in root.called if c.process_label == "merge_spectra")))
    print(f"\nrepository per 48-atom snapshot (files + arrays of every node xesml.spectrum created):"
          f" {statistics.mean(per_snapshot) / 1e6:.3f} MB (+ {merged / 1e6 / args.snapshots:.3f} MB merged spectra)")
    print(f"  projwfc.x part: plugin's ProjwfcCalculation {lean / 1e6:.3f} MB; aiida-quantumespresso's "
          f"ProjwfcCalculation with atomic_proj.xml retrieved (before) {upstream / 1e6:.3f} MB on the same SCF;"
          f" so a snapshot held about {(statistics.mean(per_snapshot) - lean + upstream) / 1e6:.3f} MB before")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
