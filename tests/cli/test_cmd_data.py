"""``verdi data xesml``: list, show, export and plot of every data type, and the error paths."""

import json

import click
import numpy as np
import pytest
from cli_asserts import assert_fails, assert_ok
from click.testing import CliRunner

from aiida_xesml.cli.cmd_data import data_xesml
from aiida_xesml.ml.moments import moment_names

KINDS = ("spectra", "dataset", "emulator", "eca")
COMMANDS = ("list", "show", "export", "plot")
#: Commands beyond the four that every type has.
EXTRA_COMMANDS = {"dataset": {"learning-curve"}}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return CliRunner().invoke(data_xesml, [str(arg) for arg in args])




def row_of(output, pk):
    """The table row of ``pk`` in a list output, as its whitespace-separated cells."""
    rows = [line.split() for line in output.splitlines() if line.split()[:1] == [str(pk)]]
    assert len(rows) == 1, output
    return rows[0]


def gaussian_spectra(energy, centres):
    return np.array([np.exp(-0.5 * ((energy - c) / 1.5) ** 2) + 0.4 * np.exp(-0.5 * ((energy + 18 - c / 5) / 2) ** 2)
                     for c in centres])


@pytest.fixture(scope="module")
def nodes(aiida_profile):
    from aiida import orm

    from aiida_xesml.data import (
        EmulatorData,
        XesDatasetData,
        XesEcaData,
        XesSpectraData,
    )
    from aiida_xesml.ml.eca import ECA
    from aiida_xesml.ml.emulator import MLPEmulator

    rng = np.random.default_rng(0)
    energy = np.arange(-30, 5.0001, 0.05)
    spectra = XesSpectraData()
    spectra.set_spectra(energy, gaussian_spectra(energy, [-2.0, -1.5, -1.0, -0.5, 0.0, 0.5]),
                        site_index=[0, 1, 0, 1, 0, 1], reference_ev=rng.normal(size=6) + 5,
                        snapshot_index=[0, 0, 1, 1, 2, 2], label=[0, 0, 10, 10, 20, 20],
                        parameters={"fwhm_ev": 0.73, "alignment": "vbm", "emitter": "Ge"})
    spectra.label = "test spectra"
    spectra.store()

    partly_labelled = XesSpectraData()
    partly_labelled.set_spectra(energy, gaussian_spectra(energy, [-1.0, 0.0, 1.0]), site_index=[0, 1, 2],
                                reference_ev=[5.0, 5.1, 5.2], label=[np.nan, 0.0, 5.0])
    partly_labelled.store()

    unlabelled = XesSpectraData()
    unlabelled.set_spectra(energy, gaussian_spectra(energy, [-1.0, 0.0]), site_index=[0, 1], reference_ev=[5.0, 5.1])
    unlabelled.store()

    names = moment_names()
    n = 60
    X = rng.normal(size=(n, 10))
    Y = np.tanh(X @ rng.normal(size=(10, 8)) / 3) + 0.01 * rng.normal(size=(n, 8))
    dataset = XesDatasetData()
    dataset.set_dataset(X, Y, snapshot_index=np.arange(n) // 4, site_index=np.arange(n) % 4,
                        label=np.repeat([0.0, 10.0, 20.0], n // 3), moment_names=names,
                        descriptor={"n_atoms": 12, "species": ["Ge", "O"]},
                        windows={"kbpp": [-24.0, -13.0], "kb2": [-12.0, 2.0]})
    dataset.store()

    other_dataset = XesDatasetData()
    other_dataset.set_dataset(X[:, :5], Y, snapshot_index=np.zeros(n), site_index=np.arange(n),
                              label=np.zeros(n), moment_names=names)
    other_dataset.store()

    model = MLPEmulator(hidden_layer_sizes=(4,), max_iter=200).fit(X, Y)
    metrics = {key: [float(v) for v in values] for key, values in model.metrics(X, Y).items()}
    emulator = EmulatorData()
    emulator.set_emulator(model, settings={"hidden_layer_sizes": [4], "seed": 0}, metrics=metrics,
                          target_names=names)
    emulator.store()

    analysis = ECA(model, n_components=2).fit(X, Y)
    eca = XesEcaData()
    eca.set_eca(analysis, settings={"n_components": 2}, target_names=names, target_r2=metrics["r2"])
    eca.store()

    other = orm.Dict({"a": 1}).store()
    return {"spectra": spectra, "partly_labelled": partly_labelled, "unlabelled": unlabelled, "dataset": dataset,
            "other_dataset": other_dataset, "emulator": emulator, "eca": eca, "dict": other, "metrics": metrics}


# ----- help --------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [(), *[(kind,) for kind in KINDS],
                                     *[(kind, name) for kind in KINDS for name in COMMANDS],
                                     *[(kind, name) for kind, names in EXTRA_COMMANDS.items() for name in names]])
def test_every_command_has_help_with_an_example(command):
    result = invoke(*command, "--help")
    assert_ok(result)
    assert "Example:" in result.output
    assert "verdi data xesml" in result.output


def test_the_group_lists_one_subgroup_per_type_with_four_commands():
    assert isinstance(data_xesml, click.Group)
    assert set(data_xesml.commands) == set(KINDS)
    for kind in KINDS:
        assert set(data_xesml.commands[kind].commands) == set(COMMANDS) | EXTRA_COMMANDS.get(kind, set())


# ----- list --------------------------------------------------------------------------------------

def test_spectra_list(nodes):
    result = invoke("spectra", "list")
    assert_ok(result)
    row = row_of(result.output, nodes["spectra"].pk)
    assert row[1:5] == ["test", "spectra", "6", "701"]
    assert row_of(result.output, nodes["unlabelled"].pk)[1:3] == ["2", "701"]
    assert str(nodes["dataset"].pk) not in [line.split()[0] for line in result.output.splitlines() if line.split()]


def test_dataset_list(nodes):
    result = invoke("dataset", "list")
    assert_ok(result)
    assert row_of(result.output, nodes["dataset"].pk)[1:7] == ["60", "10", "8", "0,", "10,", "20"]
    assert row_of(result.output, nodes["other_dataset"].pk)[1:5] == ["60", "5", "8", "0"]


def test_emulator_list(nodes):
    result = invoke("emulator", "list")
    assert_ok(result)
    row = row_of(result.output, nodes["emulator"].pk)
    assert row[1:4] == ["10", "→", "8"]
    assert float(row[4]) == pytest.approx(min(nodes["metrics"]["pearson_r"]), rel=1e-3)


def test_eca_list(nodes):
    result = invoke("eca", "list")
    assert_ok(result)
    row = row_of(result.output, nodes["eca"].pk)
    assert row[1:3] == ["2", "10"]
    assert float(row[3]) == pytest.approx(nodes["eca"].covered_variance[-1], rel=1e-3)


# ----- show --------------------------------------------------------------------------------------

def test_spectra_show(nodes):
    result = invoke("spectra", "show", nodes["spectra"].pk)
    assert_ok(result)
    assert nodes["spectra"].uuid in result.output
    assert any(line.split() == ["Label", "test", "spectra"] for line in result.output.splitlines()), result.output
    assert "fwhm_ev" in result.output and "0.73" in result.output and "vbm" in result.output
    assert "-30 to 5, step 0.05" in result.output
    counts = {line.split()[0]: line.split()[1] for line in result.output.splitlines() if line.split()[:1] in
              (["0"], ["10"], ["20"])}
    assert counts == {"0": "2", "10": "2", "20": "2"}


def test_dataset_show(nodes):
    result = invoke("dataset", "show", nodes["dataset"].pk)
    assert_ok(result)
    assert ", ".join(moment_names()) in result.output
    assert "0 to 20" in result.output
    assert "n_atoms" in result.output and '["Ge", "O"]' in result.output
    assert any(line.split() == ["kbpp", "-24", "-13"] for line in result.output.splitlines()), result.output


def test_emulator_show(nodes):
    result = invoke("emulator", "show", nodes["emulator"].pk)
    assert_ok(result)
    metrics = nodes["metrics"]
    row = next(line.split() for line in result.output.splitlines() if line.split()[:1] == ["kb2_m3"])
    np.testing.assert_allclose([float(v) for v in row[1:]],
                               [metrics["pearson_r"][7], metrics["r2"][7], metrics["rmse"][7]], rtol=1e-3)
    assert "hidden_layer_sizes" in result.output and "[4]" in result.output


def test_eca_show(nodes):
    result = invoke("eca", "show", nodes["eca"].pk)
    assert_ok(result)
    eca = nodes["eca"]
    rows = [line.split() for line in result.output.splitlines() if line.split()[:1] in (["1"], ["2"])][:2]
    np.testing.assert_allclose([[float(v) for v in row[1:3]] for row in rows],
                               np.column_stack([eca.covered_variance, eca.covered_variance_x]), rtol=1e-3)
    assert "n_components" in result.output


# ----- export ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_export_npz_round_trips_every_array(nodes, kind, tmp_path):
    node = nodes[kind]
    path = tmp_path / f"{kind}.npz"
    result = invoke(kind, "export", node.pk, "--format", "npz", "--output", path)
    assert_ok(result)
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {*node.get_arraynames(), "attributes_json"}
        for name in node.get_arraynames():
            np.testing.assert_array_equal(data[name], node.get_array(name))
        attributes = json.loads(str(data["attributes_json"]))
    assert not any(key.startswith("array|") for key in attributes)
    assert attributes[{"spectra": "n_spectra", "dataset": "n_rows", "emulator": "n_outputs",
                       "eca": "n_components"}[kind]] > 0


def test_export_npz_of_emulator_rebuilds_the_model(nodes, tmp_path):
    from aiida_xesml.ml.emulator import MLPEmulator

    path = tmp_path / "emulator.npz"
    assert_ok(invoke("emulator", "export", nodes["emulator"].pk, "-o", path))
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files if name != "attributes_json"}
    X = nodes["dataset"].descriptors[:5]
    np.testing.assert_allclose(MLPEmulator.from_arrays(arrays).predict(X),
                               nodes["emulator"].get_emulator().predict(X), rtol=1e-12)


def test_export_spectra_csv(nodes, tmp_path):
    node = nodes["spectra"]
    path = tmp_path / "spectra.csv"
    assert_ok(invoke("spectra", "export", node.pk, "--format", "csv", "-o", path))
    header = path.read_text().splitlines()[0].split(",")
    assert header[0] == "energy_eV"
    assert header[1:3] == ["snap0_site0_label0", "snap0_site1_label0"]
    assert len(header) == 1 + node.n_spectra
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    np.testing.assert_array_equal(table[:, 0], node.energy_ev)
    np.testing.assert_array_equal(table[:, 1:].T, node.intensity)


def test_export_dataset_csv(nodes, tmp_path):
    node = nodes["dataset"]
    path = tmp_path / "dataset.csv"
    assert_ok(invoke("dataset", "export", node.pk, "--format", "csv", "-o", path))
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["snapshot_index", "site_index", "label", *moment_names(), *[f"descriptor_{j}" for j in range(10)]]
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    assert table.shape == (60, 3 + 8 + 10)
    np.testing.assert_array_equal(table[:, 0], node.snapshot_index)
    np.testing.assert_array_equal(table[:, 1], node.site_index)
    np.testing.assert_array_equal(table[:, 2], node.row_labels)
    np.testing.assert_array_equal(table[:, 3:11], node.moments)
    np.testing.assert_array_equal(table[:, 11:], node.descriptors)


def test_export_spectra_txt(nodes, tmp_path):
    node = nodes["spectra"]
    folder = tmp_path / "txt"
    assert_ok(invoke("spectra", "export", node.pk, "--format", "txt", "-o", folder))
    files = sorted(folder.glob("*.txt"))
    assert len(files) == node.n_spectra
    assert files[3].name == "spectrum_0003_snap1_site1.txt"
    text = files[3].read_text()
    assert "snapshot 1, site 1, label 10" in text and "# energy_eV intensity" in text
    table = np.loadtxt(files[3])
    np.testing.assert_allclose(table[:, 0], node.energy_ev, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(table[:, 1], node.intensity[3], rtol=1e-9, atol=1e-12)


# ----- plot --------------------------------------------------------------------------------------

def assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000


def test_spectra_plot(nodes, tmp_path):
    path = tmp_path / "spectra.png"
    result = invoke("spectra", "plot", nodes["spectra"].pk, "-o", path)
    assert_ok(result)
    assert_png(path)


def test_spectra_plot_leaves_out_unlabelled_rows_with_a_warning(nodes, tmp_path):
    path = tmp_path / "partly.png"
    result = invoke("spectra", "plot", nodes["partly_labelled"].pk, "-o", path)
    assert_ok(result)
    assert "1 row(s) without a label" in result.output
    assert_png(path)


def test_spectra_plot_without_any_label_fails(nodes, tmp_path):
    path = tmp_path / "none.png"
    assert_fails(invoke("spectra", "plot", nodes["unlabelled"].pk, "-o", path), "no row with a label")
    assert not path.exists()


def test_emulator_plot_is_a_parity_plot_on_a_dataset(nodes, tmp_path):
    path = tmp_path / "parity.png"
    assert_ok(invoke("emulator", "plot", nodes["emulator"].pk, "--dataset", nodes["dataset"].pk, "-o", path))
    assert_png(path)


def test_dataset_plot_with_an_emulator(nodes, tmp_path):
    path = tmp_path / "parity.png"
    assert_ok(invoke("dataset", "plot", nodes["dataset"].pk, "--emulator", nodes["emulator"].pk, "-o", path))
    assert_png(path)


def test_eca_plot(nodes, tmp_path):
    path = tmp_path / "cv.png"
    assert_ok(invoke("eca", "plot", nodes["eca"].pk, "-o", path))
    assert_png(path)


# ----- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", ["show", "export", "plot"])
def test_unknown_pk(kind, command, tmp_path):
    result = invoke(kind, command, 987654321, *(() if command == "show" else ("-o", tmp_path / "out.png")))
    assert_fails(result, "987654321")
    assert "no Node found" in result.output or "NotExistent" in result.output
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_node_type(nodes, kind):
    wrong = nodes["eca" if kind == "spectra" else "spectra"]
    result = invoke(kind, "show", wrong.pk)
    assert_fails(result, f"node {wrong.pk} is a {type(wrong).__name__}", f"xesml.{kind}")
    result = invoke(kind, "show", nodes["dict"].pk)
    assert_fails(result, f"node {nodes['dict'].pk} is a Dict", f"xesml.{kind}")


def test_wrong_node_type_in_an_option(nodes, tmp_path):
    result = invoke("emulator", "plot", nodes["emulator"].pk, "--dataset", nodes["spectra"].pk,
                    "-o", tmp_path / "p.png")
    assert_fails(result, "--dataset", "xesml.dataset")
    result = invoke("dataset", "plot", nodes["dataset"].pk, "--emulator", nodes["eca"].pk, "-o", tmp_path / "p.png")
    assert_fails(result, "--emulator", "xesml.emulator")
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize(("kind", "fmt"), [("emulator", "csv"), ("emulator", "txt"), ("eca", "csv"), ("eca", "txt")])
def test_npz_only_types_refuse_other_formats(nodes, kind, fmt, tmp_path):
    path = tmp_path / f"out.{fmt}"
    assert_fails(invoke(kind, "export", nodes[kind].pk, "--format", fmt, "-o", path),
                 f"format {fmt!r} is not available", "--format npz")
    assert not path.exists()


def test_dataset_refuses_txt(nodes, tmp_path):
    assert_fails(invoke("dataset", "export", nodes["dataset"].pk, "--format", "txt", "-o", tmp_path / "t"),
                 "'txt' is for spectra only")
    assert not (tmp_path / "t").exists()


def test_unknown_format(nodes, tmp_path):
    assert_fails(invoke("spectra", "export", nodes["spectra"].pk, "--format", "hdf5", "-o", tmp_path / "x"),
                 "hdf5")


@pytest.mark.parametrize(("kind", "args", "name"), [
    ("spectra", ("--format", "npz"), "out.npz"),
    ("spectra", ("--format", "csv"), "out.csv"),
    ("spectra", ("--format", "txt"), "folder"),
    ("dataset", ("--format", "csv"), "out.csv"),
    ("emulator", (), "out.npz"),
    ("eca", (), "out.npz"),
])
def test_existing_export_output_needs_force(nodes, kind, args, name, tmp_path):
    path = tmp_path / name
    if name == "folder":
        path.mkdir()
    else:
        path.write_text("keep me")
    assert_fails(invoke(kind, "export", nodes[kind].pk, *args, "-o", path), "already exists", "--force")
    if name != "folder":
        assert path.read_text() == "keep me"
    assert_ok(invoke(kind, "export", nodes[kind].pk, *args, "-o", path, "--force"))
    if name == "folder":
        assert len(list(path.glob("*.txt"))) == nodes[kind].n_spectra
    else:
        assert path.read_bytes() != b"keep me"


def test_existing_plot_output_needs_force(nodes, tmp_path):
    path = tmp_path / "cv.png"
    path.write_bytes(b"old")
    assert_fails(invoke("eca", "plot", nodes["eca"].pk, "-o", path), "already exists", "--force")
    assert path.read_bytes() == b"old"
    assert_ok(invoke("eca", "plot", nodes["eca"].pk, "-o", path, "--force"))
    assert_png(path)


def test_export_to_a_file_where_a_folder_is_expected_and_vice_versa(nodes, tmp_path):
    file = tmp_path / "file.txt"
    file.write_text("x")
    assert_fails(invoke("spectra", "export", nodes["spectra"].pk, "--format", "txt", "-o", file, "--force"),
                 "is not a folder")
    assert_fails(invoke("spectra", "export", nodes["spectra"].pk, "-o", tmp_path, "--force"), "is a directory")


def test_plot_output_must_be_png(nodes, tmp_path):
    path = tmp_path / "cv.pdf"
    assert_fails(invoke("eca", "plot", nodes["eca"].pk, "-o", path), "must be a .png file")
    assert not path.exists()


def test_dataset_plot_needs_an_emulator(nodes, tmp_path):
    assert_fails(invoke("dataset", "plot", nodes["dataset"].pk, "-o", tmp_path / "p.png"), "--emulator")


def test_emulator_plot_needs_a_dataset(nodes, tmp_path):
    assert_fails(invoke("emulator", "plot", nodes["emulator"].pk, "-o", tmp_path / "p.png"), "--dataset")


def test_emulator_plot_on_a_dataset_of_other_features(nodes, tmp_path):
    path = tmp_path / "p.png"
    result = invoke("emulator", "plot", nodes["emulator"].pk, "--dataset", nodes["other_dataset"].pk, "-o", path)
    assert_fails(result, "takes 10 features", "has 5")
    assert not path.exists()
