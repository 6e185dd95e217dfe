"""xesml.compression with real pw.x on a 6-atom cell (fast protocol), and its input checks.

The two-pressure run is the compression inside the session's shared ``fast_pipeline`` (tests/conftest.py).
"""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from failures.helpers import called

from aiida_xesml.workflows.compression import CompressionWorkChain, pressure_label

pytestmark = pytest.mark.qe

# The fast protocol's vc-relax converges the stress to press_conv_thr = 5 kbar and repeats until the
# final SCF in the new plane-wave basis agrees (no Pulay stress); without that repetition the final
# SCF was 7.6 GPa off at 30 GPa (25 Ry). Tolerance: press_conv_thr with a 2x margin.
PRESSURE_TOLERANCE_GPA = 1.0


@pytest.fixture
def compression_builder(qe_codes, pseudo_family, rutile_structure):
    def factory(pressures, **overrides):
        return CompressionWorkChain.get_builder_from_protocol(
            qe_codes["pw"], rutile_structure, pressures, protocol="fast", overrides=overrides)

    return factory


def test_pressure_labels():
    assert [pressure_label(p) for p in (0, 20.0, 12.5)] == ["p_0", "p_20", "p_12_5"]


def test_compression_over_two_pressures(fast_pipeline):
    """The compression of the session's shared pipeline run (0 and 30 GPa, tests/conftest.py)."""
    node = called(fast_pipeline, "compression")
    assert node.process_label == "CompressionWorkChain" and node.is_finished_ok, node.exit_message
    results = node.outputs
    low = results.p_0
    # runs in order: the second variable-cell step starts from the first pressure's final MD frame, scaled
    # towards 30 GPa from the pressure that MD measured (bulk_modulus_gpa, as no secant exists yet)
    relaxations = sorted((c for c in node.called if c.process_label == "PwRelaxWorkChain"), key=lambda c: c.ctime)
    mds = sorted((c for c in node.called if c.process_label == "MdWorkChain"), key=lambda c: c.ctime)
    assert len(relaxations) == 2 and len(mds) == 2
    prescale = called(node, "prescale_p_30")
    assert prescale.inputs.trajectory.uuid == mds[0].outputs.trajectory.uuid
    assert relaxations[1].inputs.structure.uuid == prescale.outputs.structure.uuid
    scale = prescale.outputs.correction.get_dict()
    measured_0 = results.p_0.summary["pressure_gpa"]
    assert scale["measured_pressure_gpa"] == pytest.approx(measured_0) and scale["bulk_modulus_source"] == "input"
    assert scale["volume_ratio"] == pytest.approx(1 + max((measured_0 - 30.0) / node.inputs.bulk_modulus_gpa.value,
                                                         -0.1))
    assert scale["volume_after_a3"] < scale["volume_before_a3"]
    assert relaxations[0].ctime < mds[0].ctime < prescale.ctime < relaxations[1].ctime < mds[1].ctime
    # the volume drops as the pressure rises
    volume = {label: results[label].summary["volume_mean_a3"] for label in ("p_0", "p_30")}
    assert volume["p_30"] < volume["p_0"]
    # the variable-cell step reaches its target within the stated tolerance
    for label, target in (("p_0", 0.0), ("p_30", 30.0)):
        summary = results[label].summary.get_dict()
        assert abs(summary["variable_cell_pressure_gpa"] - target) < PRESSURE_TOLERANCE_GPA, summary
        assert summary["target_pressure_gpa"] == target
        assert summary["n_snapshots"] == 3  # production frames 2..6, every 2nd
        assert summary["n_sites"] == 3 * 2  # 2 Ge per snapshot
    snapshots = low.snapshots
    np.testing.assert_array_equal(snapshots.get_array("frame_indices"), [2, 4, 6])
    np.testing.assert_allclose(snapshots.get_array("positions"),
                               mds[0].outputs.trajectory.get_array("positions")[[2, 4, 6]])
    assert low.trajectory.numsteps == 5
    table = results.summary_table.get_dict()
    assert [row["label"] for row in table["rows"]] == ["p_0", "p_30"]


@pytest.mark.parametrize(
    ("pressures", "fragment"),
    [([], "empty"), ([10.0, 5.0], "ascending"), ([5.0, 5.0], "ascending"), ([-1.0, 5.0], "negative")],
)
def test_bad_pressures_exit_before_anything_runs(compression_builder, pressures, fragment):
    _, node = run_get_node(_with_pressures(compression_builder, pressures))
    assert node.exit_status == CompressionWorkChain.exit_codes.ERROR_INVALID_PRESSURES.status
    assert fragment in node.exit_message and not node.called


def _with_pressures(factory, pressures):
    builder = factory([0.0])
    builder.pressures = orm.List(pressures)
    return builder


def test_bad_step_counts_exit(compression_builder):
    builder = compression_builder([0.0])
    builder.nstep_production = orm.Int(0)
    _, node = run_get_node(builder)
    assert node.exit_status == CompressionWorkChain.exit_codes.ERROR_INVALID_STEPS.status
    assert not node.called


def test_missing_pseudopotential_exits(compression_builder):
    builder = compression_builder([0.0])
    builder.md.md.pw.pseudos = {"Ge": builder.md.md.pw.pseudos["Ge"]}
    builder.vc_relax.base_relax.pw.pseudos = {"Ge": builder.md.md.pw.pseudos["Ge"]}
    _, node = run_get_node(builder)
    assert node.exit_status == CompressionWorkChain.exit_codes.ERROR_MISSING_PSEUDO.status
    assert not node.called


def test_vc_md_variable_cell_step(compression_builder):
    builder = compression_builder([10.0], variable_cell="vc-md", nstep_variable_cell=3)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    mds = [c for c in node.called if c.process_label == "MdWorkChain"]
    assert len(mds) == 2 and sum("pressure_gpa" in c.inputs for c in mds) == 1
    assert results["p_10"]["summary"]["n_snapshots"] == 3


def test_a_missed_pressure_is_corrected_by_scaling_the_cell(compression_builder, fast_pipeline):
    """The fast protocol's MD (Γ only) measures far more than its vc-relax (a k-mesh) reached: the cell is scaled
    towards the target once, and the MD in the scaled cell lands closer to it. The vc-relax and the first MD have
    the inputs of the shared pipeline run's 0 GPa step, so they come from the session's cache."""
    target, bulk = 0.0, 250.0  # rutile-type GeO2: B about 250 GPa
    builder = compression_builder([target], max_cell_corrections=1, pressure_tolerance_gpa=0.1, bulk_modulus_gpa=bulk)
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    first, second = called(node, "md_p_0"), called(node, "md_p_0_corrected_1")
    rescale = called(node, "rescale_p_0_1")
    assert second.inputs.structure.uuid == rescale.outputs.structure.uuid

    def production_pressure(md):
        """trace(stress)/3 plus the ideal-gas term N k_B T / V, over the production frames (GPa)."""
        trajectory = md.outputs.trajectory
        start = builder.nstep_equilibration.value
        stress, temperature = trajectory.get_array("stress")[start:], trajectory.get_array("temperature")[start:]
        volumes = np.abs(np.linalg.det(trajectory.get_array("cells")[start:]))
        kinetic = len(trajectory.symbols) * 8.617333e-5 * temperature / volumes * 160.21766
        return float(np.mean(np.trace(stress, axis1=1, axis2=2) / 3 + kinetic))

    measured = production_pressure(first)
    ratio = 1 + np.clip((measured - target) / bulk, -0.1, 0.1)
    last = first.outputs.trajectory.get_step_structure(first.outputs.trajectory.numsteps - 1).get_ase()
    assert abs(rescale.outputs.structure.get_ase().cell.volume / last.cell.volume - ratio) < 1e-9
    results = node.outputs.p_0
    summary = results.summary.get_dict()
    assert summary["cell_corrections"] == 1
    assert summary["rejected_md_pressures_gpa"] == pytest.approx([measured], abs=1e-6)
    assert summary["pressure_gpa"] == pytest.approx(production_pressure(second), abs=1e-6)
    assert abs(measured - target) > 5.0, "the uncorrected MD was expected to miss by more than 5 GPa"
    assert abs(summary["pressure_gpa"] - target) < 0.5 * abs(measured - target)
    np.testing.assert_allclose(results.trajectory.get_array("positions"),
                               second.outputs.trajectory.get_array("positions")[builder.nstep_equilibration.value:])
