"""Every sweep YAML under jobs/configs plans as shipped (keys, values, conditions, scheduler), and the PEFT
combination sweep's every grid point builds a model that passes the gradient check."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser_models.config import load_config
from ser_models.exceptions import ConfigError
from ser_models.model import EmotionModel
from ser_models.tune.config import SweepConfig
from ser_models.tune.space import apply_values, grid_combinations
from ser_models.tune.sweep import plan_sweep
from ser_models.tune.targets import TARGETS

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "jobs" / "configs").glob("sweep_*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_sweep_plans(path):
    plan = plan_sweep(load_config(SweepConfig, path), check_pool=False)
    assert plan.trials >= 1 and plan.params


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_no_shipped_sweep_ranks_or_stops_on_the_test_split(path):
    plan = plan_sweep(load_config(SweepConfig, path), check_pool=False)
    for name in (plan.metric, plan.stop_metric):
        assert name.startswith(("dev_", "alc_dev_")), f"{path.name} ranks or stops on {name}"


@pytest.mark.parametrize("metric", ["alc_test_ua", "test_ua"])
def test_a_sweep_on_the_test_split_is_refused(metric):
    cfg = SweepConfig(base="after", output_dir="/tmp/unused", metric=metric,
                      search={"active.seed": {"randint": [0, 9]}}, config={"pool_dir": "/p"})
    with pytest.raises(ConfigError, match=f"metric '{metric}' reads the test split"):
        plan_sweep(cfg, check_pool=False)
    cfg.metric, cfg.scheduler.metric, cfg.scheduler.mode = "", metric, "max"
    with pytest.raises(ConfigError, match=f"scheduler.metric '{metric}' reads the test split"):
        plan_sweep(cfg, check_pool=False)


def test_every_peft_combination_builds_and_gets_gradients():
    plan = plan_sweep(load_config(SweepConfig, CONFIGS[0].parent / "sweep_peft_combos_demo.yaml"), check_pool=False)
    combos = grid_combinations(plan.params, plan.base_dict)
    assert len(combos) == plan.trials == 30
    for values in combos:
        cfg = apply_values(TARGETS["finetune"].schema(), plan.base_dict, values)
        cfg.model.encoder.source = "tiny-whisper"  # same family as the demo's Whisper-tiny, random and small
        model = EmotionModel(cfg.model)
        model.check_gradients()
        adapter = model.parameter_report()["by_group"].get("adapter", {"trainable": 0})["trainable"]
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        assert (adapter > 0) == (values["model.adapter.kind"] != "frozen" or bool(values["model.adapter.add"]))
        assert any(".ser_gate." in n for n in names) == ("gating" in values["model.adapter.add"])
        blocks = values.get("model.adapter.bottleneck_blocks", [])
        for block in ("attention", "feed_forward"):
            assert any(f".ser_bottleneck_{block}." in n for n in names) == (block in blocks)


@pytest.mark.parametrize("base, want", [("finetune", "dev_ccc"), ("after", "alc_dev_ccc")])
def test_a_model_without_classes_is_ranked_by_ccc(base, want):

    cfg = SweepConfig(base=base, output_dir="/tmp/unused", search={"train.lr_head": {"choice": [1e-3, 1e-2]}},
                      config={"pool_dir": "/p", "model": {"labels": [], "dimensions": ["arousal", "valence"]}})
    assert plan_sweep(cfg, check_pool=False).metric == want
