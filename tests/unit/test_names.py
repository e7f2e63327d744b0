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


def test_an_empty_id_says_so_exactly():
    assert id_problem(None) == "is empty" and id_problem("") == "is empty"


def test_check_ids_message_shows_long_values_cut_at_80_characters_and_counts_the_rest():
    bad80, bad81 = "x" * 79 + "\n", "y" * 80 + "\n"  # 80 and 81 characters, each with a line break
    with pytest.raises(ManifestError) as info:
        check_ids([None, bad80, bad81], "utt_id", lambda i: f"row {i + 1}", "m.csv")
    msg = str(info.value)
    assert f"row 2 {bad80!r} has" in msg  # 80 characters: shown whole
    assert f"row 3 '{'y' * 80}...' has" in msg and "y" * 81 not in msg  # 81: the first 80, then ...
    # the missing cell before them is allowed (speaker-like columns) and does not end the check
    assert "2 value(s)" in msg and "row 1" not in msg
    assert msg.endswith("at position 81")  # ten rows or fewer: no count of more after the last
    assert "position 80; row 3" in msg  # rows joined with "; "
    rows = [f"bad\x00{i}" for i in range(10)]
    with pytest.raises(ManifestError) as info:
        check_ids(rows, "utt_id", lambda i: f"row {i + 1}", "m.csv")
    assert "row 10 " in str(info.value) and "more" not in str(info.value)  # exactly ten: all shown, no count


def test_safe_file_name_of_an_invalid_id_and_an_upper_case_suffix():
    # an id with a lone surrogate is refused by check_ids, but a name must still exist for it (never raise)
    a, b = safe_file_name("a\ud800", ".wav"), safe_file_name("a\ud801", ".wav")
    assert a != b and a.startswith("a-") and a.endswith(".wav")
    assert safe_file_name("a", ".WAV").endswith(".WAV") and safe_file_name("a", ".Tar.GZ").endswith(".Tar.GZ")


@pytest.mark.parametrize("name", ["\\x", "\\\\server\\share\\x", "c:\\x", "c:/x", "D:/x"])
def test_safe_child_refuses_windows_absolute_names(tmp_path, name):
    with pytest.raises(UnsafePathError, match="is absolute"):
        safe_child(str(tmp_path / "clips"), name)


def test_safe_child_says_a_link_may_be_why_a_name_leads_out(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    os.symlink(tmp_path, clips / "up")
    with pytest.raises(UnsafePathError, match=r"outside that folder \(a symbolic link\?\)$"):
        safe_child(str(clips), "up/x.wav")


@pytest.mark.parametrize(("value", "slug"), [("abc.", "abc"), ("XaX.", "XaX"), ("._-Xy", "Xy"), ("a b..", "a_b")])
def test_a_slug_loses_only_leading_dots_dashes_underscores_and_trailing_dots(value, slug):
    """The name is part of a pool's layout: a later version that named a clip differently would not find it."""
    import hashlib

    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:HASH_CHARS]
    assert safe_file_name(value, ".wav") == f"{slug}-{digest}.wav"
