"""``python -m jobs.plan``: the printed overrides are valid jobs.after keys, a pool gives shares and clustering."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import MISSING
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.plan import main
from ser_models.config import key_default, load_config
from ser_models.data.pool import SHARD_SCHEMA
from ser_models.runs.after import AfterJobConfig

REPO = Path(__file__).resolve().parents[2]


def overrides_from(printed: str) -> list[str]:
    """The override line the job prints under its 'Overrides for jobs.after' heading."""
    lines = printed.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Overrides for jobs.after"))
    return shlex.split(lines[at + 1])


def write_pool(root: Path, rows: list[tuple], column: str = "recording") -> Path:
    """A prepared pool on disk as ``jobs.prepare_pool`` lays it out: ``(utt_id, label, <column>)`` rows in the
    train split (no audio: the planner reads metadata only)."""
    schema = pa.schema([f for f in SHARD_SCHEMA if f.name != "split"])  # the split is the hive folder
    columns = {"utt_id": [r[0] for r in rows], "label": [r[1] for r in rows], column: [r[2] for r in rows]}
    table = pa.table({f.name: pa.array(columns.get(f.name, [None] * len(rows)), f.type) for f in schema})
    (root / "build-1" / "data" / "split=train").mkdir(parents=True)
    pq.write_table(table, root / "build-1" / "data" / "split=train" / "part-0.parquet")
    (root / "summary.json").write_text(json.dumps({"build": "build-1", "kept": len(rows),
                                                   "splits": {"train": len(rows)}}))
    return root


def test_printed_overrides_parse_as_jobs_after_keys(capsys):
    plan = main(["budget=3000", "labels=[angry,happy,neutral,sad]", "expected_ua=0.6", "simulate_draws=2000"])
    printed = capsys.readouterr().out
    assert "Test-set size vs the 95 % interval of UA" in printed and "  >        369" in printed
    overrides = overrides_from(printed)
    assert overrides == plan.overrides()
    assert overrides == ["active.evaluation.test_size=369", "active.evaluation.dev_size=185",
                         "active.budget_labels=[20,40,79,157,312,620,1231,2446]"]
    # every printed key is a jobs.after key, and the real config parser takes the line as printed
    assert all(key_default(AfterJobConfig, o.split("=")[0]) is not MISSING for o in overrides)
    cfg = load_config(AfterJobConfig, REPO / "jobs" / "configs" / "demo_after.yaml", ["output_dir=o", *overrides])
    assert (cfg.active.evaluation.test_size, cfg.active.evaluation.dev_size) == (369, 185)
    assert cfg.active.budget_labels == plan.budget_labels
    assert cfg.active.num_rounds == len(plan.budget_labels)


def test_pool_gives_class_shares_and_recording_clusters(tmp_path, capsys):
    # 400 clips: neutral 60 %, sad 10 %; recordings of 4 clips (the last 40 clips have none: clusters of one)
    labels = ["neutral"] * 240 + ["happy"] * 60 + ["angry"] * 60 + ["sad"] * 40
    rows = [(f"u{i}", lab, f"rec{i // 4}" if i < 360 else None) for i, lab in enumerate(labels)]
    pool = write_pool(tmp_path / "pool", rows)
    plan = main(["budget=4000", f"pool_dir={pool}", f"output_dir={tmp_path / 'plan'}", "icc=0.2",
                 "simulate_draws=0"])
    printed = capsys.readouterr().out
    assert plan.labels == ["angry", "happy", "neutral", "sad"]  # the pool's labels, sorted
    assert plan.shares == pytest.approx([0.15, 0.15, 0.6, 0.1])
    assert (plan.pool["unit"], plan.pool["units"]) == ("recording", 90 + 40)
    assert plan.cluster_size == pytest.approx((90 * 16 + 40) / 400)  # clips' mean recording size: 3.7
    assert plan.design_effect == pytest.approx(1 + 2.7 * 0.2)
    assert plan.initial_size == 50  # 5 clips of a 10 % class
    assert any("budget (4000) is larger than the pool (400 clips)" in w for w in plan.warnings)
    # the loop refuses a budget its training pool cannot hold: the plan's rounds stop at what the draw leaves
    assert "the rounds stop at 266" in plan.warnings[-1] and plan.budget_labels[-1] == 266
    assert "400 clips, 130 recordings" in printed and "3.7 clips per recording, ICC 0.2" in printed
    saved = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert saved["overrides"] == plan.overrides() and saved["test_size"] == plan.test_size


def test_a_clip_pool_clusters_by_speaker(tmp_path):
    # 10 speakers with 30 clips each, two classes: an acted corpus, drawn whole speakers at a time
    rows = [(f"u{i}", "happy" if i % 2 else "sad", f"spk{i // 30}") for i in range(300)]
    pool = write_pool(tmp_path / "pool", rows, column="speaker")
    plan = main(["budget=2000", f"pool_dir={pool}", "simulate_draws=0"])
    assert (plan.pool["unit"], plan.pool["units"], plan.cluster_size) == ("speaker", 10, 30.0)
    assert plan.design_effect == pytest.approx(1 + 29 * 0.1)


def test_a_class_missing_from_the_pool_is_named(tmp_path):
    pool = write_pool(tmp_path / "pool", [("a", "happy", None), ("b", "sad", None)])
    from ser_models.exceptions import ConfigError

    with pytest.raises(ConfigError, match=r"labels \['angry'\] have no labelled clip in the pool"):
        main(["budget=3000", "labels=[angry,happy,sad]", f"pool_dir={pool}"])


def test_command_line_error_is_one_line_and_exit_code_2():
    done = subprocess.run([sys.executable, "-m", "jobs.plan", "budget=3000"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("error: ConfigError: labels is empty and no pool_dir is given: pass "
                                   "labels=[angry,happy,...]")


def test_a_pool_plan_says_what_the_drawn_sets_hold_and_warns_on_few_speakers(tmp_path, capsys):
    # 460 clips, 10 speakers of 46: the pool's share caps test + dev at 138 clips, about 3 whole speakers
    rows = [(f"u{i:03d}", ["angry", "happy", "neutral", "sad"][i % 4], f"spk{i // 46}") for i in range(460)]
    pool = write_pool(tmp_path / "pool", rows, column="speaker")
    plan = main(["budget=1000", f"pool_dir={pool}", "simulate_draws=0", f"output_dir={tmp_path / 'plan'}"])
    printed = capsys.readouterr().out
    assert plan.test_size + plan.dev_size <= 138 and plan.test_cap == 92
    # overrides.txt: one quoted override a line, what `xargs python -m jobs.after CONFIG < overrides.txt` passes
    lines = (tmp_path / "plan" / "overrides.txt").read_text().splitlines()
    assert [shlex.split(line)[0] for line in lines] == plan.overrides() == overrides_from(printed)
    assert "What the loop's draw with these sizes holds (active.seed=0):" in printed
    assert "  test: 92 clips from 0 recordings, 2 speakers, 0 groups (2 units taken); 46 clips per speaker" in printed
    assert "warning: the test set spans 2 speakers, under 10" in printed
    assert "max_share=0.3 of the pool" in printed
