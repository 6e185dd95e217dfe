"""``aiida-xesml setup``: install and configure everything the plugin needs, idempotently."""

import click

from aiida_xesml.cli import cli


@cli.command("setup")
@click.option("--skip-packages", is_flag=True, help="Do not check or install the Debian QE packages.")
@click.option("--semicore", is_flag=True,
              help="Also generate (ld1.x) and install a Ge dataset with 3d in valence, for the 'semicore' alignment.")
@click.pass_context
def cmd_setup(ctx, skip_packages, semicore):
    """Set up QE (Debian packages), the AiiDA profile, the localhost codes and pseudopotentials.

    Safe to run again: each step only does what is missing. Set AIIDA_PATH first to keep the
    profile inside a project (the Makefile uses ./.aiida).

    \b
    Example:
        AIIDA_PATH=$PWD/.aiida aiida-xesml setup
        aiida-xesml setup --semicore     # adds the Ge 3d-valence family
    """
    from aiida_xesml.constants import DEFAULT_PROFILE
    from aiida_xesml.setup import SetupError, setup

    try:
        setup(profile=ctx.obj["profile_name"] or DEFAULT_PROFILE, install_packages=not skip_packages,
              semicore=semicore)
    except SetupError as exc:
        raise click.ClickException(str(exc)) from exc
