"""``xesml.compression``: AIMD of GeO2 over a ladder of pressures, with sampled snapshots.

For each pressure, in ascending order, a variable-cell step (``vc-relax`` at ``press``, or a short
``vc-md``) brings the cell to the pressure, then ``xesml.md`` runs equilibration plus production in
that cell (NVT). Snapshots are sampled from the production part. Each pressure starts from the
previous pressure's final structure, scaled towards the new pressure first (``prescale_cell``).
Pressures are PBE pressures of this set-up (pseudopotentials, cutoffs), not experimental ones.
"""

from __future__ import annotations

import math

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, while_
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin
from aiida_quantumespresso.workflows.pw.relax import PwRelaxWorkChain

from aiida_xesml.calculations.compression_table import compression_table
from aiida_xesml.calculations.rescale_to_pressure import rescale_to_pressure
from aiida_xesml.calculations.sample_snapshots import production_summary, sample_snapshots
from aiida_xesml.workflows.common import (
    KBAR_PER_GPA,
    PROTOCOL_DIR,
    CleanWorkdirMixin,
    check_pseudos,
    check_structure,
    final_relax_outputs,
    vc_relax_inputs,
)
from aiida_xesml.workflows.md import MdWorkChain

VARIABLE_CELL_METHODS = ("vc-relax", "vc-md")


def pressure_label(pressure_gpa: float) -> str:
    """Output namespace of a pressure: 0 -> 'p_0', 20.0 -> 'p_20', 12.5 -> 'p_12_5'."""
    return "p_" + f"{float(pressure_gpa):g}".replace(".", "_").replace("-", "m")


class CompressionWorkChain(CleanWorkdirMixin, ProtocolMixin, WorkChain):
    """Variable-cell step plus NVT MD at each pressure of an ascending ladder; snapshots per pressure."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("structure", valid_type=orm.StructureData, help="Starting structure (Å), e.g. from the builders.")
        spec.input("pressures", valid_type=orm.List,
                   help="Target pressures in GPa, ascending and >= 0. PBE pressures of this set-up, not experimental.")
        spec.input("temperature_k", valid_type=orm.Float, default=lambda: orm.Float(300.0), help="MD temperature (K).")
        spec.input("variable_cell", valid_type=orm.Str, default=lambda: orm.Str("vc-relax"),
                   help="How the cell reaches each pressure: 'vc-relax' (BFGS at press) or 'vc-md'.")
        spec.input("nstep_variable_cell", valid_type=orm.Int, default=lambda: orm.Int(20),
                   help="Steps of vc-md per pressure, when variable_cell is 'vc-md'.")
        spec.input("nstep_equilibration", valid_type=orm.Int, help="NVT steps discarded before sampling.")
        spec.input("nstep_production", valid_type=orm.Int, help="NVT steps from which snapshots are sampled.")
        spec.input("snapshot_stride", valid_type=orm.Int, default=lambda: orm.Int(0),
                   help="Sample every k-th production frame; 0 takes k from the energy autocorrelation time.")
        spec.input("cn_cutoff_angstrom", valid_type=orm.Float, default=lambda: orm.Float(2.3),
                   help="Ge-O distance (Å) within which O counts as a neighbour in the summaries.")
        spec.input("max_cell_corrections", valid_type=orm.Int, default=lambda: orm.Int(0),
                   help="At most this many times per pressure, when the MD's production pressure misses the target "
                        "by more than pressure_tolerance_gpa, scale its last frame isotropically towards the target "
                        "(rescale_to_pressure) and run the MD again. It corrects the thermal pressure and any "
                        "difference between the variable-cell step and the MD (k-points, cutoff). 0: never.")
        spec.input("pressure_tolerance_gpa", valid_type=orm.Float, default=lambda: orm.Float(2.0),
                   help="How far (GPa) the MD's production pressure may lie from the target without a correction.")
        spec.input("bulk_modulus_gpa", valid_type=orm.Float, default=lambda: orm.Float(40.0),
                   help="Bulk modulus (GPa) of the first correction at each pressure; later ones use the secant of "
                        "the MD runs at that pressure.")
        spec.input("prescale_cell", valid_type=orm.Bool, default=lambda: orm.Bool(True),
                   help="Before the variable-cell step of each pressure after the first, scale the previous pressure's "
                        "final MD frame isotropically towards the new target (rescale_to_pressure, link "
                        "prescale_p_<GPa>): from the previous MD's production pressure, with the secant bulk modulus "
                        "of the two previous pressures when there are two, else bulk_modulus_gpa; at most 10 % in "
                        "volume. The vc-relax then starts near its end, so its plane-wave basis (fixed at the start) "
                        "gives less Pulay stress and fewer steps and meta-convergence rounds.")
        spec.input("clean_workdir", valid_type=orm.Bool, default=lambda: orm.Bool(False))
        spec.expose_inputs(
            PwRelaxWorkChain, namespace="vc_relax", exclude=("clean_workdir", "structure"),
            namespace_options={"required": False, "populate_defaults": False,
                               "help": "Inputs of the vc-relax step (PwRelaxWorkChain, which repeats the vc-relax until "
                                       "the Pulay stress of the final SCF is gone); CELL.press is set per pressure."},
        )
        spec.expose_inputs(
            MdWorkChain, namespace="md",
            exclude=("structure", "nstep", "pressure_gpa", "initial_velocities", "temperature_k", "final_temperature_k",
                     "clean_workdir"),
            namespace_options={"help": "Inputs of xesml.md for the NVT run (and the vc-md step) at each pressure."},
        )
        spec.outline(
            cls.validate_inputs,
            cls.setup,
            while_(cls.has_next_pressure)(
                cls.run_variable_cell,
                cls.inspect_variable_cell,
                while_(cls.should_run_md)(
                    cls.run_md,
                    cls.inspect_md,
                ),
                cls.sample,
            ),
            cls.results,
        )
        # Per pressure, a namespace p_<GPa> (p_0, p_12_5, ...) holding `trajectory` (the production run),
        # `snapshots` (sampled frames with their frame indices) and `summary` (target and measured PBE
        # pressure, density, Ge-O distance, CN histogram).
        spec.outputs.dynamic = True
        spec.output("summary_table", valid_type=orm.Dict,
                    help="One row per pressure: target/measured PBE pressure (GPa), density (g/cm3), mean Ge-O (Å), "
                         "mean CN, snapshots and Ge sites.")
        spec.exit_code(301, "ERROR_INVALID_PRESSURES", message="Bad `pressures`: {reason}")
        spec.exit_code(302, "ERROR_INVALID_STRUCTURE", message="The structure is unusable: {reason}")
        spec.exit_code(303, "ERROR_MISSING_PSEUDO", message="Pseudopotentials incomplete: {reason}")
        spec.exit_code(304, "ERROR_INVALID_STEPS", message="Invalid MD step counts: {reason}")
        spec.exit_code(305, "ERROR_INVALID_VARIABLE_CELL", message="Invalid variable-cell step: {reason}")
        spec.exit_code(401, "ERROR_VARIABLE_CELL_FAILED",
                       message="The variable-cell step at {pressure} GPa failed (exit {status}); the pressures before "
                               "it are complete in the outputs.")
        spec.exit_code(402, "ERROR_MD_FAILED",
                       message="The MD at {pressure} GPa failed (exit {status}); the pressures before it are complete "
                               "in the outputs.")

    @classmethod
    def get_protocol_filepath(cls):
        return PROTOCOL_DIR / "compression.yaml"

    @classmethod
    def get_builder_from_protocol(cls, code, structure, pressures, protocol=None, overrides=None, pseudo_family=None,
                                  options=None, **_):
        """Return a builder for a compression over ``pressures`` (GPa) at the chosen protocol.

        :param code: the pw.x code or its label. ``pseudo_family`` defaults to the family that ``aiida-xesml
            setup`` installs. ``options`` are the ``metadata.options`` of every pw.x calculation.
        """
        from aiida_xesml.constants import PSEUDO_FAMILY

        try:
            values = [float(p) for p in pressures]
        except (TypeError, ValueError):
            raise ValueError(f"`pressures` must be numbers in GPa; got {pressures!r}") from None
        if not all(math.isfinite(p) for p in values):
            # AiiDA cannot store NaN or inf, and would fail half-way through storing the inputs.
            raise ValueError(f"`pressures` must be finite numbers in GPa; got {values}")
        inputs = cls.get_protocol_inputs(protocol, overrides)
        family = pseudo_family or PSEUDO_FAMILY
        builder = cls.get_builder()
        builder.structure = structure
        builder.pressures = orm.List(values)
        builder.temperature_k = orm.Float(inputs["temperature_k"])
        builder.variable_cell = orm.Str(inputs["variable_cell"])
        for key in ("nstep_variable_cell", "nstep_equilibration", "nstep_production", "snapshot_stride",
                    "max_cell_corrections"):
            builder[key] = orm.Int(inputs[key])
        for key in ("cn_cutoff_angstrom", "pressure_tolerance_gpa", "bulk_modulus_gpa"):
            builder[key] = orm.Float(inputs[key])
        builder.clean_workdir = orm.Bool(inputs.get("clean_workdir", False))
        builder.vc_relax = vc_relax_inputs(code, structure, inputs["vc_relax"], family, options,
                                           gamma_only=inputs.get("gamma_only", False))
        md = MdWorkChain.get_builder_from_protocol(code, structure, protocol=protocol, overrides=inputs["md"],
                                                   pseudo_family=family, options=options)
        for key in ("structure", "nstep", "temperature_k", "clean_workdir"):
            md.pop(key, None)
        builder.md = md._inputs(prune=True)
        return builder

    def validate_inputs(self):
        """Check the ladder, structure, pseudopotentials and step counts before anything runs."""
        pressures = self.inputs.pressures.get_list()
        if not pressures:
            return self.exit_codes.ERROR_INVALID_PRESSURES.format(reason="the list is empty; give at least one.")
        try:
            values = [float(p) for p in pressures]
        except (TypeError, ValueError):
            return self.exit_codes.ERROR_INVALID_PRESSURES.format(reason=f"not all numbers: {pressures}.")
        if any(p < 0 for p in values):
            return self.exit_codes.ERROR_INVALID_PRESSURES.format(
                reason=f"negative pressures {[p for p in values if p < 0]} GPa; compression needs p >= 0.")
        if any(b <= a for a, b in zip(values, values[1:])):
            return self.exit_codes.ERROR_INVALID_PRESSURES.format(
                reason=f"{values} is not strictly ascending; sort it and drop duplicates.")
        reason = check_structure(self.inputs.structure)
        if reason:
            return self.exit_codes.ERROR_INVALID_STRUCTURE.format(reason=reason)
        pseudos = self.inputs.md.md.pw.get("pseudos", {})
        reason = check_pseudos(self.inputs.structure, pseudos)
        if not reason and "vc_relax" in self.inputs and self.inputs.variable_cell.value == "vc-relax":
            reason = check_pseudos(self.inputs.structure, self.inputs.vc_relax.base_relax.pw.get("pseudos", {}))
        if reason:
            return self.exit_codes.ERROR_MISSING_PSEUDO.format(reason=reason)
        corrections = (self.inputs.max_cell_corrections.value, self.inputs.pressure_tolerance_gpa.value,
                       self.inputs.bulk_modulus_gpa.value)
        if corrections[0] < 0 or corrections[1] <= 0 or corrections[2] <= 0:
            return self.exit_codes.ERROR_INVALID_STEPS.format(
                reason=f"max_cell_corrections must be >= 0, pressure_tolerance_gpa and bulk_modulus_gpa > 0; got "
                       f"{corrections[0]}, {corrections[1]} GPa and {corrections[2]} GPa.")
        if self.inputs.nstep_equilibration.value < 0 or self.inputs.nstep_production.value < 1:
            return self.exit_codes.ERROR_INVALID_STEPS.format(
                reason=f"nstep_equilibration must be >= 0 and nstep_production >= 1; got "
                       f"{self.inputs.nstep_equilibration.value} and {self.inputs.nstep_production.value}.")
        method = self.inputs.variable_cell.value
        if method not in VARIABLE_CELL_METHODS:
            return self.exit_codes.ERROR_INVALID_VARIABLE_CELL.format(
                reason=f"variable_cell `{method}` is unknown; use one of {', '.join(VARIABLE_CELL_METHODS)}.")
        if method == "vc-relax" and "vc_relax" not in self.inputs:
            return self.exit_codes.ERROR_INVALID_VARIABLE_CELL.format(
                reason="variable_cell is 'vc-relax' but no `vc_relax` inputs were given (use get_builder_from_protocol).")
        return None

    def setup(self):
        self.ctx.pressures = [float(p) for p in self.inputs.pressures.get_list()]
        self.ctx.index = -1
        self.ctx.structure = self.inputs.structure
        self.ctx.summaries = {}
        self.ctx.accepted_mds = []  # the accepted MD of each finished pressure, in order

    def has_next_pressure(self):
        self.ctx.index += 1
        return self.ctx.index < len(self.ctx.pressures)

    @property
    def _pressure(self) -> float:
        return self.ctx.pressures[self.ctx.index]

    def run_variable_cell(self):
        """Bring the cell to the target pressure: vc-relax at press, or a short vc-md."""
        label = pressure_label(self._pressure)
        if self.inputs.prescale_cell.value and self.ctx.accepted_mds:
            self._prescale(label)
        if self.inputs.variable_cell.value == "vc-relax":
            inputs = AttributeDict(self.exposed_inputs(PwRelaxWorkChain, namespace="vc_relax"))
            parameters = inputs.base_relax.pw.parameters.get_dict()
            parameters.setdefault("CONTROL", {})["calculation"] = "vc-relax"
            parameters.setdefault("CELL", {})["press"] = self._pressure * KBAR_PER_GPA
            inputs.base_relax.pw.parameters = orm.Dict(parameters)
            inputs.structure = self.ctx.structure
            inputs.metadata.call_link_label = f"vc_relax_{label}"
            node = self.submit(PwRelaxWorkChain, **inputs)
        else:
            inputs = AttributeDict(self.exposed_inputs(MdWorkChain, namespace="md"))
            inputs.structure = self.ctx.structure
            inputs.nstep = self.inputs.nstep_variable_cell
            inputs.nstep_per_segment = self.inputs.nstep_variable_cell  # vc-md cannot be restarted (xesml.md)
            inputs.pressure_gpa = orm.Float(self._pressure)
            inputs.temperature_k = self.inputs.temperature_k
            inputs.metadata.call_link_label = f"vc_md_{label}"
            node = self.submit(MdWorkChain, **inputs)
        self.report(f"pressure {self._pressure:g} GPa ({self.ctx.index + 1}/{len(self.ctx.pressures)}): "
                    f"{self.inputs.variable_cell.value} <{node.pk}>")
        return ToContext(variable_cell=node)

    def _prescale(self, label: str):
        """Scale the previous pressure's last MD frame towards this pressure (see the ``prescale_cell`` input)."""
        kwargs = {}
        if len(self.ctx.accepted_mds) >= 2:  # a secant bulk modulus through the two previous pressures
            kwargs["previous_trajectory"] = self.ctx.accepted_mds[-2].outputs.trajectory
        rescaled = rescale_to_pressure(
            trajectory=self.ctx.accepted_mds[-1].outputs.trajectory, n_equilibration=self.inputs.nstep_equilibration,
            target_pressure_gpa=orm.Float(self._pressure), bulk_modulus_gpa=self.inputs.bulk_modulus_gpa,
            metadata={"call_link_label": f"prescale_{label}"}, **kwargs)
        self.ctx.structure = rescaled["structure"]
        scale = rescaled["correction"].get_dict()
        self.report(f"pressure {self._pressure:g} GPa: the previous MD measured {scale['measured_pressure_gpa']:.2f} "
                    f"GPa; its last frame scaled by {scale['volume_ratio']:.4f} in volume (B = "
                    f"{scale['bulk_modulus_gpa']:.0f} GPa, {scale['bulk_modulus_source']}) before the variable-cell step")

    def inspect_variable_cell(self):
        node = self.ctx.variable_cell
        # PwRelaxWorkChain exits 400 (ERROR_MAX_ITERATIONS_EXCEEDED) when its meta-convergence (Pulay stress of
        # the final SCF) is not reached in max_meta_convergence_iterations; the structure is still the best one
        # found, and the summary reports the final SCF's pressure, so it is kept with a report.
        if node.exit_status == PwRelaxWorkChain.exit_codes.ERROR_MAX_ITERATIONS_EXCEEDED.status:
            self.report(f"vc-relax at {self._pressure:g} GPa: Pulay-stress meta-convergence not reached; keeping the "
                        "last structure (see the summary's variable_cell_pressure_gpa)")
        elif not node.is_finished_ok:
            return self.exit_codes.ERROR_VARIABLE_CELL_FAILED.format(pressure=self._pressure, status=node.exit_status)
        self.ctx.variable_cell_outputs = final_relax_outputs(node)
        self.ctx.md_attempts = []  # the MD runs at this pressure, in order
        self.ctx.corrections = []  # rescale_to_pressure's `correction` outputs, in order
        self.ctx.md_accepted = False
        self.ctx.structure = self.ctx.variable_cell_outputs.get("output_structure") or self.ctx.variable_cell_outputs["structure"]
        return None

    def run_md(self):
        """NVT equilibration plus production in the cell of the variable-cell step (or of the last correction)."""
        inputs = AttributeDict(self.exposed_inputs(MdWorkChain, namespace="md"))
        inputs.structure = self.ctx.structure
        inputs.nstep = orm.Int(self.inputs.nstep_equilibration.value + self.inputs.nstep_production.value)
        inputs.temperature_k = self.inputs.temperature_k
        attempt = len(self.ctx.md_attempts)
        suffix = f"_corrected_{attempt}" if attempt else ""
        inputs.metadata.call_link_label = f"md_{pressure_label(self._pressure)}{suffix}"
        node = self.submit(MdWorkChain, **inputs)
        self.report(f"pressure {self._pressure:g} GPa: NVT MD <{node.pk}> ({inputs.nstep.value} steps)"
                    + (f", after cell correction {attempt}" if attempt else ""))
        return ToContext(md=node)

    def should_run_md(self):
        return not self.ctx.md_accepted

    def inspect_md(self):
        """Accept the MD if its production pressure is within the tolerance of the target (or no correction is
        left); otherwise scale its last frame towards the target for the next MD."""
        node = self.ctx.md
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_MD_FAILED.format(pressure=self._pressure, status=node.exit_status)
        trajectory = node.outputs.trajectory
        measured = production_summary(trajectory, self.inputs.nstep_equilibration.value)["pressure_gpa"]
        self.ctx.md_attempts.append(node)
        miss = measured - self._pressure
        corrections_done = len(self.ctx.md_attempts) - 1
        if abs(miss) <= self.inputs.pressure_tolerance_gpa.value or \
                corrections_done >= self.inputs.max_cell_corrections.value:
            self.ctx.md_accepted = True
            if abs(miss) > self.inputs.pressure_tolerance_gpa.value and self.inputs.max_cell_corrections.value > 0:
                self.report(f"pressure {self._pressure:g} GPa: the MD measured {measured:.2f} GPa after "
                            f"{corrections_done} cell correction(s), still more than "
                            f"{self.inputs.pressure_tolerance_gpa.value:g} GPa off; keeping it")
            return None
        kwargs = {"previous_trajectory": self.ctx.md_attempts[-2].outputs.trajectory} if corrections_done else {}
        rescaled = rescale_to_pressure(
            trajectory=trajectory, n_equilibration=self.inputs.nstep_equilibration,
            target_pressure_gpa=orm.Float(self._pressure), bulk_modulus_gpa=self.inputs.bulk_modulus_gpa,
            metadata={"call_link_label": f"rescale_{pressure_label(self._pressure)}_{corrections_done + 1}"}, **kwargs)
        self.ctx.structure = rescaled["structure"]
        self.ctx.corrections.append(rescaled["correction"])
        correction = rescaled["correction"].get_dict()
        self.report(f"pressure {self._pressure:g} GPa: the MD measured {measured:.2f} GPa; volume scaled by "
                    f"{correction['volume_ratio']:.4f} (B = {correction['bulk_modulus_gpa']:.0f} GPa, "
                    f"{correction['bulk_modulus_source']})")
        return None

    def sample(self):
        """Sample snapshots from the production part of the accepted MD and summarize this pressure."""
        node = self.ctx.md
        label = pressure_label(self._pressure)
        kwargs = {}
        if self.inputs.variable_cell.value == "vc-relax":
            kwargs["variable_cell_trajectory"] = self.ctx.variable_cell_outputs["output_trajectory"]
        for index, correction in enumerate(self.ctx.corrections):
            kwargs[f"correction_{index + 1}"] = correction
        sampled = sample_snapshots(
            trajectory=node.outputs.trajectory,
            n_equilibration=self.inputs.nstep_equilibration,
            stride=self.inputs.snapshot_stride,
            cn_cutoff_angstrom=self.inputs.cn_cutoff_angstrom,
            target_pressure_gpa=orm.Float(self._pressure),
            metadata={"call_link_label": f"sample_{label}"},
            **kwargs,
        )
        for key in ("trajectory", "snapshots", "summary"):
            self.out(f"{label}.{key}", sampled[key])
        self.ctx.summaries[label] = sampled["summary"]
        self.ctx.structure = node.outputs.structure
        self.ctx.accepted_mds.append(node)
        summary = sampled["summary"].get_dict()
        self.report(f"pressure {self._pressure:g} GPa done: measured {summary['pressure_gpa']:.2f} GPa, "
                    f"density {summary['density_g_cm3']:.3f} g/cm3, CN {summary['cn_mean']:.2f}, "
                    f"{summary['n_snapshots']} snapshots")
        return None

    def results(self):
        table = compression_table(metadata={"call_link_label": "summary_table"}, **self.ctx.summaries)
        self.out("summary_table", table)

