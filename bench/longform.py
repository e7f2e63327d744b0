"""What selection buys on long recordings with a natural (neutral-heavy) prior: the whole platform path, end to end.

    python -m bench.longform [--workdir /tmp/ser_bench_longform] [--episodes 40 --calls 24] [--seeds 20]

The documented commands, one after another (each resumes, so a rerun only reports):

1. ``jobs.make_demo_archive``: episodes of 3-6 min (1-4 speakers, music beds in half, noise floors of 10-30 dB)
   and two-channel 8 kHz calls of 1-3 min, emotions drawn neutral 0.7, happy 0.12, angry 0.1, sad 0.08
   (``--class-prior``), whole shows and campaigns assigned to train / dev / test;
2. ``jobs.segment`` (the ``turns`` preset, labels by overlap with the generator's truth; dev / test segments
   the truth leaves unlabelled go to ``rejected_segments.parquet``);
3. ``jobs.prepare_pool`` on ``segments.parquet``;
4. ``jobs.evidence`` with ``demo_evidence.yaml`` (the demo's recipe on the frozen Whisper-tiny, a random initial
   set of 50 shared by every strategy under a seed, budgets of 50 / 100 / 200 / 400 labels): random,
   ``informative_diverse`` (the shipped strategy), ``margin+balanced`` and ``auto`` over paired seeds.

Then it adds what ``jobs.evidence`` does not print: the recall of the rarest test class (sad) per budget, paired
with random, from each run's test confusion matrix. Results: ``bench/results/longform_evidence.md`` (with
``jobs.evidence``'s own report), ``_runs.csv`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import (
    REPO,
    RESULTS_DIR,
    LoadWindow,
    claim_workdir,
    machine_info,
    machine_markdown,
    md_table,
    write_results,
)

RESULTS = RESULTS_DIR / "longform_evidence.md"
ENCODER = ".cache/encoders/smart-turn-v3.2-whisper-tiny"
PRIOR = "0.7,0.12,0.1,0.08"
STRATEGIES = ["informative_diverse", "margin+balanced", "auto"]


def _run(args: list[str]) -> float:
    t0 = time.perf_counter()
    print("+ python -m " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", *args], cwd=REPO, check=True)
    return time.perf_counter() - t0


def rare_class_recall(runs_dir: Path, label_index: int) -> pd.DataFrame:
    """Test recall of one class per run and budget: ``strategy, seed, labelled, recall``."""
    rows = []
    for run in sorted(p for p in runs_dir.iterdir() if (p / "metrics.jsonl").exists()):
        strategy, _, seed = run.name.rpartition("_s")
        for line in (run / "metrics.jsonl").read_text().splitlines():
            m = json.loads(line)
            conf = np.asarray(m["test"]["confusion"], dtype=float)
            rows.append({"strategy": strategy, "seed": int(seed), "labelled": int(m["labelled"]),
                         "recall": conf[label_index, label_index] / max(conf[label_index].sum(), 1.0)})
    return pd.DataFrame(rows)


def paired_table(recall: pd.DataFrame, baseline: str = "random") -> str:
    """Mean recall per strategy and budget, and the paired difference to the baseline with a 95 % t-interval."""
    from scipy import stats

    base = recall[recall["strategy"] == baseline].set_index(["seed", "labelled"])["recall"]
    rows = []
    for (strategy, labelled), g in recall.groupby(["strategy", "labelled"]):
        if labelled not in base.index.get_level_values(1):
            continue
        g = g.set_index("seed")["recall"]
        b = base.xs(labelled, level="labelled").reindex(g.index)
        mean = f"{g.mean():.3f}"
        if strategy == baseline:
            rows.append([strategy, labelled, len(g), mean, ""])
            continue
        d = (g - b).to_numpy()
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        rows.append([strategy, labelled, len(g), mean, f"{d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]"])
    rows.sort(key=lambda r: (r[0] != baseline, r[0], r[1]))
    return md_table(["strategy", "labels", "seeds", "test recall (sad)", "paired difference to random [95 % CI]"],
                    rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.longform", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default="/tmp/ser_bench_longform")
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--calls", type=int, default=24)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    w = claim_workdir(args.workdir)
    load = LoadWindow()
    info = machine_info()
    seconds = {}
    seconds["archive"] = _run(["jobs.make_demo_archive", str(w / "archive"), "--episodes", str(args.episodes),
                               "--calls", str(args.calls), "--episode-minutes", "3", "6", "--call-minutes", "1",
                               "3", "--class-prior", PRIOR, "--seed", "0", "--workers", "2"]) \
        if not (w / "archive" / "recordings.csv").exists() else 0.0
    seconds["segment"] = _run(["jobs.segment", "jobs/configs/segment_demo.yaml",
                               f"recordings={w / 'archive' / 'recordings.csv'}", f"output_dir={w / 'segments'}",
                               f"annotations={w / 'archive' / 'truth.csv'}"])
    seconds["prepare"] = _run(["jobs.prepare_pool", "jobs/configs/prepare_pool_demo.yaml",
                               f"manifest={w / 'segments' / 'segments.parquet'}", f"output_dir={w / 'pool'}"])
    seconds["evidence"] = _run(["jobs.evidence", "jobs/configs/demo_evidence.yaml", f"pool_dir={w / 'pool'}",
                                f"model.encoder.source={ENCODER}", f"active.feature_cache_dir={w / 'feature_cache'}",
                                f"output_dir={w / 'evidence'}", f"evidence.seeds={args.seeds}",
                                f"evidence.strategies=[{','.join(STRATEGIES)}]"])
    load.close()
    segments = pd.read_parquet(w / "segments" / "segments.parquet")
    summary = json.loads((w / "segments" / "summary.json").read_text())
    labels = ["neutral", "happy", "angry", "sad"]
    recall = rare_class_recall(w / "evidence" / "runs", labels.index("sad"))
    report = (w / "evidence" / "report.md").read_text()
    results = Path(args.results)
    shutil.copy(w / "evidence" / "runs.csv", results.with_name(results.stem + "_runs.csv"))
    if (w / "evidence" / "evidence.png").exists():
        shutil.copy(w / "evidence" / "evidence.png", results.with_suffix(".png"))
    train = segments[segments["split"] == "train"]
    text = "\n\n".join([
        "# What selection buys on long recordings with a neutral-heavy prior",
        machine_markdown(info, load),
        f"Archive: {args.episodes} episodes and {args.calls} two-channel calls, {summary['audio_hours']:.2f} h; "
        f"{summary['segments']} segments ({summary['segment_hours']:.2f} h) by the `turns` preset, "
        f"{summary['rejected_segments']} left out (dev / test segments without a truth label). Labels by "
        f"overlap, per split: "
        + "; ".join(f"{s} " + ", ".join(f"{k} {v}" for k, v in g["label"].value_counts(dropna=False).items())
                    for s, g in segments.groupby("split"))
        + f". {int(train['label'].isna().sum())} training segments have no label: the simulated oracle cannot "
        "label them, so no strategy picks them.",
        "Wall seconds of this invocation per step: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
        + " (every step resumes: a step an earlier invocation finished costs only its check).",
        "## Recall of the rarest class (sad) on the test split", paired_table(recall),
        "## jobs.evidence's report", report,
    ])
    print(text)
    write_results(results, text + "\n")


if __name__ == "__main__":
    main()
