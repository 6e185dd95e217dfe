"""xesml.core_hole with real pw.x: ΔSCF 1s binding energies with an ld1.x core-hole dataset."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_xesml.calculations.apply_core_hole_shifts import apply_core_hole_shifts
from aiida_xesml.calculations.core_hole_shifts import core_hole_shifts, highest_occupied_level
from aiida_xesml.ml.moments import spectral_moments
from aiida_xesml.ml.structures import rutile_geo2
from aiida_xesml.workflows.core_hole import CoreHoleWorkChain
from aiida_xesml.workflows.spectrum import SpectrumWorkChain

pytestmark = pytest.mark.qe

#: Rutile-type GeO2 unit cell: 2 Ge (4 valence electrons each) + 4 O (6 each) = 32 electrons, 16 bands.
RUTILE_OCCUPIED_BANDS = 16


@pytest.fixture(scope="module")
def families(aiida_profile):
    from aiida_xesml.pseudos.core_hole import ensure_core_hole_families

    return ensure_core_hole_families()


def run_core_hole(qe_codes, atoms, sites, excited_electron="removed", nbnd=None):
    """xesml.core_hole on the unit cell itself (no supercell) with a k-mesh: a test of the machinery and of
    relations that hold in any cell, not a converged binding energy."""
    overrides = {"gamma_only": False, "kpoints_distance": 0.8}  # 2x2x3 k-points: relations, not convergence
    if nbnd is not None:
        overrides["scf"] = {"pw": {"parameters": {"SYSTEM": {"nbnd": nbnd}}}}
    builder = CoreHoleWorkChain.get_builder_from_protocol(
        qe_codes["pw"], orm.StructureData(ase=atoms), protocol="fast", sites=sites, supercell=[1, 1, 1],
        overrides=overrides)
    builder.excited_electron = orm.Str(excited_electron)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    return node


@pytest.fixture(scope="module")
def rutile_removed(qe_codes, families):
    """Both (equivalent) Ge sites of rutile, the 1s electron removed; 4 empty bands for the lowest empty level."""
    return run_core_hole(qe_codes, rutile_geo2(), [0, 1], nbnd=RUTILE_OCCUPIED_BANDS + 4)


def scf_of(node, key):
    """The PwBaseWorkChain that ran SCF ``key`` ('ground', 'site_0', ...)."""
    from aiida.common.links import LinkType

    for link in node.base.links.get_outgoing(link_type=LinkType.CALL_WORK).all():
        if link.link_label == f"scf_{key}":
            return link.node
    raise KeyError(key)


def test_equivalent_sites_get_equal_binding_energies(rutile_removed):
    shifts = rutile_removed.outputs.shifts
    np.testing.assert_array_equal(shifts.get_array("site_index"), [0, 1])
    delta = shifts.get_array("binding_energy_ev")
    assert abs(delta[0] - delta[1]) < 5e-3  # eV; the two Ge of rutile are related by the 4_2 screw
    # the hole costs energy in the cell (the pseudopotential-scale ΔE is positive, ~200 eV for these datasets)
    assert np.all(delta > 0)
    np.testing.assert_allclose(shifts.get_array("shift_ev"),
                               shifts.base.attributes.get("homo_ev") + delta - shifts.base.attributes.get("offset_ev"))
    assert len(rutile_removed.outputs.supercell.sites) == 6


def test_adding_the_electron_back_costs_what_janak_brackets(qe_codes, rutile_removed):
    """E(N+1) − E(N) = ∫ ε(n) dn over the filling of the lowest empty level (Janak): it lies between that
    level's eigenvalue in the charged cell (empty) and in the neutral cell (filled). A wrong charge, a
    wrong dataset or energies from different cells would put the difference tens of eV away."""
    neutral = run_core_hole(qe_codes, rutile_geo2(), [0], excited_electron="conduction")
    difference = (neutral.outputs.shifts.get_array("binding_energy_ev")[0]
                  - rutile_removed.outputs.shifts.get_array("binding_energy_ev")[0])
    charged_bands = scf_of(rutile_removed, "site_0").outputs.output_band.get_bands()
    lumo_charged = charged_bands[:, RUTILE_OCCUPIED_BANDS].min()
    fermi_neutral = scf_of(neutral, "site_0").outputs.output_parameters["fermi_energy"]
    print(f"E(N+1) - E(N) = {difference:.3f} eV; LUMO (charged) {lumo_charged:.3f} eV, level filled (neutral) "
          f"{fermi_neutral:.3f} eV")
    assert lumo_charged - 0.05 <= difference <= fermi_neutral + 0.05


def test_apply_core_hole_shifts_moves_each_site_spectrum_by_its_shift(qe_codes, pseudo_family, rutile_removed):
    builder = SpectrumWorkChain.get_builder_from_protocol(
        qe_codes["pw"], qe_codes["projwfc"], orm.StructureData(ase=rutile_geo2()), protocol="fast")
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    spectra = results["spectra"]
    # the same ΔSCF results with an offset C that puts site 0 at +0.7 eV (the calibrated C belongs to
    # supercells at Γ, not to this unit cell)
    ground = scf_of(rutile_removed, "ground").outputs
    computed = rutile_removed.outputs.shifts
    offset = computed.base.attributes.get("homo_ev") + computed.get_array("binding_energy_ev")[0] - 0.7
    holes = {f"site_{site}": scf_of(rutile_removed, f"site_{site}").outputs.output_parameters for site in (0, 1)}
    shifts = core_hole_shifts(ground_parameters=ground.output_parameters, ground_bands=ground.output_band,
                              offset_ev=orm.Float(offset), **holes)
    np.testing.assert_allclose(shifts.get_array("shift_ev"), 0.7, atol=5e-3)
    moved = apply_core_hole_shifts(spectra, shifts)
    assert moved.parameters["alignment"] == "core_hole" and moved.parameters["source_alignment"] == "vbm"
    s = shifts.get_array("shift_ev")
    np.testing.assert_allclose(moved.reference_ev, spectra.parameters["homo_ev"] - s)
    windows = {"kbpp": (-24.0, -13.0), "kb2": (-12.0, 2.0)}
    before = spectral_moments(spectra.energy_ev, spectra.intensity, windows)
    moved_windows = {name: (lo + s[0], hi + s[0]) for name, (lo, hi) in windows.items()}
    after = spectral_moments(moved.energy_ev, moved.intensity, moved_windows)
    # M1 moves by the shift; the shape does not change (linear interpolation on the 0.05 eV grid)
    np.testing.assert_allclose(after[:, [1, 5]], before[:, [1, 5]] + s[0], atol=0.02)
    np.testing.assert_allclose(after[:, [0, 4]], before[:, [0, 4]], rtol=0.01)


def test_highest_occupied_level_of_the_ground_run(rutile_removed):
    ground = scf_of(rutile_removed, "ground")
    homo = highest_occupied_level(ground.outputs.output_parameters, ground.outputs.output_band)
    assert homo == pytest.approx(rutile_removed.outputs.shifts.base.attributes.get("homo_ev"), abs=1e-9)
    bands = ground.outputs.output_band.get_bands()
    assert bands[:, RUTILE_OCCUPIED_BANDS - 1].max() == homo < bands[:, RUTILE_OCCUPIED_BANDS].min()


def test_core_hole_families_are_a_consistent_pair(families):
    from aiida_xesml.pseudos.core_hole import CORE_HOLE_FAMILY, GROUND_FAMILY, ensure_core_hole_families, recipe_hash

    ground, hole = families
    assert (ground.label, hole.label) == (GROUND_FAMILY, CORE_HOLE_FAMILY)
    assert sorted(pseudo.element for pseudo in ground.nodes) == ["Ge", "O", "Si"]
    ge, ge_hole = ground.get_pseudo("Ge"), hole.get_pseudo("Ge")
    assert ge_hole.z_valence == ge.z_valence + 1 == 5
    assert recipe_hash() in ground.description and recipe_hash() in hole.description
    again = ensure_core_hole_families()  # installed once: the same groups come back
    assert (again[0].pk, again[1].pk) == (ground.pk, hole.pk)
