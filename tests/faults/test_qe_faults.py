"""Faults inside the QE runs: pw.x killed mid-MD, a truncated or corrupted projwfc.x output."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from aiida.engine import run_get_node

pytestmark = [pytest.mark.faults, pytest.mark.qe]


class PwKiller(threading.Thread):
    """Kill every pw.x process of the first MD run whose output shows ``after_steps`` finished MD steps."""

    def __init__(self, after_steps: int, timeout: float = 600.0):
        super().__init__(daemon=True)
        self.after_steps, self.timeout = after_steps, timeout
        self.stop = threading.Event()
        self.killed_in: Path | None = None
        self.steps_at_kill = 0

    def _md_steps(self, folder: Path) -> int:
        try:
            text = (folder / "aiida.out").read_text(errors="replace")
        except OSError:
            return 0
        return text.count("Entering Dynamics") if "Molecular Dynamics Calculation" in text else 0

    def run(self):
        deadline = time.monotonic() + self.timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            ranks = [p for p in psutil.process_iter(["name", "cwd"]) if p.info["name"] == "pw.x" and p.info["cwd"]]
            for rank in ranks:
                folder = Path(rank.info["cwd"])
                steps = self._md_steps(folder)
                if steps >= self.after_steps:
                    for other in ranks:
                        if other.info["cwd"] == rank.info["cwd"]:
                            other.send_signal(signal.SIGKILL)
                    self.killed_in, self.steps_at_kill = folder, steps
                    return
            time.sleep(0.1)


def test_pw_killed_during_md_continues_from_the_last_good_frame(md_builder):
    killer = PwKiller(after_steps=4)
    killer.start()
    try:
        results, node = run_get_node(md_builder(nstep=8, nstep_per_segment=8, temperature_k=600.0))
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed_in is not None, "pw.x was never killed: the fault was not injected"
    assert node.is_finished_ok, node.exit_message
    killed_segment, *later = [child for child in node.called if child.process_label == "PwBaseWorkChain"]
    (killed_run,) = [c for c in killed_segment.called if c.process_label == "PwCalculation"]
    assert killed_run.exit_status not in (0, None), "the killed pw.x run is a parsed failure, not an exception"
    assert later and any(c.process_label == "md_continuation" for c in node.called)
    partial = killed_run.outputs.output_trajectory.get_array("positions")
    kept = len(partial) - 1  # the last parsed frame becomes the next segment's first frame
    assert kept >= 2

    trajectory = results["trajectory"]
    assert trajectory.numsteps == 9
    positions = trajectory.get_array("positions")
    # The continuation starts from the killed run's last good frame, not from step 0 ...
    np.testing.assert_allclose(positions[:kept + 1], partial[:kept + 1], atol=1e-10)
    first = later[0].inputs.pw.structure.get_ase().positions
    np.testing.assert_allclose(first, partial[kept], atol=1e-6)
    # ... and the trajectory has no duplicate frame and no gap.
    steps = np.abs(np.diff(positions, axis=0)).max(axis=(1, 2))
    assert steps.min() > 1e-4
    assert steps.max() < 3 * np.median(steps) + 1e-3
    times = trajectory.get_array("times")
    np.testing.assert_allclose(np.diff(times), times[1] - times[0])


TRUNCATE_OR_CORRUPT = r"""#!/bin/bash
# projwfc.x, then (first run only) damage its stdout, as a crash or a full disk would.
projwfc.x "$@"
status=$?
if mkdir "{marker}" 2>/dev/null; then
    size=$(stat -c %s aiida.out)
    if [ "{mode}" = truncated ]; then
        truncate -s $((size / 3)) aiida.out
    else
        # overwrite a stretch in the middle of the projections with bytes that are not numbers
        head -c 4000 /dev/urandom | tr -c 'a-z*' '#' | dd of=aiida.out bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
    fi
fi
exit $status
"""


@pytest.fixture
def damaging_projwfc(qe_codes, tmp_path):
    """Factory: a projwfc code whose first run leaves a truncated or corrupted stdout."""
    from aiida import orm

    def factory(mode):
        script = tmp_path / f"projwfc-{mode}.sh"
        script.write_text(TRUNCATE_OR_CORRUPT.format(marker=tmp_path / f"damaged-{mode}", mode=mode))
        script.chmod(0o755)
        real = qe_codes["projwfc"]
        return orm.InstalledCode(label=f"projwfc-{mode}-{tmp_path.name}", computer=real.computer,
                                 filepath_executable=str(script), default_calc_job_plugin="quantumespresso.projwfc",
                                 prepend_text=real.prepend_text, with_mpi=True).store()

    return factory


@pytest.mark.parametrize("mode", ["truncated", "corrupted"])
def test_damaged_projwfc_output_is_a_parse_error_and_the_other_spectra_are_kept(
        qe_codes, pseudo_family, damaging_projwfc, mode):
    from aiida import orm

    from aiida_xesml.ml.structures import rutile_geo2
    from aiida_xesml.workflows.spectra import SpectraWorkChain

    snapshots = []
    for seed in (11, 12):
        atoms = rutile_geo2()
        atoms.rattle(0.03, seed=seed)
        snapshots.append(orm.StructureData(ase=atoms))
    builder = SpectraWorkChain.get_builder_from_protocol(
        qe_codes["pw"], damaging_projwfc(mode), snapshots, protocol="fast",
        options={"resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1}})
    builder.max_concurrent = orm.Int(1)  # the first snapshot's projwfc.x is the damaged one
    results, node = run_get_node(builder)

    assert node.exit_status == node.process_class.exit_codes.ERROR_SOME_SNAPSHOTS_FAILED.status, node.exit_message
    assert "1 of 2" in node.exit_message
    (failed,) = [c for c in node.called if c.process_label == "SpectrumWorkChain" and not c.is_finished_ok]
    assert failed.exit_status == failed.process_class.exit_codes.ERROR_PROJWFC_FAILED.status
    (projwfc,) = [c for c in failed.called if c.process_label == "ProjwfcCalculation"]
    assert projwfc.is_finished and not projwfc.is_excepted, "the parser raised: a traceback escaped"
    expected = {"truncated": "ERROR_OUTPUT_STDOUT_INCOMPLETE", "corrupted": "ERROR_OUTPUT_STDOUT_PARSE"}[mode]
    assert projwfc.exit_status == projwfc.process_class.exit_codes[expected].status
    assert f"exit {projwfc.exit_status}" in failed.exit_message and "projwfc.x failed" in failed.exit_message
    spectra = results["spectra"]
    assert spectra.n_spectra == 2  # the other snapshot's two Ge sites
    assert np.all(np.isfinite(spectra.intensity)) and spectra.intensity.max() > 0
