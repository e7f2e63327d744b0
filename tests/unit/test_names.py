"""Names from data: which ids are refused, the file name each id gets, and paths kept inside their folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ser_models.exceptions import ManifestError, UnsafePathError
from ser_models.names import (
    HASH_CHARS,
    MAX_ID_CHARS,
    SLUG_CHARS,
    check_ids,
    id_problem,
    safe_child,
    safe_file_name,
)

#: Ids that are valid (no control characters, not too long) yet dangerous as file names or spreadsheet cells.
HOSTILE_VALID = ["../x", "../../../../x", "/etc/x", "/", ".", "..", "a/b", "a\\b", "Abc", "abc", "ABC",
                 "=cmd|' /C calc'!A0", "+1", "-x", "@x", "'q", "%2e%2e", "%2e%2e%2fx", "a\u2215b", "a\uff0eb",
                 "\uff0e\uff0e", "\u2024\u2024", "e\u0301", "\u00e9", "con", "nul.wav", "x" * MAX_ID_CHARS,
                 " spaced out ", "\u202ertl", "C:\\x", "s3://b/k", "~", "-", "--rm"]
REFUSED = {"": "is empty", "a\x00b": "U+0000", "a\nb": "U+000A", "tab\tin": "U+0009", "cr\r": "U+000D",
           "del\x7f": "U+007F", "ls\u2028": "line separator", "ps\u2029": "paragraph separator",
           "x" * (MAX_ID_CHARS + 100): f"is {MAX_ID_CHARS + 100} characters long"}


@pytest.mark.parametrize("value", HOSTILE_VALID)
def test_hostile_but_printable_ids_are_valid(value):
    assert id_problem(value) is None


@pytest.mark.parametrize(("value", "why"), list(REFUSED.items()))
def test_control_characters_empty_and_overlong_ids_are_refused(value, why):
    assert why in id_problem(value)


def test_check_ids_names_every_bad_row_in_one_error():
    values = ["ok", "a\nb", None, "x" * 300] + [f"bad\x00{i}" for i in range(12)]
    with pytest.raises(ManifestError) as info:
        check_ids(values, "utt_id", lambda i: f"row {i + 1}", "m.jsonl", allow_missing=False)
    msg = str(info.value)
    assert msg.startswith("m.jsonl: column 'utt_id': 15 value(s) cannot be ids")
    assert "row 2 'a\\nb' has a control character U+000A at position 2" in msg
    assert "row 3 None is empty" in msg and "row 4 'xxxx" in msg and "is 300 characters long" in msg
    assert "row 11 " in msg and "row 12 " not in msg and "and 5 more" in msg  # the first ten, then a count
    check_ids(["a", None], "speaker", lambda i: f"row {i + 1}", "m.csv")  # optional columns may be empty


@pytest.mark.parametrize("value", HOSTILE_VALID)
def test_safe_file_name_is_one_plain_component(value):
    name = safe_file_name(value, ".wav")
    assert name.endswith(".wav") and "/" not in name and "\\" not in name
    assert not name.startswith((".", "-")) and name.isascii() and name.replace("-", "").replace("_", "").replace(
        ".", "").isalnum()
    assert len(name) <= SLUG_CHARS + 1 + HASH_CHARS + len(".wav")


def test_safe_file_names_never_collide_not_even_ignoring_case():
    names = [safe_file_name(v, ".wav") for v in HOSTILE_VALID]
    assert len({n.casefold() for n in names}) == len(HOSTILE_VALID)
    # look-alikes and normalisation forms are different ids, so different files
    assert safe_file_name("a/b") != safe_file_name("a\u2215b") != safe_file_name("a_b")
    assert safe_file_name("e\u0301") != safe_file_name("\u00e9")
    assert safe_file_name("Abc").casefold() != safe_file_name("abc").casefold()


def test_safe_file_name_is_readable_and_stable():
    assert safe_file_name("Ses01F_impro01_F000", ".wav").startswith("Ses01F_impro01_F000-")
    assert safe_file_name("../../x").startswith("x-") and safe_file_name("caf\u00e9").startswith("cafe-")
    assert safe_file_name("///").startswith("id-")
    with pytest.raises(UnsafePathError, match="suffix"):
        safe_file_name("a", "/../x")


def test_a_rerun_in_another_process_finds_every_clip_under_the_same_name():
    """A rerun is a new interpreter: its string hashes are salted anew (PYTHONHASHSEED), its names must not be."""
    ids = [*HOSTILE_VALID, "Ses01F_impro01_F000", "caf\u00e9", "///"]
    mine = [safe_file_name(v, ".wav") for v in ids]
    seed = "123" if os.environ.get("PYTHONHASHSEED") != "123" else "456"  # a salt other than this process's
    code = ("import json, sys; from ser_models.names import safe_file_name; "
            "print(json.dumps([safe_file_name(v, '.wav') for v in json.load(sys.stdin)]))")
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(ids), capture_output=True, text=True,
                          env={**os.environ, "PYTHONHASHSEED": seed}, cwd=Path(__file__).parents[2], check=False,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == mine


@pytest.mark.parametrize("folder", ["LOCAL", "s3://bucket/run/clips"])
def test_safe_child_keeps_paths_inside_their_folder(tmp_path, folder):
    folder = str(tmp_path / "clips") if folder == "LOCAL" else folder
    assert safe_child(folder, "a.wav") == f"{folder}/a.wav"
    assert safe_child(folder, "sub/./a.wav") == f"{folder}/sub/a.wav"
    assert safe_child(folder, "sub/../a.wav") == f"{folder}/a.wav"
    for name in ["../x.wav", "../../../../x", "..", ".", "", "/etc/x", "sub/../../x", "a\x00b", "s3://other/x",
                 "C:\\x"]:
        with pytest.raises(UnsafePathError, match="clips"):
            safe_child(folder, name)


def test_safe_child_refuses_a_symbolic_link_that_leads_out(tmp_path):
    clips = tmp_path / "run" / "clips"
    clips.mkdir(parents=True)
    (tmp_path / "elsewhere.wav").write_bytes(b"not ours")
    os.symlink(tmp_path / "elsewhere.wav", clips / "planted.wav")
    os.symlink(tmp_path, clips / "up")
    with pytest.raises(UnsafePathError, match="outside that folder"):
        safe_child(str(clips), "planted.wav")
    with pytest.raises(UnsafePathError, match="outside that folder"):
        safe_child(str(clips), "up/elsewhere.wav")
    assert safe_child(str(clips), "fresh.wav") == f"{clips}/fresh.wav"  # need not exist yet
