"""jobs.evidence on a jobs.after run's own labels (``evidence.labels_from``): a run that drew its evaluation sets
and gathered 200 training labels becomes a labelled pool (its training labels, its test and dev sets), the
strategies are replayed on it over paired seeds, the source pool is left as it was, and budgets the labels
cannot separate are refused with the override to use."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ser_models.data import LabelLedger, Pool
from ser_models.exceptions import ConfigError
from ser_models.testing import build_demo_pool

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.slow_e2e]  # two whole jobs: make test-e2e

RECIPE = ["active.strategy.name=auto", "tapt_enabled=false", "scaling.backend=in_process",
          "model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false", "model.adapter.kind=frozen", "model.pooling=mean",
          "model.featurizer_layer=1", "model.feature_norm=pool", "model.head_hidden=0",
          "model.head_input_norm=false", "train.solver=lbfgs", "train.l2_c=auto", "active.initial=random",
          "active.stopping.stop_set_size=0"]


@pytest.fixture(scope="module")
def after_run(ray_local, tmp_path_factory):
    """A jobs.after run on a 480-clip pool that drew its own test and dev sets and gathered 200 labels."""
    from jobs.after import main

    root = tmp_path_factory.mktemp("run_labels")
    pool = build_demo_pool(root / "data", n=480)
    out = root / "after"
    reports = main([f"pool_dir={pool.pool_dir}", f"output_dir={out}", *RECIPE, "active.budget_labels=[50,100,200]",
          "active.evaluation.source=loop", "active.evaluation.test_size=60", "active.evaluation.dev_size=30"])
    assert reports is not None and reports[-1].labelled == 200
    return pool, out


def test_the_run_gathered_200_labels_and_its_rounds_carry_the_verdict(after_run):
    _, out = after_run
    ledger = LabelLedger(out / "labels" / "ledger.parquet")
    counts = ledger.counts()
    assert counts["train"] == 200 and counts["test"] >= 50 and counts["dev"] >= 20
    rounds = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    verdicts = [r["strategy"]["verdict"] for r in rounds if (r.get("strategy") or {}).get("verdict")]
    assert verdicts, "auto replays the strategies from 40 labels on: a verdict with its interval"
    last = verdicts[-1]
    assert last["low"] <= last["gain"] <= last["high"] and last["labels_to_resolve"] >= 0
    # The run's report holds the latest one, as the round's log says it.
    from ser_models.active.strategies import format_verdict

    report = json.loads((out / "report" / "selection.json").read_text())
    assert report["verdict"] == last and report["text"] == format_verdict(last)
    assert report["round"] == max(r["round"] for r in rounds if (r.get("strategy") or {}).get("verdict"))


def test_evidence_replays_on_the_runs_labels_and_evaluation_sets(after_run, tmp_path, capsys):
    from jobs.evidence import main

    pool, run = after_run
    source_summary = (pool.pool_dir / "summary.json").read_text()
    ev = tmp_path / "evidence"
    argv = [f"{run}/config.yaml", f"evidence.labels_from={run}", f"output_dir={ev}", "evidence.seeds=2",
            "evidence.strategies=[margin]", "evidence.fan_out=false", "active.budget_labels=[25,50,100]"]
    frame = main(argv)
    printed = capsys.readouterr().out
    assert "200 training clips, evaluated on" in printed and "the run's own labelled sets" in printed

    # The labelled pool: the ledger's training labels as its training split, the run's sets as dev / test.
    ledger = LabelLedger(run / "labels" / "ledger.parquet")
    derived = Pool.open(ev / "labelled_pool" / "pool")
    for split in ("train", "dev", "test"):
        rows = derived.metadata(columns=["utt_id", "label"], split=split)
        assert dict(zip(rows.utt_id, rows.label)) == ledger.labels(split), split
    # Its clips decode to the source pool's samples (same preparation settings, same spans).
    ids = sorted(ledger.ids("test"))[:5]
    mine = derived.metadata(columns=["utt_id", "num_samples", "speaker"], where={"utt_id": ids})
    theirs = Pool.open(pool.pool_dir).metadata(columns=["utt_id", "num_samples", "speaker"], where={"utt_id": ids})
    pd.testing.assert_frame_equal(mine.sort_values("utt_id").reset_index(drop=True),
                                  theirs.sort_values("utt_id").reset_index(drop=True))
    assert (pool.pool_dir / "summary.json").read_text() == source_summary  # the team's pool is untouched

    curves = frame[frame.strategy != "all-labels"]
    assert sorted(curves.strategy.unique()) == ["margin", "random"]
    assert curves.labelled.tolist() == [25, 50, 100] * 4
    assert frame[frame.strategy == "all-labels"].labelled.tolist() == [200]  # every label the run gathered
    # Every run selected only clips the run had labelled.
    for name in ("margin_s0", "random_s1"):
        picked = LabelLedger(ev / "runs" / name / "labels" / "ledger.parquet").ids()
        assert picked <= ledger.ids("train") and len(picked) == 100
    assert "paired difference to random" in (ev / "report.md").read_text()

    again = main(argv)  # resumed: every run finished, the same rows
    cols = ["strategy", "seed", "round", "labelled", "test_ua", "dev_ua"]
    pd.testing.assert_frame_equal(again[cols], frame[cols])

    # Replayed labels that differ from the run's (as after the run labelled more) refuse the folder.
    manifest = ev / "labelled_pool" / "manifest.csv"
    lines = manifest.read_text().splitlines(keepends=True)
    train_line = next(i for i, line in enumerate(lines) if ",train," in line)
    manifest.write_text("".join(lines[:train_line] + lines[train_line + 1:]))
    dropped = lines[train_line].split(",")[0]
    with pytest.raises(ConfigError, match=rf"its labels or sets changed since .*\(1 clips, e\.g\. {dropped}\)"):
        main(argv)


def test_budgets_the_labels_cannot_separate_are_refused_with_the_override(after_run, tmp_path):
    from jobs.evidence import main

    _, run = after_run
    with pytest.raises(ConfigError, match=r"gathered 200 training labels.*active\.budget_labels=\[25,50,100\]"):
        main([f"{run}/config.yaml", f"evidence.labels_from={run}", f"output_dir={tmp_path / 'ev'}",
              "active.budget_labels=[50,150]"])
    assert not (tmp_path / "ev").exists()  # refused before anything was written
    # A pool that is not the one the run labelled (another lineage) is refused before anything is written.
    other = build_demo_pool(tmp_path / "other", n=48)
    with pytest.raises(ConfigError, match="the run labelled a pool of lineage"):
        main([f"{run}/config.yaml", f"evidence.labels_from={run}", f"output_dir={tmp_path / 'ev'}",
              f"pool_dir={other.pool_dir}", "active.budget_labels=[25,50]"])
    assert not (tmp_path / "ev").exists()
    (tmp_path / "not_a_run").mkdir()
    with pytest.raises(ConfigError, match="not_a_run: no labels/ledger.parquet there"):
        main([f"{run}/config.yaml", f"evidence.labels_from={tmp_path / 'not_a_run'}", f"output_dir={tmp_path / 'ev'}",
              "active.budget_labels=[10,20]"])
    assert not (tmp_path / "ev").exists()
