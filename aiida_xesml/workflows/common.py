"""Helpers shared by the work chains: input checks, protocol files, k-points, options, the pw.x builder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from aiida import orm
from aiida_quantumespresso.common.types import ElectronicType
from aiida_quantumespresso.workflows.protocols.utils import recursive_merge
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

PROTOCOL_DIR = Path(__file__).parent / "protocols"
MIN_DISTANCE_ANGSTROM = 0.5  # closer atoms than this are treated as overlapping
DEFAULT_OPTIONS = {"resources": {"num_machines": 1}, "max_wallclock_seconds": 3600, "withmpi": True}
KBAR_PER_GPA = 10.0  # pw.x's CELL.press is in kbar


def check_structure(structure: orm.StructureData, min_distance: float = MIN_DISTANCE_ANGSTROM) -> str | None:
    """Return why ``structure`` cannot be simulated (overlapping atoms, no volume), or None if fine."""
    from ase.neighborlist import neighbor_list

    atoms = structure.get_ase()
    if len(atoms) == 0:
        return "it has no atoms"
    if any(atoms.pbc) and abs(np.linalg.det(atoms.cell[:])) < 1e-6:
        return "its cell has zero volume"
    first, second, distances = neighbor_list("ijd", atoms, min_distance)
    if len(distances):
        k = int(np.argmin(distances))
        return (f"atoms {first[k]} ({atoms[first[k]].symbol}) and {second[k]} ({atoms[second[k]].symbol}) are "
                f"{distances[k]:.3f} Å apart (overlapping; minimum {min_distance} Å). Fix the geometry.")
    return None


def check_pseudos(structure: orm.StructureData, pseudos) -> str | None:
    """Return a message naming the kinds of ``structure`` without a pseudopotential, or None."""
    missing = sorted(set(structure.get_kind_names()) - set(pseudos))
    if missing:
        return (f"no pseudopotential for kind(s) {', '.join(missing)}; pass them in `pw.pseudos` or use a "
                "pseudopotential family that has these elements (`aiida-xesml setup` installs Ge, O, Si).")
    return None


def natural_key(key: str):
    """Sort key that puts `snapshot_10` after `snapshot_9`."""
    head, _, tail = key.rpartition("_")
    return (head, int(tail)) if tail.isdigit() else (key, -1)


def snapshot_structures(inputs) -> dict[str, orm.StructureData]:
    """The snapshots ``snapshot_<i>`` of a work chain that takes either a ``snapshots`` trajectory or
    a ``structures`` namespace. Frames of a trajectory go through the ``extract_snapshots``
    calcfunction, so that each structure is linked to the trajectory it came from."""
    from aiida_xesml.calculations.extract_snapshots import extract_snapshots

    if "snapshots" in inputs:
        return dict(extract_snapshots(inputs.snapshots, metadata={"call_link_label": "extract_snapshots"}))
    return dict(inputs.structures)


def gamma_kpoints() -> orm.KpointsData:
    """A Γ-only k-point mesh (with ``settings.gamma_only`` pw.x uses its Γ tricks)."""
    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh([1, 1, 1])
    return kpoints


def resolve_options(options: dict | None) -> dict:
    """``metadata.options`` for the QE calculations: DEFAULT_OPTIONS updated with ``options``.

    When no MPI process count is given, it uses the computer's default (all cores on localhost).
    """
    resolved = {key: (dict(value) if isinstance(value, dict) else value) for key, value in DEFAULT_OPTIONS.items()}
    for key, value in (options or {}).items():
        if isinstance(value, dict) and isinstance(resolved.get(key), dict):
            resolved[key].update(value)
        else:
            resolved[key] = value
    return resolved


class CleanWorkdirMixin:
    """``on_terminated`` that cleans the remote folders of all calculations when the work chain's
    ``clean_workdir`` input is True (as aiida-quantumespresso's work chains do)."""

    def on_terminated(self):
        super().on_terminated()
        if self.inputs.clean_workdir.value:
            clean_remote_folders(self.node, self.report)


def clean_remote_folders(node, report) -> None:
    """Clean the remote working folders of every calculation below ``node``."""
    cleaned = []
    for called in node.called_descendants:
        if isinstance(called, orm.CalcJobNode):
            try:
                called.outputs.remote_folder._clean()
                cleaned.append(str(called.pk))
            except (OSError, KeyError, AttributeError):
                pass
    if cleaned:
        report(f"cleaned remote folders of calculations: {' '.join(cleaned)}")


def failure_reason(node) -> str:
    """Why a child process failed, for an exit message: its exit code, or the exception that ended it."""
    if node.is_excepted:
        lines = (node.exception or "").strip().splitlines()
        return f"it raised an exception ({lines[-1] if lines else 'no message'}); see `verdi process report {node.pk}`"
    if node.is_killed:
        return f"it was killed ({node.process_status or 'no reason given'})"
    return f"exit {node.exit_status}: {node.exit_message or 'no message'}"


def family_cutoffs(pseudo_family: str, structure: orm.StructureData, stringency: str) -> tuple[float, float]:
    """(ecutwfc, ecutrho) in Ry that the aiida-pseudo family ``pseudo_family`` recommends for the elements of
    ``structure`` at ``stringency`` ('fast', 'balanced', 'stringent': the families of ``aiida-xesml setup``
    have these three)."""
    from aiida.common.exceptions import NotExistent

    try:
        family = orm.Group.collection.get(label=pseudo_family)
    except NotExistent as exc:
        raise ValueError(f"pseudopotential family `{pseudo_family}` is not installed; run `aiida-xesml setup` or "
                         "give another `pseudo_family`.") from exc
    if not hasattr(family, "get_recommended_cutoffs"):
        raise ValueError(f"pseudopotential family `{pseudo_family}` recommends no cutoffs; give `ecutwfc` and "
                         "`ecutrho` in the overrides.")
    try:
        return family.get_recommended_cutoffs(structure=structure, stringency=stringency, unit="Ry")
    except ValueError as exc:
        raise ValueError(f"pseudopotential family `{pseudo_family}` has no cutoffs for stringency `{stringency}`; "
                         f"give `cutoffs` as one of {', '.join(family.get_cutoff_stringencies())}, or `ecutwfc` "
                         "and `ecutrho` in the overrides.") from exc


def with_family_cutoffs(protocol_inputs: dict, pseudo_family: str, structure: orm.StructureData) -> dict:
    """``protocol_inputs`` (PwBaseWorkChain inputs of a protocol) with the plane-wave cutoffs filled in.

    The protocol names a stringency of the pseudopotential family in its ``cutoffs`` key (popped here);
    the family's recommended cutoffs for it go to ``pw.parameters.SYSTEM``, unless ``ecutwfc`` and
    ``ecutrho`` are both given there already (an explicit override wins).
    """
    inputs = dict(protocol_inputs)
    stringency = inputs.pop("cutoffs", None)
    system = inputs.get("pw", {}).get("parameters", {}).get("SYSTEM", {})
    if stringency is None or ("ecutwfc" in system and "ecutrho" in system):
        return inputs
    ecutwfc, ecutrho = family_cutoffs(pseudo_family, structure, stringency)
    cutoffs = {"pw": {"parameters": {"SYSTEM": {"ecutwfc": ecutwfc, "ecutrho": ecutrho}}}}
    return recursive_merge(cutoffs, inputs)


def pw_base_builder(code, structure, protocol_inputs: dict, pseudo_family: str, options=None, gamma_only=False):
    """A PwBaseWorkChain builder for an insulating GeO2 cell from a (partial) protocol dict.

    The dict may hold ``pw.parameters`` overrides, ``max_iterations``, ``kpoints_distance`` and
    ``cutoffs`` (the family stringency whose recommended cutoffs to use, :func:`with_family_cutoffs`).
    With ``gamma_only`` pw.x's Γ-point tricks are used (``K_POINTS gamma``), as for MD supercells.
    """
    protocol_inputs = with_family_cutoffs(protocol_inputs, pseudo_family, structure)
    overrides = recursive_merge({"pseudo_family": pseudo_family}, protocol_inputs)
    builder = PwBaseWorkChain.get_builder_from_protocol(
        code, structure, overrides=overrides, electronic_type=ElectronicType.INSULATOR,
        options=resolve_options(options),
    )
    if gamma_only:
        builder.kpoints = gamma_kpoints()
        builder.pop("kpoints_distance", None)
        settings = builder.pw.settings.get_dict() if "settings" in builder.pw else {}
        settings["gamma_only"] = True
        builder.pw.settings = orm.Dict(settings)
    builder.pw.pop("structure", None)
    builder.pop("clean_workdir", None)
    return builder


def vc_relax_inputs(code, structure, protocol_inputs: dict, pseudo_family: str, options=None,
                    gamma_only=False) -> dict:
    """Inputs of a PwRelaxWorkChain (a vc-relax repeated until the final SCF shows no Pulay stress)
    from a protocol dict: ``meta_convergence`` and ``max_meta_convergence_iterations``, plus the
    keys of :func:`pw_base_builder`, which builds the ``base_relax`` namespace."""
    base_inputs = dict(protocol_inputs)
    meta = {key: base_inputs.pop(key) for key in ("max_meta_convergence_iterations", "meta_convergence")
            if key in base_inputs}
    base_relax = pw_base_builder(code, structure, base_inputs, pseudo_family, options, gamma_only=gamma_only)
    return {
        "base_relax": base_relax._inputs(prune=True),
        "meta_convergence": orm.Bool(meta.get("meta_convergence", True)),
        "max_meta_convergence_iterations": orm.Int(meta.get("max_meta_convergence_iterations", 3)),
    }


def final_relax_outputs(node) -> dict:
    """Outputs of a PwRelaxWorkChain (or any variable-cell step); for one that stopped without
    attaching them (meta-convergence not reached), those of its last PwBaseWorkChain."""
    if "output_structure" not in node.outputs and "structure" not in node.outputs:
        node = max((child for child in node.called if child.process_label == "PwBaseWorkChain"),
                   key=lambda child: child.ctime)
    return {key: node.outputs[key] for key in node.outputs}
