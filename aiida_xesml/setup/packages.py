"""Debian's Quantum ESPRESSO, OpenMPI and OpenBLAS: checked with dpkg, installed with apt-get as root."""

from __future__ import annotations

import os
import shutil
import subprocess

from aiida_xesml.constants import DEBIAN_PACKAGES, QE_EXECUTABLES
from aiida_xesml.setup.errors import SetupError, echo


def missing_debian_packages() -> list[str]:
    """Return the Debian packages of :data:`~aiida_xesml.constants.DEBIAN_PACKAGES` that are not installed."""
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
        echo(f"installing Debian packages: {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    for exe in QE_EXECUTABLES.values():
        if shutil.which(exe) is None:
            raise SetupError(f"`{exe}` is not on PATH after installing {', '.join(DEBIAN_PACKAGES)}; check the QE install.")
    echo("Quantum ESPRESSO: " + ", ".join(shutil.which(exe) for exe in QE_EXECUTABLES.values()))
