"""``xesml.analysis``: snapshots and their spectra → data set → emulator → ECA → reconstruction.

Every step is one calcfunction (``featurize``, ``compute_moments``, ``build_dataset``,
``train_emulator``, ``fit_eca``, ``reconstruct``), so each arrow of SCIENCE.md §3–6 is one node in
the provenance graph. The spectra and structures may come from ``xesml.spectra`` or from anywhere
else: an XesSpectraData whose rows carry ``snapshot_index`` (the ``i`` of ``snapshot_<i>``) and
``site_index`` (the emitter's atom index in that snapshot).
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import WorkChain, if_
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin

from aiida_xesml.calculations.build_dataset import build_dataset
from aiida_xesml.calculations.compute_moments import (
    MOMENT_KEYS,
    compute_moments,
    moment_windows,
)
from aiida_xesml.calculations.featurize import (
    DEFAULT_DESCRIPTOR,
    descriptor_of,
    descriptor_settings,
    featurize,
)
from aiida_xesml.calculations.fit_eca import DEFAULT_ECA, eca_settings, fit_eca
from aiida_xesml.calculations.reconstruct import reconstruct, reconstruction_settings
from aiida_xesml.calculations.train_emulator import train_emulator, training_settings
from aiida_xesml.data.emulator import EmulatorData
from aiida_xesml.data.spectra import XesSpectraData
from aiida_xesml.ml.dataset import check_min_per_label
from aiida_xesml.ml.descriptors import n_features
from aiida_xesml.ml.validation import check_known_keys
from aiida_xesml.workflows.common import PROTOCOL_DIR, natural_key, snapshot_structures


class AnalysisWorkChain(ProtocolMixin, WorkChain):
    """Learn the spectrum ↔ structure map of a set of snapshots and read structure back from spectra."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("spectra", valid_type=XesSpectraData,
                   help="Site spectra; rows carry snapshot_index (the i of structures.snapshot_<i>), site_index and "
                        "label (e.g. the pressure in GPa).")
        spec.input("snapshots", valid_type=orm.TrajectoryData, required=False,
                   help="The snapshots as frames of a trajectory (frame i is snapshot i).")
        spec.input_namespace("structures", valid_type=orm.StructureData, dynamic=True, required=False,
                             help="The snapshots as structures `snapshot_<i>` (alternative to `snapshots`).")
        spec.input("descriptor_parameters", valid_type=orm.Dict, default=lambda: orm.Dict(DEFAULT_DESCRIPTOR),
                   help="Local Coulomb matrix: n_atoms (N, 20), species of the emitter ('Ge'), ordering ('species': "
                        "the centre, its nearest O, then its nearest Ge; or 'distance', the published mixed one) and "
                        "species_counts (default 12 O + 7 Ge for N = 20).")
        spec.input("moment_parameters", valid_type=orm.Dict, default=lambda: orm.Dict({}),
                   help="windows: name -> [lo, hi] eV (default Kβ″ [-24, -13], Kβ2 [-12, 2]).")
        spec.input("training_parameters", valid_type=orm.Dict, default=lambda: orm.Dict({}),
                   help="Emulator training: split ('snapshot', 'label' or 'site'), test_fraction, test_labels, seed, "
                        "cv_folds, network_grid, ridge_grid, max_iter, n_members (the ensemble), n_jobs, feature_sets.")
        spec.input("min_samples_per_label", valid_type=orm.Int, default=lambda: orm.Int(4),
                   help="Every label needs at least this many site spectra to be trained on and held out.")
        spec.input("emulator", valid_type=EmulatorData, required=False,
                   help="A trained emulator to use instead of training one (same descriptor and windows).")
        spec.input("eca_parameters", valid_type=orm.Dict, default=lambda: orm.Dict(DEFAULT_ECA),
                   help="ECA: n_components (3) and seed (0).")
        spec.input("reconstruction_parameters", valid_type=orm.Dict, default=lambda: orm.Dict({}),
                   help="Reconstruction: method ('population', 'single_point' or 'linear'), cutoff_angstrom (2.3), "
                        "width_angstrom (0.1), moment_orders, prior, n_starts, held_out (True), range_tolerance (0.1; "
                        "None: no CN range).")
        spec.input("target_spectra", valid_type=XesSpectraData, required=False,
                   help="Further spectra (e.g. measured ones, on the same energy reference) to reconstruct, row by row.")
        spec.outline(
            cls.validate_inputs,
            cls.make_dataset,
            if_(cls.should_train)(cls.train),
            cls.analyse,
        )
        spec.output("descriptors", valid_type=orm.ArrayData, help="Local Coulomb matrices per (snapshot, site).")
        spec.output("moments", valid_type=orm.ArrayData, help="Moments per spectrum row (M0 states, M1/M2 eV, M3 1).")
        spec.output("dataset", valid_type=orm.ArrayData, help="XesDatasetData: descriptors and moments, row by row.")
        spec.output("emulator", valid_type=EmulatorData, help="The emulator (trained here, or the given one).")
        spec.output("metrics", valid_type=orm.Dict, required=False,
                    help="Held-out Pearson r, R² and RMSE per moment of the selected emulator, the network and the ridge "
                         "baseline on the same rows, the split and the verdict (when trained here).")
        spec.output("baseline", valid_type=EmulatorData, required=False,
                    help="The linear (ridge) baseline, scored on the same held-out rows (when trained here).")
        spec.output("split", valid_type=orm.ArrayData, required=False,
                    help="Training and held-out row indices of the data set (train, test) and how they were chosen.")
        spec.output("eca", valid_type=orm.ArrayData, help="XesEcaData: components and covered variance (Y and X).")
        spec.output("reconstruction", valid_type=orm.ArrayData,
                    help="Per label, from its ensemble-mean spectrum (and from its held-out snapshots alone): CN, "
                         "first-shell and slot distances (Å), each with its spread over the emulator ensemble, and the "
                         "true ensemble means beside them.")
        spec.output("reconstruction_summary", valid_type=orm.Dict, help="The reconstruction per label as a table.")
        spec.output("target_reconstruction", valid_type=orm.ArrayData, required=False,
                    help="The reconstruction of every row of `target_spectra`.")
        spec.exit_code(301, "ERROR_NO_SNAPSHOTS", message="Give either `snapshots` or `structures` (not both, not none).")
        spec.exit_code(302, "ERROR_MISMATCHED_ROWS", message="The spectra do not match the snapshots: {reason}")
        spec.exit_code(303, "ERROR_TOO_FEW_SAMPLES", message="Too few samples to train and test on: {reason}")
        spec.exit_code(304, "ERROR_INVALID_ECA", message="Unusable ECA settings: {reason}")
        spec.exit_code(305, "ERROR_EMULATOR_MISMATCH", message="The given emulator does not fit this data: {reason}")
        spec.exit_code(306, "ERROR_INVALID_PARAMETERS", message="Invalid parameters: {reason}")
        spec.exit_code(307, "ERROR_INVALID_SPECTRA", message="The spectra cannot be turned into moments: {reason}")
        spec.exit_code(401, "ERROR_STEP_FAILED", message="The {step} step failed: {reason}")

    @classmethod
    def get_protocol_filepath(cls):
        return PROTOCOL_DIR / "analysis.yaml"

    @classmethod
    def get_builder_from_protocol(cls, spectra=None, structures=None, protocol=None, overrides=None, **_):
        """Return a builder with the protocol's settings; ``spectra`` and ``structures`` (a list, a
        dict ``snapshot_<i>`` or a TrajectoryData) may be left for later (the pipeline fills them)."""
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        for key in ("descriptor", "moment", "training", "eca", "reconstruction"):
            builder[f"{key}_parameters"] = orm.Dict(inputs.get(f"{key}_parameters", {}))
        builder.min_samples_per_label = orm.Int(inputs["min_samples_per_label"])
        if spectra is not None:
            builder.spectra = spectra
        if isinstance(structures, orm.TrajectoryData):
            builder.snapshots = structures
        elif isinstance(structures, dict):
            builder.structures = structures
        elif structures is not None:
            builder.structures = {f"snapshot_{index}": structure for index, structure in enumerate(structures)}
        return builder

    # ----- steps ----------------------------------------------------------------------------------

    def _descriptor(self) -> dict:
        return descriptor_settings(self.inputs.descriptor_parameters.get_dict())

    def validate_inputs(self):
        """Check that spectra and snapshots belong together and that every setting is usable."""
        has_trajectory, has_structures = "snapshots" in self.inputs, bool(self.inputs.get("structures"))
        if has_trajectory == has_structures:
            return self.exit_codes.ERROR_NO_SNAPSHOTS
        species = self._descriptor()["species"]

        if has_trajectory:
            count = self.inputs.snapshots.numsteps
            def symbols_of(i):
                return self.inputs.snapshots.symbols
        else:
            keys = sorted(self.inputs.structures, key=natural_key)
            wrong = [key for key in keys if not key.startswith("snapshot_") or not key[9:].isdigit()]
            if wrong:
                return self.exit_codes.ERROR_MISMATCHED_ROWS.format(
                    reason=f"structures must be named snapshot_<i>; got {wrong[:3]}.")
            numbers = {int(key[9:]): key for key in keys}
            count = None
            def symbols_of(i):
                return self.inputs.structures[numbers[i]].get_ase().get_chemical_symbols() if i in numbers else None
        spectra = self.inputs.spectra
        snapshot_index, site_index = spectra.snapshot_index, spectra.site_index
        for i in np.unique(snapshot_index):
            symbols = symbols_of(int(i)) if (count is None or 0 <= i < count) else None
            if symbols is None:
                return self.exit_codes.ERROR_MISMATCHED_ROWS.format(
                    reason=f"spectra rows refer to snapshot {int(i)}, which is not among the given snapshots.")
            sites = site_index[snapshot_index == i]
            bad = [int(s) for s in sites if not 0 <= s < len(symbols) or symbols[s] != species]
            if bad:
                return self.exit_codes.ERROR_MISMATCHED_ROWS.format(
                    reason=f"snapshot {int(i)} has no `{species}` atom at site(s) {bad[:5]} that the spectra name; "
                           "spectra and snapshots must come from the same structures.")

        try:
            check_min_per_label(spectra.row_labels, self.inputs.min_samples_per_label.value)
        except ValueError as exc:
            return self.exit_codes.ERROR_TOO_FEW_SAMPLES.format(reason=str(exc))
        reason = check_settings(self.inputs)
        if reason:
            return self.exit_codes[reason[0]].format(reason=reason[1])
        windows = moment_windows(self.inputs.moment_parameters)
        self.ctx.windows = windows
        return None

    def make_dataset(self):
        """Descriptors of the snapshots, moments of the spectra, joined into one data set."""
        spectra = self.inputs.spectra
        try:
            moments = compute_moments(spectra, self.inputs.moment_parameters,
                                      metadata={"call_link_label": "compute_moments"})["moments"]
        except ValueError as exc:
            return self.exit_codes.ERROR_INVALID_SPECTRA.format(reason=str(exc))
        structures = snapshot_structures(self.inputs)
        try:
            descriptors = featurize(self.inputs.descriptor_parameters, metadata={"call_link_label": "featurize"},
                                    **structures)["descriptors"]
            dataset = build_dataset(descriptors, moments, metadata={"call_link_label": "build_dataset"})["dataset"]
        except ValueError as exc:
            return self.exit_codes.ERROR_STEP_FAILED.format(step="featurize / build_dataset", reason=str(exc))
        self.out("moments", moments)
        self.out("descriptors", descriptors)
        self.out("dataset", dataset)
        self.ctx.dataset = dataset
        labels = sorted({float(v) for v in dataset.row_labels})
        self.report(f"data set: {dataset.n_rows} site spectra from {len(structures)} snapshots, labels {labels}")
        return None

    def should_train(self):
        return "emulator" not in self.inputs

    def train(self):
        try:
            results = train_emulator(self.ctx.dataset, self.inputs.training_parameters,
                                     metadata={"call_link_label": "train_emulator"})
        except ValueError as exc:
            return self.exit_codes.ERROR_STEP_FAILED.format(step="train_emulator", reason=str(exc))
        for key in ("metrics", "baseline", "split"):
            self.out(key, results[key])
        self.ctx.emulator, self.ctx.split = results["emulator"], results["split"]
        metrics = results["metrics"]
        self.report(f"held-out rows: {metrics['n_test']} sites of {metrics['n_test_groups']} snapshots (split by "
                    f"{metrics['split']}); {metrics['verdict']}")
        for kind in ("targets", "ridge"):
            name = "selected" if kind == "targets" else "ridge baseline"
            self.report(f"{name} held-out Pearson r: " + ", ".join(
                f"{target} {format_metric(values['pearson_r'])}" for target, values in metrics[kind].items()))
        return None

    def analyse(self):
        """ECA of the data set, then the reconstruction of each label's ensemble-mean spectrum."""
        emulator = self.ctx.emulator if "emulator" in self.ctx else self.inputs.emulator
        self.out("emulator", emulator)
        split = {"split": self.ctx.split} if "split" in self.ctx else {}
        try:
            eca = fit_eca(self.ctx.dataset, emulator, self.inputs.eca_parameters, **split,
                          metadata={"call_link_label": "fit_eca"})["eca"]
        except ValueError as exc:
            return self.exit_codes.ERROR_STEP_FAILED.format(step="fit_eca", reason=str(exc))
        self.out("eca", eca)
        held_out = eca.covered_variance_held_out
        self.report("ECA covered variance (cumulative) Y: training " + " ".join(f"{v:.3f}" for v in eca.covered_variance)
                    + (" | held-out " + " ".join(f"{v:.3f}" for v in held_out) if held_out else "")
                    + " | X: " + " ".join(f"{v:.3f}" for v in eca.covered_variance_x))
        parameters = self._reconstruction_parameters(ensemble_mean=True)
        known = {"dataset": self.ctx.dataset, "emulator": emulator, **split}
        try:
            result = reconstruct(eca, self.inputs.spectra, parameters, **known,
                                 metadata={"call_link_label": "reconstruct"})
            if "target_spectra" in self.inputs:
                target = reconstruct(eca, self.inputs.target_spectra, self._reconstruction_parameters(False), **known,
                                     metadata={"call_link_label": "reconstruct_targets"})
                self.out("target_reconstruction", target["reconstruction"])
        except ValueError as exc:
            return self.exit_codes.ERROR_STEP_FAILED.format(step="reconstruct", reason=str(exc))
        self.out("reconstruction", result["reconstruction"])
        self.out("reconstruction_summary", result["summary"])
        summary = result["summary"]
        for kind, rows in (("all sites", summary["rows"]), ("held-out snapshots", summary.get("held_out_rows", []))):
            for row in rows:
                self.report(f"label {_fmt(row['label'], 'g')} ({kind}, {row['n_spectra']} spectra): reconstructed CN "
                            f"{_pm(row['cn'], row['cn_spread'], '.2f')}, first shell "
                            f"{_pm(row['first_shell_mean_angstrom'], row['first_shell_mean_angstrom_spread'], '.3f')} Å "
                            f"| true CN {_fmt(row.get('true_cn'), '.2f')}, {_fmt(row.get('true_first_shell_mean_angstrom'))} Å")
        return None

    def _reconstruction_parameters(self, ensemble_mean: bool) -> orm.Dict:
        """The user's reconstruction parameters plus the descriptor size and the windows, as one Dict."""
        values = {**self.inputs.reconstruction_parameters.get_dict(), "ensemble_mean": ensemble_mean,
                  "n_atoms": self._descriptor()["n_atoms"], "windows": self.ctx.windows}
        return orm.Dict(values)


def _fmt(value, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _pm(value, spread, spec: str) -> str:
    """``value ± spread`` for a report (the spread over the emulator ensemble)."""
    return _fmt(value, spec) + ("" if spread is None else f" ± {format(spread, spec)}")


def check_settings(inputs) -> tuple[str, str] | None:
    """``(exit code name, reason)`` for unusable analysis settings in ``inputs`` (the analysis
    inputs, or the pipeline's ``analysis`` namespace), or None. Needs no data, so the pipeline
    checks it before any QE run."""
    try:
        descriptor = descriptor_settings(inputs.descriptor_parameters.get_dict())
    except ValueError as exc:
        return "ERROR_INVALID_PARAMETERS", f"descriptor_parameters: {exc}."
    n_atoms = descriptor["n_atoms"]
    d = n_features(n_atoms)
    try:
        check_known_keys(inputs.moment_parameters.get_dict(), MOMENT_KEYS, "moment_parameters")
    except ValueError as exc:
        return "ERROR_INVALID_PARAMETERS", f"{exc}."
    try:
        windows = moment_windows(inputs.moment_parameters)
    except (TypeError, ValueError, AttributeError) as exc:
        return "ERROR_INVALID_PARAMETERS", f"moment_parameters.windows must map names to [lo, hi] in eV: {exc}"
    n_outputs = 4 * len(windows)
    if "emulator" in inputs:
        emulator = inputs.emulator
        trained_on = descriptor_of(emulator)
        columns = emulator.base.attributes.get("n_descriptor_features", emulator.n_features)
        if columns != d or emulator.base.attributes.get("n_outputs") != n_outputs \
                or trained_on.get("ordering") != descriptor["ordering"]:
            return "ERROR_EMULATOR_MISMATCH", (
                f"it was trained on {columns} descriptor features ({trained_on.get('ordering')} ordering) for "
                f"{emulator.base.attributes.get('n_outputs')} moments, but this data has {d} features "
                f"(n_atoms = {n_atoms}, {descriptor['ordering']} ordering) and {n_outputs} moments; use the "
                "descriptor and windows it was trained with, or train a new one.")
    else:
        try:
            training_settings(inputs.training_parameters.get_dict())
        except ValueError as exc:
            return "ERROR_INVALID_PARAMETERS", f"training_parameters: {exc}"
    try:
        k = eca_settings(inputs.eca_parameters.get_dict())["n_components"]
    except ValueError as exc:
        return "ERROR_INVALID_ECA", f"eca_parameters: {exc}."
    if k > d:  # the one rule that needs the descriptor: at most as many components as features
        return "ERROR_INVALID_ECA", (
            f"eca_parameters.n_components = {k!r}, but it must be an integer in [1, {d}] (the number of descriptor "
            f"features for n_atoms = {n_atoms}); ask for fewer components.")
    try:  # as _reconstruction_parameters builds them
        reconstruction_settings({**inputs.reconstruction_parameters.get_dict(), "ensemble_mean": True,
                                 "n_atoms": n_atoms, "windows": windows})
    except ValueError as exc:
        return "ERROR_INVALID_PARAMETERS", f"reconstruction_parameters: {exc}."
    return None


def format_metric(value) -> str:
    """A metric for a report: three decimals, or 'undefined' (None: a constant held-out target)."""
    return "undefined" if value is None else f"{value:.3f}"
