"""Fixtures of the ``remote`` test group: a loopback sshd + one-node Slurm, and AiiDA objects on it.

The group needs root on a Debian machine (to install and start ``sshd``, ``munged``,
``slurmctld`` and ``slurmd``; see ``provision.py``). Where that cannot be done, every test of the
group is skipped with the failing step and its reason, which ``pytest -ra`` prints in its summary,
or fails when ``XESML_REQUIRE`` lists ``remote`` (as CI does). At the end of the session every
change is undone: the daemons started here are stopped, ``/etc/slurm/slurm.conf``, the munge key,
``~/.ssh/authorized_keys`` and ``~/.ssh/known_hosts`` are restored (or removed if they did not
exist), and the folders created are removed. Set ``XESML_SKIP_REMOTE=1`` to skip the group without
trying (nothing is installed then), and ``XESML_REMOTE_SSH_PORT`` to use another port than 2222
for the test sshd.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest
from provisioning import Changes, ProvisionError, skip_or_fail


def _load_provision():
    """``provision.py`` beside this file, imported by path (it is a plain script, not a package module)."""
    spec = importlib.util.spec_from_file_location("xesml_remote_provision", Path(__file__).with_name("provision.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


remote_provision = _load_provision()
SSH_PORT, provision = remote_provision.SSH_PORT, remote_provision.provision

COMPUTER_LABEL = "slurm-ssh-test"
# Echoed by every job script: the retrieved scheduler stdout then shows the job ran under Slurm.
COMPUTER_PREPEND = ('echo "xesml-remote: SLURM_JOB_ID=${SLURM_JOB_ID:-none} '
                    'SLURM_JOB_PARTITION=${SLURM_JOB_PARTITION:-none}"')
# Seconds. AiiDA's defaults for core.ssh (15 s between connections, 10 s between scheduler polls)
# are right for a login node but would dominate a test of a few short jobs on loopback.
SAFE_INTERVAL = 0.5
POLL_INTERVAL = 1.0


def _log(message: str) -> None:
    print(f"[remote provisioning] {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def remote_setup():
    """Provision sshd, munge and Slurm on this machine (quick when already done), or skip (or fail) the
    group; undo every change at the end of the session."""
    if os.environ.get("XESML_SKIP_REMOTE", "").strip() not in ("", "0"):
        skip_or_fail("remote", "XESML_SKIP_REMOTE is set")
    start = time.monotonic()
    changes = Changes()
    try:
        port = int(os.environ.get("XESML_REMOTE_SSH_PORT") or SSH_PORT)
        setup = provision(port=port, log=_log, changes=changes)
    except (ProvisionError, ValueError, OSError) as exc:
        reason = str(exc) if isinstance(exc, (ProvisionError, ValueError)) else f"{type(exc).__name__}: {exc}"
        try:
            changes.undo()
        except ProvisionError as undo_error:
            reason += f" (and undoing the steps done: {undo_error})"
        skip_or_fail("remote", f"cannot provision sshd + Slurm on this machine: {reason}")
    _log(f"ready in {time.monotonic() - start:.1f} s ({len(changes)} changes to undo at the end)")
    yield setup
    _log("undo: " + "; ".join(changes.undo()))


@pytest.fixture(scope="session")
def mpiprocs(remote_setup):
    """MPI processes per calculation: 2 where the Slurm node has 2 CPUs or more, else 1."""
    return min(2, remote_setup.cpus)


@pytest.fixture(scope="session")
def slurm_computer(aiida_profile, remote_setup, mpiprocs):
    """A ``core.ssh`` + ``core.slurm`` computer for the provisioned sshd and Slurm node, configured for root."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer(COMPUTER_LABEL)
    except NotExistent:
        computer = orm.Computer(
            label=COMPUTER_LABEL, hostname=remote_setup.host, description="loopback sshd + one-node Slurm (tests)",
            transport_type="core.ssh", scheduler_type="core.slurm",
            workdir=str(remote_setup.state_dir / "work" / "{username}"),
        )
        computer.set_mpirun_command(["mpirun", "-np", "{tot_num_mpiprocs}"])
        computer.set_default_mpiprocs_per_machine(mpiprocs)
        computer.set_prepend_text(COMPUTER_PREPEND)
        computer.store()
    computer.set_minimum_job_poll_interval(POLL_INTERVAL)
    computer.configure(
        username=remote_setup.username, port=remote_setup.port, key_filename=str(remote_setup.key_filename),
        look_for_keys=False, allow_agent=False, load_system_host_keys=True, key_policy="RejectPolicy",
        timeout=30, safe_interval=SAFE_INTERVAL, use_login_shell=True,
    )
    return computer


@pytest.fixture(scope="session")
def remote_codes(slurm_computer):
    """``pw``/``projwfc``/``pp`` codes on the Slurm computer, made as set-up makes the localhost ones
    (same Debian executables, same prepend text); the computer's mpirun command launches them."""
    from aiida_xesml.setup import ensure_codes

    return ensure_codes(slurm_computer)
