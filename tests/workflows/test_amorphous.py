"""xesml.amorphous with real pw.x on a 9-atom random cell: melt, a quench that crosses restarts, vc-relax.

A few steps of each stage test the machinery (seeded start, the quench's temperature ramp, the
production-cutoff relax, the summary), not the physics of a glass: see docs/topics/glass.md for that.
"""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_xesml.ml.glass import max_structure_factor
from aiida_xesml.ml.structures import density, random_network
from aiida_xesml.workflows.amorphous import AmorphousWorkChain

pytestmark = pytest.mark.qe

MELT_K, FINAL_K, NSTEP_QUENCH = 3000.0, 1000.0, 4


def _builder(code, structure):
    return AmorphousWorkChain.get_builder_from_protocol(
        code, structure, protocol="fast",
        overrides={"relax": {"pw": {"parameters": {"SYSTEM": {"ecutwfc": 30.0, "ecutrho": 180.0}}}}})


@pytest.fixture(scope="module")
def glass_run(qe_codes, pseudo_family):
    builder = _builder(qe_codes["pw"], orm.StructureData(ase=random_network(3, density=3.66, seed=0)))
    assert builder.melt_temperature_k.value == MELT_K and builder.final_temperature_k.value == FINAL_K
    assert builder.nstep_quench.value == NSTEP_QUENCH and builder.md.nstep_per_segment.value == 2
    return run_get_node(builder)


def _called(node, label):
    return node.base.links.get_outgoing(link_label_filter=label).one().node


@pytest.fixture(scope="module")
def continued_runs(glass_run, qe_codes):
    """The same glass continued from the first run's finished stages: from its melt, and from its melt and quench."""
    _, first = glass_run
    melt, quench = _called(first, "melt").outputs, _called(first, "quench").outputs
    runs = {}
    for given in ("melt", "quench"):
        builder = _builder(qe_codes["pw"], first.inputs.structure)
        builder.from_melt = {key: melt[key] for key in ("trajectory", "structure", "velocities")}
        if given == "quench":
            builder.from_quench = {key: quench[key] for key in ("trajectory", "structure")}
        runs[given] = run_get_node(builder)
    return runs


def _pw_calculations(workchain):
    return sorted((node for node in workchain.called_descendants if node.process_label == "PwCalculation"),
                  key=lambda node: node.ctime)


def test_melt_quench_relax_runs_and_keeps_every_stage(glass_run):
    results, node = glass_run
    assert node.is_finished_ok, node.exit_message
    assert {"melt", "quench", "relax", "summary"} <= {link.link_label for link in node.base.links.get_outgoing().all()}
    assert results["melt_trajectory"].numsteps == 3 + 1
    assert results["quench_trajectory"].numsteps == NSTEP_QUENCH + 1
    # the quench starts where the melt ended
    melt_last = results["melt_trajectory"].get_array("positions")[-1]
    assert np.allclose(results["quench_trajectory"].get_array("positions")[0], melt_last, atol=1e-6)


def test_the_melt_starts_from_the_seeded_velocities(glass_run):
    _, node = glass_run
    melt = node.base.links.get_outgoing(link_label_filter="melt").one().node
    drawn = melt.base.links.get_outgoing(link_label_filter="initial_velocities").one().node
    assert drawn.inputs.seed.value == 0 and drawn.inputs.temperature_k.value == MELT_K


def test_the_quench_steps_its_thermostat_down_the_ramp(glass_run):
    _, node = glass_run
    quench = node.base.links.get_outgoing(link_label_filter="quench").one().node
    calculations = _pw_calculations(quench)
    ions = [calc.inputs.parameters.get_dict()["IONS"] for calc in calculations]
    # a one-step thermostat-free bridge from the melt's velocities (pw.x 6.7), then native restarts
    assert ions[0]["ion_temperature"] == "not_controlled"
    controlled = [entry for entry in ions if entry["ion_temperature"] == "berendsen"]
    # steps done before each controlled segment: 1 (bridge), 3; segments of 2 and 2 (+1, the last frame)
    ramp = [MELT_K + (FINAL_K - MELT_K) * end / NSTEP_QUENCH for end in (3, NSTEP_QUENCH)]
    assert [entry["tempw"] for entry in controlled] == pytest.approx(ramp)


def test_the_relax_runs_at_the_production_cutoff_and_the_md_at_the_cheaper_one(glass_run):
    _, node = glass_run
    relax = node.base.links.get_outgoing(link_label_filter="relax").one().node
    cutoffs = {calc.inputs.parameters["SYSTEM"]["ecutwfc"] for calc in _pw_calculations(relax)}
    assert cutoffs == {30.0}
    for label in ("melt", "quench"):
        md = node.base.links.get_outgoing(link_label_filter=label).one().node
        assert {calc.inputs.parameters["SYSTEM"]["ecutwfc"] for calc in _pw_calculations(md)} == {25.0}


def test_the_summary_describes_the_output_structure(glass_run):
    results, _ = glass_run
    summary = results["summary"].get_dict()
    atoms = results["structure"].get_ase()
    # mass over volume by hand: 3 Ge and 6 O (standard atomic weights 72.630 and 15.999 amu; the structure's kind
    # masses, from AiiDA's table, differ by 1e-4) in the cell (Å³), 1 amu/Å³ = 1.66054 g/cm³
    mass = 3 * 72.630 + 6 * 15.999
    assert summary["density_g_cm3"] == pytest.approx(mass / atoms.cell.volume * 1.66054, rel=1e-3)
    assert summary["density_deviation_from_experiment"] == pytest.approx(density(atoms) / 3.66 - 1)
    assert summary["max_structure_factor_per_atom"] == pytest.approx(max_structure_factor(atoms)[0])
    assert sum(summary["cn_histogram"].values()) == 3
    # the fast protocol's vc-relax stops after 3 BFGS steps, unconverged: kept and flagged
    assert summary["relax_converged"] is False
    # the relax moved the cell: the glass is not the quenched cell
    quenched = results["quenched_structure"].get_ase()
    assert not np.allclose(atoms.cell.array, quenched.cell.array)
    assert summary["melt_hold_msd_ge_A2"] > 0 and summary["quench_temperature_end_k"] > 0
    distributions = results["distributions"]
    assert len(distributions.get_array("cn")) == 3
    assert distributions.get_array("pdf_r").shape == distributions.get_array("pdf_Ge_O").shape



def test_a_given_melt_is_quenched_as_the_run_s_own_would_be(glass_run, continued_runs):
    first_results, first = glass_run
    results, node = continued_runs["melt"]
    assert node.is_finished_ok, node.exit_message
    labels = {link.link_label for link in node.base.links.get_outgoing().all()}
    assert "melt" not in labels and {"quench", "relax", "summary"} <= labels
    # the given melt is an input and comes back as the output: the provenance runs through it
    given = _called(first, "melt").outputs.trajectory
    assert results["melt_trajectory"].uuid == given.uuid == node.inputs.from_melt.trajectory.uuid
    # the quench starts from the given last frame and follows the first run's quench
    start = _called(first, "melt").outputs.structure.get_ase().positions
    quench = results["quench_trajectory"].get_array("positions")
    assert np.allclose(quench[0], start, atol=1e-6)
    assert np.allclose(quench, first_results["quench_trajectory"].get_array("positions"), atol=1e-4)


def test_a_given_melt_and_quench_leave_only_the_relax(glass_run, continued_runs):
    first_results, _ = glass_run
    results, node = continued_runs["quench"]
    assert node.is_finished_ok, node.exit_message
    labels = {link.link_label for link in node.base.links.get_outgoing().all()}
    assert not labels & {"melt", "quench"} and {"relax", "summary"} <= labels
    assert results["quenched_structure"].uuid == node.inputs.from_quench.structure.uuid
    relax = _called(node, "relax")
    assert relax.inputs.structure.uuid == node.inputs.from_quench.structure.uuid
    assert results["summary"]["quench_temperature_end_k"] == pytest.approx(
        first_results["summary"]["quench_temperature_end_k"])
