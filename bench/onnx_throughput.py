"""CPU prediction throughput and accuracy: torch fp32 (``ser_models.load``) against ONNX Runtime fp32 and int8
(``ser_models.load(..., runtime="onnx")``), on demo-2880's test split, on one core and on all cores.

    .venv/bin/python -m bench.onnx_throughput                       # builds what it lacks, writes results
    .venv/bin/python -m bench.onnx_throughput --checkpoint RUN --clips 64 --out /tmp/onnx.md   # a quick look

What it builds when missing (under ``--work``, default ``outputs/bench_onnx``): the demo pool of 2,880
generated clips (``jobs.make_demo_pool --n 2880 --seed 0`` + ``jobs.prepare_pool``), one ``jobs.after`` run
of the shipped recipe on it (``demo_after.yaml``: frozen Whisper-tiny of Smart Turn v3.2, hidden state 1,
pool-standardised, linear head; budget 10 % then 20 % of the training clips), and its last checkpoint
exported twice with ``jobs.export`` (fp32, then ``quantize=int8``).

Each case runs in a fresh interpreter, so thread settings never leak between cases and the ONNX cases run with
torch blocked from import (as a service without torch would). A case loads the predictor with
``threads=1`` or ``threads=<all cores>``, predicts 8 clips to warm up, then predicts the whole test split in
calls of 16 clips (the split's order: ``Predictor.predict(list)`` as a user calls it, decode and checks
included), ``--repeats`` times; the report gives the median. Accuracy (UA, WA) is computed from the last
pass's predictions against the pool's labels. All speech is generated: the UA is not a figure on real speech.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import (
    RESULTS_DIR,
    LoadWindow,
    claim_workdir,
    ensure_pool,
    machine_info,
    machine_markdown,
    md_table,
    write_results,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = RESULTS_DIR / "onnx_throughput.md"
CHUNK = 16

# One case, in its own interpreter: argv[1] is the JSON spec. Prints one JSON line.
_CASE = r"""
import json, resource, statistics, sys, time
spec = json.loads(sys.argv[1])
if spec["block_torch"]:
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this ONNX Runtime case")
    sys.meta_path.insert(0, _Block())
import numpy as np
import pyarrow.parquet as pq
import ser_models
from ser_models.data.audio import decode_pool_audio

rows = []
for f in spec["files"]:
    t = pq.read_table(f, columns=["utt_id", "audio", "audio_format"])
    rows += list(zip(t.column("utt_id").to_pylist(), t.column("audio").to_pylist(), t.column("audio_format").to_pylist()))
rows = sorted(rows)[: spec["clips"] or None]
ids = [r[0] for r in rows]
wavs = [decode_pool_audio(a, f) for _, a, f in rows]
predictor = ser_models.load(spec["model"], runtime=spec["runtime"], threads=spec["threads"])
predictor.predict(wavs[:8], sample_rate=16000)
seconds = []
for _ in range(spec["repeats"]):
    start = time.perf_counter()
    preds = []
    for i in range(0, len(wavs), spec["chunk"]):
        preds += predictor.predict(wavs[i:i + spec["chunk"]], sample_rate=16000)
    seconds.append(time.perf_counter() - start)
print(json.dumps({"ids": ids, "predicted": [p.label for p in preds], "seconds": seconds,
                  "audio_s": float(sum(w.size for w in wavs)) / 16000, "torch": "torch" in sys.modules,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(args: list[str], what: str) -> None:
    print(f"[onnx_throughput] {what}", flush=True)
    subprocess.run([sys.executable, *args], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)


def build(work: Path) -> tuple[Path, Path, dict]:
    """The pool, the recipe run and its two exports under ``work`` (the pool and exports made only when missing).

    Returns:
        ``(pool_dir, run_dir, {"fp32": {...export report}, "int8": {...}})``.
    """
    pool = ensure_pool(work / "pool", n=2880, seed=0)
    run = work / "run"
    # Always called: a finished run resumes in seconds, an interrupted one finishes.
    _run(["-m", "jobs.after", "jobs/configs/demo_after.yaml", f"pool_dir={pool}", f"output_dir={run}",
          f"active.feature_cache_dir={work / 'feature_cache'}", "active.budget_fractions=[0.1,0.2]"],
         "training the recipe's model (jobs.after)")
    return pool, run, {quant: export(run, work, quant) for quant in ("none", "int8")}


def export(run: Path, work: Path, quant: str) -> dict:
    """``jobs.export`` of ``run`` to ``work/model_<quant>.onnx`` (once): its report plus the graph's size (MiB)."""
    graph, report = work / f"model_{quant}.onnx", work / f"export_{quant}.json"
    if not report.exists():
        print(f"[onnx_throughput] exporting ({quant})", flush=True)
        out = subprocess.run([sys.executable, "-m", "jobs.export", f"checkpoint={run}", f"output={graph}",
                              f"quantize={quant}"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                             capture_output=True, text=True, check=True)
        info = json.loads(out.stdout.strip().splitlines()[-1])
        info["size_mib"] = round(graph.stat().st_size / 2**20, 1)
        report.write_text(json.dumps(info))
    return json.loads(report.read_text())


def case(model: str, runtime: str, threads: int, files: list[str], clips: int, repeats: int) -> dict:
    spec = {"model": model, "runtime": runtime, "threads": threads, "files": files, "clips": clips,
            "repeats": repeats, "chunk": CHUNK, "block_torch": runtime == "onnx"}
    out = subprocess.run([sys.executable, "-c", _CASE, json.dumps(spec)], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    if out.returncode != 0:
        raise RuntimeError(f"{runtime} threads={threads} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def accuracy(truth: dict[str, str], ids: list[str], predicted: list[str]) -> tuple[float, float]:
    """(UA, WA) of ``predicted`` against ``truth`` (unweighted: the mean per-class recall)."""
    classes = sorted({truth[i] for i in ids})
    hits = {c: [0, 0] for c in classes}
    for i, p in zip(ids, predicted):
        hits[truth[i]][0] += p == truth[i]
        hits[truth[i]][1] += 1
    ua = sum(h / n for h, n in hits.values()) / len(classes)
    wa = sum(h for h, _ in hits.values()) / sum(n for _, n in hits.values())
    return ua, wa


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="outputs/bench_onnx", help="pool, run and graphs (built when missing)")
    parser.add_argument("--checkpoint", default=None, help="a run or checkpoint to export instead of training one")
    parser.add_argument("--clips", type=int, default=0, help="test clips to predict (0 = the whole split)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    work = claim_workdir(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.checkpoint:
        pool, run = ensure_pool(work / "pool", n=2880, seed=0), Path(args.checkpoint).absolute()
        reports = {quant: export(run, work, quant) for quant in ("none", "int8")}
    else:
        pool, run, reports = build(work)

    from ser_models.data import Pool

    p = Pool.open(pool)
    files = sorted(p.files("test"))
    meta = p.metadata(columns=["utt_id", "label"], split="test")
    truth = dict(zip(meta["utt_id"], meta["label"]))
    cores = os.cpu_count() or 1
    cases = [("torch fp32 (`ser_models.load`)", str(run), "torch"),
             ("ONNX Runtime fp32", str(work / "model_none.onnx"), "onnx"),
             ("ONNX Runtime int8", str(work / "model_int8.onnx"), "onnx")]
    rows, results = [], {}
    load = LoadWindow()
    for threads in sorted({1, cores}):
        for name, model, runtime in cases:
            print(f"[onnx_throughput] {name}, {threads} thread(s)", flush=True)
            results[(name, threads)] = case(model, runtime, threads, files, args.clips, args.repeats)
    load.close()
    base = {t: statistics.median(results[(cases[0][0], t)]["seconds"]) for t in sorted({1, cores})}
    for threads in sorted({1, cores}):
        for name, _, _ in cases:
            r = results[(name, threads)]
            sec = statistics.median(r["seconds"])
            n = len(r["ids"])
            ua, wa = accuracy(truth, r["ids"], r["predicted"])
            rows.append([name, threads, f"{n / sec:.1f}", f"{r['audio_s'] / sec:.0f}", f"{base[threads] / sec:.2f}x",
                         f"{100 * ua:.1f}", f"{100 * wa:.1f}", f"{r['peak_rss_mib']:.0f}",
                         "no" if not r["torch"] else "yes"])
    n = len(results[(cases[0][0], 1)]["ids"])
    audio = results[(cases[0][0], 1)]["audio_s"]
    sizes = {q: reports[q].get("size_mib") for q in reports}
    diffs = {q: reports[q].get("max_abs_diff") for q in reports}
    text = f"""# CPU prediction throughput: torch fp32 against ONNX Runtime fp32 and int8

Command: `.venv/bin/python -m bench.onnx_throughput{' --clips ' + str(args.clips) if args.clips else ''}`

{machine_markdown(machine_info(), load)}

The model: the shipped recipe (`jobs.after` with `demo_after.yaml`: frozen Whisper-tiny of Smart Turn v3.2, hidden
state 1, pool-standardised, a linear head) trained on 20 % of demo-2880's training clips, exported with
`jobs.export` (fp32; int8 = ONNX Runtime dynamic quantisation of the weights). Graph sizes: fp32
{sizes.get('none')} MiB, int8 {sizes.get('int8')} MiB. The largest probability difference to torch that
`jobs.export` measured on its probe clips: fp32 {diffs.get('none'):.2g}, int8 {diffs.get('int8'):.2g}.

The input: demo-2880's test split, {n} clips, {audio:.0f} s of audio, predicted through `Predictor.predict` in
calls of {CHUNK} clips (decode, checks and crop included), after 8 warm-up clips; median of {args.repeats}
passes, each case in a fresh process. "torch loaded" says whether the case's process imported torch (the ONNX
cases run with torch blocked). UA / WA: on those clips, against the pool's labels. All speech is generated:
these accuracies are not figures on real speech.

{md_table(["runtime", "threads", "clips/s", "audio s/s", "vs torch fp32", "UA %", "WA %", "peak RSS MiB",
           "torch loaded"], rows)}
"""
    path = write_results(args.out, text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
