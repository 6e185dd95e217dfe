"""``xesml.amorphous``: a GeO2 glass by melt-quench with pw.x, re-relaxed at the production cutoff.

Three stages, each a child process:

1. **melt**: ``xesml.md`` at ``melt_temperature_k`` in the fixed starting cell, from seeded
   Maxwell–Boltzmann velocities (``velocity_seed``), for ``nstep_melt`` steps. The summary measures
   the mean squared displacement over its second half (it grows with time in a liquid).
2. **quench**: ``xesml.md`` from the melt's last frame and velocities, with the thermostat's target
   falling linearly from the melt temperature to ``final_temperature_k`` over ``nstep_quench`` steps
   (``final_temperature_k`` of xesml.md: one plateau per segment of ``md.nstep_per_segment`` steps).
   The cooling rate is (melt − final) / (nstep_quench × timestep).
3. **relax**: a ``vc-relax`` at ``pressure_gpa`` (PwRelaxWorkChain, repeated until the final SCF
   shows no Pulay stress) at the ``relax`` namespace's cutoff. The MD may use a cheaper cutoff than
   the production one; the glass is then re-relaxed at the production cutoff, and its cell finds
   its own density.

The melt and quench run in the cell of ``structure``: start from a cell near the glass density
(e.g. :func:`aiida_xesml.ml.structures.random_network` at 3.66 g/cm³), not from a dense crystal.

A melt-quench of 48 atoms takes hours on a workstation, longer than one sitting of a machine that
does not keep its processes. Stages finished earlier can therefore be given instead of run again:
``from_melt`` (the melt's trajectory, last frame and velocities, e.g. imported from an archive of
an earlier run) skips the melt, and ``from_quench`` as well skips the quench. The given nodes are
inputs of this run and reappear in its outputs, so the provenance of the glass reaches back through
them to the run that made them. A vc-relax of 48 atoms can take hours too: ``relax_from`` (with
``from_quench``), the last structure of a relax of that quench that was interrupted (the
``output_structure`` of a pw.x run killed when the machine stopped), continues it from there.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin
from aiida_quantumespresso.workflows.pw.relax import PwRelaxWorkChain

from aiida_xesml.calculations.glass_summary import glass_summary
from aiida_xesml.workflows.common import (
    KBAR_PER_GPA,
    PROTOCOL_DIR,
    CleanWorkdirMixin,
    check_pseudos,
    check_structure,
    failure_reason,
    final_relax_outputs,
    vc_relax_inputs,
)
from aiida_xesml.workflows.md import RAMP_THERMOSTATS, MdWorkChain

#: PwCalculation exit statuses of a vc-relax that stopped unconverged with a usable output structure: the
#: ionic cycle not converged, converged except in the final SCF, out of steps, interrupted, BFGS history reset.
UNCONVERGED_RELAX = (500, 501, 502, 503, 520)
#: xesml.md inputs that the melt and quench set themselves.
_MD_SET_HERE = ("structure", "nstep", "temperature_k", "final_temperature_k", "initial_velocities", "velocity_seed",
                "pressure_gpa", "clean_workdir")


class AmorphousWorkChain(CleanWorkdirMixin, ProtocolMixin, WorkChain):
    """Melt, quench and vc-relax a GeO2 cell into a glass; summarize its structure."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("structure", valid_type=orm.StructureData,
                   help="Starting cell (Å) near the glass density, e.g. a random network; the melt and quench "
                        "keep this cell.")
        spec.input("melt_temperature_k", valid_type=orm.Float, default=lambda: orm.Float(4000.0),
                   help="Temperature (K) of the melt and the start of the quench (GeO2 melts at 1388 K; a "
                        "small cell needs far more to diffuse within a picosecond).")
        spec.input("nstep_melt", valid_type=orm.Int, help="MD steps of the melt (>= 2).")
        spec.input("nstep_quench", valid_type=orm.Int, help="MD steps of the quench (>= 1).")
        spec.input("final_temperature_k", valid_type=orm.Float, default=lambda: orm.Float(300.0),
                   help="Temperature (K) at the end of the quench, below melt_temperature_k.")
        spec.input("pressure_gpa", valid_type=orm.Float, default=lambda: orm.Float(0.0),
                   help="PBE pressure (GPa) of the final vc-relax.")
        spec.input("velocity_seed", valid_type=orm.Int, default=lambda: orm.Int(0),
                   help="Seed of the melt's starting velocities; with it the whole run is reproducible.")
        spec.input("cn_cutoff_angstrom", valid_type=orm.Float, default=lambda: orm.Float(2.3),
                   help="Ge-O distance (Å) within which an O counts as a neighbour in the summary.")
        spec.input("clean_workdir", valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help="Clean the remote folders of all calculations at the end.")
        spec.input_namespace("from_melt", required=False, populate_defaults=False,
                             help="A finished melt of this structure to quench instead of melting again (outputs "
                                  "of an earlier xesml.amorphous's or xesml.md's run at melt_temperature_k).")
        spec.input("from_melt.trajectory", valid_type=orm.TrajectoryData, help="The melt's trajectory.")
        spec.input("from_melt.structure", valid_type=orm.StructureData, help="The melt's last frame (Å).")
        spec.input("from_melt.velocities", valid_type=orm.ArrayData,
                   help="Velocities at the melt's last frame (array `velocities`, Å/fs).")
        spec.input_namespace("from_quench", required=False, populate_defaults=False,
                             help="A finished quench of from_melt to relax instead of quenching again; needs "
                                  "from_melt (the summary reads the melt).")
        spec.input("from_quench.trajectory", valid_type=orm.TrajectoryData, help="The quench's trajectory.")
        spec.input("from_quench.structure", valid_type=orm.StructureData, help="The quench's last frame (Å).")
        spec.input("relax_from", valid_type=orm.StructureData, required=False,
                   help="Where the vc-relax starts instead of the quench's last frame: the last structure (Å) of "
                        "an interrupted vc-relax of from_quench.structure, to continue it; needs from_quench.")
        spec.expose_inputs(MdWorkChain, namespace="md", exclude=_MD_SET_HERE, namespace_options={
            "help": "Inputs of xesml.md for the melt and the quench (pw.x settings, time step, thermostat, "
                    "nstep_per_segment, which is also the length of each plateau of the quench)."})
        spec.expose_inputs(PwRelaxWorkChain, namespace="relax", exclude=("structure", "clean_workdir"),
                           namespace_options={"help": "Inputs of the final vc-relax at the production cutoff; "
                                                      "CELL.press is set from pressure_gpa."})
        spec.outline(
            cls.validate_inputs,
            if_(cls.should_run_melt)(
                cls.run_melt,
                cls.inspect_melt,
            ),
            if_(cls.should_run_quench)(
                cls.run_quench,
                cls.inspect_quench,
            ),
            cls.run_relax,
            cls.inspect_relax,
            cls.results,
        )
        spec.output("structure", valid_type=orm.StructureData, help="The glass: the quenched cell after the vc-relax (Å).")
        spec.output("quenched_structure", valid_type=orm.StructureData,
                    help="The last frame of the quench, before the vc-relax (Å).")
        spec.output("melt_trajectory", valid_type=orm.TrajectoryData, help="The melt (xesml.md's trajectory).")
        spec.output("quench_trajectory", valid_type=orm.TrajectoryData, help="The quench (xesml.md's trajectory).")
        spec.output("summary", valid_type=orm.Dict,
                    help="Density (g/cm³) against experiment, CN histogram, Ge-O distance (Å), O-Ge-O and Ge-O-Ge "
                         "angles (degrees), largest structure factor per atom, the melt's mean squared "
                         "displacement (Å²) and the quench's cooling rate (K/ps).")
        spec.output("distributions", valid_type=orm.ArrayData,
                    help="Pair distribution functions, Ge-O distances, CN per Ge, bond-angle histograms.")
        spec.exit_code(301, "ERROR_INVALID_SCHEDULE", message="The temperature schedule is unusable: {reason}")
        spec.exit_code(302, "ERROR_INVALID_STRUCTURE", message="The structure is unusable: {reason}")
        spec.exit_code(303, "ERROR_MISSING_PSEUDO", message="Pseudopotentials incomplete: {reason}")
        spec.exit_code(401, "ERROR_MELT_FAILED", message="The melt (xesml.md) failed: {reason}.")
        spec.exit_code(402, "ERROR_QUENCH_FAILED",
                       message="The quench (xesml.md) failed: {reason}. The melt is in the outputs.")
        spec.exit_code(403, "ERROR_RELAX_FAILED",
                       message="The vc-relax of the quenched cell failed: {reason}. The melt, the quench and the "
                               "quenched structure are in the outputs.")

    @classmethod
    def get_protocol_filepath(cls):
        return PROTOCOL_DIR / "amorphous.yaml"

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol=None, overrides=None, pseudo_family=None,
                                  options=None, **_):
        """Return a builder for a melt-quench of ``structure`` at the chosen protocol.

        :param code: the pw.x code or its label. ``pseudo_family`` defaults to the family that
            ``aiida-xesml setup`` installs; ``options`` are the ``metadata.options`` of every pw.x run.
        :param overrides: nested dict merged over the protocol (same layout: ``md`` goes to xesml.md's
            protocol of the same name as overrides, ``relax`` holds the vc-relax's inputs).
        """
        from aiida_xesml.constants import PSEUDO_FAMILY

        inputs = cls.get_protocol_inputs(protocol, overrides)
        family = pseudo_family or PSEUDO_FAMILY
        builder = cls.get_builder()
        builder.structure = structure
        for key in ("melt_temperature_k", "final_temperature_k", "pressure_gpa", "cn_cutoff_angstrom"):
            builder[key] = orm.Float(inputs[key])
        for key in ("nstep_melt", "nstep_quench", "velocity_seed"):
            builder[key] = orm.Int(inputs[key])
        builder.clean_workdir = orm.Bool(inputs.get("clean_workdir", False))
        md = MdWorkChain.get_builder_from_protocol(code, structure, protocol=protocol, overrides=inputs["md"],
                                                   pseudo_family=family, options=options)
        for key in _MD_SET_HERE:
            md.pop(key, None)
        builder.md = md._inputs(prune=True)
        builder.relax = vc_relax_inputs(code, structure, inputs["relax"], family, options,
                                        gamma_only=inputs.get("gamma_only", False))
        return builder

    def validate_inputs(self):
        """Check the schedule, structure and pseudopotentials before anything runs."""
        melt, final = self.inputs.melt_temperature_k.value, self.inputs.final_temperature_k.value
        n_melt, n_quench = self.inputs.nstep_melt.value, self.inputs.nstep_quench.value
        if n_melt < 2 or n_quench < 1:
            return self.exit_codes.ERROR_INVALID_SCHEDULE.format(
                reason=f"nstep_melt must be >= 2 and nstep_quench >= 1; got {n_melt} and {n_quench}.")
        if not 0 <= final < melt:
            return self.exit_codes.ERROR_INVALID_SCHEDULE.format(
                reason=f"need 0 <= final_temperature_k < melt_temperature_k; got {final:g} K and {melt:g} K.")
        if self.inputs.velocity_seed.value < 0:
            return self.exit_codes.ERROR_INVALID_SCHEDULE.format(
                reason=f"velocity_seed must be an integer >= 0; got {self.inputs.velocity_seed.value}.")
        thermostat = self.inputs.md.thermostat.value
        if thermostat not in RAMP_THERMOSTATS:  # the quench's ramp needs one; refuse it before the melt runs
            return self.exit_codes.ERROR_INVALID_SCHEDULE.format(
                reason=f"md.thermostat is {thermostat}; a melt and a quench need a thermostat that follows tempw "
                       f"({', '.join(RAMP_THERMOSTATS)}).")
        if "from_quench" in self.inputs and "from_melt" not in self.inputs:
            return self.exit_codes.ERROR_INVALID_SCHEDULE.format(
                reason="from_quench is given without from_melt; give the melt it was quenched from as well (the "
                       "summary reads the melt's trajectory).")
        if "relax_from" in self.inputs and "from_quench" not in self.inputs:
            return self.exit_codes.ERROR_INVALID_SCHEDULE.format(
                reason="relax_from is given without from_quench; give the quench whose relax it continues as well.")
        reason = check_structure(self.inputs.structure) or self._check_given_stages()
        if reason:
            return self.exit_codes.ERROR_INVALID_STRUCTURE.format(reason=reason)
        reason = (check_pseudos(self.inputs.structure, self.inputs.md.md.pw.get("pseudos", {}))
                  or check_pseudos(self.inputs.structure, self.inputs.relax.base_relax.pw.get("pseudos", {})))
        if reason:
            return self.exit_codes.ERROR_MISSING_PSEUDO.format(reason=reason)
        self._take_given_stages()
        return None

    def _check_given_stages(self) -> str | None:
        """Why a given melt or quench cannot continue this run (other atoms, another cell), or None."""
        atoms = self.inputs.structure.get_ase()
        for stage in ("from_melt", "from_quench"):
            if stage not in self.inputs:
                continue
            given = self.inputs[stage]
            frame = given.structure.get_ase()
            if frame.get_chemical_symbols() != atoms.get_chemical_symbols():
                return f"{stage}.structure has other atoms than structure ({frame.get_chemical_formula()} against " \
                       f"{atoms.get_chemical_formula()}, in order); give the stages of a run of this structure."
            if not np.allclose(frame.cell[:], atoms.cell[:], atol=1e-4):
                return f"{stage}.structure has another cell than structure (the melt and quench keep the cell); " \
                       f"give the stages of a run of this structure."
            if given.trajectory.numsites != len(atoms):
                return f"{stage}.trajectory has {given.trajectory.numsites} atoms; structure has {len(atoms)}."
        if "relax_from" in self.inputs:
            symbols = self.inputs.relax_from.get_ase().get_chemical_symbols()
            if symbols != atoms.get_chemical_symbols():
                return "relax_from has other atoms than structure (in order); give the last structure of a relax " \
                       "of this glass."
        if "from_melt" in self.inputs:
            shape = self.inputs.from_melt.velocities.get_array("velocities").shape
            if shape != (len(atoms), 3):
                return f"from_melt.velocities has shape {shape}; expected ({len(atoms)}, 3)."
        return None

    def _take_given_stages(self):
        """Put the given melt and quench where the run's own would go: the context and the outputs."""
        if "from_melt" in self.inputs:
            self.ctx.melt_outputs = AttributeDict(self.inputs.from_melt)
            self.out("melt_trajectory", self.inputs.from_melt.trajectory)
        if "from_quench" in self.inputs:
            self.ctx.quench_outputs = AttributeDict(self.inputs.from_quench)
            self.out("quench_trajectory", self.inputs.from_quench.trajectory)
            self.out("quenched_structure", self.inputs.from_quench.structure)

    def should_run_melt(self) -> bool:
        if "from_melt" in self.inputs:
            self.report(f"melt given: trajectory <{self.inputs.from_melt.trajectory.pk}>, not run again")
            return False
        return True

    def should_run_quench(self) -> bool:
        if "from_quench" in self.inputs:
            self.report(f"quench given: trajectory <{self.inputs.from_quench.trajectory.pk}>, not run again")
            return False
        return True

    def _md_inputs(self, structure, label: str) -> AttributeDict:
        inputs = AttributeDict(self.exposed_inputs(MdWorkChain, namespace="md"))
        inputs.structure = structure
        inputs.metadata.call_link_label = label
        return inputs

    def run_melt(self):
        """MD at the melt temperature in the starting cell, from seeded velocities."""
        inputs = self._md_inputs(self.inputs.structure, "melt")
        inputs.nstep = self.inputs.nstep_melt
        inputs.temperature_k = self.inputs.melt_temperature_k
        inputs.velocity_seed = self.inputs.velocity_seed
        node = self.submit(MdWorkChain, **inputs)
        self.report(f"melt <{node.pk}>: {inputs.nstep.value} steps at {inputs.temperature_k.value:g} K")
        return ToContext(melt=node)

    def inspect_melt(self):
        if not self.ctx.melt.is_finished_ok:
            return self.exit_codes.ERROR_MELT_FAILED.format(reason=failure_reason(self.ctx.melt))
        outputs = self.ctx.melt.outputs
        self.ctx.melt_outputs = AttributeDict(
            {"trajectory": outputs.trajectory, "structure": outputs.structure, "velocities": outputs.velocities})
        self.out("melt_trajectory", self.ctx.melt.outputs.trajectory)
        return None

    def run_quench(self):
        """MD from the melt's last frame and velocities, cooling linearly to final_temperature_k."""
        melt = self.ctx.melt_outputs
        inputs = self._md_inputs(melt.structure, "quench")
        inputs.nstep = self.inputs.nstep_quench
        inputs.temperature_k = self.inputs.melt_temperature_k
        inputs.final_temperature_k = self.inputs.final_temperature_k
        inputs.initial_velocities = melt.velocities
        node = self.submit(MdWorkChain, **inputs)
        self.report(f"quench <{node.pk}>: {inputs.nstep.value} steps from {inputs.temperature_k.value:g} K to "
                    f"{inputs.final_temperature_k.value:g} K")
        return ToContext(quench=node)

    def inspect_quench(self):
        if not self.ctx.quench.is_finished_ok:
            return self.exit_codes.ERROR_QUENCH_FAILED.format(reason=failure_reason(self.ctx.quench))
        outputs = self.ctx.quench.outputs
        self.ctx.quench_outputs = AttributeDict({"trajectory": outputs.trajectory, "structure": outputs.structure})
        self.out("quench_trajectory", self.ctx.quench.outputs.trajectory)
        self.out("quenched_structure", self.ctx.quench.outputs.structure)
        return None

    def run_relax(self):
        """vc-relax the quenched cell at pressure_gpa, at the relax namespace's (production) cutoff."""
        inputs = AttributeDict(self.exposed_inputs(PwRelaxWorkChain, namespace="relax"))
        parameters = inputs.base_relax.pw.parameters.get_dict()
        parameters.setdefault("CONTROL", {})["calculation"] = "vc-relax"
        parameters.setdefault("CELL", {})["press"] = self.inputs.pressure_gpa.value * KBAR_PER_GPA
        inputs.base_relax.pw.parameters = orm.Dict(parameters)
        inputs.structure = self.inputs.get("relax_from", self.ctx.quench_outputs.structure)
        inputs.metadata.call_link_label = "relax"
        node = self.submit(PwRelaxWorkChain, **inputs)
        start = f"continued from <{inputs.structure.pk}>" if "relax_from" in self.inputs else "of the quenched cell"
        self.report(f"vc-relax <{node.pk}> {start} at {self.inputs.pressure_gpa.value:g} GPa")
        return ToContext(relax=node)

    def inspect_relax(self):
        """Keep the relaxed glass. A vc-relax that ran out of steps (or whose Pulay-stress repetition did not
        settle) still holds a lower-energy structure than the quench: it is kept, with a report and
        ``relax_converged = False`` in the summary, rather than losing the melt-quench."""
        node = self.ctx.relax
        self.ctx.relax_converged = node.is_finished_ok
        if node.is_finished_ok:
            outputs = final_relax_outputs(node)
            self.ctx.structure = outputs.get("output_structure") or outputs["structure"]
            return None
        last = max((calc for calc in node.called_descendants if calc.process_label == "PwCalculation"),
                   key=lambda calc: calc.ctime, default=None)
        if node.exit_status == PwRelaxWorkChain.exit_codes.ERROR_MAX_ITERATIONS_EXCEEDED.status:
            self.ctx.structure = final_relax_outputs(node).get("output_structure")
        elif last is not None and last.exit_status in UNCONVERGED_RELAX and "output_structure" in last.outputs:
            self.ctx.structure = last.outputs.output_structure
        else:
            return self.exit_codes.ERROR_RELAX_FAILED.format(reason=failure_reason(node))
        self.report(f"vc-relax not converged ({failure_reason(last or node)}); keeping its last structure")
        return None

    def results(self):
        outputs = glass_summary(structure=self.ctx.structure, melt_trajectory=self.ctx.melt_outputs.trajectory,
                                quench_trajectory=self.ctx.quench_outputs.trajectory,
                                cn_cutoff_angstrom=self.inputs.cn_cutoff_angstrom,
                                relax_converged=orm.Bool(self.ctx.relax_converged),
                                metadata={"call_link_label": "summary"})
        self.out("structure", self.ctx.structure)
        self.out("summary", outputs["summary"])
        self.out("distributions", outputs["distributions"])
        summary = outputs["summary"].get_dict()
        self.report(f"glass: density {summary['density_g_cm3']:.3f} g/cm3, CN {summary['cn_mean']:.2f}, "
                    f"melt MSD Ge {summary['melt_hold_msd_ge_A2']:.2f} A^2, largest S(q)/N "
                    f"{summary['max_structure_factor_per_atom']:.3f}")
        return None
