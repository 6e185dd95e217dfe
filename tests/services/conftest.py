"""A production-style profile for the ``services`` tests: PostgreSQL storage, RabbitMQ, a daemon of 2 workers.

The profile lives in a temporary AIIDA_PATH and is used from subprocesses (``scenario.py``,
``verdi``): the test process keeps its own SQLite test profile. At the end of the session
everything is undone (``provisioning.Changes``): daemon stopped, database and its user dropped,
profile folder removed, RabbitMQ and PostgreSQL stopped if they were not running before, and
``/etc/rabbitmq/advanced.config`` restored. Where the services cannot be provisioned the tests
skip with the reason, or fail when ``XESML_REQUIRE`` lists ``services`` (as CI does).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from provisioning import Changes, ProvisionError, skip_or_fail
from service_setup import (
    create_database,
    create_psql_profile,
    drop_database,
    profile_env,
    start_postgresql,
    start_rabbitmq,
    verdi,
)

SCENARIO = Path(__file__).with_name("scenario.py")
PROFILE = "xesml-services"
WORKERS = 2


@dataclass
class ServiceProfile:
    """Handle on the PostgreSQL + RabbitMQ profile: run scenario steps and verdi in it."""

    aiida_path: Path
    name: str

    @property
    def env(self) -> dict:
        return profile_env(self.aiida_path)

    def scenario(self, step: str, *args: str, timeout: float = 600.0) -> dict:
        """Run one step of scenario.py in this profile; return its JSON answer."""
        result = subprocess.run([sys.executable, str(SCENARIO), step, *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout, check=False)
        assert result.returncode == 0, f"scenario {step} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
        return json.loads(result.stdout.strip().splitlines()[-1])

    def verdi(self, *args: str, timeout: float = 300.0) -> str:
        return verdi(self.aiida_path, "-p", self.name, *args, timeout=timeout)

    @property
    def circus_pid_file(self) -> Path:
        return self.aiida_path / ".aiida" / "daemon" / f"circus-{self.name}.pid"

    def worker_pids(self) -> list[int]:
        """Pids of the daemon's worker processes (``verdi daemon status`` lists them)."""
        import psutil

        circus_pid = int(self.circus_pid_file.read_text())
        return [child.pid for child in psutil.Process(circus_pid).children(recursive=False)
                if "worker" in " ".join(child.cmdline())]

    def start_daemon(self, workers: int = WORKERS, wait: float = 120.0) -> None:
        """``verdi daemon start``, then wait until circus lists ``workers`` workers (slow on a busy machine)."""
        self.verdi("daemon", "start", str(workers))
        deadline = time.monotonic() + wait
        while len(self.worker_pids()) != workers:
            if time.monotonic() > deadline:
                raise ProvisionError("verdi daemon start", f"{len(self.worker_pids())} workers after {wait:.0f} s; "
                                                           f"expected {workers}")
            time.sleep(1.0)

    def stop_daemon(self) -> None:
        """``verdi daemon stop``; if it fails or hangs, kill circus and its workers."""
        try:
            self.verdi("daemon", "stop", timeout=120)
        except (ProvisionError, subprocess.TimeoutExpired):
            _kill_daemon(self.circus_pid_file)


@pytest.fixture(scope="session")
def service_profile(aiida_profile):
    """PostgreSQL + RabbitMQ profile with QE codes and a daemon of 2 workers; skips (or fails) if impossible."""
    changes = Changes()
    aiida_path = Path(tempfile.mkdtemp(prefix="xesml-services-"))
    changes.on_undo(f"remove {aiida_path}", lambda: shutil.rmtree(aiida_path, ignore_errors=True))
    try:
        start_postgresql(changes)
        start_rabbitmq(changes)
        database = create_database()
        changes.on_undo(f"drop database {database['name']}", lambda: drop_database(database))
        create_psql_profile(aiida_path, PROFILE, database)
    except (ProvisionError, subprocess.TimeoutExpired, OSError) as exc:
        try:
            changes.undo()
        except ProvisionError as undo_error:
            exc = f"{exc} (and undoing the steps done: {undo_error})"
        skip_or_fail("services", f"cannot provision PostgreSQL + RabbitMQ: {exc}")
    profile = ServiceProfile(aiida_path, PROFILE)
    changes.on_undo("stop the services profile's daemon", profile.stop_daemon)
    try:
        profile.scenario("codes")
        profile.start_daemon()
        yield profile
    finally:
        changes.undo()


def _kill_daemon(pid_file: Path) -> None:
    """Last resort when ``verdi daemon stop`` fails: SIGKILL circus and its workers."""
    import psutil

    try:
        process = psutil.Process(int(pid_file.read_text()))
    except (OSError, psutil.NoSuchProcess, ValueError):
        return
    for child in process.children(recursive=True):
        child.send_signal(signal.SIGKILL)
    process.send_signal(signal.SIGKILL)
    time.sleep(1.0)
    pid_file.unlink(missing_ok=True)  # or the next `verdi daemon start` takes the daemon for running
