"""``xesml.pipeline``: the whole recipe, structure and pressures in, reconstruction per pressure out.

``xesml.compression`` (AIMD over the pressure ladder, snapshots per pressure) → ``xesml.spectra``
(one SCF + projwfc.x per snapshot, a Kβ spectrum per Ge site, labelled with the target pressure in
GPa) → ``xesml.analysis`` (data set, emulator, ECA, reconstruction from each pressure's
ensemble-mean spectrum). The snapshot structures that the spectra and the descriptors use are the
outputs of ``extract_snapshots`` on the compression's sampled trajectories, so that from any
reconstruction the provenance graph leads back to the pw.x MD runs.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin

from aiida_xesml.calculations.extract_snapshots import extract_snapshots
from aiida_xesml.workflows.analysis import AnalysisWorkChain, check_settings
from aiida_xesml.workflows.common import PROTOCOL_DIR, CleanWorkdirMixin, failure_reason, natural_key
from aiida_xesml.workflows.compression import CompressionWorkChain, pressure_label
from aiida_xesml.workflows.spectra import SpectraWorkChain
from aiida_xesml.workflows.spectrum import check_spectrum_parameters, spectrum_parameters


class PipelineWorkChain(CleanWorkdirMixin, ProtocolMixin, WorkChain):
    """Compression → spectra → analysis, each a child work chain, in one provenance graph."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("clean_workdir", valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help="Clean the remote folders of all calculations when the pipeline ends.")
        spec.expose_inputs(CompressionWorkChain, namespace="compression", exclude=("clean_workdir",),
                           namespace_options={"help": "Inputs of xesml.compression (structure, pressures in GPa, MD)."})
        spec.expose_inputs(SpectraWorkChain, namespace="spectra",
                           exclude=("snapshots", "structures", "labels", "clean_workdir"),
                           namespace_options={"help": "Inputs of xesml.spectra; the snapshots come from the compression."})
        spec.expose_inputs(AnalysisWorkChain, namespace="analysis",
                           exclude=("spectra", "snapshots", "structures"),
                           namespace_options={"help": "Inputs of xesml.analysis; spectra and snapshots come from above."})
        spec.outline(
            cls.validate_inputs,
            cls.run_compression,
            cls.inspect_compression,
            cls.run_spectra,
            cls.inspect_spectra,
            cls.run_analysis,
            cls.results,
        )
        spec.expose_outputs(CompressionWorkChain, namespace="compression")
        spec.output("spectra", valid_type=orm.ArrayData, help="XesSpectraData of every Ge site of every snapshot.")
        spec.expose_outputs(AnalysisWorkChain, namespace="analysis")
        spec.exit_code(301, "ERROR_INVALID_ANALYSIS", message="Bad `analysis` inputs: {reason}")
        spec.exit_code(302, "ERROR_INVALID_SPECTRUM_PARAMETERS", message="Bad spectrum parameters: {reason}")
        spec.exit_code(401, "ERROR_COMPRESSION_FAILED",
                       message="xesml.compression failed ({reason}); its finished pressures are in its "
                               "outputs.")
        spec.exit_code(403, "ERROR_ANALYSIS_FAILED", message="xesml.analysis failed ({reason}).")
        spec.exit_code(404, "ERROR_SPECTRA_FAILED", message="xesml.spectra produced no spectra ({reason}).")
        spec.exit_code(410, "ERROR_SOME_SNAPSHOTS_FAILED",
                       message="The pipeline finished, but {message} The analysis used the other snapshots.")

    @classmethod
    def get_protocol_filepath(cls):
        return PROTOCOL_DIR / "pipeline.yaml"

    @classmethod
    def get_builder_from_protocol(cls, pw_code, projwfc_code, structure, pressures, protocol=None, overrides=None,
                                  pseudo_family=None, options=None, **_):
        """Return a builder for the whole recipe at ``protocol`` ('fast', 'balanced', 'stringent').

        ``overrides`` has one key per child: ``compression``, ``spectra`` (xesml.spectrum's protocol
        keys, plus ``max_concurrent``) and ``analysis``; the pipeline protocol's own values are the
        defaults. ``options``: metadata.options of every QE calculation.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        compression = CompressionWorkChain.get_builder_from_protocol(
            pw_code, structure, pressures, protocol=protocol, overrides=inputs.get("compression"),
            pseudo_family=pseudo_family, options=options)
        compression.pop("clean_workdir", None)
        builder.compression = compression._inputs(prune=True)
        spectra_overrides = dict(inputs.get("spectra") or {})
        max_concurrent = spectra_overrides.pop("max_concurrent", 0)
        spectra = SpectraWorkChain.get_builder_from_protocol(
            pw_code, projwfc_code, [structure], protocol=protocol, overrides=spectra_overrides,
            pseudo_family=pseudo_family, options=options)
        for key in ("structures", "snapshots", "labels", "clean_workdir"):
            spectra.pop(key, None)
        spectra.max_concurrent = orm.Int(max_concurrent)
        builder.spectra = spectra._inputs(prune=True)
        analysis = AnalysisWorkChain.get_builder_from_protocol(protocol=protocol, overrides=inputs.get("analysis"))
        builder.analysis = analysis._inputs(prune=True)
        builder.clean_workdir = orm.Bool(inputs.get("clean_workdir", False))
        return builder

    def validate_inputs(self):
        """Check the spectra and analysis settings before hours of MD are spent."""
        reason = check_settings(self.inputs.analysis)
        if reason:
            return self.exit_codes.ERROR_INVALID_ANALYSIS.format(reason=reason[1])
        parameters = spectrum_parameters(self.inputs.spectra.spectrum.get("parameters"))
        reason = check_spectrum_parameters(parameters, self.inputs.compression.structure)
        if reason:
            return self.exit_codes.ERROR_INVALID_SPECTRUM_PARAMETERS.format(reason=reason)
        return None

    def run_compression(self):
        inputs = AttributeDict(self.exposed_inputs(CompressionWorkChain, namespace="compression"))
        inputs.metadata.call_link_label = "compression"
        node = self.submit(CompressionWorkChain, **inputs)
        pressures = self.inputs.compression.pressures.get_list()
        self.report(f"step 1/3: xesml.compression <{node.pk}> over {pressures} GPa")
        return ToContext(compression=node)

    def inspect_compression(self):
        node = self.ctx.compression
        self.out_many(self.exposed_outputs(node, CompressionWorkChain, namespace="compression"))
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_COMPRESSION_FAILED.format(reason=failure_reason(node))
        return None

    def run_spectra(self):
        """One xesml.spectra over the snapshots of all pressures, each labelled with its target pressure."""
        structures, labels = {}, []
        for pressure in self.inputs.compression.pressures.get_list():
            label = pressure_label(pressure)
            trajectory = self.ctx.compression.outputs[label]["snapshots"]
            frames = extract_snapshots(trajectory, metadata={"call_link_label": f"snapshots_{label}"})
            for key in sorted(frames, key=natural_key):
                structures[f"snapshot_{len(structures)}"] = frames[key]
                labels.append(float(pressure))
        self.ctx.structures = structures
        inputs = AttributeDict(self.exposed_inputs(SpectraWorkChain, namespace="spectra"))
        inputs.structures = structures
        inputs.labels = orm.List(labels)
        inputs.metadata.call_link_label = "spectra"
        node = self.submit(SpectraWorkChain, **inputs)
        self.report(f"step 2/3: xesml.spectra <{node.pk}> for {len(structures)} snapshots")
        return ToContext(spectra=node)

    def inspect_spectra(self):
        node = self.ctx.spectra
        if "spectra" not in node.outputs:
            return self.exit_codes.ERROR_SPECTRA_FAILED.format(reason=failure_reason(node))
        if not node.is_finished_ok:
            self.ctx.spectra_warning = node.exit_message
            self.report(f"continuing with the finished snapshots: {node.exit_message}")
        self.out("spectra", node.outputs.spectra)
        return None

    def run_analysis(self):
        inputs = AttributeDict(self.exposed_inputs(AnalysisWorkChain, namespace="analysis"))
        inputs.spectra = self.ctx.spectra.outputs.spectra
        inputs.structures = self.ctx.structures
        inputs.metadata.call_link_label = "analysis"
        node = self.submit(AnalysisWorkChain, **inputs)
        self.report(f"step 3/3: xesml.analysis <{node.pk}> on {inputs.spectra.n_spectra} site spectra")
        return ToContext(analysis=node)

    def results(self):
        node = self.ctx.analysis
        self.out_many(self.exposed_outputs(node, AnalysisWorkChain, namespace="analysis"))
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_ANALYSIS_FAILED.format(reason=failure_reason(node))
        if "spectra_warning" in self.ctx:
            return self.exit_codes.ERROR_SOME_SNAPSHOTS_FAILED.format(message=self.ctx.spectra_warning)
        return None
