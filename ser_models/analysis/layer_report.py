"""Layer analysis end to end, for ``jobs.layer_analysis``: probes per layer, learned weights, CKA by group."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from ser_models.analysis.plots import plot_similarity
from ser_models.analysis.probes import WEIGHTED, SplitFeatures, run_probes_on_ray
from ser_models.analysis.similarity import layer_similarity, suggest_anchors
from ser_models.io import write_bytes_atomic, write_json_atomic


def probe_layers(splits: dict[str, SplitFeatures], model_cfg, train_cfg, tasks: list[str], seeds: list[int], *,
                 weighted_sum: bool = True, cpus_per_probe: float = 1.0, log=print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train a probe per (layer, task, seed) on Ray, plus a weighted-sum head per (task, seed).

    Returns:
        ``(rows, weights)``: one row per probe (``task, layer, seed, metric, dev, test, best_epoch, seconds``;
        layer -1 = the weighted sum), and one row per (task, seed, layer) with that head's learned ``weight``.
    """
    num_layers = splits["train"].features.shape[1]
    jobs = [(t, layer, s) for t in tasks for layer in range(num_layers) for s in seeds]
    if weighted_sum:
        jobs += [(t, WEIGHTED, s) for t in tasks for s in seeds]
    log(f"training {len(jobs)} probes ({len(tasks)} tasks x {num_layers} layers"
        f"{' + weighted sum' if weighted_sum else ''} x {len(seeds)} seeds) on Ray")
    rows = run_probes_on_ray(splits, model_cfg, train_cfg, jobs, cpus_per_probe, log=log)
    weights = [{"task": r["task"], "seed": r["seed"], "layer": i, "weight": w}
               for r in rows if r.get("weights") for i, w in enumerate(r["weights"])]
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "weights"} for r in rows])
    return frame, pd.DataFrame(weights, columns=["task", "seed", "layer", "weight"])


def probe_table(rows: pd.DataFrame, weights: pd.DataFrame, split: str = "test") -> str:
    """Markdown: per layer (rows) and task (columns) the mean ± std over seeds of ``split``'s metric, the
    weighted-sum head's metric, the learned weights, and each task's best layer."""
    tasks = list(dict.fromkeys(rows["task"]))
    lines = ["| layer | " + " | ".join(f"{t} ({rows[rows.task == t].metric.iloc[0].upper()})" for t in tasks) + " |",
             "|---|" + "---|" * len(tasks)]

    def cell(df) -> str:
        v = df[split].dropna()
        return f"{v.mean():.3f} ± {v.std(ddof=0):.3f}" if len(v) else "-"

    layers = sorted(x for x in rows["layer"].unique() if x >= 0)
    for layer in layers:
        lines.append(f"| {layer} | " + " | ".join(cell(rows[(rows.task == t) & (rows.layer == layer)])
                                                  for t in tasks) + " |")
    if (rows["layer"] < 0).any():
        lines.append("| weighted sum | " + " | ".join(cell(rows[(rows.task == t) & (rows.layer < 0)])
                                                      for t in tasks) + " |")
    best = []
    for t in tasks:
        means = rows[(rows.task == t) & (rows.layer >= 0)].groupby("layer")[split].mean()
        best.append(str(int(means.idxmax())) if len(means.dropna()) else "-")
    lines.append("| **best layer** | " + " | ".join(best) + " |")
    if len(weights):
        lines += ["", "Learned layer weights of the weighted-sum head (softmax, mean over seeds):", "",
                  "| task | " + " | ".join(str(x) for x in layers) + " |", "|---|" + "---|" * len(layers)]
        for t in tasks:
            w = weights[weights.task == t].groupby("layer")["weight"].mean()
            lines.append(f"| {t} | " + " | ".join(f"{w.get(x, float('nan')):.3f}" for x in layers) + " |")
    return "\n".join(lines) + "\n"


def similarity_by_group(features: SplitFeatures, meta: pd.DataFrame, column: str, labels: list[str], out_dir, *,
                        per_class: int = 0, repeats: int = 5, top_k: int = 2, seed: int = 0, min_clips: int = 8,
                        log=print) -> list[dict]:
    """Layer CKA between every pair of values of ``column`` (languages, corpora), with plots and anchors.

    Writes ``<out_dir>/cka_<column>_<a>_vs_<b>.png`` per pair. Values with fewer than ``min_clips`` labelled
    clips are skipped (said in the log).

    Returns:
        One dict per pair: ``column, a, b, pairs, cka ([L, L]), cka_std, diagonal ([L]), most_similar,
        least_similar`` (the suggested anchors).
    """

    if column not in meta or meta[column].isna().all():
        log(f"  similarity by {column}: the pool has no {column} column values: skipped")
        return []
    has_label = features.labels >= 0
    counts = meta.loc[has_label, column].value_counts()
    values = sorted(v for v, n in counts.items() if n >= min_clips)
    if len(values) < 2:
        log(f"  similarity by {column}: needs two values with >= {min_clips} labelled clips, found "
            f"{dict(counts)}: skipped")
        return []
    out = []
    names = np.asarray([labels[i] if i >= 0 else None for i in features.labels], dtype=object)
    for a, b in itertools.combinations(values, 2):
        ia = np.flatnonzero((meta[column] == a).to_numpy() & has_label)
        ib = np.flatnonzero((meta[column] == b).to_numpy() & has_label)
        sim = layer_similarity(features.features[ia], names[ia], features.features[ib], names[ib],
                               per_class=per_class or None, repeats=repeats, seed=seed)
        diag = np.diag(sim["cka"])
        k = min(top_k, len(diag) - 1)
        anchors = {"most_similar": suggest_anchors(diag, k, "most_similar"),
                   "least_similar": suggest_anchors(diag, k, "least_similar")}
        plot_similarity(sim["cka"], f"{out_dir}/cka_{column}_{a}_vs_{b}.png", f"{column}={a}", f"{column}={b}",
                        anchors)
        log(f"  similarity {column}={a} vs {b} ({sim['pairs']} class-matched pairs): per-layer CKA "
            + " ".join(f"{x:.2f}" for x in diag) + f"; anchors most similar {anchors['most_similar']}, least "
            f"similar {anchors['least_similar']}")
        # The same measurement inside each group (two disjoint halves, class-matched): the ceiling that the
        # pairing itself allows, against which the cross-group values read.
        within = {v: _within_group(features.features[i], names[i], per_class, repeats, seed).tolist()
                  for v, i in ((a, ia), (b, ib))}
        log("    within-group reference (disjoint halves): " + "; ".join(
            f"{v} " + " ".join(f"{x:.2f}" for x in d) for v, d in within.items()))
        out.append({"column": column, "a": a, "b": b, "pairs": int(sim["pairs"]), "cka": sim["cka"].tolist(),
                    "cka_std": sim["cka_std"].tolist(), "diagonal": diag.tolist(), "within": within, **anchors})
    return out


def _within_group(features: np.ndarray, labels: np.ndarray, per_class: int, repeats: int, seed: int) -> np.ndarray:
    """[L] per-layer CKA between two random disjoint halves of one group, class-matched like the cross pairs."""
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(labels))
    half_a, half_b = order[: len(order) // 2], order[len(order) // 2:]
    sim = layer_similarity(features[half_a], labels[half_a], features[half_b], labels[half_b],
                           per_class=per_class or None, repeats=repeats, seed=seed)
    return np.diag(sim["cka"])


def similarity_table(results: list[dict]) -> str:
    """Markdown: per-layer CKA (the diagonal) of each compared pair, and the anchors it suggests."""
    if not results:
        return ""
    num_layers = len(results[0]["diagonal"])
    lines = ["| pair | " + " | ".join(f"L{i}" for i in range(num_layers)) + " | most similar | least similar |",
             "|---|" + "---|" * (num_layers + 2)]
    for r in results:
        lines.append(f"| {r['column']}: {r['a']} vs {r['b']} | " + " | ".join(f"{x:.3f}" for x in r["diagonal"])
                     + f" | {r['most_similar']} | {r['least_similar']} |")
        for value, diag in r.get("within", {}).items():
            lines.append(f"| (reference: {value} vs {value}, disjoint halves) | "
                         + " | ".join(f"{x:.3f}" for x in diag) + " | | |")
    return "\n".join(lines) + "\n"


def write_similarity(results: list[dict], out_dir) -> None:
    """``similarity.json`` (every pair's full CKA matrices and anchors) and ``similarity.md``."""
    write_json_atomic(f"{out_dir}/similarity.json", results)
    write_bytes_atomic(f"{out_dir}/similarity.md", similarity_table(results).encode())
