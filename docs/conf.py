"""Sphinx configuration of the aiida-xesml documentation.

Pages are MyST Markdown; the API reference uses autodoc inside ``{eval-rst}`` blocks and the
command line uses sphinx-click. The build needs no network and never loads an AiiDA profile:
``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``make docs``).
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# The package from this checkout (also when it is not pip-installed), and the local extension.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

# Importing aiida creates its configuration folder. Keep it project-local, as the Makefile does,
# so that building the docs never creates ~/.aiida. Nothing here loads a profile.
os.environ.setdefault("AIIDA_PATH", str(ROOT / ".aiida"))

import warnings  # noqa: E402

from aiida.common.warnings import AiidaDeprecationWarning  # noqa: E402

import aiida_xesml  # noqa: E402

# autodoc reads every attribute of the data classes, including aiida's deprecated ones (`objects`,
# `Model`); the resulting AiidaDeprecationWarnings are about aiida-core, not about these docs.
# aiida installs its own filter when it first reads its configuration, which would override ours,
# so read it first (this never creates a configuration or loads a profile).
try:
    from aiida.manage.configuration import get_config

    get_config(create=False)
except Exception:  # noqa: BLE001  no configuration yet: aiida then installs no filter either
    pass
warnings.filterwarnings("ignore", category=AiidaDeprecationWarning)

project = "aiida-xesml"
author = "aiida-xesml developers"
copyright = "aiida-xesml developers"  # noqa: A001  (Sphinx's name)
release = aiida_xesml.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_click",
    "xesml_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
nitpicky = False
# Keep "--option" and quotes as typed: the pages are full of command lines.
smartquotes = False

# MyST: $...$ and $$...$$ math, ::: fences, definition lists, and anchors for ### headings.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: document this package's own docstrings only. Inherited docstrings (aiida's WorkChain,
# ProtocolMixin, ArrayData) describe aiida, not this plugin, and are documented there.
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_inherit_docstrings = False
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
# The code uses reST field lists (:param x:); napoleon also accepts Google/NumPy sections.
napoleon_google_docstring = True
napoleon_numpy_docstring = True

html_theme = "alabaster"
html_title = f"aiida-xesml {release}"
html_static_path = []
html_theme_options = {
    "description": "Kβ X-ray emission spectra of compressed GeO2 to local structure, with provenance",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "250px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
