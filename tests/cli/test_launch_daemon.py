"""``aiida-xesml launch ... --daemon``: the work chain is submitted to the test profile's daemon, which runs it.

The test profile has the ZeroMQ broker, so its daemon works like a production one. The command must
return at once with the pk, and the daemon (not the test process) must run the work chain to the
end: its log names the process, and the result is the one a run here gives.
"""

import re
import time
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from cli_asserts import assert_ok
from click.testing import CliRunner

from aiida_xesml.cli import cli
from aiida_xesml.ml.structures import rutile_geo2

pytestmark = pytest.mark.qe


def invoke(*args):
    from aiida.manage import get_manager

    return CliRunner().invoke(cli, ["-p", get_manager().get_profile().name, *[str(arg) for arg in args]])


def test_launch_spectra_with_daemon_submits_and_the_daemon_runs_it(test_daemon, qe_codes, pseudo_family):
    codes = {name: f"{code.label}@{code.computer.label}" for name, code in qe_codes.items()}
    start = time.monotonic()
    result = invoke("launch", "spectra", "--builtin", "rutile", "--protocol", "fast", "--pw-code", codes["pw"],
                    "--projwfc-code", codes["projwfc"], "--daemon")
    returned_after = time.monotonic() - start
    assert_ok(result)
    match = re.search(r"Submitted xesml\.spectra <(\d+)> to the daemon \(protocol fast\)\.", result.output)
    assert match, result.output
    node = orm.load_node(int(match.group(1)))
    assert f"Follow it with: verdi process status {node.pk}" in result.output
    assert not node.is_terminated, "the command ran the work chain instead of submitting it"

    deadline = time.monotonic() + 1200
    while not node.is_terminated and time.monotonic() < deadline:
        time.sleep(1.0)
    assert node.is_finished_ok, (node.process_state, node.exit_status, node.exit_message)
    log = Path(test_daemon.daemon_log_file).read_text(errors="replace")
    assert re.search(rf"\[{node.pk}\|SpectraWorkChain\|", log), "the daemon's log does not show the work chain"
    spectra = node.outputs.spectra
    ge = [i for i, symbol in enumerate(rutile_geo2().get_chemical_symbols()) if symbol == "Ge"]
    np.testing.assert_array_equal(np.sort(spectra.site_index), ge)
    assert np.all(spectra.intensity.max(axis=1) > 0)
    print(f"\nlaunch --daemon returned after {returned_after:.1f} s; the daemon finished <{node.pk}>")
