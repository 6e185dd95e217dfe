"""Calcfunction: the ΔSCF cells of the ``core_hole`` alignment, the ground supercell and one per excited site."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction


@calcfunction
def core_hole_structures(structure: orm.StructureData, repetitions: orm.List, sites: orm.List, hole_kind: orm.Str):
    """The ground-state supercell and, per site of ``sites``, the same supercell with that site's kind
    renamed ``hole_kind`` (the kind that gets the 1s core-hole dataset).

    The supercell repeats ``structure`` ``repetitions`` = [n1, n2, n3] times along its cell vectors;
    its first ``len(structure.sites)`` sites are the original ones in their order, so a site index of
    ``structure`` is the same index in the supercell.

    :returns: ``ground`` (StructureData) and ``site_<i>`` for each i in ``sites``.
    :raises ValueError: repetitions that are not three whole numbers >= 1, a site index outside the
        structure, or a ``hole_kind`` that is already a kind name of the structure.
    """
    reps = list(repetitions.get_list())
    if len(reps) != 3 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in reps):
        raise ValueError(f"`repetitions` must be three whole numbers >= 1; got {reps!r}")
    indices = list(sites.get_list())
    n_sites = len(structure.sites)
    bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_sites]
    if bad or not indices:
        raise ValueError(f"`sites` must be a non-empty list of site indices in [0, {n_sites}); got {indices!r}")
    name = hole_kind.value
    if name in structure.get_kind_names():
        raise ValueError(f"`hole_kind` {name!r} is already a kind of the structure ({structure.get_kind_names()}); "
                         "choose another name")
    cell = np.array(structure.cell)
    base = [(site.kind_name, np.array(site.position)) for site in structure.sites]
    kinds = {kind.name: kind for kind in structure.kinds}

    def build(excited: int | None) -> orm.StructureData:
        supercell = orm.StructureData(cell=(cell * np.array(reps)[:, None]).tolist(), pbc=structure.pbc)
        for kind in structure.kinds:
            supercell.append_kind(kind)
        if excited is not None:
            source = kinds[base[excited][0]]
            supercell.append_kind(orm.Kind(symbols=source.symbols, weights=source.weights, mass=source.mass, name=name))
        for offset in np.ndindex(*reps):
            shift = np.array(offset) @ cell
            for index, (kind_name, position) in enumerate(base):
                first = not any(offset)
                kind = name if first and index == excited else kind_name
                supercell.append_site(orm.Site(kind_name=kind, position=(position + shift).tolist()))
        return supercell

    outputs = {"ground": build(None)}
    for index in indices:
        outputs[f"site_{index}"] = build(index)
    return outputs
