"""A quarantined clip is decoded again when its file is replaced (and only then): the rule prepare_pool's
update applies to the quarantine (``ser_models.data.pool_update.changed_quarantine``)."""

from __future__ import annotations

import os

import pandas as pd

from ser_models.data.pool_update import changed_quarantine


def _quarantine(tmp_path, names):
    """Quarantine rows as the pool stores them: each clip's path and its file's size and mtime then."""
    rows = []
    for name in names:
        path = tmp_path / f"{name}.wav"
        path.write_bytes(b"not audio")
        st = os.stat(path)
        rows.append({"utt_id": name, "path": str(path), "source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns})
    q = pd.DataFrame(rows)
    return q, q.set_index("utt_id")[["path"]]


def test_a_quarantined_clip_whose_file_was_replaced_is_decoded_again(tmp_path):
    q, manifest = _quarantine(tmp_path, ["bad", "still_bad", "moved"])
    assert changed_quarantine(q, manifest) == []  # nothing changed: nothing is decoded again
    good = tmp_path / "bad.wav"
    good.write_bytes(b"RIFF now a longer, repaired file")  # replaced by a good file
    os.utime(good, ns=(q.loc[0, "source_mtime_ns"] + 10**9,) * 2)
    (tmp_path / "elsewhere.wav").write_bytes(b"not audio")
    manifest.loc["moved", "path"] = str(tmp_path / "elsewhere.wav")  # the manifest points it at another file
    assert changed_quarantine(q, manifest) == ["bad", "moved"]


def test_a_file_rewritten_with_the_same_size_counts_by_its_mtime(tmp_path):
    q, manifest = _quarantine(tmp_path, ["bad"])
    os.utime(tmp_path / "bad.wav", ns=(q.loc[0, "source_mtime_ns"] + 5,) * 2)
    assert changed_quarantine(q, manifest) == ["bad"]
