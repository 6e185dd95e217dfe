"""Set up what the plugin needs on a machine (``aiida-xesml setup``): Debian's Quantum ESPRESSO
(:mod:`.packages`), an AiiDA profile (:mod:`.profile`), the ``localhost`` codes (:mod:`.codes`) and the
pseudopotential families (:mod:`aiida_xesml.pseudos.families`).

Every step is idempotent: it checks first and only does what is missing, so running
``aiida-xesml setup`` a second time is quick. Steps that cannot work raise :class:`SetupError`
with a message that says what to do; the command line turns it into a non-zero exit.
"""

from __future__ import annotations

from aiida_xesml.constants import DEFAULT_PROFILE
from aiida_xesml.setup.codes import ensure_codes, get_localhost
from aiida_xesml.setup.errors import SetupError, echo
from aiida_xesml.setup.packages import ensure_debian_packages, missing_debian_packages
from aiida_xesml.setup.profile import ensure_profile

# The pseudopotential families are in aiida_xesml.pseudos.families, which imports SetupError from here.
__all__ = ("SetupError", "ensure_codes", "ensure_debian_packages", "ensure_profile", "get_localhost",
           "missing_debian_packages", "setup")


def setup(profile: str = DEFAULT_PROFILE, install_packages: bool = True, semicore: bool = False) -> None:
    """Run every set-up step: Debian packages, profile, codes, pseudopotential family (and, with
    ``semicore``, the family with a 3d-valence Ge dataset)."""
    if install_packages:
        ensure_debian_packages()
    ensure_profile(profile)
    from aiida_xesml.pseudos.families import ensure_pseudo_family, ensure_semicore_family

    ensure_codes(get_localhost())
    ensure_pseudo_family()
    if semicore:
        ensure_semicore_family()
    echo("ready")
