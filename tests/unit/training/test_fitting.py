"""The fit algorithm in-process (no Ray): learning, early stopping, resume equivalence."""

import copy

import numpy as np
import pytest
import torch

from ser_models.data.clips import ClipSet
from ser_models.models.model import EmotionModel
from ser_models.testing import tiny_model_config, tone_clips
from ser_models.training.config import OptimConfig, TrainConfig
from ser_models.training.fitting import FitState, evaluate, fit, trainable_weights


def _toy_clips(n, seed):
    """Two classes separable by loudness and pitch: a model that trains must learn them."""
    return tone_clips(n, seed)


@pytest.fixture(scope="module")
def data():
    return _toy_clips(24, 0), _toy_clips(12, 1)


def _model(seed=0):
    torch.manual_seed(seed)
    cfg = tiny_model_config("tiny-wav2vec2", "lora", labels=["low", "high"], normalize_waveform=False)
    return EmotionModel(cfg)


CFG = TrainConfig(optim=OptimConfig(epochs=6, batch_size=4, lr=3e-3, max_crop_seconds=0.5, seed=0), lr_head=1e-2,
                  early_stopping_patience=0, eval_batch_size=8)


def test_fit_learns_separable_classes(data):
    train, dev = data
    model = _model()
    before = evaluate(model, dev, CFG, torch.device("cpu"))["ua"]
    state = fit(model, train, dev, CFG, class_counts=[12, 12], log=lambda _: None)
    after = evaluate(model, dev, CFG, torch.device("cpu"))["ua"]
    assert state.finished and state.epoch == 6 and len(state.history) == 6
    assert after >= 0.9 and after >= before
    assert state.history[-1]["train_loss"] < state.history[0]["train_loss"]
    assert after == pytest.approx(state.best_ua)  # the model ends with its best weights


def test_early_stopping_stops(data):
    train, dev = data
    cfg = copy.deepcopy(CFG)
    cfg.optim.epochs, cfg.early_stopping_patience, cfg.optim.lr, cfg.lr_head = 20, 1, 1e-9, 1e-9
    state = fit(_model(), train, dev, cfg, log=lambda _: None)
    assert state.epoch < 20 and state.bad_epochs == 1


def test_resumed_fit_equals_uninterrupted():
    """Crash after epoch 2, restore state + current weights into a fresh model: same history as one run."""
    cfg = copy.deepcopy(CFG)
    cfg.optim.epochs = 4
    train, dev = _toy_clips(12, 0), _toy_clips(6, 1)
    full = fit(_model(), train, dev, cfg, log=lambda _: None)

    saved = {}

    def crash_after_2(st, mdl, _o, _s):
        if st.epoch == 2:
            saved["state"] = copy.deepcopy(st)
            saved["current"] = trainable_weights(mdl)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), train, dev, cfg, on_epoch_end=crash_after_2, log=lambda _: None)
    model = _model()
    from ser_models.training.fitting import load_trainable_weights

    load_trainable_weights(model, saved["current"])
    state = saved["state"]
    state.finished = False
    resumed = fit(model, train, dev, cfg, state=state, log=lambda _: None)
    strip = [{k: v for k, v in h.items() if "seconds" not in k} for h in full.history]
    strip2 = [{k: v for k, v in h.items() if "seconds" not in k} for h in resumed.history]
    assert len(strip2) == len(strip)
    for a, b in zip(strip, strip2):
        assert a["epoch"] == b["epoch"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["dev_ua"] == pytest.approx(b["dev_ua"])


def test_resumed_state_takes_the_new_configs_learning_rates_at_its_schedule_position():
    """Population Based Training hands a trial another trial's state with mutated learning rates: the
    restored optimizer must run at the new peak rates (scaled by the schedule's position), keep its step count
    and Adam moments, and take the new weight decay."""
    from ser_models.training.schedule import tri_stage_lambda

    cfg = copy.deepcopy(CFG)
    cfg.optim.epochs, cfg.optim.warmup_ratio, cfg.optim.hold_ratio = 4, 0.5, 0.0  # the multiplier changes at every step
    train, dev = _toy_clips(12, 0), _toy_clips(6, 1)
    saved = {}

    def stop_after_1(st, _m, _o, _s):
        saved["state"] = copy.deepcopy(st)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), train, dev, cfg, on_epoch_end=stop_after_1, log=lambda _: None)
    state = saved["state"]
    steps_done = state.scheduler["last_epoch"]
    assert steps_done > 0
    mutated = copy.deepcopy(cfg)
    mutated.optim.lr, mutated.lr_head, mutated.optim.weight_decay = 1e-4, 5e-2, 0.3
    seen = {}

    def look(st, _m, opt, sched):
        seen["groups"] = [(g["lr"], g["initial_lr"], g["weight_decay"]) for g in opt.param_groups]
        seen["step"], seen["base"] = sched.last_epoch, list(sched.base_lrs)
        seen["adam_step"] = float(next(iter(opt.state.values()))["step"])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), train, dev, mutated, state=state, on_epoch_end=look, log=lambda _: None)
    mult = tri_stage_lambda(steps_done * cfg.optim.epochs, 0.5, 0.0)(seen["step"])
    assert seen["step"] == 2 * steps_done and seen["adam_step"] == 2 * steps_done
    assert seen["base"] == [1e-4, 5e-2]
    for (lr, initial, wd), base in zip(seen["groups"], [1e-4, 5e-2]):
        assert initial == base and wd == 0.3
        assert lr == pytest.approx(base * mult)


def test_feature_mode_trains_from_pooled_features():
    rng = np.random.default_rng(0)
    cfg = tiny_model_config("tiny-wav2vec2", "frozen", labels=["a", "b"])
    model = EmotionModel(cfg)
    L, D = model.encoder.num_layers, model.encoder.hidden_size
    y = np.arange(40) % 2
    feats = (rng.standard_normal((40, L, D)) + y[:, None, None] * 1.5).astype(np.float32)
    clips = ClipSet(ids=[str(i) for i in range(40)], labels=y, features=feats)
    state = fit(model, clips, clips,
                TrainConfig(optim=OptimConfig(epochs=5, batch_size=8), lr_head=1e-2, early_stopping_patience=0),
                log=lambda _: None)
    assert state.best_ua > 0.9


def test_fit_without_trainable_parameters_fails(data):
    from ser_models.exceptions import TrainingError

    model = _model()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(TrainingError, match="no trainable parameters"):
        fit(model, data[0], None, CFG, log=lambda _: None)
    assert FitState().epoch == 0


def test_non_finite_loss_names_epoch_step_and_clips():
    from ser_models.exceptions import TrainingError

    cfg = tiny_model_config("tiny-wav2vec2", "frozen", labels=["a", "b"])
    model = EmotionModel(cfg)
    L, D = model.encoder.num_layers, model.encoder.hidden_size
    feats = np.ones((8, L, D), np.float32)
    feats[5, 0, 0] = np.inf  # one clip's features blow up the head
    clips = ClipSet(ids=[f"clip{i}" for i in range(8)], labels=np.arange(8) % 2, features=feats)
    with pytest.raises(TrainingError, match=r"non-finite training loss .* at epoch 1, step \d+, .*'clip5'"):
        fit(model, clips, None, TrainConfig(optim=OptimConfig(epochs=2, batch_size=8), early_stopping_patience=0),
            log=lambda _: None)


def _feature_clips(n, L, D, seed, dims=True):
    """Pooled features whose first channel sets the class and whose second sets arousal/valence linearly."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    a = rng.uniform(1.5, 4.5, n)
    feats = rng.standard_normal((n, L, D)).astype(np.float32)
    feats[:, :, 0] += 2.0 * y[:, None]
    feats[:, :, 1] += (a[:, None] - 3.0) * 1.5
    targets = np.stack([a, 6.0 - a], 1).astype(np.float32) if dims else None
    return ClipSet(ids=[f"c{i:03d}" for i in range(n)], labels=y, features=feats, targets=targets)


@pytest.mark.parametrize("labels,select", [([], "ccc"), (["a", "b"], "ua_plus_ccc")])
def test_dimensional_and_multitask_fits_learn_and_report_ccc(labels, select):
    cfg = tiny_model_config("tiny-wav2vec2", "frozen", labels=labels, dimensions=["arousal", "valence"])
    torch.manual_seed(0)
    model = EmotionModel(cfg)
    L, D = model.encoder.num_layers, model.encoder.hidden_size
    train, dev = _feature_clips(64, L, D, 0), _feature_clips(32, L, D, 1)
    tc = TrainConfig(optim=OptimConfig(epochs=8, batch_size=8), lr_head=1e-2, early_stopping_patience=0, select_metric=select)
    before = evaluate(model, dev, tc, torch.device("cpu"))
    state = fit(model, train, dev, tc, class_counts=[32, 32] if labels else None, log=lambda _: None)
    after = evaluate(model, dev, tc, torch.device("cpu"))
    assert after["ccc"] > 0.6 and after["ccc"] > before["ccc"] + 0.3
    assert {"ccc_arousal", "pearson_valence", "rmse_arousal"} <= set(after)
    assert ("ua" in after) == bool(labels)
    assert "dev_ccc" in state.history[-1] and after[select] == pytest.approx(state.best_ua)
    if labels:
        assert after["ua"] > 0.8


def test_dimensional_fit_refuses_missing_targets_and_wrong_select_metric():
    from ser_models.exceptions import ConfigError

    cfg = tiny_model_config("tiny-wav2vec2", "frozen", labels=["a", "b"])
    model = EmotionModel(cfg)
    L, D = model.encoder.num_layers, model.encoder.hidden_size
    with pytest.raises(ConfigError, match="select_metric.*model.dimensions"):
        fit(model, _feature_clips(8, L, D, 0, dims=False), None, TrainConfig(optim=OptimConfig(epochs=1), select_metric="ccc"),
            log=lambda _: None)


def test_frozen_parts_keep_their_weights_and_stay_in_the_checkpoint(data):
    from ser_models.exceptions import ConfigError, TrainingError

    train, dev = data
    model = _model()
    before = trainable_weights(model)
    cfg = copy.deepcopy(CFG)
    cfg.optim.epochs, cfg.freeze = 1, ["adapter", "featurizer"]
    fit(model, train, dev, cfg, class_counts=[12, 12], log=lambda _: None)
    after = trainable_weights(model)
    assert after.keys() == before.keys()  # every trainable weight is still saved
    for name, w in after.items():
        moved = not torch.equal(w, before[name])
        assert moved == name.startswith("head."), name
    cfg.freeze = ["adapter", "featurizer", "pooling", "head"]
    with pytest.raises(TrainingError, match=r"train.freeze=\['adapter', 'featurizer', 'pooling', 'head'\]"):
        fit(_model(), train, dev, cfg, log=lambda _: None)
    with pytest.raises(ConfigError, match="train.freeze"):
        TrainConfig(freeze=["encoder"])
