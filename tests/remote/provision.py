"""Provision a loopback "cluster" for the remote tests: an sshd on 127.0.0.1 and a one-node Slurm.

Plain Python (``subprocess``), no AiiDA; the generic parts (running a step, installing Debian
packages, the journal of changes) are ``tests/provisioning.py``. Meant for a Debian 12 machine
running as root without systemd (a CI runner or a container): packages come from ``apt-get`` and
the daemons are started directly. What it sets up:

- ``openssh-server``, ``slurm-wlm`` and ``munge`` from Debian, installed only when missing (with
  service start-up blocked during the install, so that no sshd on port 22 appears);
- an sshd with its own configuration file, host key, pid file and log in :data:`STATE_DIR`,
  listening on ``127.0.0.1`` only (port :data:`SSH_PORT`), key-only (no passwords, no PAM);
- a fresh ed25519 key pair for the current user (root), appended once to ``~/.ssh/authorized_keys``,
  and the sshd's host key in ``~/.ssh/known_hosts`` (from ``ssh-keyscan``), where paramiko (and so
  AiiDA's ``core.ssh`` transport with ``load_system_host_keys``) finds it;
- a munge key and ``munged``;
- a single-node ``/etc/slurm/slurm.conf`` (node ``localhost`` with this machine's CPUs and memory,
  one partition, ``select/cons_tres``, no cgroups, no accounting), ``slurmctld`` and ``slurmd``.

Every step checks first and does only what is missing, so a second :func:`provision` in the same
boot takes well under a second. Every change is recorded in a :class:`provisioning.Changes`
journal before it is made (files written, folders created, daemons started), so that
``changes.undo()`` puts the machine back as it was: the tests do that at the end of the session.
A step that fails raises :class:`provisioning.ProvisionError`, whose message starts with the step's
name and ends with the tail of the relevant log or stderr.

From a shell (as root)::

    python tests/remote/provision.py start     # provision, print the connection details
    python tests/remote/provision.py status    # which daemons run
    python tests/remote/provision.py stop      # stop the daemons started here (by their pid files)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, "") and str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for provisioning.py

from provisioning import (  # noqa: E402
    Changes,
    ProvisionError,
    apt_install,
    file_tail,
    pid_alive,
    run,
    stop_pid,
    tail,
    wait_for,
    which,
)

STATE_DIR = Path("/var/tmp/aiida-xesml-remote")
SSH_HOST = "127.0.0.1"
SSH_PORT = 2222
PARTITION = "xesml"
NODE_NAME = "localhost"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_PID = Path("/run/munge/munged.pid")
KEY_COMMENT = "aiida-xesml-remote-test"
CONF_MARKER = "# Written by aiida-xesml tests/remote/provision.py"
PACKAGES = {"openssh-server": "sshd", "slurm-wlm": "slurmctld", "munge": "munged"}

__all__ = ["ProvisionError", "RemoteSetup", "provision", "status", "stop"]


@dataclasses.dataclass(frozen=True)
class RemoteSetup:
    """How to reach the provisioned machine: what an AiiDA ``core.ssh`` + ``core.slurm`` computer needs."""

    host: str
    port: int
    username: str
    key_filename: Path
    partition: str
    node: str
    cpus: int
    memory_mb: int
    state_dir: Path

    @property
    def sshd_log(self) -> Path:
        """The sshd's log (``-E``): one ``Accepted publickey`` line per connection."""
        return self.state_dir / "sshd.log"

    @property
    def slurmctld_log(self) -> Path:
        """slurmctld's log: one ``_job_complete: JobId=N`` line per finished job."""
        return self.state_dir / "slurm" / "slurmctld.log"


# -- helpers -----------------------------------------------------------------------------------


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _write_if_changed(path: Path, text: str, changes: Changes, mode: int = 0o644) -> bool:
    """Write ``text`` to ``path`` unless it already holds it (recorded in ``changes``); return whether it changed."""
    if path.is_file() and path.read_text() == text:
        return False
    changes.folder(path.parent)
    changes.file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return True


def _keep_mode(path: Path, changes: Changes) -> None:
    """Record the mode of an existing folder or file so that ``changes.undo()`` puts it back."""
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        changes.on_undo(f"mode of {path}", lambda: path.exists() and path.chmod(mode))


def _start_daemon(name: str, command: list[str], pid_file: Path, log: Path, changes: Changes,
                  timeout: float = 15) -> None:
    """Start a daemon that writes ``pid_file`` unless it runs; ``changes.undo()`` stops it."""
    if pid_alive(pid_file, name):
        return
    changes.started(name, lambda: stop_pid(pid_file, name))
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0 or not wait_for(lambda: pid_alive(pid_file, name), timeout):
        raise ProvisionError(name, f"{name} did not start (exit {result.returncode}): "
                                   f"{tail(result.stderr) or file_tail(log)}")


# -- steps -------------------------------------------------------------------------------------


def missing_packages() -> list[str]:
    """The Debian packages of :data:`PACKAGES` whose main executable is not installed."""
    return [package for package, exe in PACKAGES.items() if which(exe) is None]


def install_packages(log=print) -> list[str]:
    """``apt-get install`` the missing packages with daemon start-up blocked (see
    :func:`provisioning.apt_install`); return those installed. They stay installed."""
    return apt_install(list(PACKAGES), log=log, installed=lambda package: which(PACKAGES[package]) is not None)


def ensure_client_key(state_dir: Path) -> Path:
    """A passphrase-less ed25519 key pair in ``state_dir`` (made once); return the private key's path."""
    step = "client key"
    key = state_dir / "id_ed25519"
    if not (key.is_file() and key.with_suffix(".pub").is_file()):
        key.unlink(missing_ok=True)
        key.with_suffix(".pub").unlink(missing_ok=True)
        run(step, ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", KEY_COMMENT, "-f", str(key)])
    return key


def ensure_authorized_key(key: Path, changes: Changes) -> None:
    """Append the public key to ``~/.ssh/authorized_keys`` once, keeping the keys already there."""
    ssh_dir = Path.home() / ".ssh"
    changes.folder(ssh_dir)
    _keep_mode(ssh_dir, changes)
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    ssh_dir.chmod(0o700)  # sshd's StrictModes rejects a group/world-writable ~/.ssh
    authorized = ssh_dir / "authorized_keys"
    public = key.with_suffix(".pub").read_text().strip()
    existing = authorized.read_text().splitlines() if authorized.is_file() else []
    if public not in (line.strip() for line in existing):
        changes.file(authorized)
        with authorized.open("a") as handle:
            if existing and authorized.read_text()[-1:] != "\n":
                handle.write("\n")
            handle.write(public + "\n")
    if stat.S_IMODE(authorized.stat().st_mode) != 0o600:
        changes.file(authorized)
        authorized.chmod(0o600)


def sshd_config_text(state_dir: Path, port: int) -> str:
    """A self-contained sshd configuration: loopback only, public keys only, SFTP in-process."""
    return f"""{CONF_MARKER}
Port {port}
ListenAddress {SSH_HOST}
HostKey {state_dir / 'ssh_host_ed25519_key'}
PidFile {state_dir / 'sshd.pid'}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
PrintMotd no
LogLevel INFO
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp internal-sftp
"""


def ensure_sshd(state_dir: Path, port: int, changes: Changes) -> None:
    """Start the dedicated sshd (``sshd -f <state_dir>/sshd_config -E <state_dir>/sshd.log``) unless it runs."""
    step = "sshd"
    config = state_dir / "sshd_config"
    host_key = state_dir / "ssh_host_ed25519_key"
    pid_file = state_dir / "sshd.pid"
    if not host_key.is_file():
        host_key.with_suffix(".pub").unlink(missing_ok=True)
        run(step, ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "aiida-xesml-sshd", "-f", str(host_key)])
    changed = _write_if_changed(config, sshd_config_text(state_dir, port), changes, 0o600)
    if changed:
        stop_pid(pid_file, "sshd")
    if pid_alive(pid_file, "sshd") and _port_open(SSH_HOST, port):
        return
    sshd = which("sshd")
    if sshd is None:
        raise ProvisionError(step, "no sshd executable (package openssh-server)")
    # Privilege separation needs /run/sshd; the systemd unit (absent here) normally creates it.
    changes.folder(Path("/run/sshd"))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    run(step, [sshd, "-t", "-f", str(config)])
    if _port_open(SSH_HOST, port):
        raise ProvisionError(step, f"port {SSH_HOST}:{port} is taken by another process; choose another port "
                                   "(provision(port=...), XESML_REMOTE_SSH_PORT for the tests)")
    changes.started("sshd", lambda: stop_pid(pid_file, "sshd"))
    run(step, [sshd, "-f", str(config), "-E", str(state_dir / "sshd.log")])
    if not wait_for(lambda: _port_open(SSH_HOST, port), 10):
        raise ProvisionError(step, f"sshd did not start listening on {SSH_HOST}:{port}: "
                                   f"{file_tail(state_dir / 'sshd.log')}")


def ensure_known_host(state_dir: Path, port: int, changes: Changes) -> None:
    """Put the sshd's host key in ``~/.ssh/known_hosts`` (``ssh-keyscan``), replacing a stale entry."""
    step = "known_hosts"
    host_public = (state_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    known = Path.home() / ".ssh" / "known_hosts"
    name = f"[{SSH_HOST}]:{port}"
    lines = known.read_text().splitlines() if known.is_file() else []
    if any(line.split()[:3] == [name, *host_public] for line in lines):
        return
    scanned = run(step, ["ssh-keyscan", "-p", str(port), "-t", "ed25519", SSH_HOST], timeout=20).stdout
    entries = [line for line in scanned.splitlines() if line.strip() and not line.startswith("#")]
    if not entries or entries[0].split()[1:3] != host_public:
        raise ProvisionError(step, f"ssh-keyscan of {name} did not return the provisioned host key: {scanned!r}")
    changes.file(known)
    # A key from an earlier provisioning (plain or hashed entry): remove it, or paramiko rejects the new one.
    if known.is_file() and subprocess.run(["ssh-keygen", "-F", name, "-f", str(known)], capture_output=True,
                                          timeout=20, check=False).returncode == 0:
        changes.file(known.with_name("known_hosts.old"))
        run(step, ["ssh-keygen", "-R", name, "-f", str(known)])  # keeps a backup in known_hosts.old
    with known.open("a") as handle:
        handle.write(entries[0] + "\n")
    known.chmod(0o644)


def check_ssh_login(key: Path, port: int, state_dir: Path) -> None:
    """``ssh`` in with the key alone (batch mode, strict host key checking) and run ``true``."""
    try:
        _ssh_true(key, port)
    except ProvisionError as exc:
        # the client only says "Permission denied"; the sshd's log says why (e.g. StrictModes on ~/.ssh)
        raise ProvisionError(exc.step, f"{exc.reason}; sshd log: {file_tail(state_dir / 'sshd.log', 5)}") from exc


def _ssh_true(key: Path, port: int) -> None:
    run("ssh login", ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                      "-o", "StrictHostKeyChecking=yes", "-o", "PasswordAuthentication=no",
                      f"root@{SSH_HOST}", "true"], timeout=30)


def ensure_munge(changes: Changes) -> None:
    """Create the munge key if there is none and start ``munged`` (as the ``munge`` user) unless it runs."""
    step = "munge"
    if pid_alive(MUNGE_PID, "munged"):
        return
    changes.folder(MUNGE_KEY.parent)
    changes.file(MUNGE_KEY)  # created, or its owner and mode set, below
    if not MUNGE_KEY.is_file():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        if which("mungekey"):
            run(step, [which("mungekey"), "--create", "--keyfile", str(MUNGE_KEY)])
        else:
            MUNGE_KEY.write_bytes(os.urandom(1024))
    for folder in (MUNGE_PID.parent, Path("/var/lib/munge"), Path("/var/log/munge")):
        changes.folder(folder)  # /run/munge is the socket's folder; tmpfs, gone after a reboot
        _keep_mode(folder, changes)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
    MUNGE_PID.parent.chmod(0o755)
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)
    munged = which("munged")
    if munged is None:
        raise ProvisionError(step, "no munged executable (package munge)")
    _start_daemon("munged", ["runuser", "-u", "munge", "--", munged], MUNGE_PID,
                  Path("/var/log/munge/munged.log"), changes, timeout=10)
    encoded = run(step, [which("munge") or "munge", "-n"]).stdout
    run(step, [which("unmunge") or "unmunge"], input=encoded)


def node_hardware() -> dict:
    """This machine as slurmd sees it (``slurmd -C``): CPUs, Boards, SocketsPerBoard, CoresPerSocket,
    ThreadsPerCore, RealMemory (MB). Configuring exactly this keeps the node from being drained for
    "Low socket*core*thread count" or "Low RealMemory"."""
    output = run("slurm node hardware", [which("slurmd") or "slurmd", "-C"]).stdout
    fields = dict(re.findall(r"(\w+)=(\S+)", output.splitlines()[0] if output else ""))
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    if not all(key in fields for key in keys):
        raise ProvisionError("slurm node hardware", f"unexpected `slurmd -C` output: {output!r}")
    return {key: int(fields[key]) for key in keys}


def slurm_conf_text(state_dir: Path, hardware: dict) -> str:
    """A one-node slurm.conf: controller and node on this machine, no cgroups, no accounting."""
    spool = state_dir / "slurm"
    node = " ".join(f"{key}={value}" for key, value in hardware.items())
    return f"""{CONF_MARKER}: a one-node cluster on loopback for the remote tests.
ClusterName=xesml
SlurmctldHost={socket.gethostname().split('.')[0]}({SSH_HOST})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={spool}/state
SlurmdSpoolDir={spool}/spool
SlurmctldPidFile={spool}/slurmctld.pid
SlurmdPidFile={spool}/slurmd.pid
SlurmctldLogFile={spool}/slurmctld.log
SlurmdLogFile={spool}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in a container without systemd: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
# Listen on the node's address (127.0.0.1 here), not on every interface.
CommunicationParameters=NoInAddrAny
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName={NODE_NAME} NodeAddr={SSH_HOST} {node} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE_NAME} Default=YES MaxTime=INFINITE State=UP
"""


def node_state() -> str:
    """The node's long state as ``sinfo`` prints it ('idle', 'mixed', 'down*', ...), or '' if none."""
    result = subprocess.run([which("sinfo") or "sinfo", "-h", "-N", "-n", NODE_NAME, "-o", "%T"],
                            capture_output=True, text=True, timeout=20, check=False)
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else ""


def ensure_slurm(state_dir: Path, changes: Changes) -> dict:
    """Write slurm.conf, start slurmctld and slurmd unless they run, and wait for the node to be usable.

    :returns: the node's hardware (see :func:`node_hardware`).
    """
    spool = state_dir / "slurm"
    for folder in (spool / "state", spool / "spool"):
        folder.mkdir(parents=True, exist_ok=True)
    hardware = node_hardware()
    if SLURM_CONF.is_file() and not SLURM_CONF.read_text().startswith(CONF_MARKER):
        raise ProvisionError("slurm.conf", f"{SLURM_CONF} exists and was not written by this provisioning; "
                                           "not overwriting it (move it away to run the remote tests)")
    changed = _write_if_changed(SLURM_CONF, slurm_conf_text(state_dir, hardware), changes)
    daemons = (("slurmctld", spool / "slurmctld.pid", "slurmctld.log"), ("slurmd", spool / "slurmd.pid", "slurmd.log"))
    if changed:
        for name, pid_file, _ in daemons:
            stop_pid(pid_file, name)
    for name, pid_file, log_name in daemons:
        executable = which(name)
        if executable is None:
            raise ProvisionError(name, f"no {name} executable (package slurm-wlm)")
        command = [executable, "-N", NODE_NAME] if name == "slurmd" else [executable]
        _start_daemon(name, command, pid_file, spool / log_name, changes)
    wait_for_idle_node(spool)
    return hardware


def wait_for_idle_node(spool: Path, timeout: float = 60) -> None:
    """Wait until ``sinfo`` shows the node idle (or busy with jobs); resume it if it is drained or down."""
    step = "slurm node"
    usable = ("idle", "mixed", "allocated", "completing")
    resumed = False

    def ready() -> bool:
        nonlocal resumed
        state = node_state()
        if not resumed and state.startswith(("drain", "down")) and "*" not in state:
            # A leftover drain or down (e.g. after a restart with other hardware values): clear it once.
            subprocess.run([which("scontrol") or "scontrol", "update", f"NodeName={NODE_NAME}", "State=RESUME"],
                           capture_output=True, timeout=20, check=False)
            resumed = True
        return state.rstrip("*~#") in usable and "*" not in state

    if not wait_for(ready, timeout, interval=0.5):
        reason = subprocess.run([which("sinfo") or "sinfo", "-R", "-h"], capture_output=True, text=True,
                                timeout=20, check=False).stdout.strip()
        raise ProvisionError(step, f"node {NODE_NAME} not idle after {timeout:.0f} s (state {node_state()!r}, "
                                   f"reason {reason!r}); slurmd log: {file_tail(spool / 'slurmd.log')}; "
                                   f"slurmctld log: {file_tail(spool / 'slurmctld.log')}")


# -- entry points ------------------------------------------------------------------------------


def provision(state_dir: Path = STATE_DIR, port: int = SSH_PORT, log=print,
              changes: Changes | None = None) -> RemoteSetup:
    """Install, configure and start sshd, munge and Slurm (each only if needed); return how to connect.

    :param changes: the journal in which every change is recorded before it is made; ``changes.undo()``
        stops the daemons started here and restores files and folders (a new journal when None).
    :raises ProvisionError: naming the step that failed and why.
    """
    changes = Changes() if changes is None else changes
    if sys.platform != "linux":
        raise ProvisionError("platform", f"needs Linux (Debian), not {sys.platform}")
    install_packages(log)
    if os.geteuid() != 0:
        raise ProvisionError("privileges", "starting sshd, munged and the Slurm daemons needs root")
    changes.folder(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    key = ensure_client_key(state_dir)
    ensure_authorized_key(key, changes)
    ensure_sshd(state_dir, port, changes)
    ensure_known_host(state_dir, port, changes)
    check_ssh_login(key, port, state_dir)
    ensure_munge(changes)
    hardware = ensure_slurm(state_dir, changes)
    import pwd

    return RemoteSetup(host=SSH_HOST, port=port, username=pwd.getpwuid(os.geteuid()).pw_name, key_filename=key,
                       partition=PARTITION, node=NODE_NAME, cpus=hardware["CPUs"],
                       memory_mb=hardware["RealMemory"], state_dir=state_dir)


def stop(state_dir: Path = STATE_DIR) -> list[str]:
    """Stop the daemons that :func:`provision` started (by their pid files); return their names."""
    spool = state_dir / "slurm"
    stopped = []
    for name, pid_file in (("slurmd", spool / "slurmd.pid"), ("slurmctld", spool / "slurmctld.pid"),
                           ("munged", MUNGE_PID), ("sshd", state_dir / "sshd.pid")):
        if stop_pid(pid_file, name):
            stopped.append(name)
    return stopped


def status(state_dir: Path = STATE_DIR) -> dict[str, int | None]:
    """The pid of each daemon, or None where it does not run."""
    spool = state_dir / "slurm"
    return {"sshd": pid_alive(state_dir / "sshd.pid", "sshd"),
            "munged": pid_alive(MUNGE_PID, "munged"),
            "slurmctld": pid_alive(spool / "slurmctld.pid", "slurmctld"),
            "slurmd": pid_alive(spool / "slurmd.pid", "slurmd")}


def main(argv: list[str]) -> int:
    action = argv[1] if len(argv) > 1 else "start"
    if action == "start":
        start = time.monotonic()
        try:
            setup = provision()
        except ProvisionError as exc:
            print(f"provisioning failed at step {exc}", file=sys.stderr)
            return 1
        print(f"ready in {time.monotonic() - start:.1f} s: {setup}")
    elif action == "stop":
        print("stopped:", ", ".join(stop()) or "nothing was running")
    elif action == "status":
        print(status())
    else:
        print(f"usage: {argv[0]} start|stop|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
