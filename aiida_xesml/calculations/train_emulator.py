"""Calcfunction: a seeded, deterministic emulator fit with a label-stratified held-out split."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.data.emulator import EmulatorData
from aiida_xesml.ml.training import train_emulator as fit_emulator
from aiida_xesml.ml.training import training_settings


@calcfunction
def train_emulator(dataset: orm.ArrayData, parameters: orm.Dict):
    """Fit the MLP emulator (descriptors -> moments) on ``dataset`` (an XesDatasetData).

    ``parameters``: see :data:`aiida_xesml.ml.training.DEFAULT_TRAINING` (hidden_layer_sizes,
    activation, alpha, max_iter, test_fraction, seed). Outputs ``emulator`` (EmulatorData) and
    ``metrics`` (Dict: per target name ``pearson_r``, ``r2`` and ``rmse`` in the target's units on
    the held-out rows, and ``n_train``, ``n_test``), plus ``split`` (ArrayData ``train``, ``test`` row
    indices into the data set).
    """
    settings = training_settings(parameters.get_dict())
    X, Y = dataset.get_xy()
    emulator, metrics, train, test = fit_emulator(X, Y, dataset.row_labels, settings)
    names = dataset.moment_names
    node = EmulatorData()
    node.set_emulator(emulator, settings=settings, metrics=metrics, target_names=names)
    node.base.attributes.set("descriptor", dataset.base.attributes.get("descriptor", {}))
    split = orm.ArrayData()
    split.set_array("train", np.asarray(train, dtype=int))
    split.set_array("test", np.asarray(test, dtype=int))
    return {
        "emulator": node,
        "metrics": orm.Dict({"targets": node.base.attributes.get("metrics_by_target"), "n_train": metrics["n_train"], "n_test": metrics["n_test"],
                             "note": "held-out rows; rmse in each target's units (M0 states, M1/M2 eV, M3 1)"}),
        "split": split,
    }
