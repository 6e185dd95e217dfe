"""Calcfunction: emulator-based component analysis of a data set, scored on held-out rows too."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.calculations.checks import require_arrays, require_type
from aiida_xesml.data.dataset import XesDatasetData
from aiida_xesml.data.eca import XesEcaData
from aiida_xesml.data.emulator import EmulatorData
from aiida_xesml.ml.eca import ECA
from aiida_xesml.ml.validation import check_estimator_settings, check_integer, check_known_keys

DEFAULT_ECA = {"n_components": 3, "seed": 0}


def eca_settings(parameters: dict) -> dict:
    """:data:`DEFAULT_ECA` updated with ``parameters``; a ValueError naming a bad or unknown key.

    ``n_components`` is checked against :class:`~aiida_xesml.ml.eca.ECA`'s own constraint (its one home);
    ``seed``, the shell's name of ``random_state``, must be a whole number >= 0 (it is stored as an int).
    """
    settings = {**DEFAULT_ECA, **check_known_keys(parameters, DEFAULT_ECA, "ECA parameters")}
    check_estimator_settings(ECA, settings, ("n_components",), "the ECA `parameters`")
    if settings["seed"] is not None:
        settings["seed"] = check_integer(settings["seed"], "parameters['seed']", minimum=0)
    return settings


def split_rows_of(split: orm.ArrayData | None, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` row indices of a ``split`` node from train_emulator; all rows train without one."""
    if split is None:
        return np.arange(n_rows), np.arange(0)
    require_arrays(split, ("train", "test"), "split", "the train_emulator calcfunction")
    train, test = split.get_array("train"), split.get_array("test")
    if len(train) == 0 or max(train.max(initial=-1), test.max(initial=-1)) >= n_rows:
        raise ValueError(f"`split` refers to rows beyond the data set's {n_rows}; use the split of this data set")
    return train, test


@calcfunction
def fit_eca(dataset: orm.ArrayData, emulator: orm.ArrayData, parameters: orm.Dict, split: orm.ArrayData | None = None):
    """ECA (SCIENCE.md §6) of ``dataset`` through ``emulator`` (EmulatorData), fitted on the training rows.

    ``parameters``: ``n_components`` (default 3) and ``seed`` (default 0). With ``split`` (train_emulator's),
    the components are fitted on its training rows and the covered variance is reported on the held-out
    rows as well; without, on all rows. The emulator reads its own feature columns of the descriptors.
    Output ``eca`` (XesEcaData) with the components and the cumulative covered variance in Y (moments)
    and X (the emulator's inputs), on training rows (``covered_variance``) and held-out rows
    (``covered_variance_held_out``, ``covered_variance_x_held_out``; empty without held-out rows).
    """
    require_type(dataset, XesDatasetData, "dataset", "the build_dataset calcfunction (an XesDatasetData)")
    require_type(emulator, EmulatorData, "emulator", "the train_emulator calcfunction (an EmulatorData)")
    settings = eca_settings(parameters.get_dict())
    descriptors, Y = dataset.get_xy()
    X = emulator.select_features(descriptors)
    train, test = split_rows_of(split, len(X))
    eca = ECA(emulator.get_emulator(), n_components=int(settings["n_components"]), random_state=settings["seed"])
    eca.fit(X[train], Y[train])
    node = XesEcaData()
    node.set_eca(eca, settings=settings, target_names=emulator.target_names, target_r2=emulator.metrics.get("r2"),
                 feature_columns=emulator.feature_columns, descriptor_mean=descriptors[train].mean(axis=0))
    held_out = ([float(v) for v in eca.covered_variance(X[test], Y[test])],
                [float(v) for v in eca.covered_variance_x(X[test])]) if len(test) > 1 else ([], [])
    node.base.attributes.set("covered_variance_held_out", held_out[0])
    node.base.attributes.set("covered_variance_x_held_out", held_out[1])
    node.base.attributes.set("n_train", int(len(train)))
    node.base.attributes.set("n_test", int(len(test)))
    node.base.attributes.set("descriptor", dataset.base.attributes.get("descriptor", {}))
    return {"eca": node}
