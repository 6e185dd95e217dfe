"""``xesml.core_hole``: each selected Ge site's own 1s binding energy by ΔSCF, for the ``core_hole`` alignment.

For one structure: a supercell (holes at least ``min_image_distance`` Å from their images), one
ground-state SCF, and per selected site one SCF with that site's Ge replaced by the 1s core-hole
dataset (:mod:`aiida_xesml.pseudos.core_hole`). The shift of the site's binding energy is
E(hole on the site) − E(ground); the ``shifts`` output turns it into the move of the site's
spectrum (:mod:`aiida_xesml.ml.core_hole`), which ``apply_core_hole_shifts`` applies to the spectra
of ``xesml.spectrum``. One SCF per site is costly, so the sites are a parameter: a calibration
subset against which the cheaper alignments are checked.

Where the excited electron goes (``excited_electron``):

- ``'removed'`` (default): the 1s electron leaves the cell (``tot_charge = +1``, pw.x's uniform
  compensating background). This is the state non-resonant Kβ emission starts from (the
  photoelectron is gone), and the 1s binding energy of XPS. Energies of charged cells carry a
  spurious interaction with the images and the background that falls as 1/L; it is the same for
  equivalent sites and nearly the same for sites of one cell, but not between cells of different
  size and dielectric constant (measured in the docs, topics/measured-physics).
- ``'conduction'``: the cell stays neutral and the electron fills the lowest empty state (Gaussian
  smearing 0.002 Ry), the excitonic final state of near-edge absorption.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, while_
from aiida_pseudo.data.pseudo.upf import UpfData
from aiida_quantumespresso.common.types import ElectronicType
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin, recursive_merge
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

from aiida_xesml.calculations.core_hole_shifts import core_hole_shifts
from aiida_xesml.calculations.core_hole_structures import core_hole_structures
from aiida_xesml.ml.core_hole import CORE_HOLE_OFFSET_EV, supercell_repetitions
from aiida_xesml.workflows.common import (
    PROTOCOL_DIR,
    CleanWorkdirMixin,
    check_pseudos,
    check_structure,
    failure_reason,
    gamma_kpoints,
    resolve_options,
    with_family_cutoffs,
)

EXCITED_ELECTRON = ("removed", "conduction")
#: Gaussian smearing (Ry) that puts the excited electron into the lowest empty state ('conduction').
CONDUCTION_DEGAUSS_RY = 0.002


class CoreHoleWorkChain(CleanWorkdirMixin, ProtocolMixin, WorkChain):
    """ΔSCF 1s binding energies of selected emitter sites: one ground SCF and one core-hole SCF per site."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("structure", valid_type=orm.StructureData, help="The structure whose sites are calibrated (Å).")
        spec.input("sites", valid_type=orm.List, required=False,
                   help="Indices (in `structure`) of the emitter sites to excite, the calibration subset; "
                        "default: every emitter site.")
        spec.input("emitter", valid_type=orm.Str, default=lambda: orm.Str("Ge"), help="Element whose 1s is excited.")
        spec.input("core_hole_pseudo", valid_type=UpfData,
                   help="The emitter's dataset with a 1s core hole: one valence electron more than the ground-state "
                        "dataset of the `scf.pw.pseudos` and made with the same recipe "
                        "(aiida_xesml.pseudos.core_hole.ensure_core_hole_families).")
        spec.input("supercell", valid_type=orm.List, required=False,
                   help="Repetitions [n1, n2, n3] of the cell; default: the smallest diagonal supercell whose holes "
                        "are at least `min_image_distance` from their images.")
        spec.input("min_image_distance", valid_type=orm.Float, default=lambda: orm.Float(8.0),
                   help="Least distance (Å) between a core hole and its images when `supercell` is not given.")
        spec.input("excited_electron", valid_type=orm.Str, default=lambda: orm.Str("removed"),
                   help="'removed': the cell loses the electron (tot_charge +1, XPS/XES initial state, default); "
                        "'conduction': neutral cell, the electron in the lowest empty state.")
        spec.input("offset_ev", valid_type=orm.Float, default=lambda: orm.Float(CORE_HOLE_OFFSET_EV),
                   help="C (eV) of aiida_xesml.ml.core_hole: shift = homo + ΔE − C.")
        spec.input("max_concurrent", valid_type=orm.Int, default=lambda: orm.Int(1),
                   help="SCF runs at a time (1 on a workstation; more on a cluster).")
        spec.input("clean_workdir", valid_type=orm.Bool, default=lambda: orm.Bool(False))
        spec.expose_inputs(PwBaseWorkChain, namespace="scf", exclude=("clean_workdir", "pw.structure"),
                           namespace_options={"help": "Inputs of every SCF (PwBaseWorkChain); this work chain sets the "
                                                      "structure, the hole's kind and pseudopotential, and the charge."})
        spec.outline(
            cls.validate_inputs,
            cls.setup,
            while_(cls.should_run_batch)(cls.run_batch, cls.inspect_batch),
            cls.results,
        )
        spec.output("supercell", valid_type=orm.StructureData, help="The ground-state supercell (Å).")
        spec.output("shifts", valid_type=orm.ArrayData,
                    help="Arrays site_index, binding_energy_ev (E(hole) − E(ground), eV), shift_ev (homo + ΔE − C: the "
                         "move of the site's vbm-aligned spectrum, eV) and reference_ev (C − ΔE, eV); attribute homo_ev.")
        spec.exit_code(301, "ERROR_INVALID_SITES", message="Bad `sites`: {reason}")
        spec.exit_code(302, "ERROR_INVALID_STRUCTURE", message="The structure is unusable: {reason}")
        spec.exit_code(303, "ERROR_INVALID_PSEUDO", message="Unusable pseudopotentials: {reason}")
        spec.exit_code(304, "ERROR_INVALID_SUPERCELL", message="Bad `supercell`: {reason}")
        spec.exit_code(306, "ERROR_INVALID_PARAMETERS", message="Invalid parameters: {reason}")
        spec.exit_code(401, "ERROR_GROUND_FAILED", message="The ground-state SCF failed ({reason}): no shifts.")
        spec.exit_code(402, "ERROR_HOLE_FAILED",
                       message="The core-hole SCF of site(s) {sites} failed ({reason}); the shifts of the other sites "
                               "are in the `shifts` output.")

    @classmethod
    def get_protocol_filepath(cls):
        return PROTOCOL_DIR / "core_hole.yaml"

    @classmethod
    def get_builder_from_protocol(cls, pw_code, structure, core_hole_pseudo=None, protocol=None, overrides=None,
                                  ground_family=None, options=None, sites=None, supercell=None, **_):
        """Return a builder for ``structure`` at the chosen protocol ('fast', 'balanced', 'stringent').

        :param core_hole_pseudo: the 1s core-hole UpfData; default the one of
            :func:`aiida_xesml.pseudos.core_hole.ensure_core_hole_families` (generated once with ld1.x).
        :param ground_family: label of the pseudopotential family of the ground state; default the
            ground-state partner family of the same function.
        :param sites: indices of the sites to excite (default every emitter site).
        :param supercell: repetitions [n1, n2, n3]; default from ``min_image_distance``.
        :param overrides: nested dict merged over the protocol's inputs (``scf``, ``min_image_distance``,
            ``gamma_only``, ``kpoints_distance``).
        """
        from aiida_xesml.pseudos.core_hole import ensure_core_hole_families

        inputs = cls.get_protocol_inputs(protocol, overrides)
        if core_hole_pseudo is None or ground_family is None:
            ground, hole = ensure_core_hole_families()
            core_hole_pseudo = core_hole_pseudo or hole.get_pseudo("Ge")
            ground_family = ground_family or ground.label
        atoms = structure.get_ase()
        reps = list(supercell) if supercell is not None else supercell_repetitions(
            atoms.cell[:], inputs["min_image_distance"])
        big = orm.StructureData(ase=atoms.repeat(reps))
        scf_inputs = recursive_merge({"pseudo_family": ground_family},
                                     with_family_cutoffs(inputs["scf"], ground_family, big))
        scf = PwBaseWorkChain.get_builder_from_protocol(
            pw_code, big, overrides=scf_inputs, electronic_type=ElectronicType.INSULATOR,
            options=resolve_options(options))
        if inputs.get("kpoints_distance") is not None:
            scf.kpoints_distance = orm.Float(inputs["kpoints_distance"])
            scf.pop("kpoints", None)
        elif inputs.get("gamma_only", True):
            scf.kpoints = gamma_kpoints()
            scf.pop("kpoints_distance", None)
            settings = scf.pw.settings.get_dict() if "settings" in scf.pw else {}
            scf.pw.settings = orm.Dict({**settings, "gamma_only": True})
        scf.pw.pop("structure", None)
        scf.pop("clean_workdir", None)
        builder = cls.get_builder()
        builder.structure = structure
        builder.scf = scf._inputs(prune=True)
        builder.core_hole_pseudo = core_hole_pseudo
        builder.supercell = orm.List([int(n) for n in reps])
        builder.min_image_distance = orm.Float(inputs["min_image_distance"])
        if sites is not None:
            builder.sites = orm.List([int(site) for site in sites])
        return builder

    def validate_inputs(self):
        """Check the structure, sites, supercell, pseudopotentials and options before anything runs."""
        structure = self.inputs.structure
        reason = check_structure(structure)
        if reason:
            return self.exit_codes.ERROR_INVALID_STRUCTURE.format(reason=reason)
        emitter = self.inputs.emitter.value
        symbols = [structure.get_kind(site.kind_name).symbol for site in structure.sites]
        emitters = [index for index, symbol in enumerate(symbols) if symbol == emitter]
        if not emitters:
            return self.exit_codes.ERROR_INVALID_STRUCTURE.format(
                reason=f"it has no `{emitter}` atom (it has {sorted(set(symbols))}); set `emitter`")
        sites = list(self.inputs.sites.get_list()) if "sites" in self.inputs else emitters
        bad = [site for site in sites if site not in emitters]
        if not sites or bad or len(set(sites)) != len(sites):
            return self.exit_codes.ERROR_INVALID_SITES.format(
                reason=f"{sites!r} must be distinct indices of `{emitter}` sites, a subset of {emitters}")
        self.ctx.sites = [int(site) for site in sites]
        if "supercell" in self.inputs:
            reps = list(self.inputs.supercell.get_list())
            if len(reps) != 3 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in reps):
                return self.exit_codes.ERROR_INVALID_SUPERCELL.format(
                    reason=f"{reps!r} must be three whole numbers >= 1 (repetitions of the cell)")
        else:
            distance = self.inputs.min_image_distance.value
            if not distance > 0:
                return self.exit_codes.ERROR_INVALID_SUPERCELL.format(
                    reason=f"min_image_distance must be > 0 Å; got {distance}")
            reps = supercell_repetitions(structure.cell, distance)
        self.ctx.repetitions = [int(n) for n in reps]
        if self.inputs.excited_electron.value not in EXCITED_ELECTRON:
            return self.exit_codes.ERROR_INVALID_PARAMETERS.format(
                reason=f"excited_electron must be one of {', '.join(EXCITED_ELECTRON)}; got "
                       f"{self.inputs.excited_electron.value!r}")
        if self.inputs.max_concurrent.value < 1:
            return self.exit_codes.ERROR_INVALID_PARAMETERS.format(
                reason=f"max_concurrent must be >= 1; got {self.inputs.max_concurrent.value}")
        pseudos = self.inputs.scf.pw.get("pseudos", {})
        reason = check_pseudos(structure, pseudos)
        if reason:
            return self.exit_codes.ERROR_INVALID_PSEUDO.format(reason=reason)
        hole = self.inputs.core_hole_pseudo
        grounds = {pseudos[site.kind_name].pk: pseudos[site.kind_name] for site in structure.sites
                   if structure.get_kind(site.kind_name).symbol == emitter}
        if hole.element != emitter:
            return self.exit_codes.ERROR_INVALID_PSEUDO.format(
                reason=f"core_hole_pseudo is a {hole.element} dataset; the emitter is {emitter}.")
        wrong = [ground.filename for ground in grounds.values() if abs(hole.z_valence - ground.z_valence - 1) > 1e-6]
        if wrong:
            return self.exit_codes.ERROR_INVALID_PSEUDO.format(
                reason=f"core_hole_pseudo has {hole.z_valence:g} valence electrons; a 1s core-hole dataset has one "
                       f"more than its ground-state partner, but {wrong} has a different count. Use the pair of "
                       "aiida_xesml.pseudos.core_hole.ensure_core_hole_families.")
        self.ctx.hole_kind = f"{emitter}h"
        if self.ctx.hole_kind in structure.get_kind_names():
            return self.exit_codes.ERROR_INVALID_STRUCTURE.format(
                reason=f"it already has a kind `{self.ctx.hole_kind}`, the name the core-hole site gets; rename it")
        return None

    def setup(self):
        """The supercell and the core-hole cells (one calcfunction), and the queue of SCF runs."""
        cells = core_hole_structures(
            self.inputs.structure, orm.List(self.ctx.repetitions), orm.List(self.ctx.sites),
            orm.Str(self.ctx.hole_kind), metadata={"call_link_label": "core_hole_structures"})
        self.ctx.cells = dict(cells)
        self.out("supercell", cells["ground"])
        self.ctx.queue = ["ground"] + [f"site_{site}" for site in self.ctx.sites]
        self.ctx.done = {}
        self.report(f"supercell {self.ctx.repetitions} ({len(cells['ground'].sites)} atoms): one ground SCF and "
                    f"{len(self.ctx.sites)} core-hole SCF(s), excited electron {self.inputs.excited_electron.value}")

    def should_run_batch(self):
        return bool(self.ctx.queue)

    def _inputs_for(self, key: str) -> AttributeDict:
        inputs = AttributeDict(self.exposed_inputs(PwBaseWorkChain, namespace="scf"))
        inputs.pw.structure = self.ctx.cells[key]
        parameters = inputs.pw.parameters.get_dict()
        parameters.setdefault("CONTROL", {})["calculation"] = "scf"
        if key != "ground":
            inputs.pw.pseudos = {**inputs.pw.pseudos, self.ctx.hole_kind: self.inputs.core_hole_pseudo}
            system = parameters.setdefault("SYSTEM", {})
            if self.inputs.excited_electron.value == "removed":
                system["tot_charge"] = 1.0
            else:
                system.update({"occupations": "smearing", "smearing": "gaussian", "degauss": CONDUCTION_DEGAUSS_RY})
        inputs.pw.parameters = orm.Dict(parameters)
        inputs.metadata.call_link_label = f"scf_{key}"
        return inputs

    def run_batch(self):
        """Submit the next ``max_concurrent`` SCF runs."""
        batch = self.ctx.queue[:self.inputs.max_concurrent.value]
        self.ctx.queue = self.ctx.queue[len(batch):]
        running = {}
        for key in batch:
            node = self.submit(PwBaseWorkChain, **self._inputs_for(key))
            self.report(f"launched {'ground-state' if key == 'ground' else 'core-hole'} SCF {key} <{node.pk}>")
            running[f"scf_{key}"] = node
        return ToContext(**running)

    def inspect_batch(self):
        """Note each finished run; a failed ground state ends the work chain at once."""
        for key in list(self.ctx.cells):
            node = self.ctx.get(f"scf_{key}")
            if node is None or key in self.ctx.done:
                continue
            self.ctx.done[key] = node
            if key == "ground" and not node.is_finished_ok:
                return self.exit_codes.ERROR_GROUND_FAILED.format(reason=failure_reason(node))
        return None

    def results(self):
        """Shifts of the sites whose SCF finished; exit 402 naming the others."""
        ground = self.ctx.done["ground"]
        holes = {key: node for key, node in self.ctx.done.items() if key != "ground"}
        good = {key: node.outputs.output_parameters for key, node in holes.items() if node.is_finished_ok}
        failed = {key: node for key, node in holes.items() if not node.is_finished_ok}
        if good:
            shifts = core_hole_shifts(
                ground_parameters=ground.outputs.output_parameters, ground_bands=ground.outputs.output_band,
                offset_ev=self.inputs.offset_ev, metadata={"call_link_label": "core_hole_shifts"}, **good)
            self.out("shifts", shifts)
            values = ", ".join(f"{site}: {shift:+.3f}" for site, shift in
                               zip(shifts.get_array("site_index"), shifts.get_array("shift_ev")))
            self.report(f"1s core-hole shifts (eV) by site: {values}")
        if failed:
            first = next(iter(failed.values()))
            return self.exit_codes.ERROR_HOLE_FAILED.format(
                sites=", ".join(key.split("_", 1)[1] for key in failed), reason=failure_reason(first))
        return None
