"""``xesml.projwfc``: aiida-quantumespresso's projwfc.x parser, with a damaged output as an exit code.

A projwfc.x stdout that is corrupted (bytes overwritten by a crash, a full disk or a broken file
system) can make the upstream parser raise (e.g. numpy's "inhomogeneous shape" ValueError): the
calculation is then *excepted*, with a traceback and no exit code a work chain can handle. This
parser turns such an exception into the calculation's own exit code ``ERROR_OUTPUT_STDOUT_PARSE``
(311) and logs what went wrong. A truncated stdout is already ``ERROR_OUTPUT_STDOUT_INCOMPLETE``
(312) upstream.
"""

from __future__ import annotations

from aiida_quantumespresso.parsers.projwfc import ProjwfcParser as UpstreamProjwfcParser

# What numpy and the upstream string handling raise on a damaged stdout.
PARSE_FAILURES = (ValueError, IndexError, KeyError, TypeError, AttributeError)


class ProjwfcParser(UpstreamProjwfcParser):
    """Parse a projwfc.x run; a stdout the upstream parser cannot read becomes exit code 311."""

    def parse(self, **kwargs):
        try:
            return super().parse(**kwargs)
        except PARSE_FAILURES as exc:
            self.logger.error(f"projwfc.x stdout could not be parsed, it is probably truncated or corrupted: "
                              f"{type(exc).__name__}: {exc}")
            return self.exit_codes.ERROR_OUTPUT_STDOUT_PARSE
