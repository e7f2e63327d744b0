"""The Smart Turn importer replaces only its own folder, and by a swap: a kill mid-replacement leaves an import
that the next call finds whole."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from ser_models.encoders.smart_turn import ONNX_SHA256, fetch_wheel, import_smart_turn
from ser_models.exceptions import ForeignFolderError
from ser_models.io import complete_dir

pytest.importorskip("onnxruntime", reason="the importer's graph conversion needs onnx")


@pytest.fixture(scope="module")
def wheel(smart_turn_dir):
    return fetch_wheel(smart_turn_dir.parents[1], quiet=True)  # cached by the import the fixture made


def test_a_folder_the_importer_did_not_make_is_refused_untouched(wheel, tmp_path):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    with pytest.raises(ForeignFolderError, match=r"thesis: it is not empty .*It holds: chapter1\.tex"):
        import_smart_turn(out, wheel, quiet=True)
    assert sorted(os.listdir(out)) == ["chapter1.tex"] and (out / "chapter1.tex").read_text() == "years of work"


def test_a_kill_mid_reimport_leaves_an_import_the_next_call_finds(wheel, tmp_path):
    out = tmp_path / "encoders" / "smart-turn"
    import_smart_turn(out, wheel, quiet=True)
    code = ("import sys; from ser_models.encoders.smart_turn import import_smart_turn; "
            "import_smart_turn(sys.argv[1], sys.argv[2], force=True, quiet=True)")
    proc = subprocess.run([sys.executable, "-c", code, str(out), str(wheel)], timeout=300,
                          env={**os.environ, "SER_FAILPOINT": "replace_dir_old_removed"})
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # killed with the old import gone and the new one staged beside it

    assert complete_dir(out, "import.json") == str(out.parent / ".smart-turn.incoming")
    # The next call finishes the swap and reuses the import: it never reads a source (this one does not exist).
    assert import_smart_turn(out, tmp_path / "no-such.whl", quiet=True) == out
    assert json.loads((out / "import.json").read_text())["onnx_sha256"] == ONNX_SHA256
    assert (out / "model.safetensors").stat().st_size > 1_000_000
    assert sorted(os.listdir(out.parent)) == ["smart-turn"]  # no staging folder left


def test_a_reimport_never_replaces_a_folder_holding_files_it_did_not_write(wheel, tmp_path):
    """A re-import replaces the whole folder: one that also holds a person's notes is refused, notes kept."""
    out = tmp_path / "encoders" / "smart-turn"
    import_smart_turn(out, wheel, quiet=True)
    (out / "NOTES.md").write_text("which runs used it")
    with pytest.raises(ForeignFolderError, match="NOTES.md"):
        import_smart_turn(out, wheel, force=True, quiet=True)
    assert (out / "NOTES.md").read_text() == "which runs used it" and (out / "import.json").exists()


def _staged_beside(out):
    """What a re-import killed after its old version was gone leaves: the complete new import, staged beside."""
    staged = out.parent / f".{out.name}.incoming"
    shutil.copytree(out, staged)
    return staged


def test_a_folder_made_after_a_killed_import_is_never_replaced_by_its_staged_version(wheel, tmp_path):
    """A kill left the new import staged and no folder; a person then made the folder. The next import finished
    the interrupted swap first, deleting the person's folder, and only then checked it."""
    out = tmp_path / "encoders" / "smart-turn"
    import_smart_turn(out, wheel, quiet=True)
    staged = _staged_beside(out)
    shutil.rmtree(out)
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    (out / "config.json").write_text('{"model_type": "mine"}')
    with pytest.raises(ForeignFolderError, match=r"chapter1\.tex"):
        import_smart_turn(out, tmp_path / "no-such.whl", quiet=True)
    assert sorted(os.listdir(out)) == ["chapter1.tex", "config.json"]
    assert (out / "chapter1.tex").read_text() == "years of work" and (staged / "import.json").is_file()


def test_an_import_a_kill_left_half_deleted_is_replaced_by_its_staged_version(wheel, tmp_path):
    """The old import loses its import.json first, then the rest: a folder of the importer's files alone, read
    back as such, is finished by the staged version."""
    out = tmp_path / "encoders" / "smart-turn"
    import_smart_turn(out, wheel, quiet=True)
    _staged_beside(out)
    (out / "import.json").unlink()
    (out / "preprocessor_config.json").unlink()
    assert import_smart_turn(out, tmp_path / "no-such.whl", quiet=True) == out
    assert json.loads((out / "import.json").read_text())["onnx_sha256"] == ONNX_SHA256
    assert sorted(os.listdir(out.parent)) == ["smart-turn"]


def test_an_import_json_key_alone_does_not_make_a_folder_an_import(wheel, tmp_path):
    """import.json's recorded hash beside a file named like the weights, and no config that reads as the
    imported encoder's: refused, nothing replaced (only the key was checked before)."""
    out = tmp_path / "models"
    out.mkdir()
    (out / "import.json").write_text(json.dumps({"onnx_sha256": ONNX_SHA256}))
    (out / "model.safetensors").write_bytes(b"my own weights, not a safetensors file")
    with pytest.raises(ForeignFolderError, match="model.safetensors"):
        import_smart_turn(out, wheel, force=True, quiet=True)
    assert (out / "model.safetensors").read_bytes() == b"my own weights, not a safetensors file"
