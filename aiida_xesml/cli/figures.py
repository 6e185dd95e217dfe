"""Figures of the ``verdi data xesml`` commands: checks of the PNG output and the glue between the data
nodes and :mod:`aiida_xesml.plotting` (parity plot, learning curve)."""

from __future__ import annotations

from pathlib import Path

import click
from aiida.cmdline.utils import echo

from aiida_xesml.cli.files import check_output_file

#: Hyper-parameters of the learning curve when no emulator gives its selection (mid-grid values of
#: :data:`aiida_xesml.ml.model_selection.NETWORK_GRID` and ``RIDGE_GRID``).
DEFAULT_CURVE_PARAMS = {"network": {"hidden_layer_sizes": [32], "alpha": 10.0}, "ridge": {"alpha": 10.0}}
#: ``--fast``: one repeat, three training sizes, at most this many L-BFGS iterations per network fit.
FAST_CURVE = {"n_repeats": 1, "train_fractions": (0.25, 0.5, 1.0), "max_iter": 100}


def plot_output(path: Path, force: bool) -> Path:
    if path.suffix.lower() != ".png":
        raise click.ClickException(f"output {str(path)!r} must be a .png file (the figures are written as PNG)")
    return check_output_file(path, force)


def plot(function, *args, **kwargs) -> None:
    """Call a :mod:`aiida_xesml.plotting` function, turning its ValueError into a clean CLI error."""
    try:
        path = function(*args, **kwargs)
    except ValueError as exc:
        raise click.ClickException(f"cannot plot: {exc}") from exc
    echo.echo_success(f"figure written to {path}")


def finite_labels(label, what: str):
    """Rows of ``label`` that are set (not NaN): the figures group and colour by label."""
    import numpy as np

    keep = np.isfinite(label)
    if not keep.any():
        raise click.ClickException(f"{what} has no row with a label (all NaN); the figure groups rows by label")
    if not keep.all():
        echo.echo_warning(f"{what}: {int((~keep).sum())} row(s) without a label (NaN) are left out of the figure")
    return keep


def check_emulator_fits(emulator_node, dataset_node) -> None:
    """The emulator reads this data set's descriptors and predicts its moments; a ClickException otherwise."""
    columns = emulator_node.feature_columns
    full = emulator_node.base.attributes.get("n_descriptor_features", None)  # set beside the feature columns
    if columns is None:  # an emulator of all the descriptor's columns
        takes, fits = emulator_node.n_features, emulator_node.n_features == dataset_node.n_features
    elif full is not None:
        takes, fits = full, full == dataset_node.n_features
    else:
        takes = int(columns.max()) + 1
        fits = takes <= dataset_node.n_features
    if not fits:
        reads = "" if columns is None else f" (it reads {len(columns)} of them)"
        raise click.ClickException(
            f"emulator {emulator_node.pk} takes {takes} features{reads} but dataset {dataset_node.pk} "
            f"has {dataset_node.n_features}")
    n_outputs = emulator_node.base.attributes.get("n_outputs", None)
    if n_outputs != len(dataset_node.moment_names):
        raise click.ClickException(
            f"emulator {emulator_node.pk} predicts {n_outputs} targets but dataset {dataset_node.pk} has "
            f"{len(dataset_node.moment_names)} moments")
    if emulator_node.target_names and list(emulator_node.target_names) != list(dataset_node.moment_names):
        raise click.ClickException(
            f"emulator {emulator_node.pk} targets {emulator_node.target_names} differ from the moments of dataset "
            f"{dataset_node.pk}: {dataset_node.moment_names}")


def parity(emulator_node, dataset_node, output: Path) -> None:
    """Parity plot of an emulator's predictions on every row of a data set against its moments."""
    from aiida_xesml.plotting import parity_plot

    check_emulator_fits(emulator_node, dataset_node)
    keep = finite_labels(dataset_node.row_labels, f"dataset {dataset_node.pk}")
    inputs = emulator_node.select_features(dataset_node.descriptors[keep])
    predicted = emulator_node.get_emulator().predict(inputs)
    plot(parity_plot, dataset_node.moments[keep], predicted, dataset_node.moment_names, dataset_node.row_labels[keep],
         output)


def trained_on(dataset_node):
    """The newest emulator that train_emulator selected on ``dataset_node`` (with a selection record), or None."""
    from aiida import orm

    from aiida_xesml.data.dataset import XesDatasetData
    from aiida_xesml.data.emulator import EmulatorData

    query = orm.QueryBuilder()
    query.append(XesDatasetData, filters={"id": dataset_node.pk}, tag="dataset")
    query.append(orm.CalcFunctionNode, with_incoming="dataset", edge_filters={"label": "dataset"}, tag="calc")
    query.append(EmulatorData, with_incoming="calc", edge_filters={"label": "emulator"},
                 filters={"attributes": {"has_key": "selection"}}, tag="emulator")
    query.order_by({"emulator": {"id": "desc"}})
    found = query.first()
    return found[0] if found else None


def curve_models(emulator_node, n_columns: int, fast: bool) -> dict:
    """{kind: (estimator, columns, text)} for the ridge baseline and the network of the learning curve: the
    hyper-parameters and feature sets an emulator's selection chose, or :data:`DEFAULT_CURVE_PARAMS` on all
    ``n_columns`` descriptor columns."""
    import numpy as np

    from aiida_xesml.ml.emulator import LinearEmulator, MLPEmulator
    from aiida_xesml.ml.model_selection import DEFAULT_MAX_ITER

    selection = emulator_node.base.attributes.get("selection", None) if emulator_node is not None else None
    seed = int((emulator_node.settings.get("seed") if emulator_node is not None else 0) or 0)
    max_iter = int(selection.get("max_iter", DEFAULT_MAX_ITER)) if selection else DEFAULT_MAX_ITER
    if fast:
        max_iter = min(max_iter, FAST_CURVE["max_iter"])
    models = {}
    for kind in ("ridge", "network"):
        if selection:
            best = selection["best"][kind]
            params, name = best["params"], best["feature_set"]
            columns = np.asarray(selection["feature_sets"][name], dtype=int)
        else:
            params, name, columns = DEFAULT_CURVE_PARAMS[kind], "full", np.arange(n_columns)
        if kind == "ridge":
            estimator, text = LinearEmulator(alpha=params["alpha"]), f"alpha {params['alpha']:g}"
        else:
            layers = tuple(int(n) for n in params["hidden_layer_sizes"])
            estimator = MLPEmulator(hidden_layer_sizes=layers, activation="tanh", alpha=params["alpha"],
                                    max_iter=max_iter, random_state=seed)
            text = f"layers {'-'.join(map(str, layers))} tanh, alpha {params['alpha']:g}, at most {max_iter} iterations"
        models[kind] = (estimator, columns, f"{text}, feature set '{name}' ({len(columns)} columns)")
    return models
