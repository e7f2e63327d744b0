"""The runs table of ``jobs.compare`` shows the metrics the runs have, and only those."""

from __future__ import annotations

from ser_models.active.curves import table


def _row(r, dev, test):
    return {"round": r, "labelled": 10 * (r + 1), "fraction": 0.1 * (r + 1), "dev": dev, "test": test,
            "selected": 10, "seconds": {"train": 1.0}}


def test_table_keeps_the_metrics_the_runs_report():
    classes = table({"a": [_row(0, {"ua": 0.4, "wa": 0.5}, {"ua": 0.3, "wa": 0.4})]})
    assert {"dev_ua", "test_ua", "test_wa"} <= set(classes.columns) and "test_ccc" not in classes.columns
    dims = table({"b": [_row(0, {"ccc": 0.2}, {"ccc": 0.25})]})
    assert dims.loc[0, "test_ccc"] == 0.25 and "test_ua" not in dims.columns
    both = table({"a": [_row(0, {"ua": 0.4, "wa": 0.5}, {"ua": 0.3, "wa": 0.4})], "b": [_row(0, {"ccc": 0.2},
                                                                                            {"ccc": 0.25})]})
    assert {"test_ua", "test_ccc"} <= set(both.columns) and len(both) == 2
