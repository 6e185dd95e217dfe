"""``xesml.spectra``: spectra of every emitting site of many snapshots, launched all at once."""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, while_
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin

from aiida_xesml.calculations.merge_spectra import merge_spectra
from aiida_xesml.workflows.common import PROTOCOL_DIR, failure_reason, natural_key, snapshot_structures
from aiida_xesml.workflows.spectrum import SpectrumWorkChain, check_spectrum_parameters, spectrum_parameters


class SpectraWorkChain(ProtocolMixin, WorkChain):
    """Run ``xesml.spectrum`` for every snapshot in parallel and merge the site spectra into one node.

    A snapshot that fails after its restarts is reported and left out; the others are merged and the
    work chain exits with ERROR_SOME_SNAPSHOTS_FAILED, so finished spectra are never thrown away.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("snapshots", valid_type=orm.TrajectoryData, required=False,
                   help="Snapshots as the frames of a TrajectoryData (e.g. xesml.compression's `snapshots`).")
        spec.input_namespace("structures", valid_type=orm.StructureData, dynamic=True, required=False,
                             help="Snapshots as a namespace of structures (alternative to `snapshots`).")
        spec.input("labels", valid_type=orm.List, required=False,
                   help="One number per snapshot (e.g. the pressure in GPa), stored with every spectrum row.")
        spec.expose_inputs(SpectrumWorkChain, namespace="spectrum", exclude=("structure", "label", "clean_workdir"),
                           namespace_options={"help": "Inputs of xesml.spectrum, shared by all snapshots."})
        spec.input("clean_workdir", valid_type=orm.Bool, default=lambda: orm.Bool(False))
        spec.input("max_concurrent", valid_type=orm.Int, default=lambda: orm.Int(0),
                   help="0 (default): launch every snapshot at once, for a scheduler to queue. N > 0: keep N running, "
                        "launching the next as soon as the oldest finishes, for a computer without a queue "
                        "(core.direct on a workstation: e.g. 2 snapshots of 1 MPI process each on 2 cores, so that "
                        "one snapshot's AiiDA steps overlap the other's QE run).")
        spec.outline(cls.validate_inputs, cls.setup, while_(cls.has_pending)(cls.run_snapshots), cls.wait_all,
                     cls.results)
        spec.output("spectra", valid_type=orm.ArrayData,
                    help="XesSpectraData of all sites of all finished snapshots (snapshot index, site index, label).")
        spec.output_namespace("snapshot_spectra", valid_type=orm.ArrayData, dynamic=True,
                              help="Per-snapshot XesSpectraData, keyed `snapshot_<i>`.")
        spec.exit_code(301, "ERROR_NO_SNAPSHOTS", message="Give either `snapshots` or `structures` (not both, not none).")
        spec.exit_code(302, "ERROR_INVALID_LABELS", message="Invalid labels: {reason}")
        spec.exit_code(303, "ERROR_INVALID_SNAPSHOT", message="Snapshot {index}: {reason}")
        spec.exit_code(306, "ERROR_INVALID_PARAMETERS", message="Bad spectrum parameters: {reason}")
        spec.exit_code(410, "ERROR_SOME_SNAPSHOTS_FAILED",
                       message="{failed} of {total} snapshots failed ({which}); the spectra of the other {done} are in "
                               "the outputs.")
        spec.exit_code(411, "ERROR_ALL_SNAPSHOTS_FAILED", message="All {total} snapshots failed; no spectra.")

    @classmethod
    def get_protocol_filepath(cls):
        return PROTOCOL_DIR / "spectrum.yaml"

    @classmethod
    def get_builder_from_protocol(cls, pw_code, projwfc_code, snapshots, protocol=None, overrides=None, labels=None,
                                  pseudo_family=None, options=None, pp_code=None, **_):
        """Return a builder for ``snapshots`` (a TrajectoryData or a list of StructureData)."""
        builder = cls.get_builder()
        if isinstance(snapshots, orm.TrajectoryData):
            builder.snapshots = snapshots
            first = snapshots.get_step_structure(0)
        else:
            builder.structures = {f"snapshot_{index}": structure for index, structure in enumerate(snapshots)}
            first = snapshots[0]
        spectrum = SpectrumWorkChain.get_builder_from_protocol(
            pw_code, projwfc_code, first, protocol=protocol, overrides=overrides, pseudo_family=pseudo_family,
            options=options, pp_code=pp_code)
        for key in ("structure", "clean_workdir"):
            spectrum.pop(key, None)
        builder.spectrum = spectrum._inputs(prune=True)
        if labels is not None:
            builder.labels = orm.List([float(label) for label in labels])
        return builder

    def validate_inputs(self):
        has_trajectory, has_structures = "snapshots" in self.inputs, bool(self.inputs.get("structures"))
        if has_trajectory == has_structures:
            return self.exit_codes.ERROR_NO_SNAPSHOTS
        count = self.inputs.snapshots.numsteps if has_trajectory else len(self.inputs.structures)
        if "labels" in self.inputs and len(self.inputs.labels) != count:
            return self.exit_codes.ERROR_INVALID_LABELS.format(
                reason=f"{len(self.inputs.labels)} labels for {count} snapshots; give one label per snapshot.")
        parameters = spectrum_parameters(self.inputs.spectrum.get("parameters"))
        reason = check_spectrum_parameters(parameters)
        if reason:
            return self.exit_codes.ERROR_INVALID_PARAMETERS.format(reason=reason)
        if not has_trajectory:
            for index, key in enumerate(sorted(self.inputs.structures, key=natural_key)):
                reason = check_spectrum_parameters(parameters, self.inputs.structures[key])
                if reason:
                    return self.exit_codes.ERROR_INVALID_SNAPSHOT.format(index=index, reason=reason)
        else:
            reason = check_spectrum_parameters(parameters, self.inputs.snapshots.get_step_structure(0))
            if reason:
                return self.exit_codes.ERROR_INVALID_SNAPSHOT.format(index=0, reason=reason)
        return None

    def setup(self):
        frames = snapshot_structures(self.inputs)
        structures = [frames[key] for key in sorted(frames, key=natural_key)]
        self.ctx.structures = structures
        self.ctx.n_snapshots = len(structures)
        self.ctx.launched = []  # pks of the xesml.spectrum children, in snapshot order

    def has_pending(self):
        return len(self.ctx.launched) < self.ctx.n_snapshots

    def run_snapshots(self):
        """Launch xesml.spectrum children: all at once (the daemon and the scheduler run them in parallel),
        or until ``max_concurrent`` are running; then wait for the oldest that still runs (a sliding
        window, so that the snapshots' QE runs and AiiDA steps fall out of step and overlap)."""
        structures = self.ctx.structures
        labels = self.inputs.labels.get_list() if "labels" in self.inputs else [None] * len(structures)
        size = self.inputs.max_concurrent.value
        running = [pk for pk in self.ctx.launched if not orm.load_node(pk).is_terminated]
        first = len(self.ctx.launched)
        while len(self.ctx.launched) < len(structures) and (size <= 0 or len(running) < size):
            index = len(self.ctx.launched)
            inputs = AttributeDict(self.exposed_inputs(SpectrumWorkChain, namespace="spectrum"))
            inputs.structure = structures[index]
            if labels[index] is not None:
                inputs.label = orm.Float(labels[index])
            inputs.clean_workdir = self.inputs.clean_workdir
            inputs.metadata.call_link_label = f"snapshot_{index}"
            node = self.submit(SpectrumWorkChain, **inputs)
            self.ctx.launched.append(node.pk)
            running.append(node.pk)
        last = len(self.ctx.launched) - 1
        if first:
            done = sum(orm.load_node(pk).is_finished_ok for pk in self.ctx.launched[:first])
            self.report(f"snapshots done: {done}/{len(structures)} ok so far")
        if last >= first:
            self.report(f"launched xesml.spectrum for snapshots {first}..{last} of {len(structures)}")
        if self.has_pending():
            return ToContext(oldest_running=orm.load_node(running[0]))
        return None

    def wait_all(self):
        """Wait for every snapshot still running."""
        return ToContext(**{f"snapshot_{index}": orm.load_node(pk) for index, pk in enumerate(self.ctx.launched)})

    def results(self):
        finished, failed = {}, []
        for index in range(self.ctx.n_snapshots):
            node = self.ctx[f"snapshot_{index}"]
            if node.is_finished_ok:
                finished[f"snapshot_{index}"] = node.outputs.spectra
            else:
                failed.append(index)
                self.report(f"snapshot {index} <{node.pk}> failed ({failure_reason(node)})")
        if not finished:
            return self.exit_codes.ERROR_ALL_SNAPSHOTS_FAILED.format(total=self.ctx.n_snapshots)
        for key, spectra in finished.items():
            self.out(f"snapshot_spectra.{key}", spectra)
        merged = merge_spectra(metadata={"call_link_label": "merge_spectra"}, **finished)
        self.out("spectra", merged)
        self.report(f"{merged.n_spectra} site spectra from {len(finished)} of {self.ctx.n_snapshots} snapshots")
        if failed:
            return self.exit_codes.ERROR_SOME_SNAPSHOTS_FAILED.format(
                failed=len(failed), total=self.ctx.n_snapshots, which=", ".join(map(str, failed)), done=len(finished))
        return None
