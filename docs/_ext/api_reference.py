"""How the API reference (docs/reference/) renders what autodoc finds, offline and reproducibly.

* A config dataclass (fields made with :func:`ser_models.config.field`) lists its fields as parameters, each
  with its ``help`` string and default (autodoc adds the type from the annotation), and shows no signature: a
  signature of 30 defaults would repeat the list, unreadably.
* A constant shows its value only when the value is short and the same on every build: a registry of
  functions prints memory addresses, and a 2,000-character table reads worse than its ``#:`` comment.
* A class shows its bases, unless it has none but ``object``.
* A constant a package re-exports (``ser_models.active.SCORES``) takes its ``#:`` comment from the module
  that defines it; one without a comment shows none, rather than the docstring of its type (``dict``).
"""

from __future__ import annotations

import dataclasses
import sys

from sphinx.errors import PycodeError
from sphinx.ext.autodoc import ClassDocumenter, DataDocumenter
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.inspect import object_description

#: A value longer than this (characters of its repr) is left out of the constant's header.
MAX_VALUE_CHARS = 80


def _help_fields(obj) -> list[dataclasses.Field]:
    """The fields of a config dataclass that carry a ``help`` string (none for any other object)."""
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        return []
    return [f for f in dataclasses.fields(obj) if f.init and "help" in f.metadata]


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return object_description(f.default)
    try:
        value = f.default_factory()
    except Exception:  # a factory that needs more than nothing: say so rather than guess
        return "(computed)"
    text = object_description(value)
    return text if len(text) <= MAX_VALUE_CHARS else f"a {type(value).__name__}"


def _field_params(app, what, name, obj, options, lines):
    """Append ``:param name: help (default ...)`` for each config field; autodoc's typehints add its type."""
    fields = _help_fields(obj)
    if what != "class" or not fields:
        return
    lines.append("")
    for f in fields:
        text = " ".join(str(f.metadata["help"]).replace("%%", "%").split())
        lines.append(f":param {f.name}: {text} (default ``{_default(f)}``)")
    lines.append("")


def _hide_config_signature(app, what, name, obj, options, signature, return_annotation):
    if what == "class" and _help_fields(obj):
        return "", None
    return None


def _comment(module: str, attrname: str) -> list[str]:
    """The ``#:`` comment of ``attrname`` in ``module`` ([] if none)."""
    try:
        analyzer = ModuleAnalyzer.for_module(module)
        analyzer.analyze()
    except PycodeError:
        return []
    return list(analyzer.attr_docs.get(("", attrname), []))


def _constant_comment(app, what, name, obj, options, lines):
    """A constant's docstring is its ``#:`` comment, from the module that defines it, or nothing.

    autodoc looks for the comment only in the module it documents (the package, for a re-export) and otherwise
    shows the docstring of the value's type (``dict``'s, ``ndarray``'s); the autosummary table asks autodoc's
    own documenter, so this runs on the docstring both of them produce.
    """
    if what != "data":
        return
    package, _, attrname = name.rpartition(".")
    if _comment(package, attrname):
        return
    for module in sorted(sys.modules):
        if module.startswith(package + ".") and getattr(sys.modules[module], attrname, None) is obj:
            comment = _comment(module, attrname)
            if comment:
                lines[:] = comment
                return
    lines[:] = []


class ShortValueDataDocumenter(DataDocumenter):
    """``autodata``: shows a constant's value only when it is short and holds no memory address."""

    priority = DataDocumenter.priority + 1

    def should_suppress_value_header(self) -> bool:
        if super().should_suppress_value_header():
            return True
        try:
            text = object_description(self.object)
        except ValueError:
            return True
        return len(text) > MAX_VALUE_CHARS or " at 0x" in text


class NoObjectBaseClassDocumenter(ClassDocumenter):
    """``autoclass :show-inheritance:``: says nothing, rather than "Bases: object", for a class without bases."""

    def add_directive_header(self, sig: str) -> None:
        if getattr(self.object, "__bases__", None) == (object,) and not hasattr(self.object, "__orig_bases__"):
            self.options = self.options.copy()
            self.options.pop("show-inheritance", None)
        super().add_directive_header(sig)


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")
    app.add_autodocumenter(ShortValueDataDocumenter, override=True)
    app.add_autodocumenter(NoObjectBaseClassDocumenter, override=True)
    app.connect("autodoc-process-docstring", _field_params)
    app.connect("autodoc-process-docstring", _constant_comment, priority=400)  # before napoleon's (500)
    app.connect("autodoc-process-signature", _hide_config_signature)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
