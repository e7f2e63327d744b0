"""Labels declared once and a trained model used from Python, end to end.

A pool prepared with ``labels=[frustrated, satisfied, neutral]`` is fine-tuned by ``jobs.finetune`` with no
``model.labels`` (over an encoder folder on disk); its checkpoint and the encoder folder are moved elsewhere,
and ``ser_models.load(...).predict`` must give what ``jobs.predict`` gave for the same 8 kHz WAV before the move.
"""

from __future__ import annotations

import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf

import ser_models
from ser_models.config import load_config
from ser_models.exceptions import ConfigError
from ser_models.runs.finetune import FinetuneJobConfig, run_finetune
from ser_models.runs.predict import PredictJobConfig, run_predict

pytestmark = [pytest.mark.ray]
ROOT = Path(__file__).parents[2]
POOL_LABELS = ["frustrated", "satisfied", "neutral"]
#: The demo corpus's emotions renamed into a customer-call label set (sad calls counted neutral).
RENAME = {"angry": "frustrated", "happy": "satisfied", "neutral": "neutral", "sad": "neutral"}


def _finetune_yaml(path: Path) -> Path:
    """finetune_smoke.yaml without its ``model.labels`` line: the labels come from the pool."""
    text = (ROOT / "jobs/configs/finetune_smoke.yaml").read_text()
    kept = [line for line in text.splitlines() if not line.strip().startswith("labels:")]
    assert len(kept) == len(text.splitlines()) - 1
    path.write_text("\n".join(kept) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(ray_local, demo_pool, tmp_path_factory):
    from ser_models.data import PoolConfig, prepare_pool
    from ser_models.encoders import EncoderConfig, build_encoder

    root = tmp_path_factory.mktemp("calls")
    manifest = pd.read_csv(demo_pool.manifest)
    manifest["path"] = [str((demo_pool.manifest.parent / p).resolve()) for p in manifest["path"]]
    manifest["label"] = manifest["label"].map(RENAME)
    manifest.to_csv(root / "manifest.csv", index=False)
    prepare_pool(PoolConfig(manifest=str(root / "manifest.csv"), output_dir=str(root / "pool"), labels=POOL_LABELS,
                            batch_size=16, num_workers=1))
    work = root / "work"
    build_encoder(EncoderConfig(source="tiny-wav2vec2")).hf_model.save_pretrained(work / "encoder")
    config = _finetune_yaml(root / "finetune.yaml")
    sys_argv = sys.argv
    sys.argv = ["jobs.finetune", str(config), f"pool_dir={root / 'pool'}", f"output_dir={work / 'ft'}",
                "scaling.backend=in_process", "train.optim.epochs=1", f"model.encoder.source={work / 'encoder'}"]
    try:
        runpy.run_module("jobs.finetune", run_name="__main__")
    finally:
        sys.argv = sys_argv
    return root


def test_a_job_takes_the_pools_labels_and_refuses_different_ones(trained, tmp_path):
    meta = json.loads((trained / "work" / "ft" / "checkpoint" / "model.json").read_text())
    assert meta["labels"] == POOL_LABELS and meta["config"]["labels"] == POOL_LABELS
    assert meta["encoder"]["relative_source"] == "../../encoder"
    cfg = load_config(FinetuneJobConfig, trained / "finetune.yaml",
                      [f"pool_dir={trained / 'pool'}", f"output_dir={tmp_path / 'ft'}", "model.labels=[neutral,angry]"])
    with pytest.raises(ConfigError, match=r"model.labels=\['neutral', 'angry'\] but pool .* was prepared with "
                                          r"labels=\['frustrated', 'satisfied', 'neutral'\]"):
        run_finetune(cfg, verbose=False)
    assert not (tmp_path / "ft").exists()  # refused before anything ran


def test_a_moved_checkpoint_predicts_from_python_what_jobs_predict_did(trained, tmp_path):
    wav_path = tmp_path / "call_8k.wav"
    t = np.arange(int(1.5 * 8000)) / 8000
    wav = 0.3 * np.sin(2 * np.pi * 150 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
    sf.write(wav_path, (wav + 0.02 * np.random.default_rng(1).standard_normal(t.size)).astype(np.float32), 8000,
             subtype="PCM_16")
    pd.DataFrame({"utt_id": ["call"], "path": [str(wav_path)]}).to_csv(tmp_path / "clips.csv", index=False)
    cfg = load_config(PredictJobConfig, ROOT / "jobs/configs/predict_demo.yaml",
                      [f"checkpoint={trained / 'work' / 'ft'}", f"output_dir={tmp_path / 'pred'}", "pool_dir=''",
                       f"manifest={tmp_path / 'clips.csv'}", "backend=in_process", "scorer.threads=1"])
    run_predict(cfg, verbose=False)
    job = pq.read_table(tmp_path / "pred" / "predictions" / "part-00000.parquet").to_pylist()[0]

    # The checkpoint and its encoder, moved together; the originals gone.
    moved = tmp_path / "moved"
    shutil.copytree(trained / "work" / "ft" / "checkpoint", moved / "ft" / "checkpoint")
    shutil.copytree(trained / "work" / "encoder", moved / "encoder")
    shutil.rmtree(trained / "work")
    samples, sr = sf.read(wav_path, dtype="float32")
    by_layout = ser_models.load(moved / "ft")
    elsewhere = tmp_path / "ckpt_only"
    shutil.copytree(moved / "ft" / "checkpoint", elsewhere)
    by_argument = ser_models.load(elsewhere, encoder_source=str(moved / "encoder"))
    for predictor in (by_layout, by_argument):
        assert predictor.model.cfg.encoder.source == str(moved / "encoder")
        for result in (predictor.predict(str(wav_path)), predictor.predict(samples, sample_rate=sr)):
            assert result.label == job["predicted"] and list(result.probabilities) == POOL_LABELS
            np.testing.assert_allclose(list(result.probabilities.values()), job["probs"], atol=1e-5)
            assert result.confidence == pytest.approx(job["confidence"], abs=1e-5)
