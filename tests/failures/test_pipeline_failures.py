"""xesml.pipeline's 4xx exit codes, each from a real failure of a child (wrapper codes, see wrappers.py).

Each test runs the session's shared small pipeline (``fast_pipeline_builder`` in tests/conftest.py: the
6-atom rutile cell at 0 and 30 GPa, ``fast`` protocol) with one wrapper code or one override; where
one pressure shows the exit as well as two (403, 404), over its first pressure only. Its steps with
the real codes are the shared run's, so they come from AiiDA's cache once any test has run them; what
fails is always run for real. Every exit keeps what was computed before it in the outputs.
"""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from failures.helpers import called

from aiida_xesml.workflows.pipeline import PipelineWorkChain
from aiida_xesml.workflows.spectra import SpectraWorkChain

pytestmark = [pytest.mark.faults, pytest.mark.qe]
CODES = PipelineWorkChain.exit_codes
SNAPSHOTS_PER_PRESSURE = 3  # 2 Ge sites each
N_SNAPSHOTS = 2 * SNAPSHOTS_PER_PRESSURE
FIRST_PRESSURE = (0.0,)  # a pipeline over the shared run's first pressure: half of its cached steps


def test_compression_failing_is_401(fast_pipeline_builder, wrapper):
    pw = wrapper("pw", "exit")
    _, node = run_get_node(fast_pipeline_builder(pw=pw.code))
    assert node.exit_status == CODES.ERROR_COMPRESSION_FAILED.status, node.exit_message
    compression = called(node, "compression")
    assert compression.is_failed and 400 <= compression.exit_status < 500
    assert node.exit_message == (f"xesml.compression failed (exit {compression.exit_status}: "
                                 f"{compression.exit_message}); its finished pressures are in its outputs.")
    assert [child.process_label for child in node.called] == ["CompressionWorkChain"], "nothing ran after it"


def test_analysis_failing_is_403_with_the_spectra_kept(fast_pipeline_builder):
    """Real compression and spectra; the analysis refuses (min_samples_per_label above the rows there are)."""
    _, node = run_get_node(fast_pipeline_builder(pressures=FIRST_PRESSURE, analysis={"min_samples_per_label": 1000}))
    assert node.exit_status == CODES.ERROR_ANALYSIS_FAILED.status, node.exit_message
    analysis = called(node, "analysis")
    assert analysis.is_failed
    assert node.exit_message == f"xesml.analysis failed (exit {analysis.exit_status}: {analysis.exit_message})."
    assert "fewer than 1000 samples" in analysis.exit_message
    assert called(node, "spectra").is_finished_ok
    assert node.outputs.spectra.n_spectra == 2 * SNAPSHOTS_PER_PRESSURE  # computed, and kept
    assert "summary_table" in node.outputs.compression


def test_no_spectra_is_404_with_the_compression_kept(fast_pipeline_builder, wrapper):
    projwfc = wrapper("projwfc", "exit")
    _, node = run_get_node(fast_pipeline_builder(projwfc=projwfc.code, pressures=FIRST_PRESSURE))
    assert node.exit_status == CODES.ERROR_SPECTRA_FAILED.status, node.exit_message
    spectra = called(node, "spectra")
    assert spectra.exit_status == SpectraWorkChain.exit_codes.ERROR_ALL_SNAPSHOTS_FAILED.status
    assert node.exit_message == f"xesml.spectra produced no spectra (exit 411: {spectra.exit_message})."
    assert called(node, "compression").is_finished_ok
    assert "summary_table" in node.outputs.compression
    assert "spectra" not in node.outputs
    assert not [child for child in node.called if child.process_label == "AnalysisWorkChain"]


def test_some_snapshots_failing_is_410_and_the_analysis_uses_the_others(fast_pipeline_builder, wrapper):
    """The first projwfc.x run's stdout is truncated (seed 3): that snapshot fails, the other five are analysed."""
    projwfc = wrapper("projwfc", "damage", damage="truncate", target="aiida.out", seed=3, first_only=True)
    results, node = run_get_node(fast_pipeline_builder(projwfc=projwfc.code))
    assert "truncated aiida.out" in projwfc.log, projwfc.log
    assert node.exit_status == CODES.ERROR_SOME_SNAPSHOTS_FAILED.status, node.exit_message
    spectra = called(node, "spectra")
    assert spectra.exit_status == SpectraWorkChain.exit_codes.ERROR_SOME_SNAPSHOTS_FAILED.status
    assert node.exit_message == (f"The pipeline finished, but {spectra.exit_message} The analysis used the other "
                                 "snapshots.")
    assert f"1 of {N_SNAPSHOTS} snapshots failed" in spectra.exit_message
    analysis = called(node, "analysis")
    assert analysis.is_finished_ok
    n_rows = 2 * (N_SNAPSHOTS - 1)
    assert results["spectra"].n_spectra == n_rows and results["analysis"]["dataset"].n_rows == n_rows
    assert isinstance(results["analysis"]["reconstruction"], orm.ArrayData)
