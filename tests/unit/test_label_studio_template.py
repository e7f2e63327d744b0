"""Where the test servers' migrated Label Studio database is kept: beside the installation when it can be
written, else in the user's cache under a name made from the installation's path."""

from __future__ import annotations

import os

from ser_models.testing import label_studio


def test_a_writable_installation_keeps_its_template_inside(tmp_path):
    exe = tmp_path / "venv" / "bin" / "label-studio"
    exe.parent.mkdir(parents=True)
    assert label_studio.template_folder(str(exe)) == tmp_path / "venv" / "ser-models-template"


def test_a_read_only_installation_keeps_it_in_the_user_cache_one_per_installation(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(label_studio.os, "access", lambda path, mode: mode != os.W_OK)
    one = label_studio.template_folder("/opt/ls-a/bin/label-studio")
    other = label_studio.template_folder("/opt/ls-b/bin/label-studio")
    assert one.parent == tmp_path / "cache" / "ser-models" and one.name.startswith("label-studio-template-")
    assert one != other and one == label_studio.template_folder("/opt/ls-a/bin/label-studio")
