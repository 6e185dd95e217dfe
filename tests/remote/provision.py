"""Provision a loopback "cluster" for the remote tests: an sshd on 127.0.0.1 and a one-node Slurm.

Plain Python (``subprocess``), no AiiDA. Meant for a Debian 12 machine running as root without
systemd (a CI runner or a container): packages come from ``apt-get`` and the daemons are started
directly. What it sets up:

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
boot takes well under a second. A step that fails raises :class:`ProvisionError`, whose message
starts with the step's name and ends with the tail of the relevant log or stderr.

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
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STATE_DIR = Path("/var/tmp/aiida-xesml-remote")
SSH_HOST = "127.0.0.1"
SSH_PORT = 2222
PARTITION = "xesml"
NODE_NAME = "localhost"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
KEY_COMMENT = "aiida-xesml-remote-test"
CONF_MARKER = "# Written by aiida-xesml tests/remote/provision.py"
PACKAGES = {"openssh-server": "sshd", "slurm-wlm": "slurmctld", "munge": "munged"}
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


class ProvisionError(RuntimeError):
    """A provisioning step failed; ``step`` names it and the message says why."""

    def __init__(self, step: str, reason: str):
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


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


def _which(name: str) -> str | None:
    """``shutil.which`` that also looks in the sbin directories (not on a non-root PATH)."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))


def _tail(text: str | bytes | None, lines: int = 15) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").strip().splitlines()[-lines:])


def _file_tail(path: Path, lines: int = 15) -> str:
    try:
        return _tail(path.read_text(errors="replace"), lines)
    except OSError:
        return f"(no log at {path})"


def _run(step: str, command: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run ``command``; raise :class:`ProvisionError` for ``step`` with its stderr tail if it fails."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    except FileNotFoundError as exc:
        raise ProvisionError(step, f"`{command[0]}` not found ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProvisionError(step, f"`{' '.join(command)}` did not finish in {timeout:.0f} s: "
                                   f"{_tail(exc.stderr)}") from exc
    if result.returncode != 0:
        raise ProvisionError(step, f"`{' '.join(command)}` exited {result.returncode}: "
                                   f"{_tail(result.stderr) or _tail(result.stdout)}")
    return result


def _pid_alive(pid_file: Path, name: str) -> int | None:
    """The pid in ``pid_file`` if that process runs and its command name starts with ``name``."""
    try:
        pid = int(pid_file.read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm.startswith(name[:15]) else None


def _wait(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write ``text`` to ``path`` unless it already holds it; return whether it changed."""
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return True


def _stop_pid(pid_file: Path, name: str, timeout: float = 10) -> bool:
    """SIGTERM the process of ``pid_file`` (if it is ``name``) and wait for it to go; return whether it ran."""
    pid = _pid_alive(pid_file, name)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait(lambda: not Path(f"/proc/{pid}").exists(), timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        pid_file.unlink()
    return True


# -- steps -------------------------------------------------------------------------------------


def missing_packages() -> list[str]:
    """The Debian packages of :data:`PACKAGES` whose main executable is not installed."""
    return [package for package, exe in PACKAGES.items() if _which(exe) is None]


def install_packages(log=print) -> None:
    """``apt-get install`` the missing packages (after ``apt-get update``), with daemon start-up blocked.

    Debian's maintainer scripts start a package's service through ``invoke-rc.d``; without systemd
    that would launch sshd on 0.0.0.0:22, munged and the Slurm daemons with the stock
    configuration. A temporary ``/usr/sbin/policy-rc.d`` that exits 101 ("action forbidden")
    prevents this; it is removed afterwards (an existing one is left alone).
    """
    step = "install packages"
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise ProvisionError(step, f"{', '.join(missing)} missing and not running as root, so they cannot be "
                                   f"installed (run `apt-get install {' '.join(missing)}` as root)")
    if _which("apt-get") is None:
        raise ProvisionError(step, f"{', '.join(missing)} missing and no apt-get on this machine")
    log(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text("#!/bin/sh\n# aiida-xesml provisioning: no service starts during apt-get install\nexit 101\n")
        policy.chmod(0o755)
    try:
        _run(step, ["apt-get", "update", "-q"], timeout=300, env=env)
        _run(step, ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], timeout=900, env=env)
    finally:
        if own_policy:
            policy.unlink(missing_ok=True)
    still = missing_packages()
    if still:
        raise ProvisionError(step, f"apt-get finished but {', '.join(still)} still missing")


def ensure_client_key(state_dir: Path) -> Path:
    """A passphrase-less ed25519 key pair in ``state_dir`` (made once); return the private key's path."""
    step = "client key"
    key = state_dir / "id_ed25519"
    if not (key.is_file() and key.with_suffix(".pub").is_file()):
        key.unlink(missing_ok=True)
        key.with_suffix(".pub").unlink(missing_ok=True)
        _run(step, ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", KEY_COMMENT, "-f", str(key)])
    return key


def ensure_authorized_key(key: Path) -> None:
    """Append the public key to ``~/.ssh/authorized_keys`` once, keeping the keys already there."""
    ssh_dir = Path.home() / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    ssh_dir.chmod(0o700)  # sshd's StrictModes rejects a group/world-writable ~/.ssh
    authorized = ssh_dir / "authorized_keys"
    public = key.with_suffix(".pub").read_text().strip()
    existing = authorized.read_text().splitlines() if authorized.is_file() else []
    if public not in (line.strip() for line in existing):
        with authorized.open("a") as handle:
            if existing and authorized.read_text()[-1:] != "\n":
                handle.write("\n")
            handle.write(public + "\n")
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


def ensure_sshd(state_dir: Path, port: int) -> None:
    """Start the dedicated sshd (``sshd -f <state_dir>/sshd_config -E <state_dir>/sshd.log``) unless it runs."""
    step = "sshd"
    config = state_dir / "sshd_config"
    host_key = state_dir / "ssh_host_ed25519_key"
    pid_file = state_dir / "sshd.pid"
    if not host_key.is_file():
        host_key.with_suffix(".pub").unlink(missing_ok=True)
        _run(step, ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "aiida-xesml-sshd", "-f", str(host_key)])
    changed = _write_if_changed(config, sshd_config_text(state_dir, port), 0o600)
    if changed:
        _stop_pid(pid_file, "sshd")
    if _pid_alive(pid_file, "sshd") and _port_open(SSH_HOST, port):
        return
    sshd = _which("sshd")
    if sshd is None:
        raise ProvisionError(step, "no sshd executable (package openssh-server)")
    # Privilege separation needs /run/sshd; the systemd unit (absent here) normally creates it.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    _run(step, [sshd, "-t", "-f", str(config)])
    if _port_open(SSH_HOST, port):
        raise ProvisionError(step, f"port {SSH_HOST}:{port} is taken by another process; choose another port "
                                   "(provision(port=...), XESML_REMOTE_SSH_PORT for the tests)")
    _run(step, [sshd, "-f", str(config), "-E", str(state_dir / "sshd.log")])
    if not _wait(lambda: _port_open(SSH_HOST, port), 10):
        raise ProvisionError(step, f"sshd did not start listening on {SSH_HOST}:{port}: "
                                   f"{_file_tail(state_dir / 'sshd.log')}")


def ensure_known_host(state_dir: Path, port: int) -> None:
    """Put the sshd's host key in ``~/.ssh/known_hosts`` (``ssh-keyscan``), replacing a stale entry."""
    step = "known_hosts"
    host_public = (state_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    known = Path.home() / ".ssh" / "known_hosts"
    name = f"[{SSH_HOST}]:{port}"
    lines = known.read_text().splitlines() if known.is_file() else []
    if any(line.split()[:3] == [name, *host_public] for line in lines):
        return
    scanned = _run(step, ["ssh-keyscan", "-p", str(port), "-t", "ed25519", SSH_HOST], timeout=20).stdout
    entries = [line for line in scanned.splitlines() if line.strip() and not line.startswith("#")]
    if not entries or entries[0].split()[1:3] != host_public:
        raise ProvisionError(step, f"ssh-keyscan of {name} did not return the provisioned host key: {scanned!r}")
    # A key from an earlier provisioning (plain or hashed entry): remove it, or paramiko rejects the new one.
    if known.is_file() and subprocess.run(["ssh-keygen", "-F", name, "-f", str(known)], capture_output=True,
                                          timeout=20, check=False).returncode == 0:
        _run(step, ["ssh-keygen", "-R", name, "-f", str(known)])  # keeps a backup in known_hosts.old
    with known.open("a") as handle:
        handle.write(entries[0] + "\n")
    known.chmod(0o644)


def check_ssh_login(key: Path, port: int, state_dir: Path) -> None:
    """``ssh`` in with the key alone (batch mode, strict host key checking) and run ``true``."""
    try:
        _ssh_true(key, port)
    except ProvisionError as exc:
        # the client only says "Permission denied"; the sshd's log says why (e.g. StrictModes on ~/.ssh)
        raise ProvisionError(exc.step, f"{exc.reason}; sshd log: {_file_tail(state_dir / 'sshd.log', 5)}") from exc


def _ssh_true(key: Path, port: int) -> None:
    _run("ssh login", ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                       "-o", "StrictHostKeyChecking=yes", "-o", "PasswordAuthentication=no",
                       f"root@{SSH_HOST}", "true"], timeout=30)


def ensure_munge() -> None:
    """Create the munge key if there is none and start ``munged`` (as the ``munge`` user) unless it runs."""
    step = "munge"
    pid_file = Path("/run/munge/munged.pid")
    if _pid_alive(pid_file, "munged"):
        return
    if not MUNGE_KEY.is_file():
        if _which("mungekey"):
            _run(step, [_which("mungekey"), "--create", "--keyfile", str(MUNGE_KEY)])
        else:
            MUNGE_KEY.write_bytes(os.urandom(1024))
    Path("/run/munge").mkdir(parents=True, exist_ok=True)  # the socket's folder; tmpfs, gone after a reboot
    for path, mode in ((MUNGE_KEY, 0o400), (Path("/run/munge"), 0o755)):
        shutil.chown(path, "munge", "munge")
        path.chmod(mode)
    for folder in (Path("/var/lib/munge"), Path("/var/log/munge")):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
    munged = _which("munged")
    if munged is None:
        raise ProvisionError(step, "no munged executable (package munge)")
    _run(step, ["runuser", "-u", "munge", "--", munged])
    if not _wait(lambda: _pid_alive(pid_file, "munged"), 10):
        raise ProvisionError(step, f"munged did not start: {_file_tail(Path('/var/log/munge/munged.log'))}")
    encoded = _run(step, [_which("munge") or "munge", "-n"]).stdout
    _run(step, [_which("unmunge") or "unmunge"], input=encoded)


def node_hardware() -> dict:
    """This machine as slurmd sees it (``slurmd -C``): CPUs, Boards, SocketsPerBoard, CoresPerSocket,
    ThreadsPerCore, RealMemory (MB). Configuring exactly this keeps the node from being drained for
    "Low socket*core*thread count" or "Low RealMemory"."""
    output = _run("slurm node hardware", [_which("slurmd") or "slurmd", "-C"]).stdout
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
    result = subprocess.run([_which("sinfo") or "sinfo", "-h", "-N", "-n", NODE_NAME, "-o", "%T"],
                            capture_output=True, text=True, timeout=20, check=False)
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else ""


def ensure_slurm(state_dir: Path) -> dict:
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
    changed = _write_if_changed(SLURM_CONF, slurm_conf_text(state_dir, hardware))
    daemons = (("slurmctld", spool / "slurmctld.pid", "slurmctld.log"), ("slurmd", spool / "slurmd.pid", "slurmd.log"))
    if changed:
        for name, pid_file, _ in daemons:
            _stop_pid(pid_file, name)
    for name, pid_file, log_name in daemons:
        if _pid_alive(pid_file, name):
            continue
        executable = _which(name)
        if executable is None:
            raise ProvisionError(name, f"no {name} executable (package slurm-wlm)")
        command = [executable, "-N", NODE_NAME] if name == "slurmd" else [executable]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0 or not _wait(lambda pid_file=pid_file, name=name: _pid_alive(pid_file, name), 15):
            raise ProvisionError(name, f"{name} did not start (exit {result.returncode}): "
                                       f"{_tail(result.stderr) or _file_tail(spool / log_name)}")
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
            subprocess.run([_which("scontrol") or "scontrol", "update", f"NodeName={NODE_NAME}", "State=RESUME"],
                           capture_output=True, timeout=20, check=False)
            resumed = True
        return state.rstrip("*~#") in usable and "*" not in state

    if not _wait(ready, timeout, interval=0.5):
        reason = subprocess.run([_which("sinfo") or "sinfo", "-R", "-h"], capture_output=True, text=True,
                                timeout=20, check=False).stdout.strip()
        raise ProvisionError(step, f"node {NODE_NAME} not idle after {timeout:.0f} s (state {node_state()!r}, "
                                   f"reason {reason!r}); slurmd log: {_file_tail(spool / 'slurmd.log')}; "
                                   f"slurmctld log: {_file_tail(spool / 'slurmctld.log')}")


# -- entry points ------------------------------------------------------------------------------


def provision(state_dir: Path = STATE_DIR, port: int = SSH_PORT, log=print) -> RemoteSetup:
    """Install, configure and start sshd, munge and Slurm (each only if needed); return how to connect.

    :raises ProvisionError: naming the step that failed and why.
    """
    if sys.platform != "linux":
        raise ProvisionError("platform", f"needs Linux (Debian), not {sys.platform}")
    install_packages(log)
    if os.geteuid() != 0:
        raise ProvisionError("privileges", "starting sshd, munged and the Slurm daemons needs root")
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    key = ensure_client_key(state_dir)
    ensure_authorized_key(key)
    ensure_sshd(state_dir, port)
    ensure_known_host(state_dir, port)
    check_ssh_login(key, port, state_dir)
    ensure_munge()
    hardware = ensure_slurm(state_dir)
    import pwd

    return RemoteSetup(host=SSH_HOST, port=port, username=pwd.getpwuid(os.geteuid()).pw_name, key_filename=key,
                       partition=PARTITION, node=NODE_NAME, cpus=hardware["CPUs"],
                       memory_mb=hardware["RealMemory"], state_dir=state_dir)


def stop(state_dir: Path = STATE_DIR) -> list[str]:
    """Stop the daemons that :func:`provision` started (by their pid files); return their names."""
    spool = state_dir / "slurm"
    stopped = []
    for name, pid_file in (("slurmd", spool / "slurmd.pid"), ("slurmctld", spool / "slurmctld.pid"),
                           ("munged", Path("/run/munge/munged.pid")), ("sshd", state_dir / "sshd.pid")):
        if _stop_pid(pid_file, name):
            stopped.append(name)
    return stopped


def status(state_dir: Path = STATE_DIR) -> dict[str, int | None]:
    """The pid of each daemon, or None where it does not run."""
    spool = state_dir / "slurm"
    return {"sshd": _pid_alive(state_dir / "sshd.pid", "sshd"),
            "munged": _pid_alive(Path("/run/munge/munged.pid"), "munged"),
            "slurmctld": _pid_alive(spool / "slurmctld.pid", "slurmctld"),
            "slurmd": _pid_alive(spool / "slurmd.pid", "slurmd")}


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
