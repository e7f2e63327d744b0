"""Every sweep YAML under jobs/configs plans as shipped (keys, values, conditions, scheduler), and the PEFT
combination sweep's every grid point builds a model that passes the gradient check."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ser_models.config import load_config
from ser_models.exceptions import ConfigError
from ser_models.models.model import EmotionModel
from ser_models.tune.config import PBT_MUTABLE, SweepConfig
from ser_models.tune.space import apply_values, grid_combinations
from ser_models.tune.sweep import plan_sweep
from ser_models.tune.targets import TARGETS

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "jobs" / "configs").glob("sweep_*.yaml"))


@functools.cache
def _plan(path: Path):
    """The shipped sweep's plan, made once per file for this module's tests (a plan takes seconds: it resolves
    the base job's whole config); the tests only read it."""
    return plan_sweep(load_config(SweepConfig, path), check_pool=False)


#: The metric a sweep without ``metric:`` ranks by, per base job (models with classes; every shipped one has).
DEFAULT_METRIC = {"finetune": "dev_ua", "anchor": "dev_ua", "after": "alc_dev_ua"}


def _dotted(tree: dict, key: str):
    """``tree``'s value at dotted ``key``."""
    for part in key.split("."):
        tree = tree[part]
    return tree


def _allowed(value) -> list:
    """A ``when`` entry as the list of values it allows (a lone value allows itself)."""
    return list(value) if isinstance(value, list) else [value]


def _expected_trials(raw: dict) -> int:
    """Trials the YAML asks for, counted from the YAML alone.

    ``num_samples`` times the grid's combinations: the keys that are enumerated (``grid`` keys, and ``choice``
    keys too under ``search_alg: grid``) crossed, where a conditional key multiplies only the combinations in
    which its ``when`` holds (else it keeps the base value: one combination, not one per value).
    """
    enumerated = {k: v for k, v in raw["search"].items()
                  if "grid" in v or (raw.get("search_alg") == "grid" and "choice" in v)}
    free = {k: v.get("grid", v.get("choice")) for k, v in enumerated.items() if "when" not in v}
    combos = 0
    for values in itertools.product(*free.values()):
        picked = dict(zip(free, values))
        n = 1
        for spec in (v for v in enumerated.values() if "when" in v):
            # a condition names a swept key or a base value (shipped sweeps name swept ones)
            holds = all((picked[k] if k in picked else _dotted(raw["config"], k)) in _allowed(allowed)
                        for k, allowed in spec["when"].items())
            n *= len(spec.get("grid", spec.get("choice"))) if holds else 1
        combos += n
    return raw.get("num_samples", 8) * max(combos, 1)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_sweep_plans_what_its_yaml_declares(path):
    # The YAML read on its own (OmegaConf, as the jobs read YAML; no planner), then compared with the plan.
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert "extends" not in raw, "the expectations below read this one file only"
    plan = _plan(path)

    assert plan.trials == _expected_trials(raw)
    assert [p.key for p in plan.params] == list(raw["search"])
    for p in plan.params:
        spec = dict(raw["search"][p.key])
        when = spec.pop("when", {})
        (kind, values), = spec.items()
        assert (p.kind, list(p.values)) == (kind, values), p.key
        assert {k: list(v) for k, v in p.when} == {k: _allowed(v) for k, v in when.items()}, p.key

    base = raw["base"]
    assert plan.metric == raw.get("metric", DEFAULT_METRIC[base])
    assert plan.cfg.mode == raw.get("mode", "max")
    assert plan.cfg.search_alg == raw.get("search_alg", "random")
    for key, value in raw["scheduler"].items():
        assert getattr(plan.cfg.scheduler, key) == value, f"scheduler.{key}"
    # ASHA's max_t: the base job's epochs, or the AL loop's rounds (one per budget step); nothing sweeps them
    assert not {"train.optim.epochs", "active.budget_fractions"} & set(raw["search"])
    if base == "after":
        assert (plan.time_attr, plan.max_t) == ("round", len(raw["config"]["active"]["budget_fractions"]))
    else:
        assert (plan.time_attr, plan.max_t) == ("epoch", raw["config"]["train"]["optim"]["epochs"])
    # PBT perturbs the swept keys a fit re-reads mid-run (here: its learning rates), nothing else
    want_mutated = [k for k in raw["search"] if k in PBT_MUTABLE] if raw["scheduler"]["name"] == "pbt" else []
    assert [p.key for p in plan.mutate] == want_mutated


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_no_shipped_sweep_ranks_or_stops_on_the_test_split(path):
    plan = _plan(path)
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
    plan = _plan(CONFIGS[0].parent / "sweep_peft_combos_demo.yaml")
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
