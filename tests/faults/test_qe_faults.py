"""Faults inside the QE runs: pw.x killed mid-MD, a truncated or corrupted projwfc.x output."""

from __future__ import annotations

import numpy as np
import pytest
from aiida.engine import run_get_node

pytestmark = [pytest.mark.faults, pytest.mark.qe]


@pytest.mark.no_cache  # the fault is injected into pw.x itself: no run of this test may stand in for a good one
def test_pw_killed_during_md_continues_from_the_last_good_frame(qe_codes, pseudo_family, rutile_structure, tmp_path):
    """The first pw.x MD run that reaches 4 steps gets SIGKILL (a wrapper code, see
    tests/failures/wrappers.py: only this test's own run is killed); the continuation runs pw.x untouched."""
    from failures.helpers import ONE_PROCESS
    from failures.wrappers import make_wrapper

    from aiida_xesml.ml.dynamics import parse_md_temperatures
    from aiida_xesml.workflows.md import MdWorkChain

    pw = make_wrapper(qe_codes["pw"], tmp_path / "pw-killed", "killed", progress="Entering Dynamics",
                      progress_count=4, first_only=True)
    builder = MdWorkChain.get_builder_from_protocol(pw.code, rutile_structure, protocol="fast", options=ONE_PROCESS,
                                                    overrides={"nstep": 8, "nstep_per_segment": 8,
                                                               "temperature_k": 600.0})
    results, node = run_get_node(builder)
    assert "killed pid" in pw.log, f"pw.x was never killed: the fault was not injected ({pw.log})"
    assert node.is_finished_ok, node.exit_message
    segments = sorted((child for child in node.called if child.process_label == "PwBaseWorkChain"), key=lambda n: n.pk)
    runs = [next(c for c in segment.called if c.process_label == "PwCalculation") for segment in segments]
    killed = [i for i, run in enumerate(runs) if run.exit_status != 0]
    assert len(killed) == 1, [run.exit_status for run in runs]
    killed_run, later = runs[killed[0]], segments[killed[0] + 1:]
    assert killed_run.exit_status is not None, "the killed pw.x run is a parsed failure, not an exception"
    stdout = killed_run.outputs.retrieved.base.repository.get_object_content("aiida.out")
    assert stdout.count("Entering Dynamics") >= 4 and "JOB DONE" not in stdout
    assert later and any(c.process_label == "md_continuation" for c in node.called)
    partial = killed_run.outputs.output_trajectory.get_array("positions")
    kept = len(partial) - 1  # the last parsed frame becomes the next segment's first frame
    assert kept >= 2

    trajectory = results["trajectory"]
    assert trajectory.numsteps == 9
    positions = trajectory.get_array("positions")
    # where the killed run's frames sit in the whole trajectory (after any earlier segment's)
    offset = next(i for i in range(len(positions)) if np.allclose(positions[i], partial[0], atol=1e-10))
    # The continuation starts from the killed run's last good frame, not from its step 0 ...
    np.testing.assert_allclose(positions[offset:offset + kept + 1], partial[:kept + 1], atol=1e-10)
    first = later[0].inputs.pw.structure.get_ase().positions
    np.testing.assert_allclose(first, partial[kept], atol=1e-6)
    # ... no frame is repeated ...
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=(1, 2))
    assert steps.min() > 1e-4, steps
    # ... and none is missing: the first new frame is where a Verlet step from the last two good frames
    # and the forces pw.x computed there puts it (the continuation's velocities differ from the
    # Verlet ones by a*dt/2, the thermostat rescales by a few %). A skipped or repeated step would be
    # off by a whole step.
    residual, step = verlet_residual(killed_run, partial, kept, positions[offset + kept + 1])
    assert residual < 0.25 * step, (f"first continued frame {residual:.4f} Å from the Verlet prediction "
                                    f"(one step: {step:.4f} Å)")
    # The velocities derived at the seam (md_continuation) reproduce the temperature pw.x printed for that frame.
    before = parse_md_temperatures(stdout)[kept]
    after = trajectory.get_array("temperature")[offset + kept]
    assert abs(after - before) / before < 0.05, (before, after)


def verlet_residual(run, positions, k: int, next_frame) -> tuple[float, float]:
    """|x_{k+1} - (2 x_k - x_{k-1} + F_k/m dt^2)| and |x_k - x_{k-1}| (Å, over all atoms), with the
    positions and forces of pw.x's trajectory ``positions`` of ``run``, its masses and its dt."""
    trajectory = run.outputs.output_trajectory
    forces = trajectory.get_array("forces")[k]  # eV/Å
    atoms = run.inputs.structure.get_ase()
    dt = run.inputs.parameters["CONTROL"]["dt"] * RY_TIME_FS
    acceleration = forces / atoms.get_masses()[:, None] * EV_PER_ANGSTROM_AMU_IN_ANGSTROM_PER_FS2
    predicted = 2 * positions[k] - positions[k - 1] + acceleration * dt**2
    cell = atoms.cell[:]
    difference = (np.asarray(next_frame) - predicted) @ np.linalg.inv(cell)
    difference = (difference - np.round(difference)) @ cell  # minimum image
    return float(np.linalg.norm(difference)), float(np.linalg.norm(positions[k] - positions[k - 1]))


#: Rydberg atomic unit of time (pw.x's dt) in fs, and 1 eV/(Å amu) in Å/fs².
RY_TIME_FS = 4.8377687e-2
EV_PER_ANGSTROM_AMU_IN_ANGSTROM_PER_FS2 = 9.64853322e-3


@pytest.fixture
def damaging_projwfc(qe_codes, tmp_path):
    """Factory: a projwfc code whose first run leaves a truncated or corrupted stdout (seeded, see
    tests/failures/wrappers.py); later runs are untouched."""
    from failures.wrappers import make_wrapper

    def factory(mode):
        damage = {"truncated": "truncate", "corrupted": "overwrite"}[mode]
        return make_wrapper(qe_codes["projwfc"], tmp_path / f"projwfc-{mode}", "damage", damage=damage,
                            target="aiida.out", seed=SEEDS[mode], first_only=True)

    return factory


#: The damage is the same on every run: truncated to 30-45 % of the bytes, or 2,000 bytes in the
#: middle third overwritten with letters and punctuation, both drawn from these seeds.
SEEDS = {"truncated": 5, "corrupted": 11}


#: The damage is done to the wrapper code's projwfc.x runs only, which no cache entry can match; the two
#: snapshots' SCFs are the real pw.x's, so the second mode takes them from the session's cache.
@pytest.mark.parametrize("mode", ["truncated", "corrupted"])
def test_damaged_projwfc_output_is_a_parse_error_and_the_other_spectra_are_kept(
        qe_codes, pseudo_family, damaging_projwfc, mode):
    from aiida import orm

    from aiida_xesml.ml.structures import rutile_geo2
    from aiida_xesml.workflows.spectra import SpectraWorkChain

    snapshots = []
    for seed in (11, 12):
        atoms = rutile_geo2()
        atoms.rattle(0.03, seed=seed)
        snapshots.append(orm.StructureData(ase=atoms))
    projwfc = damaging_projwfc(mode)
    builder = SpectraWorkChain.get_builder_from_protocol(
        qe_codes["pw"], projwfc.code, snapshots, protocol="fast",
        options={"resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1}})
    builder.max_concurrent = orm.Int(1)  # the first snapshot's projwfc.x is the damaged one
    results, node = run_get_node(builder)

    expected_damage = {"truncated": "truncated aiida.out from", "corrupted": "overwrote aiida.out bytes"}[mode]
    assert f"{expected_damage}" in projwfc.log and f"(seed {SEEDS[mode]})" in projwfc.log, projwfc.log
    assert node.exit_status == node.process_class.exit_codes.ERROR_SOME_SNAPSHOTS_FAILED.status, node.exit_message
    assert "1 of 2" in node.exit_message
    (failed,) = [c for c in node.called if c.process_label == "SpectrumWorkChain" and not c.is_finished_ok]
    assert failed.exit_status == failed.process_class.exit_codes.ERROR_PROJWFC_FAILED.status
    (projwfc,) = [c for c in failed.called if c.process_label == "ProjwfcCalculation"]
    assert projwfc.is_finished and not projwfc.is_excepted, "the parser raised: a traceback escaped"
    expected = {"truncated": "ERROR_OUTPUT_STDOUT_INCOMPLETE", "corrupted": "ERROR_OUTPUT_STDOUT_PARSE"}[mode]
    assert projwfc.exit_status == projwfc.process_class.exit_codes[expected].status
    assert f"exit {projwfc.exit_status}" in failed.exit_message and "projwfc.x failed" in failed.exit_message
    spectra = results["spectra"]
    assert spectra.n_spectra == 2  # the other snapshot's two Ge sites
    assert np.all(np.isfinite(spectra.intensity)) and spectra.intensity.max() > 0
