"""Where a round's scores live: gathered into one ``scores.parquet``, or left in shards where they were made.

Pools above ``active.selection.shard_above_clips`` training clips keep every round's scores as Parquet shards
(:mod:`ser_models.scoring.score_shards`) and select shard by shard (:mod:`ser_models.active.sharded_selection`,
:mod:`ser_models.active.sharded_cold_start`), so no process holds the pool's scores; smaller pools gather them,
which is faster there (``bench/results/round_scale.md``).
"""

from __future__ import annotations

from ser_models import ownership
from ser_models.io import exists
from ser_models.scoring.score_shards import ScoreShards, dead_attempts, stray_files
from ser_models.scoring.scorer import Scores

__all__ = ["RUN_KIND", "drop_dead_attempts", "rounds_are_sharded", "stored_scores"]

#: The kind of output a run folder is claimed as (``jobs.after``, a sweep trial): its marker lets a round
#: remove what its own killed scoring passes left.
RUN_KIND = "run"


def rounds_are_sharded(active, strategy, train_clips: int, log) -> bool:
    """Whether the rounds keep their scores in shards: pools above ``active.selection.shard_above_clips`` whose
    strategy has a sharded form. A large pool whose settings have none is gathered, and ``log`` says why.

    Args:
        active: the loop's ``ActiveConfig``.
        strategy: the built strategy (a recording cap included).
        train_clips: clips the rounds may score and select.
        log: one line of progress output.
    """
    threshold = active.selection.shard_above_clips
    if train_clips <= threshold:
        return False
    why = f"{strategy!r} has no sharded form" if not strategy.sharded(1) else None
    if why:
        log(f"selection: {train_clips:,} training clips, above active.selection.shard_above_clips={threshold:,}, "
            f"but {why}: each round gathers the pool's scores in this process")
        return False
    log(f"selection: sharded ({train_clips:,} training clips; scores stay in shards of "
        f"{active.selection.rows_per_shard:,})")
    return True


def stored_scores(scores_path) -> Scores | ScoreShards | None:
    """Scores a killed run already made at ``scores_path`` (one file) or beside it (committed shards in
    ``scores/``), whichever the round wrote; None when it wrote neither."""
    shards = ScoreShards.open(scores_path.parent / "scores")
    if shards is not None:
        return shards
    return Scores.load(scores_path) if exists(scores_path) else None


def drop_dead_attempts(run_dir, shards: ScoreShards, log) -> None:
    """Remove the shards of scoring passes a kill left beside the committed ``shards``, and the shard files a
    retried shard task left inside it (never read, but as large as what they hold), through the run folder's
    marker and its lock's fence; a run folder that carries no run marker (a loop run outside the jobs) keeps
    them, and ``log`` says so."""
    dead, stray = dead_attempts(shards), stray_files(shards)
    if not dead and not stray:
        return
    what = ", ".join(w for w in (f"{len(dead)} unfinished scoring pass(es)" if dead else "",
                                 f"{len(stray)} shard file(s) of retried tasks" if stray else "") if w)
    marker = ownership.read_marker(run_dir)
    if not marker or marker.get("kind") != RUN_KIND:
        log(f"  scores: leaving {what} in {shards.folder}: the run folder carries no run marker, so nothing in it "
            "is deleted")
        return
    rel = str(shards.folder)[len(str(run_dir)):].strip("/")
    for name in dead + stray:
        ownership.remove(run_dir, RUN_KIND, f"{rel}/{name}", recorded_only=False)
    log(f"  scores: removed {what} a killed run or worker left in {shards.folder}")
