"""What a sweep trial runs: the base job's own code on the trial's config, reporting to Tune.

A target is a base job (``finetune``, ``after``): its config schema, the trial function, the time unit
the scheduler counts in, and the default metric. Trial functions run inside Tune's trial actor:

- ``finetune`` with ``scaling.backend=in_process`` fits in the trial's process and reports each epoch
  (``ray.tune.report``);
- ``finetune`` with ``scaling.backend=ray_train`` is a Ray Train V2 *driver function*: it builds the
  ``TorchTrainer`` (run name = trial id, so a restarted trial resumes its own checkpoints) and forwards the
  rank-0 reports with ``TuneReportCallback``; the trial itself holds almost no resources;
- ``after`` runs the whole active-learning loop and reports once per round.

Under Population Based Training (in-process ``finetune`` only) every epoch's report carries the trial's fit
state as a Tune checkpoint (``fit_state.pt`` + ``origin.json``). When PBT restarts a weak trial from a strong
one's checkpoint with perturbed rates, the trial replaces its folder with that state and goes on from the
donor's epoch under its new config (the fit re-applies the config's learning rates over the restored
optimizer).

Every trial writes under ``<sweep output_dir>/trials/<trial id>``, the same folder when Tune restarts it,
so a killed trial resumes from its last epoch or round instead of starting over.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ser_models.io import TEMP_PREFIX, is_local, local_path, read_bytes, storage_path, write_bytes_atomic
from ser_models.locks import fenced_for
from ser_models.ownership import claim, clear, recognise_run
from ser_models.tune.space import SearchParam, apply_values, trial_values


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial needs besides its sampled config (shipped to trial actors by ``with_parameters``)."""

    base: str
    base_config: dict
    params: tuple[SearchParam, ...]
    output_dir: str
    pbt: bool = False


@dataclass(frozen=True)
class Target:
    """A base job a sweep can run.

    Attributes:
        name: ``finetune``, ``anchor`` or ``after``.
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
            from ser_models.runs.finetune import FinetuneJobConfig

            return FinetuneJobConfig
        if self.name == "anchor":
            from ser_models.runs.anchor import AnchorJobConfig

            return AnchorJobConfig
        from ser_models.runs.after import AfterJobConfig

        return AfterJobConfig

    @property
    def fits(self) -> bool:
        """True for bases whose trial is one fit reporting per epoch (``finetune``, ``anchor``)."""
        return self.name in EPOCH_BASES

    def trial_fn(self):
        return {"finetune": finetune_trial, "anchor": anchor_trial}.get(self.name, after_trial)

    def max_time(self, cfg) -> int:
        """The largest value of ``time_attr`` a trial with job config ``cfg`` can reach."""
        if self.fits:
            return int(cfg.train.optim.epochs)
        return cfg.active.num_rounds


_DIMENSION_METRICS = tuple(f"dev_{m}_{d}" for m in ("ccc", "pearson", "rmse")
                           for d in ("arousal", "valence", "dominance"))
#: Bases whose trial is one fit that reports every epoch.
EPOCH_BASES = ("finetune", "anchor")
_FIT_METRICS = ("dev_ua", "dev_wa", "dev_macro_f1", "dev_nll", "train_loss", "dev_ccc", "dev_ua_plus_ccc",
                *_DIMENSION_METRICS)
TARGETS = {
    "finetune": Target("finetune", "epoch", "dev_ua", _FIT_METRICS),
    # dev = the target language's dev clips by default (jobs.anchor's dev_on)
    "anchor": Target("anchor", "epoch", "dev_ua", (*_FIT_METRICS, "train_coral")),
    # A whole AL loop is ranked by its dev-split learning curve; its test numbers are reported beside the
    # ranking (results.parquet), never used to choose (a setting chosen on test is a test-set fit).
    "after": Target("after", "round", "alc_dev_ua", ("alc_dev_ua", "dev_ua", "dev_wa", "alc_dev_ccc", "dev_ccc")),
}
#: The default metric of a base job whose model has no classes (``model.labels: []``).
DIMENSIONAL_DEFAULT_METRIC = {"finetune": "dev_ccc", "anchor": "dev_ccc", "after": "alc_dev_ccc"}


def trial_config(spec: TrialSpec, config: Mapping[str, Any], trial_id: str):
    """The base job's config for one trial: the sampled values applied, output in the trial's folder."""
    schema = TARGETS[spec.base].schema()
    cfg = apply_values(schema, spec.base_config, trial_values(list(spec.params), spec.base_config, config))
    cfg.output_dir = f"{spec.output_dir}/trials/{trial_id}"
    return cfg


def anchor_trial(config: dict, spec: TrialSpec) -> None:
    """Tune function trainable for ``base: anchor`` (cross-lingual layer anchoring): as ``finetune``."""
    from ser_models.runs.anchor import run_anchor

    finetune_trial(config, spec, run=run_anchor)


def finetune_trial(config: dict, spec: TrialSpec, run=None) -> None:
    """Tune function trainable for ``base: finetune`` (see the module docstring); ``run`` = the base job's
    ``run_*`` function (default ``jobs.finetune.run_finetune``)."""
    from ray import tune

    from ser_models.training.fitting import final_row

    if run is None:
        from ser_models.runs.finetune import run_finetune as run

    trial_id = tune.get_context().get_trial_id()
    cfg = trial_config(spec, config, trial_id)
    _quiet_data()
    report = tune.report
    if spec.pbt:

        _reads_in_trial_bundle()
        # marked while Tune's folder for the trial is new, so an exploit later empties a folder known as ours
        claim(cfg.output_dir, "run", recognise=recognise_trial)
        adopt_checkpoint(tune.get_checkpoint(), cfg.output_dir, trial_id)
        report = _checkpointing_report(cfg.output_dir, trial_id)
    if cfg.scaling.backend == "in_process":
        result = run(cfg, verbose=False, run_name=f"trial_{trial_id}", report=report)
    else:
        from ray.tune.integration.ray_train import TuneReportCallback

        result = run(cfg, verbose=False, run_name=f"trial_{trial_id}", callbacks=[TuneReportCallback()])
    if result.resumed:  # finished before a restart: report its final row again so Tune sees the metric
        tune.report(final_row(result.metrics))


#: Files of a PBT trial checkpoint: the in-process fit state and which trial and epoch it comes from.
ORIGIN_FILE = "origin.json"
#: What a fine-tuning trial's folder holds besides run.json and config.yaml (an earlier version's folder with
#: only these is adopted before PBT replaces its content).
TRIAL_LAYOUT = ("checkpoint", ".checkpoint.incoming", "in_process", "ray_train", "metrics.json", "confusion.png",
                "anchors.json", "cross_lingual.json", "adapter_pretrain", "feature_stats.safetensors",
                "speaker_stats.safetensors", "functionals_stats.safetensors", "functionals_speaker_stats.safetensors")


def recognise_trial(folder: str, names: list[str]) -> list[str] | None:
    """A fine-tuning (or anchoring) trial's folder of an earlier version (:func:`ser_models.ownership.claim`)."""

    return recognise_run(("jobs.finetune", "jobs.anchor"), TRIAL_LAYOUT)(folder, names)


def _state_path(output_dir: str):
    from ser_models.training.loop import STATE_FILE

    return storage_path(output_dir) / "in_process" / STATE_FILE


def _checkpointing_report(output_dir: str, trial_id: str):
    """``report(row)`` that hands Tune the fit state just saved (``on_epoch_end`` saves before reporting).

    Tune copies a checkpoint folder into its storage before ``report`` returns. On a local trial folder the
    state enters that folder as a hard link (no second copy of the state per epoch); on object storage it
    is read once into a temporary folder.
    """

    from ray import tune

    from ser_models.training.loop import STATE_FILE

    state_uri = _state_path(output_dir)
    local = is_local(str(state_uri))
    # next to the state when local, so the hard link stays on one filesystem
    parent = local_path(str(state_uri)).parent if local else None

    def report(row: dict) -> None:
        # the platform's temporary prefix: a kill's leftover here is litter, never a reason to refuse the folder
        with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}pbt-{trial_id}-", dir=parent) as tmp:
            target = Path(tmp) / STATE_FILE
            if not (local and _hard_link(local_path(str(state_uri)), target)):
                target.write_bytes(read_bytes(state_uri))  # object storage, or no hard links here
            (Path(tmp) / ORIGIN_FILE).write_text(json.dumps({"trial_id": trial_id, "epoch": row.get("epoch")}))
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(tmp))  # copied to storage before return

    return report


def _hard_link(src, dst) -> bool:
    """``os.link(src, dst)``; False where the filesystem refuses it."""

    try:
        os.link(src, dst)
    except OSError:
        return False
    return True


def adopt_checkpoint(checkpoint, output_dir: str, trial_id: str) -> str | None:
    """Put a PBT checkpoint's fit state in the trial's folder; returns the trial it came from (None: none).

    Its own checkpoint (a paused trial going on) only resets the state to the reported epoch. Another
    trial's replaces the whole folder, provenance included: the run now continues that trial's fit under
    this trial's new config. The folder is emptied only once it is marked as a run folder of ours
    (:mod:`ser_models.ownership`: a new one is marked; one an earlier version wrote is adopted when it holds
    a fine-tuning run's layout alone); anything else is refused with ``ForeignFolderError``.
    """
    if checkpoint is None:
        return None

    from ser_models.training.loop import STATE_FILE

    with checkpoint.as_directory() as d:
        origin = json.loads((Path(d) / ORIGIN_FILE).read_text())
        state = (Path(d) / STATE_FILE).read_bytes()
    if origin["trial_id"] != trial_id:
        claim(output_dir, "run", recognise=recognise_trial)
        clear(output_dir, "run")
        print(f"trial {trial_id}: continues trial {origin['trial_id']}'s fit after epoch {origin['epoch']}")
    with fenced_for(_state_path(output_dir)):  # a no-op unless this process holds the trial folder's lock
        write_bytes_atomic(_state_path(output_dir), state)
    return origin["trial_id"]


def _reads_in_trial_bundle() -> None:
    """Schedule this process's Ray Data tasks in the trial's placement group (its spare one-CPU bundle), with
    Ray Data's CPU budget cut to that bundle's CPUs."""
    import ray
    from ray.data import DataContext
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = ray.util.get_current_placement_group()
    if pg is None:
        return
    ctx = DataContext.get_current()
    ctx.scheduling_strategy = ctx.scheduling_strategy_large_args = PlacementGroupSchedulingStrategy(pg)
    # Ray Data budgets the whole cluster's CPUs. With that budget it submitted a second operator's task that
    # waited for the one spare CPU, held by a read paused on output backpressure, which Ray Data released only
    # by its 10 s idle check: a 4-block read took 30 s at every trial start. Within the true budget, Ray Data
    # sees that the downstream task cannot start and lets the read finish.
    spare = sum(bundle.get("CPU", 0.0) for bundle in pg.bundle_specs[1:])  # bundle 0 holds the trial itself
    limits = ctx.execution_options.resource_limits
    ctx.execution_options.resource_limits = limits.copy(cpu=min(limits.cpu, spare))  # unset = inf


def after_trial(config: dict, spec: TrialSpec) -> None:
    """Tune function trainable for ``base: after``: the whole loop, one report per round.

    Each row holds the round's dev/test UA and WA and the area under the learning curve so far
    (``alc_test_ua``: the mean test UA over the rounds run, i.e. the trapezoid-free normalised area of
    UA against round), so ASHA can stop a loop whose curve stays low.
    """
    from ray import tune

    from ser_models.runs.after import run_after

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
            row.update({f"{split}_{k}": v for k, v in d.items() if k not in ("confusion", "n")})
        for key in ("ua", "ccc"):  # classes and/or dimensions: an area under each learning curve
            values = [getattr(r, split)[key] for r in reports if getattr(r, split) and key in getattr(r, split)]
            if values:
                row[f"alc_{split}_{key}"] = sum(values) / len(values)
    return row
