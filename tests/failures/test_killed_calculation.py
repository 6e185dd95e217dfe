"""A calculation killed through AiiDA (as ``verdi process kill`` does) while xesml.spectrum waits on it.

The work chain runs on the test profile's daemon; its projwfc.x wrapper holds (it runs nothing and
waits) so that the kill finds the calculation with the scheduler. The work chain then goes on, sees a
killed child and exits 402 with a message that says it was killed, and why.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest
from aiida.engine import submit
from aiida.engine.processes.control import kill_processes
from failures.helpers import called

from aiida_xesml.workflows.spectrum import SpectrumWorkChain

pytestmark = [pytest.mark.faults, pytest.mark.qe]
KILL_MESSAGE = "killed by the test: projwfc.x took too long"


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def test_killed_projwfc_is_projwfc_failed_saying_it_was_killed(test_daemon, spectrum_builder, wrapper):
    projwfc = wrapper("projwfc", "hold")
    node = submit(spectrum_builder(projwfc=projwfc.code))
    try:
        _wait(lambda: projwfc.started or node.is_terminated, 900, "the projwfc.x wrapper to start")
        assert projwfc.started, f"the work chain ended before projwfc.x ran: {node.exit_status} {node.exit_message}"
        run = called(node, "projwfc")
        kill_processes([run], msg_text=KILL_MESSAGE, timeout=60)
        _wait(lambda: node.is_terminated, 300, "xesml.spectrum to terminate after the kill")
    finally:
        with contextlib.suppress(OSError, ValueError):  # the hold wrapper, if the kill left it running
            os.kill(int((projwfc.folder / "started").read_text()), signal.SIGKILL)
    assert run.is_killed and run.process_status == KILL_MESSAGE
    assert called(node, "scf").is_finished_ok
    assert node.exit_status == SpectrumWorkChain.exit_codes.ERROR_PROJWFC_FAILED.status, node.exit_message
    assert node.exit_message == f"projwfc.x failed: it was killed ({KILL_MESSAGE})"
    assert "spectra" not in node.outputs
