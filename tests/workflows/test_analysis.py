"""xesml.analysis on spectra and structures made here (no QE): provenance, archives, reconstruction, bad input.

The structures are rattled quartz-type (4-fold Ge, label 0) and rutile-type (6-fold Ge, label 20)
supercells. Each Ge site gets a synthetic spectrum of two Gaussian peaks whose energies, heights and
widths follow its first-shell geometry, read with ASE's neighbour list (independently of the
descriptor code), with the sign and size of the measured Kβ″/Kβ2 shifts between the polymorphs.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_xesml.data.spectra import XesSpectraData
from aiida_xesml.ml.spectra import energy_grid
from aiida_xesml.ml.structures import quartz_geo2, rattle_and_strain, rutile_geo2, supercell
from aiida_xesml.ml.synthetic import first_shell_geometry, synthetic_site_spectra
from aiida_xesml.workflows.analysis import AnalysisWorkChain

CUTOFF = 2.3  # Å, Ge–O bond


@pytest.fixture(scope="module")
def made_data(aiida_profile):
    """Structures, spectra and the true per-label first-shell means (12 cells per polymorph)."""
    grid = energy_grid(-30.0, 5.0, 0.05)
    structures, rows = {}, {"intensity": [], "site": [], "snapshot": [], "label": []}
    true = {0.0: ([], []), 20.0: ([], [])}
    for k in range(24):
        label = 0.0 if k % 2 == 0 else 20.0
        base = supercell(quartz_geo2(), (2, 2, 1)) if label == 0.0 else supercell(rutile_geo2(), (2, 2, 2))
        atoms = rattle_and_strain(base, rattle=0.06, strain=0.02, seed=k)
        ge, r, spread, cn = first_shell_geometry(atoms, CUTOFF)
        structures[f"snapshot_{k}"] = orm.StructureData(ase=atoms)
        rows["intensity"].append(synthetic_site_spectra(r, spread, cn, grid))
        rows["site"].append(ge)
        rows["snapshot"].append(np.full(len(ge), k))
        rows["label"].append(np.full(len(ge), label))
        true[label][0].append(r)
        true[label][1].append(cn)
    spectra = XesSpectraData()
    spectra.set_spectra(energy_ev=grid, intensity=np.vstack(rows["intensity"]), site_index=np.concatenate(rows["site"]),
                        reference_ev=np.zeros(sum(map(len, rows["site"]))),
                        snapshot_index=np.concatenate(rows["snapshot"]), label=np.concatenate(rows["label"]),
                        parameters={"note": "synthetic spectra made by the test"})
    means = {label: (float(np.concatenate(r).mean()), float(np.concatenate(cn).mean())) for label, (r, cn) in true.items()}
    return {"structures": structures, "spectra": spectra, "true": means}


#: The balanced protocol with a smaller selection (12 network fits in CV instead of 90): what is tested here is
#: the work chain, its outputs and its numbers against the truth, not the breadth of the demo's grid.
SMALLER_SELECTION = {"training_parameters": {"cv_folds": 3, "feature_sets": ["full", "row0"],
                                             "network_grid": {"hidden_layer_sizes": [[32]], "alpha": [1.0, 10.0]}}}


@pytest.fixture(scope="module")
def analysis(made_data):
    builder = AnalysisWorkChain.get_builder_from_protocol(made_data["spectra"], made_data["structures"],
                                                          protocol="balanced", overrides=SMALLER_SELECTION)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    return results, node


def test_provenance_links(analysis, made_data):
    results, node = analysis
    called = {link.link_label: link.node for link in node.base.links.get_outgoing().all()
              if link.link_type.value == "call_calc"}
    assert set(called) >= {"compute_moments", "featurize", "build_dataset", "train_emulator", "fit_eca", "reconstruct"}
    # each output's creator, and the creator's inputs
    assert results["moments"].creator.uuid == called["compute_moments"].uuid
    assert called["compute_moments"].inputs.spectra.uuid == made_data["spectra"].uuid
    featurize_inputs = {s.uuid for s in called["featurize"].base.links.get_incoming().all_nodes()
                        if isinstance(s, orm.StructureData)}
    assert featurize_inputs == {s.uuid for s in made_data["structures"].values()}
    assert results["dataset"].creator.uuid == called["build_dataset"].uuid
    assert called["build_dataset"].inputs.descriptors.uuid == results["descriptors"].uuid
    assert called["build_dataset"].inputs.moments.uuid == results["moments"].uuid
    assert results["emulator"].creator.inputs.dataset.uuid == results["dataset"].uuid
    assert results["eca"].creator.inputs.emulator.uuid == results["emulator"].uuid
    reconstruction = results["reconstruction"]
    assert reconstruction.creator.inputs.eca.uuid == results["eca"].uuid
    assert reconstruction.creator.inputs.spectra.uuid == made_data["spectra"].uuid
    assert reconstruction.creator.inputs.dataset.uuid == results["dataset"].uuid
    # one node per step, not per sample
    assert results["dataset"].n_rows == made_data["spectra"].n_spectra == 12 * 12 + 12 * 16


def test_reconstruction_of_the_ensemble_means_lands_near_the_truth(analysis, made_data):
    results, _ = analysis
    reconstruction = results["reconstruction"]
    labels = reconstruction.get_array("label")
    np.testing.assert_array_equal(labels, [0.0, 20.0])
    assert reconstruction.base.attributes.get("descriptor")["ordering"] == "species"
    for i, label in enumerate(labels):
        r_true, cn_true = made_data["true"][label]
        # the plugin's true means (from the descriptors) agree with ASE's neighbour list: every O of these crystals
        # lies within 2.2 Å or beyond 2.4 Å, so the smooth CN is the integer count
        assert reconstruction.get_array("true_first_shell_mean_angstrom")[i] == pytest.approx(r_true, abs=1e-9)
        assert reconstruction.get_array("true_cn")[i] == pytest.approx(cn_true, abs=1e-9)
        assert reconstruction.get_array("true_cn_count")[i] == pytest.approx(cn_true, abs=1e-9)
        # the population reconstruction from the ensemble-mean spectrum lands near them (issue 12's tolerances)
        assert reconstruction.get_array("first_shell_mean_angstrom")[i] == pytest.approx(r_true, abs=0.03)
        assert reconstruction.get_array("cn")[i] == pytest.approx(cn_true, abs=0.3)
    # every value carries the spread of the emulator ensemble's members
    spread = reconstruction.get_array("cn_spread")
    assert spread.shape == (2,) and np.all(np.isfinite(spread)) and np.all(spread >= 0)
    assert reconstruction.base.attributes.get("settings")["n_members"] == 5
    # the range over every population that matches the moments (NaN: none does), in the node and in the summary
    ranges = reconstruction.get_array("cn_range")
    assert ranges.shape == (2, 2) and reconstruction.get_array("held_out_cn_range").shape == (2, 2)
    rows = results["reconstruction_summary"]["rows"]
    for i, (low, high) in enumerate(ranges):
        assert (np.isnan(low) and np.isnan(high)) or 4.0 - 1e-9 <= low <= high <= 6.0 + 1e-9
        assert rows[i]["cn_range"] == [None if np.isnan(v) else pytest.approx(v) for v in (low, high)]
    # targets made of held-out snapshots only: the emulator and the population never saw their sites
    held_out = reconstruction.get_array("held_out_label")
    np.testing.assert_array_equal(held_out, [0.0, 20.0])
    np.testing.assert_allclose(reconstruction.get_array("held_out_cn"), reconstruction.get_array("held_out_true_cn"),
                               atol=0.3)


def test_honest_metrics_grouped_split_baseline_and_held_out_eca(analysis):
    results, _ = analysis
    dataset, split, metrics = results["dataset"], results["split"], results["metrics"].get_dict()
    train, test = split.get_array("train"), split.get_array("test")
    assert split.base.attributes.get("split") == metrics["split"] == "snapshot"
    # whole snapshots are held out: no snapshot has sites on both sides
    assert not set(dataset.snapshot_index[train]) & set(dataset.snapshot_index[test])
    assert metrics["n_test"] == len(test) and metrics["n_test_groups"] == len(set(dataset.snapshot_index[test]))
    # the network and the ridge baseline are scored on the same held-out rows; the verdict names the winner
    assert set(metrics["network"]) == set(metrics["ridge"]) == set(metrics["targets"])
    assert metrics["selected"] in ("network", "ridge") and metrics["selected"] in metrics["verdict"]
    assert metrics["targets"]["kbpp_m1"]["pearson_r"] > 0.9
    emulator, baseline = results["emulator"], results["baseline"]
    assert emulator.base.attributes.get("kind") == metrics["selected"] and baseline.base.attributes.get("kind") == "ridge"
    assert len(emulator.get_members()) == 5 and emulator.base.attributes.get("selection")["candidates"]
    # ECA is scored on the held-out rows too
    eca = results["eca"]
    assert len(eca.covered_variance_held_out) == len(eca.covered_variance) == 3
    assert eca.base.attributes.get("n_test") == len(test)


def test_archive_import_in_a_fresh_profile_predicts_bit_identically(analysis, tmp_path):
    """Export the emulator and ECA with their provenance, import them into a new profile in another
    process (no plugin code is needed to read the arrays), and compare predictions bit for bit."""
    from aiida.tools.archive import create_archive

    results, _ = analysis
    emulator, eca, dataset = results["emulator"], results["eca"], results["dataset"]
    archive = tmp_path / "analysis.aiida"
    create_archive([emulator, eca], filename=archive)
    X = emulator.select_features(dataset.descriptors[:25])  # the emulator's own feature set of the descriptor
    np.save(tmp_path / "X.npy", X)
    expected = emulator.get_emulator().predict(X)
    expected_scores = eca.get_eca().transform(X)

    env = {**os.environ, "AIIDA_PATH": str(tmp_path / "fresh")}
    verdi = os.path.join(os.path.dirname(sys.executable), "verdi")
    subprocess.run([verdi, "presto", "--profile-name", "fresh", "--use-zeromq"], env=env, check=True,
                   capture_output=True)
    subprocess.run([verdi, "-p", "fresh", "archive", "import", str(archive)], env=env, check=True,
                   capture_output=True)
    script = f"""
import io, json, numpy as np
from aiida import load_profile, orm
load_profile("fresh")
emulator = orm.load_node("{emulator.uuid}")
eca = orm.load_node("{eca.uuid}")
X = np.load("{tmp_path / 'X.npy'}", allow_pickle=False)
np.save("{tmp_path / 'predicted.npy'}", emulator.get_emulator().predict(X), allow_pickle=False)
np.save("{tmp_path / 'members.npy'}", np.stack([m.predict(X) for m in emulator.get_members()]), allow_pickle=False)
np.save("{tmp_path / 'scores.npy'}", eca.get_eca().transform(X), allow_pickle=False)
names = [f for node in (emulator, eca) for f in node.base.repository.list_object_names()]
# Every xesml node the archive brought (the emulator, the ECA and their provenance): each repository
# file must be an .npy that numpy reads with pickles refused, and none may start like a pickle.
xesml = orm.QueryBuilder().append(orm.Data, filters={{"node_type": {{"like": "data.xesml.%"}}}}).all(flat=True)
checked, bad = 0, []
for node in xesml:
    for name in node.base.repository.list_object_names():
        content = node.base.repository.get_object_content(name, mode="rb")
        try:
            np.load(io.BytesIO(content), allow_pickle=False)
        except ValueError as exc:
            bad.append(f"{{node.node_type}} {{name}}: {{exc}}")
        if not name.endswith(".npy") or content[:1] == bytes([0x80]) or name.endswith((".pkl", ".pickle", ".joblib")):
            bad.append(f"{{node.node_type}} {{name}}")
        checked += 1
print(json.dumps({{"type": emulator.node_type, "files": names, "xesml_nodes": len(xesml), "checked": checked,
                  "bad": bad}}))
"""
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["type"].startswith("data.xesml.emulator")
    assert all(name.endswith(".npy") for name in info["files"]), info["files"]
    # the archive holds the provenance too: spectra, descriptors, data set, emulator, ECA
    assert info["xesml_nodes"] >= 4 and info["checked"] >= 10, info
    assert info["bad"] == [], info["bad"]
    np.testing.assert_array_equal(np.load(tmp_path / "predicted.npy"), expected)
    np.testing.assert_array_equal(np.load(tmp_path / "members.npy"),
                                  np.stack([m.predict(X) for m in emulator.get_members()]))
    np.testing.assert_array_equal(np.load(tmp_path / "scores.npy"), expected_scores)


@pytest.fixture
def bad_builder(made_data):
    def factory(**overrides):
        builder = AnalysisWorkChain.get_builder_from_protocol(made_data["spectra"], made_data["structures"],
                                                              protocol="fast")
        for key, value in overrides.items():
            builder[key] = value
        return builder

    return factory


def _run_and_expect(builder, status, *phrases):
    _, node = run_get_node(builder)
    assert node.exit_status == status, node.exit_message
    for phrase in phrases:
        assert phrase in node.exit_message
    assert not node.called  # nothing was computed or stored half-way


def test_mismatched_rows_is_an_input_error(bad_builder, made_data):
    structures = dict(made_data["structures"])
    structures.pop("snapshot_23")
    _run_and_expect(bad_builder(structures=structures), 302, "snapshot 23")
    # a spectra row naming an O atom as the emitter
    spectra = made_data["spectra"]
    site = spectra.site_index.copy()
    site[0] = 1 + site.max()
    moved = XesSpectraData()
    moved.set_spectra(spectra.energy_ev, spectra.intensity, site, spectra.reference_ev, spectra.snapshot_index,
                      spectra.row_labels)
    _run_and_expect(bad_builder(spectra=moved), 302, "no `Ge` atom")


def test_label_with_too_few_samples(bad_builder):
    _run_and_expect(bad_builder(min_samples_per_label=orm.Int(1000)), 303, "fewer than 1000 samples")


def test_more_eca_components_than_features(bad_builder):
    builder = bad_builder(descriptor_parameters=orm.Dict({"n_atoms": 3}),
                          eca_parameters=orm.Dict({"n_components": 7}))
    _run_and_expect(builder, 304, "[1, 6]")


def test_emulator_from_another_descriptor_size(bad_builder, analysis):
    results, _ = analysis
    builder = bad_builder(emulator=results["emulator"], descriptor_parameters=orm.Dict({"n_atoms": 12}))
    _run_and_expect(builder, 305, "78 features")


def test_provenance_queries(analysis, made_data):
    from aiida_xesml import query

    results, node = analysis
    reconstruction, dataset, emulator = results["reconstruction"], results["dataset"], results["emulator"]
    steps = {calc.process_label for calc in query.calculations_behind(reconstruction, process_class=orm.CalcFunctionNode)}
    assert steps == {"compute_moments", "featurize", "build_dataset", "train_emulator", "fit_eca", "reconstruct"}
    assert dataset.uuid in {d.uuid for d in query.datasets_by_label(10.0, 30.0)}
    assert dataset.uuid not in {d.uuid for d in query.datasets_by_label(25.0, 30.0)}
    r = results["metrics"]["targets"]["kbpp_m1"]["pearson_r"]
    assert emulator.uuid in {e.uuid for e in query.emulators_by_metric(r - 1e-6, target="kbpp_m1")}
    assert emulator.uuid not in {e.uuid for e in query.emulators_by_metric(r + 1e-6, target="kbpp_m1")}
    assert emulator.uuid not in {e.uuid for e in query.emulators_by_metric(emulator.base.attributes.get("pearson_r_min") + 1e-6)}
    assert query.reconstruction_for_label(20.0).uuid == reconstruction.uuid
    assert query.reconstruction_for_label(7.0) is None
    row = query.reconstruction_row(reconstruction, 20.0)
    assert row["cn"] == reconstruction.get_array("cn")[1] and row["cn_spread"] == reconstruction.get_array("cn_spread")[1]
    assert query.reconstruction_row(reconstruction, 20.0, held_out=True)["cn"] == reconstruction.get_array("held_out_cn")[1]


def test_featurize_keys_rows_by_the_snapshot_names(aiida_profile):
    """Row keys are the i of `snapshot_<i>`, also for more snapshots than numpy's choose() takes (64)."""
    from aiida_xesml.calculations.featurize import featurize

    structures = {f"snapshot_{2 * k + 1}": orm.StructureData(ase=rattle_and_strain(rutile_geo2(), 0.02, 0.0, seed=k))
                  for k in range(70)}
    node = featurize(orm.Dict({"n_atoms": 6}), **structures)["descriptors"]
    np.testing.assert_array_equal(node.get_array("snapshot_index"), np.repeat(np.arange(70) * 2 + 1, 2))
    np.testing.assert_array_equal(node.get_array("site_index"), np.tile([0, 1], 70))


def test_reconstruct_weighs_moments_equally_when_no_held_out_r2_is_positive(analysis, made_data):
    """A test-size hold-out can score every M0/M1 with R² <= 0; the reconstruction still runs, says so."""
    from aiida_xesml.calculations.reconstruct import reconstruct
    from aiida_xesml.data.eca import XesEcaData

    results, _ = analysis
    fitted = results["eca"]
    unscored = XesEcaData()
    unscored.set_eca(fitted.get_eca(), target_names=fitted.target_names, target_r2=[-0.5] * len(fitted.target_names),
                     feature_columns=fitted.feature_columns, descriptor_mean=fitted.descriptor_mean)
    unscored.base.attributes.set("descriptor", fitted.base.attributes.get("descriptor"))
    output = reconstruct(unscored, made_data["spectra"], orm.Dict({"n_atoms": 20, "method": "single_point"}))
    settings = output["reconstruction"].base.attributes.get("settings")
    assert settings["weighting"].startswith("equal")
    assert settings["target_weights"] == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    assert np.all(np.isfinite(output["reconstruction"].get_array("cn")))
    # without the data set there is no population to reweight: a clear error, nothing stored
    with pytest.raises(ValueError, match="population.*dataset"):
        reconstruct(unscored, made_data["spectra"], orm.Dict({"n_atoms": 20}))


def test_linear_method_reads_the_ensemble_means_with_bootstrap_spreads(analysis, made_data):
    """Method 'linear' of the reconstruct calcfunction: fitted on the data set's training sites' computed moments,
    it reads the 4- and 6-fold ensembles (and their held-out snapshots) within issue 12's tolerances."""
    from aiida_xesml.calculations.reconstruct import read_reconstruction, reconstruct

    results, _ = analysis
    known = {"dataset": results["dataset"], "emulator": results["emulator"], "split": results["split"]}
    output = reconstruct(results["eca"], made_data["spectra"], orm.Dict({"method": "linear"}), **known)
    node = output["reconstruction"]
    values = read_reconstruction(node)
    assert "inverse_loss" not in values and "cn_range" not in values  # no moments fitted, no populations bounded
    for prefix in ("", "held_out_"):
        np.testing.assert_allclose(node.get_array(f"{prefix}cn"), node.get_array(f"{prefix}true_cn"), atol=0.3)
        np.testing.assert_allclose(node.get_array(f"{prefix}first_shell_mean_angstrom"),
                                   node.get_array(f"{prefix}true_first_shell_mean_angstrom"), atol=0.03)
    assert node.get_array("cn")[1] - node.get_array("cn")[0] > 1.0
    spread = node.get_array("cn_spread")
    assert np.all(np.isfinite(spread)) and np.all(spread > 0)  # bootstrap resamples of the training snapshots
    assert output["summary"]["method"] == "linear" and "bootstrap" in output["summary"]["note"]
    with pytest.raises(ValueError, match="linear.*dataset"):
        reconstruct(results["eca"], made_data["spectra"], orm.Dict({"method": "linear"}))
