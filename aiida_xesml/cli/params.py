"""Parameter types of the plugin's commands, on aiida's own (as aiida-pseudo does).

:class:`XesmlDataParamType` is aiida's :class:`~aiida.cmdline.params.types.DataParamType` narrowed to
one of the plugin's data types: a value is a PK, UUID or LABEL, looked up among the nodes of that type
only (so a label shared with a node of another type is not ambiguous). A node of another type gets a
message that says what it is and what the command needs.
"""

from __future__ import annotations

import click
from aiida.cmdline.params import arguments
from aiida.cmdline.params.types import DataParamType, NodeParamType
from aiida.cmdline.utils.decorators import with_dbenv

__all__ = ["DATA_TYPES", "XesmlDataParamType", "data_argument", "data_option"]

#: Sub-group name -> (data entry point, class name); the class is loaded when a command runs.
DATA_TYPES = {
    "spectra": ("xesml.spectra", "XesSpectraData"),
    "dataset": ("xesml.dataset", "XesDatasetData"),
    "emulator": ("xesml.emulator", "EmulatorData"),
    "eca": ("xesml.eca", "XesEcaData"),
}


class XesmlDataParamType(DataParamType):
    """A node of one xesml data type (``kind``: a key of :data:`DATA_TYPES`) by PK, UUID or LABEL.

    :param kind: ``'spectra'``, ``'dataset'``, ``'emulator'`` or ``'eca'``.
    :param used_by: ``'command'`` or ``'option'``: how the wrong-type message names the parameter.
    """

    def __init__(self, kind: str, used_by: str = "command"):
        if kind not in DATA_TYPES:
            raise ValueError(f"`kind` must be one of {', '.join(DATA_TYPES)}; got {kind!r}")
        super().__init__(sub_classes=(f"aiida.data:{DATA_TYPES[kind][0]}",))
        self.kind = kind
        self.used_by = used_by
        self.name = DATA_TYPES[kind][1]

    @with_dbenv()
    def convert(self, value, param, ctx):
        from aiida.common.exceptions import MultipleObjectsError, NotExistent

        cls = self._node_class()
        if isinstance(value, cls):
            return value
        try:
            return self.orm_class_loader.load_entity(str(value), sub_classes=(cls,))
        except MultipleObjectsError as exc:  # e.g. a label shared by two nodes of this type
            self.fail(str(exc), param, ctx)
        except (NotExistent, ValueError):
            pass
        # Not a node of this type: aiida's own message when it is no node at all, else say what it is.
        node = NodeParamType().convert(value, param, ctx)
        entry_point, class_name = DATA_TYPES[self.kind]
        hint = f"; see `verdi data xesml {self.kind} list`" if self.used_by == "command" else ""
        self.fail(f"node {node.pk} is a {type(node).__name__} ({node.node_type}) but this {self.used_by} needs an "
                  f"`{entry_point}` node ({class_name}){hint}", param, ctx)

    def _node_class(self):
        from aiida.plugins import DataFactory

        return DataFactory(DATA_TYPES[self.kind][0])


def data_argument(kind: str, *param_decls, **kwargs):
    """The ``PK`` argument of a command: a node of type ``kind`` by PK, UUID or LABEL (as ``datum``)."""
    return arguments.DATUM(*param_decls, metavar="PK", type=XesmlDataParamType(kind), **kwargs)


def data_option(kind: str, *param_decls, **kwargs):
    """An option taking a node of type ``kind`` by PK, UUID or LABEL."""
    return click.option(*param_decls, metavar="PK", type=XesmlDataParamType(kind, used_by="option"), **kwargs)
