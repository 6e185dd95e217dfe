"""The shipped reference data sets (examples/data): checksums, counts, provenance, and one snapshot re-run.

The archive imported here is the smaller one (``crystalline-holdout`` when it is there); the .npz
checks run on every data set in the manifest.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiida_xesml.ml.reference_data import DATA_DIR, load_reference_npz, reference_path, sha256
from aiida_xesml.ml.structures import coordination_numbers

MANIFEST = DATA_DIR / "MANIFEST.json"
#: states/eV; the spectra peak at about 1 state/eV per site (measured difference: see the re-run test).
ATOL = 1e-4


def manifest() -> dict:
    assert MANIFEST.is_file(), f"{MANIFEST} is missing: run examples/reference_dataset.py"
    return json.loads(MANIFEST.read_text())["datasets"]


DATASETS = sorted(manifest())
IMPORTED = "crystalline-holdout" if "crystalline-holdout" in DATASETS else DATASETS[0]


@pytest.mark.parametrize("name", DATASETS)
def test_files_match_their_checksums(name):
    entry = manifest()[name]
    for key in ("archive", "npz"):
        path = DATA_DIR / entry[key]
        assert path.stat().st_size == entry[f"{key}_bytes"]
        assert sha256(path) == entry[f"{key}_sha256"], f"{path} changed since it was exported"


@pytest.mark.parametrize("name", DATASETS)
def test_npz_counts_and_coordination_from_its_own_structures(name):
    """The CN of every site, recomputed from the snapshot arrays, and the counts of the manifest."""
    entry = manifest()[name]
    data = load_reference_npz(reference_path(name))
    assert data.n_sites == entry["n_sites"] and data.n_snapshots == entry["n_snapshots"]
    frames = data.structures()
    for index, atoms in enumerate(frames):
        rows = np.flatnonzero(data.snapshot_index == index)
        ge = np.flatnonzero(atoms.numbers == 32)
        np.testing.assert_array_equal(np.sort(data.site_index[rows]), ge)  # every Ge site once
        per_ge = dict(zip(ge, coordination_numbers(atoms, 2.3)))
        np.testing.assert_array_equal(data.cn[rows], [per_ge[site] for site in data.site_index[rows]])
        assert np.all(data.label[rows] == data.snapshot_label[index])
    assert {str(cn): count for cn, count in data.cn_histogram().items()} == entry["sites_per_cn"]
    labels = {f"{label:g}": int(np.sum(data.label == label)) for label in np.unique(data.label)}
    assert labels == entry["sites_per_label"]
    assert np.all(np.isfinite(data.intensity)) and data.intensity.min() > -1e-12


@pytest.fixture(scope="module")
def imported(aiida_profile):
    """The archive of IMPORTED, imported into the test profile: its per-snapshot spectra, in data-set order."""
    from aiida import orm
    from aiida.tools.archive import import_archive

    entry = manifest()[IMPORTED]
    import_archive(DATA_DIR / entry["archive"])
    group = orm.load_group(entry["group"])
    parts = sorted(group.nodes, key=lambda node: node.base.extras.get("xesml_reference_snapshot"))
    assert [part.uuid for part in parts] == entry["spectra_uuids"]
    return parts, entry


def test_the_archive_holds_the_npz_data(imported):
    """The .npz is the archive's spectra stacked in snapshot order (merge_spectra's layout)."""
    from aiida_xesml.calculations.merge_spectra import merge_spectra

    parts, entry = imported
    data = load_reference_npz(reference_path(IMPORTED))
    merged = merge_spectra(**{f"snapshot_{index}": part for index, part in enumerate(parts)},
                           metadata={"store_provenance": False})
    np.testing.assert_array_equal(merged.intensity, data.intensity)
    np.testing.assert_array_equal(merged.energy_ev, data.energy_ev)
    for name in ("snapshot_index", "site_index", "reference_ev"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(data, name))
    np.testing.assert_array_equal(merged.row_labels, data.label)
    assert merged.n_spectra == entry["n_sites"]


def test_every_row_traces_back_to_its_structure_and_calculations(imported):
    """Each snapshot's spectra <- compute_spectra <- (structure, site_projections <- projwfc.x <- the SCF's
    remote folder <- pw.x <- the same structure); every row is a Ge site of that structure."""
    from aiida import orm

    parts, entry = imported
    for part, uuid in zip(parts, entry["snapshot_uuids"]):
        compute = part.creator
        assert compute.process_label == "compute_spectra"
        structure = compute.inputs.structure
        assert structure.uuid == uuid
        kinds = [structure.sites[site].kind_name for site in part.site_index]
        assert set(kinds) == {"Ge"} and part.n_spectra == len(structure.sites) // 3
        projwfc = compute.inputs.site_projections.creator
        assert projwfc.process_label == "ProjwfcCalculation" and projwfc.is_finished_ok
        pw = projwfc.inputs.parent_folder.creator
        assert isinstance(pw, orm.CalcJobNode) and pw.process_label == "PwCalculation"
        assert pw.inputs.structure.uuid == uuid


@pytest.mark.qe
def test_one_snapshot_rerun_agrees_with_the_archive(imported, qe_codes, pseudo_family):
    """The smallest snapshot of the archive through xesml.spectrum again, with the archive's own inputs.

    Same protocol, spectrum parameters, pseudopotential files and MPI layout (one process) on the
    same QE build: the spectra agree to ATOL states/eV (peaks are ~1 states/eV). What may differ is
    the SCF's path to convergence (conv_thr 1e-10 Ry per atom) with another BLAS, FFT or rank count;
    measured here: 1.3e-15 states/eV at most (QE 6.7 of Debian, OpenBLAS, one process), so ATOL
    leaves room for another BLAS or FFT build without hiding a changed calculation.
    """
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.manage.caching import disable_caching

    from aiida_xesml.workflows.spectrum import SpectrumWorkChain

    parts, entry = imported
    index = min(range(len(parts)), key=lambda i: (len(parts[i].creator.inputs.structure.sites), i))
    part = parts[index]
    archived = part.creator  # compute_spectra: its structure and spectrum parameters
    parameters = {key: value for key, value in archived.inputs.parameters.get_dict().items()}
    builder = SpectrumWorkChain.get_builder_from_protocol(
        qe_codes["pw"], qe_codes["projwfc"], archived.inputs.structure, protocol=entry["settings"]["spectrum_protocol"],
        overrides={"parameters": parameters}, options={"resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1}})
    with disable_caching():  # a real run, not a clone of the imported calculations
        results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert not any(calc.base.caching.is_created_from_cache for calc in node.called_descendants
                   if isinstance(calc, orm.CalcJobNode))
    rerun = results["spectra"]
    np.testing.assert_array_equal(rerun.site_index, part.site_index)
    np.testing.assert_allclose(rerun.reference_ev, part.reference_ev, atol=1e-4)
    np.testing.assert_allclose(rerun.intensity, part.intensity, rtol=0, atol=ATOL)


MD_SETS = [name for name in DATASETS if manifest()[name].get("compression_summary")]


def test_an_md_snapshot_traces_back_to_the_md_run_that_made_it(aiida_profile):
    """An MD snapshot's structure <- extract_snapshots <- the stitched trajectory <- pw.x md segments, and the
    snapshot's positions are a frame of that trajectory (the archive keeps the compression's provenance)."""
    from aiida import orm
    from aiida.tools.archive import import_archive

    assert MD_SETS, "examples/data should hold an MD data set (compressed-md)"
    entry = manifest()[MD_SETS[0]]
    import_archive(DATA_DIR / entry["archive"])
    structure = orm.load_node(entry["snapshot_uuids"][-1])
    extract = structure.creator
    assert extract.process_label == "extract_snapshots"
    trajectory = next(node for node in extract.base.links.get_incoming().all_nodes()
                      if isinstance(node, orm.TrajectoryData))
    frames = trajectory.get_array("positions")
    assert np.min(np.abs(frames - structure.get_ase().positions).max(axis=(1, 2))) < 1e-6
    # back through the stitching (or sampling) calcfunctions to the pw.x runs of the MD
    runs = orm.QueryBuilder().append(orm.Node, filters={"id": trajectory.pk}, tag="trajectory").append(
        orm.CalcJobNode, with_descendants="trajectory", project="*").all(flat=True)
    calculations = {run.inputs.parameters["CONTROL"]["calculation"] for run in runs
                    if run.process_label == "PwCalculation"}
    assert {"md", "vc-relax"} <= calculations, calculations


def glass_parts() -> dict:
    return json.loads(MANIFEST.read_text()).get("glass_parts", {})


def md_parts() -> list[str]:
    """The glass parts that are one xesml.md run (a melt or a quench), not a whole glass."""
    return sorted(key for key, entry in glass_parts().items() if "nstep" in entry)


def imported_glass_part(key: str):
    """Check a glass part's archive against its manifest entry (size, SHA-256), import it, and return the
    entry and the process node it names."""
    from aiida import orm
    from aiida.tools.archive import import_archive

    entry = glass_parts()[key]
    path = DATA_DIR / entry["archive"]
    assert path.stat().st_size == entry["archive_bytes"] and sha256(path) == entry["archive_sha256"]
    import_archive(path)
    return entry, orm.load_node(entry["process_uuid"])


@pytest.mark.parametrize("key", md_parts())
def test_a_glass_part_imports_as_a_finished_md_that_a_glass_can_continue_from(aiida_profile, key):
    """A melt or quench archived by the campaign (examples/reference_dataset.py): its checksum, and an xesml.md
    whose outputs are what xesml.amorphous's from_melt / from_quench take, at the temperatures the manifest says."""
    entry, md = imported_glass_part(key)
    assert md.process_label == "MdWorkChain" and md.is_finished_ok
    assert md.base.extras.get("xesml_reference_stage") == key
    trajectory, last, velocities = (md.outputs[name] for name in ("trajectory", "structure", "velocities"))
    assert trajectory.numsteps == entry["nstep"] + 1 == md.inputs.nstep.value + 1
    assert md.inputs.temperature_k.value == entry["temperature_k"]
    assert velocities.get_array("velocities").shape == (len(last.sites), 3)
    np.testing.assert_allclose(last.cell, md.inputs.structure.cell, atol=1e-6)  # fixed-cell MD


def glass_archives() -> list[str]:
    """The glass parts that are a whole xesml.amorphous run (melt, quench and relax)."""
    return sorted(key for key, entry in glass_parts().items() if "density_g_cm3" in entry)


@pytest.mark.parametrize("key", glass_archives())
def test_a_whole_glass_imports_with_the_density_and_coordination_its_manifest_states(aiida_profile, key):
    """The checksum, a finished xesml.amorphous whose relax started from its quench's structure or a
    ``relax_from``, and the density and CN histogram recomputed from its output structure (ASE masses, O within
    2.3 Å of each Ge) against the manifest's, which the campaign took from the run's own summary."""
    from aiida_xesml.ml.structures import coordination_numbers, density

    entry, glass = imported_glass_part(key)
    assert glass.process_label == "AmorphousWorkChain" and glass.is_finished_ok
    atoms = glass.outputs.structure.get_ase()
    assert density(atoms) == pytest.approx(entry["density_g_cm3"], rel=1e-6)
    counts = np.bincount(coordination_numbers(atoms, 2.3).astype(int))
    assert {str(cn): int(n) for cn, n in enumerate(counts) if n} == entry["cn_histogram"]
    start = glass.inputs.relax_from if "relax_from" in glass.inputs else glass.outputs.quenched_structure
    assert glass.outputs.quenched_structure.get_cell_volume() != pytest.approx(atoms.cell.volume, rel=1e-3)
    (relax,) = glass.base.links.get_outgoing(link_label_filter="relax").all_nodes()
    assert relax.process_label == "PwRelaxWorkChain" and relax.inputs.structure.uuid == start.uuid


def pressure_parts() -> list[str]:
    """The glass parts that are the site spectra of one pressure of the ladder."""
    return sorted(key for key, entry in glass_parts().items() if "target_pressure_gpa" in entry)


@pytest.mark.parametrize("key", pressure_parts())
def test_a_pressure_part_holds_its_spectra_and_the_md_a_ladder_continues_from(aiida_profile, key):
    """One pressure of the glass ladder, archived by the campaign when its spectra finished: the checksums, the
    archive's spectra against the .npz row by row, the summary's CN recomputed from the snapshots, and the MD
    trajectory behind the summary, which `rescale_to_pressure` (what a later sitting continues the ladder with)
    scales to a smaller volume for a pressure 10 GPa higher."""
    from aiida import orm
    from aiida.tools.archive import import_archive

    from aiida_xesml.calculations.rescale_to_pressure import rescale_to_pressure

    entry = glass_parts()[key]
    for kind in ("archive", "npz"):
        path = DATA_DIR / entry[kind]
        assert path.stat().st_size == entry[f"{kind}_bytes"] and sha256(path) == entry[f"{kind}_sha256"]
    import_archive(DATA_DIR / entry["archive"])
    parts = [orm.load_node(uuid) for uuid in entry["spectra_uuids"]]
    assert [part.base.extras.get("xesml_reference_part_index") for part in parts] == list(range(len(parts)))
    data = load_reference_npz(DATA_DIR / entry["npz"])
    assert data.n_snapshots == len(parts) == entry["summary"]["n_snapshots"]
    for index, part in enumerate(parts):
        rows = np.flatnonzero(data.snapshot_index == index)
        np.testing.assert_array_equal(data.site_index[rows], part.site_index)
        np.testing.assert_allclose(data.intensity[rows], part.intensity, rtol=0, atol=0)
        assert np.all(part.row_labels == entry["target_pressure_gpa"])
    summary = orm.load_node(entry["summary_uuid"])
    assert summary["target_pressure_gpa"] == entry["target_pressure_gpa"]
    cn = np.concatenate([coordination_numbers(atoms, 2.3) for atoms in data.structures()])
    assert summary["cn_mean"] == pytest.approx(cn.mean(), abs=1e-12)
    assert entry["summary"]["cn_mean"] == pytest.approx(summary["cn_mean"], abs=1e-12)
    trajectory = summary.creator.inputs.trajectory
    assert trajectory.uuid == entry["md_trajectory_uuid"] and trajectory.numsteps > summary["n_equilibration"]
    rescaled = rescale_to_pressure(trajectory=trajectory, n_equilibration=orm.Int(summary["n_equilibration"]),
                                   target_pressure_gpa=orm.Float(entry["target_pressure_gpa"] + 10.0),
                                   bulk_modulus_gpa=orm.Float(40.0))
    correction = rescaled["correction"].get_dict()
    assert correction["measured_pressure_gpa"] == pytest.approx(summary["pressure_gpa"], abs=1e-9)
    assert correction["volume_after_a3"] < correction["volume_before_a3"]
    assert rescaled["structure"].get_cell_volume() == pytest.approx(correction["volume_after_a3"], rel=1e-9)
