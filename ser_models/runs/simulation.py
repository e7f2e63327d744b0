"""One simulated active-learning run: the AFTER loop over a prepared pool with the simulated oracle, from the
frozen-encoder feature cache, in this process. ``jobs.evidence`` (serially or one Ray task per run) and the
label-efficiency benchmark both call :func:`run_simulation`, so their numbers come from one code path.

A run whose feature cache is ready builds its models' frozen encoder once per process
(:func:`~ser_models.models.encoder_reuse.reusing_frozen_encoders`: the same models and numbers, without reloading the
encoder's weights for every fit and scoring pass), takes a cross-validated C that another run of its job
already chose on the same labelled clips (``cv_choices``), and draws no plots unless asked.

A finished run leaves ``simulation.json`` in its folder (written last, atomically): the round reports and the
run's seconds. :func:`finished_simulation` reads it back, so a rerun of a many-run job skips finished runs
without opening the pool or the cache; an unfinished run resumes round by round like ``jobs.after``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from ser_models.active.round_report import RoundReport
from ser_models.exceptions import ConfigError
from ser_models.io import exists, read_json, storage_path, write_json_atomic

#: The file that marks a finished simulation (its round reports and wall seconds).
SIMULATION_FILE = "simulation.json"


@dataclass
class SimulationResult:
    """What one run gives: its round reports (one per round trained) and its wall seconds."""

    reports: list[RoundReport]
    seconds: float

    def to_json(self) -> dict:
        return {"reports": [r.to_json() for r in self.reports], "seconds": self.seconds}

    @classmethod
    def from_json(cls, d: dict) -> SimulationResult:
        return cls([RoundReport.from_json(r) for r in d["reports"]], float(d["seconds"]))


def with_threads(scaling, active, threads: int | None):
    """``(scaling, active)`` with every torch and FAISS thread count of a run set to ``threads`` (training,
    scoring, selection); unchanged when ``threads`` is None.

    Float sums may round differently with another thread count, so runs that must give the same numbers (a
    serial and a fanned-out ``jobs.evidence``) run with the same count.
    """
    if threads is None:
        return scaling, active
    if threads < 1:

        raise ConfigError(f"a simulation's thread count must be >= 1, got {threads}")
    scaling = dataclasses.replace(scaling, cpus_per_worker=threads)
    active = dataclasses.replace(active, scorer=dataclasses.replace(active.scorer, threads=threads),
                                 strategy=dataclasses.replace(active.strategy, num_threads=threads))
    return scaling, active


def finished_simulation(output_dir: str | Path) -> SimulationResult | None:
    """The result a finished run left in ``output_dir`` (:data:`SIMULATION_FILE`); None when it has none."""
    path = storage_path(output_dir) / SIMULATION_FILE
    return SimulationResult.from_json(read_json(path)) if exists(path) else None


def run_simulation(pool, output_dir: str | Path, model_cfg, train_cfg, scaling, active, *,
                   threads: int | None = None, pool_checked: bool = False, plots: bool = False,
                   verbose: bool = False, cv_choices: str | Path | None = None) -> SimulationResult:
    """Run (or resume) one simulated AFTER run in this process and mark it finished.

    Args:
        pool: an opened ``ser_models.data.Pool``.
        output_dir: the run folder (local path or ``pyarrow.fs`` URI); a finished run (:data:`SIMULATION_FILE`)
            is returned as stored, an unfinished one resumes round by round.
        model_cfg / train_cfg / scaling / active: the run's settings (``scaling.backend=in_process`` and
            ``active.feature_cache`` pointing at a built cache for a run that reads features, not audio).
        threads: torch and FAISS threads of the run (:func:`with_threads`), also set for this process;
            None = the settings' own.
        pool_checked: the caller already checked the pool's dev/test targets for ``model_cfg``.
        plots: draw the loop's confusion matrices and learning curve.
        verbose: the loop's own progress lines.
        cv_choices: a folder the runs of one job share their cross-validated ``train.l2_c`` choices in
            (:func:`~ser_models.training.lbfgs.sharing_cv_choices`); None = this process's memory only.

    Returns:
        The :class:`SimulationResult`; ``reports`` hold the rounds in order (a stopped run has fewer).
    """
    from ser_models.active.loop import ActiveLearningLoop
    from ser_models.models.encoder_reuse import reusing_frozen_encoders
    from ser_models.training.lbfgs import sharing_cv_choices

    done = finished_simulation(output_dir)
    if done is not None:
        return done
    import torch

    scaling, active = with_threads(scaling, active, threads)
    before = torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        with reusing_frozen_encoders():  # the loop's encoder only names its cache and gives its shape
            loop = ActiveLearningLoop(pool, output_dir, model_cfg, train_cfg, scaling, active, verbose=verbose,
                                      pool_checked=pool_checked, plots=plots, follow_pool=False)
        # From a ready cache every model of the run reads cached features: none runs (or cuts) its encoder.
        reads_cache = loop.cache is not None and loop.cache.ready
        with (reusing_frozen_encoders() if reads_cache else contextlib.nullcontext(),
              sharing_cv_choices(cv_choices) if cv_choices is not None else contextlib.nullcontext()):
            reports = loop.run()
        result = SimulationResult(reports, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)  # the caller's process keeps its own setting (a serial job's driver)
    write_json_atomic(storage_path(output_dir) / SIMULATION_FILE, result.to_json())  # last: the run is finished
    return result
