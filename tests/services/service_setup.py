"""Start PostgreSQL and RabbitMQ and make a ``core.psql_dos`` profile, as a fresh Debian machine needs.

Used by the ``services`` tests (and the daemon fault among them). Each step checks first and does
only what is missing; it records in a :class:`provisioning.Changes` journal what it starts or
writes, so that the session ends with the machine as it was (``Changes.undo``). A step that fails
raises :class:`provisioning.ProvisionError` naming it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from provisioning import Changes, ProvisionError, apt_install, processes, run, start_service, which

# QE-NOTES.md: Debian's RabbitMQ 3.10 cancels a consumer after 30 min by default; AiiDA processes
# can wait far longer on a calculation.
RABBITMQ_ADVANCED_CONFIG = "[ {rabbit, [ {consumer_timeout, undefined} ]} ].\n"
RABBITMQ_CONFIG = Path("/etc/rabbitmq/advanced.config")

__all__ = ["ProvisionError", "create_database", "create_psql_profile", "drop_database", "profile_env",
           "start_postgresql", "start_rabbitmq", "verdi"]


def _cluster() -> tuple[str, str, str]:
    """Version, name and status of the first PostgreSQL cluster."""
    fields = run("list PostgreSQL clusters", ["pg_lsclusters", "--no-header"]).stdout.split()
    if len(fields) < 4:
        raise ProvisionError("PostgreSQL", "no cluster (pg_lsclusters is empty); create one with pg_createcluster")
    return fields[0], fields[1], fields[3]


def start_postgresql(changes: Changes) -> str:
    """Start the local PostgreSQL cluster (installing PostgreSQL when missing); return its version.

    A cluster that was down is stopped again by ``changes.undo()``.
    """
    if which("pg_lsclusters") is None:
        apt_install(["postgresql"], step="install PostgreSQL")
    version, name, _ = _cluster()
    start_service(f"PostgreSQL {version}/{name}", running=lambda: _cluster()[2] == "online",
                  start=lambda: run("start PostgreSQL", ["pg_ctlcluster", version, name, "start"]),
                  stop=lambda: run("stop PostgreSQL", ["pg_ctlcluster", version, name, "stop"]),
                  changes=changes, timeout=60)
    return version


def psql(sql: str) -> str:
    """Run one SQL statement as the postgres superuser."""
    return run("psql", ["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-tAc", sql]).stdout


def create_database(prefix: str = "xesml_test") -> dict:
    """A new database and its owner with a random password; returns the connection settings."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    psql(f"CREATE USER {name} WITH PASSWORD '{password}'")
    psql(f"CREATE DATABASE {name} OWNER {name} ENCODING 'UTF8' TEMPLATE template0")
    return {"hostname": "localhost", "port": 5432, "name": name, "username": name, "password": password}


def drop_database(settings: dict) -> None:
    psql(f"DROP DATABASE IF EXISTS {settings['name']} WITH (FORCE)")
    psql(f"DROP USER IF EXISTS {settings['username']}")


def rabbitmq_running() -> bool:
    """Whether RabbitMQ accepts AMQP connections (a ping answers before the listeners are up)."""
    try:
        return subprocess.run(["rabbitmq-diagnostics", "-q", "check_port_connectivity"], capture_output=True,
                              check=False, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_rabbitmq(changes: Changes, timeout: float = 120.0) -> None:
    """Install RabbitMQ when missing and start it detached, with consumer_timeout off (QE-NOTES.md).

    A RabbitMQ that already runs is used as it is (the tests take minutes, far less than its default
    30-minute consumer timeout). One started here gets ``/etc/rabbitmq/advanced.config`` first and is
    stopped by ``changes.undo()``, which also restores that file and stops the Erlang port mapper
    ``epmd`` if it was not running before.
    """
    epmd_before = bool(processes(["epmd"])["epmd"])  # Erlang's tools, rabbitmq-diagnostics too, start it
    apt_install(["rabbitmq-server"], step="install RabbitMQ")
    if rabbitmq_running():
        if not epmd_before:
            changes.on_undo("stop epmd", lambda: _stop_epmd())
        return
    changes.file(RABBITMQ_CONFIG)
    if not RABBITMQ_CONFIG.is_file() or "consumer_timeout" not in RABBITMQ_CONFIG.read_text():
        RABBITMQ_CONFIG.parent.mkdir(parents=True, exist_ok=True)
        RABBITMQ_CONFIG.write_text(RABBITMQ_ADVANCED_CONFIG)

    def stop():
        run("stop RabbitMQ", ["rabbitmqctl", "stop"], timeout=120)
        if not epmd_before:
            _stop_epmd()

    start_service("RabbitMQ", running=rabbitmq_running, stop=stop, changes=changes, timeout=timeout,
                  start=lambda: run("start RabbitMQ", ["rabbitmq-server", "-detached"]))


def _stop_epmd() -> None:
    """Stop the Erlang port mapper (started as a side effect of RabbitMQ and its command-line tools)."""
    if processes(["epmd"])["epmd"]:
        run("stop epmd", [which("epmd") or "epmd", "-kill"])


def profile_env(aiida_path: Path) -> dict:
    """Environment of a process on the profiles under ``aiida_path``; the daemon needs this venv's verdi on PATH."""
    return {**os.environ, "AIIDA_PATH": str(aiida_path),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def verdi(aiida_path: Path, *args: str, step: str | None = None, timeout: float = 300.0) -> str:
    """Run ``verdi`` of this virtualenv with the given AIIDA_PATH; return what it printed."""
    result = run(step or f"verdi {' '.join(args[:3])}", [str(Path(sys.executable).parent / "verdi"), *args],
                 env=profile_env(aiida_path), timeout=timeout)
    return result.stdout + result.stderr


#: Seconds that ``verdi`` waits for circus to answer (AiiDA's option ``daemon.timeout``, default 2).
DAEMON_TIMEOUT_S = 30


def create_psql_profile(aiida_path: Path, name: str, database: dict) -> None:
    """A ``core.psql_dos`` profile with the RabbitMQ broker under ``aiida_path``."""
    step = "create the core.psql_dos profile"
    output = verdi(aiida_path, "profile", "setup", "core.psql_dos", "-n", "--profile-name", name, "--set-as-default",
                   "--email", "services@xesml.test", "--first-name", "Service", "--last-name", "Test",
                   "--institution", "aiida-xesml", "--broker", "core.rabbitmq",
                   "--database-hostname", database["hostname"], "--database-port", str(database["port"]),
                   "--database-name", database["name"], "--database-username", database["username"],
                   "--database-password", database["password"],
                   "--repository-uri", (aiida_path / "repository" / name).as_uri(), step=step)
    if "RabbitMQ server detected" not in output:
        raise ProvisionError(step, f"verdi did not detect RabbitMQ ({output.strip()[-300:]})")
    verdi(aiida_path, "config", "set", "warnings.rabbitmq_version", "False")
    verdi(aiida_path, "config", "set", "daemon.worker_process_slots", "200")
    # circus answers `verdi daemon stop/status` late while it respawns killed workers on a busy machine (the
    # daemon-fault test); AiiDA's default of 2 s then reports "Connection to the daemon timed out"
    verdi(aiida_path, "config", "set", "daemon.timeout", str(DAEMON_TIMEOUT_S))
