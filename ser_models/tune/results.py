"""A finished sweep as a table: one row per trial, the leaderboard, and the winner's config."""

from __future__ import annotations

import json
import math

import pandas as pd
import pyarrow as pa

from ser_models.config import to_yaml
from ser_models.io import storage_path, write_bytes_atomic, write_parquet_atomic
from ser_models.locks import fenced_for
from ser_models.tune.space import apply_values, trial_values
from ser_models.tune.targets import TARGETS

#: How a trial's ranking value is read from its reports: finetune keeps its best epoch's model, so the best
#: report counts; an AL loop's area under the curve is only complete at its last round.
RANK_BY = {"finetune": "best", "anchor": "best", "after": "last"}


def curves(grid, plan) -> dict[str, pd.DataFrame]:
    """``{trial_id: [time_attr, metric] rows}`` from each trial's reports (rows without the metric dropped)."""
    out = {}
    for r in grid:
        df = r.metrics_dataframe
        tid = trial_id(r)
        if df is None or df.empty or plan.metric not in df or plan.time_attr not in df:
            out[tid] = pd.DataFrame(columns=[plan.time_attr, plan.metric])
            continue
        rows = df[[plan.time_attr, plan.metric]].dropna()
        # a resumed trial reports its finished epochs again; keep the last report of each time unit
        out[tid] = rows.drop_duplicates(plan.time_attr, keep="last").sort_values(plan.time_attr)
    return out


def trial_id(result) -> str:
    """A Tune result's trial id: the one it reported, else its folder's name."""
    return str((result.metrics or {}).get("trial_id") or str(result.path).rstrip("/").rsplit("/", 1)[-1])


def _cell(value):
    """A config value as a Parquet-friendly scalar (lists as JSON text)."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def results_frame(grid, plan) -> pd.DataFrame:
    """One row per trial.

    Columns: ``trial_id``, ``config_json`` (the dotted values the trial applied), ``status`` (``finished``,
    ``stopped`` by the scheduler, ``error``), one column per swept key (None where inactive), ``metric`` (the
    ranking value), ``metric_last``, ``metric_best``,
    ``<time_attr>`` (epochs or rounds run), ``stopped_early``, ``trainable_params``, ``total_params``, the
    test metrics when reported, ``seconds``; sorted best first.
    """
    mode = plan.cfg.mode
    rank_by = RANK_BY[plan.cfg.base]
    hist = curves(grid, plan)
    rows = []
    for r in grid:
        last = dict(r.metrics or {})
        tid = trial_id(r)
        values = trial_values(plan.params, plan.base_dict, r.config or {})
        # config_json: exactly what the trial applied (a null choice and an inactive key both read None below)
        row = {"trial_id": tid, "config_json": json.dumps(values, sort_keys=True)}
        row.update({p.key: _cell(values.get(p.key)) for p in plan.params})
        series = hist.get(tid)
        vals = list(series[plan.metric]) if series is not None and len(series) else []
        row["metric_last"] = float(vals[-1]) if vals else math.nan
        row["metric_best"] = float((max if mode == "max" else min)(vals)) if vals else math.nan
        row["metric"] = row["metric_best"] if rank_by == "best" else row["metric_last"]
        row[plan.time_attr] = int(series[plan.time_attr].max()) if vals else 0
        finished = bool(last.get("final")) or (plan.cfg.base == "after" and row[plan.time_attr] >= plan.max_t)
        row["status"] = "error" if r.error is not None else ("finished" if finished else "stopped")
        row["stopped_early"] = row["status"] == "stopped"
        for key in ("trainable_params", "total_params"):
            row[key] = int(last[key]) if last.get(key) is not None else None
        for key in ("test_ua", "test_wa", "test_macro_f1", "alc_test_ua", "alc_dev_ua"):
            if key in last and key != plan.metric:
                row[key] = last[key]
        row["seconds"] = float(last.get("time_total_s", math.nan))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values("metric", ascending=(mode == "min"), na_position="last").reset_index(drop=True)


def write_results(frame: pd.DataFrame, output_dir: str) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with fenced_for(storage_path(output_dir) / "results.parquet"):  # a no-op unless a lock covers the sweep
        write_parquet_atomic(storage_path(output_dir) / "results.parquet", table)


def best_config(frame: pd.DataFrame, plan):
    """The best trial's complete base-job config (its output_dir: ``<sweep>/best``)."""
    best = frame.dropna(subset=["metric"]).iloc[0]
    cfg = apply_values(TARGETS[plan.cfg.base].schema(), plan.base_dict, json.loads(best["config_json"]))
    cfg.output_dir = str(storage_path(plan.cfg.output_dir) / "best")
    return cfg


def write_best(frame: pd.DataFrame, plan, output_dir: str):
    cfg = best_config(frame, plan)
    best = frame.dropna(subset=["metric"]).iloc[0]
    header = (f"# Best trial {best['trial_id']} of the sweep in {output_dir}: {plan.metric} = {best['metric']:.4f}\n"
              f"# Run it as is: python -m jobs.{plan.cfg.base} best.yaml\n")
    with fenced_for(storage_path(output_dir) / "best.yaml"):
        write_bytes_atomic(storage_path(output_dir) / "best.yaml", (header + to_yaml(cfg)).encode())
    return cfg


def leaderboard(frame: pd.DataFrame, plan, top_k: int = 5) -> str:
    """The top trials, one line each."""
    lines = [f"{'#':>2} {'trial':<12} {plan.metric:>10} {plan.time_attr:>6} {'status':<9} {'trainable':>10}  config"]
    for i, row in frame.head(top_k).iterrows():
        applied = json.loads(row["config_json"])
        keys = " ".join(f"{k}={_show(v)}" for k, v in applied.items())
        params = f"{int(row['trainable_params']):,}" if not pd.isna(row.get("trainable_params")) else "-"
        lines.append(f"{i + 1:>2} {row['trial_id']:<12} {row['metric']:>10.4f} {int(row[plan.time_attr]):>6} "
                     f"{row['status']:<9} {params:>10}  {keys}")
    return "\n".join(lines)


def _show(value) -> str:
    """A config value for one leaderboard line (ints stay ints after a column with gaps made them floats)."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
    return str(value)


def print_leaderboard(frame: pd.DataFrame, plan, top_k: int = 5) -> None:
    print(f"\nleaderboard ({plan.metric}, {plan.cfg.mode}; {len(frame)} trials, "
          f"{int(frame['stopped_early'].sum())} stopped early, {int((frame['status'] == 'error').sum())} failed)")
    print(leaderboard(frame, plan, top_k))
