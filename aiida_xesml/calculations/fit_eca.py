"""Calcfunction: emulator-based component analysis of a data set."""

from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.data.eca import XesEcaData
from aiida_xesml.ml.eca import ECA

DEFAULT_ECA = {"n_components": 3, "seed": 0}


@calcfunction
def fit_eca(dataset: orm.ArrayData, emulator: orm.ArrayData, parameters: orm.Dict):
    """ECA (SCIENCE.md §6) of ``dataset`` through ``emulator`` (EmulatorData).

    ``parameters``: ``n_components`` (default 3) and ``seed`` (default 0). Output ``eca`` (XesEcaData)
    with the components and the cumulative covered variance in Y (moments) and X (descriptors).
    """
    settings = {**DEFAULT_ECA, **parameters.get_dict()}
    X, Y = dataset.get_xy()
    eca = ECA(emulator.get_emulator(), n_components=int(settings["n_components"]), random_state=settings["seed"])
    eca.fit(X, Y)
    node = XesEcaData()
    node.set_eca(eca, settings=settings, target_names=emulator.target_names, target_r2=emulator.metrics.get("r2"))
    node.base.attributes.set("descriptor", dataset.base.attributes.get("descriptor", {}))
    return {"eca": node}
