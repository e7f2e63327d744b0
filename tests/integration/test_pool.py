"""Reading a prepared pool: split views, driver-side metadata, labelled / unlabelled views from a ledger."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser_models.data import POOL_COLUMNS, Pool, PoolConfig, decode_pool_audio, prepare_pool
from ser_models.exceptions import PoolError

pytestmark = pytest.mark.ray

SPLITS = ["train"] * 6 + ["dev", "test"]


class TinyLedger:
    """Stands in for LabelLedger: only ``labels()`` is read by the pool."""

    def __init__(self, labels: dict[str, str]):
        self._labels = labels

    def labels(self) -> dict[str, str]:
        return dict(self._labels)


@pytest.fixture(scope="module")
def pool(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    rows = []
    for i, split in enumerate(SPLITS):
        sr = [16000, 22050, 44100][i % 3]
        t = np.arange(int(sr * (0.6 + 0.05 * i))) / sr
        sf.write(root / f"c{i}.flac", (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
        rows.append({"utt_id": f"c{i}", "path": f"c{i}.flac", "label": "neutral", "arousal": 0.1 * i,
                     "speaker": f"s{i % 2}", "split": split})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    cfg = PoolConfig(manifest=str(root / "manifest.csv"), output_dir=str(root / "out"), audio_format="flac",
                     batch_size=4)
    prepare_pool(cfg)
    return Pool.open(cfg.output_dir)


def test_open_missing_or_incomplete_names_the_folder(tmp_path):
    with pytest.raises(PoolError, match=str(tmp_path / "nope")):
        Pool.open(tmp_path / "nope")
    (tmp_path / "half" / "build-x" / "data").mkdir(parents=True)
    with pytest.raises(PoolError, match="incomplete"):
        Pool.open(tmp_path / "half")


def test_split_views_read_only_their_split(pool):
    assert pool.splits == ["dev", "test", "train"]
    train = pool.dataset("train").to_pandas()
    assert sorted(train["utt_id"]) == [f"c{i}" for i in range(6)]
    assert sorted(train.columns) == sorted(POOL_COLUMNS)
    assert set(train["split"]) == {"train"} and train["split"].map(type).eq(str).all()
    everything = pool.dataset().to_pandas()
    assert sorted(everything["utt_id"]) == sorted(f"c{i}" for i in range(8))
    assert dict(zip(everything["utt_id"], everything["split"])) == {f"c{i}": s for i, s in enumerate(SPLITS)}
    row = everything.iloc[0]
    assert decode_pool_audio(row["audio"], row["audio_format"]).size == row["num_samples"]
    with pytest.raises(PoolError, match="validation"):
        pool.dataset("validation")


def test_metadata_skips_audio_unless_asked(pool):
    meta = pool.metadata()
    assert "audio" not in meta.columns and len(meta) == 8
    assert meta["num_samples"].dtype == np.int64 and meta["orig_sample_rate"].dtype == np.int32
    dev = pool.metadata(columns=["utt_id", "split", "audio"], split="dev")
    assert list(dev["utt_id"]) == ["c6"] and list(dev["split"]) == ["dev"] and len(dev["audio"][0]) > 0
    with pytest.raises(PoolError, match="loudness"):
        pool.metadata(columns=["loudness"])


def test_table_and_value_range_read_what_metadata_reads(pool):
    train = pool.metadata(columns=["utt_id", "path", "speaker"], split="train")
    assert pool.table(["utt_id", "path", "speaker"], split="train").to_pandas().equals(train)
    assert pool.value_range("path", split="train") == (min(train["path"]), max(train["path"]))
    one = train["speaker"].iloc[0]
    mine = train[train["speaker"] == one]["path"]
    assert pool.value_range("path", split="train", where={"speaker": one}) == (min(mine), max(mine))
    assert pool.value_range("path", split="train", where={"speaker": "nobody"}) is None


def test_labelled_view_takes_the_ledger_label(pool):
    ledger = TinyLedger({"c1": "angry", "c4": "happy", "c6": "sad"})  # c6 is a dev clip
    labelled = pool.labelled(ledger).to_pandas()
    assert dict(zip(labelled["utt_id"], labelled["label"])) == {"c1": "angry", "c4": "happy"}


def test_unlabelled_view_hides_targets(pool):
    ledger = TinyLedger({"c1": "angry", "c4": "happy"})
    unlabelled = pool.unlabelled(ledger).to_pandas()
    assert sorted(unlabelled["utt_id"]) == ["c0", "c2", "c3", "c5"]
    assert not {"label", "arousal", "valence", "dominance"} & set(unlabelled.columns)
    assert "audio" in unlabelled.columns and set(unlabelled["split"]) == {"train"}


def test_check_labels_names_unknown_labels_and_clips(demo_pool):
    from ser_models.data import Pool
    from ser_models.exceptions import PoolError

    pool = Pool.open(demo_pool.pool_dir)
    pool.check_labels(list(demo_pool.labels))
    with pytest.raises(PoolError, match=r"'sad' \(e.g. clip .*model.labels"):
        pool.check_labels(["neutral", "happy", "angry"])
    pool.check_labels(["neutral", "happy", "angry"], splits=("nonexistent",))
