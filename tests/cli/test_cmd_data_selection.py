"""``verdi data xesml`` on nodes of the honest training: the selection record, the baseline beside the
selected model, held-out covered variance, the learning curve, and nodes given by UUID or label.

The nodes are made by the calcfunctions themselves (train_emulator with small grids, fit_eca with its
split) on a data set whose moments are an exact linear function of the descriptors plus 1 % noise, so
the ridge baseline's held-out Pearson r is known to be close to 1.
"""

import numpy as np
import pytest
from cli_asserts import assert_fails, assert_ok
from click.testing import CliRunner

from aiida_xesml.cli.cmd_data import data_xesml
from aiida_xesml.ml.moments import moment_names

N_SNAPSHOTS, SITES = 12, 5
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return CliRunner().invoke(data_xesml, [str(arg) for arg in args])


def cells(output, first):
    """The whitespace-separated cells of the one table row whose first cell is ``first``."""
    rows = [line.split() for line in output.splitlines() if line.split()[:1] == [str(first)]]
    assert len(rows) == 1, (first, output)
    return rows[0]


@pytest.fixture(scope="module")
def trained(aiida_profile):
    from aiida import orm

    from aiida_xesml.calculations.fit_eca import fit_eca
    from aiida_xesml.calculations.train_emulator import train_emulator
    from aiida_xesml.data import XesDatasetData

    rng = np.random.default_rng(1)
    n = N_SNAPSHOTS * SITES
    X = rng.normal(size=(n, 10))  # n_atoms = 4: 10 descriptor columns
    Y = X @ rng.normal(size=(10, 8))
    Y += 0.01 * Y.std(axis=0) * rng.normal(size=Y.shape)
    snapshots = np.arange(n) // SITES
    dataset = XesDatasetData()
    dataset.set_dataset(X, Y, snapshot_index=snapshots, site_index=np.arange(n) % SITES,
                        label=10.0 * (snapshots % 3), moment_names=moment_names(),
                        descriptor={"n_atoms": 4, "species": "Ge", "ordering": "distance"})
    dataset.label = "linear dataset"
    dataset.store()
    parameters = {"network_grid": {"hidden_layer_sizes": [[4]], "alpha": [1.0]}, "ridge_grid": {"alpha": [0.1, 10.0]},
                  "cv_folds": 3, "n_members": 2, "max_iter": 100, "feature_sets": ["full", "row0"], "seed": 0}
    outputs = train_emulator(dataset, orm.Dict(parameters))
    eca = fit_eca(dataset, outputs["emulator"], orm.Dict({"n_components": 2, "seed": 0}), split=outputs["split"])["eca"]
    outputs["emulator"].label = "selected emulator"
    few = XesDatasetData()
    few.set_dataset(X[:10], Y[:10], snapshot_index=snapshots[:10], site_index=np.arange(10) % SITES,
                    label=np.zeros(10), moment_names=moment_names(), descriptor={"n_atoms": 4})
    few.store()
    return {**outputs, "dataset": dataset, "eca": eca, "few": few}


# ----- emulator show ----------------------------------------------------------------------------------------------


def test_emulator_show_selected_model_beside_the_baseline(trained):
    emulator, baseline = trained["emulator"], trained["baseline"]
    selection = emulator.base.attributes.get("selection")
    kind = emulator.base.attributes.get("kind")
    result = invoke("emulator", "show", emulator.pk)
    assert_ok(result)
    output = result.output
    assert cells(output, "Model")[1] == kind
    assert cells(output, "Feature")[2] == emulator.base.attributes.get("feature_set")
    assert cells(output, "Ensemble")[2] == "2"
    best = selection["best"][kind]["params"]
    assert f"alpha {best['alpha']:g}" in " ".join(cells(output, "Hyper-parameters"))
    assert " ".join(emulator.verdict.split()[:6]) in " ".join(output.split())  # the verdict, wrapped
    # held-out metrics: the selected model's three, then the baseline's three, per target
    assert f"beside the baseline ({baseline.pk})" in output
    for name in moment_names():
        row = [float(v) for v in cells(output, name)[1:]]
        mine, theirs = emulator.base.attributes.get("metrics_by_target")[name], \
            baseline.base.attributes.get("metrics_by_target")[name]
        np.testing.assert_allclose(row, [mine["pearson_r"], mine["r2"], mine["rmse"],
                                         theirs["pearson_r"], theirs["r2"], theirs["rmse"]], rtol=1e-3)
    metrics = emulator.metrics
    assert (f"held out by snapshot: {metrics['n_train']} training rows ({metrics['n_train_groups']} snapshots), "
            f"{metrics['n_test']} held-out rows ({metrics['n_test_groups']} snapshots); "
            f"split node {trained['split'].pk}") in output
    # the selection record: one row per candidate (2 feature sets x (1 network + 2 ridge)), best marked
    candidates = selection["candidates"]
    rows = [marked(line.split()) for line in output.splitlines()
            if line.split()[:1] in (["network"], ["ridge"]) and line.split()[1] in ("full", "row0")]
    assert len(rows) == len(candidates) == 6
    chosen = [row for row, mark in rows if mark == "selected"]
    assert len(chosen) == 1 and chosen[0][0] == kind
    assert float(chosen[0][-4]) == pytest.approx(selection["best"][kind]["score_mean"], abs=1e-3)
    other = "network" if kind == "ridge" else "ridge"
    assert [row[0] for row, mark in rows if mark == f"best {other}"] == [other]
    scores = [float(row[-4]) for row, _ in rows]
    assert scores == sorted(scores, reverse=True)


def marked(row):
    """(the cells of a selection-table row without its trailing mark, the mark: 'selected', 'best <kind>' or '')."""
    if row[-1] == "selected":
        return row[:-1], "selected"
    if row[-2] == "best":
        return row[:-2], f"best {row[-1]}"
    return row, ""


def test_emulator_show_of_the_baseline_points_to_the_selected_emulator(trained):
    baseline, emulator = trained["baseline"], trained["emulator"]
    result = invoke("emulator", "show", baseline.uuid)  # by UUID
    assert_ok(result)
    assert "ridge (the ridge baseline)" in result.output
    assert f"beside the selected ({emulator.pk})" in result.output
    assert f"Selection record, grouped cross-validation (of emulator {emulator.pk})" in result.output
    assert f"Verdict (of emulator {emulator.pk})" in result.output


def test_nodes_by_label_and_a_label_of_another_type(trained):
    assert_ok(invoke("emulator", "show", "selected emulator"))
    result = invoke("emulator", "show", "linear dataset")  # a label, but of a data set
    assert_fails(result, f"node {trained['dataset'].pk} is a XesDatasetData", "needs an `xesml.emulator` node")
    assert_fails(invoke("emulator", "show", "no such label"), "no Node found with LABEL<no such label>")


def test_emulator_list_names_the_model(trained):
    result = invoke("emulator", "list")
    assert_ok(result)
    emulator = trained["emulator"]
    row = cells(result.output, emulator.pk)
    assert emulator.base.attributes.get("kind") in row and emulator.base.attributes.get("feature_set") in row


def test_parity_plot_of_an_emulator_of_a_feature_subset(trained, tmp_path):
    """The emulator reads its own feature columns of the data set's full descriptors."""
    from aiida_xesml.data import EmulatorData
    from aiida_xesml.ml.emulator import LinearEmulator

    dataset = trained["dataset"]
    columns = np.array([1, 2, 3])
    node = EmulatorData()
    node.set_emulator(LinearEmulator().fit(dataset.descriptors[:, columns], dataset.moments),
                      target_names=dataset.moment_names, feature_columns=columns, kind="ridge", feature_set="row0")
    node.base.attributes.set("n_descriptor_features", 10)
    node.store()
    path = tmp_path / "parity.png"
    assert_ok(invoke("emulator", "plot", node.pk, "--dataset", dataset.pk, "-o", path))
    assert path.read_bytes()[:8] == PNG_MAGIC
    other = trained["few"]  # 10 columns too: fits
    assert_ok(invoke("dataset", "plot", other.pk, "--emulator", node.pk, "-o", tmp_path / "few.png"))


# ----- eca --------------------------------------------------------------------------------------------------------


def test_eca_show_and_list_give_the_held_out_covered_variance(trained):
    eca = trained["eca"]
    held_out = eca.covered_variance_held_out
    assert len(held_out) == 2
    result = invoke("eca", "show", eca.pk)
    assert_ok(result)
    assert "Moments (Y), held out" in result.output
    for k in (1, 2):
        row = [float(v) for v in cells(result.output, k)[1:]]
        np.testing.assert_allclose(row, [eca.covered_variance[k - 1], eca.covered_variance_x[k - 1], held_out[k - 1],
                                         eca.base.attributes.get("covered_variance_x_held_out")[k - 1]], rtol=1e-3)
    split = trained["split"]
    assert f"{len(split.get_array('train'))} training rows" in result.output
    listed = invoke("eca", "list")
    assert float(cells(listed.output, eca.pk)[4]) == pytest.approx(held_out[-1], rel=1e-3)


def test_eca_plot_with_the_held_out_curve(trained, tmp_path):
    from matplotlib.image import imread

    from aiida_xesml.plotting import covered_variance_plot

    eca = trained["eca"]
    path = tmp_path / "cv.png"
    assert_ok(invoke("eca", "plot", eca.pk, "-o", path))
    without = covered_variance_plot(eca.covered_variance, eca.covered_variance_x, tmp_path / "without.png")
    assert not np.array_equal(imread(path), imread(without))  # the held-out curve is drawn


# ----- learning curve ---------------------------------------------------------------------------------------------


def test_learning_curve_of_a_linear_dataset(trained, tmp_path):
    """Moments linear in the descriptors: the ridge baseline's held-out r at the largest size is close to 1."""
    dataset, emulator = trained["dataset"], trained["emulator"]
    path = tmp_path / "curve.png"
    result = invoke("dataset", "learning-curve", dataset.pk, "--fast", "-o", path)
    assert_ok(result)
    assert f"hyper-parameters from the selection of emulator {emulator.pk}" in result.output
    ridge_alpha = emulator.base.attributes.get("selection")["best"]["ridge"]["params"]["alpha"]
    assert f"ridge: alpha {ridge_alpha:g}, feature set" in result.output
    assert "network: layers 4 tanh, alpha 1, at most 100 iterations" in result.output
    # --fast: 3 sizes of the 9 training snapshots (20 % of 12 held out: 3), one repeat of 15 held-out sites
    assert "mean over 1 repeat(s); 15 held-out sites per repeat" in result.output
    rows = [line.split() for line in result.output.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
    assert [row[1] for row in rows] == ["(2)", "(4)", "(9)"] * 2
    ridge_largest = [float(v) for v in rows[2][2:]]
    assert len(ridge_largest) == 8 and min(ridge_largest) > 0.99
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000


def test_learning_curve_without_an_emulator_and_its_errors(trained, tmp_path):
    few = trained["few"]
    result = invoke("dataset", "learning-curve", few.pk, "--fast")
    assert_fails(result, f"cannot compute a learning curve of dataset {few.pk}", "at least 3")
    assert "defaults (no emulator with a selection record was trained on this data set)" in result.output
    dataset = trained["dataset"]
    (tmp_path / "old.png").write_bytes(b"old")
    assert_fails(invoke("dataset", "learning-curve", dataset.pk, "--fast", "-o", tmp_path / "old.png"),
                 "already exists", "--force")
    assert (tmp_path / "old.png").read_bytes() == b"old"
    assert_fails(invoke("dataset", "learning-curve", dataset.pk, "-o", tmp_path / "curve.pdf"), "must be a .png")
    assert_fails(invoke("dataset", "learning-curve", dataset.pk, "--emulator", trained["eca"].pk),
                 "--emulator", "xesml.emulator")
