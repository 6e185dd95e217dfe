"""Calcfunction: local Coulomb matrices of every emitting site of a set of snapshots."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.ml.dataset import featurize_snapshots

DEFAULT_DESCRIPTOR = {"n_atoms": 20, "species": "Ge"}


@calcfunction
def featurize(parameters: orm.Dict, **snapshots):
    """Descriptors of the ``species`` sites of the inputs ``snapshot_<i>`` (StructureData, Å).

    ``parameters``: ``n_atoms`` (matrix size N, default 20) and ``species`` (default 'Ge').
    Output ``descriptors`` (ArrayData): ``descriptors`` (n, N(N+1)/2) in e²/Å units (SCIENCE.md §4),
    ``snapshot_index`` (the i of ``snapshot_<i>``) and ``site_index`` (atom index) per row.
    """
    settings = {**DEFAULT_DESCRIPTOR, **parameters.get_dict()}
    numbered = sorted((int(key.rsplit("_", 1)[1]), key) for key in snapshots)
    rows = featurize_snapshots([snapshots[key].get_ase() for _, key in numbered], n_atoms=settings["n_atoms"],
                               species=settings["species"])
    rows["snapshot_index"] = np.array([number for number, _ in numbered], dtype=int)[rows["snapshot_index"]]
    node = orm.ArrayData()
    for name, values in rows.items():
        node.set_array(name, values)
    node.base.attributes.set("descriptor", settings)
    node.base.attributes.set("units", {"descriptors": "e^2/angstrom (Z_i Z_j / r_ij, r in Å)"})
    return {"descriptors": node}
