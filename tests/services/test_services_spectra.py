"""xesml.spectra on a production-style profile (PostgreSQL, RabbitMQ, 2 daemon workers), against the embedded one."""

import numpy as np
import pytest
from aiida.engine import run_get_node
from scenario import spectra_builder

pytestmark = [pytest.mark.services, pytest.mark.qe]

SEEDS = (1, 2, 3)
#: The summary's key (tests/conftest.py) for QE calculations that a test checked in another profile.
QE_ELSEWHERE = "qe_calculations_in_another_profile"


def overlapping_pairs(intervals):
    """Pairs (i, j) of [start, end] intervals that overlap in time (strictly: QE stamps whole seconds)."""
    return [(i, j) for i, a in enumerate(intervals) for j, b in enumerate(intervals[i + 1:], i + 1)
            if a[0] < b[1] and b[0] < a[1]]


@pytest.fixture(scope="module")
def daemon_spectra(service_profile):
    """The spectra of three rattled rutile snapshots, submitted to the services profile's daemon."""
    assert len(service_profile.worker_pids()) == 2
    pk = service_profile.scenario("submit-spectra", "--seeds", *map(str, SEEDS))["pk"]
    return service_profile.scenario("results", str(pk), "--timeout", "900", timeout=1000)


def test_snapshots_ran_concurrently_on_the_daemon(daemon_spectra, record_property):
    assert daemon_spectra["exit_status"] == 0, daemon_spectra["exit_message"]
    calculations = daemon_spectra["calculations"]
    record_property(QE_ELSEWHERE, len(calculations))
    scf = [c for c in calculations if c["process_label"] == "PwCalculation"]
    assert len(scf) == len(SEEDS) and all(c["exit_status"] == 0 and c["job_id"] for c in scf)
    intervals = [c["interval"] for c in scf]
    assert all(intervals), "every pw.x output has its start and end time"
    assert overlapping_pairs(intervals), f"no two pw.x runs overlapped in time: {intervals}"


def test_daemon_outputs_equal_the_embedded_profile(daemon_spectra, qe_codes, pseudo_family):
    results, node = run_get_node(spectra_builder(SEEDS, qe_codes))
    assert node.is_finished_ok, node.exit_message
    embedded = results["spectra"]
    np.testing.assert_array_equal(np.array(daemon_spectra["energy_ev"]), embedded.energy_ev)
    daemon = np.array(daemon_spectra["intensity"])
    assert daemon.shape == embedded.intensity.shape == (2 * len(SEEDS), embedded.energy_ev.size)
    # Same pw.x, same inputs, one MPI process each: the spectra agree to rounding.
    np.testing.assert_allclose(daemon, embedded.intensity, rtol=0, atol=1e-9 * embedded.intensity.max())
