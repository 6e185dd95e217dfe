"""``xesml.projwfc``: the projwfc.x parser of the plugin.

For :class:`~aiida_xesml.calculations.projwfc.ProjwfcCalculation` (what ``xesml.spectrum`` runs)
it is lean: it reads the full-precision projections from ``atomic_proj.xml`` (retrieved temporarily),
reduces them to per-site p and d weights, and stores them with the eigenvalues and k weights as the
``site_projections`` ArrayData. The per-k listing of the stdout (three decimals, also temporary) is
*checked*, not parsed: every line must have projwfc.x's format and its eigenvalues must agree with
``atomic_proj.xml``. So a damaged output still fails with the exit codes upstream uses:

- stdout without ``JOB DONE`` (truncated): 312 ``ERROR_OUTPUT_STDOUT_INCOMPLETE``;
- a listing line that is not projwfc.x output (corrupted): 311 ``ERROR_OUTPUT_STDOUT_PARSE``;
- ``atomic_proj.xml`` missing: 360; unreadable (truncated, garbled): 361; not from the same run as
  the stdout (state or band counts, eigenvalues): 362.

For aiida-quantumespresso's own ``ProjwfcCalculation`` it is the upstream parser, with a stdout that
makes it raise (e.g. numpy's "inhomogeneous shape" ValueError on bytes overwritten by a crash) turned
into exit code 311 instead of an excepted calculation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from aiida import orm
from aiida_quantumespresso.parsers.projwfc import ProjwfcParser as UpstreamProjwfcParser
from aiida_quantumespresso.utils.mapping import get_logging_container

from aiida_xesml.ml.atomic_proj import check_projection_listing, read_atomic_proj, read_projwfc_states
from aiida_xesml.ml.spectra import project_sites

# What numpy and the upstream string handling raise on a damaged stdout.
PARSE_FAILURES = (ValueError, IndexError, KeyError, TypeError, AttributeError)
# Eigenvalues of the listing are printed with five decimals (eV).
LISTING_EIGENVALUE_TOLERANCE_EV = 2e-5
ANGULAR_MOMENTA = {"p_weights": 1, "d_weights": 2}


class ProjwfcParser(UpstreamProjwfcParser):
    """Parse a projwfc.x run (see the module docstring): lean for the plugin's ProjwfcCalculation, upstream otherwise."""

    def parse(self, **kwargs):
        if "site_projections" in self.node.process_class.spec().outputs:
            return self.parse_site_projections(**kwargs)
        try:
            return super().parse(**kwargs)
        except PARSE_FAILURES as exc:
            self.logger.error(f"projwfc.x stdout could not be parsed, it is probably truncated or corrupted: "
                              f"{type(exc).__name__}: {exc}")
            return self.exit_codes.ERROR_OUTPUT_STDOUT_PARSE

    def parse_site_projections(self, **kwargs):
        """Outputs ``output_parameters``, ``site_projections``, ``Dos`` and ``Pdos`` (see the module docstring)."""
        from aiida_xesml.calculations.projwfc import PROJECTION_LISTING

        logs = get_logging_container()
        stdout, parsed_data, logs = self.parse_stdout_from_retrieved(logs)
        self.out("output_parameters", orm.Dict(parsed_data))
        for name in ("ERROR_OUTPUT_STDOUT_MISSING", "ERROR_OUTPUT_STDOUT_READ", "ERROR_OUTPUT_STDOUT_INCOMPLETE"):
            if name in logs.error:
                return self.exit(self.exit_codes.get(name), logs)
        try:
            temporary = Path(kwargs["retrieved_temporary_folder"])
        except KeyError:
            return self.exit(self.exit_codes.ERROR_NO_RETRIEVED_TEMPORARY_FOLDER)

        atomic_proj = temporary / self.node.process_class.atomic_proj_path.name
        if not atomic_proj.is_file():
            return self.exit(self.exit_codes.ERROR_ATOMIC_PROJ_MISSING, logs)
        try:
            projections = read_atomic_proj(atomic_proj.read_bytes())
        except ValueError as exc:
            return self.exit(self.exit_codes.ERROR_ATOMIC_PROJ_INVALID.format(reason=str(exc)), logs)
        n_states, n_k, n_bands = projections.weights.shape

        listing = temporary / PROJECTION_LISTING
        try:
            printed = check_projection_listing(listing.read_text(errors="replace") if listing.is_file() else "")
        except ValueError as exc:
            self.logger.error(f"the projwfc.x stdout is damaged: {exc}")
            return self.exit(self.exit_codes.ERROR_OUTPUT_STDOUT_PARSE, logs)
        if printed.shape != (n_k, n_bands):
            return self.exit(self.exit_codes.ERROR_PROJECTIONS_INCONSISTENT.format(
                reason=f"the stdout lists {printed.shape[0]} k-points of {printed.shape[1]} bands, atomic_proj.xml "
                       f"{n_k} of {n_bands}"), logs)
        deviation = float(np.abs(printed - projections.eigenvalues_ev).max())
        if deviation > LISTING_EIGENVALUE_TOLERANCE_EV:
            return self.exit(self.exit_codes.ERROR_PROJECTIONS_INCONSISTENT.format(
                reason=f"eigenvalues differ by up to {deviation:.2g} eV"), logs)
        try:
            states = read_projwfc_states(stdout)
        except ValueError as exc:
            self.logger.error(f"the projwfc.x stdout is damaged: {exc}")
            return self.exit(self.exit_codes.ERROR_OUTPUT_STDOUT_PARSE, logs)
        if len(states.l) != n_states:
            return self.exit(self.exit_codes.ERROR_PROJECTIONS_INCONSISTENT.format(
                reason=f"the stdout lists {len(states.l)} states, atomic_proj.xml has {n_states}"), logs)

        self.out("site_projections", site_projections_node(projections, states))
        exit_code = self.parse_totals(temporary)
        return self.exit(exit_code, logs) if exit_code else self.exit(logs=logs)

    def parse_totals(self, temporary: Path):
        """``Dos`` and ``Pdos`` (XyData, states/eV on projwfc.x's energy grid) from the ``*pdos_tot`` file."""
        try:
            path = next(temporary.glob("*pdos_tot*"))
        except StopIteration:
            return self.exit_codes.ERROR_MISSING_PDOSTOT_FILE
        try:
            table = np.atleast_2d(np.loadtxt(path))
        except (OSError, ValueError):
            return self.exit_codes.ERROR_READING_PDOSTOT_FILE
        if table.shape[1] < 3:
            return self.exit_codes.ERROR_READING_PDOSTOT_FILE
        for link, name, column in (("Dos", "Dos", 1), ("Pdos", "Pdos", 2)):
            node = orm.XyData()
            node.set_x(table[:, 0], "Energy", "eV")
            node.set_y(table[:, column], name, "states/eV")
            self.out(link, node)
        return None


def site_projections_node(projections, states) -> orm.ArrayData:
    """The ``site_projections`` ArrayData of one run (see the plugin's ProjwfcCalculation, output help)."""
    n_sites = int(states.atom_index.max()) + 1
    node = orm.ArrayData()
    for name, l in ANGULAR_MOMENTA.items():
        if name == "p_weights" or np.any(states.l == l):
            node.set_array(name, project_sites(projections.weights, states.atom_index, states.l, n_sites, l=l))
    node.set_array("eigenvalues_ev", projections.eigenvalues_ev)
    node.set_array("k_weights", projections.k_weights)
    if projections.kpoints is not None:
        node.set_array("kpoints", projections.kpoints)
    kinds = [""] * n_sites
    for site, kind in zip(states.atom_index, states.kind):
        kinds[site] = kind
    node.base.attributes.set_many({
        "n_electrons": projections.n_electrons,
        "fermi_energy_ev": projections.fermi_energy_ev,
        "site_kinds": kinds,
        "source": "atomic_proj.xml",
        "units": {"eigenvalues_ev": "eV", "p_weights": "dimensionless (Löwdin)", "kpoints": "2pi/alat"},
    })
    return node
