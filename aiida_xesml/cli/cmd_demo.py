"""``aiida-xesml demo``: the README's main job."""

import click

from aiida_xesml.cli import cli


@cli.command("demo")
@click.option("--output", "output_dir", default="demo-output", show_default=True,
              type=click.Path(file_okay=False),
              help="Folder for summary.json and the figures (created when missing; files of a previous run are replaced).")
@click.option("--protocol", default="balanced", show_default=True,
              type=click.Choice(["fast", "balanced", "stringent"]), help="Protocol of every step.")
@click.option("--dry-run", is_flag=True,
              help="Build and validate the pipeline's inputs and print them, then stop: no daemon, no QE, nothing stored.")
@click.pass_context
def cmd_demo(ctx, output_dir, protocol, dry_run):
    """Run xesml.pipeline on a small GeO2 cell over three pressures, on the daemon, and print its figures.

    The daemon of the profile is started when it is not running (and stopped again at the end).
    The demo takes about 22 minutes on 2 cores; `--dry-run` checks the set-up in seconds.

    \b
    Example:
        aiida-xesml demo --dry-run           # check codes, pseudopotentials and inputs
        aiida-xesml demo --output demo-output
    """
    from aiida_xesml.cli.common import load_profile_of
    from aiida_xesml.demo import dry_run_demo, run_demo

    load_profile_of(ctx)
    try:
        if dry_run:
            dry_run_demo(protocol=protocol)
        else:
            run_demo(output_dir, protocol=protocol)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
