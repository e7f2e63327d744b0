"""The README stays a landing page, and the docs site's jobs reference covers every job."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_readme_is_a_landing_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move detail into docs/"
    for page in re.findall(r"\]\((docs/[^)#]+)\)", "\n".join(lines)):
        assert (REPO / page).is_file(), f"README links {page}, which does not exist"


def test_jobs_reference_lists_the_keys_of_every_job():
    documented = set(re.findall(r"```\{job-config\} (jobs\.\w+)", (REPO / "docs" / "jobs.md").read_text()))
    # A job parses a config when the module its main lives in (ser_models.runs.<job>, or the package of a job
    # above the runs) calls parse_job_args.
    code = {p.stem: importlib.import_module(f"jobs.{p.stem}").main.__module__
            for p in (REPO / "jobs").glob("*.py") if p.stem != "__init__"}
    parsing = {f"jobs.{job}" for job, mod in code.items()
               if "parse_job_args(" in (REPO / (mod.replace(".", "/") + ".py")).read_text()}
    assert parsing and documented == parsing, (parsing - documented, documented - parsing)


def test_every_page_is_in_the_toctree():
    index = (REPO / "docs" / "index.md").read_text()
    pages = {p.stem for p in (REPO / "docs").glob("*.md")} - {"index"}
    missing = {p for p in pages if not re.search(rf"^{re.escape(p)}$", index, re.M)}
    assert not missing, missing
