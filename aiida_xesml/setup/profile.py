"""The AiiDA profile: made once with ``verdi presto`` (SQLite storage, built-in ZeroMQ broker)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aiida_xesml.constants import DEFAULT_PROFILE
from aiida_xesml.setup.errors import echo


def ensure_profile(name: str = DEFAULT_PROFILE):
    """Load the profile ``name``, creating it with ``verdi presto`` (SQLite, built-in ZeroMQ broker)
    when it does not exist yet. Returns the loaded :class:`aiida.manage.configuration.Profile`.
    """
    from aiida import load_profile
    from aiida.common.exceptions import MissingConfigurationError, ProfileConfigurationError
    from aiida.manage.configuration import get_config

    if not os.environ.get("AIIDA_PATH"):
        echo("AIIDA_PATH is not set: the profile goes to ~/.aiida (the Makefile sets a project-local one)")
    try:
        exists = name in get_config(create=True).profile_names
    except (MissingConfigurationError, ProfileConfigurationError):
        exists = False
    if not exists:
        echo(f"creating profile `{name}` with `verdi presto` (SQLite storage, built-in ZeroMQ broker)")
        verdi = Path(sys.executable).with_name("verdi")
        subprocess.run(
            [str(verdi), "presto", "--profile-name", name, "--use-zeromq", "--email", "xesml@localhost"],
            check=True, stdout=subprocess.DEVNULL,
        )
        from aiida.manage.configuration import reset_config

        reset_config()
    profile = load_profile(name, allow_switch=True)
    echo(f"profile `{profile.name}` ({profile.storage_backend}, broker {profile.process_control_backend})")
    return profile
