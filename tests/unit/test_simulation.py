"""The evidence fan-out's placement (slots per node) and settings, and the simulation runner's thread settings and
finished-run marker; no Ray."""

from __future__ import annotations

import pytest

from ser_models.exceptions import ConfigError


def test_slots_fill_every_node_by_its_cpus_and_interleave_nodes():
    from ser_models.runs.evidence_runs import run_slots

    assert run_slots({"a": 2.0}, 1) == ["a", "a"]
    assert run_slots({"a": 4.0, "b": 2.0, "head": 0.0}, 1) == ["a", "b", "a", "b", "a", "a"]
    assert run_slots({"a": 4.0, "b": 3.0}, 2) == ["a", "b", "a"]
    assert run_slots({"a": 4.0, "b": 2.0}, 1, concurrency=3) == ["a", "b", "a"]
    assert run_slots({"a": 2.0}, 1, concurrency=3) == ["a", "a", "a"]  # asked for: honoured
    assert run_slots({"a": 1.0}, 2, concurrency=1) == ["a"]
    with pytest.raises(ConfigError, match="evidence.cpus_per_run=4"):
        run_slots({"a": 2.0, "head": 0.0}, 4)


@pytest.mark.parametrize("override, match", [
    ("evidence.cpus_per_run=0", "evidence.cpus_per_run must be >= 1"),
    ("evidence.concurrency=-1", "evidence.concurrency >= 0"),
])
def test_evidence_refuses_bad_fan_out_settings(override, match):
    from ser_models.config import load_config
    from ser_models.runs.evidence import EvidenceJobConfig

    with pytest.raises(ConfigError, match=match):
        load_config(EvidenceJobConfig, None, ["pool_dir=p", "output_dir=o", override])


def test_threads_reach_training_scoring_and_selection():
    from ser_models.active.loop_config import ActiveConfig
    from ser_models.runs.simulation import with_threads
    from ser_models.training.config import ScalingConfig

    scaling, active = with_threads(ScalingConfig(cpus_per_worker=2), ActiveConfig(), 1)
    assert (scaling.cpus_per_worker, active.scorer.threads, active.strategy.num_threads) == (1, 1, 1)
    assert with_threads(scaling, active, None) == (scaling, active)
    with pytest.raises(ConfigError, match="thread count must be >= 1"):
        with_threads(scaling, active, 0)


def test_a_finished_simulation_is_read_back_as_it_was_written(tmp_path):
    from ser_models.active.round_report import RoundReport
    from ser_models.io import write_json_atomic
    from ser_models.runs.simulation import SIMULATION_FILE, SimulationResult, finished_simulation

    assert finished_simulation(tmp_path) is None
    result = SimulationResult([RoundReport(round=0, labelled=8, fraction=1 / 3, dev={"ua": 0.1 + 0.2},
                                           test={"ua": 2 / 7}, selected=4, seconds={"train": 0.5})], 1.25)
    write_json_atomic(tmp_path / SIMULATION_FILE, result.to_json())
    assert finished_simulation(tmp_path) == result  # floats exact through JSON: rows identical on a rerun


def test_the_fan_out_starts_a_block_of_seeds_first_runs_before_their_other_strategies():
    from ser_models.runs.evidence_runs import seeds_apart

    plan = [(name, seed) for seed in range(5) for name in ("random", "margin", "auto")] + [("all-labels", 0)]
    order = [plan[i] for i in seeds_apart(plan, list(range(len(plan))), slots=2)]
    assert order[:7] == [("random", 0), ("random", 1), ("margin", 0), ("margin", 1), ("auto", 0), ("auto", 1),
                         ("all-labels", 0)]
    assert order[7:10] == [("random", 2), ("random", 3), ("margin", 2)] and order[-3:] == [
        ("random", 4), ("margin", 4), ("auto", 4)]
    # a resumed job starts only what is left, in the same pattern
    left = [i for i, (name, seed) in enumerate(plan) if seed >= 3]
    assert [plan[i] for i in seeds_apart(plan, left, slots=2)][:2] == [("random", 3), ("random", 4)]
    assert sorted(seeds_apart(plan, left, slots=1)) == left
