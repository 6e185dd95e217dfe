"""``xesml.spectrum`` end to end through ``core.ssh`` (sshd on loopback) and ``core.slurm`` (one node).

One run of the ``fast`` protocol on the 6-atom rutile GeO2 cell goes through the provisioned
computer (see ``conftest.py`` and ``provision.py``); the tests then check where it ran, that its
inputs went over SSH, that its outputs came back and parsed, and that the spectrum equals the same
run on the localhost computer.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node

from aiida_xesml.ml.structures import rutile_geo2
from aiida_xesml.workflows.spectrum import SpectrumWorkChain

pytestmark = [pytest.mark.remote, pytest.mark.qe]

# Largest |remote - localhost| intensity difference allowed (the same executables, inputs and MPI
# count on the same machine; measured: 0 within float64 output precision, see docs/how-to/remote-hpc.md).
LOCAL_TOLERANCE = 1e-6


def _options(mpiprocs: int) -> dict:
    return {"resources": {"num_machines": 1, "num_mpiprocs_per_machine": mpiprocs}, "max_wallclock_seconds": 600}


def _calcjobs(node) -> list:
    return [child for child in node.called_descendants if isinstance(child, orm.CalcJobNode)]


def _qe_seconds(node) -> float:
    """Wall seconds that pw.x and projwfc.x report at the end of their outputs (the rest is AiiDA, SSH, Slurm)."""
    total = 0.0
    for calc in _calcjobs(node):
        if "retrieved" not in calc.outputs:
            continue
        text = calc.outputs.retrieved.base.repository.get_object_content("aiida.out")
        match = re.findall(r"^\s*(?:PWSCF|PROJWFC)\s*:.*?CPU\s+(.*?)\s+WALL", text, flags=re.MULTILINE)
        if match:
            total += _qe_duration(match[-1])
    return total


def _qe_duration(text: str) -> float:
    """QE's '1m 5.32s' / '12.34s' / '1h 2m' duration in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    return sum(float(value) * units[unit] for value, unit in re.findall(r"([\d.]+)\s*([hms])", text))


def _run_spectrum(codes, mpiprocs):
    builder = SpectrumWorkChain.get_builder_from_protocol(
        codes["pw"], codes["projwfc"], orm.StructureData(ase=rutile_geo2()), protocol="fast",
        options=_options(mpiprocs))
    start = time.monotonic()
    results, node = run_get_node(builder)
    return results, node, time.monotonic() - start


@pytest.fixture(scope="module")
def remote_run(remote_setup, remote_codes, pseudo_family, mpiprocs):
    """The remote run, with the sshd's and slurmctld's log lines written while it ran."""
    logs = {"sshd": remote_setup.sshd_log, "slurmctld": remote_setup.slurmctld_log}
    offsets = {name: path.stat().st_size if path.is_file() else 0 for name, path in logs.items()}
    results, node, seconds = _run_spectrum(remote_codes, mpiprocs)
    written = {}
    for name, path in logs.items():
        with path.open("rb") as handle:
            handle.seek(offsets[name])
            written[name] = handle.read().decode(errors="replace")
    print(f"\nremote xesml.spectrum <{node.pk}>: {seconds:.1f} s ({_qe_seconds(node):.1f} s in QE), slurm jobs "
          f"{[calc.get_job_id() for calc in _calcjobs(node)]}, "
          f"{written['sshd'].count('Accepted publickey')} SSH connections")
    return {"results": results, "node": node, "seconds": seconds, "logs": written}


def test_finished_ok_on_the_slurm_computer_with_job_ids(remote_run, slurm_computer):
    node = remote_run["node"]
    assert node.is_finished_ok, f"exit {node.exit_status}: {node.exit_message}"
    calcjobs = _calcjobs(node)
    assert sorted(calc.process_label for calc in calcjobs) == ["ProjwfcCalculation", "PwCalculation"]
    for calc in calcjobs:
        assert calc.computer.uuid == slurm_computer.uuid
        assert (calc.computer.transport_type, calc.computer.scheduler_type) == ("core.ssh", "core.slurm")
        job_id = calc.get_job_id()
        assert job_id is not None and job_id.isdigit(), job_id
        # slurmctld itself recorded the job finishing (no accounting database needed)
        assert re.search(rf"_job_complete: JobId={job_id} done", remote_run["logs"]["slurmctld"]), job_id
        # and the job script ran inside that Slurm job, in the test partition
        stdout = calc.outputs.retrieved.base.repository.get_object_content("_scheduler-stdout.txt")
        assert f"SLURM_JOB_ID={job_id} SLURM_JOB_PARTITION=xesml" in stdout


def test_inputs_went_over_ssh(remote_run, remote_setup, slurm_computer, mpiprocs):
    # the sshd on loopback accepted the key for every transport AiiDA opened
    accepted = re.findall(r"Accepted publickey for (\w+) from 127\.0\.0\.1", remote_run["logs"]["sshd"])
    assert accepted and set(accepted) == {remote_setup.username}
    workdir = str(remote_setup.state_dir / "work")
    for calc in _calcjobs(remote_run["node"]):
        remote = calc.outputs.remote_folder
        assert remote.computer.uuid == slurm_computer.uuid and remote.get_remote_path().startswith(workdir)
        # listed through a core.ssh transport: the inputs and the job script are on the "remote" side
        listing = set(remote.listdir())
        assert {"aiida.in", "_aiidasubmit.sh", "aiida.out"} <= listing, listing
        script = calc.base.repository.get_object_content("_aiidasubmit.sh")
        assert "#SBATCH --nodes=1" in script and f"#SBATCH --ntasks-per-node={mpiprocs}" in script
        # aiida-core 2.9 quotes every word of the command line: 'mpirun' '-np' '2' '/usr/bin/pw.x' ...
        assert f"mpirun -np {mpiprocs} " in script.replace("'", "")
    pw = next(calc for calc in _calcjobs(remote_run["node"]) if calc.process_label == "PwCalculation")
    assert any(name.lower().endswith(".upf") for name in pw.outputs.remote_folder.listdir("pseudo"))


def test_results_came_back_and_parsed(remote_run):
    calcjobs = {calc.process_label: calc for calc in _calcjobs(remote_run["node"])}
    pw, projwfc = calcjobs["PwCalculation"], calcjobs["ProjwfcCalculation"]
    assert "aiida.out" in pw.outputs.retrieved.base.repository.list_object_names()
    assert pw.outputs.output_parameters["energy"] < 0
    # the spectra were computed from what projwfc.x's parsed outputs hold
    produced = {n.uuid for n in projwfc.base.links.get_outgoing(link_type=LinkType.CREATE).all_nodes()}
    compute = next(n for n in remote_run["node"].called if n.process_label == "compute_spectra")
    used = {n.uuid for n in compute.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all_nodes()}
    assert produced & used, "compute_spectra used none of projwfc.x's outputs"
    spectra = remote_run["results"]["spectra"]
    n_ge = rutile_geo2().get_chemical_symbols().count("Ge")
    assert spectra.n_spectra == n_ge
    np.testing.assert_array_equal(np.sort(spectra.site_index), np.arange(n_ge))
    intensity = spectra.intensity
    assert np.all(np.isfinite(intensity)) and intensity.min() > -1e-12
    assert np.all(intensity.max(axis=1) > 0)
    assert np.all(np.trapezoid(intensity, spectra.energy_ev, axis=1) > 0)


def test_same_spectrum_as_on_localhost(remote_run, qe_codes, pseudo_family, mpiprocs):
    results, node, seconds = _run_spectrum(qe_codes, mpiprocs)
    assert node.is_finished_ok, node.exit_message
    local, remote = results["spectra"], remote_run["results"]["spectra"]
    np.testing.assert_array_equal(local.energy_ev, remote.energy_ev)
    difference = np.abs(local.intensity - remote.intensity).max()
    print(f"\nlocalhost xesml.spectrum: {seconds:.1f} s ({_qe_seconds(node):.1f} s in QE; remote "
          f"{remote_run['seconds']:.1f} s); max |remote - local| = {difference:.2e}")
    assert difference <= LOCAL_TOLERANCE * max(1.0, np.abs(local.intensity).max())
