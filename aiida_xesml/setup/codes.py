"""The ``localhost`` computer and the ``pw``, ``projwfc`` and ``pp`` codes for Debian's QE."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from aiida_xesml.constants import CODE_PLUGINS, QE_EXECUTABLES, code_label
from aiida_xesml.setup.errors import SetupError, echo

# Seconds between two scheduler polls of `localhost` (a `ps` call with core.direct): a job's end is
# noticed within this time. AiiDA's default for computers is 10 s, meant for remote schedulers; a
# 20-40 s QE run on a workstation would wait 5 s on average for it (core.local alone defaults to 0.1 s,
# and each poll writes the state of every running job to the database).
LOCAL_JOB_POLL_INTERVAL_S = 1.0
# core.local runs every command (each poll, each submission) in a login shell by default, which
# sources the user's profile: with a pyenv or conda set-up there that took 1.3 s per command on the
# test machine, against 0.08 s without. The jobs' environment comes from the codes' prepend text.
LOCAL_AUTH_PARAMS = {"safe_interval": 0.0, "use_login_shell": False}
# mpirun refuses root without these; one OpenMP thread per MPI process is fastest on 2 cores. Ranks
# that wait yield the core instead of spinning, so that several runs on one workstation (the snapshots
# of xesml.spectra under core.direct) share it instead of slowing each other down many times over.
PREPEND_TEXT = (
    "export OMPI_ALLOW_RUN_AS_ROOT=1\n"
    "export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1\n"
    "export OMP_NUM_THREADS=1\n"
    "export OMPI_MCA_mpi_yield_when_idle=1\n"
)
# The prepend text of `localhost` itself (a computer's settings can change; a stored code's cannot).
# OpenMPI binds the ranks of each mpirun to cores counted from core 0, so runs side by side on one
# machine (the snapshots of xesml.spectra under core.direct) pile onto the same cores: two one-process
# pw.x runs took twice their time alone, with core 1 idle. Unbound, the kernel spreads them.
LOCAL_PREPEND_TEXT = "export OMPI_MCA_hwloc_base_binding_policy=none\n"


def get_localhost(label: str = "localhost"):
    """Return the configured ``localhost`` computer, creating it as ``verdi presto`` would."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer(label)
    except NotExistent:
        computer = orm.Computer(
            label=label, hostname="localhost", description="this machine", transport_type="core.local",
            scheduler_type="core.direct", workdir=str(Path(tempfile.gettempdir()) / "aiida-xesml-work"),
        ).store()
    if not computer.is_configured:
        # core.local opens a transport at once (no safe interval: there is no server to protect)
        computer.configure(**LOCAL_AUTH_PARAMS)
    elif computer.transport_type == "core.local":
        authinfo = computer.get_authinfo(orm.User.collection.get_default())
        params = authinfo.get_auth_params()
        if "use_login_shell" not in params:  # `verdi presto` leaves it at AiiDA's default (True); keep a choice
            authinfo.set_auth_params({**params, "use_login_shell": False})
            echo(f"computer `{label}`: commands run without a login shell")
    if computer.transport_type == "core.local" and computer.get_minimum_job_poll_interval() != LOCAL_JOB_POLL_INTERVAL_S:
        computer.set_minimum_job_poll_interval(LOCAL_JOB_POLL_INTERVAL_S)
        echo(f"computer `{label}`: scheduler polled every {LOCAL_JOB_POLL_INTERVAL_S} s")
    existing = (computer.get_prepend_text() or "").rstrip("\n")
    if computer.scheduler_type == "core.direct" and LOCAL_PREPEND_TEXT not in f"{existing}\n":
        computer.set_prepend_text(f"{existing}\n{LOCAL_PREPEND_TEXT}" if existing else LOCAL_PREPEND_TEXT)
        echo(f"computer `{label}`: MPI ranks not bound to cores, so that runs side by side use every core")
    # `verdi presto` sets 1 MPI process; pw.x on two processes is about 2x faster on 2 cores (QE-NOTES.md).
    if (computer.get_default_mpiprocs_per_machine() or 1) < (os.cpu_count() or 1):
        computer.set_default_mpiprocs_per_machine(os.cpu_count() or 1)
        echo(f"computer `{label}`: {os.cpu_count()} MPI processes per calculation by default")
    return computer


def ensure_codes(computer=None) -> dict:
    """Create (once) the ``pw``, ``projwfc`` and ``pp`` codes on ``computer`` for Debian's QE.

    :returns: mapping 'pw' / 'projwfc' / 'pp' -> stored :class:`aiida.orm.InstalledCode`.
    """
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    computer = computer or get_localhost()
    codes = {}
    for name, exe in QE_EXECUTABLES.items():
        label = code_label(name)
        try:
            codes[name] = orm.load_code(f"{label}@{computer.label}")
            continue
        except (NotExistent, MultipleObjectsError):
            pass
        path = shutil.which(exe)
        if path is None:
            raise SetupError(f"`{exe}` not found on PATH: install the Debian package quantum-espresso first.")
        codes[name] = orm.InstalledCode(
            label=label, computer=computer, filepath_executable=path,
            default_calc_job_plugin=CODE_PLUGINS[name], prepend_text=PREPEND_TEXT, with_mpi=True,
            description=f"Debian Quantum ESPRESSO {exe}",
        ).store()
        echo(f"created code {label}@{computer.label} -> {path}")
    return codes
