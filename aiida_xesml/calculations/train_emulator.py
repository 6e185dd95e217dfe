"""Calcfunction: the honest training of the emulator (grouped split, model selection, baseline, ensemble)."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.calculations.checks import require_type
from aiida_xesml.calculations.featurize import descriptor_of
from aiida_xesml.data.dataset import XesDatasetData
from aiida_xesml.data.emulator import EmulatorData
from aiida_xesml.ml.descriptors import feature_blocks, n_features
from aiida_xesml.ml.training import fit_emulators, fit_settings

#: Feature sets the model selection chooses among by default (``feature_blocks`` names; 'center_o'
#: exists for the species-resolved ordering only).
DEFAULT_FEATURE_SETS = ("full", "row0", "center_o")


def training_settings(parameters: dict) -> tuple[dict, list[str]]:
    """``(fit settings, feature-set names)`` of the ``parameters`` of :func:`train_emulator`.

    ``feature_sets`` (names of :func:`aiida_xesml.ml.descriptors.feature_blocks`) is the shell's key; the
    others are checked by :func:`aiida_xesml.ml.training.fit_settings`.

    :raises ValueError: naming the key.
    """
    parameters = dict(parameters)
    names = parameters.pop("feature_sets", list(DEFAULT_FEATURE_SETS))
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)) or not names \
            or any(name not in DEFAULT_FEATURE_SETS for name in names):
        raise ValueError(f"`parameters['feature_sets']` must be a non-empty list of {list(DEFAULT_FEATURE_SETS)}; "
                         f"got {names!r}")
    return fit_settings(parameters, "parameters"), list(names)


def feature_sets_of(descriptor: dict, names) -> dict:
    """The descriptor columns of each named feature set that exists for this descriptor."""
    blocks = feature_blocks(descriptor["n_atoms"], descriptor.get("ordering", "distance"),
                            descriptor.get("species_counts"))
    return {name: blocks[name] for name in names if name in blocks}


@calcfunction
def train_emulator(dataset: orm.ArrayData, parameters: orm.Dict):
    """Fit the emulator (descriptors -> moments) on ``dataset`` (an XesDatasetData), honestly.

    The rows are split by whole snapshots (``split``: 'snapshot', default; 'label': whole labels held
    out; 'site': the optimistic random split), the network and the ridge baseline are chosen by
    cross-validation grouped by snapshot on the training rows only (layer sizes, penalties and the
    feature set among ``feature_sets``), the better of the two by that CV score is the emulator, and
    both are scored on the same held-out rows. Then ``n_members`` emulators of the selected kind are
    fitted on bootstrap resamples of the training snapshots: the ensemble behind the error bars.
    ``parameters``: see :data:`aiida_xesml.ml.training.DEFAULT_FIT`, plus ``feature_sets``.

    Outputs ``emulator`` (EmulatorData: the selected model and its ensemble, feature columns, the
    selection record and a verdict), ``baseline`` (EmulatorData: the ridge), ``metrics`` (Dict: per
    model and target ``pearson_r``, ``r2`` and ``rmse`` in the target's units on the held-out rows, the
    split, counts and the verdict) and ``split`` (ArrayData ``train``, ``test`` row indices into the
    data set; attribute ``split``).
    """
    require_type(dataset, XesDatasetData, "dataset", "the build_dataset calcfunction (an XesDatasetData)")
    settings, names = training_settings(parameters.get_dict())
    descriptor = descriptor_of(dataset)
    X, Y = dataset.get_xy()
    result = fit_emulators(X, Y, dataset.snapshot_index, dataset.row_labels, settings,
                           feature_sets=feature_sets_of(descriptor, names))
    metrics = result["metrics"]
    targets = dataset.moment_names
    common = {"split": metrics["split"], "n_train": metrics["n_train"], "n_test": metrics["n_test"],
              "n_train_groups": metrics["n_train_groups"], "n_test_groups": metrics["n_test_groups"]}

    def emulator_node(model, kind, members=None, selection=None, verdict=None):
        node = EmulatorData()
        columns = result["columns"][kind]
        node.set_emulator(model, settings=settings, metrics={**metrics[kind], **common}, target_names=targets,
                          members=members, feature_columns=columns, kind=kind,
                          feature_set=result["feature_set"] if kind == result["selected"] else None,
                          selection=selection, verdict=verdict)
        node.base.attributes.set("descriptor", descriptor)
        node.base.attributes.set("n_descriptor_features", int(n_features(descriptor["n_atoms"])))
        return node

    emulator = emulator_node(result["emulator"], result["selected"], members=result["members"],
                             selection=result["selection"], verdict=result["verdict"])
    baseline = emulator_node(result["baseline"], "ridge")
    by_target = {kind: {name: {key: metrics[kind][key][i] for key in ("pearson_r", "r2", "rmse")}
                        for i, name in enumerate(targets)} for kind in ("selected", "network", "ridge", "ensemble")}
    split = orm.ArrayData()
    split.set_array("train", np.asarray(result["train"], dtype=int))
    split.set_array("test", np.asarray(result["test"], dtype=int))
    split.base.attributes.set("split", metrics["split"])
    return {
        "emulator": emulator,
        "baseline": baseline,
        "metrics": orm.Dict({
            "targets": by_target["selected"], "network": by_target["network"], "ridge": by_target["ridge"],
            "ensemble": by_target["ensemble"], "selected": result["selected"], "feature_set": result["feature_set"],
            "verdict": result["verdict"], "n_members": len(result["members"]), **common,
            "note": f"held-out rows, split by {metrics['split']}; rmse in each target's units (M0 states, M1/M2 eV, M3 1)",
        }),
        "split": split,
    }
