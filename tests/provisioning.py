"""Provisioning shared by the test groups that need system services (``services``, ``remote``).

One place for what those groups do to the machine, and for undoing it:

- :func:`run` runs one provisioning step and raises :class:`ProvisionError` naming the step;
- :func:`skip_or_fail` turns a provisioning error into a skip on a developer's machine, or into a
  failure when the group is listed in ``XESML_REQUIRE`` (``.ci/run`` sets it, so that CI cannot
  go green with a group silently skipped);
- :func:`apt_install` installs missing Debian packages with service start-up blocked, so that a
  package install starts nothing by itself;
- :class:`Changes` is a journal of what provisioning changed (files written, folders created,
  services started) and :meth:`Changes.undo` restores it in reverse order: a file gets its old
  content and mode back, or is removed if it did not exist; a service that was not running before
  is stopped;
- :func:`system_state` lists what the groups may touch (daemons, ``/etc/slurm``, ``/etc/munge``,
  ``/etc/rabbitmq``, ``~/.ssh``, the remote state folder, the PostgreSQL cluster), so that a run
  can be checked to leave the machine as it found it::

      python tests/provisioning.py state > before.json
      pytest tests/services tests/remote
      python tests/provisioning.py state > after.json
      python tests/provisioning.py diff before.json after.json

Debian packages that a run installs stay installed (as the QE packages of ``make test`` do); the
state lists them apart. Plain Python plus ``subprocess``; pytest is imported only by
:func:`skip_or_fail`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

#: Comma-separated test groups (pytest markers) that must run: a skip in them is a failure.
REQUIRE_VARIABLE = "XESML_REQUIRE"
#: Groups whose skips :data:`REQUIRE_VARIABLE` can turn into failures.
GROUPS = ("services", "remote", "faults")
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
APT = ("apt-get", "-o", "DPkg::Lock::Timeout=300")
POLICY_RC = Path("/usr/sbin/policy-rc.d")


class ProvisionError(RuntimeError):
    """A provisioning step failed; ``step`` names it and the message says why."""

    def __init__(self, step: str, reason: str):
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


# -- skip or fail --------------------------------------------------------------------------------


def required_groups(environ: dict | None = None) -> frozenset[str]:
    """The groups named in ``XESML_REQUIRE`` (e.g. ``services,remote,faults``); unknown names are an error."""
    text = (environ if environ is not None else os.environ).get(REQUIRE_VARIABLE, "")
    names = frozenset(name.strip() for name in text.replace(" ", ",").split(",") if name.strip())
    unknown = sorted(names - set(GROUPS))
    if unknown:
        raise ValueError(f"{REQUIRE_VARIABLE}={text!r} names unknown group(s) {unknown}; known: {', '.join(GROUPS)}")
    return names


def skip_or_fail(group: str, reason: str):
    """Skip the current test with ``reason``, or fail it when ``group`` is required (``XESML_REQUIRE``)."""
    import pytest

    if group in required_groups():
        pytest.fail(f"{group} tests cannot run: {reason} ({REQUIRE_VARIABLE} requires the {group} group)",
                    pytrace=False)
    pytest.skip(f"{group} tests: {reason}")


# -- commands ------------------------------------------------------------------------------------


def which(name: str) -> str | None:
    """``shutil.which`` that also looks in the sbin folders (not on a non-root PATH)."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))


def tail(text: str | bytes | None, lines: int = 15) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").strip().splitlines()[-lines:])


def file_tail(path: Path, lines: int = 15) -> str:
    try:
        return tail(Path(path).read_text(errors="replace"), lines)
    except OSError:
        return f"(no log at {path})"


def run(step: str, command: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run ``command`` (text mode, output captured); raise :class:`ProvisionError` for ``step`` if it
    cannot start, times out (``timeout`` s) or exits non-zero, with the tail of its stderr."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    except FileNotFoundError as exc:
        raise ProvisionError(step, f"`{command[0]}` not found ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProvisionError(step, f"`{' '.join(command)}` did not finish in {timeout:.0f} s: "
                                   f"{tail(exc.stderr)}") from exc
    if result.returncode != 0:
        raise ProvisionError(step, f"`{' '.join(command)}` exited {result.returncode}: "
                                   f"{tail(result.stderr) or tail(result.stdout)}")
    return result


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``predicate`` until it is true (return True) or ``timeout`` seconds pass (return False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


# -- Debian packages -----------------------------------------------------------------------------


def package_installed(package: str) -> bool:
    """Whether dpkg has ``package`` installed."""
    if shutil.which("dpkg-query") is None:
        return False
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True,
                            check=False)
    return result.stdout.strip() == "install ok installed"


def apt_install(packages: Iterable[str], step: str = "install packages", log: Callable[[str], None] = print,
                installed: Callable[[str], bool] = package_installed) -> list[str]:
    """``apt-get install`` the ``packages`` that ``installed`` says are missing; return those it installed.

    Debian's maintainer scripts start a package's service through ``invoke-rc.d``; without systemd
    that would start, e.g., an sshd on 0.0.0.0:22 or RabbitMQ with the stock configuration. A
    temporary ``/usr/sbin/policy-rc.d`` that exits 101 ("action forbidden") prevents this; it is
    removed afterwards (an existing one is left alone). Needs root and apt-get.
    """
    missing = [package for package in packages if not installed(package)]
    if not missing:
        return []
    if os.geteuid() != 0:
        raise ProvisionError(step, f"{', '.join(missing)} missing and not running as root, so they cannot be "
                                   f"installed (run `apt-get install -y {' '.join(missing)}` as root)")
    if which("apt-get") is None:
        raise ProvisionError(step, f"{', '.join(missing)} missing and no apt-get on this machine")
    log(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    own_policy = not POLICY_RC.exists()
    if own_policy:
        POLICY_RC.write_text("#!/bin/sh\n# aiida-xesml tests: no service starts during apt-get install\nexit 101\n")
        POLICY_RC.chmod(0o755)
    try:
        run(step, [*APT, "update", "-q"], timeout=300, env=env)
        run(step, [*APT, "install", "-y", "-q", "--no-install-recommends", *missing], timeout=900, env=env)
    finally:
        if own_policy:
            POLICY_RC.unlink(missing_ok=True)
    still = [package for package in missing if not installed(package)]
    if still:
        raise ProvisionError(step, f"apt-get finished but {', '.join(still)} still missing")
    return missing


# -- processes -----------------------------------------------------------------------------------


def pid_alive(pid_file: Path, name: str) -> int | None:
    """The pid in ``pid_file`` if that process runs and its command name starts with ``name``."""
    try:
        pid = int(Path(pid_file).read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm.startswith(name[:15]) else None


def stop_pid(pid_file: Path, name: str, timeout: float = 10) -> bool:
    """SIGTERM the process of ``pid_file`` (if it is ``name``), SIGKILL it after ``timeout`` s; return
    whether it ran."""
    pid = pid_alive(pid_file, name)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        Path(pid_file).unlink()
    return True


def processes(names: Iterable[str]) -> dict[str, list[int]]:
    """Pids of running processes by command name (``/proc/<pid>/comm``), for the names asked."""
    wanted = {name[:15]: name for name in names}
    found: dict[str, list[int]] = {name: [] for name in wanted.values()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm in wanted:
            found[wanted[comm]].append(int(entry.name))
    return {name: sorted(pids) for name, pids in found.items()}


# -- the journal of changes -----------------------------------------------------------------------


@dataclasses.dataclass
class _Undo:
    description: str
    action: Callable[[], None]


class Changes:
    """What provisioning changed on the machine, to be undone in reverse order by :meth:`undo`.

    Record a change *before* making it: :meth:`file` keeps a file's content and mode (or that it
    was absent), :meth:`folder` notes a folder that did not exist, :meth:`started` how to stop a
    service that provisioning started. Recording the same path twice keeps the first record.
    """

    def __init__(self):
        self._undo: list[_Undo] = []
        self._paths: set[Path] = set()

    def __len__(self) -> int:
        return len(self._undo)

    def on_undo(self, description: str, action: Callable[[], None]) -> None:
        """Run ``action`` on :meth:`undo` (after the actions recorded later)."""
        self._undo.append(_Undo(description, action))

    def file(self, path: Path) -> None:
        """Record ``path`` before it is written, replaced or removed; undo restores it as it was."""
        path = Path(path)
        if path in self._paths:
            return
        self._paths.add(path)
        if path.is_file():
            content, mode = path.read_bytes(), stat.S_IMODE(path.stat().st_mode)
            owner = (path.stat().st_uid, path.stat().st_gid)

            def restore():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
                path.chmod(mode)
                with contextlib.suppress(PermissionError):
                    os.chown(path, *owner)

            self.on_undo(f"restore {path}", restore)
        elif not path.exists():
            self.on_undo(f"remove {path}", lambda: path.unlink(missing_ok=True))
        else:
            raise ProvisionError("record changes", f"{path} exists and is not a regular file")

    def folder(self, path: Path) -> None:
        """Record ``path`` before it is created; undo removes it (with its content) if it did not exist."""
        path = Path(path)
        if path in self._paths:
            return
        self._paths.add(path)
        if not path.exists():
            self.on_undo(f"remove {path}/", lambda: shutil.rmtree(path, ignore_errors=True))

    def started(self, name: str, stop: Callable[[], None]) -> None:
        """Record that provisioning started the service ``name``; undo stops it with ``stop``."""
        self.on_undo(f"stop {name}", stop)

    def undo(self) -> list[str]:
        """Undo every recorded change, the last first; return what was done. Every action runs even if
        an earlier one fails; the failures are raised together at the end as a ProvisionError."""
        done, errors = [], []
        while self._undo:
            item = self._undo.pop()
            try:
                item.action()
                done.append(item.description)
            except Exception as exc:  # noqa: BLE001  (undo the rest, report all)
                errors.append(f"{item.description}: {type(exc).__name__}: {exc}")
        self._paths.clear()
        if errors:
            raise ProvisionError("undo provisioning", "; ".join(errors))
        return done


def start_service(name: str, *, running: Callable[[], bool], start: Callable[[], None], stop: Callable[[], None],
                  changes: Changes, timeout: float = 60) -> bool:
    """Start service ``name`` unless ``running()``; wait up to ``timeout`` s for it; record how to stop
    it in ``changes``. Returns whether it was started here."""
    if running():
        return False
    changes.started(name, stop)
    start()
    if not wait_for(running, timeout, interval=0.5):
        raise ProvisionError(f"start {name}", f"not running {timeout:.0f} s after it was started")
    return True


# -- what a run may change, for checking that it restored everything --------------------------------

#: Folders and files that the services and remote groups write to or may create.
WATCHED_PATHS = ("/etc/slurm", "/etc/munge", "/etc/rabbitmq", "~/.ssh", "/var/tmp/aiida-xesml-remote", "/run/sshd",
                 "/run/munge", "/usr/sbin/policy-rc.d")
#: Daemons those groups start.
WATCHED_PROCESSES = ("sshd", "munged", "slurmctld", "slurmd", "postgres", "beam.smp", "epmd")
WATCHED_PACKAGES = ("postgresql", "rabbitmq-server", "openssh-server", "slurm-wlm", "munge")


def _tree(path: Path) -> dict[str, str] | str:
    """sha256 (first 16 hex digits) and mode of every file below ``path``, or 'absent'."""
    if not path.exists():
        return "absent"
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink())
    listing = {}
    for file in files:
        key = str(file.relative_to(path)) if file != path else file.name
        try:
            digest = hashlib.sha256(file.read_bytes()).hexdigest()[:16]
        except OSError as exc:
            digest = f"unreadable ({exc.strerror})"
        listing[key] = f"{digest} {stat.filemode(file.lstat().st_mode)}"
    if path.is_dir() and not files:
        listing["."] = "empty folder"
    return listing


def system_state() -> dict:
    """The state of everything the services and remote groups may change (see the module docstring)."""
    clusters = ""
    if shutil.which("pg_lsclusters"):
        clusters = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True,
                                  check=False).stdout.strip()
    return {
        "paths": {name: _tree(Path(name).expanduser()) for name in WATCHED_PATHS},
        "processes": {name: len(pids) for name, pids in processes(WATCHED_PROCESSES).items()},
        "postgresql_clusters": clusters,
        "packages": {name: package_installed(name) for name in WATCHED_PACKAGES},
    }


def state_difference(before: dict, after: dict) -> list[str]:
    """Lines naming what differs between two :func:`system_state` results (packages listed apart)."""
    lines = []
    for section in ("paths", "processes"):
        for key in sorted(set(before[section]) | set(after[section])):
            old, new = before[section].get(key), after[section].get(key)
            if old == new:
                continue
            if isinstance(old, dict) and isinstance(new, dict):
                for name in sorted(set(old) | set(new)):
                    if old.get(name) != new.get(name):
                        lines.append(f"{key}/{name}: {old.get(name, 'absent')} -> {new.get(name, 'absent')}")
            else:
                lines.append(f"{key}: {old} -> {new}")
    if before["postgresql_clusters"] != after["postgresql_clusters"]:
        lines.append(f"PostgreSQL clusters: {before['postgresql_clusters']!r} -> {after['postgresql_clusters']!r}")
    for name in sorted(before["packages"]):
        if before["packages"][name] != after["packages"].get(name):
            lines.append(f"package {name}: installed {before['packages'][name]} -> {after['packages'].get(name)} "
                         "(packages stay installed)")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "state":
        print(json.dumps(system_state(), indent=1, sort_keys=True))
        return 0
    if len(argv) == 4 and argv[1] == "diff":
        before, after = (json.loads(Path(name).read_text()) for name in argv[2:4])
        lines = state_difference(before, after)
        print("\n".join(lines) if lines else "no difference")
        return 1 if any("(packages stay installed)" not in line for line in lines) else 0
    print(f"usage: {argv[0]} state | diff BEFORE.json AFTER.json", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
