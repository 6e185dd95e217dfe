"""Progress bars for the core's long loops: one helper, off unless asked for.

The core's long steps (featurizing many snapshots, the ensemble statistics, the ECA fit and its
multi-start inverse) take a ``verbose`` argument, as scikit-learn's estimators do, default False
so that tests and calcfunctions stay quiet. When it is on, :func:`progress` draws a ``tqdm`` bar
on standard error. A command that runs these loops in the foreground (through a calcfunction,
whose inputs must not change) turns every bar on at once with :func:`show_progress`::

    with show_progress(sys.stderr.isatty()):
        run(reconstruct, ...)
"""

from __future__ import annotations

import contextlib
import sys

from tqdm import tqdm

__all__ = ["progress", "show_progress"]

_shown = False  # set by show_progress: bars on whatever the callers' `verbose`


def progress(iterable=None, total: int | None = None, desc: str | None = None, enabled: bool = False,
             unit: str = "it"):
    """A ``tqdm`` bar over ``iterable`` on stderr when ``enabled`` (or inside :func:`show_progress`).

    Disabled, it writes nothing and costs nothing: iterating yields ``iterable`` unchanged and
    ``update`` / ``set_postfix_str`` / ``close`` do nothing. Use it as an iterator, or without an
    iterable and with ``total`` as a context manager that the loop advances with ``update(n)``.
    """
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=not (enabled or _shown), dynamic_ncols=True)


@contextlib.contextmanager
def show_progress(enabled: bool = True):
    """Within the block, every :func:`progress` bar of the core is shown when ``enabled`` is True."""
    global _shown
    previous, _shown = _shown, bool(enabled) or _shown
    try:
        yield
    finally:
        _shown = previous
