"""xesml.spectrum and xesml.spectra when pw.x, projwfc.x or pp.x fail for real (wrapper codes, see wrappers.py).

Each 4xx exit code of the two work chains is reached once by a real failure of the executable
below it: a non-zero exit (a rejected input), a kill, a walltime stop through ``max_seconds``, or a
damaged output file (seeded), and the message names the failed child's exit code or exception.
"""

from __future__ import annotations

import re

import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node
from failures.helpers import ONE_PROCESS, SNAPSHOT_SEEDS, called, rattled_rutile, stdout

from aiida_xesml.workflows.spectra import SpectraWorkChain
from aiida_xesml.workflows.spectrum import SpectrumWorkChain

pytestmark = [pytest.mark.faults, pytest.mark.qe]
CODES = SpectrumWorkChain.exit_codes


def _calculations(node, label: str) -> list:
    return sorted((n for n in node.called_descendants if isinstance(n, orm.CalcJobNode) and n.process_label == label),
                  key=lambda n: n.pk)


# ----- 401: the SCF failed ------------------------------------------------------------------------


def test_pw_rejecting_its_input_is_scf_failed(spectrum_builder, wrapper):
    pw = wrapper("pw", "exit")
    _, node = run_get_node(spectrum_builder(pw=pw.code))
    assert node.exit_status == CODES.ERROR_SCF_FAILED.status, node.exit_message
    scf = called(node, "scf")
    assert not scf.is_finished_ok
    assert node.exit_message == f"The SCF failed (exit {scf.exit_status}): no spectra for this snapshot."
    (run,) = _calculations(node, "PwCalculation")
    assert run.exit_status not in (0, None), "pw.x's own error is a parsed failure"
    assert re.search(r"Error in routine\s+read_namelists", stdout(run)), "pw.x's own message on its input"
    assert not _calculations(node, "ProjwfcCalculation")


def test_pw_killed_mid_scf_is_scf_failed(spectrum_builder, wrapper):
    pw = wrapper("pw", "killed", progress="iteration #  2")
    _, node = run_get_node(spectrum_builder(pw=pw.code))
    assert "killed pid" in pw.log, pw.log
    assert node.exit_status == CODES.ERROR_SCF_FAILED.status, node.exit_message
    runs = _calculations(node, "PwCalculation")
    assert runs and all(run.exit_status not in (0, None) for run in runs)
    assert "iteration #  2" in stdout(runs[0]) and "JOB DONE" not in stdout(runs[0])
    assert not _calculations(node, "ProjwfcCalculation")


def test_pw_out_of_walltime_every_time_is_scf_failed(spectrum_builder, wrapper):
    pw = wrapper("pw", "walltime")
    builder = spectrum_builder(pw=pw.code)
    builder.scf.max_iterations = orm.Int(2)
    _, node = run_get_node(builder)
    assert node.exit_status == CODES.ERROR_SCF_FAILED.status, node.exit_message
    runs = _calculations(node, "PwCalculation")
    out_of_walltime = runs[0].process_class.exit_codes.ERROR_OUT_OF_WALLTIME.status
    assert [run.exit_status for run in runs] == [out_of_walltime, out_of_walltime]
    assert all("Maximum CPU time exceeded" in stdout(run) for run in runs)
    # PwBaseWorkChain restarted from the first run's checkpoint, then gave up after max_iterations
    assert runs[1].inputs.parent_folder.uuid == runs[0].outputs.remote_folder.uuid
    scf = called(node, "scf")
    assert scf.exit_status == scf.process_class.exit_codes.ERROR_MAXIMUM_ITERATIONS_EXCEEDED.status
    assert f"exit {scf.exit_status}" in node.exit_message


# ----- 402: projwfc.x failed ----------------------------------------------------------------------


@pytest.mark.parametrize("mode, progress", [("exit", ""), ("killed", "Program PROJWFC")])
def test_projwfc_failure_is_projwfc_failed_with_its_exit_code(spectrum_builder, wrapper, mode, progress):
    projwfc = wrapper("projwfc", mode, progress=progress)
    _, node = run_get_node(spectrum_builder(projwfc=projwfc.code))
    if mode == "killed":
        assert "killed pid" in projwfc.log, projwfc.log
    assert node.exit_status == CODES.ERROR_PROJWFC_FAILED.status, node.exit_message
    run = called(node, "projwfc")
    assert run.is_finished and run.exit_status not in (0, None), "a parsed failure, not an exception"
    assert node.exit_message.startswith(f"projwfc.x failed: exit {run.exit_status}: ")
    assert called(node, "scf").is_finished_ok
    assert "spectra" not in node.outputs


def test_damaged_atomic_proj_xml_end_to_end(spectrum_builder, wrapper):
    """projwfc.x runs, then 2,000 bytes of its atomic_proj.xml are overwritten (seed 7): the projections
    are refused with an exit code that says so; no spectrum is made from them."""
    projwfc = wrapper("projwfc", "damage", damage="overwrite", target="out/aiida.save/atomic_proj.xml", seed=7)
    _, node = run_get_node(spectrum_builder(projwfc=projwfc.code))
    assert re.search(r"overwrote atomic_proj.xml bytes \d+\.\.\d+ of \d+ \(seed 7\)", projwfc.log), projwfc.log
    run = called(node, "projwfc")
    assert run.exit_status == run.process_class.exit_codes.ERROR_ATOMIC_PROJ_INVALID.status, run.exit_message
    assert "atomic_proj.xml" in run.exit_message
    assert node.exit_status == CODES.ERROR_PROJWFC_FAILED.status
    assert node.exit_message.startswith(f"projwfc.x failed: exit {run.exit_status}: ")
    assert "spectra" not in node.outputs


# ----- 403: pp.x failed, also as an exception ------------------------------------------------------


def test_pp_rejecting_its_input_is_pp_failed(spectrum_builder, wrapper):
    pp = wrapper("pp", "exit")
    _, node = run_get_node(spectrum_builder(pp=pp.code, parameters={"alignment": "potential"}))
    assert node.exit_status == CODES.ERROR_PP_FAILED.status, node.exit_message
    run = called(node, "pp")
    assert run.is_finished and run.exit_status not in (0, None)
    assert node.exit_message.startswith(f"pp.x failed: exit {run.exit_status}: ")
    assert called(node, "projwfc").is_finished_ok


def test_pp_output_that_makes_its_parser_raise_is_named_as_an_exception(spectrum_builder, wrapper):
    """The digits of pp.x's 'plot_num' line are garbled: aiida-quantumespresso's pp parser raises
    (int('##')), the calculation is excepted, and the message says so and where to read more."""
    pp = wrapper("pp", "damage", damage="garble-line", target="aiida.out", seed=0)
    _, node = run_get_node(spectrum_builder(pp=pp.code, parameters={"alignment": "potential"}))
    assert "garbled line" in pp.log and "plot_num" in pp.log, pp.log
    run = called(node, "pp")
    assert run.is_excepted and "ValueError" in run.exception
    assert node.exit_status == CODES.ERROR_PP_FAILED.status
    assert re.fullmatch(rf"pp\.x failed: it raised an exception \(ValueError: invalid literal for int\(\) .*\); "
                        rf"see `verdi process report {run.pk}`", node.exit_message), node.exit_message


# ----- 404: no spectra from good projections -------------------------------------------------------


def test_potential_sphere_without_grid_points_is_spectra_failed(spectrum_builder, qe_codes):
    """Real pw.x, projwfc.x and pp.x outputs; a 0.02 Å averaging sphere holds no point of pp.x's grid."""
    _, node = run_get_node(spectrum_builder(pp=qe_codes["pp"],
                                            parameters={"alignment": "potential", "potential_radius": 0.02}))
    assert node.exit_status == CODES.ERROR_SPECTRA_FAILED.status, node.exit_message
    assert re.fullmatch(r"Could not make spectra from the projections: `radius` = .* holds no grid point for some "
                        r"sites; use a larger radius or a finer grid", node.exit_message), node.exit_message
    assert all(called(node, label).is_finished_ok for label in ("scf", "projwfc", "pp"))
    assert "spectra" not in node.outputs


# ----- xesml.spectra: 411 (410 is in tests/faults) ---------------------------------------------------


def test_every_snapshot_failing_is_all_snapshots_failed(qe_codes, pseudo_family, wrapper):
    projwfc = wrapper("projwfc", "exit")
    structures = [rattled_rutile(seed) for seed in SNAPSHOT_SEEDS[:2]]
    builder = SpectraWorkChain.get_builder_from_protocol(qe_codes["pw"], projwfc.code, structures, protocol="fast",
                                                         options=ONE_PROCESS)
    _, node = run_get_node(builder)
    assert node.exit_status == SpectraWorkChain.exit_codes.ERROR_ALL_SNAPSHOTS_FAILED.status, node.exit_message
    assert node.exit_message == "All 2 snapshots failed; no spectra."
    assert not node.base.links.get_outgoing(link_type=LinkType.RETURN).all()
    children = [called(node, f"snapshot_{index}") for index in range(2)]
    assert [child.exit_status for child in children] == [CODES.ERROR_PROJWFC_FAILED.status] * 2
    report = "\n".join(log.message for log in orm.Log.collection.get_logs_for(node))
    for index, child in enumerate(children):
        assert f"snapshot {index} <{child.pk}> failed (exit 402: projwfc.x failed: exit " in report, report
