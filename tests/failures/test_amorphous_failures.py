"""xesml.amorphous when pw.x fails for real: the melt (401) and the final vc-relax (403), and a killed vc-relax
continued by a second run (``relax_from``).

The 9-atom random cell and the ``fast`` protocol of tests/workflows/test_amorphous.py; the failing
stage runs through a wrapper code (failures/wrappers.py), the others through the real pw.x.
"""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from failures.helpers import called

from aiida_xesml.ml.structures import random_network
from aiida_xesml.workflows.amorphous import AmorphousWorkChain

pytestmark = [pytest.mark.faults, pytest.mark.qe]
CODES = AmorphousWorkChain.exit_codes


def _builder(code):
    structure = orm.StructureData(ase=random_network(3, density=3.66, seed=0))
    return AmorphousWorkChain.get_builder_from_protocol(code, structure, protocol="fast")


def test_a_melt_that_fails_is_401_and_nothing_runs_after_it(pseudo_family, wrapper):
    pw = wrapper("pw", "exit")
    _, node = run_get_node(_builder(pw.code))
    assert node.exit_status == CODES.ERROR_MELT_FAILED.status, node.exit_message
    melt = called(node, "melt")
    assert node.exit_message == f"The melt (xesml.md) failed: exit {melt.exit_status}: {melt.exit_message}."
    assert [child.process_label for child in node.called] == ["MdWorkChain"]


def test_a_relax_that_fails_is_403_with_the_melt_and_quench_kept(qe_codes, pseudo_family, wrapper):
    pw = wrapper("pw", "exit")
    builder = _builder(qe_codes["pw"])
    builder.relax.base_relax.pw.code = pw.code
    _, node = run_get_node(builder)
    assert node.exit_status == CODES.ERROR_RELAX_FAILED.status, node.exit_message
    relax = called(node, "relax")
    assert node.exit_message.startswith(f"The vc-relax of the quenched cell failed: exit {relax.exit_status}: ")
    # pw.x rejecting its input is a failure, not an unconverged relax: no glass, but the MD is kept
    assert set(node.outputs) == {"melt_trajectory", "quench_trajectory", "quenched_structure"}
    assert node.outputs.quench_trajectory.numsteps == builder.nstep_quench.value + 1


def test_a_killed_relax_is_403_and_a_run_given_its_last_structure_continues_it(qe_codes, pseudo_family, wrapper):
    """pw.x killed during the vc-relax once it has taken an ionic step, as when the machine stops: 403, and the
    killed run's last structure is stored. A second run given the first's melt and quench and ``relax_from`` that structure
    relaxes from it, with the real pw.x (the melt and quench of both come from the session's cache)."""
    pw = wrapper("pw", "killed", progress="number of bfgs steps", progress_count=2, first_only=True)
    builder = _builder(qe_codes["pw"])
    builder.relax.base_relax.pw.code = pw.code
    _, first = run_get_node(builder)
    assert "killed pid" in pw.log, f"pw.x was never killed: the fault was not injected ({pw.log})"
    assert first.exit_status == CODES.ERROR_RELAX_FAILED.status, first.exit_message
    [killed] = [calc for calc in called(first, "relax").called_descendants
                if calc.process_label == "PwCalculation" and calc.inputs.code.uuid == pw.code.uuid]
    assert killed.is_failed and "output_structure" in killed.outputs
    last = killed.outputs.output_structure
    quenched = first.outputs.quenched_structure
    assert abs(last.get_cell_volume() - quenched.get_cell_volume()) > 1e-3 or not np.allclose(
        last.get_ase().positions, quenched.get_ase().positions, atol=1e-4), "the relax had not moved before the kill"

    builder = _builder(qe_codes["pw"])
    melt, quench = called(first, "melt").outputs, called(first, "quench").outputs
    builder.from_melt = {key: melt[key] for key in ("trajectory", "structure", "velocities")}
    builder.from_quench = {key: quench[key] for key in ("trajectory", "structure")}
    builder.relax_from = last
    _, second = run_get_node(builder)
    assert second.is_finished_ok, second.exit_message
    relax = called(second, "relax")
    assert relax.inputs.structure.uuid == last.uuid
    start = min((calc for calc in relax.called_descendants if calc.process_label == "PwCalculation"),
                key=lambda calc: calc.ctime)
    assert start.inputs.structure.uuid == last.uuid and start.inputs.code.uuid == qe_codes["pw"].uuid
    assert second.outputs.quenched_structure.uuid == quenched.uuid == quench.structure.uuid
    assert [child.process_label for child in second.called if child.process_label != "glass_summary"] == \
        ["PwRelaxWorkChain"]
