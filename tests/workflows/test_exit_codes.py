"""The exit codes of the plugin's work chains follow one numbering (docs/topics/reliability.md).

Read from the process specs of every ``xesml.*`` entry point, so a work chain added later is checked too.
No profile or QE is needed.
"""

from __future__ import annotations

from collections import defaultdict
from importlib.metadata import entry_points

import pytest

OWN_RANGE = range(300, 500)  # below 300 are aiida-core's and the engine's codes


def xesml_work_chains() -> dict:
    """Entry-point name -> process class of every work chain this package registers."""
    return {ep.name: ep.load() for ep in entry_points(group="aiida.workflows") if ep.name.startswith("xesml.")}


def own_exit_codes(process_class) -> dict[str, int]:
    """Label -> status of the exit codes a work chain defines itself (300-499)."""
    return {label: code.status for label, code in process_class.spec().exit_codes.items() if code.status in OWN_RANGE}


def test_every_work_chain_is_read():
    chains = xesml_work_chains()
    assert {"xesml.md", "xesml.compression", "xesml.spectrum", "xesml.spectra", "xesml.analysis", "xesml.pipeline",
            "xesml.amorphous", "xesml.core_hole"} <= set(chains)
    assert all(own_exit_codes(cls) for cls in chains.values())


def test_a_label_has_one_number_in_every_work_chain():
    numbers = defaultdict(set)
    for name, cls in xesml_work_chains().items():
        for label, status in own_exit_codes(cls).items():
            numbers[label].add((status, name))
    differing = {label: sorted(uses) for label, uses in numbers.items() if len({status for status, _ in uses}) > 1}
    assert not differing, differing


@pytest.mark.parametrize("name", sorted(xesml_work_chains()))
def test_3xx_is_refused_input_and_4xx_is_a_failure_after_launch(name):
    """The documented convention: 3xx before any child runs (bad input), 4xx a child or step that failed."""
    for label, status in own_exit_codes(xesml_work_chains()[name]).items():
        assert (status >= 400) == ("FAILED" in label), (name, label, status)
