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
# pydata-sphinx-theme: a search box in the header, the toctree as the left sidebar and each page's outline
# (its headings) as the right ("secondary") sidebar.
html_theme = "pydata_sphinx_theme"
html_title = "ser-active"
html_theme_options = {
    "navbar_start": ["navbar-logo"],
    "navbar_center": ["navbar-nav"],
    "navbar_end": ["search-button", "theme-switcher"],
    "secondary_sidebar_items": ["page-toc"],
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_sidebars = {"**": ["sidebar-nav-bs"]}
