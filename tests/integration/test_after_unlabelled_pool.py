"""The AFTER loop's use of the unlabelled pool and its budgets, on a real pool with the feature cache:
pseudo-labels train but never reach the ledger, the stopping signal ends the loop (kappa checked by hand),
and an hour budget spends seconds of audio, recorded in the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import cohen_kappa_score

from ser_models.active.loop import ActiveLearningLoop
from ser_models.config import load_config
from ser_models.data import LabelLedger, Pool
from ser_models.testing import TRAINED_HEAD_AFTER

pytestmark = pytest.mark.usefixtures("ray_local")

RECIPE = [
    *TRAINED_HEAD_AFTER, "tapt_enabled=false", "scaling.backend=in_process", "model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false",
    "model.adapter.kind=frozen", "model.pooling=mean", "model.feature_norm=pool", "model.head_hidden=0",
    "model.featurizer_layer=1", "train.solver=lbfgs", "active.feature_cache=on", "active.initial=random",
]


def _loop(pool_dir, out, extra=()):
    from ser_models.runs.after import AfterJobConfig

    cfg = load_config(AfterJobConfig, None, [f"pool_dir={pool_dir}", f"output_dir={out}", *RECIPE, *extra])
    return ActiveLearningLoop(Pool.open(cfg.pool_dir), cfg.output_dir, cfg.model, cfg.train, cfg.scaling,
                              cfg.active, verbose=False)


def _parquet(path: Path) -> dict:
    return pq.read_table(path).to_pydict()


def test_pseudo_labels_train_but_never_reach_the_ledger_and_kappa_ends_the_loop(demo_pool, tmp_path):
    # threshold 0: every unlabelled clip is a candidate, so pseudo-labels (some wrong) are plentiful; kappa
    # threshold -1 counts any round as stable, so the loop must end after round 1 with 2 of 3 budgets spent.
    loop = _loop(demo_pool.pool_dir, tmp_path, [
        "active.budget_fractions=[0.25,0.5,0.75]", "active.strategy.name=margin",
        "active.semi_supervised.method=confident", "active.semi_supervised.threshold=0.0",
        "active.semi_supervised.max_ratio=1.0",
        "active.stopping.kappa_threshold=-1", "active.stopping.kappa_rounds=1", "active.stopping.end_loop=true"])
    reports = loop.run()
    assert [r.round for r in reports] == [0, 1]
    assert reports[1].stopping["stop"] and reports[1].stopping["fired"] == ["kappa"]
    assert reports[1].stopping["message"].startswith("labelling more is unlikely to help: predictions are stable")
    assert reports[1].selected == 0 and not (tmp_path / "rounds" / "round=001" / "selection.parquet").exists()

    # Kappa and uncertainty against a hand computation from the stored stop-set predictions.
    s0, s1 = (_parquet(tmp_path / "rounds" / f"round={r:03d}" / "stop_set.parquet") for r in (0, 1))
    assert s0["utt_id"] == s1["utt_id"] == loop.stop_ids and len(loop.stop_ids) == len(loop.clips)
    assert reports[1].stopping["kappa"] == pytest.approx(cohen_kappa_score(s0["prediction"], s1["prediction"]),
                                                         abs=1e-6)
    probs1 = np.asarray(s1["probs"])
    assert reports[1].stopping["uncertainty"] == pytest.approx(float(np.mean(1 - probs1.max(1))), abs=1e-6)
    assert reports[0].stopping["kappa"] is None

    # The ledger holds exactly what the oracle labelled: the budget's clips, true labels, no pseudo-label.
    ledger = LabelLedger(tmp_path / "labels" / "ledger.parquet").labelled()
    assert len(ledger) == loop.targets[1] and set(ledger["oracle"]) == {"simulated"}
    truth = Pool.open(demo_pool.pool_dir).metadata(columns=["utt_id", "label"], split="train").set_index("utt_id")["label"]
    assert (ledger.set_index("utt_id")["label"] == truth.reindex(ledger["utt_id"]).to_numpy()).all()
    pseudo = _parquet(tmp_path / "rounds" / "round=001" / "pseudo_labels.parquet")
    assert 0 < len(pseudo["utt_id"]) <= loop.targets[1]
    assert not set(pseudo["utt_id"]) & set(ledger["utt_id"])
    report = reports[1].pseudo_labels
    assert report["clips"] == len(pseudo["utt_id"]) and report["method"] == "confident"
    wrong = sum(truth[i] != lab for i, lab in zip(pseudo["utt_id"], pseudo["label"]))
    assert report["accuracy"] == pytest.approx(1 - wrong / len(pseudo["utt_id"]), abs=1e-4)
    # ... and round 1 trained on both.
    train = json.loads((tmp_path / "rounds" / "round=001" / "train" / "metrics.json").read_text())
    assert train["history"][0]["train_clips"] == loop.targets[1] + len(pseudo["utt_id"])

    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[1]["stopping"]["kappa"] == reports[1].stopping["kappa"] and lines[1]["pseudo_labels"]["clips"]

    # A rerun of the stopped run changes nothing and stays stopped.
    again = _loop(demo_pool.pool_dir, tmp_path, [
        "active.budget_fractions=[0.25,0.5,0.75]", "active.strategy.name=margin",
        "active.semi_supervised.method=confident", "active.semi_supervised.threshold=0.0",
        "active.stopping.kappa_threshold=-1", "active.stopping.kappa_rounds=1", "active.stopping.end_loop=true"])
    assert [r.to_json() for r in again.run()] == [r.to_json() for r in reports]


def test_hour_budget_spends_seconds_of_audio_cost_aware(demo_pool, tmp_path):
    meta = Pool.open(demo_pool.pool_dir).metadata(columns=["utt_id", "duration"], split="train")
    total_h = float(meta["duration"].sum()) / 3600
    hours = [round(0.25 * total_h, 6), round(0.5 * total_h, 6)]
    loop = _loop(demo_pool.pool_dir, tmp_path, [
        f"active.budget_hours=[{hours[0]},{hours[1]}]", "active.strategy.name=entropy",
        "active.strategy.cost_aware=true", "active.stopping.max_rounds=5"])
    reports = loop.run()
    assert loop.budget.unit == "seconds" and len(reports) == 2
    ledger = LabelLedger(tmp_path / "labels" / "ledger.parquet")
    rows = ledger.labelled()
    durations = meta.set_index("utt_id")["duration"]
    np.testing.assert_allclose(rows["seconds"], durations.reindex(rows["utt_id"]).to_numpy())
    longest = float(durations.max())
    for r, h in enumerate(hours):
        spent = ledger.as_of(r).seconds()
        assert h * 3600 - longest < spent <= h * 3600 + 1e-6, (r, spent, h * 3600)
        assert reports[r].labelled_seconds == pytest.approx(spent, abs=1e-3)
        assert reports[r].labelled == len(ledger.as_of(r))
