"""Trimmed Whisper windows (``model.encoder.whisper_windows=trim``): what they cost in accuracy, what they save.

On a demo pool (``make demo``'s generator: ``jobs.make_demo_pool --n 2880 --seed 0``, then
``jobs.prepare_pool jobs/configs/prepare_pool_demo.yaml``), the frozen bundled encoder (Smart Turn v3.2's
Whisper-tiny) encodes every clip twice, once per mode, in length-sorted micro-batches as the scorer runs them;
the two modes take turns batch by batch, so a shared machine's load falls on both alike. Each clip keeps the
mean over its valid frames of a few hidden states (state 1 is the shipped recipe's, ``model.featurizer_layer``
in jobs/configs/demo_after.yaml; the others a middle and the last).

Then, for each of 20 seeds, the same randomly drawn training clips (400 labels by default) train the recipe's
learner in both modes (balanced-class logistic regression, C by 5-fold CV on the labelled clips: the learner of
``bench.features``) over features standardised by the training split's statistics (no labels read), and the
test split's UA (balanced accuracy) is recorded. The report gives each mode's mean UA, the paired difference
(trim - full) with a 95 % t-interval over seeds, and each mode's encode time.

Decision rule, fixed before the run: trimming holds when, at every reported state, the paired difference's
95 % interval reaches no lower than -1 UA point and does not lie wholly below zero. The test split is read for this
comparison only.

    nice -n 10 python -m bench.whisper_trim --workdir /tmp/whisper_trim   # builds the pool there if missing
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from bench.common import (
    REPO,
    RESULTS_DIR,
    LoadWindow,
    claim_workdir,
    ensure_pool,
    machine_info,
    machine_markdown,
    md_table,
    write_results,
)

RESULTS = RESULTS_DIR / "whisper_trim.md"
ENCODER = REPO / ".cache" / "encoders" / "smart-turn-v3.2-whisper-tiny"
MODES = ("full", "trim")
#: Hidden states kept per clip: the shipped recipe's (1), a middle one (2) and the last (4 of Whisper-tiny's 0-4).
STATES = (1, 2, 4)


def encode_pooled(encoders: dict, audio: list[np.ndarray], batch_size: int = 16,
                  states: tuple[int, ...] = STATES) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per-clip means over valid frames of ``states``, for each encoder, in length-sorted micro-batches.

    Args:
        encoders: mode name -> :class:`~ser_models.encoders.Encoder` (eval mode).
        audio: N float32 16 kHz waveforms.
        batch_size: clips per micro-batch.
        states: hidden-state indices to keep.

    Returns:
        ``({mode: [N, len(states), D] float32}, {mode: encode seconds})``: the modes alternate batch by batch.
    """
    import torch

    order = np.argsort([len(a) for a in audio], kind="stable")
    out = {m: None for m in encoders}
    seconds = dict.fromkeys(encoders, 0.0)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            lengths = torch.as_tensor([len(audio[i]) for i in index])
            wavs = torch.zeros(len(index), int(lengths.max()))
            for row, i in enumerate(index):
                wavs[row, : len(audio[i])] = torch.from_numpy(np.asarray(audio[i], np.float32))
            for mode, encoder in encoders.items():
                t0 = time.perf_counter()
                enc = encoder(wavs, lengths)
                valid = (torch.arange(enc.hidden_states[0].shape[1])[None] < enc.frame_lengths[:, None]).float()
                pooled = torch.stack([(enc.hidden_states[s] * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)
                                      for s in states], dim=1)  # [b, S, D]
                seconds[mode] += time.perf_counter() - t0
                if out[mode] is None:
                    out[mode] = np.zeros((len(audio), *pooled.shape[1:]), np.float32)
                out[mode][index] = pooled.numpy()
    return out, seconds


def paired_interval(diffs: np.ndarray) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of paired differences with its two-sided 95 % t-interval."""
    from scipy import stats

    diffs = np.asarray(diffs, float)
    mean = float(diffs.mean())
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs)))
    return mean, mean - half, mean + half


def holds(low: float, high: float, margin: float = 0.01) -> bool:
    """The decision rule: the interval reaches no lower than ``-margin`` and does not lie wholly below zero (an
    interval above ``+margin`` means trimming helps, which holds too)."""
    return low >= -margin and high >= 0


def probe_runs(features: dict[str, np.ndarray], labels: np.ndarray, train: np.ndarray, test: np.ndarray,
               seeds: list[int], n_labels: int) -> list[dict]:
    """Test UA of the recipe's learner per (seed, mode, state); under a seed both modes label the same clips."""
    from sklearn.metrics import balanced_accuracy_score

    from bench.features import fit_cv

    train_idx, test_idx = np.flatnonzero(train), np.flatnonzero(test)
    records = []
    for seed in seeds:
        chosen = np.sort(np.random.default_rng([seed, 0]).permutation(train_idx)[:n_labels])
        for mode, feats in features.items():
            for k, state in enumerate(STATES[: feats.shape[1]]):
                x = feats[:, k].astype(np.float64)
                mean, std = x[train_idx].mean(0), x[train_idx].std(0)
                x = (x - mean) / np.where(std > 1e-8, std, 1.0)
                model, cv = fit_cv(x[chosen], labels[chosen], seed)
                ua = balanced_accuracy_score(labels[test_idx], model.predict(x[test_idx]))
                records.append({"seed": seed, "mode": mode, "state": state, "test_ua": float(ua), "cv_ua": cv})
    return records


def load_pool(pool_dir: Path) -> tuple[list[str], list[np.ndarray], np.ndarray, np.ndarray]:
    """``(ids, waveforms, labels, splits)`` of every clip of the pool, ordered by clip id."""
    from ser_models.data import Pool
    from ser_models.data.audio import decode_pool_audio

    pool = Pool.open(pool_dir)
    fmt = pool.summary["config"]["audio_format"]
    meta = pool.metadata(columns=["utt_id", "audio", "label", "split"]).sort_values("utt_id")
    audio = [decode_pool_audio(a, fmt) for a in meta["audio"]]
    return meta["utt_id"].astype(str).tolist(), audio, meta["label"].to_numpy(), meta["split"].to_numpy()


def run(args) -> str:
    import torch

    from ser_models.encoders import EncoderConfig, build_encoder

    torch.set_num_threads(args.threads)
    pool_dir = Path(args.pool_dir) if args.pool_dir else ensure_pool(claim_workdir(args.workdir) / "pool", n=args.clips,
                                                                     seed=0, workers=2)
    ids, audio, labels, split = load_pool(pool_dir)
    encoders = {m: build_encoder(EncoderConfig(source=str(args.encoder), whisper_windows=m,
                                               whisper_trim_seconds=args.trim_seconds)).eval() for m in MODES}
    cache = claim_workdir(args.workdir) / f"pooled-{encoders['trim'].fingerprint()[:12]}-{len(ids)}.npz"
    load = LoadWindow()
    if cache.exists() and not args.reencode:
        saved = np.load(cache)
        features = {m: saved[m] for m in MODES}
        seconds = {m: float(saved[f"{m}_s"]) for m in MODES}
        assert saved["ids"].tolist() == ids, f"{cache} holds other clips"
    else:
        features, seconds = encode_pooled(encoders, audio, args.batch_size)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, ids=np.asarray(ids), **features, **{f"{m}_s": seconds[m] for m in MODES})
    load = load.close()
    t0 = time.perf_counter()
    records = probe_runs(features, labels, split == "train", split == "test", args.seeds, args.labels)
    fit_s = time.perf_counter() - t0
    return report(records, features, seconds, audio, split, args, load, fit_s, pool_dir)


def report(records, features, seconds, audio, split, args, load, fit_s, pool_dir) -> str:
    import pandas as pd

    runs = pd.DataFrame(records)
    audio_s = sum(len(a) for a in audio) / 16_000
    rows, verdicts = [], []
    for state in STATES:
        r = runs[runs.state == state].pivot(index="seed", columns="mode", values="test_ua")
        d, low, high = paired_interval((r["trim"] - r["full"]).to_numpy())
        ok = holds(low, high)
        verdicts.append(ok)
        cos = np.mean(np.sum(features["full"][:, STATES.index(state)] * features["trim"][:, STATES.index(state)], 1)
                      / (np.linalg.norm(features["full"][:, STATES.index(state)], axis=1)
                         * np.linalg.norm(features["trim"][:, STATES.index(state)], axis=1)))
        rows.append([state, f"{r['full'].mean():.3f} +- {r['full'].std(ddof=1):.3f}",
                     f"{r['trim'].mean():.3f} +- {r['trim'].std(ddof=1):.3f}",
                     f"{100 * d:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]", f"{(r['trim'] > r['full']).sum()} / "
                     f"{(r['trim'] < r['full']).sum()} / {(r['trim'] == r['full']).sum()}", f"{cos:.4f}",
                     "yes" if ok else "**no**"])
    lengths = np.array([len(a) for a in audio]) / 16_000
    time_rows = [[m, f"{seconds[m]:.0f}", f"{audio_s / seconds[m]:.0f}"] for m in MODES]
    verdict = ("**Trimming holds**: no state's paired interval reaches below -1 UA point or lies wholly below "
               "zero, so `trim` can be the default." if all(verdicts) else
               "**Trimming does not hold** on this pool: at least one state's paired interval reaches below -1 UA "
               "point or lies wholly below zero, so `full` stays the default.")
    info = machine_info()
    return "\n".join([
        "# Trimmed Whisper windows: accuracy and encode time on CPU", "",
        "Made by `python -m bench.whisper_trim`: the frozen bundled encoder with `model.encoder.whisper_windows` "
        "`full` and `trim`, pooled features, a logistic-regression probe over paired seeds.", "",
        f"Pool: `jobs.make_demo_pool --n {len(audio)} --seed 0` (make demo's generator) and `jobs.prepare_pool "
        f"jobs/configs/prepare_pool_demo.yaml` ({pool_dir}): {len(audio)} clips, {audio_s / 3600:.2f} h, "
        f"clip length {lengths.min():.1f}-{lengths.max():.1f} s (median {np.median(lengths):.1f} s); "
        f"{int((split == 'train').sum())} training, {int((split == 'test').sum())} test clips.", "",
        f"Encoder: the bundled Smart Turn v3.2 Whisper-tiny (8 s window), frozen, fp32, {args.threads} torch "
        f"threads; `trim` rounds the last window up to {args.trim_seconds:g} s. Features: each clip's mean over its "
        "valid frames of hidden states 1 (the shipped recipe's), 2 and 4 (the last, after the closing layer norm).",
        "",
        f"## Accuracy: {len(args.seeds)} paired seeds, {args.labels} random training labels each", "",
        "Test UA (mean +- sd over seeds) of balanced logistic regression, C by 5-fold CV on the labelled clips; "
        "paired difference trim - full in UA points with its 95 % t-interval; seeds where trim is better / "
        "worse / equal; mean cosine between a clip's full and trimmed features.", "",
        md_table(["state", "full", "trim", "trim - full (points) [95 % CI]", "better / worse / equal",
                  "cosine full vs trim", "holds"], rows), "",
        verdict, "",
        "The interval covers the spread over training draws on one fixed test split (one pool, one corpus "
        "seed), not the uncertainty of the test split itself.", "",
        "## Encode time", "",
        f"Every clip once per mode, length-sorted micro-batches of {args.batch_size}, the modes alternating batch "
        f"by batch (torch.inference_mode, features pooled inside the timed part):", "",
        md_table(["mode", "encode s", "audio s per s"], time_rows), "",
        f"trim / full time: {seconds['trim'] / seconds['full']:.2f} (a {seconds['full'] / seconds['trim']:.1f}x "
        f"speed-up). Probe fits: {fit_s:.0f} s.", "",
        machine_markdown(info, load) + (" Other jobs shared the 2 cores during the run; the modes alternated "
                                         "batch by batch, so the ratio is the more reliable figure."
                                         if load.busy else ""), ""])


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/whisper_trim", help="pool (built when --pool-dir is not given) "
                    "and cached features")
    ap.add_argument("--pool-dir", default="", help="an existing pool; default: build the demo pool in --workdir")
    ap.add_argument("--clips", type=int, default=2880, help="clips of the pool built when --pool-dir is not given")
    ap.add_argument("--encoder", default=str(ENCODER))
    ap.add_argument("--trim-seconds", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(20)))
    ap.add_argument("--labels", type=int, default=400, help="training labels per seed")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reencode", action="store_true", help="encode again even if the features are cached")
    ap.add_argument("--results", default=str(RESULTS), help="results file; empty = print only")
    args = ap.parse_args(argv)
    text = run(args)
    print(text)
    if args.results:
        print(f"wrote {write_results(args.results, text)}")
    return text


if __name__ == "__main__":
    main()
