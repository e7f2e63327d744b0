"""``jobs.predict`` resumes by its checkpoint's content, not only its path: new weights saved into the same
folder are refused on a rerun."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from ser_models.config import load_config
from ser_models.encoders.content_hash import SIDECAR_NAME
from ser_models.exceptions import ResumeMismatchError
from ser_models.models.model import EmotionModel
from ser_models.ownership import claim_output
from ser_models.provenance import check_run
from ser_models.runs.predict import PREDICT_LAYOUT, PredictJobConfig, checkpoint_identity
from ser_models.testing import tiny_model_config

ROOT = Path(__file__).parents[3]


def _save(folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    EmotionModel(tiny_model_config(labels=["neutral", "happy"], head_hidden=8)).save_checkpoint(str(folder))


def _resume(checkpoint: Path, out: Path) -> bool:
    """The resume check ``run_predict`` makes (in its claimed output folder), with the identity it records."""
    cfg = load_config(PredictJobConfig, ROOT / "jobs/configs/predict_demo.yaml",
                      [f"checkpoint={checkpoint}", f"output_dir={out}"])
    with claim_output(out, "run", job="jobs.predict", layout=PREDICT_LAYOUT):
        return check_run(out, "jobs.predict", cfg, inputs={"pool": "pool-lineage",
                                                           "checkpoint": checkpoint_identity(str(checkpoint))})


def test_a_rerun_over_new_weights_saved_into_the_same_checkpoint_folder_is_refused(tmp_path):
    ckpt, out = tmp_path / "run" / "checkpoint", tmp_path / "predictions"
    _save(ckpt, seed=0)
    first = checkpoint_identity(str(ckpt))
    assert first.startswith("sha256:") and str(ckpt) not in first
    assert _resume(ckpt, out) is True and _resume(ckpt, out) is False  # an unchanged rerun resumes
    assert not (ckpt / SIDECAR_NAME).exists()  # the trained run's folder is only read
    _save(ckpt, seed=1)  # retrained into the same folder
    assert checkpoint_identity(str(ckpt)) != first
    with pytest.raises(ResumeMismatchError, match="input checkpoint"):
        _resume(ckpt, out)


def test_a_moved_checkpoint_keeps_its_identity(tmp_path):
    """The identity names content only (the ``checkpoint`` config key still records the path: a rerun from
    another place is refused by the config check, as before)."""
    _save(tmp_path / "a" / "checkpoint", seed=0)
    before = checkpoint_identity(str(tmp_path / "a" / "checkpoint"))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    assert checkpoint_identity(str(tmp_path / "b" / "checkpoint")) == before
