"""``aiida-xesml setup`` and ``aiida-xesml demo`` with click's runner, and ``--help`` of every command.

``setup`` runs for real: on the session's test profile (codes, computer and pseudopotential
families; a second call changes nothing), with ``--semicore`` (ld1.x, under a second), and once in
a subprocess with a fresh ``AIIDA_PATH`` where it creates its ``verdi presto`` profile. ``demo``
never runs its pipeline here (22 minutes): its error paths and ``--dry-run`` do.
"""

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from aiida import orm
from cli_asserts import assert_fails, assert_ok
from click.testing import CliRunner

from aiida_xesml import constants
from aiida_xesml.cli import cli
from aiida_xesml.cli.cmd_data import data_xesml
from aiida_xesml.setup import packages


def invoke(*args):
    from aiida.manage import get_manager

    profile = get_manager().get_profile().name
    return CliRunner().invoke(cli, ["-p", profile, *[str(arg) for arg in args]])


def count_nodes():
    return orm.QueryBuilder().append(orm.Node).count()


def family(label):
    from aiida_pseudo.groups.family import CutoffsPseudoPotentialFamily

    return orm.QueryBuilder().append(CutoffsPseudoPotentialFamily, filters={"label": label}).first(flat=True)


@pytest.fixture(scope="module")
def set_up(aiida_profile):
    """``aiida-xesml setup`` once on the test profile (Debian packages checked, not installed)."""
    return invoke("setup")


# ----- setup --------------------------------------------------------------------------------------


def test_setup_creates_codes_and_family(set_up):
    assert_ok(set_up)
    assert "ready" in set_up.output
    computer = orm.load_computer("localhost")
    assert computer.is_configured
    for name, executable in constants.QE_EXECUTABLES.items():
        code = orm.load_code(f"{constants.code_label(name)}@localhost")
        assert code.default_calc_job_plugin == constants.CODE_PLUGINS[name]
        assert Path(code.get_executable()).name == executable
        assert "OMP_NUM_THREADS=1" in code.prepend_text
    pseudos = family(constants.PSEUDO_FAMILY)
    assert pseudos is not None
    assert {node.element for node in pseudos.nodes} == set(constants.PSEUDO_FILES)
    cutoffs = pseudos.get_recommended_cutoffs(elements=("Ge", "O"), stringency="balanced", unit="Ry")
    assert cutoffs == constants.CUTOFFS_RY["balanced"]


def test_setup_again_changes_nothing(set_up):
    before = count_nodes()
    again = invoke("setup", "--skip-packages")
    assert_ok(again)
    assert "ready" in again.output
    assert "created code" not in again.output and "installed pseudopotential family" not in again.output
    assert count_nodes() == before


@pytest.fixture
def without_semicore_family(set_up):
    """No semicore family during the test, whatever ran before (test_spectrum.py makes one): an existing
    one is renamed for the test and gets its label back afterwards, in place of the test's."""
    existing = family(constants.SEMICORE_FAMILY)
    if existing is not None:
        existing.label = f"{constants.SEMICORE_FAMILY}-moved-by-test"
    yield
    if existing is not None:
        made = family(constants.SEMICORE_FAMILY)
        if made is not None:
            orm.Group.collection.delete(made.pk)
        existing.label = constants.SEMICORE_FAMILY


def test_setup_semicore(without_semicore_family, tmp_path, monkeypatch):
    assert family(constants.SEMICORE_FAMILY) is None
    # An ld1.x that fails: a clean error that shows its output, and no family.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ld1.x").write_text("#!/bin/sh\necho 'from ld1.x: wrong input'\nexit 1\n")
    (fake / "ld1.x").chmod(0o755)
    with monkeypatch.context() as patch:
        patch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
        result = invoke("setup", "--skip-packages", "--semicore")
    assert_fails(result, "ld1.x failed to generate Ge.pbe-dn-kjpaw.UPF", "from ld1.x: wrong input")
    assert family(constants.SEMICORE_FAMILY) is None
    # Debian's ld1.x, for real.
    result = invoke("setup", "--skip-packages", "--semicore")
    assert_ok(result)
    assert f"installed pseudopotential family `{constants.SEMICORE_FAMILY}`" in result.output
    semicore = family(constants.SEMICORE_FAMILY)
    assert {node.element for node in semicore.nodes} == set(constants.PSEUDO_FILES)
    cutoffs = semicore.get_recommended_cutoffs(elements=("Ge", "O"), stringency="balanced", unit="Ry")
    assert cutoffs == constants.SEMICORE_CUTOFFS_RY["balanced"]
    again = invoke("setup", "--skip-packages", "--semicore")
    assert_ok(again)
    assert "installed" not in again.output


def test_setup_error_paths(set_up, monkeypatch):
    assert_fails(invoke("setup", "--no-such-option"), "No such option")
    monkeypatch.setattr(packages, "missing_debian_packages", lambda: ["quantum-espresso"])
    monkeypatch.setattr(packages.os, "geteuid", lambda: 1000)
    assert_fails(invoke("setup"), "missing Debian packages quantum-espresso", "needs root",
                 "apt-get install -y -q quantum-espresso")
    monkeypatch.setattr(packages, "missing_debian_packages", lambda: [])
    monkeypatch.setattr(packages.shutil, "which", lambda name, *args, **kwargs: None)
    assert_fails(invoke("setup"), "`pw.x` is not on PATH")


def test_setup_creates_its_profile_in_a_fresh_aiida_path(tmp_path):
    """In a subprocess, so that the session's configuration is untouched."""
    env = dict(os.environ, AIIDA_PATH=str(tmp_path))
    command = [str(Path(sys.executable).with_name("aiida-xesml")), "setup", "--skip-packages"]
    first = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"creating profile `{constants.DEFAULT_PROFILE}` with `verdi presto`" in first.stdout
    assert "created code pw-qe@localhost" in first.stdout and "ready" in first.stdout
    assert (tmp_path / ".aiida" / "config.json").is_file()
    second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "creating profile" not in second.stdout and "created code" not in second.stdout
    assert "ready" in second.stdout


# ----- help ---------------------------------------------------------------------------------------


def _commands(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


@pytest.mark.parametrize("root, path", [(cli, ())] + [(cli, path) for path in _commands(cli)]
                         + [(data_xesml, path) for path in _commands(data_xesml)],
                         ids=lambda value: " ".join(value) if isinstance(value, tuple) else value.name)
def test_every_command_help_shows_an_example(root, path):
    result = CliRunner().invoke(root, [*path, "--help"])
    assert_ok(result)
    assert "Example" in result.output, result.output


# ----- demo ---------------------------------------------------------------------------------------


def test_demo_dry_run(set_up, tmp_path, monkeypatch):
    import aiida_xesml.demo as demo

    def no_daemon():
        raise AssertionError("--dry-run must not start the daemon")

    monkeypatch.setattr(demo, "_ensure_daemon", no_daemon)
    before = count_nodes()
    output = tmp_path / "out"
    result = invoke("demo", "--dry-run", "--output", output)
    assert_ok(result)
    for fragment in ("would submit xesml.pipeline (balanced protocol", "Ge6O12 (18 atoms)", "0, 15, 30 GPa",
                     "pw-qe@localhost", "projwfc-qe@localhost", "Ge Ge.pbe-kjpaw.UPF", "cutoffs 30/180 Ry",
                     "NVT MD at 600 K, 3 + 10 steps", "ECA 3 components", "the inputs are valid"):
        assert fragment in result.output, f"{fragment!r} not in:\n{result.output}"
    assert count_nodes() == before and not output.exists()
    fast = invoke("demo", "--dry-run", "--protocol", "fast")
    assert_ok(fast)
    assert "(fast protocol" in fast.output and "spacing" in fast.output


def test_demo_error_paths(set_up, tmp_path, monkeypatch):
    import aiida_xesml.demo as demo

    def no_daemon():
        raise AssertionError("the daemon must not start when the inputs cannot be built")

    monkeypatch.setattr(demo, "_ensure_daemon", no_daemon)
    assert_fails(invoke("demo", "--protocol", "quick"), "Invalid value for '--protocol'")
    assert_fails(invoke("demo", "--bogus"), "No such option")
    a_file = tmp_path / "summary.txt"
    a_file.write_text("not a folder")
    assert_fails(invoke("demo", "--output", a_file), "is a file")
    assert_fails(CliRunner().invoke(cli, ["-p", "no-such-profile", "demo", "--dry-run"]),
                 "cannot load the AiiDA profile no-such-profile", "aiida-xesml setup")
    # A profile without the set-up's codes: a message that says what to run, before anything is submitted.
    monkeypatch.setattr(constants, "code_label", lambda name: f"{name}-not-set-up")
    assert_fails(invoke("demo", "--dry-run"), "no code pw-not-set-up@localhost", "run `aiida-xesml setup` first")
    assert_fails(invoke("demo", "--output", tmp_path / "out"), "no code pw-not-set-up@localhost")
    assert not (tmp_path / "out").exists()
