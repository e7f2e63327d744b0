"""Test sets drawn by whole recordings vs at most N segments per recording: the UA interval for the same labels.

    python -m bench.eval_sets [--workdir /tmp/ser_bench_eval_sets] [--episodes 60 --calls 20] [--draws 100]

1. ``jobs.make_demo_archive``: generated podcast-like episodes (5-9 min) and two-channel 8 kHz calls (3-6 min),
   emotions neutral 0.7, happy 0.12, angry 0.1, sad 0.08. All speech is generated.
2. The segments are the generator's speech regions (``truth.csv``: recording, channel, speaker, emotion).
3. A fixed classifier: a class-balanced logistic regression on log-mel statistics (40 bands, mean and standard
   deviation over frames), fitted on the segments of a seeded third of the recordings. It is not the platform's
   model; what matters here is that its errors cluster by recording (noise floor, channel, speakers) as a real
   model's do.
4. The other recordings are the pool the evaluation sets are drawn from, with the loop's own draw
   (``draw_evaluation_sets``, ``disjoint_by=recording``): for each test size and each way of drawing (whole
   recordings, ``max_per_unit`` N), ``--draws`` seeded draws. For each drawn set: its UA, the 95 % bootstrap
   interval over its recordings (units resampled with replacement, ``--boot`` times) and how many recordings
   and held-out segments it has.

Reported per row: mean recordings, mean bootstrap half-width, the realised half-width (1.96 x the standard
deviation of UA over the draws: how far one test set's UA lands from another's, what the bootstrap estimates),
the planner's formula at the measured ICC, and the segments held out of training. Results:
``bench/results/eval_sets_max_per_unit.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import (
    REPO,
    RESULTS_DIR,
    LoadWindow,
    claim_workdir,
    machine_info,
    machine_markdown,
    md_table,
    write_results,
)

RESULTS = RESULTS_DIR / "eval_sets_max_per_unit.md"
LABELS = ["neutral", "happy", "angry", "sad"]
PRIOR = "0.7,0.12,0.1,0.08"


def _mel_filters(sr: int = 16000, n_fft: int = 512, bands: int = 40) -> np.ndarray:
    """``[bands, n_fft // 2 + 1]`` triangular mel filters (HTK mel scale)."""
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    hz = 700 * (10 ** (np.linspace(mel(0), mel(sr / 2), bands + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / sr)
    fb = np.zeros((bands, bins.size))
    for b in range(bands):
        lo, mid, hi = hz[b], hz[b + 1], hz[b + 2]
        fb[b] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)
    return fb


def features(wav: np.ndarray, fb: np.ndarray, n_fft: int = 512, hop: int = 480) -> np.ndarray:
    """``[2 * bands + 2]``: mean and standard deviation over frames every 30 ms of the log-mel energies, and of the
    frame log-energy's first difference (a crude rhythm cue)."""
    if wav.size < n_fft:
        wav = np.pad(wav, (0, n_fft - wav.size))
    frames = np.lib.stride_tricks.sliding_window_view(wav, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # [T, F]
    logmel = np.log(power @ fb.T + 1e-8)  # [T, bands]
    energy = np.log(power.sum(axis=1) + 1e-8)
    d = np.diff(energy) if energy.size > 1 else np.zeros(1)
    return np.concatenate([logmel.mean(0), logmel.std(0), [d.std(), np.abs(d).mean()]])


def segment_table(archive: Path) -> pd.DataFrame:
    """The generator's speech regions with an emotion, one row per segment, with their features."""
    from ser_models.data.audio import load_clip

    truth = pd.read_csv(archive / "truth.csv").rename(columns={"label": "emotion", "recording": "recording_id"})
    recs = pd.read_csv(archive / "recordings.csv").rename(columns={"recording": "recording_id"})
    truth = truth[truth["emotion"].isin(LABELS)].reset_index(drop=True)
    path_of = dict(zip(recs["recording_id"], recs["path"]))
    fb = _mel_filters()
    feats, t0 = [], time.perf_counter()
    for (rec, channel), g in truth.groupby(["recording_id", "channel"], sort=False, dropna=False):
        path = path_of[rec]
        path = path if Path(path).is_absolute() else str(archive / path)
        ch = None if pd.isna(channel) else int(channel)
        wav, _, _ = load_clip(path, channel=ch)
        for i, row in g.iterrows():
            a, b = int(row["start"] * 16000), int(row["end"] * 16000)
            feats.append((i, features(wav[a:b].astype(np.float32), fb)))
    print(f"features of {len(feats)} segments in {time.perf_counter() - t0:.0f} s", flush=True)
    order = [i for i, _ in feats]
    x = np.stack([f for _, f in feats])
    out = truth.loc[order].reset_index(drop=True)
    out["x"] = list(x)
    return out


def fit_and_predict(segs: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, float]:
    """Fit on a seeded third of the recordings, predict the rest: ``(held-out segments with `correct`,
    their UA)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    recs = np.array(sorted(segs["recording_id"].unique()))
    rng = np.random.default_rng(seed)
    train_recs = set(rng.permutation(recs)[: len(recs) // 3])
    train = segs[segs["recording_id"].isin(train_recs)]
    held = segs[~segs["recording_id"].isin(train_recs)].copy()
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000))
    clf.fit(np.stack(train["x"]), train["emotion"])
    held["pred"] = clf.predict(np.stack(held["x"]))
    held["correct"] = (held["pred"] == held["emotion"]).astype(float)
    return held, ua(held["emotion"].to_numpy(), held["correct"].to_numpy())


def ua(labels: np.ndarray, correct: np.ndarray) -> float:
    """Mean per-class recall over the classes present."""
    return float(np.mean([correct[labels == c].mean() for c in LABELS if (labels == c).any()]))


def anova_icc(groups: pd.Series, y: pd.Series) -> float:
    """One-way ANOVA estimate of the intra-cluster correlation of ``y`` within ``groups`` (unequal sizes)."""
    df = pd.DataFrame({"g": groups.to_numpy(), "y": y.to_numpy(dtype=float)})
    n, k = len(df), df["g"].nunique()
    sizes = df.groupby("g").size()
    means = df.groupby("g")["y"].mean()
    grand = df["y"].mean()
    msb = float((sizes * (means - grand) ** 2).sum() / (k - 1))
    msw = float(((df["y"] - df["g"].map(means)) ** 2).sum() / (n - k))
    m0 = (n - (sizes**2).sum() / n) / (k - 1)
    return (msb - msw) / (msb + (m0 - 1) * msw)


def bootstrap_half_width(units: np.ndarray, labels: np.ndarray, correct: np.ndarray, boot: int,
                         rng: np.random.Generator) -> float:
    """Half the central 95 % range of UA over ``boot`` resamples of the set's units (with replacement)."""
    codes, inverse = np.unique(units, return_inverse=True)
    k = np.array([LABELS.index(c) for c in labels])
    n = np.zeros((codes.size, len(LABELS)))
    r = np.zeros_like(n)
    np.add.at(n, (inverse, k), 1)
    np.add.at(r, (inverse, k), correct)
    w = rng.multinomial(codes.size, np.full(codes.size, 1 / codes.size), size=boot).astype(float)  # [B, U]
    tot, hit = w @ n, w @ r  # [B, K]
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = np.where(tot > 0, hit / tot, np.nan)
    uas = np.nanmean(rec, axis=1)
    lo, hi = np.nanquantile(uas, [0.025, 0.975])
    return float(hi - lo) / 2


def measure(held: pd.DataFrame, sizes: list[int], caps: list[int], draws: int, boot: int) -> pd.DataFrame:
    """One row per (test size, cap, draw): UA, bootstrap half-width, recordings, held-out segments."""
    from ser_models.exceptions import PoolExhaustedError
    from ser_models.planning.evaluation_sets import EvaluationConfig, draw_evaluation_sets

    clips = pd.DataFrame({"utt_id": held["seg"].astype(str), "duration": held["end"] - held["start"],
                          "recording": held["recording_id"].astype(str), "speaker": held["speaker"].astype(str)})
    by_id = held.set_index(clips["utt_id"].to_numpy())
    per_rec = clips.groupby("recording").size()
    rows = []
    for size in sizes:
        for cap in caps:
            for seed in range(draws):
                cfg = EvaluationConfig(test_size=size, dev_size=0, disjoint_by="recording", stratify="none",
                                       max_per_unit=cap)
                try:
                    sel, summary = draw_evaluation_sets(clips, cfg, seed)
                except PoolExhaustedError:  # too few recordings for this size at this cap
                    break
                got = by_id.loc[sel["utt_id"]]
                labels, correct = got["emotion"].to_numpy(), got["correct"].to_numpy()
                rng = np.random.default_rng([seed, size, cap])
                recs = sel["unit"].str.split("=", n=1).str[1]
                rows.append({"size": size, "max_per_unit": cap, "seed": seed, "clips": len(sel),
                             "recordings": int(recs.nunique()), "ua": ua(labels, correct),
                             "boot_hw": bootstrap_half_width(recs.to_numpy(), labels, correct, boot, rng),
                             "held_out": int(per_rec[recs.unique()].sum()),
                             "cluster_size": summary["composition"]["test"]["cluster_size"]})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.eval_sets", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default="/tmp/ser_bench_eval_sets")
    p.add_argument("--episodes", type=int, default=60)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--draws", type=int, default=100)
    p.add_argument("--boot", type=int, default=300)
    p.add_argument("--sizes", type=int, nargs="+", default=[200, 400])
    p.add_argument("--caps", type=int, nargs="+", default=[0, 20, 10, 5])
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    w = claim_workdir(args.workdir)
    load, info, seconds = LoadWindow(), machine_info(), {}
    archive = w / "archive"
    t0 = time.perf_counter()
    if not (archive / "recordings.csv").exists():
        subprocess.run([sys.executable, "-m", "jobs.make_demo_archive", str(archive), "--episodes",
                        str(args.episodes), "--calls", str(args.calls), "--episode-minutes", "5", "9",
                        "--call-minutes", "3", "6", "--class-prior", PRIOR, "--seed", "0", "--workers", "2"],
                       cwd=REPO, check=True)
    seconds["archive"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cache = w / "segments.pkl"
    segs = pd.read_pickle(cache) if cache.exists() else segment_table(archive)
    segs.to_pickle(cache)
    segs["seg"] = np.arange(len(segs))
    seconds["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    held, held_ua = fit_and_predict(segs)
    icc = anova_icc(held["recording_id"], held["correct"])
    rows = measure(held, args.sizes, args.caps, args.draws, args.boot)
    seconds["draws"] = time.perf_counter() - t0
    load.close()
    rows.to_csv(Path(args.results).with_name(Path(args.results).stem + "_draws.csv"), index=False)

    from ser_models.planning.ua_precision import kish_design_effect, ua_half_width

    shares = held["emotion"].value_counts(normalize=True).reindex(LABELS).to_numpy()
    recalls = np.array([held.loc[held["emotion"] == c, "correct"].mean() for c in LABELS])
    table = []
    for (size, cap), g in rows.groupby(["size", "max_per_unit"], sort=False):
        m = float(g["cluster_size"].mean())  # the set's clips' mean segments per recording
        formula = ua_half_width(size, shares, recalls, 1.96, kish_design_effect(m, max(icc, 0.0)))
        table.append([size, "whole recordings" if cap == 0 else f"max_per_unit={cap}",
                      f"{g['clips'].mean():.0f}", f"{g['recordings'].mean():.1f}", f"{m:.1f}",
                      f"{g['boot_hw'].mean():.3f}", f"{1.96 * g['ua'].std(ddof=1):.3f}", f"{formula:.3f}",
                      f"{g['held_out'].mean():.0f}"])
    per_rec = held.groupby("recording_id").size()
    text = "\n\n".join([
        "# Evaluation sets: whole recordings vs at most N segments per recording",
        machine_markdown(info, load),
        "All speech here is generated (`jobs.make_demo_archive`): these are not figures on real speech.",
        f"Archive: {args.episodes} episodes (5-9 min) and {args.calls} two-channel calls (3-6 min), emotions "
        f"drawn {PRIOR} ({', '.join(LABELS)}); {len(segs)} speech segments with an emotion (the generator's "
        f"regions). The classifier (log-mel statistics, logistic regression) was fitted on the segments of "
        f"{segs['recording_id'].nunique() - held['recording_id'].nunique()} recordings; the sets are drawn from "
        f"the other {held['recording_id'].nunique()} recordings ({len(held)} segments, {per_rec.min()}-"
        f"{per_rec.max()} per recording, median {per_rec.median():.0f}), where its UA is {held_ua:.3f}. "
        f"Intra-recording correlation of being right (one-way ANOVA estimate over those segments): ICC = "
        f"{icc:.3f}.",
        f"Each row: {args.draws} seeded draws of a test set with the loop's draw (`disjoint_by=recording`, "
        f"`stratify=none`, `dev_size=0`); the bootstrap resamples the set's recordings {args.boot} times.",
        md_table(["test labels", "drawn by", "clips", "recordings", "clips per recording (clips' mean)",
                  "bootstrap half-width (mean)", "realised half-width (1.96 x SD over draws)",
                  "formula at measured ICC", "segments held out of training"], table),
        "Reading it: the realised half-width is how far the UA of one test set lands from another's for the same "
        "model; the bootstrap over recordings estimates it from one set. Segments held out of training are the "
        "price of `max_per_unit`: a drawn recording's other segments are neither labelled nor trained on.",
        f"Wall seconds: archive {seconds['archive']:.0f} (0 = reused), features {seconds['features']:.0f} "
        f"(0 = reused), fit and draws {seconds['draws']:.0f}. Per-draw rows: "
        f"`bench/results/{Path(args.results).stem}_draws.csv`.",
    ])
    write_results(args.results, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
