"""Whether a ``jobs.after`` run starts Ray (``runtime.ray``): a labelling rerun on a small pool need not.

A team labelling through request files reruns the job after each batch of rows. On a pool whose features are
cached, such a rerun imports the labels, fits a head on cached features and scores the pool from the same
cache: seconds of work in the driver, which Ray's start-up and imports used to multiply. ``runtime.ray=auto``
runs it in this process (:mod:`~ser_models.active.local_rounds`), with the same picks and files as on Ray;
work only Ray does (encoding clips the cache lacks, TAPT, Ray Train workers), a large pool or a cluster
(``RAY_ADDRESS``) keep Ray.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from ser_models.active.local_rounds import open_run_cache, rounds_need_ray
from ser_models.config import SPEED, field
from ser_models.exceptions import ConfigError
from ser_models.io import storage_path

#: ``runtime.ray=auto`` keeps Ray for pools with more training clips than this. Without Ray, one process reads
#: the cache file by file and scores every training clip each round; with Ray the same scoring also runs in the
#: driver (the recipe's in-process scorer) and Ray Data only reads, in parallel. The demo's 2,016 clips score in
#: under a second either way (bench/results/label_rerun.md), so at 20,000 clips a round's reads and scoring
#: stay within seconds, below Ray's start-up, while the rows a round holds stay a few hundred MB; beyond it,
#: and on a cluster, Ray Data's parallel reads pay for its start-up.
LOCAL_MAX_TRAIN_CLIPS = 20_000

RAY_MODES = ("auto", "on", "off")


@dataclass
class RuntimeConfig:
    """Where a run's work runs: with Ray, or in this process alone (``runtime`` in jobs.after)."""

    ray: str = field("auto", effect=SPEED,
                     help="auto: a run whose rounds train a head on cached features and score from the cache, on a "
                          f"pool of at most {LOCAL_MAX_TRAIN_CLIPS:,} training clips, runs in this process without "
                          "starting Ray (a labelling rerun takes seconds); Ray when the run encodes clips the cache "
                          "lacks, runs TAPT, trains on Ray Train workers (scaling.backend=ray_train), on a larger "
                          "pool, or when RAY_ADDRESS names a cluster. on: always Ray. off: never; a run that needs "
                          "Ray is refused, with the reason. jobs.evidence always runs on Ray")

    def __post_init__(self) -> None:
        # YAML reads on/off as booleans, which this str field holds as "True"/"False" (as active.feature_cache).
        self.ray = {"true": "on", "false": "off"}.get(str(self.ray).lower(), self.ray)
        if self.ray not in RAY_MODES:
            raise ConfigError(f"runtime.ray must be one of {', '.join(RAY_MODES)}, got {self.ray!r}")


def most_training_rows(active, train_clips: int) -> int:
    """The most clips one round may train on: the budget's last target in clips, or the training split (budgets
    in hours; pseudo-labels train on unlabelled clips too)."""
    if active.budget_hours or active.semi_supervised.enabled:
        return train_clips
    try:
        return int(active.targets(train_clips)[-1])
    except ConfigError:  # a budget that does not fit: the loop refuses it with its own message
        return train_clips


def _train_clips(pool) -> int:
    """The pool's training clips, from its summary (no scan)."""
    return int(pool.summary.get("splits", {}).get("train", {}).get("clips", 0))


def _ray_connected() -> bool:
    """Ray is up in this process already (a sweep trial): nothing to save by avoiding it. Never imports Ray."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def ray_needs(cfg, pool) -> list[str]:
    """Why the ``jobs.after`` run ``cfg`` needs Ray, one reason each (empty: it runs in this process).

    With ``runtime.ray=auto`` a cluster (``RAY_ADDRESS``) or a pool above :data:`LOCAL_MAX_TRAIN_CLIPS` is
    reason enough (a large pool's cache is then never read to decide); with ``off``, and otherwise, the reasons
    are work only Ray does: TAPT and what :func:`~ser_models.active.local_rounds.rounds_need_ray` lists.
    """
    train_clips = _train_clips(pool)
    if cfg.runtime.ray == "auto":
        if os.environ.get("RAY_ADDRESS"):
            return ["RAY_ADDRESS names a Ray cluster to run on"]
        if train_clips > LOCAL_MAX_TRAIN_CLIPS:
            return [f"{train_clips:,} training clips, above the {LOCAL_MAX_TRAIN_CLIPS:,} that runtime.ray=auto runs "
                    "in this process"]
    needs = ["TAPT (tapt_enabled) trains the encoder on Ray"] if cfg.tapt_enabled else []
    cache, _ = open_run_cache(pool, cfg.model, cfg.active, storage_path(cfg.output_dir), cfg.cross_lingual.enabled,
                              local=True)
    return needs + rounds_need_ray(pool, cache, cfg.scaling, most_training_rows(cfg.active, train_clips))


def use_ray(cfg, pool, log=print) -> bool:
    """Whether the ``jobs.after`` run ``cfg`` starts Ray (:class:`RuntimeConfig`, :func:`ray_needs`); one line
    says why when ``runtime.ray=auto`` chose.

    Args:
        cfg: the job's ``AfterJobConfig`` (checked: its budget fits the pool).
        pool: the opened pool.
        log: one line of progress output.

    Returns:
        True: connect to Ray; False: every round runs in this process (``ActiveLearningLoop(use_ray=False)``).

    Raises:
        ConfigError: ``runtime.ray=off`` but the run needs Ray, naming what for and the keys to change.
    """
    mode = cfg.runtime.ray
    if mode == "on" or (mode == "auto" and _ray_connected()):  # a sweep trial: Ray is up already
        return True
    needs = ray_needs(cfg, pool)
    if mode == "off" and needs:
        raise ConfigError("runtime.ray=off, but this run needs Ray: " + "; ".join(needs)
                          + ". Set runtime.ray=auto (or on), or change the keys named")
    if needs:
        log(f"runtime: Ray ({needs[0]})")
        return True
    log(f"runtime: this process, no Ray ({_train_clips(pool):,} training clips, features cached; "
        f"runtime.ray={mode})")
    return False
