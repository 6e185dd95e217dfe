"""Steps of the service and daemon-fault tests, run in a subprocess on the ``core.psql_dos`` profile.

The test process keeps its own (SQLite) test profile loaded, so everything that touches the
PostgreSQL + RabbitMQ profile runs here, in another process with another AIIDA_PATH:

    AIIDA_PATH=... python scenario.py codes
    AIIDA_PATH=... python scenario.py submit-spectra [--seeds 1 2 3]
    AIIDA_PATH=... python scenario.py submit-spectrum --seeds 1
    AIIDA_PATH=... python scenario.py wait-running PK [--timeout S]
    AIIDA_PATH=... python scenario.py results PK [--timeout S]

Each prints one JSON object on success, and exits non-zero with a message otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime

ONE_PROCESS = {"resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1}}
QE_START = re.compile(r"starts on\s+(\d{1,2}\s?[A-Z][a-z]{2}\d{4}) at\s+(\d{1,2}:\s?\d{1,2}:\s?\d{1,2})")
QE_END = re.compile(r"terminated on:\s+(\d{1,2}:\s?\d{1,2}:\s?\d{1,2})\s+(\d{1,2}\s?[A-Z][a-z]{2}\d{4})")


def snapshot(seed: int):
    """The 6-atom rutile-type GeO2 cell rattled by 0.03 Å with ``seed`` (an ase Atoms)."""
    from aiida_xesml.ml.structures import rutile_geo2

    atoms = rutile_geo2()
    atoms.rattle(0.03, seed=seed)
    return atoms


def spectra_builder(seeds, codes):
    from aiida import orm

    from aiida_xesml.workflows.spectra import SpectraWorkChain

    structures = [orm.StructureData(ase=snapshot(seed)) for seed in seeds]
    return SpectraWorkChain.get_builder_from_protocol(codes["pw"], codes["projwfc"], structures, protocol="fast",
                                                      options=ONE_PROCESS, labels=list(seeds))


def spectrum_builder(seed, codes):
    from aiida import orm

    from aiida_xesml.workflows.spectrum import SpectrumWorkChain

    return SpectrumWorkChain.get_builder_from_protocol(codes["pw"], codes["projwfc"],
                                                       orm.StructureData(ase=snapshot(seed)), protocol="fast",
                                                       options=ONE_PROCESS)


def qe_run_interval(text: str) -> tuple[float, float] | None:
    """Start and end (POSIX seconds) of a QE run from its output's 'starts on' and 'terminated on' lines."""
    start, end = QE_START.search(text), QE_END.search(text)
    if start is None or end is None:
        return None

    def seconds(day: str, clock: str) -> float:
        return datetime.strptime(day.replace(" ", "") + clock.replace(" ", ""), "%d%b%Y%H:%M:%S").timestamp()

    return seconds(*start.groups()), seconds(end.group(2), end.group(1))


def calculations_of(node) -> list[dict]:
    """Every CalcJob below ``node``: pk, process label, exit status, job id and its QE run interval."""
    from aiida import orm

    rows = []
    for calc in sorted((n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)), key=lambda n: n.pk):
        interval = None
        if "retrieved" in calc.outputs:
            name = calc.get_option("output_filename")
            if name in calc.outputs.retrieved.base.repository.list_object_names():
                interval = qe_run_interval(calc.outputs.retrieved.base.repository.get_object_content(name))
        rows.append({"pk": calc.pk, "process_label": calc.process_label, "exit_status": calc.exit_status,
                     "job_id": calc.get_job_id(), "interval": interval})
    return rows


def results(pk: int) -> dict:
    from aiida import orm

    node = orm.load_node(pk)
    out = {"pk": pk, "exit_status": node.exit_status, "exit_message": node.exit_message,
           "process_state": node.process_state.value if node.process_state else None,
           "calculations": calculations_of(node)}
    if "spectra" in node.outputs:
        spectra = node.outputs.spectra
        out["intensity"] = spectra.intensity.tolist()
        out["energy_ev"] = spectra.energy_ev.tolist()
        out["snapshot_index"] = spectra.get_array("snapshot_index").tolist() if "snapshot_index" in \
            spectra.get_arraynames() else None
    return out


def wait_terminated(pk: int, timeout: float) -> dict:
    """Wait until process ``pk`` has terminated, then return :func:`results`."""
    from aiida import orm

    deadline = time.monotonic() + timeout
    while not orm.load_node(pk).is_terminated:
        if time.monotonic() > deadline:
            raise SystemExit(f"process {pk} did not terminate within {timeout:.0f} s")
        time.sleep(1.0)
    return results(pk)


def wait_running(pk: int, timeout: float) -> dict:
    """Wait until a CalcJob below ``pk`` has been submitted to the scheduler and is waiting on it."""
    from aiida import orm
    from aiida.common.datastructures import CalcJobState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node = orm.load_node(pk)
        for calc in (c for c in node.called_descendants if isinstance(c, orm.CalcJobNode)):
            if calc.get_job_id() and calc.get_state() == CalcJobState.WITHSCHEDULER:
                return {"calculation": calc.pk, "process_label": calc.process_label, "job_id": calc.get_job_id()}
        if node.is_terminated:
            from aiida.cmdline.utils.common import get_workchain_report

            raise SystemExit(f"process {pk} terminated (exit {node.exit_status}: {node.exit_message}; "
                             f"{node.exception}) before any calculation was waiting on the scheduler:\n"
                             f"{get_workchain_report(node, 'REPORT')}")
        time.sleep(0.5)
    raise SystemExit(f"no calculation of process {pk} reached the scheduler within {timeout:.0f} s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["codes", "submit-spectra", "submit-spectrum", "wait-running", "results"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--timeout", type=float, default=300.0)
    options = parser.parse_args(argv)

    from aiida import load_profile
    from aiida.engine import submit

    from aiida_xesml.pseudos.families import ensure_pseudo_family
    from aiida_xesml.setup import ensure_codes, get_localhost

    load_profile()
    if options.step == "codes":
        codes = ensure_codes(get_localhost())
        ensure_pseudo_family()
        print(json.dumps({name: code.pk for name, code in codes.items()}))
        return
    if options.step in ("submit-spectra", "submit-spectrum"):
        codes = ensure_codes(get_localhost())
        builder = (spectra_builder(options.seeds, codes) if options.step == "submit-spectra"
                   else spectrum_builder(options.seeds[0], codes))
        print(json.dumps({"pk": submit(builder).pk}))
        return
    if options.step == "wait-running":
        print(json.dumps(wait_running(int(options.args[0]), options.timeout)))
        return
    print(json.dumps(wait_terminated(int(options.args[0]), options.timeout)))


if __name__ == "__main__":
    sys.exit(main())
