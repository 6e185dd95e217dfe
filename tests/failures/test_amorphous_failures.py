"""xesml.amorphous when pw.x fails for real: the melt (401) and the final vc-relax (403).

The 9-atom random cell and the ``fast`` protocol of tests/workflows/test_amorphous.py; the failing
stage runs through a wrapper code (failures/wrappers.py), the others through the real pw.x.
"""

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
