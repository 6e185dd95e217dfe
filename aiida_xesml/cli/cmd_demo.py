"""``aiida-xesml demo``: the README's main job."""

import click

from aiida_xesml.cli import cli


@cli.command("demo")
@click.option("--output", "output_dir", default="demo-output", show_default=True,
              type=click.Path(file_okay=False), help="Folder for summary.json and the figures.")
@click.pass_context
def cmd_demo(ctx, output_dir):
    """Run the demo and print its figures.

    \b
    Example:
        aiida-xesml demo --output demo-output
    """
    from aiida_xesml.demo import run_demo

    run_demo(output_dir)
