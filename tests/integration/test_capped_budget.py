"""A recording cap that leaves a round's batch short: the run goes on, says why once, and the next round asks for
the shortfall again (the budget's resume check counts the clips the rounds really picked)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ser_models.active.loop import ActiveLearningLoop
from ser_models.config import load_config
from ser_models.data import LabelLedger, Pool
from ser_models.testing import TRAINED_HEAD_AFTER

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

OVERRIDES = [
    *TRAINED_HEAD_AFTER, "tapt_enabled=false", "scaling.backend=in_process",
    "model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false", "model.head_hidden=16",
    "train.optim.epochs=2", "train.optim.batch_size=8", "train.optim.max_crop_seconds=1.0",
    "train.early_stopping_patience=0", "active.initial=random", "active.strategy.name=margin",
    "active.max_per_recording=1",
]


@pytest.fixture(scope="module")
def speaker_pool(ray_local, tmp_path_factory):
    """The demo corpus with one recording per speaker: 8 training recordings of 4 clips each."""
    from ser_models.data import PoolConfig, generate_corpus, prepare_pool
    from ser_models.testing import DEMO_LABELS

    root = tmp_path_factory.mktemp("speaker_pool")
    generate_corpus(root / "corpus", n=48, seed=0)
    manifest = pd.read_csv(root / "corpus" / "manifest.csv")
    manifest["recording"] = "rec_" + manifest["speaker"].astype(str)
    manifest.to_csv(root / "corpus" / "manifest.csv", index=False)
    prepare_pool(PoolConfig(manifest=str(root / "corpus" / "manifest.csv"), output_dir=str(root / "pool"),
                            labels=list(DEMO_LABELS), max_duration=8.0, audio_format="flac", batch_size=8,
                            num_workers=1))
    return root / "pool"


@pytest.mark.parametrize("sharded", [False, True], ids=["gathered", "sharded"])
def test_a_batch_the_cap_leaves_short_is_asked_for_again_next_round(speaker_pool, tmp_path, capsys, sharded):
    """Round 0 asks for 10 clips, but one per recording leaves 8; round 1 accepts the 12 labels and asks for
    the 8 it needs to reach 20 (scores gathered, or kept in shards of 7 clips)."""
    from ser_models.runs.after import AfterJobConfig

    out = tmp_path / "run"
    shards = ["active.selection.shard_above_clips=0", "active.selection.rows_per_shard=7"] if sharded else []
    cfg = load_config(AfterJobConfig, None, [f"pool_dir={speaker_pool}", f"output_dir={out}", *OVERRIDES,
                                             "active.budget_labels=[4,14,20]", *shards])
    loop = ActiveLearningLoop(Pool.open(cfg.pool_dir), cfg.output_dir, cfg.model, cfg.train, cfg.scaling,
                              cfg.active, verbose=True)
    reports = loop.run()
    said = capsys.readouterr().out
    assert loop.sharded == sharded
    assert [r.labelled for r in reports] == [4, 12, 20]
    assert said.count("round 0 picked 8 of the 10 clips it asked for: the recording cap") == 1
    assert "round 1 asks for the rest again" in said
    assert "round 1 picked" not in said  # round 1 got every clip it asked for
    recordings = Pool.open(speaker_pool).metadata(["utt_id", "recording"]).set_index("utt_id")["recording"]
    for r in (0, 1):
        picked = pd.read_parquet(out / "rounds" / f"round={r:03d}" / "selection.parquet")["utt_id"]
        assert len(picked) == 8 and recordings[picked].value_counts().max() == 1
    ledger = LabelLedger(Path(out) / "labels" / "ledger.parquet").labelled()
    assert ledger["round"].value_counts().sort_index().tolist() == [4, 8, 8]
