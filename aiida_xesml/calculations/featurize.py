"""Calcfunction: local Coulomb matrices of every emitting site of a set of snapshots."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.ml.dataset import featurize_snapshots
from aiida_xesml.ml.validation import check_integer, check_known_keys

DEFAULT_DESCRIPTOR = {"n_atoms": 20, "species": "Ge"}


def descriptor_settings(parameters: dict) -> dict:
    """:data:`DEFAULT_DESCRIPTOR` updated with ``parameters``; a ValueError naming a bad or unknown key."""
    settings = {**DEFAULT_DESCRIPTOR, **check_known_keys(parameters, DEFAULT_DESCRIPTOR, "descriptor parameters")}
    settings["n_atoms"] = check_integer(settings["n_atoms"], "parameters['n_atoms']", minimum=2)
    if not isinstance(settings["species"], str):
        raise ValueError(f"`parameters['species']` must be a chemical symbol such as 'Ge'; got {settings['species']!r}")
    return settings


@calcfunction
def featurize(parameters: orm.Dict, **snapshots):
    """Descriptors of the ``species`` sites of the inputs ``snapshot_<i>`` (StructureData, Å).

    ``parameters``: ``n_atoms`` (matrix size N, default 20) and ``species`` (default 'Ge').
    Output ``descriptors`` (ArrayData): ``descriptors`` (n, N(N+1)/2) in e²/Å units (SCIENCE.md §4),
    ``snapshot_index`` (the i of ``snapshot_<i>``) and ``site_index`` (atom index) per row.
    """
    settings = descriptor_settings(parameters.get_dict())
    if not snapshots:
        raise ValueError("no snapshots: give the structures as keyword inputs `snapshot_<i>`")
    wrong = [key for key in snapshots if not key.startswith("snapshot_") or not key[9:].isdigit()]
    if wrong:
        raise ValueError(f"inputs {sorted(wrong)[:3]} are not named `snapshot_<i>` (i a whole number)")
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
