"""Label-efficiency benchmark: every query strategy vs random at 5 / 10 / 20 % of the training pool, and
full-data fine-tuning (100 %), over 5 seeds, with a logistic-regression probe as the reference.

    python -m bench.label_efficiency            # 9 strategies x 5 seeds + 5 full-data runs + probe; writes results + PNG
    python -m bench.label_efficiency --quick    # random + entropy, 1 seed, 2 epochs; prints the table only
    python -m bench.label_efficiency --task avd # arousal/valence/dominance alone: regression strategies, CCC
    python -m bench.label_efficiency --pool-dir /data/espeak/pool --corpus "espeak-ng corpus" --results ...
    python -m bench.label_efficiency --strategies random margin informative_diverse --seeds $(seq 0 19) \
        --fractions 0.05 0.1 0.2 0.4 1.0 --runs runs.csv   # 20 paired seeds, one CSV row per round

Every run is ``jobs.after``'s loop (``ActiveLearningLoop.run``) with the frozen pretrained Whisper-tiny encoder of
Smart Turn v3.2 (``jobs.import_encoder smart-turn``; ``--encoder tiny-wav2vec2`` for the random tiny one; its
preprocessing read from its own files: no waveform normalisation), the head recipe ``--recipe`` (``RECIPES``;
the default ``small-label`` is what the demo ships, read from ``jobs/configs/demo_after.yaml``: features of hidden state 1 standardised with the training
pool's own statistics, a linear head solved with L-BFGS, ``train.l2_c=auto``: C by 5-fold CV on the labelled clips), and the feature cache
(``model.adapter.kind=frozen model.pooling=mean active.feature_cache=on``), in process
(``scaling.backend=in_process``), ``active.budget_fractions=[0.05,0.10,0.20]``, a random initial set
(``active.initial=random``: the 5 % point is the same clips for every strategy under a seed, so the strategies
differ only in what they query), and ``active.seed = train.optim.seed = seed``. The cache is built once and shared
by every run (each run's ``feature_cache/`` is a symlink to it). BALD scores with 8 MC-dropout samples. The
100 % reference labels the whole training split at once (``budget_fractions=[1.0]``) and trains once. The
``probe`` rows are the reference learner, scikit-learn's StandardScaler + LogisticRegression (C=1, balanced
class weights) on the same cached layer, fit on exactly the clips each seed's random run labelled.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.cache import job_config
from bench.common import (
    DEFAULT_WORKDIR,
    RESULTS_DIR,
    LoadWindow,
    claim_workdir,
    encoder_overrides,
    ensure_pool,
    init_ray,
    machine_info,
    machine_markdown,
    md_table,
    scratch,
    write_results,
)

RESULTS = RESULTS_DIR / "label_efficiency.md"
STRATEGIES = ["random", "entropy", "margin", "least_confidence", "bald", "badge", "kcenter", "kmeans",
              "informative_diverse"]
#: ``--task avd``: the model predicts arousal / valence / dominance alone and is scored by mean CCC.
AVD_STRATEGIES = ["random", "mc_variance", "informative_diverse", "gsx", "gsy", "igs"]
AVD_OVERRIDES = ["model.labels=[]", "model.dimensions=[arousal,valence,dominance]",
                 "active.strategy.uncertainty=mc_variance"]
#: Strategies that need MC-dropout samples from the scorer.
MC_STRATEGIES = {"bald", "mc_variance"}
FRACTIONS = [0.05, 0.10, 0.20]
SEEDS = [0, 1, 2, 3, 4]
THREADS = 2
#: The demo's job config: the source of truth for the shipped recipe (``small-label``).
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "demo_after.yaml"


def _yaml_value(value) -> str:
    """A value as a dotted override's right-hand side (YAML flow style: ``true``, ``null``, ``[1, 2]``, ``'on'``)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text[:-3].strip() if text.endswith("...") else text


def demo_recipe(path: str | Path = DEMO_CONFIG) -> list[str]:
    """The demo's head recipe as dotted overrides: every ``model.*`` key but the encoder (the benchmark picks
    its own with ``--encoder``) and the labels (the pool's), and every ``train.*`` key, of
    ``jobs/configs/demo_after.yaml`` as jobs.after loads it (its defaults are the recipe; the file adds the
    layer), so they replace :data:`bench.cache.BASE_OVERRIDES`' older recipe."""
    from ser_models.config import load_config, to_dict
    from ser_models.provenance import flatten
    from ser_models.runs.after import AfterJobConfig

    cfg = to_dict(load_config(AfterJobConfig, path))
    keys = flatten({"model": {k: v for k, v in cfg["model"].items() if k not in ("encoder", "labels")},
                    "train": cfg["train"]})
    return [f"{key}={_yaml_value(value)}" for key, value in keys.items()]


#: Head recipes over a pretrained encoder. ``small-label`` is what the demo ships, read from its config
#: (``jobs/configs/demo_after.yaml``): pool-standardised features of one layer, a linear head solved to
#: convergence with L-BFGS (no dev split, no epochs). ``mlp`` is the recipe shipped before it: a learned layer
#: sum, LayerNorm, a 64-wide MLP head, AdamW for up to 30 epochs with early stopping on dev UA.
RECIPES = {
    "small-label": demo_recipe(),
    "mlp": ["model.head_dropout=0.2", "train.optim.epochs=30", "train.optim.batch_size=16", "train.early_stopping_patience=8"],
}
#: ``--strategies margin+confident``: a strategy run with a variant's overrides (the name after ``+``):
#: pseudo-labels of the unlabelled pool in training (``active.semi_supervised``; never in the ledger), or
#: class-balanced quotas for an imbalanced pool (``margin+balanced``: ``active.strategy.class_balanced``).
VARIANTS = {
    "confident": ["active.semi_supervised.method=confident", "active.semi_supervised.threshold=0.9"],
    "propagation": ["active.semi_supervised.method=propagation", "active.semi_supervised.threshold=0.6"],
    "balanced": ["active.strategy.class_balanced=true"],
}
#: The reference learner on the same cached features: scikit-learn's StandardScaler + LogisticRegression
#: (C = 1, balanced class weights) fit on exactly the clips random sampling labelled.
PROBE_C = 1.0


NOTES = """## Findings

Summarised, with what the numbers mean, in BENCHMARKS.md at the repository root.
"""


def run_overrides(strategy: str, seed: int, fractions: list[float], extra: list[str] = ()) -> list[str]:
    """Dotted overrides of one run (on top of ``bench.cache.BASE_OVERRIDES``); ``strategy`` may carry a
    ``+<variant>`` suffix (:data:`VARIANTS`)."""
    strategy, _, variant = strategy.partition("+")
    if variant and variant not in VARIANTS:
        raise SystemExit(f"unknown strategy variant {variant!r}; known: {list(VARIANTS)}")
    out = ["scaling.backend=in_process", "active.feature_cache='on'", "active.initial=random",
           f"active.budget_fractions=[{','.join(str(f) for f in fractions)}]",
           f"active.strategy.name={strategy}", f"active.seed={seed}", f"train.optim.seed={seed}"]
    if strategy in MC_STRATEGIES or "active.strategy.uncertainty=mc_variance" in extra:
        out.append("active.scorer.mc_samples=8")
    return out + VARIANTS.get(variant, []) + list(extra)


def build_shared_cache(pool_dir: str | Path, root: str | Path, extra: list[str] = ()):
    """Encode every pool clip once under ``root`` (``FeatureCache`` layout); returns (root, seconds, cache)."""
    from ser_models.data import Pool
    from ser_models.encoders import build_encoder
    from ser_models.encoders.functionals import reads_functionals
    from ser_models.scoring.cache_keys import cache_states, feature_cache_key
    from ser_models.scoring.feature_cache import FeatureCache

    cfg = job_config(pool_dir, Path(root).parent / "unused", run_overrides("random", 0, FRACTIONS, extra))
    encoder = build_encoder(cfg.model.encoder)
    cache = FeatureCache(root, feature_cache_key(Pool.open(pool_dir), encoder, cfg.active.scorer),
                         states=cache_states(cfg.model, encoder, cfg.active.feature_cache_layers),
                         functionals="egemaps" if reads_functionals(cfg.model) else None)
    t0 = time.perf_counter()
    cache.build(Pool.open(pool_dir).dataset(None), cfg.model, encoder.num_layers,
                dataclasses.replace(cfg.active.scorer, num_cpus=THREADS), verbose=False, in_process=True)
    return Path(root), time.perf_counter() - t0, cache


def run_one(pool_dir: str | Path, output_dir: str | Path, cache_root: Path, strategy: str, seed: int,
            fractions: list[float], extra: list[str] = (), metric: str = "ua") -> list[dict]:
    """One AL run (fresh folder sharing ``cache_root``; ``ser_models.runs.simulation.run_simulation``, the runner
    of ``jobs.evidence``); one record per round (``test_ua`` / ``dev_ua`` hold ``metric``: UA, or the mean CCC
    for ``--task avd``)."""
    from ser_models.data import Pool
    from ser_models.runs.simulation import run_simulation

    output_dir = Path(output_dir)
    scratch(output_dir)
    output_dir.mkdir(parents=True)
    os.symlink(cache_root.absolute(), output_dir / "feature_cache")
    cfg = job_config(pool_dir, output_dir, run_overrides(strategy, seed, fractions, extra))
    result = run_simulation(Pool.open(cfg.pool_dir), cfg.output_dir, cfg.model, cfg.train, cfg.scaling, cfg.active,
                            plots=True)
    reports, wall = result.reports, result.seconds
    return [{"strategy": strategy, "seed": seed, "fraction": fractions[i], "labelled": r.labelled,
             "test_ua": r.test[metric], "dev_ua": r.dev[metric], "round_s": sum(r.seconds.values()), "run_s": wall,
             "kappa": (r.stopping or {}).get("kappa"), "pseudo": (r.pseudo_labels or {}).get("clips"),
             "pseudo_accuracy": (r.pseudo_labels or {}).get("accuracy"),
             "feature_norm": (r.features or {}).get("feature_norm"),
             "functionals": (r.features or {}).get("functionals")}
            for i, r in enumerate(reports)]


def probe_records(work: Path, cache, pool_dir, task: str, seeds: list[int], fractions: list[float],
                  layer: int) -> list[dict]:
    """The probe's test UA on the labelled sets of every random run (same seeds, same rounds) and on all labels.

    Args:
        work: the benchmark's work folder (``<task>_random_s<seed>`` run folders).
        cache: the shared ``FeatureCache``.
        layer: the hidden state the probe reads (the recipe's ``model.featurizer_layer``).

    Returns:
        One record per (seed, fraction) with ``strategy="probe"`` and ``test_ua``; fraction 1.0 = all labels.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ser_models.data import LabelLedger, Pool
    from ser_models.scoring.cache_rows import features_array

    pool = Pool.open(pool_dir)
    table = cache.table()
    feats = features_array(table.column("features"), cache.shape)[:, layer]
    row = {u: i for i, u in enumerate(table.column("utt_id").to_pylist())}
    meta = pool.metadata(columns=["utt_id", "label", "split"])
    label = dict(zip(meta.utt_id, meta.label))
    test = [u for u, s in zip(meta.utt_id, meta.split) if s == "test"]
    train_all = [u for u, s in zip(meta.utt_id, meta.split) if s == "train"]

    def ua(ids: list[str]) -> float:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=5000, class_weight="balanced"))
        clf.fit(feats[[row[u] for u in ids]], [label[u] for u in ids])
        return float(balanced_accuracy_score([label[u] for u in test], clf.predict(feats[[row[u] for u in test]])))

    out = []
    for seed in seeds:
        ledger = LabelLedger(work / f"{task}_random_s{seed}" / "labels" / "ledger.parquet")
        for r, fraction in enumerate(fractions):
            ids = sorted(ledger.as_of(r).ids())
            out.append({"strategy": "probe", "seed": seed, "fraction": fraction, "labelled": len(ids),
                        "test_ua": ua(ids), "dev_ua": float("nan"), "round_s": 0.0, "run_s": 0.0})
        out.append({"strategy": "probe", "seed": seed, "fraction": 1.0, "labelled": len(train_all),
                    "test_ua": ua(train_all), "dev_ua": float("nan"), "round_s": 0.0, "run_s": 0.0})
    return out


def aggregate(records: list[dict]) -> pd.DataFrame:
    """Per (strategy, fraction): the test metric's mean and 95 % t-interval over seeds, and the paired
    difference to random under the same seeds (``ser_models.planning.evidence.budget_table``).

    Args:
        records: one dict per (strategy, seed, fraction) with ``test_ua``, ``dev_ua``, ``round_s``, ``run_s``.

    Returns:
        One row per (strategy, fraction): ``seeds``, ``test_mean/low/high``, ``dev_mean``, ``round_s``,
        ``run_s``, ``diff/diff_low/diff_high/p`` (NaN without random) and ``beats_random``: the paired
        difference's 95 % interval lies above 0.
    """
    from ser_models.planning.evidence import budget_table

    df = pd.DataFrame(records)
    stats = budget_table(df, "random", metric="test_ua", budget="fraction")
    stats = stats.rename(columns={"mean": "test_mean", "low": "test_low", "high": "test_high"})
    extra = df.groupby(["strategy", "fraction"], sort=False).agg(
        dev_mean=("dev_ua", "mean"), round_s=("round_s", "mean"), run_s=("run_s", "mean")).reset_index()
    out = stats.merge(extra, on=["strategy", "fraction"])
    for col in ("diff", "diff_low", "diff_high", "p"):
        if col not in out:
            out[col] = np.nan
    out["beats_random"] = out["diff_low"].fillna(-1) > 0
    return out


def _paired(r) -> str:
    """A row's paired difference to random, ``+0.020 [-0.010, +0.050] (p=0.231)``; ``-`` for random itself."""
    from ser_models.planning.evidence import format_ci

    if r.strategy == "random" or pd.isna(r.get("diff")):
        return "-"
    return f"{format_ci(r['diff'], r.diff_low, r.diff_high, signed=True)} (p={r.p:.3f})"


def efficiency_tables(records: list[dict], full: dict[int, float] | None, metric: str = "UA") -> str:
    """AUBC per strategy (mean, 95 % CI, paired difference to random) and the label savings (labels to reach
    random's largest-budget value and 95 % of all labels, interpolated per seed), as Markdown."""
    from ser_models.planning.evidence import aubc_table, format_ci, label_savings

    df = pd.DataFrame(records)
    rows = []
    for _, r in aubc_table(df, "random", budget="fraction").iterrows():
        rows.append([r.strategy, format_ci(r["mean"], r.low, r.high), _paired(r)])
    aubc_md = md_table(["strategy", f"AUBC (test {metric})", "minus random, paired"], rows)
    rows = []
    savings = label_savings(df, "random", full=full, budget="labelled")
    for _, r in savings.iterrows():
        def reached(value, count, seeds=r.seeds):
            return "not reached" if count == 0 else f"{value:.0f} ({count}/{seeds} seeds)"
        rows.append([r.strategy, reached(r.to_baseline, r.to_baseline_reached),
                     "-" if pd.isna(r.saving) else f"{100 * r.saving:+.0f} %", reached(r.to_full, r.to_full_reached)])
    savings_md = md_table(["strategy", "labels to reach random's largest-budget value", "labels saved",
                           f"labels to reach 95 % of all-labels {metric}"], rows)
    return f"{aubc_md}\n\nLabel savings (per seed, interpolated between rounds; mean over the seeds that reach it):\n\n{savings_md}"


def write_runs_csv(records: list[dict], path: str | Path) -> Path:
    """One row per (strategy, seed, round): ``strategy, seed, round, labelled, fraction, test_ua`` and the rest."""
    df = pd.DataFrame(records)
    df.insert(2, "round", df.groupby(["strategy", "seed"], sort=False).cumcount())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def plot(summary: pd.DataFrame, full: dict | None, path: str | Path, metric: str = "UA") -> Path:
    """Test UA (mean, std band) vs labelled fraction per strategy; full-data UA as a dashed line. Small PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, rows in summary.groupby("strategy", sort=False):
        x = 100 * rows.fraction.to_numpy()
        style = {"color": "black", "linewidth": 2.2} if name == "random" else {"linewidth": 1.2}
        line, = ax.plot(x, rows.test_mean, marker="o", markersize=3, label=name, **style)
        if rows.test_low.notna().all():  # 95 % t-interval over seeds
            ax.fill_between(x, rows.test_low, rows.test_high, color=line.get_color(), alpha=0.15, linewidth=0)
    if full:
        ax.axhline(full["test_mean"], linestyle="--", color="gray", label="100 % labels")
    ax.set_xlabel("labelled share of the training pool (%)")
    ax.set_ylabel(f"test {metric} (mean, 95 % CI over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def signals_table(records: list[dict]) -> str:
    """Per strategy and round: the stopping signal (kappa between this round's and the previous round's
    predictions on the stop set) and, for semi-supervised runs, how many pseudo-labels trained and how many
    were right (the simulated oracle's truth; reported only)."""
    df = pd.DataFrame(records)
    if df.empty or "kappa" not in df:
        return ""
    rows = []
    for (strategy, fraction), g in df.groupby(["strategy", "fraction"], sort=False):
        k = g.kappa.dropna()
        p = g.pseudo.dropna() if "pseudo" in g else pd.Series(dtype=float)
        acc = g.pseudo_accuracy.dropna() if "pseudo_accuracy" in g else pd.Series(dtype=float)
        rows.append([strategy, f"{100 * fraction:g}%", f"{k.mean():.3f} ± {k.std(ddof=1) if len(k) > 1 else 0:.3f}"
                     if len(k) else "-", f"{p.mean():.0f}" if len(p) else "-", f"{acc.mean():.3f}" if len(acc) else "-"])
    return ("Stopping signal and pseudo-labels per round (mean over seeds):\n\n"
            + md_table(["strategy", "labelled", "kappa vs previous round (stop set)", "pseudo-labels",
                        "pseudo-label accuracy"], rows))


def format_table(summary: pd.DataFrame, full: dict | None, metric: str = "UA",
                 probe_full: list[float] = ()) -> str:
    from ser_models.planning.evidence import format_ci, t_interval

    rows = []
    for _, r in summary.iterrows():
        rows.append([r.strategy, f"{100 * r.fraction:g}%", format_ci(r.test_mean, r.test_low, r.test_high),
                     f"{r.dev_mean:.3f}", _paired(r), "**yes**" if r.beats_random else "", f"{r.round_s:.1f}",
                     f"{r.run_s:.1f}"])
    if full:
        rows.append(["full data (all labels)", "100%", format_ci(*t_interval(full["values"])), f"{full['dev_mean']:.3f}",
                     "", "", f"{full['round_s']:.1f}", f"{full['run_s']:.1f}"])
    if len(probe_full):
        rows.append([f"probe (StandardScaler + LogisticRegression, C={PROBE_C:g})", "100%",
                     format_ci(*t_interval(probe_full)), "", "", "", "", ""])
    return md_table(["strategy", "labelled", f"test {metric} (95 % CI)", f"dev {metric}",
                     f"test {metric} - random, paired (95 % CI)", "beats random", "round s", "run wall s"], rows)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.label_efficiency", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="random + entropy, seed 0, 2 epochs; no results file")
    ap.add_argument("--pool-dir", default=str(DEFAULT_WORKDIR / "pool"), help="demo pool (built when missing)")
    ap.add_argument("--workdir", default=str(DEFAULT_WORKDIR / "label_efficiency"), help="run folders")
    ap.add_argument("--task", choices=["classes", "avd"], default="classes",
                    help="classes: the 4 emotions, UA; avd: arousal/valence/dominance alone, mean CCC")
    ap.add_argument("--strategies", nargs="+", default=None, help="default: every strategy of the task")
    ap.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    ap.add_argument("--fractions", nargs="+", type=float, default=FRACTIONS + [1.0],
                    help="labelled shares of the training split, one AL round each; 1.0 = an all-labels run "
                         "per seed (the ceiling and the 95 %% target of the label savings)")
    ap.add_argument("--runs", default=None, help="write one CSV row per (strategy, seed, round): strategy, seed, "
                    "round, labelled, fraction, test_ua, dev_ua, timings (the all-labels runs as strategy 'full')")
    ap.add_argument("--epochs", type=int, default=None, help="train.optim.epochs (default: the demo's 30)")
    ap.add_argument("--encoder", default="smart-turn", help="smart-turn (the imported pretrained Whisper-tiny, "
                    "fetched and cached on first use) or any model.encoder.source, e.g. tiny-wav2vec2")
    ap.add_argument("--override", nargs="*", default=[], help="extra dotted overrides of every run, e.g. "
                    "train.lr_head=1e-3")
    ap.add_argument("--recipe", choices=list(RECIPES), default="small-label",
                    help="head recipe over the pretrained encoder (small-label: what the demo ships)")
    ap.add_argument("--corpus", default="the demo pool (synthetic, jobs.make_demo_pool)",
                    help="how the results file names the pool")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--plot", default="", help="default: beside --results, same name, .png (a run with its own "
                    "--results never overwrites another benchmark's plot)")
    args = ap.parse_args(argv)
    avd = args.task == "avd"
    metric_key, metric = ("ccc", "CCC") if avd else ("ua", "UA")
    if args.strategies is None:
        args.strategies = AVD_STRATEGIES if avd else STRATEGIES
    if avd and args.results == str(RESULTS):
        args.results = str(RESULTS_DIR / "label_efficiency_avd.md")
    args.plot = args.plot or (str(Path(args.results).with_suffix(".png")) if args.results else "")
    if args.quick:
        args.strategies, args.seeds, args.epochs = ["random", "mc_variance" if avd else "entropy"], [0], 2
    fractions = sorted(f for f in args.fractions if f < 1.0)
    with_full = 1.0 in args.fractions
    if not fractions or any(not 0 < f <= 1 for f in args.fractions):
        ap.error(f"--fractions must lie in (0, 1] and include at least one below 1.0, got {args.fractions}")
    extra = encoder_overrides(args.encoder) + (RECIPES[args.recipe] if args.encoder == "smart-turn" else [])
    extra += [f"train.optim.epochs={args.epochs}"] if args.epochs else []
    extra += AVD_OVERRIDES if avd else []
    extra += list(args.override)
    import torch

    torch.set_num_threads(THREADS)
    pool_dir = ensure_pool(args.pool_dir)
    work = claim_workdir(args.workdir)
    init_ray(2)
    load = LoadWindow()
    t_all = time.perf_counter()
    cache_root, build_s, cache = build_shared_cache(pool_dir, work / "shared_cache", extra)
    records, full_records = [], []
    for seed in args.seeds:
        for strategy in args.strategies:
            recs = run_one(pool_dir, work / f"{args.task}_{strategy}_s{seed}", cache_root, strategy, seed, fractions,
                           extra, metric_key)
            records += recs
            print(f"  seed {seed} {strategy:<20} " + "  ".join(f"{100 * r['fraction']:g}%: {r['test_ua']:.3f}"
                                                            for r in recs) + f"  ({recs[0]['run_s']:.1f} s)",
                  flush=True)
        if with_full:
            full_records += [{**r, "strategy": "full"} for r in run_one(
                pool_dir, work / f"{args.task}_full_s{seed}", cache_root, "random", seed, [1.0], extra, metric_key)]
            print(f"  seed {seed} full data: test {metric} {full_records[-1]['test_ua']:.3f}", flush=True)
    layer = next((int(o.split("=", 1)[1]) for o in extra if o.startswith("model.featurizer_layer=")
                  and o.split("=", 1)[1] not in ("null", "None")), None)
    probe = []
    if not avd and "random" in args.strategies:
        probe = probe_records(work, cache, pool_dir, args.task, args.seeds, fractions, 1 if layer is None else layer)
    total_s = time.perf_counter() - t_all
    load.close()
    summary = aggregate(records + [r for r in probe if r["fraction"] < 1.0])
    fdf = pd.DataFrame(full_records)
    full = ({"test_mean": fdf.test_ua.mean(), "values": fdf.test_ua.tolist(), "dev_mean": fdf.dev_ua.mean(),
             "round_s": fdf.round_s.mean(), "run_s": fdf.run_s.mean()} if with_full else None)
    if args.runs:
        print(f"wrote {write_runs_csv(records + full_records, args.runs)}")
    probe_full = [r["test_ua"] for r in probe if r["fraction"] == 1.0]
    table = format_table(summary, full, metric, probe_full)
    winners = summary[summary.beats_random & (summary.strategy != "probe")]
    win_text = ("; ".join(f"{r.strategy} at {100 * r.fraction:g}% ({r['diff']:+.3f})" for _, r in winners.iterrows())
                or "none")
    info = machine_info()
    n_train = int(summary.iloc[0].fraction and records[0]["labelled"] / records[0]["fraction"])
    text = "\n".join([
        "# Label-efficiency benchmark" + (": arousal / valence / dominance" if avd else ""),
        "",
        f"`python -m bench.label_efficiency --encoder {args.encoder} --task {args.task} --recipe {args.recipe}` on "
        f"{args.corpus} (~{n_train} clips in the training split; speaker-disjoint dev and test splits fixed). "
        f"Seeds {args.seeds}. Recipe overrides: `{' '.join(RECIPES[args.recipe])}`"
        + (f"; then `--override {' '.join(args.override)}` (these win)." if args.override else "."),
        *(["", "`--task avd`: `model.labels=[]`, `model.dimensions=[arousal,valence,dominance]` (regression alone, "
            "1 - CCC loss, best epoch by dev mean CCC), scored by the test mean CCC over the three dimensions; "
            "every strategy's scorer draws 8 MC-dropout samples, `informative_diverse` ranks by their variance."]
          if avd else []),
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        table,
        "",
        f"Mean [95 % t-interval] over seeds. `test {metric} - random, paired`: per seed, the strategy's test {metric} "
        "minus random's (the same initial set under a seed), mean [95 % t-interval], and the paired t-test's p. "
        "`beats random`: that interval lies above 0. `round s`: train + score + select + label of that round; "
        "`run wall s`: the whole run (all rounds, reports included), per run.",
        "",
        f"**Beat random (paired 95 % interval above 0):** {win_text}.",
        "",
        efficiency_tables(records, None if not with_full else dict(zip(fdf.seed, fdf.test_ua)), metric),
        "",
        signals_table(records),
        "",
        f"Shared cache build (once, {len(records) // len(fractions) + len(full_records)} runs reuse it): "
        f"{build_s:.1f} s. Whole benchmark: {total_s / 60:.1f} min.",
        "",
        f"![test {metric} vs labelled share]({Path(args.plot).name})",
        "",
        NOTES,
        "",
        machine_markdown(info, load),
    ])
    print("\n" + text)
    if not args.quick:
        write_results(args.results, text)
        plot(summary, full, args.plot, metric)
    return {"summary": summary, "full": full, "text": text, "records": records}


if __name__ == "__main__":
    main()
