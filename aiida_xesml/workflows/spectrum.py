"""``xesml.spectrum``: the Kβ emission spectrum of every emitting site of one snapshot.

One pw.x SCF and one projwfc.x run give the p-projected occupied DOS of every site at once
(SCIENCE.md §2). With ``alignment='potential'`` one pp.x run adds the local + Hartree potential at
each site, used as a cheap proxy of its core level.
"""

from __future__ import annotations

import math

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain
from aiida.plugins import CalculationFactory
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

from aiida_xesml.calculations.compute_spectra import compute_spectra
from aiida_xesml.calculations.projwfc import ProjwfcCalculation
from aiida_xesml.workflows.common import (
    PROTOCOL_DIR,
    CleanWorkdirMixin,
    check_pseudos,
    check_structure,
    failure_reason,
    pw_base_builder,
    resolve_options,
)

PpCalculation = CalculationFactory("quantumespresso.pp")

ALIGNMENTS = ("vbm", "potential", "semicore")
DEFAULT_PARAMETERS = {
    "emitter": "Ge",
    "fwhm": 1.0,
    "lorentzian_fwhm": 0.0,
    "alignment": "vbm",
    "grid": [-30.0, 5.0, 0.05],
    "potential_radius": 0.6,
    # eV; calibrated once so that experimental-cell rutile-type GeO2 (Debian PAW, fast protocol) has
    # E_ref = its VBM, which puts potential-aligned energies on the vbm scale (SCIENCE.md §2).
    "potential_offset": 105.16,
}


def spectrum_parameters(parameters: orm.Dict | None) -> dict:
    """DEFAULT_PARAMETERS updated with the user's ``parameters`` (energies in eV, radius in Å)."""
    merged = dict(DEFAULT_PARAMETERS)
    merged.update(parameters.get_dict() if parameters is not None else {})
    return merged


def check_spectrum_parameters(parameters: dict, structure: orm.StructureData | None = None) -> str | None:
    """Return what is wrong with spectrum ``parameters`` (and the structure's emitters), or None."""
    unknown = sorted(set(parameters) - set(DEFAULT_PARAMETERS))
    if unknown:
        return f"unknown parameter(s) {unknown}; allowed: {sorted(DEFAULT_PARAMETERS)}."
    if parameters["alignment"] not in ALIGNMENTS:
        return f"unknown alignment `{parameters['alignment']}`; use one of {', '.join(ALIGNMENTS)}."
    try:
        start, stop, step = (float(value) for value in parameters["grid"])
    except (TypeError, ValueError):
        return f"grid must be three numbers (start, stop, step) in eV; got {parameters['grid']!r}."
    if stop <= start or step <= 0:
        return f"grid (start, stop, step) = ({start}, {stop}, {step}) eV needs stop > start and step > 0."
    try:
        fwhm, lorentzian = float(parameters["fwhm"]), float(parameters["lorentzian_fwhm"])
        radius, offset = float(parameters["potential_radius"]), float(parameters["potential_offset"])
    except (TypeError, ValueError):
        return (f"fwhm, lorentzian_fwhm, potential_radius and potential_offset must be numbers; got "
                f"{parameters['fwhm']!r}, {parameters['lorentzian_fwhm']!r}, {parameters['potential_radius']!r} "
                f"and {parameters['potential_offset']!r}.")
    if not fwhm > 0 or not lorentzian >= 0:
        return f"fwhm must be > 0 and lorentzian_fwhm >= 0 (eV); got {fwhm} and {lorentzian}."
    if not radius > 0 or not math.isfinite(offset):
        return f"potential_radius must be > 0 (Å) and potential_offset finite (eV); got {radius} and {offset}."
    if not isinstance(parameters["emitter"], str):
        return f"emitter must be an element symbol such as 'Ge'; got {parameters['emitter']!r}."
    if structure is not None:
        symbols = structure.get_ase().get_chemical_symbols()
        if parameters["emitter"] not in symbols:
            return (f"the structure has no `{parameters['emitter']}` atom to emit (it has {sorted(set(symbols))}); "
                    "set parameters.emitter or pass another snapshot.")
    return None


class SpectrumWorkChain(CleanWorkdirMixin, ProtocolMixin, WorkChain):
    """SCF + projwfc.x (+ pp.x for the potential alignment) → Kβ spectra of all emitters of a snapshot."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("structure", valid_type=orm.StructureData, help="The snapshot (Å).")
        spec.input("parameters", valid_type=orm.Dict, required=False,
                   help="emitter ('Ge'), fwhm (eV, 1.0), lorentzian_fwhm (eV, 0), alignment ('vbm', 'potential' or "
                        "'semicore'), grid [start, stop, step] eV ([-30, 5, 0.05]), potential_radius (Å, 0.6).")
        spec.input("label", valid_type=orm.Float, required=False, help="A number attached to every row, e.g. GPa.")
        spec.input("clean_workdir", valid_type=orm.Bool, default=lambda: orm.Bool(False))
        spec.expose_inputs(PwBaseWorkChain, namespace="scf", exclude=("clean_workdir", "pw.structure"),
                           namespace_options={"help": "Inputs of the SCF (PwBaseWorkChain)."})
        spec.expose_inputs(ProjwfcCalculation, namespace="projwfc", exclude=("parent_folder",),
                           namespace_options={"help": "Inputs of projwfc.x (the plugin's ProjwfcCalculation: "
                                                      "full-precision per-site projections, a lean repository); "
                                                      "parent_folder is the SCF's."})
        spec.expose_inputs(PpCalculation, namespace="pp", exclude=("parent_folder", "parameters"),
                           namespace_options={"required": False, "populate_defaults": False,
                                              "help": "pp.x inputs (code, metadata), for alignment='potential'."})
        # Few steps: each is a checkpoint written by the daemon (inspections open the next step).
        spec.outline(cls.validate_inputs, cls.run_scf, cls.run_projections, cls.results)
        spec.output("spectra", valid_type=orm.ArrayData, help="XesSpectraData: one spectrum per emitting site.")
        spec.exit_code(302, "ERROR_INVALID_STRUCTURE", message="The structure is unusable: {reason}")
        spec.exit_code(303, "ERROR_MISSING_PSEUDO", message="Pseudopotentials incomplete: {reason}")
        spec.exit_code(304, "ERROR_MISSING_PP", message="alignment 'potential' needs pp.x: give the `pp.code` input.")
        spec.exit_code(305, "ERROR_SEMICORE_PSEUDO",
                       message="alignment 'semicore' needs a Ge pseudopotential with 3d in valence; {reason}")
        spec.exit_code(306, "ERROR_INVALID_PARAMETERS", message="Bad spectrum parameters: {reason}")
        spec.exit_code(401, "ERROR_SCF_FAILED", message="The SCF failed (exit {status}): no spectra for this snapshot.")
        spec.exit_code(402, "ERROR_PROJWFC_FAILED", message="projwfc.x failed: {reason}")
        spec.exit_code(403, "ERROR_PP_FAILED", message="pp.x failed: {reason}")
        spec.exit_code(404, "ERROR_SPECTRA_FAILED", message="Could not make spectra from the projections: {reason}")

    @classmethod
    def get_protocol_filepath(cls):
        return PROTOCOL_DIR / "spectrum.yaml"

    @classmethod
    def get_builder_from_protocol(cls, pw_code, projwfc_code, structure, protocol=None, overrides=None,
                                  pseudo_family=None, options=None, pp_code=None, **_):
        """Return a builder for one snapshot at the chosen protocol ('fast', 'balanced', 'stringent').

        :param pp_code: pp.x code, needed only for ``parameters.alignment = 'potential'``.
        """
        from aiida_xesml.constants import PSEUDO_FAMILY

        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.structure = structure
        scf = pw_base_builder(pw_code, structure, inputs["scf"], pseudo_family or PSEUDO_FAMILY, options,
                              gamma_only=inputs.get("gamma_only", False))
        builder.scf = scf._inputs(prune=True)
        builder.projwfc.code = orm.load_code(projwfc_code) if isinstance(projwfc_code, str) else projwfc_code
        builder.projwfc.parameters = orm.Dict(inputs["projwfc"]["parameters"])
        builder.projwfc.metadata.options = resolve_options(options)
        if pp_code is not None:
            builder.pp.code = orm.load_code(pp_code) if isinstance(pp_code, str) else pp_code
            builder.pp.metadata.options = resolve_options(options)
        builder.parameters = orm.Dict(inputs.get("parameters", {}))
        builder.clean_workdir = orm.Bool(inputs.get("clean_workdir", False))
        return builder

    def validate_inputs(self):
        """Check parameters, structure and pseudopotentials before anything runs."""
        self.ctx.parameters = spectrum_parameters(self.inputs.get("parameters"))
        reason = check_spectrum_parameters(self.ctx.parameters, self.inputs.structure)
        if reason:
            return self.exit_codes.ERROR_INVALID_PARAMETERS.format(reason=reason)
        reason = check_structure(self.inputs.structure)
        if reason:
            return self.exit_codes.ERROR_INVALID_STRUCTURE.format(reason=reason)
        pseudos = self.inputs.scf.pw.get("pseudos", {})
        reason = check_pseudos(self.inputs.structure, pseudos)
        if reason:
            return self.exit_codes.ERROR_MISSING_PSEUDO.format(reason=reason)
        alignment = self.ctx.parameters["alignment"]
        if alignment == "potential" and "pp" not in self.inputs:
            return self.exit_codes.ERROR_MISSING_PP
        if alignment == "semicore":
            emitter = self.ctx.parameters["emitter"]
            kinds = [kind.name for kind in self.inputs.structure.kinds if kind.symbols == (emitter,)]
            shallow = [name for name in kinds if not has_semicore_d(pseudos[name])]
            if shallow:
                return self.exit_codes.ERROR_SEMICORE_PSEUDO.format(
                    reason=f"the {emitter} pseudopotential(s) of kind(s) {shallow} have no 3d in valence. Run "
                           "`aiida-xesml setup --semicore` and use its family, or choose alignment 'vbm'.")
        return None

    def run_scf(self):
        inputs = AttributeDict(self.exposed_inputs(PwBaseWorkChain, namespace="scf"))
        inputs.pw.structure = self.inputs.structure
        parameters = inputs.pw.parameters.get_dict()
        parameters.setdefault("CONTROL", {})["calculation"] = "scf"
        inputs.pw.parameters = orm.Dict(parameters)
        inputs.metadata.call_link_label = "scf"
        node = self.submit(PwBaseWorkChain, **inputs)
        self.report(f"launched SCF <{node.pk}>")
        return ToContext(scf=node)

    def run_projections(self):
        """Check the SCF; then projwfc.x on it, and pp.x for the potential alignment, side by side."""
        if not self.ctx.scf.is_finished_ok:
            return self.exit_codes.ERROR_SCF_FAILED.format(status=self.ctx.scf.exit_status)
        remote = self.ctx.scf.outputs.remote_folder
        inputs = AttributeDict(self.exposed_inputs(ProjwfcCalculation, namespace="projwfc"))
        inputs.parent_folder = remote
        inputs.metadata.call_link_label = "projwfc"
        running = {"projwfc": self.submit(ProjwfcCalculation, **inputs)}
        if self.ctx.parameters["alignment"] == "potential":
            inputs = AttributeDict(self.exposed_inputs(PpCalculation, namespace="pp"))
            inputs.parent_folder = remote
            # plot_num 11: bare local + Hartree potential (Ry) on the full 3D FFT grid (iflag 3: a cube file).
            inputs.parameters = orm.Dict({"INPUTPP": {"plot_num": 11}, "PLOT": {"iflag": 3}})
            inputs.metadata.call_link_label = "pp"
            running["pp"] = self.submit(PpCalculation, **inputs)
        return ToContext(**running)

    def results(self):
        """Check projwfc.x (and pp.x); then the spectra from the per-site projections."""
        node = self.ctx.projwfc
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_PROJWFC_FAILED.format(reason=failure_reason(node))
        if "pp" in self.ctx and not self.ctx.pp.is_finished_ok:
            return self.exit_codes.ERROR_PP_FAILED.format(reason=failure_reason(self.ctx.pp))
        kwargs = {"potential": self.ctx.pp.outputs.output_data} if "pp" in self.ctx else {}
        if "label" in self.inputs:
            kwargs["label"] = self.inputs.label
        try:
            spectra = compute_spectra(
                site_projections=node.outputs.site_projections, structure=self.inputs.structure,
                parameters=orm.Dict(self.ctx.parameters), metadata={"call_link_label": "compute_spectra"}, **kwargs,
            )
        except ValueError as exc:
            return self.exit_codes.ERROR_SPECTRA_FAILED.format(reason=str(exc))
        self.out("spectra", spectra)
        self.report(f"{spectra.n_spectra} site spectra ({self.ctx.parameters['alignment']} alignment)")
        return None


def has_semicore_d(pseudo) -> bool:
    """Whether a p-block element's pseudopotential keeps the filled (n-1)d shell in valence, i.e. its
    z_valence counts every electron outside the previous noble-gas core (Ge: 14 with 3d, 4 without)."""
    from ase.data import atomic_numbers

    z = atomic_numbers[pseudo.element]
    noble_core = max(n for n in (2, 10, 18, 36, 54, 86) if n < z)
    return pseudo.z_valence >= z - noble_core
