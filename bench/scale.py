"""Scale benchmark: memory and time of the pool-sized stages on demo pools of ~1, 4 and 16 hours.

    python -m bench.scale                    # 1 / 4 / 16 h, writes bench/results/scale.md
    python -m bench.scale --hours 0.25 1     # other sizes (prints only)

For each pool size, in a fresh process with its own local Ray (2 CPUs), one after the other:

* **cache build**: ``FeatureCache.build`` over every clip (frozen tiny encoder, one Ray Data actor);
* **scoring pass**: ``score_dataset`` over the training split (a fresh model, one actor);
* **TAPT epoch**: ``run_tapt`` for one epoch through Ray Train (1 worker);
* **fine-tuning epoch**: ``train_model`` for one epoch on every training clip through Ray Train (1 worker);
* **frame cache build**: the frame cache (every hidden state's frames) over every clip;
* **adapter epoch**: one epoch of the WAP adapter's pre-training on the training clips' cached frames through
  Ray Train (1 worker; its shard streamed, ``scaling.stream_above_clips=0``, at every size).

Each with the library's defaults (``scaling.stream_above_clips`` decides whether a worker holds or streams its
shard). Peak memory is the largest sum, sampled every 0.25 s, of the proportional set size (PSS: shared pages
split between the processes sharing them, so the Ray object store and shared libraries count once) of the
benchmark process and every process under it (Ray's GCS, raylet, workers, actors): the whole Ray job. Pools
come from ``jobs.make_demo_pool`` + ``jobs.prepare_pool`` and are kept under ``--workdir`` between runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import claim_workdir, scratch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "scale.md"
SECONDS_PER_CLIP = 3.1  # mean duration of a demo clip (jobs.make_demo_pool)
STAGES = ("cache_build", "scoring", "tapt_epoch", "finetune_epoch", "frame_cache_build", "adapter_epoch")
CROP = 2.0  # training crops (s): the stages' cost per clip stays the same at every pool size


class PeakPss:
    """Samples the summed PSS of this process and all its descendants in a background thread, and keeps the
    per-process breakdown of the peak sample (``by_kind``: bytes per process kind, e.g. ``raylet``,
    ``ray::IDLE``, ``ray::MapWorker``, ``driver``), so that growth can be traced to a process."""

    def __init__(self, interval: float = 0.25):
        import psutil

        self.psutil, self.interval = psutil, interval
        self.me = psutil.Process(os.getpid())
        self.peak = 0
        self.by_kind: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _kind(self, proc) -> str:
        if proc.pid == self.me.pid:
            return "driver"
        name = proc.name()
        if name.startswith("ray::"):  # Ray sets the title to ray::<actor class or task name>
            return name.split("(")[0].split(".")[0][:40]
        cmd = " ".join(proc.cmdline()[:3])
        for tag in ("raylet", "gcs_server", "dashboard", "log_monitor", "runtime_env", "monitor.py"):
            if tag in cmd:
                return tag
        return name[:40]

    @staticmethod
    def _rollup(pid: int) -> dict[str, int]:
        """PSS of one process split into anonymous (heap), shared memory (the object store) and file pages."""
        out = {}
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Pss_Anon", "Pss_Shmem", "Pss_File"):
                    out[key] = int(rest.split()[0]) * 1024
        return out

    def sample(self) -> tuple[int, dict[str, int]]:
        total, kinds = 0, {}
        for proc in [self.me, *self.me.children(recursive=True)]:
            try:
                mem = self._rollup(proc.pid)
                kind = self._kind(proc)
            except (OSError, self.psutil.NoSuchProcess, self.psutil.AccessDenied, self.psutil.ZombieProcess):
                continue
            total += mem["Pss"]
            for part, value in (("", mem["Pss"]), (" anon", mem.get("Pss_Anon", 0)),
                                (" shmem", mem.get("Pss_Shmem", 0))):
                kinds[kind + part] = kinds.get(kind + part, 0) + value
        return total, kinds

    def _update(self) -> None:
        total, kinds = self.sample()
        if total > self.peak:
            self.peak, self.by_kind = total, kinds

    def _run(self) -> None:
        while not self._stop.is_set():
            self._update()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakPss:
        self._update()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._update()

    def breakdown(self, top: int = 6) -> dict[str, float]:
        """The peak sample's largest process kinds, in MiB, each with its anonymous and shared-memory parts."""
        totals = sorted((k for k in self.by_kind if " " not in k), key=lambda k: -self.by_kind[k])[:top]
        ranked = [(k + part, self.by_kind[k + part]) for k in totals for part in ("", " anon", " shmem")]
        return {k: round(v / 2**20) for k, v in ranked}


def ensure_pool(hours: float, workdir: Path) -> Path:
    """The demo pool of about ``hours`` under ``workdir``: its corpus is generated once; the pool is rebuilt
    when its files were laid out with more rows per file than ``prepare_pool_demo.yaml`` now asks for."""

    from ser_models.config import load_config
    from ser_models.data.config import PoolConfig

    n = max(12, int(round(hours * 3600 / SECONDS_PER_CLIP)))
    root = workdir / f"pool_{n}"
    pool = root / "pool"
    manifest = root / "corpus" / "manifest.csv"
    config = REPO / "jobs" / "configs" / "prepare_pool_demo.yaml"
    rows_per_file = load_config(PoolConfig, config, [f"manifest={manifest}"]).rows_per_file
    if (pool / "summary.json").exists() and pool_layout(pool)[1] <= rows_per_file:
        return pool
    scratch(pool)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if not manifest.exists():
        subprocess.run([sys.executable, "-m", "jobs.make_demo_pool", str(root / "corpus"), "--n", str(n), "--seed",
                        "0", "--workers", "2"], cwd=REPO, env=env, check=True)
    subprocess.run([sys.executable, "-m", "jobs.prepare_pool", str(config), f"manifest={manifest}",
                    f"output_dir={pool}"], cwd=REPO, env=env, check=True)
    return pool


def pool_layout(pool_dir: str | Path) -> tuple[int, int]:
    """``(Parquet files, most rows in one file)`` of a pool's clips (every split)."""
    import pyarrow.parquet as pq

    from ser_models.data import Pool

    files = sorted(Pool.open(str(pool_dir)).files())
    return len(files), max((pq.ParquetFile(f).metadata.num_rows for f in files), default=0)


def run_size(pool_dir: str, workdir: str, stages: list[str] | None = None) -> dict:
    """All four stages on one pool, in this process (called through ``--case``)."""

    from bench.common import init_ray
    from ser_models.config import to_dict
    from ser_models.data import Pool
    from ser_models.encoders import EncoderConfig, build_encoder
    from ser_models.pretraining.tapt import TAPT_COLUMNS, run_tapt
    from ser_models.pretraining.tapt_config import TaptConfig, TaptJobConfig
    from ser_models.scoring.cache_keys import feature_cache_key
    from ser_models.scoring.feature_cache import FeatureCache
    from ser_models.scoring.scorer import ScorerConfig, score_dataset
    from ser_models.testing import tiny_model_config
    from ser_models.training import train_model
    from ser_models.training.config import OptimConfig, ScalingConfig, TrainConfig

    init_ray(2)
    out = Path(workdir) / "scale_run"
    scratch(out)
    pool = Pool.open(pool_dir)
    train_n = len(pool.metadata(columns=["utt_id"], split="train"))
    files, most = pool_layout(pool_dir)
    row: dict = {"clips": pool.summary["kept"], "hours": round(sum(s["hours"] for s in pool.summary["splits"].values()), 2),
                 "train_clips": train_n, "files": files, "rows_per_file": most}
    scorer = ScorerConfig(num_actors=1, num_cpus=1, threads=1, micro_batch_size=16)

    def stage(name, fn):
        if stages and name not in stages:
            return
        t0 = time.perf_counter()
        with PeakPss() as mem:
            fn()
        row[f"{name}_s"] = round(time.perf_counter() - t0, 1)
        row[f"{name}_peak_gib"] = round(mem.peak / 2**30, 2)
        row[f"{name}_peak_mib_by_process"] = mem.breakdown()
        print(json.dumps({name: [row[f"{name}_s"], row[f"{name}_peak_gib"], row[f"{name}_peak_mib_by_process"]]}),
              flush=True)

    frozen = tiny_model_config(adapter="frozen", normalize_waveform=False)
    encoder = build_encoder(frozen.encoder)
    cache = FeatureCache(out / "cache", feature_cache_key(pool, encoder, scorer))
    stage("cache_build", lambda: cache.build(pool.dataset(None), frozen, encoder.num_layers, scorer, verbose=False))
    lora = tiny_model_config(normalize_waveform=False)
    stage("scoring", lambda: score_dataset(pool.dataset("train"), None, scorer, model_cfg=to_dict(lora),
                                           verbose=False))
    tapt = TaptJobConfig(pool_dir=pool_dir, output_dir=str(out / "tapt"),
                         encoder=EncoderConfig(source="tiny-wav2vec2", normalize_waveform=False),
                         tapt=TaptConfig(optim=dataclasses.replace(TaptConfig().optim, epochs=1, batch_size=8,
                                                                             max_crop_seconds=CROP)),
                         scaling=ScalingConfig())
    stage("tapt_epoch", lambda: run_tapt(tapt, pool.dataset("train", columns=TAPT_COLUMNS), train_rows=train_n,
                                         verbose=False))
    labels = pool.metadata(columns=["label"], split="train")["label"]
    counts = [int((labels == c).sum()) for c in lora.labels]
    feeds = {s: pool.dataset(s) for s in ("train", "dev", "test")}
    stage("finetune_epoch", lambda: train_model(
        lora, TrainConfig(optim=OptimConfig(epochs=1, batch_size=8, max_crop_seconds=CROP), early_stopping_patience=0),
        ScalingConfig(), feeds, out / "ft", class_counts=counts, train_rows=train_n, verbose=False))
    from ser_models.adapters.config import WapConfig
    from ser_models.pretraining.adapter_pretrain import run_adapter_pretrain
    from ser_models.pretraining.tapt_config import AdapterPretrainConfig

    framed = tiny_model_config(adapter="frozen", normalize_waveform=False, pooling="attentive_stats")
    frames = FeatureCache(out / "cache", feature_cache_key(pool, encoder, scorer), kind="frames")
    stage("frame_cache_build", lambda: frames.build(pool.dataset(None), framed, encoder.num_layers, scorer,
                                                    verbose=False))
    if not stages or "adapter_epoch" in stages:
        train_ids = sorted(pool.metadata(columns=["utt_id"], split="train")["utt_id"].astype(str))
        wap = WapConfig(enabled=True, depth=2, dim=32, heads=2, ff_dim=64)
        stage("adapter_epoch", lambda: run_adapter_pretrain(
            frames, train_ids, wap, AdapterPretrainConfig(
                optim=dataclasses.replace(AdapterPretrainConfig().optim, epochs=1, batch_size=16, max_crop_seconds=CROP),
                num_clusters=16, kmeans_max_clips=256),
            ScalingConfig(stream_above_clips=0), str(out / "adapter"), verbose=False))
    scratch(out)
    return row


def breakdown_md(rows: list[dict]) -> str:
    """Per pool size and stage, the peak sample's largest processes (MiB: total / heap / object store)."""
    lines = ["Peak samples by process kind (MiB, PSS total / heap `Pss_Anon` / object store `Pss_Shmem`):", ""]
    for r in rows:
        for stage in STAGES:
            parts = r.get(f"{stage}_peak_mib_by_process")
            if not parts:
                continue
            kinds = [k for k in parts if not k.endswith((" anon", " shmem"))]
            cells = [f"{k} {parts[k]} / {parts.get(k + ' anon', 0)} / {parts.get(k + ' shmem', 0)}" for k in kinds]
            lines.append(f"- {r['hours']} h, {stage}: " + "; ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from bench.common import LoadWindow, machine_info, machine_markdown, md_table, write_results

    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, nargs="+", default=[1.0, 4.0, 16.0], help="pool sizes (hours)")
    ap.add_argument("--workdir", default="/tmp/ser_bench_scale", help="pools are generated and kept here")
    ap.add_argument("--stages", nargs="+", choices=STAGES, help="run only these stages (prints only)")
    ap.add_argument("--results", help="write this run's tables here (default: only the full 1/4/16 h run writes "
                    "bench/results/scale.md)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        print("RESULT " + json.dumps(run_size(**json.loads(args.case))), flush=True)
        return
    workdir = claim_workdir(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    pools = [ensure_pool(h, workdir) for h in args.hours]
    load = LoadWindow()
    rows = []
    for pool in pools:
        case = json.dumps({"pool_dir": str(pool), "workdir": str(workdir), "stages": args.stages})
        proc = subprocess.run([sys.executable, "-m", "bench.scale", "--case", case], cwd=REPO, text=True,
                              capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        result = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not result:
            raise RuntimeError(f"bench.scale case {pool} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        rows.append(json.loads(result[0][len("RESULT "):]))
        print(json.dumps(rows[-1]), flush=True)
    load.close()
    stages = [s for s in STAGES if not args.stages or s in args.stages]
    table = md_table(["hours", "clips", "files (most rows)", *[f"{s} s" for s in stages],
                      *[f"{s} peak GiB" for s in stages]],
                     [[r["hours"], r["clips"], f"{r['files']} ({r['rows_per_file']})", *[r[f"{s}_s"] for s in stages],
                       *[r[f"{s}_peak_gib"] for s in stages]] for r in rows])
    small, big = rows[0], rows[-1]
    growth = md_table(["stage", f"memory {big['hours']} h / {small['hours']} h (target <= 1.25)",
                       f"time {big['hours']} h / {small['hours']} h", f"audio {big['hours']} h / {small['hours']} h"],
                      [[s, f"**{big[f'{s}_peak_gib'] / small[f'{s}_peak_gib']:.2f}**",
                        f"{big[f'{s}_s'] / small[f'{s}_s']:.1f}", f"{big['hours'] / small['hours']:.1f}"]
                       for s in stages])
    print(table + "\n\n" + growth)
    full = args.hours == [1.0, 4.0, 16.0] and not args.stages
    if full or args.results:
        command = "python -m bench.scale" + ("" if full else " " + " ".join(argv if argv is not None else sys.argv[1:]))
        text = "\n\n".join(["# Scale benchmark", f"`{command}`\n\n{__doc__.split(chr(10), 3)[3].strip()}",
                            table, growth, breakdown_md(rows), machine_markdown(machine_info(), load)])
        write_results(args.results or RESULTS, text)


if __name__ == "__main__":
    main()
