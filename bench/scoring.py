"""Scoring benchmark: ``PoolScorer`` through Ray Data vs the model's own batched forward vs one clip at a time.

    python -m bench.scoring                 # 200 train clips, tiny encoder + a bigger one; writes results
    python -m bench.scoring --quick         # 24 clips, tiny encoder only; prints the table only
    python -m bench.scoring --big base      # the big encoder at wav2vec2-base size (768 x 12) instead of mid
    python -m bench.scoring --big smart-turn  # the imported pretrained Whisper-tiny (8 s windows) instead

The same N clips of the demo pool's training split are scored, on the same machine, in one run, by:

(a) ``score_dataset`` with one Ray Data ``PoolScorer`` actor (``num_cpus=1`` of ``ray.init(num_cpus=2)``, so
    its torch uses 1 thread; ``num_cpus=2`` deadlocks, see ``THREADS``). The actor pool is
    created anew by every call; the scorer logs when its first batch starts, which splits the call into a
    fixed start-up (actor process, imports, checkpoint load) and the steady state (first batch -> all N
    clips back on the driver).
(a') ``score_dataset(in_process=True)``: the same ``PoolScorer`` called in this process over Ray Data's
    ``iter_batches`` (no actor): separates what the actor costs from what the scorer costs.
(b) the model's own batched forward: ``EmotionModel.forward`` over length-sorted batches of the scorer's
    micro-batch size (a row set per size), 1 torch thread, clips already decoded (an upper bound: no decode, no Arrow, no Ray).
    It runs first and again last; the faster of the two is the baseline (the first run can overlap Ray's
    own processes settling after ``ray.init``).
(c) one clip at a time (batch size 1, in this process): how AFTER's released code scores the pool.

Every path emits the class probabilities of every clip; the table reports the largest difference to (b),
so the rates compare the same work. MC dropout is off (``mc_samples=0``), as in a non-BALD round.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import (
    DEFAULT_WORKDIR,
    RESULTS_DIR,
    LoadWindow,
    claim_workdir,
    ensure_pool,
    init_ray,
    machine_info,
    machine_markdown,
    md_table,
    write_results,
)

RESULTS = RESULTS_DIR / "scoring.md"
LABELS = ["neutral", "happy", "angry", "sad"]
#: Torch threads of every path, and the scoring actor's ``num_cpus``. One, not two: with ``num_cpus=2`` the
#: actor would reserve both CPUs of the 2-CPU Ray instance and the read task that feeds it would never get a
#: CPU (``score_dataset`` now rejects that; ``active.scorer.threads`` gives an actor more torch threads than it
#: reserves). Every path uses the same one thread so the rates compare like with like.
THREADS = 1
RAY_CPUS = 2

#: Big-encoder sizes (wav2vec2 family, random weights): ``base`` matches facebook/wav2vec2-base
#: (95 M parameters); ``mid`` is a quarter of its width and half its depth, for slow shared CPUs.
BIG_SIZES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 conv_dim=(512,) * 7),
    "mid": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024,
                conv_dim=(256,) * 7),
}


@dataclass
class PathResult:
    """One scoring path over the N clips.

    Attributes:
        name: row label.
        seconds: wall time of the steady-state part (s).
        clips: clips scored in ``seconds``.
        startup_s: fixed cost outside ``seconds`` (actor start-up or model load, s).
        probs: [N, C] in the benchmark's clip order (for the agreement check).
    """

    name: str
    seconds: float
    clips: int
    startup_s: float
    probs: np.ndarray

    @property
    def rate(self) -> float:
        """Clips per second of the steady-state part."""
        return self.clips / max(self.seconds, 1e-9)


NOTES = """## Findings

Summarised, with what the numbers mean, in BENCHMARKS.md at the repository root.
"""


def make_encoder_folder(folder: str | Path, size: str, seed: int = 0) -> Path:
    """Save a randomly initialised wav2vec2 encoder of ``BIG_SIZES[size]`` as a HF folder (config + safetensors).

    Reused when ``config.json`` is already there. Random weights give the same compute as trained ones.
    """
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    dims = dict(BIG_SIZES[size])
    conv = dims.pop("conv_dim")
    cfg = Wav2Vec2Config(**dims, conv_dim=conv, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                         feat_extract_norm="layer", do_stable_layer_norm=False, layerdrop=0.0)
    torch.manual_seed(seed)
    Wav2Vec2Model(cfg).save_pretrained(folder)
    return folder


def make_checkpoint(folder: str | Path, encoder_source: str, seed: int = 0) -> Path:
    """Save an ``EmotionModel`` checkpoint (LoRA r=8 on the encoder, mean pooling, 4 classes) at ``folder``."""
    import json

    import torch

    from ser_models.adapters import AdapterConfig
    from ser_models.encoders import EncoderConfig
    from ser_models.models.model import EmotionModel, ModelConfig

    folder = Path(folder)
    meta = folder / "model.json"
    # reuse only a checkpoint over the same encoder source (a folder source may have moved since)
    if meta.exists() and json.loads(meta.read_text())["config"]["encoder"]["source"] == encoder_source:
        return folder
    torch.manual_seed(seed)
    cfg = ModelConfig(encoder=EncoderConfig(source=encoder_source, normalize_waveform=False),
                      adapter=AdapterConfig(kind="lora", r=8, alpha=16), pooling="mean", head_hidden=64,
                      labels=LABELS)
    EmotionModel(cfg).save_checkpoint(str(folder))
    return folder


def time_forward(checkpoint: str | Path, clips, batch_size: int, threads: int = THREADS,
                 max_seconds: float = 20.0, name: str = "", device: str = "cpu") -> PathResult:
    """Paths (b) and (c): ``EmotionModel.forward`` over length-sorted batches of ``batch_size``, in this process.

    Args:
        checkpoint: an ``EmotionModel`` checkpoint folder.
        clips: a decoded ``ClipSet`` (audio mode).
        batch_size: clips per forward (1 = one at a time).
        threads: torch threads.
        max_seconds: centre-crop limit (s), as the scorer's.
        device: where the model and batches live (``cuda`` on a GPU machine, as the scorer's actor would).

    Returns:
        A :class:`PathResult`; ``startup_s`` is the checkpoint load (and the move to ``device``), and one warm-up forward (first batch)
        runs before the clock starts.
    """
    import torch

    from ser_models.models.model import EmotionModel
    from ser_models.training.batching import make_batch, plan_batches

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = EmotionModel.load_checkpoint(str(checkpoint)).to(device).eval()
    load_s = time.perf_counter() - t0
    max_samples = int(max_seconds * 16000)
    plan = plan_batches(clips.lengths(), batch_size, None)
    probs = np.zeros((len(clips), model.num_classes), np.float32)
    with torch.no_grad():
        b = make_batch(clips, plan[0], max_samples, None).to(device)
        model(b.wavs, b.lengths)  # first call allocates and picks kernels
        t0 = time.perf_counter()
        for index in plan:
            b = make_batch(clips, index, max_samples, None).to(device)
            probs[index] = torch.softmax(model(b.wavs, b.lengths).logits.float(), -1).cpu().numpy()
        secs = time.perf_counter() - t0
    return PathResult(name or f"forward, batch {batch_size}", secs, len(clips), load_s, probs)


#: Where scoring actors append the wall-clock start of their first batch (one JSON line per actor).
ACTOR_LOG = DEFAULT_WORKDIR / "scoring" / "actor_first_batch.jsonl"


def _timed_scorer_class():
    """``PoolScorer`` subclass that logs the wall-clock time of its first batch to :data:`ACTOR_LOG`.

    Defined in an importable module so that Ray ships it to the actor by reference; ``time.time()`` is
    the same clock in the actor and the driver (one machine).
    """
    import json

    from ser_models.scoring.scorer import PoolScorer

    class _Timed(PoolScorer):
        def __call__(self, batch):
            if not getattr(self, "_logged", False):
                self._logged = True
                with open(ACTOR_LOG, "a") as fh:
                    fh.write(json.dumps({"first_batch_start": time.time()}) + "\n")
            return super().__call__(batch)

    _Timed.__module__, _Timed.__qualname__ = __name__, "TimedPoolScorer"
    return _Timed


def _is_actor_log(path: str) -> bool:
    """Every line of ``path`` is one of :func:`_timed_scorer_class`'s records."""
    import json

    with open(path) as fh:
        return all(set(json.loads(line)) == {"first_batch_start"} for line in fh if line.strip())


def time_score_dataset(ds, checkpoint: str | Path, cfg, ids: list[str], in_process: bool = False,
                       name: str = "") -> PathResult:
    """Paths (a) and (a'): one ``score_dataset`` call on all N clips.

    The scorer class is swapped for :func:`_timed_scorer_class` (same code, plus a timestamp at its first
    batch), so one call splits into fixed start-up (call start -> first batch: actor process, imports,
    checkpoint load) and steady state (first batch -> all N clips gathered on the driver).
    """
    import ser_models.scoring.scorer as scorer_mod
    from ser_models.ownership import remove_if

    ACTOR_LOG.parent.mkdir(parents=True, exist_ok=True)
    remove_if(ACTOR_LOG, _is_actor_log, "an actor log of this benchmark")  # an earlier call's lines
    original = scorer_mod.PoolScorer
    scorer_mod.PoolScorer = globals()["TimedPoolScorer"]
    try:
        t0_wall, t0 = time.time(), time.perf_counter()
        scores = scorer_mod.score_dataset(ds, checkpoint, cfg, verbose=False, in_process=in_process)
        t_full = time.perf_counter() - t0
        t_end_wall = time.time()
    finally:
        scorer_mod.PoolScorer = original
    import json

    first = min(json.loads(x)["first_batch_start"] for x in ACTOR_LOG.read_text().splitlines())
    pos = {u: i for i, u in enumerate(scores.ids.astype(str))}
    probs = scores.probs[[pos[u] for u in ids]]
    res = PathResult(name, t_end_wall - first, len(ids), first - t0_wall, probs)
    res.end_to_end_s = t_full  # type: ignore[attr-defined]
    return res


TimedPoolScorer = _timed_scorer_class()


def load_clips(pool_dir: str | Path, n: int):
    """The first ``n`` training clips of the pool: a materialised Ray Dataset (scorer input columns) and the
    same clips decoded as a ``ClipSet``."""
    from ser_models.data import Pool
    from ser_models.data.clips import collect_clips
    from ser_models.data.inputs import AUDIO

    ds = Pool.open(pool_dir).dataset("train").select_columns(AUDIO.columns()).limit(n).materialize()
    clips = collect_clips(ds.iter_batches(batch_size=None, batch_format="numpy"), LABELS, require_labels=False)
    return ds, clips


def bench_model(label: str, checkpoint: Path, ds, clips, args, micro: int) -> list[PathResult]:
    """All paths for one checkpoint at forward micro-batch ``micro``; prints each row as it finishes."""
    from ser_models.scoring.scorer import ScorerConfig

    cfg = ScorerConfig(batch_size=args.batch_size, micro_batch_size=micro, num_actors=1,
                       num_cpus=THREADS, num_gpus=1.0 if args.device == "cuda" else 0.0)
    out = []
    for fn in (
        lambda: time_forward(checkpoint, clips, micro, name="(b) batched forward, in process", device=args.device),
        lambda: time_forward(checkpoint, clips, 1, name="(c) one clip at a time, in process", device=args.device),
        lambda: time_score_dataset(ds, checkpoint, cfg, clips.ids, name="(a) score_dataset, Ray Data actor"),
        lambda: time_score_dataset(ds, checkpoint, cfg, clips.ids, in_process=True,
                                   name="(a') score_dataset, in_process"),
        # (b) again, last: the first path runs while Ray's own processes are still settling after
        # ray.init, so the baseline is the faster of the two (b) runs (the conservative choice for a/b).
        lambda: time_forward(checkpoint, clips, micro, name="(b) batched forward, repeated last",
                             device=args.device),
    ):
        r = fn()
        print(f"  [{label}] {r.name}: {r.rate:.1f} clips/s over {r.clips} clips ({r.seconds:.1f} s), "
              f"fixed {r.startup_s:.1f} s", flush=True)
        out.append(r)
    return out


def summarise(label: str, results: list[PathResult]) -> tuple[list[list], dict]:
    by = {r.name[:4].strip(): r for r in results if "repeated" not in r.name}
    b = max((r for r in results if r.name.startswith("(b)")), key=lambda r: r.rate)  # see bench_model
    rows = []
    for r in results:
        e2e = getattr(r, "end_to_end_s", None)
        rows.append([label, r.name, r.clips, f"{r.seconds:.2f}", f"{r.rate:.1f}", f"{r.rate / b.rate:.2f}",
                     f"{r.startup_s:.1f}", f"{e2e:.1f}" if e2e else "-",
                     f"{np.abs(r.probs - b.probs).max():.1e}"])
    # The headline ratio includes every fixed cost a user pays: the actor's start-up for (a), the checkpoint
    # load for (b). The steady-state ratio (a/b) says what the actor costs per clip once it runs.
    ratios = {"a/b_e2e": (b.seconds + b.startup_s) / by["(a)"].end_to_end_s,
              "a/b": by["(a)"].rate / b.rate, "a/c": by["(a)"].rate / by["(c)"].rate,
              "b/c": b.rate / by["(c)"].rate, "ap/b": by["(a')"].rate / b.rate,
              "actor_startup_s": by["(a)"].startup_s,
              "a_end_to_end_rate": len(b.probs) / by["(a)"].end_to_end_s}
    return rows, ratios


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.scoring", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="24 clips, tiny encoder only, no results file")
    ap.add_argument("--pool-dir", default=str(DEFAULT_WORKDIR / "pool"), help="demo pool (built when missing)")
    ap.add_argument("--workdir", default=str(DEFAULT_WORKDIR / "scoring"), help="checkpoints and encoders")
    ap.add_argument("--n", type=int, default=400, help="clips scored by every path")
    ap.add_argument("--big", choices=[*BIG_SIZES, "smart-turn", "none"], default="mid",
                    help="the bigger encoder: a random wav2vec2 of that size, or the imported Smart Turn Whisper-tiny")
    ap.add_argument("--big-n", type=int, default=200, help="clips for the bigger encoder")
    ap.add_argument("--batch-size", type=int, default=None, help="ScorerConfig.batch_size (Ray Data batch; "
                    "default: ScorerConfig's)")
    ap.add_argument("--micro-batch-sizes", default="16,0",
                    help="clips per forward of (a), (a') and (b), one set of rows each; 0 = the scorer's auto "
                         "choice on this device (1 on CPU)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="where every path scores: auto = cuda when visible (the scorer's actor then reserves "
                         "one GPU), else cpu")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.big = 24, "none"
    if args.batch_size is None:
        from ser_models.scoring.scorer import ScorerConfig

        args.batch_size = ScorerConfig().batch_size
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(THREADS)
    pool_dir = ensure_pool(args.pool_dir)
    work = claim_workdir(args.workdir)
    init_ray(RAY_CPUS)
    models = [("tiny-wav2vec2 + LoRA", make_checkpoint(work / "ckpt_tiny", "tiny-wav2vec2"), args.n)]
    if args.big == "smart-turn":
        from ser_models.encoders.smart_turn import cached_encoder

        models.append(("Smart Turn Whisper-tiny (pretrained) + LoRA",
                       make_checkpoint(work / "ckpt_smart_turn", str(cached_encoder())), args.big_n or args.n))
    elif args.big != "none":
        enc = make_encoder_folder(work / f"encoder_{args.big}", args.big)
        models.append((f"wav2vec2-{args.big} (random) + LoRA", make_checkpoint(work / f"ckpt_{args.big}", str(enc)),
                       args.big_n or args.n))
    load = LoadWindow()
    rows, ratios, secs_audio = [], {}, {}
    from ser_models.scoring.scorer import auto_micro_batch

    micros = [int(m) or auto_micro_batch(args.device)
              for m in args.micro_batch_sizes.split(",")]
    for model_label, ckpt, n in models:
        ds, clips = load_clips(pool_dir, n)
        for micro in micros:
            label = f"{model_label}, micro-batch {micro}"
            secs_audio[label] = float(clips.lengths().sum()) / 16000
            r, q = summarise(label, bench_model(label, ckpt, ds, clips, args, micro))
            rows += r
            ratios[label] = q
    load.close()
    info = machine_info()
    headers = ["model", "path", "clips timed", "seconds", "clips/s", "vs (b)", "fixed s", "end-to-end s",
               "max |p - p_b|"]
    table = md_table(headers, rows)
    summary = md_table(["model", "audio s (N clips)", "a/b end to end (target >= 0.8)", "a/b steady state",
                        "a/c (target >= 5)", "b/c", "a'/b", "actor start-up s", "(a) end-to-end clips/s"],
                       [[k, f"{secs_audio[k]:.0f}", f"**{v['a/b_e2e']:.2f}**", f"{v['a/b']:.2f}",
                         f"**{v['a/c']:.2f}**", f"{v['b/c']:.2f}",
                         f"{v['ap/b']:.2f}", f"{v['actor_startup_s']:.1f}", f"{v['a_end_to_end_rate']:.1f}"]
                        for k, v in ratios.items()])
    print("\n" + table + "\n\n" + summary)
    text = "\n".join([
        "# Scoring benchmark",
        "",
        f"`python -m bench.scoring --n {args.n} --big {args.big} --big-n {args.big_n}`: the same training clips "
        f"of the demo pool (720 clips, 16 kHz; {args.n} for the tiny model, {args.big_n} for the bigger one) "
        f"scored by each path, in one run; Ray Data batch {args.batch_size}, "
        f"forward micro-batches {', '.join(map(str, micros))} (length-sorted; 1 is what the scorer's "
        f"`micro_batch_size=0` picks on CPU), {THREADS} torch thread(s) everywhere "
        f"(ray.init(num_cpus={RAY_CPUS}), scoring actor num_cpus={THREADS}), "
        "MC dropout off, " + ("on the GPU (the scorer's actor reserves one; the in-process paths move the "
                              "model there)." if args.device == "cuda" else "CPU only."),
        "",
        "The same N clips" + __doc__.split("The same N clips", 1)[1].split("\n\nEvery path", 1)[0],
        "",
        table,
        "",
        "`seconds` / `clips/s`: steady state (for (a)/(a') from the scorer's first batch to the last result on "
        "the driver); `fixed s`: call start to first batch for (a)/(a') (actor start-up, checkpoint load), "
        "checkpoint load for (b)/(c) "
        "(which also get one untimed warm-up forward); `end-to-end s`: the whole N-clip `score_dataset` call.",
        "",
        summary,
        "",
        NOTES,
        "",
        machine_markdown(info, load),
    ])
    if not args.quick:
        write_results(args.results, text)
    return {"ratios": ratios, "rows": rows, "text": text}


if __name__ == "__main__":
    main()
