"""``jobs.plan`` then ``jobs.after``'s checks with the plan's overrides, on pools of 40 to 5,000 clips with and
without labelled splits: the loop accepts every plan, uses a pool's labelled splits as they are (a test split
alone: kept, with a dev set drawn), and a pool too small for the plan's floors gets the plan that fits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.plan import main as plan
from ser_models.config import load_config
from ser_models.data.pool import SHARD_SCHEMA, Pool
from ser_models.exceptions import ConfigError
from ser_models.models.model_config import resolve_labels
from ser_models.planning.evaluation_sets import check_evaluation_pool, evaluation_source
from ser_models.runs.after import AfterJobConfig, check_budget_fits

LABELS = ["angry", "happy", "neutral", "sad"]
#: one class in seven is sad: the rarest class's floor (min_per_class / its share) is what small pools cannot hold
CYCLE = ["neutral", "neutral", "happy", "happy", "angry", "angry", "sad"]


def write_pool(root: Path, clips: int, splits: str) -> Path:
    """A prepared pool's metadata as ``jobs.prepare_pool`` lays it out (no audio: plan and the checks read
    metadata): labelled clips, two per recording; ``splits`` ``none`` (all train), ``test`` (a seventh of the
    recordings in a test split, no dev: IEMOCAP's session 5) or ``both`` (a seventh each in dev and test)."""
    schema = pa.schema([f for f in SHARD_SCHEMA if f.name != "split"])  # the split is the hive folder
    rows: dict[str, list] = {}
    for i in range(clips):
        rec = i // 2
        split = ("test" if rec % 7 == 3 and splits != "none" else
                 "dev" if rec % 7 == 5 and splits == "both" else "train")
        rows.setdefault(split, []).append((f"u{i:05d}", CYCLE[i % 7], f"rec{rec}"))
    for split, part in rows.items():
        columns = {"utt_id": [r[0] for r in part], "label": [r[1] for r in part],
                   "recording": [r[2] for r in part], "duration": [2.0] * len(part)}
        table = pa.table({f.name: pa.array(columns.get(f.name, [None] * len(part)), f.type) for f in schema})
        (root / "build-1" / "data" / f"split={split}").mkdir(parents=True)
        pq.write_table(table, root / "build-1" / "data" / f"split={split}" / "part-0.parquet")
    (root / "summary.json").write_text(json.dumps({"build": "build-1", "kept": clips,
                                                   "splits": {s: len(p) for s, p in rows.items()}}))
    return root


def plan_that_fits(args: list[str]):
    """``jobs.plan``, or on a pool too small for its floors the plan its refusal offers."""
    try:
        return plan(args)
    except ConfigError as refused:
        message = str(refused)
        assert "training clips" in message, message  # the pool's size
        offer = re.search(r"The plan that fits: (min_per_class=\d+) \(.*test UA \+/-0\.\d{3}", message)
        assert offer, message  # a smaller floor, with the precision it gives
        return plan([*args, offer.group(1)])


@pytest.mark.parametrize("splits", ["none", "test", "both"])
@pytest.mark.parametrize(("clips", "budget"), [(40, 30), (60, 50), (500, 300), (5000, 2000)])
def test_the_loop_accepts_every_plan(tmp_path, capsys, clips, budget, splits):
    pool_dir = write_pool(tmp_path / "pool", clips, splits)
    planned = plan_that_fits([f"budget={budget}", f"pool_dir={pool_dir}", "simulate_draws=0"])
    overrides = planned.overrides()
    cfg = load_config(AfterJobConfig, None, [f"pool_dir={pool_dir}", f"output_dir={tmp_path / 'run'}",
                                             f"model.labels=[{','.join(LABELS)}]", *overrides])
    pool = Pool.open(cfg.pool_dir)
    cfg.model = resolve_labels(cfg.model, pool)
    source = evaluation_source(cfg.active.evaluation, pool, cfg.model)
    check_evaluation_pool(pool, cfg.model, source)
    drawn = check_budget_fits(cfg, pool, source)  # raises where the loop would refuse the plan
    # a labelled test split is used as it is (alone: kept, with a dev set drawn)
    assert source == {"none": "loop", "test": "test", "both": "pool"}[splits]
    if splits != "none":  # no override sizes a set the loop takes from the pool
        assert not any(o.startswith("active.evaluation.test_size") for o in overrides)
    assert planned.evaluation_source == source
    if splits == "both":  # the pool's labelled splits as they are: no label of the budget spent on them
        assert drawn is None and not any("evaluation." in o for o in overrides)
        assert planned.evaluation_labels == 0
    else:
        purposes = set(drawn[0]["purpose"])
        assert purposes == ({"test", "dev"} if splits == "none" else {"dev"})  # the pool's test split kept
        assert planned.evaluation_labels == len(drawn[0])  # what the plan pays is what the loop draws
    assert planned.budget_labels[-1] <= budget - planned.evaluation_labels
    assert not (tmp_path / "run").exists()  # checks only


def test_a_test_split_alone_is_kept_and_the_console_says_so(tmp_path, capsys):
    from ser_models.planning.evaluation_sets import describe_source

    pool_dir = write_pool(tmp_path / "pool", 59, "test")
    pool = Pool.open(pool_dir)
    cfg = load_config(AfterJobConfig, None, [f"pool_dir={pool_dir}", "output_dir=o", "active.evaluation.test_size=20"])
    cfg.model = resolve_labels(cfg.model, pool)
    assert evaluation_source(cfg.active.evaluation, pool, cfg.model) == "test"
    line = describe_source("test", pool, cfg.active.evaluation)
    assert "the pool's labelled test split as it is (8 clips)" in line and "a dev set is drawn" in line
    assert "active.evaluation.test_size not used" in line


def test_a_pool_too_small_for_the_floors_gets_its_size_and_the_plan_that_fits(tmp_path):
    pool_dir = write_pool(tmp_path / "pool", 59, "none")
    with pytest.raises(ConfigError) as refused:
        plan(["budget=50", f"pool_dir={pool_dir}", "simulate_draws=0"])
    message = str(refused.value)
    assert "has 59 training clips" in message and "min_per_class=5 wants 37 clips" in message
    assert re.search(r"The plan that fits: min_per_class=1 \(test 11, dev 8, initial 8 clips; test UA "
                     r"\+/-0\.\d{3}", message)
    # only keys that move a size held at its floor
    assert "max_test_share" not in message and "dev_ratio" not in message
