"""``train.l2_c=auto`` keeps each cross-validated choice in the process: the same problem again (paired
simulations' first round) gets the same record without solving, and any change to the problem solves anew."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ser_models.data.clips import ClipSet
from ser_models.models.model import EmotionModel
from ser_models.testing import tiny_model_config
from ser_models.training import OptimConfig, TrainConfig, lbfgs
from ser_models.training.fitting import fit

LABELS = ["neutral", "happy", "angry", "sad"]
CFG = TrainConfig(optim=OptimConfig(seed=1), solver="lbfgs", l2_c="auto", l2_c_grid=[0.01, 0.1, 1.0], cv_folds=3)


def _model() -> EmotionModel:
    return EmotionModel(dataclasses.replace(
        tiny_model_config("tiny-wav2vec2", "frozen", labels=LABELS, normalize_waveform=False),
        head_hidden=0, head_input_norm=False, featurizer_layer=1))


def _fit(x, y, cfg=CFG, head_seed: int = 0) -> dict:
    torch.manual_seed(head_seed)
    model = _model()
    clips = ClipSet(ids=[f"c{i}" for i in range(len(y))], labels=y.astype(np.int64), features=x)
    state = fit(model, clips, None, cfg, class_counts=np.bincount(y, minlength=4).tolist(), log=lambda _: None)
    return {"record": state.history[0], "head": {k: v.clone() for k, v in model.head.state_dict().items()}}


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), 12)
    encoder = _model().encoder
    x = rng.normal(size=(len(y), encoder.num_layers, encoder.hidden_size)).astype(np.float32)
    x[:, :, :4] += 2.0 * np.eye(4, dtype=np.float32)[y][:, None, :]
    return x, y


def _same(a: dict, b: dict) -> None:
    assert a["record"]["l2_c"] == b["record"]["l2_c"] and a["record"]["l2_c_cv"] == b["record"]["l2_c_cv"]
    for k, v in a["head"].items():
        assert torch.equal(b["head"][k], v), k


def test_the_same_problem_reuses_the_choice_and_gives_the_same_model():
    lbfgs._CV_CHOICES.clear()
    x, y = _data()
    first = _fit(x, y)
    assert len(lbfgs._CV_CHOICES) == 1
    again = _fit(x, y)
    assert len(lbfgs._CV_CHOICES) == 1  # kept, not solved again
    _same(first, again)
    lbfgs._CV_CHOICES.clear()
    _same(first, _fit(x, y))  # and what a fresh cross-validation gives


def test_any_change_to_the_problem_solves_it_anew():
    lbfgs._CV_CHOICES.clear()
    x, y = _data()
    _fit(x, y)
    flipped = y.copy()
    flipped[[0, 12]] = flipped[[12, 0]]
    moved = x.copy()
    moved[0, 1, 0] += 1e-3
    for args, kw in [((moved, y), {}), ((x, flipped), {}), ((x, y), {"head_seed": 1}),
                     ((x, y), {"cfg": dataclasses.replace(CFG, optim=dataclasses.replace(CFG.optim, seed=2))}),
                     ((x, y), {"cfg": dataclasses.replace(CFG, l2_c_grid=[0.01, 1.0])})]:
        before = len(lbfgs._CV_CHOICES)
        _fit(*args, **kw)
        assert len(lbfgs._CV_CHOICES) == before + 1, kw


def test_a_shared_folder_hands_a_choice_to_another_process(tmp_path):
    lbfgs._CV_CHOICES.clear()
    x, y = _data()
    with lbfgs.sharing_cv_choices(tmp_path):
        first = _fit(x, y)
    assert len(list(tmp_path.glob("*.json"))) == 1
    lbfgs._CV_CHOICES.clear()  # another process: nothing in memory, the folder holds the choice
    (tmp_path / "other").mkdir()
    with lbfgs.sharing_cv_choices(tmp_path / "other"):
        _fit(x, y)  # a folder without it: solved, and kept there
    assert len(list((tmp_path / "other").glob("*.json"))) == 1
    lbfgs._CV_CHOICES.clear()
    key = next(tmp_path.glob("*.json")).stem
    with lbfgs.sharing_cv_choices(tmp_path):
        again = _fit(x, y)
    assert list(lbfgs._CV_CHOICES) == [key]  # read from the folder
    _same(first, again)
    assert list(again["record"]["l2_c_cv"]) == ["metric", "folds", "grid", "scores"]
