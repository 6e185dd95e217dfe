"""xesml.spectrum and xesml.spectra with real pw.x + projwfc.x on rutile- and quartz-type GeO2."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node

from aiida_xesml.ml.moments import DEFAULT_WINDOWS
from aiida_xesml.ml.structures import quartz_geo2, rutile_geo2
from aiida_xesml.workflows.spectra import SpectraWorkChain
from aiida_xesml.workflows.spectrum import SpectrumWorkChain

pytestmark = pytest.mark.qe


@pytest.fixture
def spectrum_builder(qe_codes, pseudo_family):
    def factory(atoms, **overrides):
        return SpectrumWorkChain.get_builder_from_protocol(
            qe_codes["pw"], qe_codes["projwfc"], orm.StructureData(ase=atoms), protocol="fast", overrides=overrides,
            pp_code=qe_codes["pp"])

    return factory


@pytest.fixture(scope="module")
def polymorph_runs(qe_codes, pseudo_family):
    """xesml.spectrum of both polymorphs at their experimental cells (one SCF + projwfc each)."""
    runs = {}
    for name, atoms in (("rutile", rutile_geo2()), ("quartz", quartz_geo2())):
        builder = SpectrumWorkChain.get_builder_from_protocol(
            qe_codes["pw"], qe_codes["projwfc"], orm.StructureData(ase=atoms), protocol="fast")
        results, node = run_get_node(builder)
        assert node.is_finished_ok, node.exit_message
        runs[name] = node
    return runs


@pytest.fixture(scope="module")
def polymorph_spectra(polymorph_runs):
    return {name: node.outputs.spectra for name, node in polymorph_runs.items()}


def test_every_ge_site_gets_a_spectrum_with_both_peaks(polymorph_spectra):
    for name, n_ge in (("rutile", 2), ("quartz", 3)):
        spectra = polymorph_spectra[name]
        assert spectra.n_spectra == n_ge
        np.testing.assert_array_equal(spectra.site_index, np.arange(n_ge))
        energy = spectra.energy_ev
        for lo, hi in DEFAULT_WINDOWS.values():
            inside = (energy >= lo) & (energy <= hi)
            window = spectra.intensity[:, inside]
            # a clear peak: the maximum stands well above the window's edges
            assert np.all(window.max(axis=1) > 5 * np.maximum(window[:, 0], window[:, -1])), name


def test_symmetry_equivalent_sites_agree(polymorph_spectra):
    # Two things had kept the α-quartz sites (related by the 3_1 screw) apart: projections read from
    # the stdout, rounded to three decimals (~1e-3), and the random part of pw.x's default starting
    # wavefunctions (~1e-6). Projections now come from atomic_proj.xml, and the SCF starts from
    # atomic wavefunctions alone (spectrum protocol).
    for name in ("rutile", "quartz"):
        spectra = polymorph_spectra[name]
        assert spectra.parameters["projections_source"] == "atomic_proj.xml"
        intensity = spectra.intensity
        assert np.abs(intensity - intensity[0]).max() < 1e-6, name  # states/eV


def test_kbpp_mean_energy_is_lower_and_stronger_in_sixfold_rutile(polymorph_spectra):
    """Kβ″ (O 2s seen through Ge p) sits deeper and is stronger for 6-fold Ge than for 4-fold Ge,
    relative to the VBM: more O neighbours, longer bonds, a more ionic O 2s band (docs/topics/spectra)."""
    rutile, quartz = (polymorph_spectra[name].moments().mean(axis=0) for name in ("rutile", "quartz"))
    assert rutile[1] < quartz[1] - 1.0  # M1 of Kβ″: -18.7 vs -17.2 eV measured
    assert rutile[0] > quartz[0]  # M0 of Kβ″: 0.33 vs 0.29 measured
    assert -20.5 < rutile[1] < -17.5 and -18.5 < quartz[1] < -16.0


def test_potential_alignment_runs_pp_and_shifts_per_site(spectrum_builder):
    results, node = run_get_node(spectrum_builder(rutile_geo2(), parameters={"alignment": "potential"}))
    assert node.is_finished_ok, node.exit_message
    assert any(child.process_label == "PpCalculation" for child in node.called)
    spectra = results["spectra"]
    assert spectra.parameters["alignment"] == "potential"
    # both rutile sites are equivalent, so both references agree; the offset puts them near the VBM
    np.testing.assert_allclose(spectra.reference_ev, spectra.reference_ev[0], atol=1e-6)
    assert abs(spectra.reference_ev[0] - spectra.parameters["homo_ev"]) < 1.0


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"grid": [5.0, -30.0, 0.05]}, "stop > start"),
        ({"fwhm": 0.0}, "fwhm"),
        ({"alignment": "core-hole"}, "alignment"),
        ({"emitter": "Si"}, "no `Si` atom"),
        ({"alignment": "semicore"}, "3d in valence"),
    ],
)
def test_bad_input_exits_before_anything_runs(spectrum_builder, parameters, fragment):
    _, node = run_get_node(spectrum_builder(rutile_geo2(), parameters=parameters))
    assert node.is_failed and 300 <= node.exit_status < 400
    assert fragment in node.exit_message and not node.called


def test_potential_alignment_needs_pp(spectrum_builder):
    builder = spectrum_builder(rutile_geo2(), parameters={"alignment": "potential"})
    builder.pop("pp")
    _, node = run_get_node(builder)
    assert node.exit_status == SpectrumWorkChain.exit_codes.ERROR_MISSING_PP.status


def test_failed_snapshot_is_left_out_and_the_others_kept(qe_codes, pseudo_family):
    """Three snapshots; the middle one has two atoms 0.62 Å apart (past the 0.5 Å overlap check). From
    pw.x's 'atomic+random' start (deterministic: QE seeds it) its SCF does not converge within 15
    steps, and no restart is allowed. (From the protocol's 'atomic' start it converges in 15.)"""
    good = rutile_geo2()
    bad = rutile_geo2()
    bad.positions[2] = bad.positions[0] + [0.62, 0.0, 0.0]
    structures = [orm.StructureData(ase=atoms) for atoms in (good, bad, good)]
    builder = SpectraWorkChain.get_builder_from_protocol(
        qe_codes["pw"], qe_codes["projwfc"], structures, protocol="fast", labels=[0.0, 10.0, 20.0],
        overrides={"scf": {"max_iterations": 1, "pw": {"parameters": {"ELECTRONS": {"electron_maxstep": 15,
                                                                                "startingwfc": "atomic+random"}}}}})
    builder.max_concurrent = orm.Int(2)
    results, node = run_get_node(builder)
    assert node.exit_status == SpectraWorkChain.exit_codes.ERROR_SOME_SNAPSHOTS_FAILED.status, node.exit_message
    # a sliding window of two: never three snapshots at once, and the third waits for the first
    children = sorted((c for c in node.called if c.process_label == "SpectrumWorkChain"), key=lambda c: c.ctime)
    calls = [c.base.links.get_incoming(link_type=LinkType.CALL_WORK).one().link_label for c in children]
    assert calls == ["snapshot_0", "snapshot_1", "snapshot_2"]
    assert children[2].ctime >= children[0].mtime or children[2].ctime >= children[1].mtime
    assert "1 of 3" in node.exit_message
    merged = results["spectra"]
    np.testing.assert_array_equal(merged.snapshot_index, [0, 0, 2, 2])
    np.testing.assert_array_equal(merged.row_labels, [0.0, 0.0, 20.0, 20.0])
    assert set(results["snapshot_spectra"]) == {"snapshot_0", "snapshot_2"}


def test_spectra_bad_input(qe_codes, pseudo_family):
    structures = [orm.StructureData(ase=rutile_geo2())]
    builder = SpectraWorkChain.get_builder_from_protocol(
        qe_codes["pw"], qe_codes["projwfc"], structures, protocol="fast", labels=[0.0, 1.0])
    _, node = run_get_node(builder)
    assert node.exit_status == SpectraWorkChain.exit_codes.ERROR_INVALID_LABELS.status
    atoms = rutile_geo2()
    atoms.symbols = ["Si" if s == "Ge" else s for s in atoms.get_chemical_symbols()]
    builder = SpectraWorkChain.get_builder_from_protocol(
        qe_codes["pw"], qe_codes["projwfc"], [orm.StructureData(ase=atoms)], protocol="fast")
    _, node = run_get_node(builder)
    assert node.exit_status == SpectraWorkChain.exit_codes.ERROR_INVALID_SNAPSHOT.status
    assert "no `Ge` atom" in node.exit_message


def test_snapshots_from_a_trajectory_keep_their_provenance(qe_codes, pseudo_family):
    """Frames of a TrajectoryData become structures through a calcfunction linked to it."""
    atoms = rutile_geo2()
    trajectory = orm.TrajectoryData()
    shifted = atoms.positions + 0.02
    trajectory.set_trajectory(symbols=atoms.get_chemical_symbols(), positions=np.stack([atoms.positions, shifted]),
                              cells=np.stack([atoms.cell[:]] * 2), pbc=(True, True, True))
    trajectory.store()
    builder = SpectraWorkChain.get_builder_from_protocol(qe_codes["pw"], qe_codes["projwfc"], trajectory,
                                                         protocol="fast")
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    for child in node.called:
        if child.process_label == "SpectrumWorkChain":
            creator = child.inputs.structure.creator
            assert creator.process_label == "extract_snapshots"
            assert creator.inputs.trajectory.uuid == trajectory.uuid
    assert results["spectra"].n_spectra == 4


def test_semicore_alignment_with_the_ld1x_family(qe_codes, pseudo_family):
    """'semicore' end to end: the ld1.x Ge 3d family, pw.x + projwfc.x, each site's 3d level as reference."""
    from aiida_xesml.constants import SEMICORE_CUTOFFS_RY, SEMICORE_FAMILY
    from aiida_xesml.pseudos.families import ensure_semicore_family

    ensure_semicore_family()
    ecutwfc, ecutrho = SEMICORE_CUTOFFS_RY["fast"]
    builder = SpectrumWorkChain.get_builder_from_protocol(
        qe_codes["pw"], qe_codes["projwfc"], orm.StructureData(ase=rutile_geo2()), protocol="fast",
        pseudo_family=SEMICORE_FAMILY,
        overrides={"parameters": {"alignment": "semicore", "grid": [-10.0, 45.0, 0.05]},
                   "scf": {"pw": {"parameters": {"SYSTEM": {"ecutwfc": ecutwfc, "ecutrho": ecutrho}}}}})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    spectra = results["spectra"]
    level = spectra.reference_ev - spectra.parameters["homo_ev"]  # each site's Ge 3d centroid below the VBM
    # Ge 3d binds about 29 eV below the valence-band top of GeO2 (XPS); PBE binds it a few eV less.
    assert np.all((level > -35.0) & (level < -20.0)), level
    assert abs(level[0] - level[1]) < 1e-4  # the two rutile sites are equivalent
    # On the vbm scale (one constant: the mean 3d level) both Kβ peaks sit in their windows.
    energy = spectra.energy_ev + level.mean()
    for lo, hi in DEFAULT_WINDOWS.values():
        inside = (energy >= lo) & (energy <= hi)
        window = spectra.intensity[:, inside]
        assert np.all(window.max(axis=1) > 5 * np.maximum(window[:, 0], window[:, -1]))


def _child(node, label):
    return next(child for child in node.called if child.process_label == label)


def test_the_repository_keeps_the_compact_outputs_only(polymorph_runs):
    """atomic_proj.xml and the per-k projection listing are read once (temporarily retrieved); the
    repository keeps the stdout's header, Löwdin charges and timings, and the per-site arrays."""
    calculation = _child(polymorph_runs["quartz"], "ProjwfcCalculation")
    retrieved = calculation.outputs.retrieved.base.repository
    names = set(retrieved.list_object_names())
    assert "aiida.out" in names and not names & {"out", "aiida.projections.out", "atomic_proj.xml"}, names
    stdout = retrieved.get_object_content("aiida.out")
    assert "JOB DONE" in stdout and "state #   1: atom" in stdout and "Lowdin Charges" in stdout
    assert "==== e(" not in stdout and "psi = " not in stdout
    assert {"site_projections", "Dos", "Pdos", "output_parameters"} <= set(calculation.outputs)
    assert "projections" not in calculation.outputs
    arrays = calculation.outputs.site_projections
    assert arrays.get_array("p_weights").shape == (9, *arrays.get_array("eigenvalues_ev").shape)
    assert "d_weights" not in arrays.get_arraynames()  # the Debian Ge and O datasets have no d states
    assert arrays.base.attributes.get("site_kinds") == ["Ge"] * 3 + ["O"] * 6


def test_site_projections_equal_upstream_by_orbital_position(polymorph_runs, qe_codes):
    """An independent route to the same numbers: aiida-quantumespresso's own ProjwfcCalculation on the
    same SCF, its orbitals mapped to sites by position (not by projwfc.x's atom index) and its
    atomic_proj.xml read from the repository."""
    from aiida.plugins import CalculationFactory

    from aiida_xesml.ml.atomic_proj import read_atomic_proj
    from aiida_xesml.ml.spectra import map_orbitals_to_sites, project_sites

    node = polymorph_runs["quartz"]
    builder = CalculationFactory("quantumespresso.projwfc").get_builder()
    builder.code = qe_codes["projwfc"]
    builder.parameters = _child(node, "ProjwfcCalculation").inputs.parameters
    builder.parent_folder = _child(node, "PwBaseWorkChain").outputs.remote_folder
    builder.metadata.options = {"resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1},
                                "additional_retrieve_list": ["out/aiida.save/atomic_proj.xml"]}
    results, upstream = run_get_node(builder)
    assert upstream.is_finished_ok, upstream.exit_message
    # a retrieve-list path without wildcards lands under its base name
    full = read_atomic_proj(results["retrieved"].base.repository.get_object_content("atomic_proj.xml", mode="rb"))
    orbitals = [orbital.get_orbital_dict() for orbital in results["projections"].get_orbitals()]
    atoms = node.inputs.structure.get_ase()
    site = map_orbitals_to_sites([o["position"] for o in orbitals], atoms.positions, atoms.cell[:])
    expected = project_sites(full.weights, site, [o["angular_momentum"] for o in orbitals], len(atoms), l=1)
    arrays = _child(node, "ProjwfcCalculation").outputs.site_projections
    np.testing.assert_allclose(arrays.get_array("p_weights"), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(arrays.get_array("eigenvalues_ev"), full.eigenvalues_ev, rtol=0, atol=1e-9)
    # upstream's stdout route describes the same states, but lossily: three decimals, and only the
    # larger components of each state are listed (2.6e-3 off at worst here)
    rounded = np.stack([results["projections"].get_array(f"proj_array_{i}") for i in range(len(orbitals))])
    stdout_p = project_sites(rounded, site, [o["angular_momentum"] for o in orbitals], len(atoms), l=1)
    assert 1e-4 < np.abs(stdout_p - expected).max() < 1e-2


DAMAGE_ATOMIC_PROJ = r"""#!/bin/bash
# projwfc.x, then cut its atomic_proj.xml in half, as a full disk would.
projwfc.x "$@"
status=$?
file=out/aiida.save/atomic_proj.xml
truncate -s $(( $(stat -c %s $file) / 2 )) $file
exit $status
"""


def test_a_damaged_atomic_proj_xml_is_a_clear_exit_code(spectrum_builder, qe_codes, tmp_path):
    script = tmp_path / "projwfc-damaging.sh"
    script.write_text(DAMAGE_ATOMIC_PROJ)
    script.chmod(0o755)
    real = qe_codes["projwfc"]
    code = orm.InstalledCode(label=f"projwfc-damaging-{tmp_path.name}", computer=real.computer,
                             filepath_executable=str(script), default_calc_job_plugin="quantumespresso.projwfc",
                             prepend_text=real.prepend_text, with_mpi=True).store()
    builder = spectrum_builder(rutile_geo2())
    builder.projwfc.code = code
    _, node = run_get_node(builder)
    assert node.exit_status == SpectrumWorkChain.exit_codes.ERROR_PROJWFC_FAILED.status
    calculation = _child(node, "ProjwfcCalculation")
    assert calculation.exit_status == calculation.process_class.exit_codes.ERROR_ATOMIC_PROJ_INVALID.status
    assert "atomic_proj.xml could not be read" in node.exit_message and "exit 361" in node.exit_message


@pytest.fixture
def reparse(polymorph_runs, tmp_path):
    """Re-parse the quartz run's projwfc.x calculation from copies of its temporarily retrieved files,
    fetched again from its working folder (no new QE run); ``damage(files)`` may change them first."""
    from aiida_xesml.parsers.projwfc import ProjwfcParser

    calculation = _child(polymorph_runs["quartz"], "ProjwfcCalculation")
    workdir = Path(calculation.outputs.remote_folder.get_remote_path())
    files = {"listing": workdir / "aiida.projections.out", "atomic_proj": workdir / "out/aiida.save/atomic_proj.xml",
             "pdos_tot": workdir / "aiida.pdos_tot"}

    def factory(damage=None, swap_atomic_proj=None):
        folder = tmp_path / "retrieved_temporary"
        folder.mkdir(exist_ok=True)
        copies = {key: folder / path.name for key, path in files.items()}
        for key, path in files.items():
            shutil.copy(swap_atomic_proj if key == "atomic_proj" and swap_atomic_proj else path, copies[key])
        if damage:
            damage(copies)
        results, node = ProjwfcParser.parse_from_node(calculation, store_provenance=False,
                                                      retrieved_temporary_folder=str(folder))
        return calculation, results, node.exit_status

    return factory


def test_reparsing_gives_the_same_site_projections(reparse):
    calculation, results, status = reparse()
    assert status == 0
    stored = calculation.outputs.site_projections
    for name in stored.get_arraynames():
        np.testing.assert_array_equal(results["site_projections"].get_array(name), stored.get_array(name))
    assert {"Dos", "Pdos", "output_parameters"} <= set(results)


def _garble(path, position=0.5):
    text = path.read_text()
    cut = int(len(text) * position)
    path.write_text(text[:cut] + "#a##b#c###d#e##f###" + text[cut + 19:])


@pytest.mark.parametrize(
    ("damage", "exit_name"),
    [
        (lambda files: _garble(files["listing"]), "ERROR_OUTPUT_STDOUT_PARSE"),
        (lambda files: files["listing"].write_text(files["listing"].read_text()[:5000]), "ERROR_OUTPUT_STDOUT_PARSE"),
        (lambda files: files["atomic_proj"].unlink(), "ERROR_ATOMIC_PROJ_MISSING"),
        (lambda files: files["atomic_proj"].write_bytes(files["atomic_proj"].read_bytes()[:20000]),
         "ERROR_ATOMIC_PROJ_INVALID"),
        (lambda files: _garble(files["atomic_proj"], 0.7), "ERROR_ATOMIC_PROJ_INVALID"),
        (lambda files: files["pdos_tot"].unlink(), "ERROR_MISSING_PDOSTOT_FILE"),
    ],
)
def test_damaged_temporary_files_are_exit_codes(reparse, damage, exit_name):
    calculation, results, status = reparse(damage)
    assert status == calculation.process_class.exit_codes[exit_name].status
    if exit_name != "ERROR_MISSING_PDOSTOT_FILE":
        assert "site_projections" not in results


def test_projections_of_another_run_are_inconsistent(reparse, polymorph_runs):
    """rutile's atomic_proj.xml (6 sites, 24 states) with the quartz stdout (9 sites, 36 states)."""
    rutile = _child(polymorph_runs["rutile"], "ProjwfcCalculation")
    other = Path(rutile.outputs.remote_folder.get_remote_path()) / "out/aiida.save/atomic_proj.xml"
    calculation, results, status = reparse(swap_atomic_proj=other)
    assert status == calculation.process_class.exit_codes.ERROR_PROJECTIONS_INCONSISTENT.status
