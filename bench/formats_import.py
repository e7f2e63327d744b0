"""Importing a 100,000-row Lhotse supervisions manifest and a 100,000-row Hugging Face Parquet manifest (audio by
path), against reading the same rows as our own Parquet manifest (``read_manifest``).

    .venv/bin/python -m bench.formats_import [--rows 100000] [--out bench/results/formats_import.md]

Each case runs in a fresh interpreter: seconds for the import (the report and the written manifest included)
and the process's peak resident memory, with its resident memory before the import for reference. The rows
point at 1,000 short generated WAV files (the importers stat each distinct file once and never decode audio).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

CASES = ("ours_parquet", "lhotse_supervisions", "hf_parquet")
FILES = 1000


def _build(root: str, rows: int) -> None:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile as sf

    wavs = os.path.join(root, "wavs")
    os.makedirs(wavs)
    tone = (0.1 * np.sin(np.arange(1600) / 10)).astype(np.float32)
    for k in range(FILES):
        sf.write(os.path.join(wavs, f"rec{k:04d}.wav"), tone, 16000, subtype="PCM_16")
    labels = ["angry", "happy", "neutral", "sad"]
    rec = [f"rec{i % FILES:04d}" for i in range(rows)]
    start = [float((i // FILES) * 0.5) for i in range(rows)]
    path = [os.path.join(wavs, f"{r}.wav") for r in rec]
    label = [labels[i % 4] for i in range(rows)]
    speaker = [f"spk{i % 97}" for i in range(rows)]
    # Lhotse: recordings and supervisions as lhotse's to_file writes them (JSON lines); the recordings claim
    # 60 s so every supervision lies inside its recording (the importer reads the manifest, not the audio).
    with open(os.path.join(root, "recordings.jsonl"), "w") as fh:
        for k in range(FILES):
            fh.write(json.dumps({"id": f"rec{k:04d}", "sources": [{"type": "file", "channels": [0],
                                 "source": os.path.join(wavs, f"rec{k:04d}.wav")}], "sampling_rate": 16000,
                                 "num_samples": 960000, "duration": 60.0, "channel_ids": [0]}) + "\n")
    with open(os.path.join(root, "supervisions.jsonl"), "w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"id": f"utt{i:07d}", "recording_id": rec[i], "start": start[i], "duration": 0.4,
                                 "channel": 0, "speaker": speaker[i], "custom": {"emotion": label[i]}}) + "\n")
    # Hugging Face: a Parquet file with an Audio column by path and a ClassLabel, with the features datasets stores.
    audio = pa.array([{"bytes": None, "path": p} for p in path], pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    feats = {"audio": {"_type": "Audio"}, "label": {"names": labels, "_type": "ClassLabel"},
             "id": {"dtype": "string", "_type": "Value"}, "speaker_id": {"dtype": "string", "_type": "Value"}}
    table = pa.table({"audio": audio, "label": pa.array([i % 4 for i in range(rows)], pa.int64()),
                      "id": [f"utt{i:07d}" for i in range(rows)], "speaker_id": speaker})
    os.makedirs(os.path.join(root, "hf", "data"))
    pq.write_table(table.replace_schema_metadata({b"huggingface": json.dumps({"info": {"features": feats}}).encode()}),
                   os.path.join(root, "hf", "data", "train-00000-of-00001.parquet"))
    # Ours: the same rows as a segments manifest.
    pd.DataFrame({"utt_id": [f"utt{i:07d}" for i in range(rows)], "path": path, "start": start,
                  "end": [s + 0.4 for s in start], "channel": 0, "recording": rec, "speaker": speaker,
                  "label": label}).to_parquet(os.path.join(root, "ours.parquet"))


def _run_case(case: str, root: str) -> dict:
    """One case in this process (called in a fresh interpreter)."""
    import resource

    from ser_models.data.manifest import read_manifest
    from ser_models.formats.hf_dataset import import_hf
    from ser_models.formats.lhotse_manifest import import_lhotse

    def rss_mib() -> float:
        with open("/proc/self/status") as fh:
            return next(int(x.split()[1]) for x in fh if x.startswith("VmRSS")) / 1024

    before = rss_mib()
    t0 = time.perf_counter()
    if case == "ours_parquet":
        n = len(read_manifest(os.path.join(root, "ours.parquet")))
    elif case == "lhotse_supervisions":
        n = len(import_lhotse(os.path.join(root, "supervisions.jsonl"), os.path.join(root, "out_lhotse.parquet"),
                              log=lambda s: None)[0])
    else:
        n = len(import_hf(os.path.join(root, "hf"), os.path.join(root, "out_hf.parquet"), log=lambda s: None)[0])
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": case, "rows": n, "seconds": round(seconds, 2), "rss_before_mib": round(before),
            "peak_rss_mib": round(peak)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="bench/results/formats_import.md")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(_run_case(args.case, args.root)))
        return
    results = []
    with tempfile.TemporaryDirectory() as root:
        _build(root, args.rows)
        for _ in range(args.repeats):
            for case in CASES:
                out = subprocess.run([sys.executable, "-m", "bench.formats_import", "--case", case, "--root", root],
                                     check=True, capture_output=True, text=True).stdout
                results.append(json.loads(out.strip().splitlines()[-1]))
                print(results[-1], flush=True)
    load = os.getloadavg()
    lines = [f"# Importing {args.rows:,} rows: Lhotse and Hugging Face against our Parquet manifest", "",
             f"`python -m bench.formats_import --rows {args.rows}`; machine: {platform.machine()}, "
             f"{os.cpu_count()} CPUs ({platform.processor() or platform.platform()}), load average "
             f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min) at the end, shared with other work.",
             "", "Each run is a fresh interpreter; rows point at 1,000 generated WAV files (stat'ed once each, "
             "never decoded). Seconds include the importer's checks, its report and writing our Parquet manifest; "
             "`ours_parquet` is `read_manifest` of the same rows already in our format.", "",
             "| case | rows | seconds | RSS before (MiB) | peak RSS (MiB) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['case']} | {r['rows']:,} | {r['seconds']} | {r['rss_before_mib']} | {r['peak_rss_mib']} |"
              for r in results]
    with open(args.out, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
