"""Calcfunction: emulator-based component analysis of a data set."""

from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.calculations.checks import require_type
from aiida_xesml.data.dataset import XesDatasetData
from aiida_xesml.data.eca import XesEcaData
from aiida_xesml.data.emulator import EmulatorData
from aiida_xesml.ml.eca import ECA
from aiida_xesml.ml.validation import check_integer, check_known_keys

DEFAULT_ECA = {"n_components": 3, "seed": 0}


def eca_settings(parameters: dict) -> dict:
    """:data:`DEFAULT_ECA` updated with ``parameters``; a ValueError naming a bad or unknown key."""
    settings = {**DEFAULT_ECA, **check_known_keys(parameters, DEFAULT_ECA, "ECA parameters")}
    settings["n_components"] = check_integer(settings["n_components"], "parameters['n_components']", minimum=1)
    if settings["seed"] is not None:
        settings["seed"] = check_integer(settings["seed"], "parameters['seed']", minimum=0)
    return settings


@calcfunction
def fit_eca(dataset: orm.ArrayData, emulator: orm.ArrayData, parameters: orm.Dict):
    """ECA (SCIENCE.md §6) of ``dataset`` through ``emulator`` (EmulatorData).

    ``parameters``: ``n_components`` (default 3) and ``seed`` (default 0). Output ``eca`` (XesEcaData)
    with the components and the cumulative covered variance in Y (moments) and X (descriptors).
    """
    require_type(dataset, XesDatasetData, "dataset", "the build_dataset calcfunction (an XesDatasetData)")
    require_type(emulator, EmulatorData, "emulator", "the train_emulator calcfunction (an EmulatorData)")
    settings = eca_settings(parameters.get_dict())
    X, Y = dataset.get_xy()
    eca = ECA(emulator.get_emulator(), n_components=int(settings["n_components"]), random_state=settings["seed"])
    eca.fit(X, Y)
    node = XesEcaData()
    node.set_eca(eca, settings=settings, target_names=emulator.target_names, target_r2=emulator.metrics.get("r2"))
    node.base.attributes.set("descriptor", dataset.base.attributes.get("descriptor", {}))
    return {"eca": node}
