"""Sphinx configuration of the docs site (``make docs``: MyST Markdown, warnings are errors)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]

project = "ser-active"
author = "the ser-active developers"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "job_config"]
source_suffix = {".md": "markdown"}
root_doc = "index"
# docs/layers/*.md are reports that jobs.layer_analysis writes (tables without a title); the pages link them
exclude_patterns = ["_build", "layers/*.md"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the docstrings give shapes and units; long signatures would repeat them
autodoc_mock_imports = []
html_theme = "alabaster"
html_title = "ser-active"
