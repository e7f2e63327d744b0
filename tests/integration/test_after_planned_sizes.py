"""The loop from zero labels on a small pool with no evaluation sizes given: it takes test and dev sizes from the
planner for the pool it sees (within ``active.evaluation.max_share`` of it), says why in one line, reports what
each set holds, and trains its budget on what is left. Frozen encoder and the feature cache, in process."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ser_models.active.loop import ActiveLearningLoop
from ser_models.config import load_config
from ser_models.data import LabelLedger, Pool, PoolConfig, prepare_pool
from ser_models.exceptions import ConfigError
from ser_models.labelling.oracles import SimulatedOracle
from ser_models.testing import DEMO_LABELS

pytestmark = pytest.mark.usefixtures("ray_local")

RECIPE = [
    "tapt_enabled=false", "scaling.backend=in_process", "model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false",
    "model.adapter.kind=frozen", "model.pooling=mean", "model.head_hidden=0", "model.featurizer_layer=1",
    "train.solver=lbfgs", "active.feature_cache=on", "active.initial=random", "active.strategy.name=margin",
    f"model.labels=[{','.join(DEMO_LABELS)}]", "active.budget_labels=[8,14]",
]


@pytest.fixture(scope="module")
def bare_pool(demo_pool, tmp_path_factory):
    """The demo corpus prepared with no label and no split column; returns (pool dir, truth)."""
    root = tmp_path_factory.mktemp("planned_sizes")
    manifest = pd.read_csv(demo_pool.manifest)
    bare = manifest.drop(columns=["label", "split"])
    bare["path"] = [str(Path(demo_pool.corpus_dir) / p) for p in bare["path"]]
    bare.to_csv(root / "manifest.csv", index=False)
    prepare_pool(PoolConfig(manifest=str(root / "manifest.csv"), output_dir=str(root / "pool"), labels=[]))
    return root / "pool", dict(zip(manifest["utt_id"], manifest["label"]))


def _loop(pool_dir, out, truth, extra=()):
    from ser_models.runs.after import AfterJobConfig

    cfg = load_config(AfterJobConfig, None, [f"pool_dir={pool_dir}", f"output_dir={out}", *RECIPE, *extra])
    assert cfg.active.evaluation.test_size is None and cfg.active.evaluation.dev_size is None or extra
    return ActiveLearningLoop(Pool.open(cfg.pool_dir), cfg.output_dir, cfg.model, cfg.train, cfg.scaling,
                              cfg.active, oracle=SimulatedOracle(truth, labels=list(DEMO_LABELS)), verbose=True)


def test_zero_labels_run_takes_planner_sizes_within_the_share(bare_pool, tmp_path, capsys):
    pool_dir, truth = bare_pool
    clips = len(truth)
    loop = _loop(pool_dir, tmp_path / "run", truth)
    reports = loop.run()
    printed = capsys.readouterr().out
    drawn = pd.read_parquet(tmp_path / "run" / "rounds" / "evaluation" / "selection.parquet")
    counts = drawn["purpose"].value_counts()
    # never more than 30 % of the pool, whole speakers, both sets present
    assert 1 <= counts["dev"] and 1 <= counts["test"] and len(drawn) <= int(0.3 * clips)
    assert drawn["unit"].str.startswith("speaker=").all()
    line = next(x for x in printed.splitlines() if x.startswith("evaluation sizes from the planner"))
    assert f"at most 30% of the pool's {clips} clips" in line and "4 classes at expected UA 0.60" in line
    assert "  test: " in printed and " speakers, " in printed and "design effect" in printed
    # every round measured on the drawn sets and trained on the budget's clips, from what the sets left
    ledger = LabelLedger(tmp_path / "run" / "labels" / "ledger.parquet")
    assert ledger.counts() == {"train": 14, "test": counts["test"], "dev": counts["dev"]}
    assert [r.labelled for r in reports] == [8, 14] and all(r.test["n"] == counts["test"] for r in reports)
    assert len(loop.clips) == clips - len(drawn)


def test_a_budget_the_sets_leave_no_room_for_names_the_evaluation_keys(bare_pool, tmp_path):
    pool_dir, truth = bare_pool
    with pytest.raises(ConfigError, match=r"active.budget_labels asks for 40 labelled training clips but the "
                                          r"training pool has \d+ \(the training split holds 48 clips; the drawn "
                                          r"evaluation sets take test \d+ and dev \d+ clips \(active.evaluation."
                                          r"test_size=20, active.evaluation.dev_size=10\).*lower active.budget_labels"
                                          r", or make room: lower active.evaluation.test_size"):
        _loop(pool_dir, tmp_path / "run", truth, ["active.budget_labels=[8,40]", "active.evaluation.test_size=20",
                                                  "active.evaluation.dev_size=10"])
    assert not (tmp_path / "run" / "rounds" / "evaluation" / "selection.parquet").exists()


@pytest.fixture(scope="module")
def test_split_pool(demo_pool, tmp_path_factory):
    """The demo corpus with a labelled test split and no dev split (the dev clips moved to train), as IEMOCAP's
    release folder imports; returns (pool dir, truth, test clips)."""
    root = tmp_path_factory.mktemp("test_split_only")
    manifest = pd.read_csv(demo_pool.manifest)
    manifest["split"] = manifest["split"].replace({"dev": "train"})
    manifest["path"] = [str(Path(demo_pool.corpus_dir) / p) for p in manifest["path"]]
    manifest.to_csv(root / "manifest.csv", index=False)
    prepare_pool(PoolConfig(manifest=str(root / "manifest.csv"), output_dir=str(root / "pool"), labels=[]))
    truth = dict(zip(manifest["utt_id"], manifest["label"]))
    return root / "pool", truth, int((manifest["split"] == "test").sum())


def test_a_test_split_alone_is_kept_and_a_dev_set_drawn(test_split_pool, tmp_path, capsys):
    pool_dir, truth, test_clips = test_split_pool
    loop = _loop(pool_dir, tmp_path / "run", truth, ["active.evaluation.test_size=5"])
    reports = loop.run()
    printed = capsys.readouterr().out
    assert (f"evaluation: the pool's labelled test split as it is ({test_clips} clips); the pool has no labelled "
            "dev split, so a dev set is drawn from the training split; active.evaluation.test_size not used") in printed
    drawn = pd.read_parquet(tmp_path / "run" / "rounds" / "evaluation" / "selection.parquet")
    assert set(drawn["purpose"]) == {"dev"}  # no test set drawn: the pool's own is the test set
    ledger = LabelLedger(tmp_path / "run" / "labels" / "ledger.parquet")
    assert ledger.counts() == {"train": 14, "test": 0, "dev": len(drawn)}
    assert all(r.test["n"] == test_clips and r.dev["n"] == len(drawn) for r in reports)
