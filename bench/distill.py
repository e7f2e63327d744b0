"""Teacher vs distilled student vs student + text, side by side on the demo pool.

    python -m bench.distill                        # Whisper-tiny teacher, 1-layer student at 1/4 FFN, 3 seeds
    python -m bench.distill --encoder tiny-whisper --distill-epochs 1 --seeds 0 --no-write     # a quick look

One run: ``jobs.distill``'s work (Ray Train, 1 worker) distils the pretrained Whisper-tiny encoder (Smart Turn
v3.2) into a student on the pool's training audio (no labels). Then every encoder (teacher, student) encodes
every clip once, frozen, into per-layer utterance means (timed: seconds per clip on one thread, the text
encoder's time added for the text model), and a multi-task head (4 classes + arousal / valence / dominance,
learned layer weights, selected on dev UA + CCC) trains on the cached features per seed; ``student + text``
fuses the student's features with a frozen text encoder over the transcripts (``model.text``). Reported on the
test split: UA, CCC per dimension, parameters (encoder + text encoder), mean +- standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

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
    mean_sd,
    write_results,
)

RESULTS = RESULTS_DIR / "distill.md"
LABELS = ["neutral", "happy", "angry", "sad"]
DIMS = ["arousal", "valence", "dominance"]


def encode_split(encoder, pool, split: str):
    """``(ids, features [N, L, D], labels, targets [N, 3], transcripts, seconds per clip)`` of a split."""
    import torch

    from ser_models.data.clips import collect_clips
    from ser_models.heads import masked_mean
    from ser_models.training.batching import make_batch

    rows = pool.metadata(columns=["utt_id", "label", "audio", "audio_format", "transcript", *DIMS], split=split)
    clips = collect_clips([{c: rows[c].to_numpy() for c in rows.columns}], LABELS, dimensions=DIMS).sorted_by_id()
    feats = np.zeros((len(clips), encoder.num_layers, encoder.hidden_size), np.float32)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(len(clips)):  # one clip at a time: what scoring does on CPU (bench.scoring)
            b = make_batch(clips, np.array([i]), 20 * 16000, None)
            enc = encoder(b.wavs, b.lengths)
            feats[i] = masked_mean(torch.stack(enc.hidden_states), enc.frame_lengths)[:, 0].numpy()
    return clips, feats, (time.perf_counter() - t0) / max(len(clips), 1)


def text_seconds_per_clip(text_cfg, transcripts) -> float:
    import torch

    from ser_models.encoders.text import TextEncoder

    text = TextEncoder(text_cfg)
    t0 = time.perf_counter()
    with torch.no_grad():
        for t in transcripts:
            text([t])
    return (time.perf_counter() - t0) / max(len(transcripts), 1)


def fit_head(model_cfg, splits: dict, seed: int, epochs: int) -> dict:
    """Train the head (and layer weights) of ``model_cfg`` on cached features; test metrics."""
    import torch

    from ser_models.models.model import EmotionModel
    from ser_models.training.config import OptimConfig, TrainConfig
    from ser_models.training.fitting import evaluate, fit

    cfg = TrainConfig(optim=OptimConfig(epochs=epochs, batch_size=16, seed=seed), lr_head=3e-3, early_stopping_patience=8,
                      select_metric="ua_plus_ccc")
    torch.manual_seed(seed)
    model = EmotionModel(model_cfg)
    counts = [int((splits["train"].labels == i).sum()) for i in range(len(LABELS))]
    fit(model, splits["train"], splits["dev"], cfg, class_counts=counts, log=lambda _: None)
    m = evaluate(model, splits["test"], cfg, torch.device("cpu"))
    return {"ua": m["ua"], **{f"ccc_{d}": m[f"ccc_{d}"] for d in DIMS}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--pool", default="", help="an existing demo pool ('' = build a 720-clip one)")
    parser.add_argument("--encoder", default="smart-turn", help="teacher: smart-turn (pretrained) or a tiny preset")
    parser.add_argument("--student-layers", type=int, default=1)
    parser.add_argument("--student-ffn-ratio", type=float, default=0.25)
    parser.add_argument("--distill-epochs", type=int, default=6)
    parser.add_argument("--head-epochs", type=int, default=30)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--text", default="tiny-text", help="model.text.source of the student + text model")
    parser.add_argument("--no-write", action="store_true", help="print, do not write bench/results/distill.md")
    args = parser.parse_args(argv)
    from ser_models.config import from_dict, to_dict
    from ser_models.data import Pool
    from ser_models.encoders import EncoderConfig, build_encoder
    from ser_models.encoders.text import TextConfig
    from ser_models.models.model import ModelConfig
    from ser_models.pretraining.distill import DistillConfig, parameter_count, run_distill
    from ser_models.training.config import ScalingConfig

    seeds = [int(s) for s in args.seeds.split(",")]
    work = claim_workdir(args.workdir) / "distill"
    info, load = machine_info(), LoadWindow()
    pool_dir = Path(args.pool) if args.pool else ensure_pool(claim_workdir(args.workdir) / "demo_720" / "pool")
    init_ray(2)
    teacher_cfg = from_dict(EncoderConfig, {"source": encoder_overrides(args.encoder)[0].split("=", 1)[1],
                                            "normalize_waveform": args.encoder == "smart-turn"})
    optim = dataclasses.replace(DistillConfig().optim, epochs=args.distill_epochs, batch_size=8, lr=5e-4,
                                max_crop_seconds=3.0)
    dcfg = DistillConfig(student_layers=args.student_layers, student_ffn_ratio=args.student_ffn_ratio, optim=optim)
    t0 = time.perf_counter()
    distilled = run_distill(str(pool_dir), str(work / f"run_{args.encoder}_{args.distill_epochs}"), teacher_cfg,
                            dcfg, ScalingConfig(num_workers=1, cpus_per_worker=2))
    distill_s = time.perf_counter() - t0
    pool = Pool.open(pool_dir)
    encoders = {"teacher": teacher_cfg, "student": distilled.encoder}
    cached: dict[str, dict] = {}
    speed, params = {}, {}
    for name, enc_cfg in encoders.items():
        encoder = build_encoder(enc_cfg).eval()
        params[name] = parameter_count(encoder.hf_model)
        cached[name] = {}
        for split in ("train", "dev", "test"):
            clips, feats, sec = encode_split(encoder, pool, split)
            clips.features, clips.audio = feats, None
            cached[name][split] = clips
            if split == "test":
                speed[name] = sec
        print(f"{name}: {params[name]:,} parameters, {speed[name] * 1000:.1f} ms per test clip", flush=True)
    text_cfg = TextConfig(source=args.text)
    speed["student + text"] = speed["student"] + text_seconds_per_clip(text_cfg, cached["student"]["test"].transcripts)
    from ser_models.encoders.text import TextEncoder

    params["student + text"] = params["student"] + parameter_count(TextEncoder(text_cfg))
    base = {"adapter": {"kind": "frozen"}, "pooling": "mean", "head_hidden": 64, "head_dropout": 0.2,
            "labels": LABELS, "dimensions": DIMS}
    models = {"teacher": ("teacher", from_dict(ModelConfig, {**base, "encoder": to_dict(teacher_cfg)})),
              "student": ("student", from_dict(ModelConfig, {**base, "encoder": to_dict(distilled.encoder)})),
              "student + text": ("student", from_dict(ModelConfig, {**base, "encoder": to_dict(distilled.encoder),
                                                                    "text": to_dict(text_cfg)}))}
    runs: dict[str, list[dict]] = {m: [] for m in models}
    for seed in seeds:
        for name, (features_of, model_cfg) in models.items():
            runs[name].append(fit_head(model_cfg, cached[features_of], seed, args.head_epochs))
        print(f"seed {seed}: " + "; ".join(f"{m} UA {r[-1]['ua']:.3f}" for m, r in runs.items()), flush=True)
    load.close()

    rows = [[m, f"{params[m]:,}", f"{params[m] / params['teacher']:.0%}", f"{speed[m] * 1000:.1f}",
             mean_sd([r["ua"] for r in rs]), *(mean_sd([r[f"ccc_{d}"] for r in rs]) for d in DIMS)] for m, rs in runs.items()]
    table = md_table(["model", "parameters", "of teacher", "ms / clip", "test UA", *(f"test CCC {d}" for d in DIMS)],
                     rows)
    hist = distilled.metrics["history"]
    text = (f"# Distillation benchmark\n\n`python -m bench.distill --encoder {args.encoder} --student-layers "
            f"{args.student_layers} --student-ffn-ratio {args.student_ffn_ratio} --distill-epochs "
            f"{args.distill_epochs} --head-epochs {args.head_epochs} --seeds {args.seeds} --text {args.text}"
            + (f" --pool {args.pool}" if args.pool else "") + "`: "
            f"distillation {distill_s:.0f} s (loss {hist[0]['loss']:.3f} -> {hist[-1]['loss']:.3f}, cosine "
            f"{hist[0]['cos']:.3f} -> {hist[-1]['cos']:.3f}; teacher layers {distilled.metrics['teacher_layers']}), "
            f"{time.perf_counter() - t0:.0f} s in all.\n\n" + __doc__.split("\n\n", 2)[2].strip()
            + f"\n\n{table}\n\n{machine_markdown(info, load)}\n\n```json\n"
            f"{json.dumps({'runs': runs, 'distill_history': hist}, indent=1)}\n```\n")
    print(text)
    if not args.no_write:
        write_results(RESULTS, text)


if __name__ == "__main__":
    main()
