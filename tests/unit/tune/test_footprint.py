"""What one sweep trial holds on the cluster, and how many trials fit at once."""

from __future__ import annotations

import pytest

from ser_models.exceptions import ConfigError
from ser_models.runs.after import AfterJobConfig
from ser_models.runs.finetune import FinetuneJobConfig
from ser_models.tune.sweep import check_gpus, default_concurrency, trial_footprint


def _finetune(**scaling):
    cfg = FinetuneJobConfig(pool_dir="/p", output_dir="/o")
    for key, value in scaling.items():
        setattr(cfg.scaling, key, value)
    return cfg


@pytest.mark.parametrize("scaling, own, cpus, gpus", [
    ({"backend": "in_process", "cpus_per_worker": 2}, {"CPU": 2.0}, 2.0, 0.0),
    ({"backend": "in_process", "use_gpu": True}, {"CPU": 1.0, "GPU": 1.0}, 1.0, 1.0),
    # a Ray Train trial's process only drives the trainer; its workers reserve their own CPUs and GPUs
    ({"backend": "ray_train", "num_workers": 3, "cpus_per_worker": 2, "use_gpu": True}, {"CPU": 0.01}, 6.0, 3.0),
])
def test_fit_trials(scaling, own, cpus, gpus):
    fp = trial_footprint(_finetune(**scaling))
    assert (fp.own, fp.cpus, fp.gpus) == (own, cpus, gpus)


def test_an_al_loop_trial_holds_a_sliver_and_counts_its_scoring_actors():
    cfg = AfterJobConfig(pool_dir="/p", output_dir="/o")
    cfg.scaling.backend = "in_process"
    cfg.active.scorer.num_actors, cfg.active.scorer.num_cpus = 3, 1.0
    fp = trial_footprint(cfg)
    assert fp.own == {"CPU": 0.01} and fp.cpus == 3.0


def _after(num_gpus, **scaling):
    cfg = AfterJobConfig(pool_dir="/p", output_dir="/o")
    for key, value in scaling.items():
        setattr(cfg.scaling, key, value)
    cfg.active.scorer.num_actors, cfg.active.scorer.num_gpus = 2, num_gpus
    return cfg


@pytest.mark.parametrize("scaling, num_gpus, gpus", [
    # an in-process trial keeps its GPU while its scoring actors reserve theirs: they add up
    ({"backend": "in_process", "use_gpu": True}, 0.5, 2.0),
    ({"backend": "in_process", "use_gpu": False}, 0.5, 1.0),
    # Ray Train workers release their GPUs before scoring: the larger share counts
    ({"backend": "ray_train", "num_workers": 3, "use_gpu": True}, 0.5, 3.0),
    ({"backend": "ray_train", "num_workers": 1, "use_gpu": True}, 1.0, 2.0),
])
def test_an_al_loop_trial_counts_its_scoring_actors_gpus(scaling, num_gpus, gpus):
    assert trial_footprint(_after(num_gpus, **scaling)).gpus == gpus


def test_a_trial_needing_more_gpus_than_the_cluster_is_refused_with_the_keys():
    fp = trial_footprint(_after(0.5, backend="in_process", use_gpu=True))
    with pytest.raises(ConfigError, match="active.scorer.num_gpus=0"):
        check_gpus(fp, {"CPU": 16.0, "GPU": 1.0})
    check_gpus(fp, {"CPU": 16.0, "GPU": 2.0})
    assert default_concurrency(fp, {"CPU": 64.0, "GPU": 4.0}) == 2


@pytest.mark.parametrize("scaling, cluster, expected", [
    ({"backend": "in_process"}, {"CPU": 2.0}, 1),          # one CPU kept free for Ray Data reads
    ({"backend": "in_process"}, {"CPU": 17.0}, 16),
    ({"backend": "ray_train", "num_workers": 2, "cpus_per_worker": 4}, {"CPU": 33.0}, 4),
    ({"backend": "ray_train", "num_workers": 2, "use_gpu": True}, {"CPU": 64.0, "GPU": 4.0}, 2),  # GPUs bind
])
def test_default_concurrency(scaling, cluster, expected):
    assert default_concurrency(trial_footprint(_finetune(**scaling)), cluster) == expected


@pytest.mark.parametrize("cluster, expected", [
    ({"CPU": 2.0}, 1),   # each PBT trial holds its own CPU plus a one-CPU bundle for its reads
    ({"CPU": 17.0}, 8),
    ({"CPU": 1.0}, 1),   # never zero: the trial waits for resources instead
])
def test_pbt_concurrency_counts_each_trials_read_bundle(cluster, expected):
    fp = trial_footprint(_finetune(backend="in_process"))
    assert default_concurrency(fp, cluster, pbt=True) == expected


@pytest.mark.parametrize("concurrency, cluster, pbt, warns", [
    (2, {"CPU": 2.0}, False, True),    # every CPU reserved: the trials' reads would wait forever
    (1, {"CPU": 2.0}, False, False),
    (2, {"CPU": 3.0}, False, False),
    (2, {"CPU": 2.0}, True, False),    # PBT trials reserve a bundle for their own reads
    (1, {"CPU": 1.0}, False, True),    # one trial alone takes the only CPU
])
def test_concurrency_that_starves_the_reads_is_warned_about(concurrency, cluster, pbt, warns):
    from ser_models.tune.sweep import starved_reads_warning

    warning = starved_reads_warning(concurrency, trial_footprint(_finetune(backend="in_process")), cluster, pbt)
    assert bool(warning) == warns
    if warns and concurrency == 2:
        assert "max_concurrent_trials=2" in warning and "max_concurrent_trials <= 1" in warning
    elif warns:
        assert "Add CPUs" in warning
