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
from aiida.engine import ProcessHandlerReport, ToContext, WorkChain, process_handler, while_
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
PW_EXIT_CODES = PwCalculation.exit_codes


def _statuses(*labels: str) -> tuple[int, ...]:
    return tuple(PW_EXIT_CODES[label].status for label in labels)


# The pw.x failures each process handler of MdWorkChain acts on, by PwCalculation's exit-code labels.
ELECTRONIC_FAILURES = _statuses("ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED", "ERROR_IONIC_CONVERGENCE_NOT_REACHED",
                                "ERROR_IONIC_CYCLE_ELECTRONIC_CONVERGENCE_NOT_REACHED")
WALLTIME_FAILURES = _statuses("ERROR_OUT_OF_WALLTIME", "ERROR_OUT_OF_WALLTIME_INTERRUPTED",
                              "ERROR_SCHEDULER_OUT_OF_WALLTIME")
INTERRUPTED_FAILURES = _statuses("ERROR_OUTPUT_STDOUT_INCOMPLETE", "ERROR_OUTPUT_STDOUT_MISSING")


def pw_failure(calculation) -> int | None:
    """The exit status that describes how a segment's pw.x run failed, or None if it did not.

    That is the calculation's own exit status, except for one case: aiida-quantumespresso 5.1 checks
    the electronic convergence of scf, nscf, bands, relax and vc-relax runs only, so an ``md`` run
    that pw.x stopped on an unconverged SCF ("convergence NOT achieved", exit 2) finishes with 0. Its
    parser still logs the error under the exit code's label, so such a run counts as
    ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED.
    """
    if calculation.exit_status:
        return calculation.exit_status
    label = "ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED"
    if any(log.message == label for log in orm.Log.collection.get_logs_for(calculation)):
        return PW_EXIT_CODES[label].status
    return None


# mixing_beta is multiplied by this after a failed electronic convergence (handle_electronic_convergence_not_reached).
MIXING_REDUCTION = 0.7


class MdWorkChain(CleanWorkdirMixin, ProtocolMixin, WorkChain):
    """Born–Oppenheimer MD (``md``, or ``vc-md`` at a pressure) with pw.x, in restartable segments.

    The restart policy is a set of process handlers (``@process_handler``, named after the
    ``PwCalculation`` exit codes they handle, as in ``PwBaseWorkChain``), called on a failed segment's
    pw.x calculation in order of priority. Unlike ``BaseRestartWorkChain``, a segment that finished is
    not the end: the loop runs segments until ``nstep`` steps are done, and every handled failure
    continues from the failed run's last complete frame. The same failure twice in a row ends the MD
    (exit 401). Which handlers were considered for each failure, and what they returned, is recorded
    in the extra ``considered_handlers``, as ``BaseRestartWorkChain`` records it.
    """

    _considered_handlers_extra = "considered_handlers"

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
        self.ctx.failure = None  # exit status of the failure being handled (pw_failure)
        self.ctx.retry = False  # the next segment repeats a failed one from the same start
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
        if self.ctx.retry:
            # The same start as the failed run: with caching on, AiiDA would hand back that failure (a
            # calculation that finished with a non-zero exit status is a valid cache source).
            inputs.pw.metadata = {**inputs.pw.get("metadata", {}), "disable_cache": True}
            self.ctx.retry = False
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
    def _n_frames(calculation) -> int:
        """Frames in the trajectory that a segment's pw.x calculation parsed (0 without one)."""
        if calculation is None or "output_trajectory" not in calculation.outputs:
            return 0
        return len(calculation.outputs.output_trajectory.get_array("positions"))

    def inspect_segment(self):
        """Keep the frames of the finished segment and decide where the next one starts.

        A failed segment goes to the process handlers, with its last pw.x calculation (or the
        PwBaseWorkChain itself when it ran none).
        """
        workchain = self.ctx.segment
        calculations = [node for node in workchain.called if isinstance(node, orm.CalcJobNode)]
        calculation = calculations[-1] if calculations else None
        n_frames = self._n_frames(calculation)
        nstep, last = self._segment_nstep()

        failure = pw_failure(calculation) if calculation is not None else workchain.exit_status
        if calculation is not None and failure is None and n_frames == nstep:
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

        failed = calculation if calculation is not None else workchain
        status = self.ctx.failure = failure or 0  # 0: pw.x ended normally but with too few frames
        if self.ctx.last_failure == status:
            label = failed.exit_message or f"exit status {status}"
            advice = ("Reduce nstep_per_segment or raise max_wallclock_seconds." if status in WALLTIME_FAILURES else
                      "Check the electronic settings (mixing_beta, conv_thr, cutoffs) or the structure.")
            return self.exit_codes.ERROR_SEGMENT_FAILED_TWICE.format(
                status=status, label=label, done=self.ctx.steps_done, advice=advice)
        self.ctx.last_failure = status
        considered = self.node.base.extras.get(self._considered_handlers_extra, [])
        self.node.base.extras.set(self._considered_handlers_extra, [*considered, []])
        for _, handler in sorted(self._process_handlers(), key=lambda item: item[0], reverse=True):
            report = handler(self, failed)
            if report is not None and report.do_break:
                return report.exit_code if report.exit_code.status else None
        return None

    @classmethod
    def _process_handlers(cls) -> list:
        """(priority, handler) of every method decorated with ``process_handler`` and enabled."""
        handlers = []
        for name in dir(cls):
            method = getattr(cls, name)
            if getattr(method, "decorator", None) is process_handler and method.enabled:
                handlers.append((method.priority, method))
        return handlers

    def _continue_after(self, failed, reason: str) -> ProcessHandlerReport:
        """Start the next segment from the failed run's last complete frame (the last parsed frame, with
        its forces; velocities from md_continuation), or retry the segment from where it started when
        the run left fewer than two frames."""
        n_frames = self._n_frames(failed if isinstance(failed, orm.CalcJobNode) else None)
        if n_frames >= 2:
            kept = n_frames - 1
            self._keep(failed, kept)
            result = md_continuation(
                trajectory=failed.outputs.output_trajectory, timestep_fs=self.inputs.timestep_fs,
                frame=orm.Int(kept), metadata={"call_link_label": f"continuation_{len(self.ctx.segments)}"},
            )
            self.ctx.structure = result["structure"]
            self.ctx.velocities = result["velocities"]
            self.ctx.parent_folder = None
            self.ctx.steps_done += kept
            self.report(f"segment failed ({reason}) after {n_frames} frames: continuing from step "
                        f"{self.ctx.steps_done}")
        else:
            self.ctx.retry = True
            self.report(f"segment failed ({reason}) without a new frame: retrying it from step {self.ctx.steps_done}")
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=580)
    def handle_electronic_convergence_not_reached(self, node):
        """``ELECTRONIC_FAILURES``: the SCF of a step did not converge. Continue with ``mixing_beta`` lowered
        by ``MIXING_REDUCTION``."""
        if self.ctx.failure not in ELECTRONIC_FAILURES:
            return None
        self.ctx.mixing_scale *= MIXING_REDUCTION
        return self._continue_after(node, f"electronic convergence not reached; mixing_beta scaled by "
                                          f"{self.ctx.mixing_scale:.2f}")

    @process_handler(priority=570)
    def handle_out_of_walltime(self, node):
        """``WALLTIME_FAILURES``: pw.x or the scheduler stopped the run for time. Continue unchanged."""
        if self.ctx.failure not in WALLTIME_FAILURES:
            return None
        return self._continue_after(node, node.exit_message)

    @process_handler(priority=560)
    def handle_output_stdout_incomplete(self, node):
        """``INTERRUPTED_FAILURES``: the run was cut off (killed, a crashed node). Continue unchanged."""
        if self.ctx.failure not in INTERRUPTED_FAILURES:
            return None
        return self._continue_after(node, node.exit_message)

    @process_handler(priority=0)
    def handle_other_failure(self, node):
        """Any other failure (a parser error, too few frames, a failed PwBaseWorkChain without a run): continue
        unchanged (the same failure twice in a row ends the MD)."""
        return self._continue_after(node, node.exit_message or f"exit status {self.ctx.failure}")

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
