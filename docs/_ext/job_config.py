"""``{job-config} jobs.after``: a job's config keys (dotted name, default, effect, help), generated from the config
dataclasses' ``help`` strings and ``effect`` marks, so the reference never drifts from the code. The keys are
grouped in the sections ``ser-models <job> --help`` shows (data, labels, evaluation, model, training, compute,
output, job), one table per section, in that order."""

from __future__ import annotations

import importlib

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.errors import ExtensionError

from ser_models.catalog.help import section_names, section_of
from ser_models.config import RESULT, config_keys, key_effects


def _schema(job: str) -> type:
    """The config dataclass a job parses: the ``*Config`` class its ``main`` (in ``ser_models.runs.<job>``) hands
    to ``parse_job_args``."""
    module = importlib.import_module(importlib.import_module(job).main.__module__)
    source = importlib.util.find_spec(module.__name__).loader.get_source(module.__name__) or ""
    for name in dir(module):
        if name.endswith("Config") and f"parse_job_args({name}," in source:
            return getattr(module, name)
    raise ExtensionError(f"job-config: {job} does not call parse_job_args with a *Config class")


class JobConfig(Directive):
    required_arguments = 1

    def run(self):
        job = self.arguments[0]
        schema = _schema(job)
        effects = key_effects(schema)  # result | speed | location (docs/jobs.md, "What a key may change")
        rows = [(name, repr(default), effects.get(name) or RESULT, text)
                for name, default, text in config_keys(schema)]
        out = []
        for section in section_names():
            chosen = [r for r in rows if section_of(r[0]) == section]
            if chosen:
                out += [nodes.rubric(text=section), _table(chosen)]
        return out


def _table(rows: list[tuple[str, str, str, str]]) -> nodes.table:
    table = nodes.table(classes=["job-config"])
    group = nodes.tgroup(cols=4)
    table += group
    for width in (28, 18, 9, 45):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    body = nodes.tbody()
    group += head
    group += body
    for target, cells in ((head, ("key", "default", "effect", "what it sets")), *((body, r) for r in rows)):
        row = nodes.row()
        for i, text in enumerate(cells):
            entry = nodes.entry()
            entry += nodes.paragraph("", "", nodes.literal(text, text) if i < 2 and target is body
                                     else nodes.Text(text))
            row += entry
        target += row
    return table


def setup(app):
    app.add_directive("job-config", JobConfig)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
