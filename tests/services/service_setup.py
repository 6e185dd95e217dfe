"""Start PostgreSQL and RabbitMQ and make a ``core.psql_dos`` profile, as a fresh Debian machine needs.

Used by the ``services`` and ``faults`` tests. Every function is idempotent and raises
:class:`ProvisionError` with the step that failed, so that the tests can skip with the reason when
the machine cannot run the services (no root, no apt-get, ...).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

APT = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]
# QE-NOTES.md: Debian's RabbitMQ 3.10 cancels a consumer after 30 min by default; AiiDA processes
# can wait far longer on a calculation.
RABBITMQ_ADVANCED_CONFIG = "[ {rabbit, [ {consumer_timeout, undefined} ]} ].\n"


class ProvisionError(RuntimeError):
    """A service could not be installed, started or configured; the message names the step."""


def _run(step: str, command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ProvisionError(f"{step}: `{' '.join(command)}` exited {result.returncode}: {' / '.join(tail)}")
    return result


def apt_install(*packages: str) -> None:
    """Install the Debian packages that are missing (needs root and apt-get)."""
    missing = [p for p in packages if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                                                      text=True, check=False).stdout.strip() != "install ok installed"]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ProvisionError(f"install {', '.join(missing)}: needs root and apt-get (run `apt-get install -y "
                             f"{' '.join(missing)}` by hand)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run("apt-get update", [*APT, "update", "-q"], env=env)
    _run(f"install {', '.join(missing)}", [*APT, "install", "-y", "-q", *missing], env=env)


def start_postgresql() -> str:
    """Start the local PostgreSQL cluster (installing it when missing); return its version."""
    if shutil.which("pg_lsclusters") is None:
        apt_install("postgresql")
    clusters = _run("list PostgreSQL clusters", ["pg_lsclusters", "--no-header"]).stdout.split()
    if len(clusters) < 4:
        raise ProvisionError("PostgreSQL: no cluster (pg_lsclusters is empty); create one with pg_createcluster")
    version, name, status = clusters[0], clusters[1], clusters[3]
    if status != "online":
        _run("start PostgreSQL", ["pg_ctlcluster", version, name, "start"])
    return version


def psql(sql: str) -> str:
    """Run one SQL statement as the postgres superuser."""
    return _run("psql", ["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-tAc", sql]).stdout


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
    return subprocess.run(["rabbitmq-diagnostics", "-q", "check_port_connectivity"], capture_output=True,
                          check=False).returncode == 0


def start_rabbitmq(timeout: float = 120.0) -> None:
    """Install RabbitMQ when missing, set consumer_timeout as QE-NOTES.md says, start it detached."""
    apt_install("rabbitmq-server")
    config = Path("/etc/rabbitmq/advanced.config")
    if not config.exists() or "consumer_timeout" not in config.read_text():
        if rabbitmq_running():
            # The setting is read at start: a server started without it must restart.
            _run("stop RabbitMQ", ["rabbitmqctl", "stop"])
        config.write_text(RABBITMQ_ADVANCED_CONFIG)
    if rabbitmq_running():
        return
    _run("start RabbitMQ", ["rabbitmq-server", "-detached"])
    deadline = time.monotonic() + timeout
    while not rabbitmq_running():
        if time.monotonic() > deadline:
            raise ProvisionError(f"RabbitMQ did not answer a ping within {timeout:.0f} s after `rabbitmq-server -detached`")
        time.sleep(1.0)


def profile_env(aiida_path: Path) -> dict:
    """Environment of a process on the profiles under ``aiida_path``; the daemon needs this venv's verdi on PATH."""
    return {**os.environ, "AIIDA_PATH": str(aiida_path),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def verdi(aiida_path: Path, *args: str, step: str | None = None, timeout: float = 300.0) -> str:
    """Run ``verdi`` of this virtualenv with the given AIIDA_PATH; return what it printed."""
    result = _run(step or f"verdi {' '.join(args[:3])}", [str(Path(sys.executable).parent / "verdi"), *args],
                  env=profile_env(aiida_path), timeout=timeout)
    return result.stdout + result.stderr


def create_psql_profile(aiida_path: Path, name: str, database: dict) -> None:
    """A ``core.psql_dos`` profile with the RabbitMQ broker under ``aiida_path``."""
    output = verdi(aiida_path, "profile", "setup", "core.psql_dos", "-n", "--profile-name", name, "--set-as-default",
          "--email", "services@xesml.test", "--first-name", "Service", "--last-name", "Test",
          "--institution", "aiida-xesml", "--broker", "core.rabbitmq",
          "--database-hostname", database["hostname"], "--database-port", str(database["port"]),
          "--database-name", database["name"], "--database-username", database["username"],
          "--database-password", database["password"],
          "--repository-uri", (aiida_path / "repository" / name).as_uri(), step="create the core.psql_dos profile")
    if "RabbitMQ server detected" not in output:
        raise ProvisionError(f"create the core.psql_dos profile: verdi did not detect RabbitMQ ({output.strip()[-300:]})")
    verdi(aiida_path, "config", "set", "warnings.rabbitmq_version", "False")
    verdi(aiida_path, "config", "set", "daemon.worker_process_slots", "200")
