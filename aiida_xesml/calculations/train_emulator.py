"""Calcfunction: a seeded, deterministic emulator fit with a label-stratified held-out split."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.calculations.checks import require_type
from aiida_xesml.data.dataset import XesDatasetData
from aiida_xesml.data.emulator import EmulatorData
from aiida_xesml.ml.emulator import ACTIVATIONS
from aiida_xesml.ml.training import train_emulator as fit_emulator
from aiida_xesml.ml.training import training_settings
from aiida_xesml.ml.validation import check_integer


def checked_training_settings(parameters: dict) -> dict:
    """:func:`aiida_xesml.ml.training.training_settings` with each value checked too.

    :raises ValueError: naming the key: unknown keys, ``hidden_layer_sizes`` not a non-empty list of
        whole numbers >= 1, an unknown ``activation``, ``alpha`` < 0, ``max_iter`` < 1,
        ``test_fraction`` outside (0, 1), or ``seed`` not a whole number >= 0.
    """
    settings = training_settings(parameters)
    sizes = settings["hidden_layer_sizes"]
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (list, tuple)) or not sizes:
        raise ValueError(f"`parameters['hidden_layer_sizes']` must be a non-empty list of layer widths, e.g. [32, 32]; "
                         f"got {sizes!r}")
    settings["hidden_layer_sizes"] = [check_integer(n, "parameters['hidden_layer_sizes']", minimum=1) for n in sizes]
    if settings["activation"] not in ACTIVATIONS:
        raise ValueError(f"`parameters['activation']` must be one of {', '.join(ACTIVATIONS)}; "
                         f"got {settings['activation']!r}")
    alpha = settings["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"`parameters['alpha']` (L2 penalty) must be a finite number >= 0; got {alpha!r}")
    settings["max_iter"] = check_integer(settings["max_iter"], "parameters['max_iter']", minimum=1)
    fraction = settings["test_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"`parameters['test_fraction']` must lie in (0, 1); got {fraction!r}")
    settings["seed"] = check_integer(settings["seed"], "parameters['seed']", minimum=0)
    return settings


@calcfunction
def train_emulator(dataset: orm.ArrayData, parameters: orm.Dict):
    """Fit the MLP emulator (descriptors -> moments) on ``dataset`` (an XesDatasetData).

    ``parameters``: see :data:`aiida_xesml.ml.training.DEFAULT_TRAINING` (hidden_layer_sizes,
    activation, alpha, max_iter, test_fraction, seed). Outputs ``emulator`` (EmulatorData) and
    ``metrics`` (Dict: per target name ``pearson_r``, ``r2`` and ``rmse`` in the target's units on
    the held-out rows, and ``n_train``, ``n_test``), plus ``split`` (ArrayData ``train``, ``test`` row
    indices into the data set).
    """
    require_type(dataset, XesDatasetData, "dataset", "the build_dataset calcfunction (an XesDatasetData)")
    settings = checked_training_settings(parameters.get_dict())
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
