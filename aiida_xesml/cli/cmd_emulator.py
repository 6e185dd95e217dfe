"""``verdi data xesml emulator``: trained emulators, their selection record and their held-out skill."""

import textwrap

import click
from aiida.cmdline.groups import VerdiCommandGroup
from aiida.cmdline.utils import decorators, echo

from aiida_xesml.cli.figures import parity, plot_output
from aiida_xesml.cli.files import check_output_file, export_npz, exported, force_option, format_option, only_npz, output_option
from aiida_xesml.cli.params import data_argument, data_option
from aiida_xesml.cli.tables import list_nodes, number, section, settings_table, summary, table


@click.group("emulator", cls=VerdiCommandGroup)
def emulator():
    """Trained emulators, descriptors -> spectral moments (`xesml.emulator`).

    \b
    Example:
        verdi data xesml emulator list
        verdi data xesml emulator show 1250
        verdi data xesml emulator plot 1250 --dataset 1240 -o parity.png
    """


@emulator.command("list")
@decorators.with_dbenv()
def emulator_list():
    """List the emulators: features -> outputs, model, and the worst held-out Pearson r.

    \b
    Example:
        verdi data xesml emulator list
    """
    list_nodes("emulator", ["Features → outputs", "Pearson r (min)", "Model"],
               lambda a: (f"{a.get('n_features')} → {a.get('n_outputs')}", a.get("pearson_r_min"),
                          " ".join(str(a[key]) for key in ("kind", "feature_set") if a.get(key)) or "—"))


def _params_text(params: dict) -> str:
    parts = [f"alpha {params['alpha']:g}"] if "alpha" in params else []
    if params.get("hidden_layer_sizes"):
        parts.append("layers " + "-".join(str(n) for n in params["hidden_layer_sizes"]))
    return ", ".join(parts) + "".join(f", {key} {value}" for key, value in params.items()
                                      if key not in ("alpha", "hidden_layer_sizes"))


def _relatives(datum) -> tuple[str | None, dict]:
    """(the link label that created ``datum``, the other outputs of that calculation) from the provenance."""
    from aiida.common.links import LinkType

    try:
        link = datum.base.links.get_incoming(link_type=LinkType.CREATE).one()
    except ValueError:  # stored by hand: no creator
        return None, {}
    outputs = {entry.link_label: entry.node for entry in link.node.base.links.get_outgoing(link_type=LinkType.CREATE)}
    return link.link_label, outputs


def _metrics_rows(datum, other, other_name):
    """Per target: Pearson r, R² and RMSE of ``datum`` on the held-out rows, then ``other``'s beside them."""
    names = datum.target_names or []
    by_target = datum.base.attributes.get("metrics_by_target", {})
    if not by_target and datum.metrics:  # stored without target names: number the targets
        metrics = {key: value for key, value in datum.metrics.items() if isinstance(value, list)}
        n = max(len(values) for values in metrics.values())
        by_target = {f"y{i}": {key: values[i] for key, values in metrics.items()} for i in range(n)}
        names = list(by_target)
    others = other.base.attributes.get("metrics_by_target", {}) if other is not None else {}
    headers = ["Target", "Pearson r", "R²", "RMSE"] + ([f"r ({other_name})", f"R² ({other_name})",
                                                        f"RMSE ({other_name})"] if others else [])
    rows = [(name, *(by_target[name].get(key) for key in ("pearson_r", "r2", "rmse")),
             *((others.get(name, {}).get(key) for key in ("pearson_r", "r2", "rmse")) if others else ()))
            for name in names or by_target]
    return headers, rows


def _selection_table(selection: dict) -> None:
    cv, best, selected = selection.get("cv", {}), selection.get("best", {}), selection.get("selected")
    echo.echo(f"{cv.get('splitter', 'cross-validation')}, {cv.get('n_splits')} folds grouped by "
              f"{cv.get('grouped_by', '?')}, on {cv.get('n_rows')} training rows of {cv.get('n_groups')} snapshots. "
              "Score: mean R² of the standardized targets.")
    chosen = {value.get("index"): ("selected" if kind == selected else f"best {kind}") for kind, value in best.items()}
    candidates = sorted(enumerate(selection.get("candidates", [])),
                        key=lambda item: -(item[1].get("score_mean") if item[1].get("score_mean") is not None
                                           else float("-inf")))
    table([(c["model"], c["feature_set"], _params_text(c["params"]), c.get("score_mean"), c.get("score_std"),
            c.get("r2_mean"), c.get("pearson_r_mean"), chosen.get(i, "")) for i, c in candidates],
          headers=("Kind", "Features", "Hyper-parameters", "CV score", "± (folds)", "CV R²", "CV r", ""),
          floatfmt=".3f")
    if selection.get("rule"):
        echo.echo(f"Rule: {selection['rule']}.")


@emulator.command("show")
@data_argument("emulator")
@decorators.with_dbenv()
def emulator_show(datum):
    """Show an emulator: the selected model and verdict, held-out metrics beside the ridge baseline, the split,
    the ensemble and the cross-validation record of the model selection.

    Emulators made before model selection show their metrics and settings only.

    \b
    Example:
        verdi data xesml emulator show 1250
    """
    attributes = datum.base.attributes
    role, relatives = _relatives(datum)
    siblings = {key: node for key, node in relatives.items() if key in ("emulator", "baseline", "split")
                and node.uuid != datum.uuid}
    # a baseline shows the record of the emulator it was trained beside
    selection = attributes.get("selection", None)
    borrowed = "" if selection or "emulator" not in siblings else f" (of emulator {siblings['emulator'].pk})"
    if borrowed:
        selection = siblings["emulator"].base.attributes.get("selection", None)
    kind = attributes.get("kind", None)
    extra = [("Features", datum.n_features), ("Outputs", attributes.get("n_outputs", None)),
             ("Pearson r (min)", number(attributes.get("pearson_r_min", None)))]
    if kind:
        extra += [("Model", kind + (" (the ridge baseline)" if role == "baseline" else "")),
                  ("Feature set", attributes.get("feature_set", None) or (selection or {}).get("best", {}).get(kind, {})
                   .get("feature_set", "—")),
                  ("Ensemble members", attributes.get("n_members", 1))]
        params = (selection or {}).get("best", {}).get(kind, {}).get("params")
        if params:
            extra.append(("Hyper-parameters", _params_text(params)))
    summary(datum, extra)
    # not EmulatorData.verdict: it raises on nodes without one (baselines, emulators made before selection)
    own = attributes.get("verdict", None)
    verdict = own or (siblings["emulator"].base.attributes.get("verdict", None) if "emulator" in siblings else None)
    if verdict:
        section("Verdict" + ("" if own else f" (of emulator {siblings['emulator'].pk})"))
        echo.echo(textwrap.fill(verdict, width=100, break_on_hyphens=False))

    other_name = "baseline" if "baseline" in siblings else "selected"
    other = siblings.get("baseline" if other_name == "baseline" else "emulator")
    section("Held-out metrics per target" + (f", beside the {other_name} ({other.pk})" if other is not None else ""))
    headers, rows = _metrics_rows(datum, other, other_name)
    if rows:
        table(rows, headers=headers)
    else:
        echo.echo("(none)")
    metrics = datum.metrics
    if metrics.get("split"):
        section("Split")
        where = f"; split node {siblings['split'].pk}" if "split" in siblings else ""
        echo.echo(f"held out by {metrics['split']}: {metrics.get('n_train')} training rows "
                  f"({metrics.get('n_train_groups')} snapshots), {metrics.get('n_test')} held-out rows "
                  f"({metrics.get('n_test_groups')} snapshots){where}")
    if selection:
        section(f"Selection record, grouped cross-validation{borrowed}")
        _selection_table(selection)
    settings_table(datum.settings)


@emulator.command("export")
@data_argument("emulator")
@format_option()
@output_option("File to write.")
@force_option()
@decorators.with_dbenv()
def emulator_export(datum, fmt, output, force):
    """Export an emulator's arrays (weights, scalers, ensemble members) as npz; other formats are not available.

    The npz also holds `attributes_json` (metrics, settings, target names, selection record). It reads
    with numpy.load(path, allow_pickle=False); MLPEmulator.from_arrays rebuilds the emulator,
    aiida_xesml.ml.emulator.ensemble_from_arrays the members (the member_* arrays), and the emulator
    reads the descriptor columns in `feature_columns` (all of them when it is absent).

    \b
    Example:
        verdi data xesml emulator export 1250 -o emulator.npz
    """
    only_npz(datum, fmt)
    export_npz(datum, check_output_file(output, force))
    exported(datum, fmt, output)


@emulator.command("plot")
@data_argument("emulator")
@data_option("dataset", "-d", "--dataset", required=True,
             help="Data set whose descriptors to predict and whose moments to compare with.")
@output_option("PNG file to write.")
@force_option()
@decorators.with_dbenv()
def emulator_plot(datum, dataset, output, force):
    """Parity plot: the emulator's predictions on every row of a data set against the known moments.

    Rows used in training are included; the held-out metrics are in `show`.

    \b
    Example:
        verdi data xesml emulator plot 1250 --dataset 1240 -o parity.png
    """
    parity(datum, dataset, plot_output(output, force))
