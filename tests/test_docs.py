"""The documentation builds cleanly: ``sphinx-build -W --keep-going``, as ``make docs`` runs it."""

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    html = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(html)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert (html / "index.html").is_file()
    # The generated reference really holds the API and the CLI (not just empty pages).
    assert "aiida_xesml.ml.descriptors.local_coulomb_matrix" in (html / "reference" / "api.html").read_text()
    cli_page = (html / "reference" / "cli.html").read_text()
    assert "aiida-xesml setup" in cli_page and "verdi data xesml spectra export" in cli_page
