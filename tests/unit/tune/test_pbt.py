"""Population Based Training: which sweeps may use it, the keys it perturbs, the clipping of perturbed values,
and how a trial takes over a checkpoint (its own or another trial's)."""

from __future__ import annotations

import json

import pytest

from ser_models.exceptions import ConfigError
from ser_models.tune.config import SchedulerConfig, SweepConfig
from ser_models.tune.space import SearchParam
from ser_models.tune.sweep import clip_to_ranges, plan_sweep
from ser_models.tune.targets import ORIGIN_FILE, adopt_checkpoint


def _sweep(search=None, backend="in_process", **kw) -> SweepConfig:
    return SweepConfig(
        base=kw.pop("base", "finetune"), output_dir="/tmp/unused",
        search=search or {"train.lr_head": {"loguniform": [1e-4, 1e-2]}, "model.adapter.r": {"choice": [4, 8]}},
        scheduler=SchedulerConfig(name="pbt", **kw.pop("scheduler", {})),
        config={"pool_dir": "/p", "scaling": {"backend": backend}}, **kw)


def test_default_mutations_are_the_swept_rate_keys():
    plan = plan_sweep(_sweep(), check_pool=False)
    assert [p.key for p in plan.mutate] == ["train.lr_head"]  # r is swept but fixed per lineage


@pytest.mark.parametrize("kw, match", [
    ({"backend": "ray_train"}, "needs base: finetune with config.scaling.backend=in_process"),
    ({"base": "after"}, "needs base: finetune"),
    ({"search_alg": "optuna"}, "Optuna"),
    ({"search": {"model.adapter.r": {"choice": [4, 8]}}}, "nothing to mutate"),
    ({"scheduler": {"mutate": ["train.optim.lr"]}}, "train.optim.lr is not a key of search"),
    ({"search": {"train.lr_head": {"grid": [1e-3, 1e-2]}}}, "not grid"),
])
def test_sweeps_pbt_cannot_run_are_refused_by_key(kw, match):
    with pytest.raises(ConfigError, match=match):
        plan_sweep(_sweep(**kw), check_pool=False)


def test_only_keys_a_fit_rereads_may_be_mutated():
    with pytest.raises(ConfigError, match=r"scheduler.mutate: \['train.optim.epochs'\] cannot change"):
        SchedulerConfig(name="pbt", mutate=["train.optim.epochs"])


@pytest.mark.parametrize("name", ["asha", "fifo"])
def test_mutate_outside_pbt_is_refused(name):
    with pytest.raises(ConfigError, match=f"scheduler.mutate applies to scheduler.name=pbt only.*{name}"):
        SchedulerConfig(name=name, mutate=["train.lr_head"])


def test_scaled_values_are_clipped_into_the_search_range():
    params = (SearchParam("a", "loguniform", (1e-4, 1e-2)), SearchParam("b", "uniform", (0.0, 0.5)),
              SearchParam("c", "choice", (1, 2)))
    assert clip_to_ranges(params, {"a": 1.2e-2, "b": -0.1, "c": 7, "d": 9}) == {"a": 1e-2, "b": 0.0, "c": 7, "d": 9}


def _checkpoint(tmp_path, trial_id, state: bytes):
    from ray.tune import Checkpoint

    d = tmp_path / f"ckpt_{trial_id}"
    d.mkdir()
    (d / "fit_state.pt").write_bytes(state)
    (d / ORIGIN_FILE).write_text(json.dumps({"trial_id": trial_id, "epoch": 2}))
    return Checkpoint.from_directory(str(d))


def test_a_donors_checkpoint_replaces_the_trials_folder(tmp_path, capsys):
    out = tmp_path / "trials" / "t1"
    (out / "in_process").mkdir(parents=True)
    (out / "run.json").write_text('{"format": 1, "job": "jobs.finetune", "config": {}}')  # must not survive
    (out / "in_process" / "fit_state.pt").write_bytes(b"own")
    assert adopt_checkpoint(_checkpoint(tmp_path, "t0", b"donor"), str(out), "t1") == "t0"
    assert (out / "in_process" / "fit_state.pt").read_bytes() == b"donor"
    assert not (out / "run.json").exists()
    assert "trial t1: continues trial t0's fit after epoch 2" in capsys.readouterr().out


def test_its_own_checkpoint_only_resets_the_state(tmp_path):
    out = tmp_path / "trials" / "t1"
    (out / "in_process").mkdir(parents=True)
    (out / "run.json").write_text("{}")
    (out / "in_process" / "fit_state.pt").write_bytes(b"epoch 3")
    assert adopt_checkpoint(_checkpoint(tmp_path, "t1", b"epoch 2"), str(out), "t1") == "t1"
    assert (out / "in_process" / "fit_state.pt").read_bytes() == b"epoch 2" and (out / "run.json").exists()
    assert adopt_checkpoint(None, str(out), "t1") is None
