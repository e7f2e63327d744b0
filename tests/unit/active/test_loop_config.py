"""ActiveConfig / ScorerConfig: values as users type them, and errors that name the key."""

import pytest

from ser_models.active.loop_config import ActiveConfig
from ser_models.config import load_config
from ser_models.exceptions import ConfigError
from ser_models.runs.after import AfterJobConfig
from ser_models.scoring.scorer import ScorerConfig, check_reservation

BASE = ["pool_dir=/p", "output_dir=/o"]


@pytest.mark.parametrize("typed, stored", [("on", "on"), ("off", "off"), ("auto", "auto"), ("'on'", "on"),
                                            ("true", "on"), ("False", "off")])
def test_feature_cache_override_as_typed(typed, stored):
    # A bare on/off is a YAML 1.1 boolean: the override must still mean on/off, not fail or become "True".
    cfg = load_config(AfterJobConfig, None, [*BASE, f"active.feature_cache={typed}"])
    assert cfg.active.feature_cache == stored


def test_feature_cache_bad_value_names_key():
    with pytest.raises(ConfigError, match="active.feature_cache"):
        ActiveConfig(feature_cache="sometimes")


def test_budget_fractions_must_increase():
    with pytest.raises(ConfigError, match="budget_fractions"):
        ActiveConfig(budget_fractions=[0.1, 0.05])
    assert ActiveConfig(budget_fractions=[0.05, 0.1]).targets(200) == [10, 20]


def test_budget_labels_are_clip_counts_that_replace_the_fractions():
    active = ActiveConfig(budget_labels=[50, 100, 200, 400])  # budget_fractions keeps its default
    assert active.targets(2000) == [50, 100, 200, 400] and active.num_rounds == 4
    cfg = load_config(AfterJobConfig, None, [*BASE, "active.budget_labels=[25,50]"])
    assert cfg.active.targets(60) == [25, 50]
    with pytest.raises(ConfigError, match="active.budget_labels asks for 400 .* training pool has 300"):
        active.targets(300)
    for bad in ([100, 50], [0, 10], [10.5, 20], [True, 2]):
        with pytest.raises(ConfigError, match="active.budget_labels must be increasing whole numbers"):
            ActiveConfig(budget_labels=bad)
    with pytest.raises(ConfigError, match="budget_labels and active.budget_hours"):
        ActiveConfig(budget_labels=[10], budget_hours=[0.5])


def test_query_batch_is_a_clip_count_for_the_simulated_oracle_and_clip_budgets():
    assert ActiveConfig(budget_labels=[50, 100], query_batch=10).query_batch == 10
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="active.query_batch must be a whole number of clips"):
            ActiveConfig(query_batch=bad)
    with pytest.raises(ConfigError, match="active.query_batch counts clips: use it with budget_labels"):
        ActiveConfig(budget_hours=[0.5, 1.0], query_batch=10)
    with pytest.raises(ConfigError, match="only the simulated oracle gives: set active.query_batch=0 with "
                                          "active.oracle=file"):
        ActiveConfig(oracle="file", query_batch=10)


def test_num_rounds_follows_whichever_budget_is_set():
    assert ActiveConfig(budget_fractions=[0.1, 0.2]).num_rounds == 2
    assert ActiveConfig(budget_hours=[0.5, 1, 2]).num_rounds == 3
    assert ActiveConfig(budget_fractions=[], initial_size=5, query_size=5, rounds=6).num_rounds == 6


def test_scorer_threads_default_to_num_cpus():
    assert ScorerConfig(num_cpus=2).torch_threads() == 2
    assert ScorerConfig(num_cpus=0.5).torch_threads() == 1
    assert ScorerConfig(num_cpus=1, threads=3).torch_threads() == 3
    with pytest.raises(ConfigError, match="num_cpus"):
        ScorerConfig(num_cpus=0)


def test_reservation_that_starves_the_read_tasks_is_rejected():
    with pytest.raises(ConfigError, match="active.scorer.threads"):
        check_reservation(ScorerConfig(num_cpus=2), cluster_cpus=2)
    with pytest.raises(ConfigError, match="num_actors"):
        check_reservation(ScorerConfig(num_cpus=1, num_actors=2), cluster_cpus=2)
    check_reservation(ScorerConfig(num_cpus=1, threads=2), cluster_cpus=2)  # one CPU left for reads
    check_reservation(ScorerConfig(num_cpus=2, num_gpus=1), cluster_cpus=2)  # GPU actors: not CPU-bound
    check_reservation(ScorerConfig(num_cpus=4), cluster_cpus=0)  # unknown (autoscaling head): no check


def test_fractional_scoring_actors_must_leave_a_whole_cpu_on_some_node():
    # Two 0.5-CPU actors on two 1-CPU nodes: 1 CPU free in all, but half a CPU on each node (a seen hang).
    with pytest.raises(ConfigError, match="fractional actors spread over the 2 nodes with CPUs"):
        check_reservation(ScorerConfig(num_cpus=0.5, num_actors=2), cluster_cpus=2, cpu_nodes=2)
    check_reservation(ScorerConfig(num_cpus=0.5, num_actors=2), cluster_cpus=2, cpu_nodes=1)  # one node: fine
    check_reservation(ScorerConfig(num_cpus=0.5, num_actors=2), cluster_cpus=4, cpu_nodes=2)  # 2-CPU nodes
    check_reservation(ScorerConfig(num_cpus=1, num_actors=2), cluster_cpus=4, cpu_nodes=2)  # the node-loss test
    # Whole CPUs cannot fragment: any CPU left over is a whole CPU on some node.
    check_reservation(ScorerConfig(num_cpus=1, num_actors=1), cluster_cpus=2, cpu_nodes=2)


def test_auto_micro_batch_by_device_and_input():
    from ser_models.scoring.scorer import auto_micro_batch

    assert auto_micro_batch("cpu") == 1  # padded audio batches only cost time on CPU (bench.scoring)
    assert auto_micro_batch("cuda") == 16
    assert auto_micro_batch("cpu", features=True) == auto_micro_batch("cuda", features=True) >= 256
    with pytest.raises(ConfigError, match="micro_batch_size"):
        ScorerConfig(micro_batch_size=-1)


@pytest.mark.parametrize("strategy", [{"name": "bald"}, {"name": "informative_diverse", "uncertainty": "bald"}])
def test_bald_without_mc_samples_is_refused_up_front(strategy):
    from ser_models.active.config import StrategyConfig

    with pytest.raises(ConfigError, match="active.scorer.mc_samples >= 2"):
        ActiveConfig(strategy=StrategyConfig(**strategy), scorer=ScorerConfig(mc_samples=0))
    assert ActiveConfig(strategy=StrategyConfig(**strategy), scorer=ScorerConfig(mc_samples=8)).scorer.mc_samples == 8
    with pytest.raises(ConfigError, match="mc_samples"):  # the same from a job's dotted overrides
        load_config(AfterJobConfig, None, [*BASE, "active.strategy.name=bald"])
