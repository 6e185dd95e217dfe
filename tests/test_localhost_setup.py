"""How `aiida-xesml setup` configures a `localhost` computer (aiida_xesml/setup/codes.py), read back from
the computer and from the job script AiiDA writes for it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from aiida import orm

from aiida_xesml.setup.codes import LOCAL_PREPEND_TEXT, get_localhost

BINDING_LINE = "export OMPI_MCA_hwloc_base_binding_policy=none"


def presto_like_computer(label: str, prepend_text: str = "") -> orm.Computer:
    """A `localhost` as `verdi presto` makes it (core.local, core.direct, AiiDA's defaults), not yet seen by set-up."""
    computer = orm.Computer(label=label, hostname="localhost", transport_type="core.local",
                            scheduler_type="core.direct", workdir=tempfile.mkdtemp()).store()
    computer.configure()
    computer.set_prepend_text(prepend_text)
    return computer


def test_existing_localhost_gets_unbound_ranks_and_keeps_its_own_prepend_text():
    presto_like_computer("localhost-presto-like", prepend_text="module load qe\n")
    computer = get_localhost("localhost-presto-like")
    assert computer.get_prepend_text().splitlines() == ["module load qe", BINDING_LINE]
    assert computer.get_minimum_job_poll_interval() == 1.0
    assert computer.get_default_mpiprocs_per_machine() == (os.cpu_count() or 1)
    get_localhost("localhost-presto-like")  # set-up run again changes nothing
    assert computer.get_prepend_text().count(BINDING_LINE) == 1


def test_job_script_on_localhost_exports_the_binding_policy(tmp_path, monkeypatch):
    """The script of a CalcJob on a new `localhost` sets the policy before the code runs (a dry run: no job)."""
    from aiida.engine import run

    computer = get_localhost("localhost-script-check")
    assert LOCAL_PREPEND_TEXT.strip() == BINDING_LINE
    code = orm.InstalledCode(label="bash-script-check", computer=computer, filepath_executable="/bin/bash",
                             default_calc_job_plugin="core.arithmetic.add").store()
    monkeypatch.chdir(tmp_path)
    run(code.get_builder().process_class, code=code, x=orm.Int(1), y=orm.Int(2),
        metadata={"dry_run": True, "store_provenance": False})
    [folder] = (Path(tmp_path) / "submit_test").iterdir()
    script = (folder / "_aiidasubmit.sh").read_text().splitlines()
    assert BINDING_LINE in script
    assert script.index(BINDING_LINE) < next(i for i, line in enumerate(script) if "/bin/bash" in line and "<" in line)
