"""Source signatures of a pool update: a present, untouched file is never re-hashed or restamped, even when
another clip's file is missing (nanosecond mtimes must survive the comparison exactly)."""

from __future__ import annotations

import os

import pandas as pd

from ser_models.data.pool_update import check_sources, source_signatures


def test_a_missing_source_leaves_the_untouched_ones_alone(tmp_path, capsys):
    paths = [str(tmp_path / f"{k}.wav") for k in range(3)]
    for k, p in enumerate(paths):
        with open(p, "wb") as fh:
            fh.write(bytes([k]) * 100)
        os.utime(p, ns=(1_700_000_000_123_456_789 + k, 1_700_000_000_123_456_789 + k))  # not a float64 value
    signed = source_signatures(paths)
    old = pd.DataFrame({"path": paths, "source_size": [signed[p][0] for p in paths],
                        "source_mtime_ns": pd.array([signed[p][1] for p in paths], dtype="Int64"),
                        "source_sha256": [signed[p][2] for p in paths]}, index=["a", "b", "c"])
    os.remove(paths[2])
    rows = pd.DataFrame({"path": paths}, index=old.index)
    assert check_sources(old, rows).empty  # nothing restamped: 'a' and 'b' match exactly
    assert "1 existing clips' source files are missing" in capsys.readouterr().out
