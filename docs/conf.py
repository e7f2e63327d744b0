"""Sphinx configuration of the docs site (``make docs``: MyST Markdown, warnings are errors).

The build is offline: no intersphinx, no inventories or assets fetched (tests/docs/test_site.py builds it with
every network connection refused). The API reference (docs/reference/) is generated from the docstrings by
autosummary into docs/reference/generated/ (not committed).
"""

import importlib.metadata
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]

project = "ser-models"
author = "the ser-models developers"
try:  # the installed distribution's version (``pip install -e .`` records pyproject's); the source's otherwise
    release = importlib.metadata.version("ser-models")
except importlib.metadata.PackageNotFoundError:
    from ser_models import __version__ as release
version = ".".join(release.split(".")[:2])
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.napoleon",
              "sphinx.ext.viewcode", "job_config", "api_reference"]
# .rst first: autosummary writes its stub pages with the first suffix, and they are reStructuredText
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
# docs/layers/*.md are reports that jobs.layer_analysis writes (tables without a title); the pages link them
exclude_patterns = ["_build", "_templates", "layers/*.md"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
# Types go beside each parameter, where the Google "Args:" text (shapes, units) is, not into the signature:
# signatures stay one line. Every parameter gets its type, documented or not; a config dataclass lists its
# fields as parameters (docs/_ext/api_reference.py).
autodoc_typehints = "description"
autodoc_typehints_description_target = "all"
autodoc_typehints_format = "short"
python_use_unqualified_type_names = True
autodoc_mock_imports = []
autosummary_generate = True
autosummary_generate_overwrite = True
# viewcode renders the highlighted source of every documented module into the site (_modules/), so the
# [source] links work offline and show the code this site was built from.
viewcode_line_numbers = True
# pydata-sphinx-theme: a search box in the header, the toctree as the left sidebar and each page's outline
# (its headings) as the right ("secondary") sidebar.
html_theme = "pydata_sphinx_theme"
html_title = f"ser-models {release}"
html_theme_options = {
    "navbar_start": ["navbar-logo"],
    "navbar_center": ["navbar-nav"],
    "navbar_end": ["search-button", "theme-switcher"],
    "secondary_sidebar_items": ["page-toc"],
    "show_toc_level": 2,
    "navigation_with_keys": False,
    # the left sidebar expands only the current page's branch: the API reference adds ~200 pages, and a full
    # tree on every page made it most of the build's time (and of each page's HTML)
    "collapse_navigation": True,
}
html_sidebars = {"**": ["sidebar-nav-bs"]}
