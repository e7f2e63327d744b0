"""The loop on a pool with no labels and no split column (every clip is ``train``): it draws whole-speaker test
and dev sets, has them labelled first (simulated oracle with the truth held outside the pool; a person filling
``to_label.csv``), evaluates every round on them, and never trains on, scores or selects them. Frozen encoder
and the feature cache, trained in process: seconds per round."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ser_models.active.loop import ActiveLearningLoop
from ser_models.config import load_config
from ser_models.data import LabelLedger, Pool, PoolConfig, prepare_pool
from ser_models.exceptions import LabellingPending
from ser_models.labelling.oracles import SimulatedOracle
from ser_models.testing import DEMO_LABELS

pytestmark = pytest.mark.usefixtures("ray_local")

# A config written from scratch: the encoder, its layer, budgets and sizes; the rest is jobs.after's defaults,
# the frozen-encoder recipe (pool-standardised features, a linear head by L-BFGS with C by CV, in process).
RECIPE = [
    "model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false", "model.featurizer_layer=1", "active.initial=random",
    "active.strategy.name=margin", f"model.labels=[{','.join(DEMO_LABELS)}]", "active.budget_labels=[8,14]",
    "active.evaluation.test_size=10", "active.evaluation.dev_size=5",
]


@pytest.fixture(scope="module")
def bare_pool(demo_pool, tmp_path_factory):
    """The demo corpus prepared with no label and no split column; returns (pool dir, truth, speaker per clip)."""
    root = tmp_path_factory.mktemp("zero_labels")
    manifest = pd.read_csv(demo_pool.manifest)
    truth = dict(zip(manifest["utt_id"], manifest["label"]))
    speakers = dict(zip(manifest["utt_id"], manifest["speaker"]))
    bare = manifest.drop(columns=["label", "split"])
    bare["path"] = [str(Path(demo_pool.corpus_dir) / p) for p in bare["path"]]
    bare.to_csv(root / "manifest.csv", index=False)
    prepare_pool(PoolConfig(manifest=str(root / "manifest.csv"), output_dir=str(root / "pool"), labels=[]))
    return root / "pool", truth, speakers


def _loop(pool_dir, out, extra=(), oracle=None):
    from ser_models.runs.after import AfterJobConfig

    cfg = load_config(AfterJobConfig, None, [f"pool_dir={pool_dir}", f"output_dir={out}", *RECIPE, *extra])
    return ActiveLearningLoop(Pool.open(cfg.pool_dir), cfg.output_dir, cfg.model, cfg.train, cfg.scaling,
                              cfg.active, oracle=oracle, verbose=False)


def _selections(out: Path) -> set[str]:
    return {u for f in out.glob("rounds/*/selection.parquet") if f.parent.name != "evaluation"
            for u in pq.read_table(f).column("utt_id").to_pylist()}


def _check_run(out: Path, loop, reports, speakers):
    drawn = pd.read_parquet(out / "rounds" / "evaluation" / "selection.parquet")
    evaluation = dict(zip(drawn["utt_id"], drawn["purpose"]))
    assert set(drawn["purpose"]) == {"test", "dev"} and drawn["unit"].str.startswith("speaker=").all()
    ledger = LabelLedger(out / "labels" / "ledger.parquet")
    rows = ledger.labelled().set_index("utt_id")
    # every drawn clip is labelled for its purpose, every other label is a training label
    assert rows.loc[list(evaluation), "purpose"].to_dict() == evaluation
    assert (rows.drop(index=list(evaluation))["purpose"] == "train").all()
    assert ledger.counts() == {"train": 14, "test": sum(p == "test" for p in evaluation.values()),
                               "dev": sum(p == "dev" for p in evaluation.values())}
    # never selected, never trained on, never scored; no speaker straddles evaluation and training
    assert not _selections(out) & set(evaluation)
    assert not set(ledger.targets().column("utt_id").to_pylist()) & set(evaluation)
    assert not set(pq.read_table(out / "rounds" / "round=000" / "scores.parquet").column("utt_id").to_pylist()) \
        & set(evaluation)
    assert not {speakers[u] for u in evaluation} & {speakers[u] for u in loop.clips.ids.to_pylist()}
    assert len(loop.clips) + len(evaluation) == len(speakers)
    # every round is measured on exactly the drawn sets, and trained on the budget's clips alone
    assert [r.labelled for r in reports] == [8, 14]
    for r in reports:
        assert r.test["n"] == ledger.counts()["test"] and r.dev["n"] == ledger.counts()["dev"]
    spent = pd.read_json(out / "report" / "labels.json", typ="series")
    assert spent["train"]["clips"] == 14 and spent["test"]["clips"] == ledger.counts()["test"]
    assert spent["total"]["clips"] == 14 + len(evaluation) and spent["budget"] == 14
    return evaluation


def test_simulated_oracle_labels_the_drawn_sets_first_and_a_rerun_reuses_them(bare_pool, tmp_path):
    pool_dir, truth, speakers = bare_pool
    pool = Pool.open(pool_dir)
    assert pool.splits == ["train"] and pool.metadata(columns=["label"])["label"].isna().all()
    oracle = SimulatedOracle(truth, labels=list(DEMO_LABELS))  # the truth lives outside the pool
    out = tmp_path / "run"
    loop = _loop(pool_dir, out, oracle=oracle)
    assert loop.eval_sets.source == "loop"
    reports = loop.run()
    evaluation = _check_run(out, loop, reports, speakers)
    ledger = LabelLedger(out / "labels" / "ledger.parquet").labelled()
    assert (ledger["label"] == ledger["utt_id"].map(truth)).all()
    assert (ledger.loc[ledger["purpose"] != "train", "round"] == 0).all()
    # the defaults ran the recipe: in process, the L-BFGS head with C by cross-validation, pool statistics
    fit = json.loads((out / "rounds" / "round=000" / "train" / "metrics.json").read_text())["history"][-1]
    assert "l2_c_cv" in fit and fit["l2_c"] in loop.train_cfg.l2_c_grid
    assert (out / "rounds" / "round=000" / "train" / "in_process").is_dir()
    assert loop.model_cfg.feature_stats is not None
    # a rerun reads the draw back (same sets) and changes nothing
    mtime = (out / "rounds" / "evaluation" / "selection.parquet").stat().st_mtime_ns
    again = _loop(pool_dir, out, oracle=oracle)
    assert again.evaluation == evaluation
    assert [r.to_json() for r in again.run()] == [r.to_json() for r in reports]
    assert (out / "rounds" / "evaluation" / "selection.parquet").stat().st_mtime_ns == mtime
    # source=pool on a pool without dev / test splits is refused, naming the key
    from ser_models.exceptions import ConfigError

    with pytest.raises(ConfigError, match="active.evaluation.source=pool but pool .* has the splits \\['train'\\]"):
        _loop(pool_dir, tmp_path / "other", ["active.evaluation.source=pool"], oracle=oracle)


def test_file_oracle_asks_for_the_evaluation_sets_first_then_the_rounds(bare_pool, tmp_path):
    pool_dir, truth, speakers = bare_pool
    out = tmp_path / "run"
    extra = ["active.oracle=file"]

    def fill(csv: Path) -> pd.DataFrame:
        df = pd.read_csv(csv, keep_default_na=False)
        df["label"] = df["utt_id"].map(truth)
        df.to_csv(csv, index=False)
        return df

    with pytest.raises(LabellingPending, match=r"the evaluation sets \(test and dev\): 1\d clips need labels"):
        _loop(pool_dir, out, extra).run()
    assert not (out / "rounds" / "initial").exists()  # the evaluation sets go to the people first
    request = fill(out / "rounds" / "evaluation" / "to_label.csv")
    drawn = pd.read_parquet(out / "rounds" / "evaluation" / "selection.parquet")
    assert request.columns.tolist() == ["utt_id", "path", "duration", "label", "model_guess", "model_confidence",
                                        "score", "reason"]
    assert request["reason"].tolist() == [f"evaluation set ({p})" for p in drawn["purpose"]]
    with pytest.raises(LabellingPending, match="the initial set: 8 clips need labels"):
        _loop(pool_dir, out, extra).run()
    initial = fill(out / "rounds" / "initial" / "to_label.csv")
    assert set(initial["reason"]) == {"initial set (random)"} and not set(initial["utt_id"]) & set(drawn["utt_id"])
    with pytest.raises(LabellingPending, match="round 0: 6 clips need labels.*round=000/to_label.csv"):
        _loop(pool_dir, out, extra).run()
    picks = fill(out / "rounds" / "round=000" / "to_label.csv")
    # round 0's model guessed each pick; the margin strategy's score and its reason come with it
    assert set(picks["model_guess"]) <= set(DEMO_LABELS)
    assert picks["model_confidence"].astype(float).between(0, 1).all()
    assert picks["reason"].str.match(r"margin: top-2 gap [01]\.\d{4}$").all()
    # the reason quotes the score column's own number: both sides are one rounding of the same value
    assert [f"{1 - s:.4f}" for s in picks["score"].astype(float)] == [r.rsplit(" ", 1)[1] for r in picks["reason"]]
    loop = _loop(pool_dir, out, extra)
    reports = loop.run()
    _check_run(out, loop, reports, speakers)
    assert set(LabelLedger(out / "labels" / "ledger.parquet").labelled()["oracle"]) == {"file"}


def test_a_running_loop_takes_the_clips_a_pool_grew_by_into_its_next_round(demo_pool, tmp_path):
    """Week 2's clips arrive while the run is between rounds: ``prepare_pool`` grows the pool in place, the next
    round encodes only them into the feature cache, scores them and may select them; the ledger, the drawn
    evaluation sets and the finished rounds stay as they were."""
    manifest = pd.read_csv(demo_pool.manifest)
    truth = dict(zip(manifest["utt_id"], manifest["label"]))
    bare = manifest.drop(columns=["label", "split"])
    bare["path"] = [str(Path(demo_pool.corpus_dir) / p) for p in bare["path"]]
    # week 2: one new speaker, and one more clip of every other speaker (test and dev speakers included)
    new_speaker = sorted(bare["speaker"].unique())[-1]
    later = (bare["speaker"] == new_speaker) | ~bare.duplicated("speaker", keep="last")
    week1, week2 = bare[~later], bare[later]
    week1.to_csv(tmp_path / "manifest.csv", index=False)
    cfg = PoolConfig(manifest=str(tmp_path / "manifest.csv"), output_dir=str(tmp_path / "pool"), labels=[])
    prepare_pool(cfg)
    out = tmp_path / "run"
    loop = _loop(tmp_path / "pool", out, ["active.budget_labels=[6,10,14]"],
                 oracle=SimulatedOracle(truth, labels=list(DEMO_LABELS)))
    evaluation, stop_ids = dict(loop.evaluation), list(loop.stop_ids)

    def grow(report, reports):
        if report.round == 0:
            bare.to_csv(tmp_path / "manifest.csv", index=False)  # week 1 + week 2
            assert prepare_pool(cfg).kept == len(bare)

    reports = loop.run(on_round=grow)
    assert [r.labelled for r in reports] == [6, 10, 14]
    speakers = dict(zip(bare["utt_id"], bare["speaker"]))
    held = {speakers[u] for u in evaluation}
    new = set(week2["utt_id"])
    assert loop.cache.last_encoded == len(new)  # only the new clips encoded
    # a new clip of a test or dev speaker stays out of training, scoring and selection: units stay whole
    new_held = {u for u in new if speakers[u] in held}
    assert new_held and not new_held & set(loop.clips.ids.to_pylist()) and new - new_held <= set(loop.clips.ids.to_pylist())
    scored = lambda r: set(pq.read_table(out / "rounds" / f"round={r:03d}" / "scores.parquet")  # noqa: E731
                           .column("utt_id").to_pylist())
    assert not scored(0) & new and new - new_held <= scored(1) and not scored(1) & new_held
    assert loop.evaluation == evaluation and not _selections(out) & set(evaluation)
    # a restart on the grown pool keeps the targets and the stop set it started with, and its finished rounds
    again = _loop(tmp_path / "pool", out, ["active.budget_labels=[6,10,14]"],
                  oracle=SimulatedOracle(truth, labels=list(DEMO_LABELS)))
    assert again.stop_ids == stop_ids and again.targets == [6, 10, 14] and len(again.clips) > len(stop_ids)
    assert [r.to_json() for r in again.run()] == [r.to_json() for r in reports]
    ledger = LabelLedger(out / "labels" / "ledger.parquet")
    assert ledger.counts()["train"] == 14 and (ledger.labelled()["label"] == ledger.labelled()["utt_id"].map(truth)).all()
