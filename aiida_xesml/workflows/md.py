"""``xesml.md``: Born–Oppenheimer MD with pw.x in restartable segments, one trajectory out.

aiida-quantumespresso has no MD work chain, and PwBaseWorkChain's restarts lose the trajectory.
This work chain runs MD in segments of at most ``nstep_per_segment`` steps through
PwBaseWorkChain. Each segment starts from the last good frame of the previous one with the
velocities carried over (derived from the last positions, since pw.x 6.7 prints none). A failed or
out-of-walltime segment is continued the same way, never from step 0. At the end, one calcfunction
stitches the segments into a single TrajectoryData with exactly ``nstep + 1`` frames.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, while_
from aiida_quantumespresso.calculations.pw import PwCalculation
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

from aiida_xesml.calculations.initial_velocities import initial_velocities
from aiida_xesml.calculations.md_continuation import md_continuation
from aiida_xesml.calculations.stitch_md_segments import stitch_md_segments
from aiida_xesml.ml.dynamics import fs_to_ry_time, velocities_to_ry_units
from aiida_xesml.workflows.common import (
    KBAR_PER_GPA,
    PROTOCOL_DIR,
    CleanWorkdirMixin,
    check_pseudos,
    check_structure,
    pw_base_builder,
)

# pw.x ion_temperature choices that give a canonical-like (NVT) run, plus no control at all.
THERMOSTATS = ("berendsen", "svr", "andersen", "rescaling", "rescale-v", "rescale-T", "not_controlled")
# Thermostats that drive the ions towards tempw, so that a ramp of tempw is followed (rescale-T ignores tempw).
RAMP_THERMOSTATS = ("berendsen", "svr", "andersen", "rescaling", "rescale-v")
# pw.x failures after which a segment is continued from its last good frame with mixing_beta reduced by
# MIXING_REDUCTION: the electronic convergence failed, alone or inside the ionic cycle (named by the labels of
# PwCalculation's exit codes, so that the numbers have one home). Any other failure is continued unchanged.
ELECTRONIC_FAILURES = tuple(PwCalculation.exit_codes[label].status for label in (
    "ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED", "ERROR_IONIC_CONVERGENCE_NOT_REACHED",
    "ERROR_IONIC_CYCLE_ELECTRONIC_CONVERGENCE_NOT_REACHED"))
OUT_OF_WALLTIME = PwCalculation.exit_codes.ERROR_OUT_OF_WALLTIME.status
MIXING_REDUCTION = 0.7


class MdWorkChain(CleanWorkdirMixin, ProtocolMixin, WorkChain):
    """Born–Oppenheimer MD (``md``, or ``vc-md`` at a pressure) with pw.x, in restartable segments."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(
            PwBaseWorkChain, namespace="md", exclude=("clean_workdir", "pw.structure", "pw.parent_folder"),
            namespace_options={"help": (
                "Inputs of the PwBaseWorkChain that runs each segment. This work chain sets CONTROL.calculation, "
                "nstep, dt, SYSTEM.nosym, the IONS thermostat and the velocities itself."
            )},
        )
        spec.input("structure", valid_type=orm.StructureData, help="Starting geometry (Å).")
        spec.input("nstep", valid_type=orm.Int, help="Total MD steps; the trajectory holds nstep + 1 frames.")
        spec.input("nstep_per_segment", valid_type=orm.Int, default=lambda: orm.Int(100),
                   help="At most this many steps per pw.x run (choose it to fit the scheduler's walltime).")
        spec.input("timestep_fs", valid_type=orm.Float, default=lambda: orm.Float(1.0), help="Time step in fs.")
        spec.input("temperature_k", valid_type=orm.Float, default=lambda: orm.Float(300.0),
                   help="Thermostat temperature (K); also the temperature of the random initial velocities.")
        spec.input("thermostat", valid_type=orm.Str, default=lambda: orm.Str("berendsen"),
                   help=f"pw.x ion_temperature: one of {', '.join(THERMOSTATS)}. NVT (berendsen) by default.")
        spec.input("thermostat_rise_steps", valid_type=orm.Int, default=lambda: orm.Int(10),
                   help="pw.x nraise: the thermostat's characteristic time in steps.")
        spec.input("final_temperature_k", valid_type=orm.Float, required=False,
                   help="A temperature ramp (K), e.g. a quench: the thermostat's target goes linearly from "
                        "temperature_k at step 0 to final_temperature_k at step nstep. Each segment runs at the "
                        "ramp's value at its last step, so nstep_per_segment sets how finely the ramp is stepped. "
                        "md in a fixed cell with a thermostat that follows tempw only.")
        spec.input("pressure_gpa", valid_type=orm.Float, required=False,
                   help="When given, run vc-md (Parrinello–Rahman) at this PBE pressure in GPa instead of md.")
        spec.input("initial_velocities", valid_type=orm.ArrayData, required=False,
                   help="Velocities (array `velocities`, Å/fs, one row per site) to start from, e.g. an earlier run's.")
        spec.input("velocity_seed", valid_type=orm.Int, default=lambda: orm.Int(0),
                   help="Seed of the Maxwell-Boltzmann starting velocities at temperature_k, drawn by the work chain "
                        "(calcfunction initial_velocities) so that a run is reproducible; pw.x would seed its own "
                        "from the clock. Used for md with a thermostat and no initial_velocities; vc-md keeps pw.x's "
                        "own start.")
        spec.input("clean_workdir", valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help="Clean the remote folders of all calculations at the end.")

        spec.outline(
            cls.validate_inputs,
            cls.setup,
            while_(cls.should_run_segment)(cls.run_segment, cls.inspect_segment),
            cls.results,
        )

        spec.output("trajectory", valid_type=orm.TrajectoryData,
                    help="All nstep + 1 frames: positions and cells (Å), times (fs), energy (eV), forces (eV/Å), "
                         "stress (GPa), temperature (K).")
        spec.output("structure", valid_type=orm.StructureData, help="The last frame.")
        spec.output("velocities", valid_type=orm.ArrayData, help="Velocities at the last frame (Å/fs).")
        spec.output("summary", valid_type=orm.Dict,
                    help="Averages: temperature (K), PBE pressure from the stress tensor (GPa), volume (Å³), density "
                         "(g/cm³).")

        spec.exit_code(301, "ERROR_INVALID_NSTEP", message="nstep and nstep_per_segment must be >= 1; got {value}.")
        spec.exit_code(302, "ERROR_INVALID_STRUCTURE", message="The structure is unusable: {reason}")
        spec.exit_code(303, "ERROR_MISSING_PSEUDO", message="Pseudopotentials incomplete: {reason}")
        spec.exit_code(304, "ERROR_INVALID_THERMOSTAT", message="Invalid thermostat settings: {reason}")
        spec.exit_code(306, "ERROR_INVALID_PARAMETERS", message="Invalid parameters: {reason}")
        spec.exit_code(401, "ERROR_SEGMENT_FAILED_TWICE",
                       message="Two MD segments in a row failed with pw.x exit status {status} ({label}); the "
                               "trajectory up to step {done} is kept in the called calculations. {advice}")
        spec.exit_code(402, "ERROR_STITCHING_FAILED", message="Could not stitch the segments: {reason}")

    @classmethod
    def get_protocol_filepath(cls):
        return PROTOCOL_DIR / "md.yaml"

    @classmethod
    def get_builder_from_protocol(cls, code, structure, protocol=None, overrides=None, pseudo_family=None,
                                  options=None, **_):
        """Return a builder for ``structure`` at the chosen protocol ('fast', 'balanced', 'stringent').

        :param code: the pw.x code (``quantumespresso.pw``) or its label.
        :param pseudo_family: label of an installed pseudopotential family; default the Debian family that
            ``aiida-xesml setup`` installs.
        :param overrides: nested dict merged over the protocol's inputs (same layout as the inputs).
        :param options: ``metadata.options`` for the pw.x calculations (resources, walltime).
        """
        from aiida_xesml.constants import PSEUDO_FAMILY

        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.md = pw_base_builder(code, structure, inputs["md"], pseudo_family or PSEUDO_FAMILY, options,
                                     gamma_only=inputs.get("gamma_only", False))
        builder.structure = structure
        for key in ("nstep", "nstep_per_segment", "thermostat_rise_steps"):
            builder[key] = orm.Int(inputs[key])
        for key in ("timestep_fs", "temperature_k"):
            builder[key] = orm.Float(inputs[key])
        builder.thermostat = orm.Str(inputs["thermostat"])
        builder.clean_workdir = orm.Bool(inputs.get("clean_workdir", False))
        for key in ("pressure_gpa", "final_temperature_k"):
            if inputs.get(key) is not None:
                builder[key] = orm.Float(inputs[key])
        return builder

    def validate_inputs(self):
        """Check everything that can be checked before pw.x runs; 3xx exit codes say what to change."""
        nstep, per_segment = self.inputs.nstep.value, self.inputs.nstep_per_segment.value
        if nstep < 1 or per_segment < 1:
            return self.exit_codes.ERROR_INVALID_NSTEP.format(value=f"nstep={nstep}, nstep_per_segment={per_segment}")
        reason = check_structure(self.inputs.structure)
        if reason:
            return self.exit_codes.ERROR_INVALID_STRUCTURE.format(reason=reason)
        if self.inputs.thermostat.value not in THERMOSTATS:
            return self.exit_codes.ERROR_INVALID_THERMOSTAT.format(
                reason=f"unknown thermostat `{self.inputs.thermostat.value}`; use one of {', '.join(THERMOSTATS)}.")
        if self.inputs.temperature_k.value < 0 or self.inputs.timestep_fs.value <= 0:
            return self.exit_codes.ERROR_INVALID_THERMOSTAT.format(
                reason=f"temperature_k must be >= 0 and timestep_fs > 0; got {self.inputs.temperature_k.value} K, "
                       f"{self.inputs.timestep_fs.value} fs.")
        reason = check_pseudos(self.inputs.structure, self.inputs.md.pw.get("pseudos", {}))
        if reason:
            return self.exit_codes.ERROR_MISSING_PSEUDO.format(reason=reason)
        if "pressure_gpa" in self.inputs and per_segment < nstep:
            return self.exit_codes.ERROR_INVALID_PARAMETERS.format(
                reason=f"vc-md runs in one segment: pw.x 6.7 cannot restart vc-md (the restarted run stops "
                       f"without output) and cell velocities are not printed; set nstep_per_segment >= nstep "
                       f"({nstep}) or use md in a fixed cell.")
        if "final_temperature_k" in self.inputs:
            final = self.inputs.final_temperature_k.value
            if final < 0 or "pressure_gpa" in self.inputs or self.inputs.thermostat.value not in RAMP_THERMOSTATS:
                return self.exit_codes.ERROR_INVALID_THERMOSTAT.format(
                    reason=f"final_temperature_k ({final} K) needs a value >= 0, md in a fixed cell (no "
                           f"pressure_gpa) and a thermostat that follows tempw ({', '.join(RAMP_THERMOSTATS)}); got "
                           f"thermostat {self.inputs.thermostat.value}" + (", pressure_gpa given." if "pressure_gpa" in
                                                                            self.inputs else "."))
        if self.inputs.velocity_seed.value < 0:
            return self.exit_codes.ERROR_INVALID_PARAMETERS.format(
                reason=f"velocity_seed must be an integer >= 0; got {self.inputs.velocity_seed.value}.")
        if "initial_velocities" in self.inputs:
            shape = self.inputs.initial_velocities.get_array("velocities").shape
            if shape != (len(self.inputs.structure.sites), 3):
                return self.exit_codes.ERROR_INVALID_PARAMETERS.format(
                    reason=f"initial_velocities has shape {shape}; expected ({len(self.inputs.structure.sites)}, 3).")
        return None

    def setup(self):
        """Initialize the context: steps done, segments and how many frames of each are kept."""
        self.ctx.steps_done = 0
        self.ctx.segments = []  # calculation nodes (PwCalculation) of the kept segments, in order
        self.ctx.n_kept = []  # frames of each segment's trajectory that enter the final trajectory
        self.ctx.structure = self.inputs.structure
        self.ctx.velocities = self.inputs.get("initial_velocities")
        if self.ctx.velocities is None and self._draws_velocities():
            self.ctx.velocities = initial_velocities(
                self.inputs.structure, self.inputs.temperature_k, self.inputs.velocity_seed,
                metadata={"call_link_label": "initial_velocities"})
        self.ctx.parent_folder = None
        self.ctx.mixing_scale = 1.0
        self.ctx.last_failure = None
        self.ctx.finished = False

    def _draws_velocities(self) -> bool:
        """Whether pw.x would start from random velocities (md with a thermostat at T > 0): then the work
        chain draws them itself, from velocity_seed."""
        return ("pressure_gpa" not in self.inputs and self.inputs.thermostat.value != "not_controlled"
                and self.inputs.temperature_k.value > 0)

    def should_run_segment(self):
        return not self.ctx.finished

    def _needs_bridge(self) -> bool:
        """pw.x 6.7 turns velocities given in the input into NaN with every rescaling thermostat except
        Andersen, so such a start runs one thermostat-free step first and then restarts natively."""
        return self.ctx.velocities is not None and self.inputs.thermostat.value not in ("not_controlled", "andersen")

    def _segment_nstep(self) -> tuple[int, bool]:
        """Steps to run in the next segment and whether it is the last one. The last segment runs one
        extra step so that the final frame, too, has its energy, forces and stress computed."""
        remaining = self.inputs.nstep.value - self.ctx.steps_done
        if self._needs_bridge() and remaining > 0:
            return 1, False
        per_segment = self.inputs.nstep_per_segment.value
        if remaining <= per_segment:
            return remaining + 1, True
        return per_segment, False

    def run_segment(self):
        """Launch the next segment through PwBaseWorkChain.

        After a segment that finished, pw.x restarts natively from its folder (positions, velocities and
        thermostat state exactly as they were). After a failure, it starts from the last good frame with
        velocities derived from the positions and forces.
        """
        inputs = AttributeDict(self.exposed_inputs(PwBaseWorkChain, namespace="md"))
        nstep, _ = self._segment_nstep()
        parameters = inputs.pw.parameters.get_dict()
        control = parameters.setdefault("CONTROL", {})
        control.update({"nstep": nstep, "dt": fs_to_ry_time(self.inputs.timestep_fs.value)})
        control.setdefault("tstress", True)
        control.setdefault("tprnfor", True)
        parameters.setdefault("SYSTEM", {})["nosym"] = True
        ions = parameters.setdefault("IONS", {})
        ions.update({
            "ion_temperature": "not_controlled" if self._needs_bridge() else self.inputs.thermostat.value,
            "tempw": self._thermostat_temperature(nstep),
            "nraise": self.inputs.thermostat_rise_steps.value,
        })
        if "pressure_gpa" in self.inputs:
            control["calculation"] = "vc-md"
            ions["ion_dynamics"] = "beeman"
            cell = parameters.setdefault("CELL", {})
            cell.setdefault("cell_dynamics", "pr")
            cell["press"] = self.inputs.pressure_gpa.value * KBAR_PER_GPA
        else:
            control["calculation"] = "md"
        if self.ctx.mixing_scale != 1.0:
            electrons = parameters.setdefault("ELECTRONS", {})
            electrons["mixing_beta"] = electrons.get("mixing_beta", 0.7) * self.ctx.mixing_scale
        settings = inputs.pw.settings.get_dict() if "settings" in inputs.pw else {}
        settings.pop("ATOMIC_VELOCITIES", None)
        ions.pop("ion_velocities", None)
        if self.ctx.velocities is not None:
            ions["ion_velocities"] = "from_input"
            settings["ATOMIC_VELOCITIES"] = velocities_to_ry_units(self.ctx.velocities.get_array("velocities")).tolist()
        elif self.ctx.parent_folder is not None:
            control["restart_mode"] = "restart"
            inputs.pw.parent_folder = self.ctx.parent_folder
        inputs.pw.parameters = orm.Dict(parameters)
        if settings:
            inputs.pw.settings = orm.Dict(settings)
        inputs.pw.structure = self.ctx.structure
        inputs.metadata.call_link_label = f"segment_{len(self.ctx.segments)}"
        node = self.submit(PwBaseWorkChain, **inputs)
        self.report(f"launched segment {len(self.ctx.segments)} <{node.pk}>: {nstep} steps from step "
                    f"{self.ctx.steps_done} of {self.inputs.nstep.value}")
        return ToContext(segment=node)

    def _thermostat_temperature(self, nstep: int) -> float:
        """The thermostat target (K) of a segment of ``nstep`` steps from steps_done: temperature_k, or
        the ramp to final_temperature_k evaluated at the segment's last step."""
        start = self.inputs.temperature_k.value
        if "final_temperature_k" not in self.inputs:
            return start
        total = self.inputs.nstep.value
        end = min(self.ctx.steps_done + nstep, total)
        return start + (self.inputs.final_temperature_k.value - start) * end / total

    @staticmethod
    def _inspect_calculation(calculation) -> tuple[int, int]:
        """Return (exit status, number of frames in its trajectory) of a segment's pw.x calculation."""
        outputs = calculation.outputs
        n_frames = len(outputs.output_trajectory.get_array("positions")) if "output_trajectory" in outputs else 0
        return calculation.exit_status, n_frames

    def inspect_segment(self):
        """Keep the frames of the finished segment and decide where the next one starts."""
        workchain = self.ctx.segment
        calculations = [node for node in workchain.called if isinstance(node, orm.CalcJobNode)]
        status, n_frames = self._inspect_calculation(calculations[-1]) if calculations else (workchain.exit_status, 0)
        nstep, last = self._segment_nstep()

        if status == 0 and n_frames == nstep:
            calculation = calculations[-1]
            self._keep(calculation, n_frames)
            self.ctx.last_failure = None
            self.ctx.mixing_scale = 1.0
            self.ctx.velocities = None
            if last:
                self.ctx.steps_done = self.inputs.nstep.value
                self.ctx.finished = True
                return None
            self.ctx.steps_done += n_frames
            self.ctx.structure = calculation.outputs.output_structure
            self.ctx.parent_folder = calculation.outputs.remote_folder
            return None

        label = (calculations[-1].exit_message if calculations else None) or f"exit status {status}"
        if self.ctx.last_failure == status:
            advice = ("Reduce nstep_per_segment or raise max_wallclock_seconds." if status == OUT_OF_WALLTIME else
                      "Check the electronic settings (mixing_beta, conv_thr, cutoffs) or the structure.")
            return self.exit_codes.ERROR_SEGMENT_FAILED_TWICE.format(
                status=status, label=label, done=self.ctx.steps_done, advice=advice)
        self.ctx.last_failure = status
        if status in ELECTRONIC_FAILURES:
            self.ctx.mixing_scale *= MIXING_REDUCTION
        if n_frames >= 2:
            # The last parsed frame (complete, with forces) becomes the next segment's first frame.
            calculation = calculations[-1]
            kept = n_frames - 1
            self._keep(calculation, kept)
            result = md_continuation(
                trajectory=calculation.outputs.output_trajectory, timestep_fs=self.inputs.timestep_fs,
                frame=orm.Int(kept), metadata={"call_link_label": f"continuation_{len(self.ctx.segments)}"},
            )
            self.ctx.structure = result["structure"]
            self.ctx.velocities = result["velocities"]
            self.ctx.parent_folder = None
            self.ctx.steps_done += kept
            self.report(f"segment failed ({label}) after {n_frames} frames: continuing from step {self.ctx.steps_done}")
        else:
            self.report(f"segment failed ({label}) without a new frame: retrying it from step {self.ctx.steps_done}")
        return None

    def _keep(self, calculation, n_kept):
        self.ctx.segments.append(calculation)
        self.ctx.n_kept.append(int(n_kept))

    def results(self):
        """Stitch the kept frames of all segments into the outputs."""
        segments = {}
        for index, calculation in enumerate(self.ctx.segments):
            segments[f"segment_{index}_trajectory"] = calculation.outputs.output_trajectory
            segments[f"segment_{index}_retrieved"] = calculation.outputs.retrieved
        try:
            outputs = stitch_md_segments(
                timestep_fs=self.inputs.timestep_fs, n_kept=orm.List(self.ctx.n_kept),
                metadata={"call_link_label": "stitch_segments"}, **segments,
            )
        except ValueError as exc:
            return self.exit_codes.ERROR_STITCHING_FAILED.format(reason=str(exc))
        trajectory = outputs["trajectory"]
        self.out("trajectory", trajectory)
        self.out("velocities", outputs["velocities"])
        self.out("summary", outputs["summary"])
        self.out("structure", outputs["structure"])
        summary = outputs["summary"].get_dict()
        self.report(f"MD done: {summary['nstep']} steps, <T> = {summary['temperature_mean_k']:.0f} K, "
                    f"<P> = {summary['pressure_gpa']:.2f} GPa, density {summary['density_g_cm3']:.3f} g/cm3")
        return None
