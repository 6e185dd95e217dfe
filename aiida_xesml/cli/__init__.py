"""The ``aiida-xesml`` console script: set-up, demo (and, later, launch and reconstruct).

It follows aiida's ``VerdiCommandGroup`` style with a ``-p/--profile`` option. The profile is loaded
lazily by the commands that need it, because ``setup`` is the command that creates it.
"""

import click
from aiida.cmdline.groups import VerdiCommandGroup

from aiida_xesml.constants import DEFAULT_PROFILE


@click.group("aiida-xesml", cls=VerdiCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-p", "--profile", "profile_name", default=None, metavar="NAME",
    help=f"AiiDA profile to use (default: the default profile; `setup` creates `{DEFAULT_PROFILE}`).",
)
@click.pass_context
def cli(ctx, profile_name):
    """aiida-xesml: Quantum ESPRESSO Kβ X-ray emission spectra of GeO2 to structure, with provenance.

    \b
    Example:
        aiida-xesml setup            # QE, profile, codes, pseudopotentials
        aiida-xesml demo             # the main job, on the embedded profile
    """
    ctx.obj = {"profile_name": profile_name}


from . import cmd_demo, cmd_launch, cmd_reconstruct, cmd_setup  # noqa: E402,F401  (register the subcommands)
