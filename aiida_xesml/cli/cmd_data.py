"""``verdi data xesml``: list, show, export and plot the plugin's data nodes.

One sub-group per data type, each in its own module: ``spectra`` (:mod:`.cmd_spectra`), ``dataset``
(:mod:`.cmd_dataset`, with the learning curve), ``emulator`` (:mod:`.cmd_emulator`) and ``eca``
(:mod:`.cmd_eca`); nodes are given by PK, UUID or LABEL (:mod:`.params`). The commands are a thin
shell: numbers come from the data classes (:mod:`aiida_xesml.data`), figures from
:mod:`aiida_xesml.plotting`. Heavy imports happen inside the commands so that ``verdi`` stays fast.

Registered as ``[project.entry-points."aiida.cmdline.data"] xesml = aiida_xesml.cli.cmd_data:data_xesml``.
"""

import click
from aiida.cmdline.groups import VerdiCommandGroup

from aiida_xesml.cli.cmd_dataset import dataset
from aiida_xesml.cli.cmd_eca import eca
from aiida_xesml.cli.cmd_emulator import emulator
from aiida_xesml.cli.cmd_spectra import spectra
from aiida_xesml.cli.params import DATA_TYPES

__all__ = ["DATA_TYPES", "data_xesml"]


@click.group("xesml", cls=VerdiCommandGroup)
def data_xesml():
    """Inspect, export and plot aiida-xesml data: spectra, datasets, emulators and ECA.

    \b
    Example:
        verdi data xesml spectra list
        verdi data xesml emulator show 1234
        verdi data xesml dataset export 1240 --format csv -o dataset.csv
        verdi data xesml dataset learning-curve 1240 -o learning_curve.png
    """


for _group in (spectra, dataset, emulator, eca):
    data_xesml.add_command(_group)
