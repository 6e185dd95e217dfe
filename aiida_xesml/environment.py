"""Set up what the plugin needs on a machine: Debian's Quantum ESPRESSO, an AiiDA profile, the
``localhost`` codes and a pseudopotential family.

Every step is idempotent: it checks first and only does what is missing, so running
``aiida-xesml setup`` a second time is quick. Steps that cannot work raise :class:`SetupError`
with a message that says what to do; the command line turns it into a non-zero exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEBIAN_PACKAGES = ("quantum-espresso", "quantum-espresso-data", "openmpi-bin", "libopenblas0-serial")
QE_EXECUTABLES = {"pw": "pw.x", "projwfc": "projwfc.x", "pp": "pp.x"}
CODE_PLUGINS = {"pw": "quantumespresso.pw", "projwfc": "quantumespresso.projwfc", "pp": "quantumespresso.pp"}
PSEUDO_DIR = Path("/usr/share/espresso/pseudo")
# One file per element: the Debian PAW datasets (Ge has only 4s4p in valence, see QE-NOTES.md).
PSEUDO_FILES = {"Ge": "Ge.pbe-kjpaw.UPF", "O": "O.pbe-kjpaw.UPF", "Si": "Si.pbe-nl-rrkjus_psl.1.0.0.UPF"}
PSEUDO_FAMILY = "xesml-debian-pbe-paw"
# Recommended cutoffs (Ry) per stringency, matching the protocols: forces converge at 25-30 Ry and
# the pressure at 35 Ry for rutile GeO2 with these PAW datasets; dual 6 is enough.
CUTOFFS_RY = {"fast": (25.0, 150.0), "balanced": (30.0, 180.0), "stringent": (45.0, 270.0)}
SEMICORE_FAMILY = "xesml-pbe-paw-ge3d"
SEMICORE_CUTOFFS_RY = {"fast": (35.0, 210.0), "balanced": (40.0, 240.0), "stringent": (50.0, 300.0)}
# ld1.x input for a Ge PAW dataset with 3d in valence, from the published pslibrary 1.0.0 parameters of
# Ge.pbe-dn-kjpaw (QE-NOTES.md). Card columns: label n l occupation energy(Ry) rcut rcutus (bohr).
GE_SEMICORE_LD1_INPUT = """&input
  title='Ge', zed=32.0, rel=1, config='[Ar] 4s2 4p2 3d10', iswitch=3, dft='PBE'
/
&inputp
  lpaw=.true., pseudotype=3, file_pseudopw='Ge.pbe-dn-kjpaw.UPF', author='aiida-xesml (pslibrary 1.0.0 recipe)',
  lloc=-1, rcloc=1.9, which_augfun='PSQ', rmatch_augfun_nc=.true., nlcc=.true., new_core_ps=.true., rcore=1.2,
  tm=.true.
/
6
4S  1  0  2.00  0.00  1.30  1.70
4S  1  0  0.00  6.00  1.30  1.70
4P  2  1  2.00  0.00  1.80  1.90
4P  2  1  0.00  6.00  1.80  1.90
3D  3  2 10.00  0.00  1.30  1.70
3D  3  2  0.00  0.05  1.30  1.70
"""
MAX_UPF_LINE = 200  # pw.x 6.7 rejects much longer lines ("line too long")
DEFAULT_PROFILE = "xesml"
# Seconds between two scheduler polls of `localhost` (a `ps` call with core.direct): a job's end is
# noticed within this time. AiiDA's default for computers is 10 s, meant for remote schedulers; a
# 20-40 s QE run on a workstation would wait 5 s on average for it (core.local alone defaults to 0.1 s,
# and each poll writes the state of every running job to the database).
LOCAL_JOB_POLL_INTERVAL_S = 1.0
# core.local runs every command (each poll, each submission) in a login shell by default, which
# sources the user's profile: with a pyenv or conda set-up there that took 1.3 s per command on the
# test machine, against 0.08 s without. The jobs' environment comes from the codes' prepend text.
LOCAL_AUTH_PARAMS = {"safe_interval": 0.0, "use_login_shell": False}
# mpirun refuses root without these; one OpenMP thread per MPI process is fastest on 2 cores. Ranks
# that wait yield the core instead of spinning, so that several runs on one workstation (the snapshots
# of xesml.spectra under core.direct) share it instead of slowing each other down many times over.
PREPEND_TEXT = (
    "export OMPI_ALLOW_RUN_AS_ROOT=1\n"
    "export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1\n"
    "export OMP_NUM_THREADS=1\n"
    "export OMPI_MCA_mpi_yield_when_idle=1\n"
)


class SetupError(RuntimeError):
    """A set-up step that cannot work on this machine; the message says what to do."""


def _echo(message: str) -> None:
    print(f"[aiida-xesml setup] {message}", flush=True)


def missing_debian_packages() -> list[str]:
    """Return the Debian packages of :data:`DEBIAN_PACKAGES` that are not installed."""
    if shutil.which("dpkg-query") is None:
        return [] if all(shutil.which(exe) for exe in QE_EXECUTABLES.values()) else list(DEBIAN_PACKAGES)
    missing = []
    for package in DEBIAN_PACKAGES:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
        )
        if "install ok installed" not in result.stdout:
            missing.append(package)
    return missing


def ensure_debian_packages() -> None:
    """Install Quantum ESPRESSO, OpenMPI and OpenBLAS from Debian when they are missing."""
    missing = missing_debian_packages()
    if missing:
        command = ["apt-get", "install", "-y", "-q", *missing]
        if os.geteuid() != 0:
            raise SetupError(
                f"missing Debian packages {', '.join(missing)}; installing them needs root. Run "
                f"`sudo apt-get update && sudo {' '.join(command)}` and then this set-up again."
            )
        if shutil.which("apt-get") is None:
            raise SetupError(f"missing packages {', '.join(missing)} and no apt-get: install Quantum ESPRESSO 6.7+ by hand.")
        _echo(f"installing Debian packages: {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    for exe in QE_EXECUTABLES.values():
        if shutil.which(exe) is None:
            raise SetupError(f"`{exe}` is not on PATH after installing {', '.join(DEBIAN_PACKAGES)}; check the QE install.")
    _echo("Quantum ESPRESSO: " + ", ".join(shutil.which(exe) for exe in QE_EXECUTABLES.values()))


def ensure_profile(name: str = DEFAULT_PROFILE):
    """Load the profile ``name``, creating it with ``verdi presto`` (SQLite, built-in ZeroMQ broker)
    when it does not exist yet. Returns the loaded :class:`aiida.manage.configuration.Profile`.
    """
    from aiida import load_profile
    from aiida.common.exceptions import MissingConfigurationError, ProfileConfigurationError
    from aiida.manage.configuration import get_config

    if not os.environ.get("AIIDA_PATH"):
        _echo("AIIDA_PATH is not set: the profile goes to ~/.aiida (the Makefile sets a project-local one)")
    try:
        exists = name in get_config(create=True).profile_names
    except (MissingConfigurationError, ProfileConfigurationError):
        exists = False
    if not exists:
        _echo(f"creating profile `{name}` with `verdi presto` (SQLite storage, built-in ZeroMQ broker)")
        verdi = Path(sys.executable).with_name("verdi")
        subprocess.run(
            [str(verdi), "presto", "--profile-name", name, "--use-zeromq", "--email", "xesml@localhost"],
            check=True, stdout=subprocess.DEVNULL,
        )
        from aiida.manage.configuration import reset_config

        reset_config()
    profile = load_profile(name, allow_switch=True)
    _echo(f"profile `{profile.name}` ({profile.storage_backend}, broker {profile.process_control_backend})")
    return profile


def get_localhost(label: str = "localhost"):
    """Return the configured ``localhost`` computer, creating it as ``verdi presto`` would."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer(label)
    except NotExistent:
        computer = orm.Computer(
            label=label, hostname="localhost", description="this machine", transport_type="core.local",
            scheduler_type="core.direct", workdir=str(Path(tempfile.gettempdir()) / "aiida-xesml-work"),
        ).store()
    if not computer.is_configured:
        # core.local opens a transport at once (no safe interval: there is no server to protect)
        computer.configure(**LOCAL_AUTH_PARAMS)
    elif computer.transport_type == "core.local":
        authinfo = computer.get_authinfo(orm.User.collection.get_default())
        params = authinfo.get_auth_params()
        if "use_login_shell" not in params:  # `verdi presto` leaves it at AiiDA's default (True); keep a choice
            authinfo.set_auth_params({**params, "use_login_shell": False})
            _echo(f"computer `{label}`: commands run without a login shell")
    if computer.transport_type == "core.local" and computer.get_minimum_job_poll_interval() != LOCAL_JOB_POLL_INTERVAL_S:
        computer.set_minimum_job_poll_interval(LOCAL_JOB_POLL_INTERVAL_S)
        _echo(f"computer `{label}`: scheduler polled every {LOCAL_JOB_POLL_INTERVAL_S} s")
    # `verdi presto` sets 1 MPI process; pw.x on two processes is about 2x faster on 2 cores (QE-NOTES.md).
    if (computer.get_default_mpiprocs_per_machine() or 1) < (os.cpu_count() or 1):
        computer.set_default_mpiprocs_per_machine(os.cpu_count() or 1)
        _echo(f"computer `{label}`: {os.cpu_count()} MPI processes per calculation by default")
    return computer


def code_label(name: str) -> str:
    """Label of the code for QE executable ``name`` ('pw', 'projwfc', 'pp')."""
    return f"{name}-qe"


def ensure_codes(computer=None) -> dict:
    """Create (once) the ``pw``, ``projwfc`` and ``pp`` codes on ``computer`` for Debian's QE.

    :returns: mapping 'pw' / 'projwfc' / 'pp' -> stored :class:`aiida.orm.InstalledCode`.
    """
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    computer = computer or get_localhost()
    codes = {}
    for name, exe in QE_EXECUTABLES.items():
        label = code_label(name)
        try:
            codes[name] = orm.load_code(f"{label}@{computer.label}")
            continue
        except (NotExistent, MultipleObjectsError):
            pass
        path = shutil.which(exe)
        if path is None:
            raise SetupError(f"`{exe}` not found on PATH: install the Debian package quantum-espresso first.")
        codes[name] = orm.InstalledCode(
            label=label, computer=computer, filepath_executable=path,
            default_calc_job_plugin=CODE_PLUGINS[name], prepend_text=PREPEND_TEXT, with_mpi=True,
            description=f"Debian Quantum ESPRESSO {exe}",
        ).store()
        _echo(f"created code {label}@{computer.label} -> {path}")
    return codes


def ensure_pseudo_family(label: str = PSEUDO_FAMILY, pseudo_dir: Path = PSEUDO_DIR):
    """Install (once) the Debian PBE pseudopotentials as an aiida-pseudo family with recommended
    cutoffs per protocol stringency ('fast', 'balanced', 'stringent', Ry).
    """
    from aiida.common.exceptions import NotExistent
    from aiida.orm import QueryBuilder
    from aiida_pseudo.data.pseudo.upf import UpfData
    from aiida_pseudo.groups.family import CutoffsPseudoPotentialFamily

    existing = QueryBuilder().append(CutoffsPseudoPotentialFamily, filters={"label": label}).first(flat=True)
    if existing is not None:
        return existing
    files = {element: pseudo_dir / filename for element, filename in PSEUDO_FILES.items()}
    absent = [str(path) for path in files.values() if not path.is_file()]
    if absent:
        raise SetupError(f"pseudopotential files not found: {', '.join(absent)}; install quantum-espresso-data.")
    with tempfile.TemporaryDirectory() as folder:
        for path in files.values():
            shutil.copy(path, folder)
        try:
            family = CutoffsPseudoPotentialFamily.create_from_folder(Path(folder), label, pseudo_type=UpfData)
        except (ValueError, NotExistent) as exc:
            raise SetupError(f"could not install the pseudopotential family `{label}`: {exc}") from exc
    for stringency, (ecutwfc, ecutrho) in CUTOFFS_RY.items():
        cutoffs = {element: {"cutoff_wfc": ecutwfc, "cutoff_rho": ecutrho} for element in files}
        family.set_cutoffs(cutoffs, stringency, unit="Ry")
    family.set_default_stringency("balanced")
    _echo(f"installed pseudopotential family `{label}` from {pseudo_dir} ({', '.join(PSEUDO_FILES.values())})")
    return family


def reflow_upf(text: str, max_length: int = MAX_UPF_LINE) -> str:
    """Make a UPF file readable by pw.x 6.7: put a long tag's attributes on separate lines and split
    long data lines into lines of four numbers. The content is unchanged."""
    import re

    lines = []
    for line in text.splitlines():
        if len(line) <= max_length:
            lines.append(line)
        elif line.lstrip().startswith("<"):
            lines.extend(part for part in re.split(r"\s+(?=[A-Za-z_]+=\")", line.rstrip()))
        else:
            tokens = line.split()
            lines.extend("  ".join(tokens[i:i + 4]) for i in range(0, len(tokens), 4))
    return "\n".join(lines) + "\n"


def generate_semicore_ge(folder: Path) -> Path:
    """Generate the Ge PAW dataset with 3d in valence with Debian's ld1.x in ``folder``; return its path."""
    if shutil.which("ld1.x") is None:
        raise SetupError("`ld1.x` not found: install the Debian package quantum-espresso.")
    result = subprocess.run(["ld1.x"], input=GE_SEMICORE_LD1_INPUT, capture_output=True, text=True, cwd=folder,
                            check=False)
    path = folder / "Ge.pbe-dn-kjpaw.UPF"
    if result.returncode != 0 or not path.is_file():
        raise SetupError(f"ld1.x failed to generate the semicore Ge dataset:\n{result.stdout[-2000:]}{result.stderr}")
    path.write_text(reflow_upf(path.read_text()))
    return path


def ensure_semicore_family(label: str = SEMICORE_FAMILY, pseudo_dir: Path = PSEUDO_DIR):
    """Install (once) a family whose Ge dataset has 3d in valence (generated with ld1.x), for the
    'semicore' alignment; O and Si are the Debian ones."""
    from aiida.orm import QueryBuilder
    from aiida_pseudo.data.pseudo.upf import UpfData
    from aiida_pseudo.groups.family import CutoffsPseudoPotentialFamily

    existing = QueryBuilder().append(CutoffsPseudoPotentialFamily, filters={"label": label}).first(flat=True)
    if existing is not None:
        return existing
    with tempfile.TemporaryDirectory() as folder:
        generate_semicore_ge(Path(folder))
        (Path(folder) / "ld1.wfc").unlink(missing_ok=True)
        for element, filename in PSEUDO_FILES.items():
            if element != "Ge":
                shutil.copy(pseudo_dir / filename, folder)
        for leftover in Path(folder).iterdir():
            if leftover.suffix.lower() != ".upf":
                leftover.unlink()
        family = CutoffsPseudoPotentialFamily.create_from_folder(Path(folder), label, pseudo_type=UpfData)
    elements = [pseudo.element for pseudo in family.nodes]
    for stringency, (ecutwfc, ecutrho) in SEMICORE_CUTOFFS_RY.items():
        family.set_cutoffs({e: {"cutoff_wfc": ecutwfc, "cutoff_rho": ecutrho} for e in elements}, stringency, unit="Ry")
    family.set_default_stringency("balanced")
    _echo(f"installed pseudopotential family `{label}` (Ge with 3d in valence, generated with ld1.x)")
    return family


def setup(profile: str = DEFAULT_PROFILE, install_packages: bool = True, semicore: bool = False) -> None:
    """Run every set-up step: Debian packages, profile, codes, pseudopotential family (and, with
    ``semicore``, the family with a 3d-valence Ge dataset)."""
    if install_packages:
        ensure_debian_packages()
    ensure_profile(profile)
    ensure_codes(get_localhost())
    ensure_pseudo_family()
    if semicore:
        ensure_semicore_family()
    _echo("ready")
