"""A run's labels as a pool: what ``jobs.evidence evidence.labels_from=<run>`` replays strategies on.

A ``jobs.after`` run with people labelling (``active.oracle=file`` or ``label_studio``) gathers a few hundred
labels. To ask "does selection pay here" firmly, ``jobs.evidence`` needs a labelled pool whose annotator it can
simulate. This module writes one from the run's label ledger, with no copying by hand:

- the **training split** holds the clips labelled for training (purpose ``train``), with the ledger's label
  and dimensional values (the latest answer per clip; several annotators' vote shares are not carried);
- the **dev and test splits** are the run's own evaluation sets: the clips it labelled for ``dev`` / ``test``
  (drawn by the loop), or, for a run that evaluated on its pool's splits, those splits' clips and labels;
- every clip keeps its source, span, speaker, recording, group, language, corpus and transcript, so the
  evidence runs split, group and evaluate exactly as the run did.

The pool is built by :func:`ser_models.data.prepare.prepare_pool` from a manifest of those rows, under the
source pool's own preparation settings, so the clips decode to the same samples; only the labelled clips are
decoded. It lives in ``<evidence output_dir>/labelled_pool/`` (the manifest beside the pool). Its runs replay
the labels as they were: when the run has labelled more since, the folder is refused, and a new one replays
the new labels.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from ser_models.exceptions import ConfigError

__all__ = ["RUN_POOL_DIR", "RunLabels", "labelled_pool_from_run", "read_run_labels"]

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
        pool_dir: the pool the run labelled (its ``config.yaml``'s ``pool_dir``, else the job's).
        manifest: one row per labelled clip: ``utt_id``, the carried pool columns, the targets and ``split``.
        evaluation: where the dev and test splits came from: ``"run"`` (the run's own labelled sets) or
            ``"pool"`` (the pool's splits).
        missing: labelled ids no longer in the pool (left out, and said).
    """

    run_dir: str
    pool_dir: str
    manifest: pd.DataFrame
    evaluation: str
    missing: list[str]

    def counts(self) -> dict[str, int]:
        """Clips per split."""
        return {s: int((self.manifest["split"] == s).sum()) for s in ("train", "dev", "test")}


def _run_pool_dir(run_dir: str, default: str | None) -> str:
    """The run's pool: ``pool_dir`` of its ``config.yaml`` (a ``jobs.after`` run), else ``default``."""
    import yaml

    from ser_models.io import exists, read_bytes, storage_path

    config = storage_path(run_dir) / "config.yaml"
    if exists(config):
        pool_dir = (yaml.safe_load(read_bytes(config)) or {}).get("pool_dir")
        if pool_dir:
            return str(pool_dir)
    if not default:
        raise ConfigError(f"{_KEY}: {run_dir} has no config.yaml naming its pool_dir: set pool_dir to the pool "
                          "the run labelled")
    return default


def read_run_labels(run_dir: str, pool_dir: str | None = None, dimensions: tuple[str, ...] = ()) -> RunLabels:
    """The labelled clips of a run folder, as manifest rows of a new pool.

    Args:
        run_dir: a ``jobs.after`` output folder (or one run of a ``jobs.evidence`` folder): it holds
            ``labels/ledger.parquet``.
        pool_dir: the pool to read the clips from when the run's ``config.yaml`` does not name one.
        dimensions: ``model.dimensions`` whose values the rows carry.

    Returns:
        The :class:`RunLabels`.

    Raises:
        ConfigError: naming ``evidence.labels_from``: no ledger in the folder, or no training label in it.
    """
    from ser_models.data import Pool
    from ser_models.data.ledger import LabelLedger
    from ser_models.io import exists, storage_path

    run = storage_path(run_dir)
    ledger_path = run / "labels" / "ledger.parquet"
    if not exists(ledger_path):
        raise ConfigError(f"{_KEY}={run_dir}: no labels/ledger.parquet there; name the output_dir of a jobs.after "
                          "run that has labelled at least one round")
    ledger = LabelLedger(ledger_path)
    if not len(ledger):
        raise ConfigError(f"{_KEY}={run_dir}: the run has no training labels yet (its ledger holds "
                          f"{ledger.counts()})")
    pool = Pool.open(_run_pool_dir(str(run), pool_dir))
    wanted = {"train": ledger.targets("train").to_pandas()}
    if ledger.counts()["test"]:
        evaluation = "run"
        wanted.update({s: ledger.targets(s).to_pandas() for s in ("dev", "test")})
    else:  # the run evaluated on the pool's own labelled splits
        evaluation = "pool"
        targets = ["label", *dimensions]
        wanted.update({s: pool.metadata(columns=["utt_id", *targets], split=s) for s in ("dev", "test")
                       if s in pool.splits})
    frames = []
    for split, targets in wanted.items():
        # The latest answer per clip (a relabelled clip has several rows).
        targets = targets.drop_duplicates("utt_id", keep="last")
        keep = [c for c in ("utt_id", "label", *dimensions) if c in targets.columns]
        frames.append(targets[keep].assign(split=split))
    labelled = pd.concat(frames, ignore_index=True).drop_duplicates("utt_id", keep="first")
    ids = labelled["utt_id"].astype(str).tolist()
    clips = pool.metadata(columns=["utt_id", *_CARRIED], where={"utt_id": ids})
    manifest = labelled.merge(clips, on="utt_id", how="inner")
    # The pool's channel -1 means "channels averaged", which a manifest says by leaving the column empty.
    manifest["channel"] = manifest["channel"].where(manifest["channel"] >= 0).astype("Int64")
    missing = sorted(set(ids) - set(manifest["utt_id"]))
    return RunLabels(str(run), pool.root, manifest, evaluation, missing)


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
    from ser_models.data.pool import Pool
    from ser_models.data.prepare import check_pool_output, prepare_pool
    from ser_models.io import exists, read_bytes, storage_path, write_bytes_atomic

    source = Pool.open(labels.pool_dir)
    folder = storage_path(out_dir) / RUN_POOL_DIR
    manifest_path = folder / "manifest.csv"
    manifest = labels.manifest.to_csv(index=False).encode()
    if exists(manifest_path) and read_bytes(manifest_path) != manifest:
        # Finished runs replayed the labels as they were: mixing them with runs on other labels is no answer.
        then = pd.read_csv(manifest_path, usecols=["split"])["split"].eq("train").sum()
        raise ConfigError(f"{_KEY}={labels.run_dir}: its labels changed since {out_dir} replayed them "
                          f"({then} training labels then, {labels.counts()['train']} now): give a new output_dir")
    write_bytes_atomic(manifest_path, manifest)
    counts = labels.counts()
    log(f"labels of {labels.run_dir}: {counts['train']} training clips, evaluated on "
        f"{counts['test']} test and {counts['dev']} dev clips ("
        + ("the run's own labelled sets" if labels.evaluation == "run" else "the pool's splits") + ")"
        + (f"; {len(labels.missing)} labelled clips are no longer in the pool (left out): "
           f"{', '.join(labels.missing[:5])}" if labels.missing else ""))
    # The source pool's own preparation settings: every clip decodes to the samples the run's model saw.
    settings = {k: v for k, v in (source.summary.get("config") or {}).items()
                if k in {f.name for f in dataclasses.fields(PoolConfig)}}
    cfg = PoolConfig(**{**settings, "manifest": str(manifest_path), "output_dir": str(folder / "pool"),
                        "label_map": None, "grow": True, "removed": "drop"})
    check_pool_output(cfg)
    summary = prepare_pool(cfg)
    if summary.quarantined:
        log(f"  {summary.quarantined} of the labelled clips could not be decoded again (see "
            f"{folder / 'pool' / 'quarantine.parquet'})")
    return str(folder / "pool")
