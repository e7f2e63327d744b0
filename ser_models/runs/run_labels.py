"""A run's labels as a pool: what ``jobs.evidence evidence.labels_from=<run>`` replays strategies on.

A ``jobs.after`` run with people labelling (``active.oracle=file`` or ``label_studio``) gathers a few hundred
labels. To ask "does selection pay here" firmly, ``jobs.evidence`` needs a labelled pool whose annotator it can
simulate. This module writes one from the run's label ledger, with no copying by hand:

- the **training split** holds the clips labelled for training (purpose ``train``), with the ledger's label
  and dimensional values (the latest answer per clip; several annotators' vote shares are not carried);
- the **dev and test splits** are the run's own evaluation sets: the clips it labelled for ``dev`` / ``test``
  (drawn by the loop), or, for a run that evaluated on its pool's splits, those splits' clips and labels;
- every clip keeps its source, span, speaker, recording, group, language, corpus and transcript, so the
  evidence runs split, group and evaluate exactly as the run did;
- the pool keeps the run's own separation of evaluation and training: sets the run drew by whole units
  (``active.evaluation.disjoint_by``, as the draw resolved it) are checked to share no unit with training, and
  sets drawn clip by clip (``disjoint_by=none``) may share recordings and groups with it, as the run allowed. A
  run that evaluated on its pool's splits keeps the pool's rule (no recording or group in two splits).

The pool is built by :func:`ser_models.data.prepare.prepare_pool` from a manifest of those rows, under the
source pool's own preparation settings, so the clips decode to the same samples; only the labelled clips are
decoded. It lives in ``<evidence output_dir>/labelled_pool/`` (the manifest beside the pool). Its runs replay
the labels as they were: when the run's labels or sets have changed since, the folder is refused, and a new one
replays the new labels; a change of other metadata (a corrected speaker, a moved file) updates the pool in
place.
"""

from __future__ import annotations

import dataclasses
import io

import pandas as pd

from ser_models.data.ledger import LabelLedger
from ser_models.data.manifest import SPLIT_KEYS
from ser_models.data.speakers import speaker_key
from ser_models.exceptions import ConfigError
from ser_models.io import exists, read_bytes, read_json, storage_path, write_bytes_atomic

__all__ = ["RUN_POOL_DIR", "RunLabels", "check_replay_budgets", "labelled_pool_from_run", "read_run_labels"]

#: Where the labelled pool lives under the evidence job's ``output_dir``.
RUN_POOL_DIR = "labelled_pool"
#: Pool columns a manifest row carries over unchanged (where a clip came from and whose it is).
_CARRIED = ("path", "recording", "channel", "start", "end", "speaker", "language", "corpus", "group", "transcript")
_KEY = "evidence.labels_from"


@dataclasses.dataclass
class RunLabels:
    """What a run folder's ledger holds, resolved against its pool.

    Attributes:
        run_dir: the run folder.
        pool_dir: the pool the run labelled (the job's ``pool_dir``, checked against the run's recorded lineage).
        manifest: one row per labelled clip: ``utt_id``, the carried pool columns, the targets and ``split``.
        evaluation: where the dev and test splits came from: ``"run"`` (the run's own labelled sets) or
            ``"pool"`` (the pool's splits).
        missing: labelled ids no longer in the pool (left out, and said).
        pool_settings: the pool's ``summary.json`` preparation config (what the labelled pool is prepared with).
        disjoint_by: the unit the run's drawn evaluation sets took whole (``active.evaluation.disjoint_by`` as the
            draw resolved it: ``group``, ``recording``, ``speaker``, or ``none`` for single clips); None when the
            run evaluated on its pool's splits, or its draw says nothing.
    """

    run_dir: str
    pool_dir: str
    manifest: pd.DataFrame
    evaluation: str
    missing: list[str]
    pool_settings: dict = dataclasses.field(default_factory=dict)
    disjoint_by: str | None = None

    def counts(self) -> dict[str, int]:
        """Clips per split."""
        return {s: int((self.manifest["split"] == s).sum()) for s in ("train", "dev", "test")}

    def split_keys(self) -> tuple[str, ...]:
        """The columns whose every value the labelled pool keeps in one split: the unit the run's sets took whole,
        none for sets drawn clip by clip, and the pool's own rule (:data:`~ser_models.data.manifest.SPLIT_KEYS`)
        otherwise."""

        if self.disjoint_by is None:
            return SPLIT_KEYS
        # The run accepted sets that share what is finer than its unit with training: refusing them here would
        # refuse the run's own evaluation.
        return () if self.disjoint_by == "none" else (self.disjoint_by,)


def _check_lineage(run_dir: str, pool) -> None:
    """Refuse a pool that is not the one the run labelled: its lineage (identity across growth and relabelling)
    differs from the one the run recorded in ``run.json`` (a rebuilt or re-segmented pool could give an old
    label to other audio under the same id)."""

    record = storage_path(run_dir) / "run.json"
    recorded = (read_json(record).get("inputs") or {}).get("pool") if exists(record) else None
    if recorded and recorded != pool.lineage:
        raise ConfigError(f"{_KEY}={run_dir}: the run labelled a pool of lineage {recorded}, but pool_dir="
                          f"{pool.root} has lineage {pool.lineage} (rebuilt, or another pool): point pool_dir at "
                          "the pool the run labelled")


def read_run_labels(run_dir: str, pool_dir: str, dimensions: tuple[str, ...] = ()) -> RunLabels:
    """The labelled clips of a run folder, as manifest rows of a new pool.

    Args:
        run_dir: a ``jobs.after`` output folder (or one run of a ``jobs.evidence`` folder): it holds
            ``labels/ledger.parquet``.
        pool_dir: the pool the run labelled (the job's ``pool_dir``: the run's own when the job starts from the
            run's ``config.yaml``, or where that pool has moved); checked against the lineage in ``run.json``.
        dimensions: ``model.dimensions`` whose values the rows carry.

    Returns:
        The :class:`RunLabels`.

    Raises:
        ConfigError: naming ``evidence.labels_from``: no ledger in the folder, no training label or no test or dev
            set in it, or a pool that is not the one the run labelled.
    """
    from ser_models.data import Pool

    run = storage_path(run_dir)
    ledger_path = run / "labels" / "ledger.parquet"
    if not exists(ledger_path):
        raise ConfigError(f"{_KEY}={run_dir}: no labels/ledger.parquet there; name the output_dir of a jobs.after "
                          "run that has labelled at least one round")
    ledger = LabelLedger(ledger_path)
    if not len(ledger):
        raise ConfigError(f"{_KEY}={run_dir}: the run has no training labels yet (its ledger holds "
                          f"{ledger.counts()})")
    pool = Pool.open(pool_dir)
    _check_lineage(str(run), pool)
    wanted = {"train": ledger.targets("train").to_pandas()}
    disjoint_by = None
    if ledger.counts()["test"]:
        evaluation = "run"
        wanted.update({s: ledger.targets(s).to_pandas() for s in ("dev", "test")})
        disjoint_by = _drawn_disjoint_by(run)
    else:  # the run evaluated on the pool's own labelled splits
        evaluation = "pool"
        targets = ["label", *dimensions]
        wanted.update({s: pool.metadata(columns=["utt_id", *targets], split=s) for s in ("dev", "test")
                       if s in pool.splits})
    missing_sets = [s for s in ("test", "dev") if s not in wanted or not len(wanted[s])]
    if missing_sets:
        raise ConfigError(f"{_KEY}={run_dir}: the run has no {' and no '.join(missing_sets)} set (e.g. "
                          "active.evaluation.dev_size=0); the replay evaluates every run on the run's own test and "
                          "dev sets, so it needs both")
    frames = []
    for split, targets in wanted.items():
        targets = targets.drop_duplicates("utt_id", keep="last")  # one row per clip (the ledger keeps one)
        keep = [c for c in ("utt_id", "label", *dimensions) if c in targets.columns]
        frames.append(targets[keep].assign(split=split))
    labelled = pd.concat(frames, ignore_index=True).drop_duplicates("utt_id", keep="first")
    ids = labelled["utt_id"].astype(str).tolist()
    clips = pool.metadata(columns=["utt_id", *_CARRIED], where={"utt_id": ids})
    manifest = labelled.merge(clips, on="utt_id", how="inner")
    # A segment without a speaker reads as its stream's key: not a speaker the manifest had, and too long an id
    # for a long recording's name. The pool's channel -1 ("channels averaged") is an empty manifest cell.
    stream = [speaker_key(None, r, c) for r, c in zip(manifest["recording"], manifest["channel"])]
    manifest["speaker"] = manifest["speaker"].where(manifest["speaker"].ne(pd.Series(stream, index=manifest.index))
                                                    | manifest["recording"].isna())
    manifest["channel"] = manifest["channel"].where(manifest["channel"] >= 0).astype("Int64")
    missing = sorted(set(ids) - set(manifest["utt_id"]))
    return RunLabels(str(run), pool.root, manifest, evaluation, missing, pool.summary.get("config") or {},
                     disjoint_by)


def _drawn_disjoint_by(run) -> str | None:
    """The unit the run's drawn evaluation sets took whole, from the draw's ``rounds/evaluation/evaluation.json``
    (``auto`` resolved there); None when the run folder has no such record."""

    record = run / "rounds" / "evaluation" / "evaluation.json"
    return read_json(record).get("disjoint_by") if exists(record) else None


def check_replay_budgets(active, have: int, min_labelled: int = 0) -> None:
    """Refuse budgets a replay on ``have`` training labels cannot answer with, naming the override to use.

    Every seed draws its budgets from the same labelled clips, so past about half of them every strategy ends up
    with nearly the same clips (and budgets in hours of such a subset even more so).

    Args:
        active: the job's ``active`` config.
        have: training labels the run gathered.
        min_labelled: labels a compared strategy needs before it queries other than at random (``auto``'s
            ``active.strategy.auto_min_labelled``; 0 = none): the suggested budgets query from at least that many.

    Raises:
        ConfigError: too few labels, budgets in hours, or a budget above half of ``have``.
    """
    steps = sorted({max(1, have // 8), max(2, have // 4), max(3, have // 2)})
    if min_labelled and max(steps[:-1], default=0) < min_labelled:
        # every round that queries (all but the last) would be under the minimum: random against random
        steps = sorted({min_labelled, *(s for s in steps if s > min_labelled)})
    fix = f"active.budget_labels=[{','.join(map(str, steps))}]"
    if have < 24:
        raise ConfigError(f"{_KEY}: the run gathered {have} training labels; replaying strategies needs a few dozen "
                          "at least (budgets up to half of them, each with clips of every class)")
    if min_labelled and have < 2 * (min_labelled + 1):
        raise ConfigError(f"{_KEY}: the run gathered {have} training labels, so budgets stay under {have // 2}, but "
                          f"auto queries at random below active.strategy.auto_min_labelled={min_labelled} labels: "
                          f"every budget would compare random with random. Gather at least {2 * (min_labelled + 1)} "
                          "training labels, or compare auto's candidates (evidence.strategies="
                          "[margin,informative_diverse]) instead of auto")
    if active.budget_hours:
        raise ConfigError(f"{_KEY} replays budgets in labels: set active.budget_hours=[] and {fix}")
    largest = max(active.budget_labels or active.targets(have))
    if 2 * largest > have:
        raise ConfigError(f"{_KEY}: the run gathered {have} training labels, so each seed draws its budgets from "
                          f"those {have}; budgets up to about half of them still differ between strategies, but the "
                          f"largest budget is {largest}: set e.g. {fix}")


def _changed_targets(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """Ids whose split or targets differ between two manifests of a run's labels (or that only one holds); other
    columns (a corrected speaker, a moved path) are the pool update's business, not a change of the labels."""
    cols = ["utt_id", "split", *[c for c in ("label", "arousal", "valence", "dominance") if c in new.columns]]

    def keyed(frame):
        frame = frame.reindex(columns=cols).astype({"utt_id": str}).set_index("utt_id")
        return {i: tuple("" if pd.isna(v) else str(v) for v in row) for i, row in zip(frame.index, frame.values)}

    a, b = keyed(old), keyed(new)
    return sorted(i for i in set(a) | set(b) if a.get(i) != b.get(i))


def labelled_pool_from_run(labels: RunLabels, out_dir: str, log=print) -> str:
    """Write (or bring up to date) the pool of a run's labelled clips under ``out_dir``.

    Args:
        labels: :func:`read_run_labels`.
        out_dir: the evidence job's ``output_dir``; the pool goes to ``<out_dir>/labelled_pool/pool``.
        log: progress output.

    Returns:
        The pool's folder.
    """
    from ser_models.data.config import PoolConfig
    from ser_models.data.prepare import check_pool_output, prepare_pool

    folder = storage_path(out_dir) / RUN_POOL_DIR
    manifest_path = folder / "manifest.csv"
    manifest = labels.manifest.to_csv(index=False).encode()
    if exists(manifest_path):
        changed = _changed_targets(pd.read_csv(io.BytesIO(read_bytes(manifest_path)), dtype={"utt_id": str},
                                               keep_default_na=False, na_values=[""]), labels.manifest)
        if changed:
            # Finished runs replayed the labels as they were: mixing them with runs on others answers nothing.
            raise ConfigError(f"{_KEY}={labels.run_dir}: its labels or sets changed since {out_dir} replayed them "
                              f"({len(changed)} clips, e.g. {', '.join(changed[:3])}): give a new output_dir")
    write_bytes_atomic(manifest_path, manifest)
    counts = labels.counts()
    shared = labels.disjoint_by == "none"
    log(f"labels of {labels.run_dir}: {counts['train']} training clips, evaluated on "
        f"{counts['test']} test and {counts['dev']} dev clips ("
        + ("the run's own labelled sets" if labels.evaluation == "run" else "the pool's splits")
        + (", drawn clip by clip: they may share recordings with training, as in the run" if shared else "") + ")"
        + (f"; {len(labels.missing)} labelled clips are no longer in the pool (left out): "
           f"{', '.join(labels.missing[:5])}" if labels.missing else ""))
    # The source pool's own preparation settings: every clip decodes to the samples the run's model saw.
    settings = {k: v for k, v in labels.pool_settings.items()
                if k in {f.name for f in dataclasses.fields(PoolConfig)}}
    cfg = PoolConfig(**{**settings, "manifest": str(manifest_path), "output_dir": str(folder / "pool"),
                        "label_map": None, "grow": True, "removed": "drop"})
    check_pool_output(cfg)
    summary = prepare_pool(cfg, split_keys=labels.split_keys())
    if summary.quarantined:
        log(f"  {summary.quarantined} of the labelled clips could not be decoded again (see "
            f"{folder / 'pool' / 'quarantine.parquet'})")
    return str(folder / "pool")
