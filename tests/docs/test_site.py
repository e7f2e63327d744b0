"""The built docs site has what a reader navigates by: search, the page list, each page's outline.

Builds the site with Sphinx (warnings are errors, as ``make docs``), serves it over HTTP from a local
``http.server`` and reads the pages as a browser would fetch them. No browser engine runs (none is installable
offline), so this checks the served HTML and assets, not rendering. Skipped when the docs extra
(``pip install -e '.[docs]'``, ``make docs``) is not installed.
"""

from __future__ import annotations

import functools
import http.server
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")
pytest.importorskip("pydata_sphinx_theme")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``get(path) -> str``: a page of the freshly built site, fetched over HTTP."""
    out = tmp_path_factory.mktemp("html")
    build = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-W", "--keep-going", "-b", "html",
                            str(REPO / "docs"), str(out)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-4000:]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"

    def get(path: str) -> str:
        with urllib.request.urlopen(base + path, timeout=10) as response:
            assert response.status == 200, path
            return response.read().decode()

    yield get
    server.shutdown()


def test_every_page_has_search_and_the_page_list(site):
    for page in ("index.html", "jobs.html", "privacy.html", "cost.html"):
        html = site(page)
        assert "search-button" in html and 'action="search.html"' in html.replace("'", '"'), page
        nav = html[html.index("bd-sidebar-primary"):]
        for target in ("quickstart.html", "concepts.html", "jobs.html", "privacy.html", "benchmarks.html",
                       "cost.html"):
            assert f'href="{target}' in nav or 'href="#' in nav and target == page, (page, target)


def test_search_works_from_its_index(site):
    html = site("search.html")
    assert "searchtools.js" in html
    index = site("searchindex.js")
    # the index knows the words of the pages: a glossary term and a job name
    assert "aubc" in index.lower() and "prepare_pool" in index


def test_pages_show_their_outline(site):
    html = site("jobs.html")
    toc = html[html.index('id="pst-page-navigation-heading'):] if 'id="pst-page-navigation-heading' in html \
        else html[html.index("page-toc"):]
    links = re.findall(r'href="#([\w-]+)"', toc)
    for anchor in ("applying-a-model-jobs-predict", "configuration", "config-keys-of-every-job"):
        assert anchor in links, (anchor, links[:20])
    concepts = site("concepts.html")
    assert 'id="glossary-of-metrics"' in concepts
