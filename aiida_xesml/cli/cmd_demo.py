"""``aiida-xesml demo``: the README's main job."""

import click

from aiida_xesml.cli import cli


@cli.command("demo")
@click.option("--output", "output_dir", default="demo-output", show_default=True,
              type=click.Path(file_okay=False), help="Folder for summary.json and the figures.")
@click.option("--protocol", default="balanced", show_default=True,
              type=click.Choice(["fast", "balanced", "stringent"]), help="Protocol of every step.")
@click.pass_context
def cmd_demo(ctx, output_dir, protocol):
    """Run xesml.pipeline on a small GeO2 cell over three pressures, on the daemon, and print its figures.

    \b
    Example:
        aiida-xesml demo --output demo-output
    """
    from aiida import load_profile

    from aiida_xesml.demo import run_demo
    from aiida_xesml.environment import DEFAULT_PROFILE

    load_profile(ctx.obj["profile_name"] or DEFAULT_PROFILE, allow_switch=True)
    try:
        run_demo(output_dir, protocol=protocol)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
