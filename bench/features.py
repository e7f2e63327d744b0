"""Features for few labels: every feature set x normalisation, over 20 paired seeds, on one pool.

Feature sets (each block standardised on its own):

* ``whisper``: hidden state 1 of the frozen pretrained Whisper-tiny (Smart Turn v3.2), mean-pooled: the
  shipped recipe's features, read from the platform's ``FeatureCache``;
* ``egemaps``: the 88 eGeMAPS v02 functionals of openSMILE (the optional ``[opensmile]`` extra), computed
  on Ray Data actors into their own ``FeatureCache`` (``build_functionals_cache``), timed: the cost per pool hour;
* ``whisper+egemaps``: both blocks side by side.

Normalisations: ``pool`` (mean / std over the training split's clips, labelled or not) and ``speaker``
(each clip by its speaker's statistics over the whole pool, shrunk toward the pool's with k = 10 clips:
``ser_models.encoders.speaker_norm``, the platform's rule). No label is read by either.

The learner is the recipe's: balanced-class logistic regression with C chosen by 5-fold stratified CV on
the labelled clips from ``train.l2_c_grid`` (scikit-learn, the same objective as ``train.solver=lbfgs
train.l2_c=auto``). Random sampling; under a seed every setting labels the same clips (nested budgets), so
differences are paired. ``auto`` is the rule ``model.feature_norm=auto`` applies, widened to the functionals:
at every budget it picks, among whisper / whisper+egemaps x pool / speaker, the setting with the best CV
score on the labelled clips (ties to the simpler one), never the dev or test split.

    python -m bench.features --pool-dir POOL --workdir WORK --seeds $(seq 0 19) \\
        --corpus "..." --results bench/results/features_X.md --runs bench/results/features_X_runs.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import (
    LoadWindow,
    claim_workdir,
    encoder_overrides,
    init_ray,
    machine_info,
    machine_markdown,
)

SETS = ("whisper", "egemaps", "whisper+egemaps")
NORMS = ("pool", "speaker")
#: What ``auto`` chooses among (simplest first: ties go to the earlier one).
AUTO_CANDIDATES = ("whisper/pool", "whisper/speaker", "whisper+egemaps/pool", "whisper+egemaps/speaker")
BASELINE = "whisper/pool"  # the shipped recipe
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
SHRINK_CLIPS = 10.0
LAYER = 1


def standardised_blocks(cache_rows: dict[str, np.ndarray], speakers: list, train: np.ndarray) -> dict[str, np.ndarray]:
    """``{"<block>/<norm>": [N, D]}`` for every block and normalisation (rows in ``ids`` order)."""
    from ser_models.encoders.speaker_norm import SpeakerMoments

    out = {}
    for block, rows in cache_rows.items():
        mean, std = rows[train].mean(axis=0), rows[train].std(axis=0)
        out[f"{block}/pool"] = (rows - mean) / np.where(std > 1e-8, std, 1.0)
        moments = SpeakerMoments()
        moments.add(rows[:, None, :], speakers)  # every clip of the pool, every split: no labels
        normed, _ = moments.result(SHRINK_CLIPS).normalise(rows[:, None, :], speakers)
        out[f"{block}/speaker"] = normed[:, 0, :]
    return out


def fit_cv(x: np.ndarray, y: np.ndarray, seed: int):
    """The recipe's learner: C by stratified k-fold CV (balanced accuracy), then a fit on every labelled clip.
    Returns ``(model, best CV score)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    folds = int(min(5, np.bincount(np.unique(y, return_inverse=True)[1]).min()))
    best_c, best = C_GRID[-1], -1.0
    if folds >= 2:
        for c in C_GRID:
            scores = []
            for a, b in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
                m = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(x[a], y[a])
                scores.append(balanced_accuracy_score(y[b], m.predict(x[b])))
            if np.mean(scores) > best + 1e-9:
                best_c, best = c, float(np.mean(scores))
    return LogisticRegression(C=best_c, max_iter=2000, class_weight="balanced").fit(x, y), best


def run(pool_dir: str, workdir: Path, seeds: list[int], fractions: list[float]) -> tuple[pd.DataFrame, dict]:
    from sklearn.metrics import balanced_accuracy_score

    from bench.label_efficiency import build_shared_cache
    from ser_models.data import Pool
    from ser_models.scoring.cache_rows import features_array
    from ser_models.scoring.functionals_cache import build_functionals_cache

    pool = Pool.open(pool_dir)
    meta = pool.metadata(columns=["utt_id", "label", "split", "speaker", "duration"]).sort_values("utt_id")
    ids = meta["utt_id"].astype(str).tolist()
    timings = {}
    t0 = time.perf_counter()
    _, _, whisper_cache = build_shared_cache(pool_dir, workdir / "feature_cache", encoder_overrides("smart-turn"))
    timings["whisper_cache_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    functionals = build_functionals_cache(workdir / "functionals_cache", pool, pool.dataset(None), verbose=False,
                                          in_process=True, total=len(ids))
    timings["egemaps_s"] = time.perf_counter() - t0
    timings["pool_hours"] = float(meta["duration"].sum()) / 3600
    rows = {}
    for name, cache, take in (("whisper", whisper_cache, lambda f: f[:, LAYER]), ("egemaps", functionals,
                                                                                   lambda f: f[:, 0])):
        table = cache.table()
        order = pd.Index(table.column("utt_id").to_pylist()).get_indexer(ids)
        rows[name] = take(features_array(table.column("features"), cache.shape))[order].astype(np.float64)
    split = meta["split"].to_numpy()
    train = split == "train"
    blocks = standardised_blocks(rows, meta["speaker"].tolist(), train)
    settings = {f"{s}/{n}": np.concatenate([blocks[f"{b}/{n}"] for b in s.split("+")], axis=1)
                for s in SETS for n in NORMS}
    labels = meta["label"].to_numpy()
    train_idx, test_idx = np.flatnonzero(train), np.flatnonzero(split == "test")
    records = []
    t0 = time.perf_counter()

    def fit_all(chosen: np.ndarray, seed: int, fraction: float) -> None:
        fitted = {}
        for name, x in settings.items():
            model, cv = fit_cv(x[chosen], labels[chosen], seed)
            ua = balanced_accuracy_score(labels[test_idx], model.predict(x[test_idx]))
            fitted[name] = {"strategy": name, "seed": seed, "fraction": fraction, "labelled": len(chosen),
                            "test_ua": float(ua), "cv_ua": cv}
        pick = max(AUTO_CANDIDATES, key=lambda n: (fitted[n]["cv_ua"], -AUTO_CANDIDATES.index(n)))
        records.extend([*fitted.values(), {**fitted[pick], "strategy": "auto", "picked": pick}])

    for seed in seeds:
        order = np.random.default_rng([seed, 0]).permutation(train_idx)
        for fraction in [f for f in fractions if f < 1.0]:
            fit_all(np.sort(order[:max(int(round(fraction * len(train_idx))), 8)]), seed, fraction)
        print(f"seed {seed}: done ({time.perf_counter() - t0:.0f}s)", flush=True)
    if 1.0 in fractions:  # every label: the same clips under every seed, so fitted once (seed 0's CV folds)
        fit_all(train_idx, seeds[0], 1.0)
    timings["fits_s"] = time.perf_counter() - t0
    return pd.DataFrame(records), timings


def report(runs: pd.DataFrame, timings: dict, corpus: str, seeds: list[int], load: LoadWindow) -> str:
    from ser_models.planning.evidence import aubc_table, budget_table, format_ci

    curves = runs[runs.fraction < 1.0]
    full = runs[runs.fraction >= 1.0].set_index("strategy")
    table = budget_table(curves, baseline=BASELINE, budget="fraction")
    aubcs = aubc_table(curves, baseline=BASELINE) if curves.fraction.nunique() > 1 else None
    fractions = sorted(curves.fraction.unique())
    names = [f"{s}/{n}" for s in SETS for n in NORMS] + ["auto"]
    head = ("| setting | " + " | ".join(f"{100 * f:g} %" for f in fractions) + (" | AUBC" if aubcs is not None else "")
            + (" | all labels |" if len(full) else " |"))
    lines = [head, "|" + "---|" * (len(fractions) + 1 + (aubcs is not None) + bool(len(full)))]
    for name in names:
        cells = []
        for f in fractions:
            r = table[(table.strategy == name) & (table.fraction == f)].iloc[0]
            cell = format_ci(r["mean"], r["low"], r["high"])
            if name != BASELINE and "diff" in r and pd.notna(r.get("diff")):
                cell += f"; {100 * r['diff']:+.1f} [{100 * r['diff_low']:+.1f}, {100 * r['diff_high']:+.1f}]"
            cells.append(cell)
        if aubcs is not None:
            r = aubcs[aubcs.strategy == name].iloc[0]
            cells.append(format_ci(r["mean"], r["low"], r["high"]) + (
                f"; {100 * r['diff']:+.1f} [{100 * r['diff_low']:+.1f}, {100 * r['diff_high']:+.1f}]"
                if name != BASELINE and pd.notna(r.get("diff")) else ""))
        if len(full):
            cells.append(f"{full.loc[name, 'test_ua']:.3f}" + (f" ({full.loc[name, 'picked']})" if name == "auto" else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    picks = curves[curves.strategy == "auto"].groupby("fraction")["picked"].value_counts().unstack(fill_value=0)
    pick_lines = ["| labelled | " + " | ".join(picks.columns) + " |", "|---|" + "---|" * len(picks.columns)]
    pick_lines += [f"| {100 * f:g} % | " + " | ".join(str(int(v)) for v in picks.loc[f]) + " |" for f in picks.index]
    per_hour = timings["egemaps_s"] / max(timings["pool_hours"], 1e-9)
    return "\n".join([
        "# Features for few labels: feature set x normalisation, paired seeds", "",
        f"`python -m bench.features` on {corpus}. Seeds {seeds[0]}-{seeds[-1]} ({len(seeds)}), random sampling, "
        "the same clips per seed in every setting.", "",
        "Test UA, mean [95 % CI] over seeds; then the paired difference to `whisper/pool` (the shipped recipe) in "
        "points [95 % CI]; AUBC over the budgets below 100 %. All labels: one fit (the same clips under every "
        "seed).", "", *lines, "",
        "What `auto` (best CV score on the labelled clips among whisper and whisper+egemaps, pool or speaker "
        "statistics) picked, seeds per budget:", "", *pick_lines, "",
        f"Cost: eGeMAPS functionals of {timings['pool_hours']:.2f} h of audio in {timings['egemaps_s']:.0f} s on one "
        f"process (in_process actor pool), **{per_hour:.0f} s per pool hour**; the Whisper layer-1 cache took "
        f"{timings['whisper_cache_s']:.0f} s; all fits {timings['fits_s']:.0f} s.", "",
        machine_markdown(machine_info(), load), ""])


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool-dir", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(20)))
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4, 1.0])
    ap.add_argument("--corpus", default="the pool")
    ap.add_argument("--results", default="")
    ap.add_argument("--runs", default="")
    args = ap.parse_args(argv)
    init_ray()
    load = LoadWindow()
    runs, timings = run(args.pool_dir, claim_workdir(args.workdir), args.seeds, args.fractions)
    load = load.close()
    text = report(runs, timings, args.corpus, args.seeds, load)
    print(text)
    if args.results:
        Path(args.results).write_text(text)
    if args.runs:
        runs.to_csv(args.runs, index=False)
    return runs


if __name__ == "__main__":
    main()
