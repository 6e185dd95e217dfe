"""``aiida-xesml reconstruct`` (measured spectrum -> structure) and ``aiida-xesml launch``, with their error paths.

The ECA is fitted here by calling the analysis calcfunctions directly on synthetic spectra of
rattled quartz- and rutile-type cells (no QE). The measured file is one synthetic site spectrum on an
absolute energy axis (reference + 7000 eV), so that ``--reference-ev`` is exercised.
"""

import hashlib
import re

import numpy as np
import pytest
from aiida import orm
from cli_asserts import assert_fails, assert_ok
from click.testing import CliRunner

from aiida_xesml.cli import cli
from aiida_xesml.cli.cmd_launch import (
    build_builder,
    builtin_structure,
    parse_pressures,
    read_structure,
)
from aiida_xesml.data.spectra import XesSpectraData
from aiida_xesml.ml.measured import (
    MAX_FILE_BYTES,
    check_file_size,
    read_two_column,
    shift_and_interpolate,
)
from aiida_xesml.ml.spectra import energy_grid
from aiida_xesml.ml.structures import (
    quartz_geo2,
    rattle_and_strain,
    rutile_geo2,
    supercell,
)
from aiida_xesml.ml.synthetic import first_shell_geometry, synthetic_site_spectra

REFERENCE_EV = 7000.0
N_ATOMS = 12


def invoke(*args):
    from aiida.manage import get_manager

    profile = get_manager().get_profile().name
    return CliRunner().invoke(cli, ["-p", profile, *[str(arg) for arg in args]])




def count(cls):
    return orm.QueryBuilder().append(cls).count()


@pytest.fixture(scope="module")
def made_data(aiida_profile):
    """Snapshots (dict snapshot_<i>), their synthetic spectra and the first-shell truth per polymorph."""
    grid = energy_grid(-30.0, 5.0, 0.05)
    structures, rows = {}, {"intensity": [], "site": [], "snapshot": [], "label": []}
    truth = {}
    for k in range(12):
        label = 0.0 if k % 2 == 0 else 20.0
        base = supercell(quartz_geo2(), (2, 2, 1)) if label == 0.0 else supercell(rutile_geo2(), (2, 2, 2))
        atoms = rattle_and_strain(base, rattle=0.06, strain=0.02, seed=k)
        ge, r, spread, cn = first_shell_geometry(atoms)
        structures[f"snapshot_{k}"] = orm.StructureData(ase=atoms)
        rows["intensity"].append(synthetic_site_spectra(r, spread, cn, grid))
        rows["site"].append(ge)
        rows["snapshot"].append(np.full(len(ge), k))
        rows["label"].append(np.full(len(ge), label))
        truth.setdefault(label, (r[0], cn[0]))
    spectra = XesSpectraData()
    spectra.set_spectra(energy_ev=grid, intensity=np.vstack(rows["intensity"]), site_index=np.concatenate(rows["site"]),
                        reference_ev=np.zeros(sum(map(len, rows["site"]))),
                        snapshot_index=np.concatenate(rows["snapshot"]), label=np.concatenate(rows["label"]))
    spectra.store()
    return {"grid": grid, "structures": structures, "spectra": spectra, "intensity": np.vstack(rows["intensity"]),
            "labels": np.concatenate(rows["label"]), "truth": truth}


@pytest.fixture(scope="module")
def eca(made_data):
    """An XesEcaData fitted through the calcfunctions (a small network, N = 12)."""
    from aiida_xesml.calculations.build_dataset import build_dataset
    from aiida_xesml.calculations.compute_moments import compute_moments
    from aiida_xesml.calculations.featurize import featurize
    from aiida_xesml.calculations.fit_eca import fit_eca
    from aiida_xesml.calculations.train_emulator import train_emulator

    descriptors = featurize(parameters=orm.Dict({"n_atoms": N_ATOMS, "species": "Ge"}),
                            **made_data["structures"])["descriptors"]
    moments = compute_moments(made_data["spectra"], orm.Dict({}))["moments"]
    dataset = build_dataset(descriptors, moments)["dataset"]
    trained = train_emulator(dataset, orm.Dict({"network_grid": {"hidden_layer_sizes": [[16]], "alpha": [0.1]},
                                                "ridge_grid": {"alpha": [1.0]}, "cv_folds": 3, "n_members": 3,
                                                "feature_sets": ["full"], "seed": 0}))
    return fit_eca(dataset, trained["emulator"], orm.Dict({"n_components": 2, "seed": 0}), split=trained["split"])["eca"]


def spectrum_text(energy, intensity, header=("# synthetic Kβ spectrum", "# energy_eV intensity")):
    lines = list(header) + [f"{e:.4f} {i:.8e}" for e, i in zip(energy, intensity)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def good_file(made_data, tmp_path):
    """A rutile-type (6-fold) site spectrum on an absolute axis, on a coarser grid than the calculations."""
    row = int(np.flatnonzero(made_data["labels"] == 20.0)[0])
    energy = made_data["grid"][::2] + REFERENCE_EV
    path = tmp_path / "measured.txt"
    path.write_text(spectrum_text(energy, made_data["intensity"][row][::2]))
    return path


# ----- pure functions ------------------------------------------------------------------------------------------


def test_read_two_column_parses_comments_separators_and_blank_lines():
    text = "# header\n# more\n" + "\n".join(f"{e},{2 * e}" if e % 2 else f"{e}\t{2 * e}" for e in range(12)) + "\n\n"
    energy, intensity = read_two_column(text)
    np.testing.assert_array_equal(energy, np.arange(12.0))
    np.testing.assert_array_equal(intensity, 2 * np.arange(12.0))


@pytest.mark.parametrize("text, fragment", [
    ("1 2\n" * 3, "at least 10"),
    ("".join(f"{e} {e}\n" for e in range(10)) + "# late comment\n10 1\n", "line 11: a comment/header line"),
    ("".join(f"{e} {e}\n" for e in range(5)) + "energy intensity\n" + "".join(f"{e} {e}\n" for e in range(5, 10)),
     "line 6: non-numeric line in the middle"),
    ("".join(f"{e}\n" for e in range(12)), "1 column(s); expected 2"),
    ("".join(f"{e} {e} {e}\n" for e in range(12)), "3 column(s); expected 2"),
    ("".join(f"{e} {'nan' if e == 4 else e}\n" for e in range(12)), "line 5: NaN or inf"),
    ("".join(f"{e} {'inf' if e == 4 else e}\n" for e in range(12)), "line 5: NaN or inf"),
    ("".join(f"{e if e != 6 else 2} 1\n" for e in range(12)), "not strictly increasing"),
    ("".join(f"{min(e, 8)} 1\n" for e in range(12)), "not strictly increasing"),
])
def test_read_two_column_rejects(text, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        read_two_column(text)


def test_size_limit_and_interpolation():
    with pytest.raises(ValueError, match=f"limit of {MAX_FILE_BYTES} bytes"):
        check_file_size(MAX_FILE_BYTES + 1)
    check_file_size(MAX_FILE_BYTES)
    energy = np.linspace(7000.0, 7010.0, 11)
    values = shift_and_interpolate(energy, energy - 7000.0, 7005.0, np.array([-6.0, -5.0, -2.5, 5.0, 5.5]))
    np.testing.assert_allclose(values, [0.0, 0.0, 2.5, 10.0, 0.0])
    with pytest.raises(ValueError, match="does not overlap"):
        shift_and_interpolate(energy, energy, 0.0, np.array([-30.0, 5.0]))


# ----- reconstruct ----------------------------------------------------------------------------------------------


def test_reconstruct_good_file(eca, good_file, made_data):
    before = count(orm.XyData)
    result = invoke("reconstruct", good_file, "--eca", eca.pk, "--reference-ev", REFERENCE_EV, "--label", 20)
    assert_ok(result)
    assert count(orm.XyData) == before + 1
    for fragment in ("Kβ″", "Kβ2", "M3", "First-shell mean Ge–O", "CN:", "Stored: XyData"):
        assert fragment in result.output, result.output
    xy = orm.QueryBuilder().append(orm.XyData, tag="xy").order_by({"xy": {"id": "desc"}}).first()[0]
    assert xy.base.attributes.get("sha256") == hashlib.sha256(good_file.read_bytes()).hexdigest()
    assert xy.base.attributes.get("filename") == "measured.txt"
    assert xy.base.repository.get_object_content("measured.txt", mode="rb") == good_file.read_bytes()
    np.testing.assert_allclose(xy.get_x()[1][:2], made_data["grid"][:4:2] + REFERENCE_EV)
    assert f"XyData {xy.pk}," in result.output

    # provenance: XyData -> measured_spectrum -> spectra -> reconstruct(eca) -> reconstruction
    spectra = xy.base.links.get_outgoing().all_nodes()[0].outputs.spectra
    assert isinstance(spectra, XesSpectraData) and spectra.n_spectra == 1
    assert spectra.parameters["sha256"] == xy.base.attributes.get("sha256")
    np.testing.assert_array_equal(spectra.reference_ev, [REFERENCE_EV])
    np.testing.assert_array_equal(spectra.row_labels, [20.0])
    np.testing.assert_allclose(spectra.energy_ev, made_data["grid"])
    reconstruct_calc = spectra.base.links.get_outgoing().all_nodes()[0]
    assert reconstruct_calc.inputs.eca.uuid == eca.uuid
    reconstruction = reconstruct_calc.outputs.reconstruction
    assert f"reconstruction {reconstruction.pk}" in result.output
    assert reconstruct_calc.inputs.parameters["n_atoms"] == N_ATOMS
    assert reconstruct_calc.inputs.parameters["ensemble_mean"] is False
    cn, spread = reconstruction.get_array("cn")[0], reconstruction.get_array("cn_spread")[0]
    assert f"CN: {cn:.2f} ± {spread:.2f} (count of O within the cutoff" in result.output
    assert reconstruct_calc.inputs.parameters["method"] == "population"
    misfit = float(reconstruction.get_array("inverse_loss")[0])
    assert f"Inverse misfit: {misfit:.3f}" in result.output
    assert ("Warning: the misfit is above" in result.output) == (misfit > 0.5)
    low, high = reconstruction.get_array("cn_range")[0]
    assert reconstruction.base.attributes.get("settings")["range_tolerance"] == 0.1
    assert (f"CN range: {low:.2f} to {high:.2f}" if np.isfinite(low) else "CN range: none") in result.output
    assert reconstruct_calc.inputs.dataset.uuid == eca.creator.inputs.dataset.uuid  # the population, by provenance
    assert reconstruction.get_array("distances_angstrom").shape == (1, N_ATOMS - 1)
    # the spectrum was interpolated from every other grid point: the moments match the original row's
    row = int(np.flatnonzero(made_data["labels"] == 20.0)[0])
    expected = made_data["spectra"].moments()[row]
    np.testing.assert_allclose(reconstruction.get_array("target_moments")[0][[1, 5]], expected[[1, 5]], atol=0.02)


def test_reconstruct_warns_when_no_mixture_of_the_training_sites_fits(eca, made_data, tmp_path):
    """A spectrum five times as intense as any training site's: no population reaches its M0."""
    row = int(np.flatnonzero(made_data["labels"] == 20.0)[0])
    path = tmp_path / "too_bright.txt"
    path.write_text(spectrum_text(made_data["grid"] + REFERENCE_EV, 5.0 * made_data["intensity"][row]))
    result = invoke("reconstruct", path, "--eca", eca.pk, "--reference-ev", REFERENCE_EV, "--label", 20)
    assert_ok(result)
    misfit = float(re.search(r"Inverse misfit: ([0-9.]+)", result.output).group(1))
    assert misfit > 0.5, result.output
    assert "Warning: the misfit is above 0.5" in result.output
    assert "CN range: none: no population of training sites matches these moments within 0.1" in result.output


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, make, fragment", [
    ("nan.txt", lambda e, i: spectrum_text(e, np.where(np.arange(len(i)) == 50, np.nan, i)), "NaN or inf"),
    ("unsorted.txt", lambda e, i: spectrum_text(e[::-1], i), "not strictly increasing"),
    ("header.txt", lambda e, i: spectrum_text(e[:50], i[:50]) + "energy intensity\n" + spectrum_text(e[50:], i[50:], ()),
     "line 53: non-numeric line in the middle"),
    ("comment.txt", lambda e, i: spectrum_text(e[:50], i[:50]) + spectrum_text(e[50:], i[50:]),
     "line 53: a comment/header line"),
    ("one_column.txt", lambda e, i: "\n".join(f"{v}" for v in e), "1 column(s); expected 2"),
    ("short.txt", lambda e, i: spectrum_text(e[:5], i[:5]), "at least 10"),
    ("empty.txt", lambda e, i: "", "empty"),
    ("binary.txt", None, "not UTF-8 text"),
])
def test_reconstruct_bad_files_store_nothing(eca, made_data, tmp_path, name, make, fragment):
    energy, intensity = made_data["grid"] + REFERENCE_EV, made_data["intensity"][0]
    path = tmp_path / name
    if make is None:
        path.write_bytes(b"\xff\xfe\x00\x01" * 10)
    else:
        path.write_text(make(energy, intensity))
    before = count(orm.XyData), count(orm.CalcFunctionNode)
    result = invoke("reconstruct", path, "--eca", eca.pk, "--reference-ev", REFERENCE_EV)
    assert_fails(result, name, fragment)
    assert (count(orm.XyData), count(orm.CalcFunctionNode)) == before


def test_reconstruct_too_large_file(eca, tmp_path):
    path = tmp_path / "large.txt"
    path.write_bytes(b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    before = count(orm.XyData)
    assert_fails(invoke("reconstruct", path, "--eca", eca.pk, "--reference-ev", 0), "limit of", "5 MB")
    assert count(orm.XyData) == before


def test_reconstruct_bad_pk_wrong_node_and_reference(eca, good_file, made_data, tmp_path):
    before = count(orm.XyData)
    assert_fails(invoke("reconstruct", good_file, "--eca", 987654321, "--reference-ev", REFERENCE_EV),
                 "no node with pk 987654321")
    assert_fails(invoke("reconstruct", good_file, "--eca", made_data["spectra"].pk, "--reference-ev", REFERENCE_EV),
                 f"node {made_data['spectra'].pk} is a XesSpectraData, not an XesEcaData")
    # a reference far off: the measurement does not overlap the grid
    assert_fails(invoke("reconstruct", good_file, "--eca", eca.pk, "--reference-ev", 0), "does not overlap")
    # a reference that leaves the Kβ″ window empty (the spectrum shifted by +20 eV)
    assert_fails(invoke("reconstruct", good_file, "--eca", eca.pk, "--reference-ev", REFERENCE_EV - 20),
                 "kbpp")
    assert_fails(invoke("reconstruct", tmp_path / "missing.txt", "--eca", eca.pk, "--reference-ev", 0),
                 "does not exist")
    assert_fails(invoke("reconstruct", good_file, "--eca", eca.pk, "--reference-ev", REFERENCE_EV,
                        "--moment-orders", "0,7"), "--moment-orders")
    assert count(orm.XyData) == before


def test_reconstruct_without_label_and_rejects_nan_label(eca, good_file):
    before = count(orm.XyData)
    result = invoke("reconstruct", good_file, "--eca", eca.pk, "--reference-ev", REFERENCE_EV, "--moment-orders", "1")
    assert_ok(result)
    assert count(orm.XyData) == before + 1
    xy = orm.QueryBuilder().append(orm.XyData, tag="xy").order_by({"xy": {"id": "desc"}}).first()[0]
    calc = xy.base.links.get_outgoing().all_nodes()[0].outputs.spectra.base.links.get_outgoing().all_nodes()[0]
    assert calc.inputs.parameters["moment_orders"] == [1]
    # no label: NaN in the arrays, and the reconstruction is found by no label query
    assert np.isnan(calc.outputs.reconstruction.get_array("label")).all()
    assert calc.outputs.reconstruction.base.attributes.get("labels") == []
    assert_fails(invoke("reconstruct", good_file, "--eca", eca.pk, "--reference-ev", REFERENCE_EV, "--label", "nan"),
                 "--label must be a finite number")
    assert count(orm.XyData) == before + 1


def test_reconstruct_on_its_own_axis_is_blind_to_a_shift_and_a_scale(eca, made_data, tmp_path):
    """Issue 16: no reference energy; the spectrum shifted by +7.3 eV and scaled by 40 gives the same CN and
    distances, within their error bars, as the unshifted, unscaled one. The spectrum is the mean of the 6-fold
    (label 20) sites, on the calculations' axis; the windows are found from its own peaks."""
    six = made_data["labels"] == 20.0
    mean = made_data["intensity"][six].mean(axis=0)
    grid = made_data["grid"]
    results = []
    for name, shift, scale in (("plain.txt", 0.0, 1.0), ("shifted.txt", 7.3, 40.0)):
        path = tmp_path / name
        path.write_text(spectrum_text(grid + shift, scale * mean))
        result = invoke("reconstruct", path, "--eca", eca.pk, "--label", 20)
        assert_ok(result)
        assert "Windows put at the calculations' distance from each peak" in result.output, result.output
        calc = orm.QueryBuilder().append(orm.CalcFunctionNode, filters={"attributes.function_name": "reconstruct"},
                                         tag="c").order_by({"c": {"id": "desc"}}).first()[0]
        assert "targets" in calc.inputs and "spectra" not in calc.inputs
        assert calc.inputs.targets.base.attributes.get("target_set") == "shift_free"
        results.append(calc.outputs.reconstruction)
    plain, shifted = results
    windows = [shifted.creator.inputs.targets.base.attributes.get("windows_ev")[key][0] for key in ("kbpp", "kb2")]
    reference = [plain.creator.inputs.targets.base.attributes.get("windows_ev")[key][0] for key in ("kbpp", "kb2")]
    np.testing.assert_allclose(np.subtract(windows, reference), 7.3, atol=0.06)  # the windows moved with the peaks
    for array in ("cn", "first_shell_mean_angstrom"):
        a, b = plain.get_array(array)[0], shifted.get_array(array)[0]
        bar = max(plain.get_array(f"{array}_spread")[0], shifted.get_array(f"{array}_spread")[0], 1e-3)
        assert abs(a - b) <= bar, (array, a, b, bar)
    # the 6-fold mean reads as 6-fold
    assert plain.get_array("cn")[0] == pytest.approx(6.0, abs=0.3)


# ----- launch ---------------------------------------------------------------------------------------------------


def test_parse_pressures_and_structures(tmp_path):
    assert parse_pressures("0 15 30") == [0.0, 15.0, 30.0]
    assert parse_pressures("0,7.5") == [0.0, 7.5]
    for text, fragment in (("0 -5", "non-negative"), ("0 x", "must be numbers"), ("  ", "empty"), ("nan", "non-negative")):
        with pytest.raises(ValueError, match=fragment):
            parse_pressures(text)
    atoms = builtin_structure("rutile", (2, 2, 1))
    assert len(atoms) == 24 and atoms.get_chemical_symbols().count("Ge") == 8
    path = tmp_path / "quartz.cif"
    builtin_structure("quartz").write(path)
    read = read_structure(path)
    assert read.get_chemical_formula() == builtin_structure("quartz").get_chemical_formula()
    (tmp_path / "garbage.cif").write_text("this is not a cif\n")
    with pytest.raises(ValueError, match="cannot read a structure"):
        read_structure(tmp_path / "garbage.cif")
    with pytest.raises(ValueError, match="does not exist"):
        read_structure(tmp_path / "missing.cif")


def test_the_network_builtin_is_the_melt_quench_start():
    from aiida_xesml.ml.structures import density

    atoms = builtin_structure("network")
    assert atoms.get_chemical_symbols().count("Ge") == 16 and len(atoms) == 48
    assert density(atoms) == pytest.approx(3.66, rel=1e-6)
    with pytest.raises(ValueError, match="not repeated"):
        builtin_structure("network", (2, 1, 1))


@pytest.mark.parametrize("workflow", ["amorphous", "compression", "spectra", "pipeline"])
def test_build_builder(qe_codes, pseudo_family, workflow):
    from aiida.engine import ProcessBuilder

    structure = orm.StructureData(ase=builtin_structure("rutile"))
    builder = build_builder(workflow, "fast", structure=structure, pressures=[0.0, 20.0], pw_code=qe_codes["pw"],
                            projwfc_code=qe_codes["projwfc"])
    assert isinstance(builder, ProcessBuilder)
    assert builder.process_class.__name__ == {"amorphous": "AmorphousWorkChain", "compression": "CompressionWorkChain",
                                              "spectra": "SpectraWorkChain", "pipeline": "PipelineWorkChain"}[workflow]
    if workflow == "amorphous":
        assert builder.structure.uuid == structure.uuid and builder.nstep_melt.value == 3
    if workflow == "compression":
        assert builder.pressures.get_list() == [0.0, 20.0]
        assert builder.structure.uuid == structure.uuid
    if workflow == "spectra":
        assert list(builder.structures) == ["snapshot_0"]
    if workflow == "pipeline":
        assert builder.compression["pressures"].get_list() == [0.0, 20.0]
    with pytest.raises(ValueError, match="needs pressures"):
        build_builder("compression", "fast", structure=structure, pw_code=qe_codes["pw"])


@pytest.mark.parametrize("args, fragment", [
    (["compression", "--builtin", "rutile", "--pressures", "0 -10"], "non-negative"),
    (["compression", "--builtin", "rutile", "--pressures", "0 abc"], "must be numbers"),
    (["spectra"], "exactly one of --structure FILE or --builtin"),
    (["spectra", "--builtin", "rutile", "--structure", "x.cif"], "exactly one of"),
    (["spectra", "--structure", "/nonexistent/GeO2.cif"], "does not exist"),
    (["spectra", "--builtin", "quartz", "--supercell", "0", "1", "1"], "positive integers"),
    (["analysis", "--spectra", "1"], "--snapshots PK"),
    (["analysis", "--spectra", "987654321", "--snapshots", "987654322"], "no node with pk 987654321"),
    (["pipeline", "--builtin", "rutile", "--pw-code", "no-such-code"], "code 'no-such-code' (--pw-code) not found"),
    (["fancy"], "Invalid value"),
    (["spectra", "--builtin", "rutile", "--protocol", "slow"], "Invalid value"),
])
def test_launch_errors(args, fragment):
    before = orm.QueryBuilder().append(orm.WorkChainNode).count()
    assert_fails(invoke("launch", *args), fragment)
    assert orm.QueryBuilder().append(orm.WorkChainNode).count() == before


def test_launch_unreadable_structure_and_wrong_nodes(tmp_path, made_data):
    (tmp_path / "bad.xyz").write_text("3\nnot a comment\nGe 0 0\n")
    assert_fails(invoke("launch", "spectra", "--structure", tmp_path / "bad.xyz"), "cannot read a structure")
    (tmp_path / "molecule.xyz").write_text("1\n\nGe 0 0 0\n")
    assert_fails(invoke("launch", "spectra", "--structure", tmp_path / "molecule.xyz"), "no 3-D cell")
    spectra = made_data["spectra"]
    assert_fails(invoke("launch", "analysis", "--spectra", spectra.pk, "--snapshots", spectra.pk),
                 f"node {spectra.pk} is a XesSpectraData, not a TrajectoryData")


def test_launch_analysis_runs(aiida_profile):
    """xesml.analysis for real (no QE): synthetic spectra of 36-atom quartz- and rutile-type snapshots in a trajectory."""
    grid = energy_grid(-30.0, 5.0, 0.05)
    structures, rows = [], {"intensity": [], "site": [], "snapshot": [], "label": []}
    for k in range(8):
        label = 0.0 if k % 2 == 0 else 20.0
        base = supercell(quartz_geo2(), (2, 2, 1)) if label == 0.0 else supercell(rutile_geo2(), (3, 2, 1))
        atoms = rattle_and_strain(base, rattle=0.06, strain=0.02, seed=k)
        atoms = atoms[np.argsort(atoms.numbers, kind="stable")]  # one species order for the trajectory
        ge, r, spread, cn = first_shell_geometry(atoms)
        structures.append(orm.StructureData(ase=atoms))
        rows["intensity"].append(synthetic_site_spectra(r, spread, cn, grid))
        rows["site"].append(ge)
        rows["snapshot"].append(np.full(len(ge), k))
        rows["label"].append(np.full(len(ge), label))
    trajectory = orm.TrajectoryData(structurelist=structures).store()
    spectra = XesSpectraData()
    spectra.set_spectra(energy_ev=grid, intensity=np.vstack(rows["intensity"]), site_index=np.concatenate(rows["site"]),
                        reference_ev=np.zeros(sum(map(len, rows["site"]))),
                        snapshot_index=np.concatenate(rows["snapshot"]), label=np.concatenate(rows["label"]))
    spectra.store()
    result = invoke("launch", "analysis", "--spectra", spectra.pk, "--snapshots", trajectory.pk, "--protocol", "fast")
    assert_ok(result)
    assert "exit status 0" in result.output and "eca <" in result.output, result.output
    node = orm.QueryBuilder().append(orm.WorkChainNode, tag="w").order_by({"w": {"id": "desc"}}).first()[0]
    assert node.is_finished_ok and node.process_label == "AnalysisWorkChain"
    assert node.inputs.spectra.uuid == spectra.uuid and node.inputs.snapshots.uuid == trajectory.uuid
    assert f"<{node.pk}>" in result.output
    # the reconstruction per label, CN and first shell ± their spread over the ensemble, as stored
    reconstruction = node.outputs.reconstruction
    assert f"Reconstruction <{reconstruction.pk}> per label" in result.output
    lines = result.output.splitlines()
    for i, label in enumerate(reconstruction.get_array("label")):
        cn, spread = reconstruction.get_array("cn")[i], reconstruction.get_array("cn_spread")[i]
        shell = reconstruction.get_array("first_shell_mean_angstrom")[i]
        shell_spread = reconstruction.get_array("first_shell_mean_angstrom_spread")[i]
        assert any(line.split()[:1] == [f"{label:g}"] and f"{cn:.2f} ± {spread:.2f}" in line
                   and f"{shell:.3f} ± {shell_spread:.3f}" in line for line in lines), result.output
    if "held_out_cn" in reconstruction.get_arraynames():
        assert "From the held-out snapshots only" in result.output


def test_reconstruction_table_reads_a_version_1_node(aiida_profile, capsys):
    """A node of the old layout (integer count as `cn`, smooth CN as `cn_fractional`, no spreads) prints its smooth
    CN as CN, without ±."""
    from aiida_xesml.cli.tables import reconstruction_table

    node = orm.ArrayData()
    for name, value in (("label", [0.0, 20.0]), ("n_spectra", [8, 12]), ("cn", [4, 6]), ("cn_fractional", [4.12, 5.87]),
                        ("first_shell_mean_angstrom", [1.741, 1.883]), ("distances_angstrom", np.ones((2, 11))),
                        ("true_cn_mean", [4.0, 6.0]), ("true_first_shell_mean_angstrom", [1.74, 1.88])):
        node.set_array(name, np.asarray(value))
    assert reconstruction_table(node, title="old node")
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.split()[:1] in
            (["0"], ["20"])}
    assert rows["0"][1:] == ["8", "4.12", "4.00", "1.741", "4.00", "1.740"]
    assert rows["20"][1:] == ["12", "5.87", "6.00", "1.883", "6.00", "1.880"]
    assert not reconstruction_table(node, "held_out_")


def test_reconstruct_linear_method_reads_the_mean_six_fold_spectrum(eca, made_data, tmp_path):
    """--method linear (with --reference-ev): the readout fitted on the training sites' computed moments reads the
    mean spectrum of the 6-fold sites as 6-fold, ± over bootstrap readouts, and prints no misfit (it fits none)."""
    six = made_data["labels"] == 20.0
    path = tmp_path / "six.txt"
    path.write_text(spectrum_text(made_data["grid"] + REFERENCE_EV, made_data["intensity"][six].mean(axis=0)))
    result = invoke("reconstruct", path, "--eca", eca.pk, "--reference-ev", REFERENCE_EV, "--method", "linear")
    assert_ok(result)
    assert "bootstrap readouts, linear" in result.output and "Inverse misfit" not in result.output
    cn = float(re.search(r"CN: ([0-9.]+) ± ([0-9.]+)", result.output).group(1))
    assert cn == pytest.approx(6.0, abs=0.3), result.output
    assert_fails(invoke("reconstruct", path, "--eca", eca.pk, "--method", "linear"),
                 "--method linear reads the moments themselves")
