"""jobs.evidence on the session's demo pool: strategies x paired seeds from one feature cache, the CSV, the
report's statistics, the plot, and a rerun that redoes nothing."""

from __future__ import annotations

import pandas as pd
import pytest

from ser_models.data import LabelLedger
from ser_models.exceptions import ConfigError
from ser_models.testing import TRAINED_HEAD_AFTER

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RECIPE = [*TRAINED_HEAD_AFTER, "tapt_enabled=false", "scaling.backend=in_process", "model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false",
          "model.adapter.kind=frozen", "model.pooling=mean", "model.featurizer_layer=1", "model.feature_norm=pool",
          "model.head_hidden=0", "model.head_input_norm=false", "train.solver=lbfgs", "train.l2_c=auto",
          "active.initial=random", "active.budget_labels=[8,12,16]", "active.stopping.stop_set_size=0"]


def _argv(demo_pool, out, extra=()):
    return [f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}", *RECIPE, "evidence.strategies=[margin]",
            "evidence.seeds=3", *extra]


@pytest.mark.slow_e2e  # a whole job run of 30 s or more on 2 cores: make test-e2e
def test_paired_seeds_from_one_cache_with_csv_report_plot_and_resume(ray_local, demo_pool, tmp_path, capsys):
    from jobs.evidence import main

    out = tmp_path / "evidence"
    frame = main(_argv(demo_pool, out))
    printed = capsys.readouterr().out
    runs = pd.read_csv(out / "runs.csv")
    pd.testing.assert_frame_equal(runs, frame, check_dtype=False)
    assert set(runs.columns) >= {"strategy", "seed", "round", "labelled", "fraction", "test_ua", "dev_ua"}
    curves = runs[runs.strategy != "all-labels"]
    assert sorted(curves.groupby(["strategy", "seed"]).size().items()) == [
        ((s, seed), 3) for s in ("margin", "random") for seed in (0, 1, 2)]
    assert curves.labelled.tolist() == [8, 12, 16] * 6
    full = runs[runs.strategy == "all-labels"]
    assert len(full) == 1 and full.labelled.iloc[0] == 32  # every training clip, trained once
    assert runs.test_ua.between(0, 1).all()
    for seed in (0, 1, 2):  # paired: under a seed both strategies start from the same labelled clips
        first = [set(LabelLedger(out / "runs" / f"{s}_s{seed}" / "labels" / "ledger.parquet").as_of(0).ids())
                 for s in ("random", "margin")]
        assert first[0] == first[1] and len(first[0]) == 8
    starts = [LabelLedger(out / "runs" / f"random_s{seed}" / "labels" / "ledger.parquet").as_of(0).ids()
              for seed in (0, 1, 2)]
    assert len({frozenset(s) for s in starts}) == 3  # and each seed draws its own
    report = (out / "report.md").read_text()
    for part in ("paired difference to random", "AUBC", "label savings", "all labels (32 clips)"):
        assert part in report and part in printed
    assert (out / "evidence.png").stat().st_size > 1000
    _check_class_yield(demo_pool, out, runs, report, printed)
    assert printed.count("] seed ") == 7  # one progress line per run
    assert "feature cache held in memory" in printed

    again = main(_argv(demo_pool, out))  # every run finished: the same rows, nothing retrained
    pd.testing.assert_frame_equal(again.drop(columns=["round_s", "run_s"]), frame.drop(columns=["round_s", "run_s"]))


def _check_class_yield(demo_pool, out, runs, report, printed):
    """Labels per class in runs.csv equal every run's ledger, round by round, and the class-yield table, its
    JSON and plot describe the rarest training class of the pool."""
    import json

    from ser_models.data import Pool

    truth = Pool.open(demo_pool.pool_dir).metadata(columns=["utt_id", "label"], split="train")["label"]
    classes = list(dict.fromkeys(c[len("labels_"):] for c in runs.columns if c.startswith("labels_")))
    assert sorted(classes) == sorted(truth.unique())
    for (strategy, seed), g in runs.groupby(["strategy", "seed"]):
        ledger = LabelLedger(out / "runs" / f"{strategy}_s{seed}" / "labels" / "ledger.parquet")
        for _, row in g.iterrows():
            labels = list(ledger.as_of(row["round"]).labels().values())
            assert [row[f"labels_{c}"] for c in classes] == [labels.count(c) for c in classes]
            assert sum(row[f"labels_{c}"] for c in classes) == row.labelled
    found = json.loads((out / "class_yield.json").read_text())
    training = {c: int((truth == c).sum()) for c in classes}
    assert found["training_clips"] == training
    assert found["rare_class"] == min(classes, key=lambda c: (training[c], classes.index(c)))
    rare = found["rare_class"]
    curves = runs[runs.strategy != "all-labels"]
    by_key = {(r["strategy"], r["labelled"]): r for r in found["rows"]}
    for (strategy, labelled), g in curves.groupby(["strategy", "labelled"]):
        assert by_key[(strategy, labelled)]["mean"] == pytest.approx(g[f"labels_{rare}"].mean())
        assert by_key[(strategy, labelled)]["share"] == pytest.approx(g[f"labels_{rare}"].mean() / labelled)
    pairs = curves.pivot_table(index="seed", columns=["strategy", "labelled"], values=f"labels_{rare}")
    assert by_key[("margin", 16)]["diff"] == pytest.approx((pairs["margin", 16] - pairs["random", 16]).mean())
    assert by_key[("margin", 8)]["diff"] == 0  # both start from the same labelled clips under a seed
    for part in ("labels per class (mean over seeds)", f"rarest class: {rare}", "paired difference to random"):
        assert part in report and part in printed
    assert "(class_yield.png)" in report and (out / "class_yield.png").stat().st_size > 1000


@pytest.mark.slow_e2e  # a whole job run of 30 s or more on 2 cores: make test-e2e
def test_in_memory_cache_serves_the_rows_the_stream_serves(ray_local, demo_pool, tmp_path):
    from jobs.evidence import main

    streamed = main(_argv(demo_pool, tmp_path / "a", ["evidence.cache_in_memory_mb=0", "evidence.seeds=2",
                                                       "evidence.all_labels=false"]))
    held = main(_argv(demo_pool, tmp_path / "b", ["evidence.seeds=2", "evidence.all_labels=false",
                                                   f"active.feature_cache_dir={tmp_path / 'a' / 'feature_cache'}"]))
    cols = ["strategy", "seed", "round", "labelled", "test_ua", "dev_ua"]
    pd.testing.assert_frame_equal(streamed[cols], held[cols])


@pytest.mark.slow_e2e
@pytest.mark.parametrize("ask", ["", "env", "--verbose"])
def test_a_job_process_prints_progress_bars_only_when_asked(demo_pool, tmp_path, ask):
    """A fresh job process reading Parquet through Ray Data: its bars ("Parquet dataset sampling", one per
    dataset execution) are off unless asked for (``--verbose``, or SER_RAY_PROGRESS_BARS=1), so the output is the
    job's own lines."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("SER_RAY_PROGRESS_BARS", "SER_RAY_DATA_CONSOLE_LEVEL")}
    if ask == "env":
        env["SER_RAY_PROGRESS_BARS"] = "1"
    bars = bool(ask)
    argv = _argv(demo_pool, tmp_path / "out", ["evidence.seeds=2", "evidence.all_labels=false",
                                                "active.budget_labels=[8,12]", "evidence.cache_in_memory_mb=0"]) + (
        ["--verbose"] if ask == "--verbose" else [])
    proc = subprocess.run([sys.executable, "-m", "jobs.evidence", *argv], cwd=Path(__file__).resolve().parents[2],
                          env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert output.count("] seed ") == 4
    tqdm = re.search(r"\d+%\|[^|]*\|", output)  # a tqdm frame: "100%|█████| 2.00/2.00"
    assert bool(tqdm) == bars and ("Parquet dataset sampling" in output) == bars, output[-3000:]
    assert "Progress bars disabled" not in output


@pytest.mark.parametrize("override, match", [
    ("tapt_enabled=true", "tapt_enabled=false"),
    ("active.oracle=file", "active.oracle must be 'simulated'"),
    ("model.adapter.kind=lora", "need a frozen encoder's cached features"),
    ("model.adapter.kind=lora train.solver=adamw model.feature_norm=none", "needs the feature cache"),
    ("evidence.seeds=1", "evidence.seeds must be >= 2"),
    ("evidence.strategies=[random]", "must be distinct"),
    ("evidence.strategies=[margin+fancy]", "unknown variant 'fancy'"),
    ("runtime.ray=off", "runs its paired loops on Ray: runtime.ray=off is for jobs.after"),
])
def test_settings_that_cannot_give_paired_cached_runs_are_refused(demo_pool, tmp_path, override, match):
    from jobs.evidence import main

    with pytest.raises(ConfigError, match=match):
        main(_argv(demo_pool, tmp_path / "x", override.split()))
