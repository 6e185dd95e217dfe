"""xesml.pipeline end to end with real pw.x and projwfc.x (fast protocol, 6-atom rutile cell), and its queries.

The run is the session's shared ``fast_pipeline`` (tests/conftest.py), which the compression test reads too.
"""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_xesml import query
from aiida_xesml.plotting import pipeline_figures
from aiida_xesml.workflows.pipeline import PipelineWorkChain

pytestmark = pytest.mark.qe


def test_pipeline_end_to_end_and_its_provenance(fast_pipeline, tmp_path):
    node = fast_pipeline  # the session's shared run (tests/conftest.py): 0 and 30 GPa
    analysis = node.outputs.analysis
    spectra = node.outputs.spectra
    # 3 snapshots per pressure (production frames 2, 4, 6), 2 Ge sites each, labelled by target pressure
    assert spectra.n_spectra == 12
    assert sorted(set(spectra.row_labels)) == [0.0, 30.0]
    assert analysis["dataset"].n_rows == 12
    reconstruction = analysis["reconstruction"]
    np.testing.assert_array_equal(reconstruction.get_array("label"), [0.0, 30.0])
    # the true ensemble means come from the snapshots: rutile keeps 6 O within 2.2 Å at both pressures, so the smooth
    # CN is the integer count; a population of 6-fold sites reads back as 6-fold, with a spread per value
    np.testing.assert_allclose(reconstruction.get_array("true_cn"), [6.0, 6.0])
    np.testing.assert_allclose(reconstruction.get_array("cn"), [6.0, 6.0], atol=0.3)
    assert np.all(np.isfinite(reconstruction.get_array("cn_spread")))
    table = node.outputs.compression.summary_table.get_dict()
    assert [row["target_pressure_gpa"] for row in table["rows"]] == [0.0, 30.0]

    # From the reconstruction, one query reaches the pw.x runs: the MD that made the snapshots and the SCFs.
    pw_runs = query.calculations_behind(reconstruction, plugin="quantumespresso.pw")
    kinds = {calc.inputs.parameters["CONTROL"]["calculation"] for calc in pw_runs}
    assert {"md", "scf", "vc-relax"} <= kinds
    projwfc_runs = query.calculations_behind(reconstruction, plugin="xesml.projwfc")
    assert len(projwfc_runs) == len({calc.uuid for calc in projwfc_runs}) == 6
    md_runs = [calc for calc in pw_runs if calc.inputs.parameters["CONTROL"]["calculation"] == "md"]
    compression_mds = [calc for calc in node.called_descendants
                       if isinstance(calc, orm.CalcJobNode) and calc.process_label == "PwCalculation"
                       and calc.inputs.parameters["CONTROL"]["calculation"] == "md"]
    assert {calc.uuid for calc in md_runs} == {calc.uuid for calc in compression_mds}
    # the newest reconstruction of a label: this one, or one of a later test's pipeline with the same labels
    newest = query.reconstruction_for_label(30.0)
    assert newest.ctime >= reconstruction.ctime and 30.0 in newest.get_array("label")
    assert query.reconstruction_for_label(12.5) is None
    assert analysis["dataset"].uuid in {d.uuid for d in query.datasets_by_label(25.0, 35.0)}
    assert analysis["dataset"].uuid not in {d.uuid for d in query.datasets_by_label(5.0, 25.0)}

    # the demo's summary and figures from this (small, real) run
    summary = query.pipeline_summary(node)
    assert [row["n_site_spectra"] for row in summary["pressures"]] == [6, 6]
    assert [row["true_cn"] for row in summary["pressures"]] == [6.0, 6.0]
    assert summary["pks"]["reconstruction"] == reconstruction.pk
    for path in pipeline_figures(query.pipeline_figure_data(node), tmp_path):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_pipeline_refuses_unusable_analysis_settings_before_any_qe_run(fast_pipeline_builder):
    builder = fast_pipeline_builder(analysis={"eca_parameters": {"n_components": 500}})
    _, node = run_get_node(builder)
    assert node.exit_status == PipelineWorkChain.exit_codes.ERROR_INVALID_ANALYSIS.status
    assert "n_components" in node.exit_message
    assert not node.called
