"""Calcfunction: descriptors and moments joined row by row into the emulator's data set."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.calculations.checks import require_arrays
from aiida_xesml.data.dataset import XesDatasetData
from aiida_xesml.ml.dataset import join_rows


def _keys(node: orm.ArrayData):
    return np.column_stack([node.get_array("snapshot_index"), node.get_array("site_index")])


@calcfunction
def build_dataset(descriptors: orm.ArrayData, moments: orm.ArrayData):
    """One XesDatasetData row per moments row, with the descriptor of the same (snapshot, site).

    A moments row without a descriptor is an error (the spectra and snapshots do not belong
    together); descriptors without moments (a snapshot whose spectra failed) are left out.
    """
    require_arrays(descriptors, ("descriptors", "snapshot_index", "site_index"), "descriptors",
                   "the featurize calcfunction")
    require_arrays(moments, ("moments", "snapshot_index", "site_index", "label"), "moments",
                   "the compute_moments calcfunction")
    ia, ib = join_rows(_keys(descriptors), _keys(moments))
    dataset = XesDatasetData()
    dataset.set_dataset(
        descriptors=descriptors.get_array("descriptors")[ia], moments=moments.get_array("moments")[ib],
        snapshot_index=moments.get_array("snapshot_index")[ib], site_index=moments.get_array("site_index")[ib],
        label=moments.get_array("label")[ib], moment_names=moments.base.attributes.get("moment_names"),
        descriptor=descriptors.base.attributes.get("descriptor"), windows=moments.base.attributes.get("windows"),
    )
    return {"dataset": dataset}
