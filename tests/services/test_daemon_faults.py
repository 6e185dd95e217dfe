"""A daemon worker killed while a work chain waits on QE: the work chain resumes from its checkpoint."""

import os
import signal

import numpy as np
import pytest
from aiida.engine import run_get_node
from scenario import spectrum_builder

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.qe]


def test_killed_daemon_worker_resumes_without_running_a_calculation_twice(service_profile, qe_codes, pseudo_family):
    pk = service_profile.scenario("submit-spectrum", "--seeds", "4")["pk"]
    waiting = service_profile.scenario("wait-running", str(pk), "--timeout", "300")
    workers = service_profile.worker_pids()
    assert workers
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    service_profile.stop_daemon()
    service_profile.start_daemon()

    result = service_profile.scenario("results", str(pk), "--timeout", "600", timeout=700)
    assert result["exit_status"] == 0, result["exit_message"]
    labels = sorted(c["process_label"] for c in result["calculations"])
    assert labels == ["ProjwfcCalculation", "PwCalculation"], f"a calculation ran twice or not at all: {labels}"
    resumed = next(c for c in result["calculations"] if c["pk"] == waiting["calculation"])
    assert resumed["job_id"] == waiting["job_id"], "the calculation that was running was resubmitted"

    results, node = run_get_node(spectrum_builder(4, qe_codes))
    assert node.is_finished_ok, node.exit_message
    expected = results["spectra"].intensity
    np.testing.assert_allclose(np.array(result["intensity"]), expected, rtol=0, atol=1e-9 * expected.max())
