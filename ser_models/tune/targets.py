"""What a sweep trial runs: the base job's own code on the trial's config, reporting to Tune.

A target is a base job (``finetune``, ``after``): its config schema, the trial function, the time unit
the scheduler counts in, and the default metric. Trial functions run inside Tune's trial actor:

- ``finetune`` with ``scaling.backend=in_process`` fits in the trial's process and reports each epoch
  (``ray.tune.report``);
- ``finetune`` with ``scaling.backend=ray_train`` is a Ray Train V2 *driver function*: it builds the
  ``TorchTrainer`` (run name = trial id, so a restarted trial resumes its own checkpoints) and forwards the
  rank-0 reports with ``TuneReportCallback``; the trial itself holds almost no resources;
- ``after`` runs the whole active-learning loop and reports once per round.

Every trial writes under ``<sweep output_dir>/trials/<trial id>``, the same folder when Tune restarts it,
so a killed trial resumes from its last epoch or round instead of starting over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ser_models.tune.space import SearchParam, apply_values, trial_values


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial needs besides its sampled config (shipped to trial actors by ``with_parameters``)."""

    base: str
    base_config: dict
    params: tuple[SearchParam, ...]
    output_dir: str


@dataclass(frozen=True)
class Target:
    """A base job a sweep can run.

    Attributes:
        name: ``finetune`` or ``after``.
        time_attr: the reported counter the scheduler's rungs are measured in.
        default_metric: the metric when the sweep names none.
        metrics: metrics this target reports (a sweep's ``metric`` must be one of them).
    """

    name: str
    time_attr: str
    default_metric: str
    metrics: tuple[str, ...]

    def schema(self) -> type:
        if self.name == "finetune":
            from jobs.finetune import FinetuneJobConfig

            return FinetuneJobConfig
        from jobs.after import AfterJobConfig

        return AfterJobConfig

    def trial_fn(self):
        return finetune_trial if self.name == "finetune" else after_trial

    def max_time(self, cfg) -> int:
        """The largest value of ``time_attr`` a trial with job config ``cfg`` can reach."""
        if self.name == "finetune":
            return int(cfg.train.epochs)
        return len(cfg.active.budget_fractions)


TARGETS = {
    "finetune": Target("finetune", "epoch", "dev_ua",
                       ("dev_ua", "dev_wa", "dev_macro_f1", "train_loss")),
    "after": Target("after", "round", "alc_test_ua",
                    ("alc_test_ua", "alc_dev_ua", "test_ua", "dev_ua", "test_wa", "dev_wa")),
}


def trial_config(spec: TrialSpec, config: Mapping[str, Any], trial_id: str):
    """The base job's config for one trial: the sampled values applied, output in the trial's folder."""
    schema = TARGETS[spec.base].schema()
    cfg = apply_values(schema, spec.base_config, trial_values(list(spec.params), spec.base_config, config))
    cfg.output_dir = f"{spec.output_dir}/trials/{trial_id}"
    return cfg


def finetune_trial(config: dict, spec: TrialSpec) -> None:
    """Tune function trainable for ``base: finetune`` (see the module docstring)."""
    from ray import tune

    from jobs.finetune import run_finetune
    from ser_models.training.fitting import final_row

    trial_id = tune.get_context().get_trial_id()
    cfg = trial_config(spec, config, trial_id)
    _quiet_data()
    if cfg.scaling.backend == "in_process":
        result = run_finetune(cfg, verbose=False, run_name=f"trial_{trial_id}", report=tune.report)
    else:
        from ray.tune.integration.ray_train import TuneReportCallback

        result = run_finetune(cfg, verbose=False, run_name=f"trial_{trial_id}", callbacks=[TuneReportCallback()])
    if result.resumed:  # finished before a restart: report its final row again so Tune sees the metric
        tune.report(final_row(result.metrics))


def after_trial(config: dict, spec: TrialSpec) -> None:
    """Tune function trainable for ``base: after``: the whole loop, one report per round.

    Each row holds the round's dev/test UA and WA and the area under the learning curve so far
    (``alc_test_ua``: the mean test UA over the rounds run, i.e. the trapezoid-free normalised area of
    UA against round), so ASHA can stop a loop whose curve stays low.
    """
    from ray import tune

    from jobs.after import run_after

    trial_id = tune.get_context().get_trial_id()
    cfg = trial_config(spec, config, trial_id)
    _quiet_data()
    reported: set[int] = set()

    def on_round(report, reports) -> None:
        if report.round in reported:
            return
        reported.add(report.round)
        tune.report(round_row(reports))

    run_after(cfg, verbose=False, on_round=on_round)


def _quiet_data() -> None:
    """No Ray Data progress bars from trials: concurrent trials' bars would bury Tune's status table."""
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False


def round_row(reports) -> dict:
    """The metrics row after the last of ``reports`` (``RoundReport`` s of rounds 0..r)."""
    last = reports[-1]
    row: dict = {"round": last.round + 1, "labelled": last.labelled, "fraction": last.fraction}
    for split in ("dev", "test"):
        d = getattr(last, split)
        if d:
            row.update({f"{split}_ua": d["ua"], f"{split}_wa": d["wa"], f"{split}_macro_f1": d["macro_f1"]})
        uas = [getattr(r, split)["ua"] for r in reports if getattr(r, split)]
        if uas:
            row[f"alc_{split}_ua"] = sum(uas) / len(uas)
    return row
