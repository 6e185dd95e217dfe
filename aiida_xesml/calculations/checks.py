"""Input checks shared by the calcfunctions: the node type and arrays an input must have.

The calcfunctions accept ``orm.ArrayData`` (so that subclasses and plain arrays both link), which
lets a wrong node through the port check; these helpers turn that into a ValueError that names the
input and says which node it should be, before any output node is made.
"""

from __future__ import annotations

from aiida import orm


def require_type(node: orm.Data, cls: type, argument: str, made_by: str) -> None:
    """Raise a ValueError unless ``node`` is an instance of ``cls``.

    :param argument: the input's name, e.g. ``"eca"``.
    :param made_by: where such a node comes from, e.g. ``"the fit_eca calcfunction"``.
    """
    if not isinstance(node, cls):
        raise ValueError(f"input `{argument}` is a {type(node).__name__} (pk {node.pk}), not a {cls.__name__}; "
                         f"give the output of {made_by}")


def require_arrays(node: orm.ArrayData, names, argument: str, made_by: str) -> None:
    """Raise a ValueError naming the arrays of ``names`` that ``node`` lacks."""
    present = set(node.get_arraynames())
    missing = [name for name in names if name not in present]
    if missing:
        raise ValueError(f"input `{argument}` ({type(node).__name__}, pk {node.pk}) has no array(s) {missing}; "
                         f"it has {sorted(present)}. Give the output of {made_by}")
