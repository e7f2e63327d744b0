"""A checkpoint is replaced by a swap: the new one is complete beside the old one before the old one
goes, so a SIGKILL between the steps leaves one checkpoint that ``EmotionModel.load_checkpoint`` loads, and the
next writer (``train_model``, ``train_in_process``) puts it back in place."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

from ser_models import io
from ser_models.models.model import META_FILE, EmotionModel
from ser_models.testing import tiny_model_config

# The two ways a checkpoint is swapped in: a copy of Ray Train's downloaded checkpoint (trainer.train_model),
# and a model saved straight into the staging folder (in_process.train_in_process).
_SWAP = {
    "copy": "from ser_models import io; io.replace_dir(sys.argv[1], sys.argv[2], 'model.json')",
    "staged": "from ser_models import io; io.commit_dir_swap(sys.argv[2], 'model.json')",
}


def _model(seed: int) -> EmotionModel:
    torch.manual_seed(seed)
    model = EmotionModel(tiny_model_config("tiny-wav2vec2", "lora"))
    with torch.no_grad():  # weights that differ between the two versions
        for p in model.trainable_parameters():
            p.add_(torch.randn_like(p))
    return model


def _same_weights(a: EmotionModel, b: EmotionModel) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.trainable_parameters(), b.trainable_parameters(), strict=True))


@pytest.mark.parametrize("route", sorted(_SWAP))
@pytest.mark.parametrize(("failpoint", "survivor"), [("replace_dir_staged", "old"), ("replace_dir_old_removed", "new")])
def test_a_kill_mid_swap_leaves_a_checkpoint_that_loads(tmp_path, route, failpoint, survivor):
    old, new = _model(0), _model(1)
    ckpt = str(tmp_path / "run" / "checkpoint")
    old.save_checkpoint(ckpt)
    src = str(tmp_path / "downloaded")
    new.save_checkpoint(io.begin_dir_swap(ckpt, META_FILE) if route == "staged" else src)
    proc = subprocess.run([sys.executable, "-c", "import sys; " + _SWAP[route], src, ckpt], timeout=120,
                          env={**os.environ, "SER_FAILPOINT": failpoint})
    assert proc.returncode == -signal.SIGKILL

    expected = {"old": old, "new": new}[survivor]
    assert _same_weights(EmotionModel.load_checkpoint(ckpt), expected)  # the reader finds the complete one
    io.finish_dir_swap(ckpt, META_FILE)  # what the next train_model / train_in_process does first
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoint"]
    assert _same_weights(EmotionModel.load_checkpoint(ckpt), expected)
