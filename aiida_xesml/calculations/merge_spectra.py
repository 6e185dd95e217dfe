"""Calcfunction: one XesSpectraData from the spectra of several snapshots."""

import numpy as np
from aiida.engine import calcfunction

from aiida_xesml.data.spectra import XesSpectraData


@calcfunction
def merge_spectra(**snapshots):
    """Stack the rows of ``snapshot_<i>`` XesSpectraData inputs (same energy grid) into one node.

    Each row's ``snapshot_index`` becomes the ``i`` of its input; site indices, labels and
    references are kept. Rows are ordered by snapshot index, then as in each input.
    """
    keys = sorted(snapshots, key=lambda key: int(key.rsplit("_", 1)[1]))
    energy = snapshots[keys[0]].energy_ev
    for key in keys[1:]:
        if not np.array_equal(snapshots[key].energy_ev, energy):
            raise ValueError(f"`{key}` has a different energy grid from `{keys[0]}`; spectra cannot be stacked")
    parts = [snapshots[key] for key in keys]
    merged = XesSpectraData()
    merged.set_spectra(
        energy_ev=energy,
        intensity=np.concatenate([part.intensity for part in parts]),
        site_index=np.concatenate([part.site_index for part in parts]),
        reference_ev=np.concatenate([part.reference_ev for part in parts]),
        snapshot_index=np.concatenate([np.full(part.n_spectra, int(key.rsplit("_", 1)[1])) for key, part in
                                       zip(keys, parts)]),
        label=np.concatenate([part.row_labels for part in parts]),
        parameters=parts[0].parameters,
    )
    return merged
