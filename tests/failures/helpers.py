"""Shared pieces of the failure-branch tests: options, snapshots, and looking up a child process."""

from __future__ import annotations

#: One MPI process per calculation: small and quick, and two tests can share the two cores.
ONE_PROCESS = {"resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1}}
#: Seeds of the rattled rutile snapshots (rattle 0.03 Å) that the failure tests share, so that their
#: good steps are computed once and then come from the cache.
SNAPSHOT_SEEDS = (21, 22, 23)


def rattled_rutile(seed: int):
    """The 6-atom rutile-type GeO2 cell rattled by 0.03 Å with ``seed`` (an AiiDA StructureData)."""
    from aiida import orm

    from aiida_xesml.ml.structures import rutile_geo2

    atoms = rutile_geo2()
    atoms.rattle(0.03, seed=seed)
    return orm.StructureData(ase=atoms)


def called(node, label: str):
    """The child of ``node`` that was called with link label ``label``."""
    from aiida.common.links import LinkType

    (child,) = node.base.links.get_outgoing(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK),
                                            link_label_filter=label).all_nodes()
    return child


def stdout(calculation) -> str:
    """The retrieved stdout (``aiida.out``) of a pw.x or projwfc.x calculation."""
    return calculation.outputs.retrieved.base.repository.get_object_content("aiida.out")
