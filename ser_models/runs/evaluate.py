"""Evaluate checkpoints on pools: one score, or the cross-corpus matrix (train corpus x test corpus).

    python -m jobs.evaluate CHECKPOINT POOL [POOL ...] [--split test] [--output-dir DIR]
    python -m jobs.evaluate CKPT_A CKPT_B POOL_A POOL_B --output-dir outputs/cross_corpus

Each path is told apart by what it holds: a model checkpoint has ``model.json``, a prepared pool
``summary.json`` (local paths or URIs). Every checkpoint is evaluated on the ``--split`` of every pool; the
matrix (UA for models with classes, else mean CCC; ``--metric`` picks another, e.g. ``ccc_valence``) is
printed, and with ``--output-dir`` written as ``matrix.csv``, ``matrix.png`` (heatmap) and
``evaluations.json`` (every metric of every pair).
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from ser_models.config import invoked_as
from ser_models.exceptions import ConfigError
from ser_models.formats.spreadsheet import neutralise_frame
from ser_models.io import exists, storage_path, write_bytes_atomic, write_json_atomic
from ser_models.ownership import check_output, claim_output, recognise_files
from ser_models.runtime import connect_ray
from ser_models.scoring.evaluation import evaluate_checkpoint, headline_metric, plot_matrix


def _name(path: str, kind: str) -> str:
    """A short display name: a run's folder for ``<run>/checkpoint``, a pool's single corpus name, else the
    folder's name."""
    parts = [p for p in str(path).rstrip("/").split("/") if p]
    if kind == "checkpoint" and len(parts) > 1 and parts[-1] == "checkpoint":
        return parts[-2]
    if kind == "pool":
        from ser_models.data import Pool

        corpora = Pool.open(path).metadata(columns=["corpus"])["corpus"].dropna().unique()
        if len(corpora) == 1 and str(corpora[0]):
            return str(corpora[0])
    return parts[-1] if parts else str(path)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def _earlier_matrix():
    """An earlier version's output folder of this job (no marker, no run.json), recognised by its files."""

    return recognise_files({"matrix.csv": "csv:trained_on", "matrix.png": "png", "evaluations.json": "json"})


def cross_corpus(checkpoints: dict[str, str], pools: dict[str, str], split: str = "test",
                 output_dir: str | None = None, metric: str | None = None, scaling=None, scorer_cfg=None,
                 verbose: bool = True) -> pd.DataFrame:
    """Evaluate every checkpoint on every pool's ``split``.

    Args:
        checkpoints: row name -> checkpoint folder.
        pools: column name -> pool folder.
        split: pool split to evaluate.
        output_dir: where ``matrix.csv``, ``matrix.png`` and ``evaluations.json`` go (None = nowhere).
        metric: the cell value (a key of the evaluation, e.g. ``ua``, ``ccc``, ``ccc_arousal``); None = ``ua``
            for models with classes, else ``ccc``.
        scaling: a ``ScalingConfig``; ``backend=in_process`` scores in this process.
        scorer_cfg: the scoring actor pool (default one actor, one CPU).
        verbose: print progress and the matrix.

    Returns:
        The matrix: rows = checkpoints, columns = pools.
    """
    if output_dir:  # claimed before anything runs: a folder that is not this job's is refused at once

        with claim_output(output_dir, "run", job="jobs.evaluate", recognise=_earlier_matrix(),
                          key="--output-dir", inputs={"checkpoints": list(checkpoints.values()),
                                                      "pools": list(pools.values())}):
            return _cross_corpus(checkpoints, pools, split, output_dir, metric, scaling, scorer_cfg, verbose)
    return _cross_corpus(checkpoints, pools, split, output_dir, metric, scaling, scorer_cfg, verbose)


def _cross_corpus(checkpoints: dict[str, str], pools: dict[str, str], split: str, output_dir: str | None,
                  metric: str | None, scaling, scorer_cfg, verbose: bool) -> pd.DataFrame:

    in_process = scaling is not None and scaling.backend == "in_process"
    connect_ray()
    results: dict[str, dict[str, dict]] = {}
    for row, ckpt in checkpoints.items():
        for col, pool in pools.items():
            t0 = time.perf_counter()
            m = evaluate_checkpoint(ckpt, pool, split, scorer_cfg=scorer_cfg, in_process=in_process)
            results.setdefault(row, {})[col] = m
            if verbose:
                key = metric or headline_metric(m)
                print(f"  {row} on {col} ({split}, {m.get('n', 0)} clips): {key} {m[key]:.3f} "
                      f"({time.perf_counter() - t0:.1f}s)")
    first = next(iter(next(iter(results.values())).values()))
    key = metric or headline_metric(first)
    missing = [(r, c) for r, cols in results.items() for c, m in cols.items() if key not in m]
    if missing:
        raise ConfigError(f"--metric {key!r} is not among the evaluation's metrics for {missing[0][0]} on "
                          f"{missing[0][1]}; available: {sorted(k for k in first if k != 'confusion')}")
    matrix = pd.DataFrame({c: {r: results[r][c][key] for r in results} for c in pools}).loc[list(checkpoints)]
    if verbose:
        print(f"\n{key} ({split} split): rows = trained on, columns = evaluated on")
        print(matrix.to_string(float_format=lambda v: f"{v:.3f}"))
    if output_dir:
        out = storage_path(output_dir)
        # corpus names come from manifests: neutralised, since people open this file in spreadsheets
        table = neutralise_frame(matrix.rename_axis("trained_on").reset_index())
        write_bytes_atomic(out / "matrix.csv", table.to_csv(index=False).encode())
        plot_matrix(matrix, str(out / "matrix.png"), f"{key} on the {split} splits")
        write_json_atomic(out / "evaluations.json", {
            "split": split, "metric": key, "checkpoints": checkpoints, "pools": pools, "results": results})
        if verbose:
            print(f"wrote {out / 'matrix.csv'}, {out / 'matrix.png'}, {out / 'evaluations.json'}")
    return matrix


def main(argv: list[str] | None = None) -> pd.DataFrame:

    parser = argparse.ArgumentParser(
        prog=invoked_as("jobs.evaluate"),
        description="Evaluate model checkpoints on prepared pools; with several, the cross-corpus matrix.")
    parser.add_argument("paths", nargs="+", help="checkpoint folders (model.json) and pool folders (summary.json)")
    parser.add_argument("--split", default="test", help="pool split to evaluate (default test)")
    parser.add_argument("--output-dir", default=None, help="write matrix.csv, matrix.png, evaluations.json here")
    parser.add_argument("--metric", default=None, help="cell value: ua, wa, macro_f1, ccc, ccc_arousal, ... "
                        "(default ua with classes, else ccc)")
    parser.add_argument("--in-process", action="store_true", help="score in this process (no Ray Data actors)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.output_dir:  # a folder that is not this job's, or one around or inside an input: refused first

        check_output(args.output_dir, "run", job="jobs.evaluate", recognise=_earlier_matrix(), key="--output-dir",
                     inputs={"paths": list(args.paths)})
    checkpoints, pools = [], []
    for path in args.paths:
        p = path.rstrip("/")
        if exists(f"{p}/model.json"):
            checkpoints.append(p)
        elif exists(f"{p}/summary.json"):
            pools.append(p)
        else:
            parser.error(f"{path} is neither a model checkpoint (no model.json) nor a prepared pool (no summary.json)")
    if not checkpoints or not pools:
        parser.error(f"need at least one checkpoint and one pool; got {len(checkpoints)} checkpoint(s) and "
                     f"{len(pools)} pool(s)")
    from ser_models.training.config import ScalingConfig

    scaling = ScalingConfig(backend="in_process" if args.in_process else "ray_train")
    named_ckpts = dict(zip(_unique([_name(c, "checkpoint") for c in checkpoints]), checkpoints))
    named_pools = dict(zip(_unique([_name(p, "pool") for p in pools]), pools))
    return cross_corpus(named_ckpts, named_pools, args.split, args.output_dir, args.metric, scaling=scaling)
