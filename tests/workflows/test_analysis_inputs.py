"""xesml.analysis given an already-trained emulator or ``target_spectra``, and its 307 and 401 exits on real spectra.

The spectra are real: xesml.spectra (pw.x + projwfc.x, ``fast`` protocol, one MPI process) of four
rattled 6-atom rutile snapshots, the ones the failure tests use (so with AiiDA's cache they are
computed once per session). Every analysis here uses the ``fast`` protocol.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node
from failures.helpers import ONE_PROCESS, SNAPSHOT_SEEDS, called, rattled_rutile

from aiida_xesml.data.spectra import XesSpectraData
from aiida_xesml.ml.moments import spectral_moments
from aiida_xesml.workflows.analysis import AnalysisWorkChain
from aiida_xesml.workflows.spectra import SpectraWorkChain

pytestmark = pytest.mark.qe
SEEDS = (*SNAPSHOT_SEEDS, 24)  # four snapshots: one held out, three for the fast protocol's 3-fold grouped CV
CODES = AnalysisWorkChain.exit_codes


@pytest.fixture(scope="module")
def snapshots(qe_codes, pseudo_family):
    """Structures ``snapshot_<i>`` and the spectra of all their Ge sites (label 0 GPa)."""
    structures = [rattled_rutile(seed) for seed in SEEDS]
    builder = SpectraWorkChain.get_builder_from_protocol(qe_codes["pw"], qe_codes["projwfc"], structures,
                                                         protocol="fast", options=ONE_PROCESS,
                                                         labels=[0.0] * len(structures))
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    return {f"snapshot_{i}": structure for i, structure in enumerate(structures)}, results["spectra"]


def subset(spectra: XesSpectraData, rows) -> XesSpectraData:
    """A new XesSpectraData holding ``rows`` of ``spectra`` (in that order)."""
    rows = np.asarray(rows)
    part = XesSpectraData()
    part.set_spectra(spectra.energy_ev, spectra.intensity[rows], spectra.site_index[rows], spectra.reference_ev[rows],
                     snapshot_index=spectra.snapshot_index[rows], label=spectra.row_labels[rows],
                     parameters=spectra.parameters)
    return part


def analysis_builder(snapshots, spectra=None, structures=None, **overrides):
    all_structures, all_spectra = snapshots
    return AnalysisWorkChain.get_builder_from_protocol(spectra or all_spectra, structures or all_structures,
                                                       protocol="fast", overrides=overrides)


@pytest.fixture(scope="module")
def trained(snapshots):
    """An analysis that trains its emulator (seed 1, unlike the protocol's 0)."""
    _, node = run_get_node(analysis_builder(snapshots, training_parameters={"seed": 1}))
    assert node.is_finished_ok, node.exit_message
    return node


def _calcfunctions(node) -> dict:
    return {child.base.links.get_incoming(link_type=LinkType.CALL_CALC).one().link_label: child
            for child in node.called if isinstance(child, orm.CalcFunctionNode)}


def test_a_trained_emulator_is_used_as_given(snapshots, trained):
    emulator = trained.outputs.emulator
    builder = analysis_builder(snapshots)
    builder.emulator = emulator
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    steps = _calcfunctions(node)
    assert "train_emulator" not in steps, "an emulator was trained although one was given"
    assert results["emulator"].uuid == emulator.uuid
    assert "metrics" not in results
    for step in ("fit_eca", "reconstruct"):
        assert steps[step].inputs.emulator.uuid == emulator.uuid, f"{step} did not use the given emulator"
    assert steps["fit_eca"].inputs.dataset.uuid == results["dataset"].uuid
    assert np.isfinite(results["reconstruction"].get_array("cn")).all()


def test_target_spectra_are_reconstructed_row_by_row(snapshots, trained):
    _, spectra = snapshots
    rows = [0, 3, 0]  # snapshot 0 site 0, snapshot 1 site 1, and the first again
    builder = analysis_builder(snapshots)
    builder.emulator = trained.outputs.emulator
    builder.target_spectra = subset(spectra, rows)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    targets = results["target_reconstruction"]
    assert called(node, "reconstruct_targets").inputs.spectra.uuid == builder.target_spectra.uuid
    # one row per target spectrum, in order; the moments are those of each spectrum (core, independently)
    windows = node.inputs.moment_parameters.get_dict().get("windows")
    expected = spectral_moments(spectra.energy_ev, spectra.intensity[rows], **({"windows": windows} if windows else {}))
    np.testing.assert_allclose(targets.get_array("target_moments"), expected, rtol=1e-10, atol=1e-12)
    assert not np.allclose(expected[0], expected[1])
    for name in targets.get_arraynames():
        values = targets.get_array(name)
        if values.ndim and len(values) == len(rows):
            # the same spectrum, the same result (the inverse runs all rows as one batch: to ~1e-10)
            np.testing.assert_allclose(values[0], values[2], rtol=1e-6, atol=1e-9, err_msg=name)
    assert np.isfinite(targets.get_array("cn")).all()
    # the main reconstruction (one row per label, from the ensemble mean) is not changed by the targets
    assert len(results["reconstruction"].get_array("label")) == 1


def test_spectra_with_no_intensity_in_a_window_is_307(snapshots):
    _, node = run_get_node(analysis_builder(snapshots, moment_parameters={"windows": {"kbpp": [-29.5, -27.5],
                                                                                      "kb2": [-12.0, 2.0]}}))
    assert node.exit_status == CODES.ERROR_INVALID_SPECTRA.status, node.exit_message
    assert re.match(r"The spectra cannot be turned into moments: window `kbpp` = \(-29\.5, -27\.5\) eV has no "
                    r"intensity", node.exit_message), node.exit_message
    assert set(_calcfunctions(node)) == {"compute_moments"}, "steps ran after the moments failed"
    assert not node.base.links.get_outgoing(link_type=LinkType.RETURN).all()


def test_too_little_data_to_train_on_is_401_and_the_data_set_is_kept(snapshots):
    """One snapshot (two site spectra) passes the input checks (fast: at least 2 per label) but cannot
    be split into training and held-out data: the train_emulator step fails, its reason in the message."""
    from aiida_xesml.calculations.train_emulator import train_emulator

    structures, spectra = snapshots
    one = subset(spectra, np.flatnonzero(spectra.snapshot_index == 0))
    results, node = run_get_node(analysis_builder(snapshots, spectra=one,
                                                  structures={"snapshot_0": structures["snapshot_0"]}))
    assert node.exit_status == CODES.ERROR_STEP_FAILED.status, node.exit_message
    assert {"moments", "descriptors", "dataset"} <= set(results), "what was computed before the failure is kept"
    with pytest.raises(ValueError) as raised:  # the same step on the same data, outside the work chain
        train_emulator(results["dataset"], node.inputs.training_parameters)
    assert node.exit_message == f"The train_emulator step failed: {raised.value}"
