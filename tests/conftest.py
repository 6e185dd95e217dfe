"""Test fixtures: a temporary AiiDA profile (SQLite + built-in ZeroMQ broker) and real QE codes."""

import pytest

pytest_plugins = ["aiida.tools.pytest_fixtures"]


@pytest.fixture(scope="session", autouse=True)
def aiida_profile(aiida_config, aiida_profile_factory):
    """The session's temporary profile, with the ZeroMQ broker so that the daemon can run."""
    with aiida_profile_factory(aiida_config, broker_backend="core.zeromq") as profile:
        yield profile


@pytest.fixture(scope="session")
def qe_codes(aiida_profile):
    """The `pw`, `projwfc` and `pp` codes for Debian's QE on a localhost computer, as set-up makes them."""
    from aiida_xesml.environment import ensure_codes, get_localhost

    return ensure_codes(get_localhost("localhost-test"))


@pytest.fixture(scope="session")
def pseudo_family(aiida_profile):
    """The Debian PBE PAW pseudopotential family, as set-up installs it."""
    from aiida_xesml.environment import ensure_pseudo_family

    return ensure_pseudo_family()


@pytest.fixture
def rutile_structure(aiida_profile):
    """A 6-atom rutile-type GeO2 cell, slightly rattled so that MD has something to do."""
    from aiida import orm

    from aiida_xesml.ml.structures import rutile_geo2

    atoms = rutile_geo2()
    atoms.rattle(0.03, seed=1)
    return orm.StructureData(ase=atoms)


@pytest.fixture
def md_builder(qe_codes, pseudo_family, rutile_structure):
    """Factory of `fast`-protocol xesml.md builders on the rattled rutile cell."""
    from aiida_xesml.workflows.md import MdWorkChain

    def factory(**overrides):
        return MdWorkChain.get_builder_from_protocol(qe_codes["pw"], rutile_structure, protocol="fast",
                                                     overrides=overrides)

    return factory


# The service, fault and remote tests must be seen to run: the summary counts them per marker.
REPORTED_MARKERS = ("services", "faults", "remote")
_marked: dict[str, set[str]] = {}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in REPORTED_MARKERS:
            if item.get_closest_marker(name) is not None:
                _marked.setdefault(item.nodeid, set()).add(name)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = {name: {} for name in REPORTED_MARKERS}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") == "teardown" and outcome == "passed":
                continue
            for name in _marked.get(getattr(report, "nodeid", ""), ()):
                counts[name][outcome] = counts[name].get(outcome, 0) + 1
    terminalreporter.section("services, faults and remote tests")
    for name, by_outcome in counts.items():
        text = ", ".join(f"{count} {outcome}" for outcome, count in by_outcome.items()) or "none collected"
        terminalreporter.write_line(f"{name}: {text}")
