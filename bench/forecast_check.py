"""How well the labels forecast (:mod:`ser_models.planning.forecast`) predicts later rounds, on the committed runs.

    python -m bench.forecast_check            # writes bench/results/forecast_check.md

Reads the committed 20-seed ``*_runs.csv`` files of every in-repo pool (one row per strategy, seed and round,
with a **dev** UA per round), and for every run:

1. forecasts from its first three rounds only, as the loop does at round 2 (the third round);
2. compares with what came later: the fourth round's dev UA, and the all-labels run's where the file has one
   (the same seed's, or the single all-labels run). **Coverage** is the share of those later points inside the
   forecast's 95 % prediction interval at their label counts (the bootstrap band of the curve plus the later
   point's own dev-set noise, since the check compares with a measurement, not with the true curve);
3. forecasts the labels to reach the dev UA the fourth round reached, and compares with the labels it took:
   the **error in labels** is ``forecast / actual`` (1 = exact; "never" when the fitted curve levels off
   below that UA).

The dev sets' sizes per class come from the pools' generators (``plan_corpus`` / ``plan_espeak_corpus``, which
make no audio) and, for the long-form archive, from bench/results/longform_evidence.md; a round's UA standard
error is ``sqrt(sum_k UA (1 - UA) / n_k) / K`` (the files keep UA, not per-class recalls). The 10-seed demo
file repeats the first ten seeds of the 20-seed one and is left out.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import RESULTS_DIR, LoadWindow, machine_info, machine_markdown, md_table, write_results
from ser_models.planning.forecast import forecast

RESULTS = Path(RESULTS_DIR) if not isinstance(RESULTS_DIR, Path) else RESULTS_DIR
_NEUTRAL = "neutral=0.55,happy=0.2,angry=0.1,sad=0.15"
#: (runs file, pool name, grouping columns besides strategy)
FILES = [
    ("label_efficiency_20seeds_runs.csv", "demo 720", ()),
    ("evidence_demo2880_20seeds_runs.csv", "demo 2880", ()),
    ("evidence_demo2880_20seeds_querybatch25_runs.csv", "demo 2880 (query batches of 25)", ()),
    ("features_auto_platform_demo2880_runs.csv", "demo 2880 (feature_norm/functionals auto)", ()),
    ("speaker_norm_20seeds_runs.csv", "speaker_norm", ("corpus", "feature_norm_setting")),
    ("label_efficiency_espeak20_runs.csv", "espeak 3k", ()),
    ("label_efficiency_neutral3k_runs.csv", "neutral 3k", ()),
    ("label_efficiency_espeak_neutral3k_runs.csv", "espeak neutral 3k", ()),
    ("longform_evidence_runs.csv", "long-form archive", ()),
]
FULL = ("full", "all-labels")


def dev_class_counts() -> dict[str, list[int]]:
    """Dev clips per class of each pool, from the generators' plans (no audio is made)."""
    from ser_models.data.espeak_corpus import plan_espeak_corpus
    from ser_models.data.synth.corpus import parse_class_prior, plan_corpus

    def dev(specs) -> list[int]:
        return list(Counter(s.emotion for s in specs if s.speaker.split == "dev").values())

    prior = parse_class_prior(_NEUTRAL)
    return {"demo 720": dev(plan_corpus(720, 0)), "demo 2880": dev(plan_corpus(2880, 0)),
            "espeak 3k": dev(plan_espeak_corpus(3000, 0)),
            "neutral 3k": dev(plan_corpus(3000, 3, class_prior=prior)),
            "espeak neutral 3k": dev(plan_espeak_corpus(3000, 3, class_prior=prior)),
            "long-form archive": [204, 33, 29, 19]}  # longform_evidence.md: dev segments per label


def pool_of(name: str, group: tuple) -> str:
    if name == "speaker_norm":
        return "demo 2880" if group[0] == "demo" else "espeak 3k"
    return name.split(" (")[0]


def ua_se(ua: float, counts: list[int]) -> float:
    """UA's standard error with every class's recall at ``ua`` ([K] dev clips per class)."""
    p = min(max(ua, 0.02), 0.98)
    return math.sqrt(sum(p * (1 - p) / n for n in counts)) / len(counts)


def check_run(rounds: pd.DataFrame, full: pd.DataFrame | None, counts: list[int]) -> dict:
    """One run: forecast from rounds 0-2, compared with round 3 and the all-labels point."""
    first, later = rounds.iloc[:3], rounds.iloc[3:]
    n, y = first["labelled"].to_numpy(float), first["dev_ua"].to_numpy(float)
    se = [ua_se(v, counts) for v in y]
    out = {"rising": bool(y[2] > y[0]), "points": []}
    fl = forecast(n, y, se)
    for _, row in later.iterrows():
        out["points"].append(("round 3", float(row["labelled"]), float(row["dev_ua"])))
    if full is not None and len(full):
        out["points"].append(("all labels", float(full["labelled"].iloc[0]), float(full["dev_ua"].iloc[0])))
    out["covered"] = {}
    for what, nl, ua in out["points"]:
        lo, hi = fl.curve_interval([nl], se=ua_se(ua, counts))
        clo, chi = fl.curve_interval([nl])
        out["covered"][what] = (bool(lo[0] <= ua <= hi[0]), bool(clo[0] <= ua <= chi[0]), float(fl.curve(nl)) - ua,
                                float(hi[0] - lo[0]))
    if len(later):
        n3, ua3 = float(later["labelled"].iloc[-1]), float(later["dev_ua"].iloc[-1])
        ft = forecast(n, y, se, target=ua3)
        out["ratio"] = ft.labels / n3
        out["labels_covered"] = bool(ft.interval[0] <= n3 <= ft.interval[1])
        out["not_reachable"] = ft.reachable is False
        out["below_start"] = ua3 <= y.max()
    return out


def run_checks(results: Path) -> pd.DataFrame:
    counts = dev_class_counts()
    rows = []
    for fname, name, extra in FILES:
        df = pd.read_csv(results / fname)
        keys = [*extra, "strategy"]
        for group, g in df.groupby(keys, sort=False):
            group = group if isinstance(group, tuple) else (group,)
            if group[-1] in FULL:
                continue
            full_all = df[df["strategy"].isin(FULL)]
            for extra_col, v in zip(extra, group):
                full_all = full_all[full_all[extra_col] == v]
            pool = pool_of(name, group)
            for seed, run in g.groupby("seed"):
                run = run.sort_values("round")
                if len(run) < 4:
                    continue
                full = full_all[full_all["seed"] == seed] if (full_all["seed"] == seed).any() else full_all.head(1)
                r = check_run(run, full if len(full) else None, counts[pool])
                label = name if name != "speaker_norm" else f"{pool} (norm={group[1]})"
                for what, (cov, cov_curve, err, width) in r["covered"].items():
                    rows.append({"file": fname, "runs": label, "strategy": group[-1], "seed": seed, "point": what,
                                 "covered": cov, "covered_curve": cov_curve, "ua_error": err, "width": width,
                                 "rising": r["rising"], "ratio": r.get("ratio"),
                                 "labels_covered": r.get("labels_covered"),
                                 "not_reachable": r.get("not_reachable"), "below_start": r.get("below_start")})
    return pd.DataFrame(rows)


def _pct(x) -> str:
    return f"{100 * np.mean(x):.0f} %" if len(x) else "-"


def _ratio_text(r: pd.Series) -> str:
    fin = r[np.isfinite(r)]
    if not len(fin):
        return "-"
    q1, med, q3 = np.quantile(fin, [0.25, 0.5, 0.75])
    return f"{med:.2f} ({q1:.2f}-{q3:.2f})"


def tables(df: pd.DataFrame) -> str:
    r3 = df[df["point"] == "round 3"]
    full = df[df["point"] == "all labels"]
    rows = []
    for label, g in r3.groupby("runs", sort=False):
        f = full[full["runs"] == label]
        ratio = g["ratio"].astype(float)
        rows.append([label, len(g), _pct(g["covered"]), _pct(g["covered_curve"]),
                     f"{g['ua_error'].median():+.3f}", _pct(f["covered"]) if len(f) else "-",
                     f"{f['ua_error'].median():+.3f}" if len(f) else "-", _ratio_text(ratio),
                     _pct((ratio >= 0.5) & (ratio <= 2)), _pct(~np.isfinite(ratio)), _pct(g["labels_covered"])])
    ratio = r3["ratio"].astype(float)
    rows.append(["**all**", len(r3), _pct(r3["covered"]), _pct(r3["covered_curve"]), f"{r3['ua_error'].median():+.3f}",
                 _pct(full["covered"]), f"{full['ua_error'].median():+.3f}", _ratio_text(ratio),
                 _pct((ratio >= 0.5) & (ratio <= 2)), _pct(~np.isfinite(ratio)), _pct(r3["labels_covered"])])
    main = md_table(["runs", "runs (seeds x strategies)", "round 3 in 95 % PI", "round 3 in curve band",
                     "round 3 forecast - actual UA (median)", "all labels in 95 % PI",
                     "all labels forecast - actual UA (median)", "labels to reach round 3's UA: forecast / actual, "
                     "median (IQR)", "within 2x", "'never'", "actual labels in the labels interval"], rows)
    by_shape = []
    for name, mask in (("first three rounds rising (UA at round 2 > round 0)", r3["rising"]),
                       ("first three rounds not rising", ~r3["rising"]),
                       ("round 3 above the best of rounds 0-2", ~r3["below_start"].astype(bool)),
                       ("round 3 at or below the best of rounds 0-2", r3["below_start"].astype(bool))):
        g = r3[mask]
        ratio = g["ratio"].astype(float)
        by_shape.append([name, len(g), _pct(g["covered"]), _ratio_text(ratio), _pct((ratio >= 0.5) & (ratio <= 2)),
                         _pct(~np.isfinite(ratio))])
    shape = md_table(["runs where", "runs", "round 3 in 95 % PI", "forecast / actual labels, median (IQR)",
                      "within 2x", "'never'"], by_shape)
    by_strategy = []
    for s, g in r3.groupby("strategy", sort=False):
        ratio = g["ratio"].astype(float)
        by_strategy.append([s, len(g), _pct(g["covered"]), _ratio_text(ratio), _pct((ratio >= 0.5) & (ratio <= 2))])
    strat = md_table(["strategy", "runs", "round 3 in 95 % PI", "forecast / actual labels, median (IQR)",
                      "within 2x"], by_strategy)
    return main, shape, strat


def failures(df: pd.DataFrame) -> str:
    """The failure modes in words, with this run's numbers."""
    r3 = df[df["point"] == "round 3"]
    cov = r3.groupby("runs", sort=False)["covered"].mean()
    worst = cov.idxmin()
    ratio = r3["ratio"].astype(float)
    never = ~np.isfinite(ratio)
    low = r3[r3["below_start"].astype(bool)]["ratio"].astype(float)
    full = df[df["point"] == "all labels"]
    return "\n".join([
        f"- **Labels, 'never'** ({100 * never.mean():.0f} % of runs): three noisy points fix the curve's shape "
        "poorly, and a third point a little low bends the fitted curve flat below the UA round 3 then reached. "
        "The UA interval still covered round 3 in "
        f"{100 * r3[never]['covered'].mean():.0f} % of those runs: the point forecast failed, the interval "
        "mostly did not. Read the interval, and rerun the forecast as rounds come in.",
        f"- **Labels, too many or too few**: only {100 * ((ratio >= 0.5) & (ratio <= 2)).mean():.0f} % of "
        "forecasts were within 2x of the labels it took. Where round 3's dev UA was no higher than the best of "
        f"rounds 0-2 ({len(low)} runs), the forecast said fewer labels (median {np.nanmedian(low[np.isfinite(low)]):.2f}x): "
        "the run had already measured that UA, so the 'actual' labels overstate what it needed.",
        f"- **Coverage** was lowest on {worst} ({100 * cov.min():.0f} %): its dev set has 19-33 clips in three "
        "of its four classes, and the same clips every round, so dev noise there is large and shared between "
        "rounds (a fixed offset the bootstrap treats as independent per round). Coverage of the all-labels "
        f"point (5-20x beyond the fit) was about that of round 3 (2x beyond), because the interval widens "
        f"with distance: the median 95 % interval spans {r3['width'].median():.2f} UA at round 3 and "
        f"{full['width'].median():.2f} UA at all labels, too wide to decide much there.",
        f"- **Bias**: the curves of three rounds lean low: the median forecast at round 3 was "
        f"{-r3['ua_error'].median():.3f} UA below what the run reached ({-full['ua_error'].median():.3f} at all "
        "labels). Where the dev set is large (432 clips on demo 2880) the interval is narrow and this bias "
        "shows as lower coverage (see the table).",
    ])


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="python -m bench.forecast_check", description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS), help="folder with the committed *_runs.csv files")
    ap.add_argument("--dry-run", action="store_true", help="print only")
    args = ap.parse_args(argv)
    load = LoadWindow()
    df = run_checks(Path(args.results))
    main_t, shape_t, strat_t = tables(df)
    text = "\n\n".join([
        "# Labels forecast against later rounds (committed 20-seed runs)",
        machine_markdown(machine_info(), load.close()),
        "`python -m bench.forecast_check`. " + "\n\n".join(p.replace("\n   ", " ").strip()
                                                           for p in __doc__.split("\n\n")[2:4])
        + " Every run has four rounds (labels doubling: e.g. 50/100/200/400), so round 3 lies 2x beyond the fit "
        "and the all-labels point 5-20x beyond it. Each forecast: 200 seeded bootstrap fits "
        "(ser_models.planning.forecast, dev-set noise from the pools' dev class counts).",
        "## Coverage and error in labels, per pool\n\n" + main_t,
        "PI: prediction interval (curve band plus the later measurement's dev-set noise); curve band: the "
        "bootstrap band of the curve alone. Forecast / actual labels > 1: the forecast asked for more labels "
        "than the run needed; 'never': the curve fitted to rounds 0-2 levels off below round 3's UA.",
        "## Where it fails\n\n" + shape_t + "\n\n" + failures(df),
        "## By strategy\n\n" + strat_t,
    ])
    if not args.dry_run:
        write_results(Path(args.results) / "forecast_check.md", text)
    print(text)
    return text


if __name__ == "__main__":
    main()
