"""A round over a pool whose scores stay sharded (``active.selection.shard_above_clips=0``, shards of 7
clips) labels exactly the clips the gathered round labels, for the strategies with an exact sharded
form, and keeps only shard files and their manifest. Selection runs as Ray tasks on the session's cluster."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ser_models.active.loop import ActiveLearningLoop
from ser_models.config import load_config
from ser_models.data import LabelLedger, Pool
from ser_models.exceptions import LabellingPending
from ser_models.testing import TRAINED_HEAD_AFTER

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

OVERRIDES = [
    *TRAINED_HEAD_AFTER, "tapt_enabled=false", "scaling.backend=in_process",
    "model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false", "model.head_hidden=16",
    "train.optim.epochs=2", "train.optim.batch_size=8", "train.optim.max_crop_seconds=1.0",
    "train.early_stopping_patience=0", "active.budget_fractions=[0.2,0.4]", "active.initial=random",
]
SHARDED = ["active.selection.shard_above_clips=0", "active.selection.rows_per_shard=7"]


def _run(pool_dir, out, extra, verbose=False):
    from ser_models.runs.after import AfterJobConfig

    cfg = load_config(AfterJobConfig, None, [f"pool_dir={pool_dir}", f"output_dir={out}", *OVERRIDES, *extra])
    loop = ActiveLearningLoop(Pool.open(cfg.pool_dir), cfg.output_dir, cfg.model, cfg.train, cfg.scaling,
                              cfg.active, verbose=verbose)
    return loop, loop.run()


def _ledger(out):
    df = LabelLedger(Path(out) / "labels" / "ledger.parquet").labelled()
    return sorted(zip(df["utt_id"], df["label"], df["round"].astype(int)))


@pytest.mark.parametrize("strategy", [["active.strategy.name=margin", "active.strategy.class_balanced=true"],
                                      ["active.strategy.name=informative_diverse"]])
def test_a_sharded_round_labels_what_the_gathered_round_labels(demo_pool, tmp_path, strategy):
    gathered_loop, _ = _run(demo_pool.pool_dir, tmp_path / "gathered", strategy)
    sharded_loop, reports = _run(demo_pool.pool_dir, tmp_path / "sharded", [*strategy, *SHARDED])
    assert not gathered_loop.sharded and sharded_loop.sharded
    assert _ledger(tmp_path / "sharded") == _ledger(tmp_path / "gathered")
    assert reports[0].selected > 0
    round0 = tmp_path / "sharded" / "rounds" / "round=000"
    assert (round0 / "scores" / "manifest.json").exists() and not (round0 / "scores.parquet").exists()
    assert len(list((round0 / "scores").glob("attempt=*/part-*.parquet"))) > 3
    # the stop set's predictions came from the shards, and they are the gathered round's
    assert (round0 / "stop_set.parquet").read_bytes() == \
        (tmp_path / "gathered" / "rounds" / "round=000" / "stop_set.parquet").read_bytes()


@pytest.mark.slow_e2e  # a gathered and a sharded run, 20 s on 2 cores: make test-e2e (the unit tests compare picks)
def test_auto_with_a_kcenter_candidate_stays_sharded_and_chooses_what_the_gathered_round_chooses(demo_pool,
                                                                                                 tmp_path):
    """``auto`` over random, margin and k-center (a two-round candidate): the rounds keep their scores in shards
    (before, such a round gathered them), each round's replay chooses what the gathered round's chooses, with
    the same simulated UA, and a round that chose a ranking candidate labels the gathered round's clips."""
    import json

    auto = ["active.strategy.name=auto", "active.strategy.auto_candidates=[random,margin,kcenter]",
            "active.strategy.auto_min_labelled=12", "active.strategy.auto_repeats=3",
            "active.budget_fractions=[0.5,0.75]"]  # 16 labelled clips at round 0's query: enough to replay
    gathered_loop, gathered = _run(demo_pool.pool_dir, tmp_path / "gathered", auto)
    sharded_loop, sharded = _run(demo_pool.pool_dir, tmp_path / "sharded", [*auto, *SHARDED])
    assert not gathered_loop.sharded and sharded_loop.sharded
    assert (tmp_path / "sharded" / "rounds" / "round=000" / "scores" / "manifest.json").exists()
    choices = [json.loads((tmp_path / run / "rounds" / "round=000" / "strategy.json").read_text())
               for run in ("gathered", "sharded")]
    assert choices[0]["simulated_ua"] and choices[1] == choices[0]
    assert [r.strategy for r in sharded] == [r.strategy for r in gathered]
    if choices[0]["chosen"] != "kcenter":  # random and margin have exact sharded forms
        assert _ledger(tmp_path / "sharded") == _ledger(tmp_path / "gathered")


@pytest.mark.slow_e2e  # a gathered and a sharded run, 20 s on 2 cores: make test-e2e (the unit tests compare them)
def test_a_sharded_round_trains_on_the_gathered_rounds_confident_pseudo_labels(demo_pool, tmp_path):
    extra = ["active.strategy.name=margin", "active.semi_supervised.method=confident",
             "active.semi_supervised.threshold=0.3", "active.semi_supervised.max_ratio=2.0"]
    _, gathered = _run(demo_pool.pool_dir, tmp_path / "gathered", extra)
    sharded_loop, sharded = _run(demo_pool.pool_dir, tmp_path / "sharded", [*extra, *SHARDED])
    assert sharded_loop.sharded
    pseudo = [pd.read_parquet(tmp_path / run / "rounds" / "round=001" / "pseudo_labels.parquet")
              for run in ("gathered", "sharded")]
    assert len(pseudo[0]) > 0 and pseudo[1].equals(pseudo[0])
    assert sharded[1].pseudo_labels == gathered[1].pseudo_labels
    assert _ledger(tmp_path / "sharded") == _ledger(tmp_path / "gathered")


def test_a_sharded_round_writes_the_request_file_with_guesses_and_scores(demo_pool, tmp_path):
    """The file oracle's request shows the model's guess and the strategy's score per clip, read back from the
    shards for the picks alone: the same file the gathered round writes."""
    manifest = pd.read_csv(demo_pool.manifest)
    truth = dict(zip(manifest["utt_id"], manifest["label"]))
    requests = {}
    for name, extra in (("gathered", []), ("sharded", SHARDED)):
        out = tmp_path / name
        args = ["active.strategy.name=entropy", "active.oracle=file", *extra]
        with pytest.raises(LabellingPending):
            _run(demo_pool.pool_dir, out, args)
        initial = out / "rounds" / "initial" / "to_label.csv"
        df = pd.read_csv(initial)
        df["label"] = df["utt_id"].map(truth)
        df.to_csv(initial, index=False)
        with pytest.raises(LabellingPending):
            _run(demo_pool.pool_dir, out, args)  # imports the initial labels, trains round 0, asks for round 1
        requests[name] = pd.read_csv(out / "rounds" / "round=000" / "to_label.csv")
    sharded, gathered = requests["sharded"], requests["gathered"]
    assert (tmp_path / "sharded" / "rounds" / "round=000" / "scores" / "manifest.json").exists()
    guess = [c for c in sharded.columns if "guess" in c]
    assert guess and sharded[guess].notna().all().all()
    pd.testing.assert_frame_equal(sharded, gathered)


@pytest.fixture(scope="module")
def recorded_pool(ray_local, tmp_path_factory):
    """The demo corpus with recordings: half of the training clips come from one long episode, every other clip
    is a recording of its own (so a cap of one still fills each batch)."""
    from ser_models.data import PoolConfig, generate_corpus, prepare_pool
    from ser_models.testing import DEMO_LABELS

    root = tmp_path_factory.mktemp("recorded_pool")
    generate_corpus(root / "corpus", n=48, seed=0)
    manifest = pd.read_csv(root / "corpus" / "manifest.csv")
    train = manifest["split"] == "train"
    manifest["recording"] = "rec_" + manifest["utt_id"].astype(str)
    manifest.loc[train & (manifest.index % 2 == 0), "recording"] = "rec_long_episode"
    manifest.to_csv(root / "corpus" / "manifest.csv", index=False)
    prepare_pool(PoolConfig(manifest=str(root / "corpus" / "manifest.csv"), output_dir=str(root / "pool"),
                            labels=list(DEMO_LABELS), max_duration=8.0, audio_format="flac", batch_size=8,
                            num_workers=1))
    return root / "pool"


@pytest.mark.slow_e2e  # a gathered and a sharded run, 20 s on 2 cores: make test-e2e (the unit tests compare picks)
def test_a_capped_sharded_round_labels_what_the_capped_gathered_round_labels(recorded_pool, tmp_path, capsys):
    """At most one clip of a recording per query, the threshold forced: the round keeps its scores in shards
    (no line saying it gathers them) and labels the gathered round's clips."""
    capped = ["active.strategy.name=margin", "active.max_per_recording=1"]
    gathered_loop, _ = _run(recorded_pool, tmp_path / "gathered", capped)
    capsys.readouterr()
    sharded_loop, reports = _run(recorded_pool, tmp_path / "sharded", [*capped, *SHARDED], verbose=True)
    said = capsys.readouterr().out
    assert "selection: sharded" in said and "gathers the pool's scores" not in said
    assert not gathered_loop.sharded and sharded_loop.sharded
    assert (tmp_path / "sharded" / "rounds" / "round=000" / "scores" / "manifest.json").exists()
    assert reports[0].selected > 0
    assert _ledger(tmp_path / "sharded") == _ledger(tmp_path / "gathered")
    picked = pd.read_parquet(tmp_path / "sharded" / "rounds" / "round=000" / "selection.parquet")["utt_id"]
    recordings = Pool.open(recorded_pool).metadata(["utt_id", "recording"]).set_index("utt_id")["recording"]
    assert recordings[picked].value_counts().max() == 1


def test_a_cap_around_kcenter_with_label_propagation_stays_sharded(recorded_pool, tmp_path, capsys):
    """k-center under a cap of one, with label propagation, the threshold forced (both gathered the pool's scores
    before): the shards offer k-center's picks, the capped walk runs on their union (offered again from open
    recordings where the long episode crowds them), each shard spreads the ledger's labels over its own clips'
    graph, and no round gathers the pool's scores."""
    capsys.readouterr()
    loop, reports = _run(recorded_pool, tmp_path / "sharded",
                         ["active.strategy.name=kcenter", "active.max_per_recording=1",
                          "active.semi_supervised.method=propagation", "active.semi_supervised.threshold=0.3",
                          "active.semi_supervised.max_ratio=2.0", *SHARDED], verbose=True)
    said = capsys.readouterr().out
    assert loop.sharded and "selection: sharded" in said and "gathers the pool's scores" not in said
    assert "clips it asked for" not in said  # every batch was filled
    pseudo = pd.read_parquet(tmp_path / "sharded" / "rounds" / "round=001" / "pseudo_labels.parquet")
    assert len(pseudo) > 0 and set(pseudo["method"]) == {"propagation"}
    assert not set(pseudo["utt_id"]) & {u for u, _, r in _ledger(tmp_path / "sharded") if r < 1}
    assert reports[1].pseudo_labels["clips"] == len(pseudo)
    recordings = Pool.open(recorded_pool).metadata(["utt_id", "recording"]).set_index("utt_id")["recording"]
    selecting = [r for r in reports if r.selected]
    assert selecting
    for report in selecting:
        round_dir = tmp_path / "sharded" / "rounds" / f"round={report.round:03d}"
        assert (round_dir / "scores" / "manifest.json").exists()
        picked = pd.read_parquet(round_dir / "selection.parquet")["utt_id"]
        assert len(picked) == report.selected
        assert recordings[picked].value_counts().max() == 1
