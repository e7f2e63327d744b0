"""Segmentation benchmark: ``jobs.segment`` against the plain Silero loop, on a generated archive.

    python -m bench.segment [--workdir /tmp/ser_bench_segment] [--episodes 6 --calls 6] [--hours 1 2 4 8]

Three measurements, each side by side in one run:

* **Throughput**: audio hours per core-hour over the same files. The plain loop is what a user writes with the
  ``silero-vad`` package: per file, decode it whole (soundfile; PyAV for M4A), resample each channel to 16 kHz
  with soxr, ``get_speech_timestamps`` per channel (its model runs one 32 ms frame per call), one file after
  another in one process on one core. The platform: the whole ``segment_archive`` job (Ray Data actor,
  streaming decode, the batched model, rules, quality, Parquet) on a local Ray with one actor, and its VAD
  pass alone in process on one thread.
* **Memory**: peak RSS of one process segmenting one mono recording of 1, 2, 4 and 8 h (noise with speech-like
  bursts), each in a fresh process, against the plain loop (which holds the whole decoded file).
* **Accuracy**: frame F1 at 10 ms against the generator's truth, per recording, for the platform (``vad``
  preset), the plain loop, and an energy VAD (frames 6 dB over the recording's 20th-percentile energy, 200 ms
  hangover).

Results: ``bench/results/segment.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import (
    LoadWindow,
    claim_workdir,
    machine_info,
    machine_markdown,
    md_table,
    scratch,
    write_results,
)

RESULTS = Path(__file__).parent / "results" / "segment.md"

# The plain loop, run in its own process: importing silero_vad pins torch to one thread (its own behaviour).
PLAIN = r"""
import json, sys, time
import numpy as np, soundfile as sf, soxr
from silero_vad import get_speech_timestamps, load_silero_vad
from ser_models.data.audio_stream import read_span
files = json.loads(sys.argv[1])
model = load_silero_vad()
t0, out = time.perf_counter(), {}
for path in files:
    try:
        x, sr = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError:
        chans = [read_span(path, channel=c) for c in range(read_span(path, 0.0, 0.1)[2])]
        sr = chans[0][1]
        x = np.stack([c[0] for c in chans], axis=1)
    spans = []
    for c in range(x.shape[1]):
        wav = soxr.resample(x[:, c], sr, 16000, quality="HQ") if sr != 16000 else x[:, c]
        ts = get_speech_timestamps(wav, model, sampling_rate=16000)
        spans.append([(t["start"] / 16000, t["end"] / 16000) for t in ts])
    out[path] = spans
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time(), "spans": out,
                  "maxrss_mb": hwm / 1024}))
"""

# Peak RSS is VmHWM (this process's own): ru_maxrss carries the forking parent's peak across exec on Linux.
OURS_MEMORY = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
from ser_models.segment import SileroVAD, vad_pass
def hwm_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
vad = SileroVAD.from_wheel()
base = hwm_mb()
t0 = time.perf_counter()
r = vad_pass(sys.argv[1], vad, "split")
print(json.dumps({"seconds": time.perf_counter() - t0, "audio_s": r.duration, "base_mb": base,
                  "maxrss_mb": hwm_mb()}))
"""


def write_long_recording(path: Path, hours: float, seed: int = 0) -> None:
    """A mono 16 kHz PCM16 WAV of ``hours``: a noise floor with 2-6 s voiced bursts, written in 60 s blocks."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    sr, block = 16000, 60 * 16000
    t = np.arange(block) / sr
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16") as fh:
        for _ in range(int(hours * 60)):
            x = 0.01 * rng.standard_normal(block)
            for start in rng.uniform(0, 55, size=6):
                a, b = int(start * sr), int((start + rng.uniform(2, 6)) * sr)
                tt = t[: min(b, block) - a]
                f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * tt))
                phase = 2 * np.pi * np.cumsum(f0) / sr
                voiced = sum(np.sin(k * phase) / k for k in range(1, 10))
                x[a:a + len(tt)] += 0.2 * voiced * (np.sin(2 * np.pi * 4 * tt) > -0.3)
            fh.write(np.clip(x, -1, 1).astype(np.float32))


def _run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mask(spans, seconds: float) -> np.ndarray:
    m = np.zeros(int(np.ceil(seconds * 100)) + 1, bool)
    for s, e in spans:
        m[int(round(s * 100)):int(round(e * 100))] = True
    return m


def _f1(found: np.ndarray, true: np.ndarray) -> float:
    return float(2 * (found & true).sum() / max(found.sum() + true.sum(), 1))


def energy_vad(path: str, channel: int) -> list[tuple[float, float]]:
    """Frames of 32 ms 6 dB over the 20th-percentile energy, held 200 ms: the simplest VAD a team would write."""
    from ser_models.data.audio_stream import read_span

    wav, sr, _ = read_span(path, channel=channel)
    hop = int(0.032 * sr)
    frames = wav[: len(wav) // hop * hop].reshape(-1, hop)
    db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    on = db > np.percentile(db, 20) + 6.0
    hold = int(round(0.2 / 0.032))
    held = np.convolve(on.astype(float), np.ones(hold + 1), mode="full")[: len(on)] > 0
    spans, start = [], None
    for i, v in enumerate(held):
        if v and start is None:
            start = i
        elif not v and start is not None:
            spans.append((start * hop / sr, i * hop / sr))
            start = None
    if start is not None:
        spans.append((start * hop / sr, len(held) * hop / sr))
    return spans


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.segment", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default="/tmp/ser_bench_segment")
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--calls", type=int, default=6)
    p.add_argument("--hours", type=float, nargs="*", default=[1, 2, 4, 8])
    p.add_argument("--plain-hours", type=float, nargs="*", default=[1, 2])
    p.add_argument("--archive", default=None, help="an archive from jobs.make_demo_archive (default: generate "
                                                    "--episodes / --calls under --workdir)")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    work = claim_workdir(args.workdir)
    work.mkdir(parents=True, exist_ok=True)

    from ser_models.data.synth import generate_archive

    arch = Path(args.archive) if args.archive else work / "archive"
    if not (arch / "recordings.csv").exists():
        t0 = time.perf_counter()
        generate_archive(arch, seed=0, n_episodes=args.episodes, n_calls=args.calls, workers=2)
        print(f"archive generated in {time.perf_counter() - t0:.0f}s")
    recs = pd.read_csv(arch / "recordings.csv")
    truth = pd.read_csv(arch / "truth.csv")
    files = [str(arch / f) for f in recs["path"]]
    stream_hours = float((recs["duration"] * recs["channels"]).sum() / 3600)
    audio_hours = float(recs["duration"].sum() / 3600)
    load = LoadWindow()
    info = machine_info()

    # --- throughput: plain loop (one process, one core) vs the whole job (local Ray, one actor) ---
    plain = _run(PLAIN, json.dumps(files))
    import ray

    from ser_models.runtime import configure_ray_data
    from ser_models.segment import SegmentConfig, segment_archive

    t0 = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING")
    configure_ray_data()
    t_ray = time.perf_counter() - t0
    out = work / "segments"
    scratch(out)
    t0 = time.perf_counter()
    summary = segment_archive(SegmentConfig(recordings=str(arch / "recordings.csv"), output_dir=str(out),
                                            preset="vad", num_workers=1), verbose=False)
    t_job = time.perf_counter() - t0
    ray.shutdown()
    import torch

    torch.set_num_threads(1)
    from ser_models.segment import SileroVAD, vad_pass

    vad = SileroVAD.from_wheel()
    t0 = time.perf_counter()
    for f in files:
        vad_pass(f, vad, "split")
    t_pass = time.perf_counter() - t0
    rate = {"plain": audio_hours / (plain["seconds"] / 3600), "job": audio_hours / (t_job / 3600),
            "pass": audio_hours / (t_pass / 3600)}
    through = md_table(
        ["path", "seconds", "audio h per core-hour", "stream-h per core-hour", "vs plain"],
        [["plain Silero loop (decode whole file + get_speech_timestamps per channel)", f"{plain['seconds']:.1f}",
          f"{rate['plain']:.0f}", f"{stream_hours / (plain['seconds'] / 3600):.0f}", "1.00x"],
         ["jobs.segment, whole job (1 actor, Ray already up)", f"{t_job:.1f}", f"{rate['job']:.0f}",
          f"{stream_hours / (t_job / 3600):.0f}", f"{rate['job'] / rate['plain']:.2f}x"],
         ["VAD pass alone (streaming decode + batched model, 1 thread)", f"{t_pass:.1f}", f"{rate['pass']:.0f}",
          f"{stream_hours / (t_pass / 3600):.0f}", f"{rate['pass'] / rate['plain']:.2f}x"]])

    # --- accuracy ---
    seg = pd.read_parquet(out / "segments.parquet")
    rows = []
    for rec, path in zip(recs.itertuples(), files):
        for ch in sorted(truth.loc[truth["recording"] == rec.recording, "channel"].unique()):
            t = truth[(truth["recording"] == rec.recording) & (truth["channel"] == ch)]
            true = _mask(zip(t["start"], t["end"]), rec.duration)
            s = seg[(seg["recording"] == rec.recording) & (seg["channel"] == ch)]
            ours = _f1(_mask(zip(s["start"], s["end"]), rec.duration), true)
            pl = _f1(_mask(plain["spans"][path][ch], rec.duration), true)
            en = _f1(_mask(energy_vad(path, ch), rec.duration), true)
            rows.append([rec.recording, rec.kind, ch, f"{rec.snr_db:.0f}", "yes" if rec.music else "no",
                         f"{ours:.3f}", f"{pl:.3f}", f"{en:.3f}"])
    acc = pd.DataFrame(rows, columns=["recording", "kind", "channel", "SNR dB", "music", "platform", "plain",
                                      "energy"])
    means = {c: acc[c].astype(float).mean() for c in ("platform", "plain", "energy")}
    accuracy = md_table(list(acc.columns), acc.values.tolist()) + "\n\nmean frame F1: " + ", ".join(
        f"{k} {v:.3f}" for k, v in means.items())

    # --- memory as the recording grows ---
    mem_rows = []
    for hours in args.hours:
        path = work / f"long_{hours:g}h.wav"
        if not path.exists():
            write_long_recording(path, hours)
        ours = _run(OURS_MEMORY, str(path))
        pl = _run(PLAIN, json.dumps([str(path)])) if hours in args.plain_hours else None
        mem_rows.append([f"{hours:g}", f"{ours['maxrss_mb']:.0f}", f"{ours['maxrss_mb'] - ours['base_mb']:.0f}",
                         f"{ours['audio_s'] / ours['seconds']:.0f}x",
                         f"{pl['maxrss_mb']:.0f}" if pl else "not run",
                         f"{hours * 3600 / pl['seconds']:.0f}x" if pl else ""])
    memory = md_table(["hours", "platform peak RSS MB", "platform above model load MB", "platform real-time",
                       "plain peak RSS MB", "plain real-time"], mem_rows)
    load.close()
    text = "\n\n".join([
        "# Segmentation: jobs.segment against the plain Silero loop",
        machine_markdown(info, load),
        f"Archive: {len(recs)} recordings ({int((recs['kind'] == 'episode').sum())} episodes, "
        f"{int((recs['kind'] == 'call').sum())} two-channel 8 kHz calls; "
        f"{', '.join(f'{k} {v}' for k, v in recs['path'].str.rsplit('.', n=1).str[1].value_counts().items())}), "
        f"{audio_hours:.2f} h of audio, {stream_hours:.2f} stream-hours (a call's two channels are two streams); "
        f"Ray start-up {t_ray:.1f} s not counted. {summary.segments} segments.",
        "## Throughput (one core each)", through,
        "## Accuracy: frame F1 at 10 ms against the generator's truth", accuracy,
        "## Peak memory as one recording grows", memory,
    ])
    print(text)
    write_results(args.results, text + "\n")


if __name__ == "__main__":
    main()
