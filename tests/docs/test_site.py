"""The built docs site has what a reader navigates by: search, the page list, each page's outline.

Builds the site with Sphinx (warnings are errors, as ``make docs``), serves it over HTTP from a local
``http.server`` and reads the pages as a browser would fetch them. No browser engine runs (none is installable
offline), so this checks the served HTML and assets, not rendering. ``make test`` installs the docs extra and sets
``SER_REQUIRE_DOCS=1``; there, and on CI (``CI=true``), a missing Sphinx fails the module instead of skipping it.
Elsewhere (a bare ``pip install -e '.[test]'``) the module is skipped.
"""

from __future__ import annotations

import functools
import html as html_module
import http.server
import importlib.util
import os
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_MISSING = [name for name in ("sphinx", "myst_parser", "pydata_sphinx_theme") if importlib.util.find_spec(name) is None]
if _MISSING:
    _WHY = f"the docs extra is not installed (missing {', '.join(_MISSING)}): pip install -e '.[docs]'"
    if os.environ.get("SER_REQUIRE_DOCS") == "1" or os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(_WHY, pytrace=False)
    pytest.skip(_WHY, allow_module_level=True)


#: Runs ``sphinx`` with every network connection and name lookup refused (a Python audit hook): one it tries
#: is written to the file named by the first argument and fails. Loopback stays allowed.
OFFLINE_BUILD = """
import runpy, sys
log = sys.argv.pop(1)
def refuse(event, args):
    if event == "socket.getaddrinfo" and args[0] not in ("localhost", "127.0.0.1", "::1", None):
        target = args[0]
    elif event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] not in ("127.0.0.1", "::1"):
        target = args[1]
    else:
        return
    with open(log, "a") as f:
        f.write(f"{event} {target!r}\\n")
    raise OSError(f"the docs build must not reach the network: {event} {target!r}")
sys.addaudithook(refuse)
sys.argv[0] = "sphinx"
runpy.run_module("sphinx", run_name="__main__")
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``get(path) -> str``: a page of the freshly built site, fetched over HTTP."""
    out = tmp_path_factory.mktemp("html")
    attempts = out.parent / "network-attempts.txt"
    build = subprocess.run([sys.executable, "-c", OFFLINE_BUILD, str(attempts), "-q", "-W", "--keep-going", "-b",
                            "html", str(REPO / "docs"), str(out)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    # the build is offline: no inventory, theme asset or anything else fetched
    assert not attempts.exists(), attempts.read_text()
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
        for target in ("tutorial.html", "concepts.html", "jobs.html", "privacy.html", "benchmarks.html",
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
    for anchor in ("applying-a-model-ser-models-predict", "configuration", "config-keys-of-every-job"):
        assert anchor in links, (anchor, links[:20])
    concepts = site("concepts.html")
    assert 'id="glossary-of-metrics"' in concepts


def test_the_version_is_in_every_page_title_and_the_reference(site):
    from ser_models import __version__

    for page in ("index.html", "reference/index.html", "reference/generated/ser_models.api.load.html"):
        html = site(page)
        title = re.search(r"<title>(.*?)</title>", html, flags=re.S).group(1)
        assert f"ser-models {__version__}" in title, (page, title)
        navbar = html[html.index("navbar-brand"):][:2000]
        assert f"ser-models {__version__}" in navbar, page


def test_the_reference_shows_type_hints_and_links_the_source(site):
    html = site("reference/generated/ser_models.api.load.html")
    # type hints beside the parameters (autodoc_typehints = "description") and the return type
    assert re.search(r"<strong>checkpoint_dir</strong>.{0,200}str", html, flags=re.S), "no type for checkpoint_dir"
    assert "Return type" in html and "Predictor" in html[html.index("Return type"):][:800]
    # [source] goes to the highlighted module, rendered into the site (viewcode): the function is there
    link = re.search(r'href="([^"]*_modules/ser_models/api\.html#[^"]*)"', html)
    assert link, "no [source] link on ser_models.api.load"
    source = site("reference/generated/" + link.group(1).split("#")[0])
    assert "def load(checkpoint_dir" in html_module.unescape(re.sub(r"<[^>]+>", "", source))
    # a re-exported class links to the module that defines it, not to the package that re-exports it
    html = site("reference/generated/ser_models.active.VectorIndex.html")
    assert re.search(r'href="[^"]*_modules/ser_models/active/index\.html#VectorIndex"', html)
    # a package page has its summary table, one row per name
    page = site("reference/ser_models.heads.html")
    assert page.count('class="autosummary') >= 2 and "generated/ser_models.heads.EmotionHead.html" in page
