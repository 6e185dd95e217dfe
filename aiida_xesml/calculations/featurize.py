"""Calcfunction: local Coulomb matrices of every emitting site of a set of snapshots."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.ml.dataset import featurize_snapshots
from aiida_xesml.ml.descriptors import DESCRIPTOR_SETTINGS_DEFAULTS, check_descriptor_settings

#: The analysis's descriptor defaults: N = 20, Ge centres, the species-resolved ordering (SCIENCE.md §4).
DEFAULT_DESCRIPTOR = {key: value for key, value in DESCRIPTOR_SETTINGS_DEFAULTS.items() if value is not None}


def descriptor_settings(parameters: dict) -> dict:
    """The descriptor settings of ``parameters`` completed and checked (one home of the rules:
    :func:`aiida_xesml.ml.descriptors.check_descriptor_settings`); a ValueError naming a bad or unknown key."""
    return check_descriptor_settings(parameters, "parameters")


def descriptor_of(node) -> dict:
    """The descriptor settings recorded on a descriptors, data set, emulator or ECA node. Nodes made before
    the species-resolved ordering existed carry no ``ordering``: they used the distance ordering."""
    recorded = dict(node.base.attributes.get("descriptor", {}) or {})
    recorded.setdefault("ordering", "distance")
    return recorded


@calcfunction
def featurize(parameters: orm.Dict, **snapshots):
    """Descriptors of the ``species`` sites of the inputs ``snapshot_<i>`` (StructureData, Å).

    ``parameters``: ``n_atoms`` (matrix size N, default 20), ``species`` (default 'Ge'), ``ordering``
    ('species', the default: the centre, its nearest O, then its nearest Ge; or 'distance', the published
    mixed ordering) and ``species_counts`` (the species ordering's [symbol, count] pairs, default 12 O + 7 Ge
    for N = 20). Output ``descriptors`` (ArrayData): ``descriptors`` (n, N(N+1)/2) in e²/Å units
    (SCIENCE.md §4), ``snapshot_index`` (the i of ``snapshot_<i>``) and ``site_index`` (atom index) per
    row; attribute ``descriptor`` (the complete settings).
    """
    settings = descriptor_settings(parameters.get_dict())
    if not snapshots:
        raise ValueError("no snapshots: give the structures as keyword inputs `snapshot_<i>`")
    wrong = [key for key in snapshots if not key.startswith("snapshot_") or not key[9:].isdigit()]
    if wrong:
        raise ValueError(f"inputs {sorted(wrong)[:3]} are not named `snapshot_<i>` (i a whole number)")
    numbered = sorted((int(key.rsplit("_", 1)[1]), key) for key in snapshots)
    rows = featurize_snapshots([snapshots[key].get_ase() for _, key in numbered], **settings)
    rows["snapshot_index"] = np.array([number for number, _ in numbered], dtype=int)[rows["snapshot_index"]]
    node = orm.ArrayData()
    for name, values in rows.items():
        node.set_array(name, values)
    node.base.attributes.set("descriptor", settings)
    node.base.attributes.set("units", {"descriptors": "e^2/angstrom (Z_i Z_j / r_ij, r in Å)"})
    return {"descriptors": node}
