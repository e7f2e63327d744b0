"""The sweep's search block: parsing, checks against the base config, grid expansion and conditions."""

from __future__ import annotations

import pytest

from ser_models.config import from_dict, to_dict
from ser_models.exceptions import ConfigError
from ser_models.runs.finetune import FinetuneJobConfig
from ser_models.tune.report import pareto_front
from ser_models.tune.space import (
    GRID_KEY,
    apply_values,
    check_against,
    grid_combinations,
    grid_size,
    param_space,
    parse_search,
    trial_values,
)


@pytest.fixture
def base() -> dict:
    return to_dict(from_dict(FinetuneJobConfig, {"pool_dir": "p", "output_dir": "o"}))


def test_every_distribution_parses_and_samples_in_range(base):
    from ray.tune.search.variant_generator import generate_variants

    params = parse_search({
        "model.adapter.kind": {"choice": ["lora", "ia3"]},
        "train.lr_head": {"loguniform": [1e-4, 1e-2]},
        "model.head_dropout": {"uniform": [0.0, 0.3]},
        "train.optim.epochs": {"randint": [2, 5]},
        "model.head_hidden": {"qrandint": [16, 64, 16]},
        "train.optim.batch_size": {"grid": [4, 8]},
    })
    check_against(params, FinetuneJobConfig, base)
    space = param_space(params, base, "random")
    assert len(space[GRID_KEY]["grid_search"]) == 2
    for _, variant in generate_variants(space):
        values = trial_values(params, base, variant)
        assert values["model.adapter.kind"] in ("lora", "ia3")
        assert 1e-4 <= values["train.lr_head"] <= 1e-2 and 0 <= values["model.head_dropout"] <= 0.3
        assert 2 <= values["train.optim.epochs"] < 5 and values["model.head_hidden"] % 16 == 0
        assert values["train.optim.batch_size"] in (4, 8)
        cfg = apply_values(FinetuneJobConfig, base, values)
        assert cfg.train.optim.batch_size == values["train.optim.batch_size"]


@pytest.mark.parametrize("search, match", [
    ({}, "search is empty"),
    ({"train.lr_head": {"normal": [0, 1]}}, "exactly one of"),
    ({"train.lr_head": {"loguniform": [0.0, 1.0]}}, "low > 0"),
    ({"train.lr_head": {"uniform": [1.0, 0.5]}}, "low must be below high"),
    ({"train.optim.epochs": {"randint": [1.5, 3]}}, "integers"),
    ({"train.optim.epochs": {"qrandint": [1, 10, 4]}}, "divide"),
    ({"train.lr_head": {"choice": []}}, "non-empty list"),
    ({"train.lr_head": 0.1}, "must be a mapping"),
])
def test_malformed_search_is_refused_with_the_key_named(search, match):
    with pytest.raises(ConfigError, match=match):
        parse_search(search)


def test_keys_and_values_are_checked_against_the_base_config(base):
    with pytest.raises(ConfigError, match=r"search.model.adapter.rank: 'model.adapter.rank' is not a key"):
        check_against(parse_search({"model.adapter.rank": {"choice": [4]}}), FinetuneJobConfig, base)
    with pytest.raises(ConfigError, match="is a config section"):
        check_against(parse_search({"model.adapter": {"choice": [4]}}), FinetuneJobConfig, base)
    with pytest.raises(ConfigError, match=r"search.model.adapter.kind: value 'prefix' is invalid"):
        check_against(parse_search({"model.adapter.kind": {"choice": ["lora", "prefix"]}}), FinetuneJobConfig, base)
    with pytest.raises(ConfigError, match=r"search.train.optim.epochs: value 0 is invalid"):
        check_against(parse_search({"train.optim.epochs": {"randint": [0, 3]}}), FinetuneJobConfig, base)
    with pytest.raises(ConfigError, match="not a key"):  # a condition naming a missing key
        check_against(parse_search({"model.adapter.r": {"choice": [4], "when": {"model.kind": "lora"}}}),
                      FinetuneJobConfig, base)


def test_conditional_keys_drop_out_and_grid_skips_duplicate_trials(base):
    params = parse_search({
        "model.adapter.kind": {"grid": ["lora", "ia3", "frozen"]},
        "model.adapter.r": {"grid": [4, 8], "when": {"model.adapter.kind": "lora"}},
    })
    combos = grid_combinations(params, base)
    # lora x {4, 8}, then ia3 and frozen once each: r only varies where it applies
    assert combos == [{"model.adapter.kind": "lora", "model.adapter.r": 4},
                      {"model.adapter.kind": "lora", "model.adapter.r": 8},
                      {"model.adapter.kind": "ia3"}, {"model.adapter.kind": "frozen"}]
    assert grid_size(params, base, "grid") == 4
    sampled = parse_search({"model.adapter.kind": {"choice": ["lora", "ia3"]},
                            "model.adapter.r": {"choice": [4, 8], "when": {"model.adapter.kind": ["lora"]}}})
    assert trial_values(sampled, base, {"model.adapter.kind": "ia3", "model.adapter.r": 8}) == {
        "model.adapter.kind": "ia3"}
    assert trial_values(sampled, base, {"model.adapter.kind": "lora", "model.adapter.r": 8}) == {
        "model.adapter.kind": "lora", "model.adapter.r": 8}


def test_search_alg_constraints(base):
    with pytest.raises(ConfigError, match="optuna samples every key"):
        param_space(parse_search({"train.optim.epochs": {"grid": [1, 2]}}), base, "optuna")
    with pytest.raises(ConfigError, match="search_alg=grid needs choice or grid keys only"):
        param_space(parse_search({"train.lr_head": {"uniform": [0.1, 0.2]}}), base, "grid")
    space = param_space(parse_search({"train.optim.epochs": {"choice": [1, 2, 3]}}), base, "grid")
    assert len(space[GRID_KEY]["grid_search"]) == 3


def test_pareto_front_keeps_only_undominated_trials():
    import numpy as np

    params = np.array([100, 10, 1000, 10, 50])
    metric = np.array([0.6, 0.5, 0.7, 0.4, 0.55])
    assert pareto_front(params, metric).tolist() == [1, 4, 0, 2]
    assert pareto_front(params, -metric, mode="min").tolist() == [1, 4, 0, 2]
