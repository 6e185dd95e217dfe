"""Fixtures of the failure-branch tests: wrapper codes around the real QE executables, tiny snapshots.

Every test here makes pw.x, projwfc.x or pp.x fail for real through a wrapper code
(``wrappers.py``) and checks the exit code and message of the work chain above it. The runs use
the 6-atom rutile cell, the ``fast`` protocol and one MPI process. The steps before the failing one
use the real codes and may come from AiiDA's cache (the session caches pw.x and projwfc.x); the
failing step never can: its wrapper is a code node of its own.
"""

from __future__ import annotations

import pytest
from failures.helpers import ONE_PROCESS, SNAPSHOT_SEEDS, rattled_rutile


@pytest.fixture
def wrapper(qe_codes, tmp_path):
    """Factory: ``wrapper('pw' | 'projwfc' | 'pp', mode, **options)`` -> a stored :class:`wrappers.Wrapper`."""
    from failures.wrappers import make_wrapper

    count = {"n": 0}

    def factory(name, mode, **options):
        count["n"] += 1
        return make_wrapper(qe_codes[name], tmp_path / f"{name}-{mode}-{count['n']}", mode, **options)

    return factory


@pytest.fixture
def spectrum_builder(qe_codes, pseudo_family):
    """Factory of fast xesml.spectrum builders on a rattled rutile snapshot, one MPI process."""
    from aiida_xesml.workflows.spectrum import SpectrumWorkChain

    def factory(pw=None, projwfc=None, pp=None, seed=SNAPSHOT_SEEDS[0], **overrides):
        return SpectrumWorkChain.get_builder_from_protocol(
            pw or qe_codes["pw"], projwfc or qe_codes["projwfc"], rattled_rutile(seed), protocol="fast",
            overrides=overrides, options=ONE_PROCESS, pp_code=pp)

    return factory
