"""Test fixtures and reporting: a temporary AiiDA profile (SQLite + built-in ZeroMQ broker), real QE codes,
AiiDA caching of pw.x and projwfc.x, and a summary that counts what the tests exercised.

- **Caching.** The session profile caches ``quantumespresso.pw`` and ``quantumespresso.projwfc``
  calculations (``caching.enabled_for``), so an identical QE run is done once per session. Tests
  that need a fresh run get it: those marked ``no_cache`` (among them the fault injected into
  pw.x itself, tests/faults), and every test of the ``services`` and ``remote`` groups or with ``clean_workdir``
  in its name, run with :func:`aiida.manage.caching.disable_caching` (their module and session
  fixtures too). Their QE calculations, and every calculation whose remote folder was cleaned (a
  cached copy shares the folder of its original), are then marked invalid as cache sources, so that
  a killed or cleaned run never stands in for a good one. ``XESML_TEST_CACHING=0`` turns caching off.
- **No silent skips.** ``XESML_REQUIRE=services,remote,faults`` (``.ci/run`` sets it) turns a skip
  in those groups into a failure that says what is missing, and fails a whole-suite run in which a
  required group passed no test.
- **Counts.** The end of the output gives, per marker (``qe``, ``services``, ``faults``,
  ``remote``), how many tests passed, failed, errored or were skipped, and why they were skipped;
  for ``qe`` also how many launched pw.x / projwfc.x / pp.x calculations in the test profile, how
  many got all of them from the cache, and which launched none.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter

import pytest
from provisioning import REQUIRE_VARIABLE, required_groups

pytest_plugins = ["aiida.tools.pytest_fixtures"]

#: Calculations cached across the session (patterns of AiiDA process types): pw.x, and projwfc.x through
#: upstream's class or the plugin's (``aiida_xesml.calculations.projwfc``, by entry point or class path).
#: Wildcards, because the profile option imports every explicit identifier to check it (and a pattern
#: that starts like an entry point group, ``aiida*``, is the only wildcard form of a class path it accepts).
CACHED_CALCULATIONS = ("aiida.calculations:quantumespresso.pw", "aiida.calculations:*.projwfc",
                       "aiida*.projwfc.ProjwfcCalculation")
#: Process labels of the QE calculations that the summary counts.
QE_CALCULATIONS = ("PwCalculation", "ProjwfcCalculation", "PpCalculation")
#: Markers whose tests must run QE fresh, without the cache. A ``faults`` test that injects its fault
#: into a run of the real code is marked ``no_cache`` too (tests/faults); the failure tests
#: (tests/failures) are not: their failing runs use wrapper codes of their own, which no cache
#: entry can match, and the good steps before them may come from the cache.
FRESH_MARKERS = ("no_cache", "services", "remote")
#: ``record_property(QE_ELSEWHERE, n)``: the test checked n QE calculations that ran in another profile.
QE_ELSEWHERE = "qe_calculations_in_another_profile"
#: Markers counted in the summary.
REPORTED_MARKERS = ("qe", "services", "faults", "remote")


def caching_enabled() -> bool:
    """Whether the session profile caches pw.x and projwfc.x (``XESML_TEST_CACHING=0`` turns it off)."""
    return os.environ.get("XESML_TEST_CACHING", "1").strip() not in ("0", "false", "no", "off")


@pytest.fixture(scope="session", autouse=True)
def aiida_profile(aiida_config, aiida_profile_factory):
    """The session's temporary profile, with the ZeroMQ broker so that the daemon can run, and caching of
    pw.x and projwfc.x calculations (also in the daemon, which reads the profile's configuration)."""
    with aiida_profile_factory(aiida_config, broker_backend="core.zeromq") as profile:
        if caching_enabled():
            profile.set_option("caching.enabled_for", list(CACHED_CALCULATIONS))
            aiida_config.update_profile(profile)
            aiida_config.store()
        yield profile


#: Seconds between the in-process runner's checks of whether a child process has terminated. Its first signal
#: is the broker's broadcast; the poll is the backup. AiiDA polls with 0 s in a test profile (``Manager.
#: create_runner``): a busy loop of database queries that took a whole core from the 2-MPI-process QE runs
#: while ``run_get_node`` waited (a 6-atom compression: 617 s under pytest, 247 s in a user profile, on 2 cores).
RUNNER_POLL_SECONDS = 1.0


@pytest.fixture(scope="session", autouse=True)
def runner_polls_like_a_user_profile(aiida_profile):
    """Make every runner this process creates poll every ``RUNNER_POLL_SECONDS``.

    The test daemon's worker is another process and keeps AiiDA's 0 s; it serves two short tests.
    """
    from aiida.manage import get_manager
    from aiida.manage.manager import Manager

    original = Manager.create_runner

    def create_runner(self, with_persistence: bool = True, **kwargs):
        kwargs.setdefault("poll_interval", RUNNER_POLL_SECONDS)
        return original(self, with_persistence, **kwargs)

    Manager.create_runner = create_runner
    manager = get_manager()
    manager.set_runner(manager.create_runner())  # replaces (and closes) a runner made before this fixture
    yield
    Manager.create_runner = original


@pytest.fixture(autouse=True)
def reports_stored_in_the_database(aiida_profile):
    """Keep AiiDA's database log handler: process reports must become Log nodes in every test.

    A ``verdi`` command invoked in-process (click's CliRunner, tests/cli) reconfigures logging
    without it (``aiida.common.log.configure_logging()``), and every later report would then reach
    the console only; a test reading a work chain's report from the database would depend on
    whether a CLI test ran before it.
    """
    import logging

    from aiida.common.log import configure_logging
    from aiida.orm.utils.log import DBLogHandler

    if not any(isinstance(handler, DBLogHandler) for handler in logging.getLogger("aiida").handlers):
        configure_logging(with_orm=True)


@pytest.fixture(scope="session")
def qe_codes(aiida_profile):
    """The `pw`, `projwfc` and `pp` codes for Debian's QE on a localhost computer, as set-up makes them."""
    from aiida_xesml.setup import ensure_codes, get_localhost

    return ensure_codes(get_localhost("localhost-test"))


@pytest.fixture(scope="session")
def pseudo_family(aiida_profile):
    """The Debian PBE PAW pseudopotential family, as set-up installs it."""
    from aiida_xesml.pseudos.families import ensure_pseudo_family

    return ensure_pseudo_family()


@pytest.fixture
def rutile_structure(aiida_profile):
    """A 6-atom rutile-type GeO2 cell, slightly rattled so that MD has something to do."""
    from failures.helpers import rattled_rutile

    return rattled_rutile(1)


@pytest.fixture
def md_builder(qe_codes, pseudo_family, rutile_structure):
    """Factory of `fast`-protocol xesml.md builders on the rattled rutile cell."""
    from aiida_xesml.workflows.md import MdWorkChain

    def factory(**overrides):
        return MdWorkChain.get_builder_from_protocol(qe_codes["pw"], rutile_structure, protocol="fast",
                                                     overrides=overrides)

    return factory


#: Target pressures (GPa) of the one small pipeline run that the session shares (``fast_pipeline``).
FAST_PIPELINE_PRESSURES = (0.0, 30.0)


@pytest.fixture(scope="session")
def fast_pipeline_builder(qe_codes, pseudo_family):
    """Factory of the session's one small xesml.pipeline: the ``fast`` protocol on the rattled 6-atom rutile
    cell at 0 and 30 GPa (3 snapshots of 2 Ge sites per pressure).

    ``factory(pw=None, projwfc=None, pressures=FAST_PIPELINE_PRESSURES, **overrides)``: the same builder
    with other codes (the failure tests' wrappers), protocol overrides, or the first pressures only. Every
    builder it makes has the same QE inputs, so with the session's cache the pw.x and projwfc.x runs of
    the real codes are done once, whichever test asks first; a pipeline over the first pressure alone
    replays half of the shared run (each cached step still costs AiiDA's bookkeeping, about a minute for
    the whole pipeline).
    """
    from failures.helpers import rattled_rutile

    from aiida_xesml.workflows.pipeline import PipelineWorkChain

    def factory(pw=None, projwfc=None, pressures=FAST_PIPELINE_PRESSURES, **overrides):
        assert tuple(pressures) == FAST_PIPELINE_PRESSURES[:len(pressures)], "the shared run's first pressures"
        return PipelineWorkChain.get_builder_from_protocol(
            pw or qe_codes["pw"], projwfc or qe_codes["projwfc"], rattled_rutile(1),  # as ``rutile_structure``
            list(pressures), protocol="fast", overrides=overrides)

    return factory


@pytest.fixture(scope="session")
def fast_pipeline(fast_pipeline_builder):
    """The session's one small pipeline run (``fast_pipeline_builder()``), finished: its node.

    The pipeline test reads all of it; the compression test reads its ``compression`` child, which is
    what a separate xesml.compression with the same inputs would be (the same builder, exposed).
    """
    from aiida.engine import run_get_node

    _, node = run_get_node(fast_pipeline_builder())
    assert node.is_finished_ok, node.exit_message
    return node


@pytest.fixture(scope="session")
def test_daemon(aiida_profile):
    """The test profile's daemon (one worker), started by the first test that asks for it (if it was not
    running) and stopped at the end of the session; killed (circus and its workers, by pid) if it does
    not answer the stop on a busy machine."""
    import sys
    from pathlib import Path

    import aiida.engine.daemon.client as daemon_client_module

    if daemon_client_module.VERDI_BIN is None:  # pytest run without the virtualenv's bin on PATH
        daemon_client_module.VERDI_BIN = str(Path(sys.executable).with_name("verdi"))
    client = daemon_client_module.get_daemon_client(aiida_profile.name)
    started = not client.is_daemon_running
    if started:
        client.start_daemon(number_workers=1, timeout=120)
    yield client
    if started:
        _stop_daemon(client)


def _stop_daemon(client) -> None:
    from pathlib import Path

    import psutil
    from aiida.engine.daemon.client import DaemonException

    pid = client.get_daemon_pid()
    try:
        client.stop_daemon(wait=True, timeout=120)
    except DaemonException:
        with contextlib.suppress(psutil.NoSuchProcess, TypeError):
            circus = psutil.Process(pid)
            for process in [*circus.children(recursive=True), circus]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
        with contextlib.suppress(OSError):
            Path(client.circus_pid_file).unlink()


# ----- markers, required groups ------------------------------------------------------------------


def pytest_configure(config):
    _CONFIG["config"] = config
    config.addinivalue_line("markers", "no_cache: runs QE without AiiDA caching (a fresh pw.x/projwfc.x run)")
    try:
        config.stash[_REQUIRED] = required_groups()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc
    config.stash[_OUTCOMES] = {}
    config.stash[_MARKED] = {}
    config.stash[_QE_RUNS] = {}
    config.stash[_SKIP_REASONS] = {}
    config.stash[_MISSING_GROUPS] = []


_CONFIG: dict = {}  # the session's config, for hooks that do not get it
_REQUIRED = pytest.StashKey[frozenset]()
_OUTCOMES = pytest.StashKey[dict]()
_MARKED = pytest.StashKey[dict]()
_QE_RUNS = pytest.StashKey[dict]()
_SKIP_REASONS = pytest.StashKey[dict]()
_MISSING_GROUPS = pytest.StashKey[list]()


def pytest_collection_modifyitems(config, items):
    marked = config.stash[_MARKED]
    for item in items:
        if "clean_workdir" in item.name and item.get_closest_marker("no_cache") is None:
            item.add_marker(pytest.mark.no_cache)  # a cleaned run must not share folders with cached copies
        names = {name for name in REPORTED_MARKERS if item.get_closest_marker(name) is not None}
        if names:
            marked[item.nodeid] = names


def _skip_reason(report) -> str:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason.removeprefix("Skipped: ")


def _is_fresh(item) -> bool:
    return any(item.get_closest_marker(name) is not None for name in FRESH_MARKERS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A skip in a group that ``XESML_REQUIRE`` names is a failure (whatever skipped it)."""
    report = yield
    required = item.config.stash[_REQUIRED]
    if report.skipped and not hasattr(report, "wasxfail") and required:
        groups = sorted(name for name in required if item.get_closest_marker(name) is not None)
        if groups:
            reason = _skip_reason(report)
            report.outcome = "failed"
            report.longrepr = (f"{REQUIRE_VARIABLE} requires the {', '.join(groups)} group(s), but this test was "
                               f"skipped: {reason}")
    return report


# ----- caching per test, and what each test ran -------------------------------------------------


def _profile_loaded() -> bool:
    try:
        from aiida.manage import get_manager

        return get_manager().get_profile() is not None
    except Exception:  # noqa: BLE001  (no profile machinery yet)
        return False


def _last_node_id() -> int:
    from aiida import orm

    if not _profile_loaded():
        return 0
    return orm.QueryBuilder().append(orm.Node, project="id").order_by({orm.Node: {"id": "desc"}}).first(flat=True) or 0


def _qe_calculations_since(node_id: int) -> dict[int, bool]:
    """The QE calculations stored after node ``node_id``: pk -> whether it came from AiiDA's cache.

    Calculations imported from an archive (members of an import group) were not run here and are left out.
    """
    from aiida import orm

    filters = {"id": {">": node_id}, "attributes.process_label": {"in": list(QE_CALCULATIONS)}}
    query = orm.QueryBuilder().append(orm.CalcJobNode, project=["id", "extras"], filters=filters)
    imported = set(orm.QueryBuilder().append(orm.ImportGroup, tag="import").append(
        orm.CalcJobNode, with_group="import", filters=filters, project="id").all(flat=True))
    return {pk: "_aiida_cached_from" in (extras or {}) for pk, extras in query.all() if pk not in imported}


def _invalidate_cache_sources(node_id: int, everything: bool) -> None:
    """Mark as invalid cache sources the QE calculations created since ``node_id`` (``everything``), and
    every calculation whose remote folder, or a cached copy's, was cleaned since then."""
    from aiida import orm

    pks = list(_qe_calculations_since(node_id)) if everything else []
    cleaned = orm.QueryBuilder().append(orm.RemoteData, filters={"id": {">": node_id}, "extras.cleaned": True},
                                        project="attributes.remote_path").all(flat=True)
    if cleaned:
        query = orm.QueryBuilder().append(orm.RemoteData, filters={"attributes.remote_path": {"in": cleaned}},
                                          tag="remote")
        query.append(orm.CalcJobNode, with_outgoing="remote", project="id")
        pks += query.all(flat=True)
    for pk in set(pks):
        calculation = orm.load_node(pk)
        if calculation.base.caching.is_valid_cache:
            calculation.base.caching.is_valid_cache = False


_BEFORE = pytest.StashKey[int]()
#: QE calculations launched while a module-, class-, package- or session-scoped fixture was set up,
#: by fixture: they count for every test that uses the fixture.
_FIXTURE_RUNS: dict[tuple, dict[int, bool]] = {}


def _fixture_key(fixturedef) -> tuple:
    return (fixturedef.baseid, fixturedef.argname, fixturedef.scope)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Note the QE calculations that a shared fixture launches while it is set up."""
    shared = fixturedef.scope != "function" and _profile_loaded()
    before = _last_node_id() if shared else None
    try:
        return (yield)
    finally:
        if before is not None and _profile_loaded():
            with contextlib.suppress(Exception):
                _FIXTURE_RUNS.setdefault(_fixture_key(fixturedef), {}).update(_qe_calculations_since(before))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Run a fresh test, and the fixtures it sets up and tears down, without caching."""
    from aiida.manage.caching import disable_caching

    try:
        item.stash[_BEFORE] = _last_node_id()
    except Exception:  # noqa: BLE001  (storage not reachable: nothing to count)
        pass
    if not _is_fresh(item):
        return (yield)
    with disable_caching():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Before the fixtures are torn down (the last test tears down the profile): note the QE
    calculations the test launched or used through a shared fixture, and keep bad cache sources
    out of the cache."""
    before = item.stash.get(_BEFORE, None)
    if before is not None and _profile_loaded():
        try:
            runs = _qe_calculations_since(before)
            for name in item.fixturenames:
                for fixturedef in item._fixtureinfo.name2fixturedefs.get(name, ())[-1:]:
                    runs.update(_FIXTURE_RUNS.get(_fixture_key(fixturedef), {}))
            elsewhere = sum(int(value) for key, value in item.user_properties if key == QE_ELSEWHERE)
            item.config.stash[_QE_RUNS][item.nodeid] = (runs, elsewhere)
            _invalidate_cache_sources(before, everything=_is_fresh(item))
        except Exception as exc:  # noqa: BLE001  (bookkeeping must not fail a test)
            item.config.stash[_QE_RUNS][item.nodeid] = None
            item.warn(pytest.PytestWarning(f"could not count or invalidate the QE runs of this test: {exc}"))
    return (yield)


# ----- the summary -------------------------------------------------------------------------------


def pytest_runtest_logreport(report):
    """The outcome of each test over its phases: error (setup/teardown), failed, skipped, xfailed, passed."""
    config = _CONFIG.get("config")
    if config is None:
        return
    outcomes, reasons = config.stash[_OUTCOMES], config.stash[_SKIP_REASONS]
    nodeid = report.nodeid
    if hasattr(report, "wasxfail"):
        outcomes[nodeid] = "xfailed" if report.skipped else "xpassed"
        return
    if report.failed:
        outcomes[nodeid] = "failed" if report.when == "call" else "error"
    elif report.skipped:
        outcomes[nodeid] = "skipped"
        reasons[nodeid] = _skip_reason(report)
    elif report.when == "call" and nodeid not in outcomes:
        outcomes[nodeid] = "passed"


def pytest_sessionfinish(session, exitstatus):
    """In a whole-suite run (no paths, -k or -m given), a required group must have passed tests."""
    config = session.config
    required = config.stash[_REQUIRED]
    if not required or config.args_source != pytest.Config.ArgsSource.TESTPATHS:
        return
    if config.option.keyword or config.option.markexpr:
        return
    outcomes, marked = config.stash[_OUTCOMES], config.stash[_MARKED]
    for group in sorted(required):
        if not any(outcomes.get(nodeid) == "passed" and group in names for nodeid, names in marked.items()):
            config.stash[_MISSING_GROUPS].append(group)
    if config.stash[_MISSING_GROUPS] and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    outcomes, marked = config.stash[_OUTCOMES], config.stash[_MARKED]
    reasons, qe_runs = config.stash[_SKIP_REASONS], config.stash[_QE_RUNS]
    write = terminalreporter.write_line
    terminalreporter.section("tests by what they exercise (qe, services, faults, remote)")
    order = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
    for name in REPORTED_MARKERS:
        ids = [nodeid for nodeid, names in marked.items() if name in names and nodeid in outcomes]
        counts = Counter(outcomes[nodeid] for nodeid in ids)
        text = ", ".join(f"{counts.get(outcome, 0)} {outcome}" for outcome in order
                         if counts.get(outcome) or outcome in ("passed", "failed", "skipped"))
        write(f"{name}: {text}" if ids else f"{name}: none ran")
        for reason, count in Counter(reasons[nodeid] for nodeid in ids if outcomes[nodeid] == "skipped").items():
            write(f"    {count} skipped: {reason}")
        if name == "qe" and ids:
            _write_qe_usage(write, [nodeid for nodeid in ids if outcomes[nodeid] not in ("skipped", "error")],
                            qe_runs)
    unmarked = sorted(nodeid for nodeid, runs in qe_runs.items()
                      if runs and (runs[0] or runs[1]) and "qe" not in marked.get(nodeid, ()))
    for nodeid in unmarked[:20]:
        write(f"used QE calculations but is not marked qe: {nodeid}")
    missing = config.stash[_MISSING_GROUPS]
    if missing:
        terminalreporter.write_line(
            f"{REQUIRE_VARIABLE} requires {', '.join(missing)}, but no test of that group passed in this run",
            red=True, bold=True)


def _write_qe_usage(write, ids: list[str], qe_runs: dict) -> None:
    """How the qe-marked tests that ran used QE: calculations run, from the cache, in another profile, none."""
    if not ids:
        return
    known = {nodeid: qe_runs[nodeid] for nodeid in ids if qe_runs.get(nodeid) is not None}
    ran = [nodeid for nodeid, (runs, _) in known.items() if not all(runs.values())]
    cached = [nodeid for nodeid, (runs, _) in known.items() if runs and all(runs.values())]
    elsewhere = [nodeid for nodeid, (runs, other) in known.items() if not runs and other]
    none = sorted(nodeid for nodeid, (runs, other) in known.items() if not runs and not other)
    calculations = {pk: from_cache for runs, _ in known.values() for pk, from_cache in runs.items()}
    write(f"    of the {len(ids)} that ran, by the pw.x/projwfc.x/pp.x calculations they launched or used through "
          f"a shared fixture: {len(ran)} ran QE, {len(cached)} only reused AiiDA-cached results, {len(elsewhere)} "
          f"checked QE runs of another profile, {len(none)} used none (in the test profile "
          f"{sum(not c for c in calculations.values())} QE calculations ran and {sum(calculations.values())} came "
          "from the cache)")
    for nodeid in none[:20]:
        write(f"    used no QE calculation: {nodeid}")
    if len(known) < len(ids):
        write(f"    {len(ids) - len(known)} could not be counted (no profile loaded)")
