"""``ProjwfcCalculation`` of the plugin: projwfc.x for site spectra, with a lean repository.

aiida-quantumespresso's own ``ProjwfcCalculation`` keeps the whole stdout (which lists every projection,
rounded to three decimals: ~190 kB for a 48-atom cell) and its parser stores every orbital's
projections and PDOS as a ``ProjectionData`` (~1.6 MB there). A spectrum needs neither. This
subclass runs the same projwfc.x with the same inputs, but

- the job script moves the per-k projection listing out of ``aiida.out`` into
  ``aiida.projections.out``, retrieved only *temporarily*, as are ``atomic_proj.xml`` (full-precision
  projections, ~1.3 MB) and the total PDOS file (the per-orbital PDOS files are not retrieved);
- its parser (``xesml.projwfc``) reads the full-precision projections from ``atomic_proj.xml``,
  only *checks* the listing (every line well-formed, the eigenvalues agree), and stores the
  ``site_projections`` output: per-site p (and d) weights per k-point and band, eigenvalues and
  k weights (:mod:`aiida_xesml.parsers.projwfc`).

The repository keeps the stdout's header (the state list), the Löwdin charges and the timings.
Dropped compared with upstream: ``projections`` (ProjectionData: per orbital and magnetic number)
and ``bands`` (BandsData with k-point coordinates; the eigenvalues and k weights are in
``site_projections``). ``Dos`` and ``Pdos`` (totals) are kept. To get the dropped outputs, run
``quantumespresso.projwfc`` on the same parent folder.
"""

from __future__ import annotations

from aiida import orm
from aiida_quantumespresso.calculations.projwfc import ProjwfcCalculation as UpstreamProjwfcCalculation

ATOMIC_PROJ = "atomic_proj.xml"
PROJECTION_LISTING = "aiida.projections.out"


class ProjwfcCalculation(UpstreamProjwfcCalculation):
    """projwfc.x whose bulky outputs are read once and reduced to per-site arrays (see the module).

    It keeps upstream's class name, so its nodes' ``process_label`` is ``ProjwfcCalculation`` as
    before; its ``process_type`` names this class.
    """

    atomic_proj_path = UpstreamProjwfcCalculation.xml_path.with_name(ATOMIC_PROJ)
    # Only what the parser reads: not the per-orbital PDOS files (one per atom and l: 216 for a 54-atom
    # cell, each copied and then thrown away) nor the SCF's XML (the parser needs neither).
    _retrieve_temporary_list = [
        f"{UpstreamProjwfcCalculation._PREFIX}.pdos_tot",  # noqa: SLF001
        atomic_proj_path.as_posix(),
        PROJECTION_LISTING,
    ]
    _default_parser = "xesml.projwfc"

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.output("site_projections", valid_type=orm.ArrayData, required=False,
                    help="Per site (all atoms, structure order): `p_weights` and, when any d states were projected "
                         "on, `d_weights` (n_sites, n_k, n_bands) = Σ_m |<φ_lm|ψ_nk>|² (Löwdin, full precision); "
                         "`eigenvalues_ev` (n_k, n_bands) eV, absolute; `k_weights` (n_k,) (sum 2 without spin); "
                         "`kpoints` (n_k, 3) cartesian, 2π/alat. Attributes: n_electrons, fermi_energy_ev, "
                         "site_kinds, units.")
        spec.exit_code(360, "ERROR_ATOMIC_PROJ_MISSING",
                       message="projwfc.x wrote no atomic_proj.xml (or it was not retrieved): no projections.")
        spec.exit_code(361, "ERROR_ATOMIC_PROJ_INVALID",
                       message="atomic_proj.xml could not be read ({reason}): truncated or damaged.")
        spec.exit_code(362, "ERROR_PROJECTIONS_INCONSISTENT",
                       message="atomic_proj.xml and the stdout do not belong together: {reason}")

    def prepare_for_submission(self, folder):
        calcinfo = super().prepare_for_submission(folder)
        calcinfo.append_text = split_listing_script(self.inputs.metadata.options.output_filename)
        return calcinfo


def split_listing_script(stdout: str, listing: str = PROJECTION_LISTING) -> str:
    """Shell lines (POSIX awk) that move projwfc.x's per-k listing (from the first `` k = `` line up
    to ``Lowdin Charges:``) out of ``stdout`` into ``listing``; the rest stays in ``stdout``.

    Runs in the job script after projwfc.x, on any computer; a stdout without a listing is left whole.
    """
    return (
        "# aiida-xesml: keep the per-k projection listing out of the repository (it is retrieved temporarily)\n"
        f"if [ -f '{stdout}' ]; then\n"
        f"    awk -v listing='{listing}' -v rest='{stdout}.rest' "
        "'/^ k = /{inside=1} /^Lowdin Charges/{inside=0} {if (inside) print > listing; else print > rest}' "
        f"'{stdout}' && mv '{stdout}.rest' '{stdout}'\n"
        "fi\n"
    )
