"""ASHA replay: Ray's stopping rule over recorded full-length curves, checked against Ray's own scheduler."""

import pytest

from ser_models.tune.replay import TrialCurve, curves_from_grid, full_search_best, replay_asha


def curve(tid, values, seconds_per_epoch=10.0, tail=5.0, rank=None):
    n = len(values)
    return TrialCurve(trial_id=tid, epochs=tuple(range(1, n + 1)),
                      seconds=tuple(seconds_per_epoch * (e + 1) for e in range(n)),
                      stop_value=tuple(values), rank_value=tuple(rank or values),
                      total_seconds=seconds_per_epoch * n + tail)


def test_the_first_trial_at_a_rung_goes_on_and_a_later_one_must_beat_the_cutoff():
    curves = [curve("a", [0.2, 0.3, 0.4, 0.5]), curve("b", [0.1, 0.9, 0.9, 0.9]), curve("c", [0.3, 0.3, 0.3, 0.3])]
    out = replay_asha(curves, ["a", "b", "c"], rungs=[1], reduction_factor=2)
    # a: alone at the rung; b: 0.1 < a's 0.2 -> stopped, though it would have won; c: 0.3 >= median(0.2, 0.1)
    assert out.epochs_run == {"a": 4, "b": 1, "c": 4}
    assert out.stopped == ("b",)
    assert out.best_value == 0.5 and out.best_trials == ("a",)
    assert out.reserved_seconds == pytest.approx(45 + 10 + 45)
    assert full_search_best(curves) == (0.9, ("b",))
    # started in another order, the slow starter is the first at the rung and keeps the full search's best
    assert replay_asha(curves, ["b", "a", "c"], rungs=[1], reduction_factor=2).best_trials == ("b",)


def test_min_mode_negates_and_the_ranking_metric_is_separate():
    nll = [curve("a", [1.0, 0.9], rank=[0.5, 0.6]), curve("b", [1.2, 0.5], rank=[0.4, 0.9])]
    out = replay_asha(nll, ["a", "b"], rungs=[1], reduction_factor=2, stop_mode="min")
    assert out.stopped == ("b",)  # NLL 1.2 is worse than a's 1.0
    assert out.best_value == 0.6 and out.best_trials == ("a",)
    assert replay_asha(nll, ["a", "b"], rungs=[1], reduction_factor=2, stop_mode="max").stopped == ()


def test_concurrent_trials_meet_the_rung_in_report_time_order_and_slots_are_reused():
    fast = curve("fast", [0.1, 0.1, 0.1], seconds_per_epoch=1.0, tail=0.0)
    slow = curve("slow", [0.5, 0.5, 0.5], seconds_per_epoch=10.0, tail=0.0)
    late = curve("late", [0.3, 0.3, 0.3], seconds_per_epoch=1.0, tail=0.0)
    out = replay_asha([fast, slow, late], ["slow", "fast", "late"], rungs=[1], reduction_factor=2, concurrent=2)
    # "fast" reports epoch 1 at t=1, before "slow" (t=10): it is the first at the rung and goes on; "late" starts
    # when "fast" ends (t=3) and reports at t=4, still before "slow": 0.3 >= 0.1, on. "slow" then beats both.
    assert out.stopped == () and out.wall_seconds == pytest.approx(30.0)
    one = replay_asha([fast, slow, late], ["slow", "fast", "late"], rungs=[1], reduction_factor=2, concurrent=1)
    assert one.stopped == ("fast",) and one.reserved_seconds == pytest.approx(30 + 1 + 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"order": ["a"]}, "each of the 2 trial ids once"),
    ({"reduction_factor": 1.0}, "reduction_factor must be > 1"),
    ({"concurrent": 0}, "concurrent >= 1"),
    ({"stop_mode": "up"}, "mode must be 'max' or 'min'"),
])
def test_bad_replay_settings_are_named(kwargs, match):
    args = {"curves": [curve("a", [0.1]), curve("b", [0.2])], "order": ["a", "b"], "rungs": [1],
            "reduction_factor": 2.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        replay_asha(**args)


def test_a_curve_with_mismatched_lengths_is_named():
    with pytest.raises(ValueError, match="trial x: epochs, seconds"):
        TrialCurve("x", (1, 2), (1.0,), (0.1, 0.2), (0.1, 0.2), 3.0)


# Curves built so that Ray's ASHA stops trials at different rungs (rf 2, rungs 1, 2, 4 of 6 epochs).
SYNTHETIC = [
    [0.30, 0.35, 0.40, 0.45, 0.50, 0.55],
    [0.20, 0.50, 0.60, 0.70, 0.80, 0.90],  # slow starter
    [0.40, 0.30, 0.30, 0.30, 0.30, 0.30],
    [0.35, 0.40, 0.45, 0.60, 0.62, 0.64],
    [0.10, 0.10, 0.10, 0.10, 0.10, 0.10],
    [0.50, 0.55, 0.50, 0.40, 0.40, 0.40],
    [0.33, 0.36, 0.50, 0.52, 0.54, 0.56],
    [0.45, 0.46, 0.47, 0.48, 0.49, 0.50],
]


def _report_curve(config):
    from ray import tune

    for epoch, value in enumerate(SYNTHETIC[config["i"]], start=1):
        tune.report({"epoch": epoch, "dev_ua": value})


def _run(ray, scheduler, tmp_path, name):
    from ray import tune

    tuner = tune.Tuner(
        _report_curve, param_space={"i": tune.grid_search(list(range(len(SYNTHETIC))))},
        # one trial at a time, each in the process the last one used (a fresh actor per trial: ~4 s each on 2 cores)
        tune_config=tune.TuneConfig(metric="dev_ua", mode="max", scheduler=scheduler, max_concurrent_trials=1,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0))
    return tuner.fit()


def test_replay_matches_rays_asha_on_real_tune_runs(ray_local, tmp_path):
    """A full (FIFO) search's curves, replayed in the order Tune ran them, stop exactly the trials that Ray's
    ASHA stops when it runs the same trials for real."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from ser_models.tune.sweep import asha_rungs

    full = _run(ray_local, FIFOScheduler(), tmp_path, "full")
    curves = curves_from_grid(full, "dev_ua", "dev_ua")
    assert [c.rank_value for c in curves] == [tuple(v) for v in SYNTHETIC]
    asha = ASHAScheduler(time_attr="epoch", max_t=7, grace_period=1, reduction_factor=2)
    real = _run(ray_local, asha, tmp_path, "asha")
    real_epochs = [int(r.metrics_dataframe["epoch"].max()) for r in sorted(real, key=lambda r: r.config["i"])]
    assert real_epochs != [6] * len(SYNTHETIC)  # the test means something: ASHA stopped some trials
    out = replay_asha(curves, [c.trial_id for c in curves], asha_rungs(asha), 2.0)
    assert [out.epochs_run[c.trial_id] for c in curves] == real_epochs
