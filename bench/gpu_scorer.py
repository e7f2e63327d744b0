"""The platform's own scorer on one GPU: ``PoolScorer`` as a scoring actor runs it, without Ray.

    python bench/gpu_scorer.py --out bench/results/gpu_scorer.md     # on a GPU machine, <= 4 minutes
    python bench/gpu_scorer.py --device cpu --quick                  # proves the script on a CPU (prints only)

``bench/gpu_check.py`` times an encoder assembled from the platform's parts; this times the class itself, the
work one Ray Data actor does per batch: FLAC decode, length-sorted micro-batches (sized from free memory when
``micro_batch_size=0``, the default), the forward passes, MC-dropout draws and the copy back of probabilities
and embeddings. Ray's own scheduling is not in it (the GPU machines have no Ray), so a cluster adds its
per-batch overhead on top (``bench/scoring.py`` times that on a CPU).

Clips: 512 noise clips of 1.5-5 s (the demo's lengths), in batches of 128 rows (``active.scorer.batch_size``'s
default). Encoders: the bundled Whisper-tiny (Smart Turn v3.2, ``.cache/encoders/...``; skipped when absent)
and a randomly initialised wav2vec2-base-sized encoder (12 x 768) saved to a temporary folder, both with a LoRA
adapter (r=8) and the platform's head. Each row is the faster of two passes, each over its own draw of clips
(lengths not seen before, as a pool's are; a pass over clips seen before would hide the kernel planning that CUDA
libraries do per new shape), after a warm-up batch. Group-norm encoders (wav2vec2-base) also get a row with the
front end clip by clip, the CPU's way, to compare with the batched front end CUDA runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where bench/peft.py would shadow the peft package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WHISPER_DIR = ROOT / ".cache" / "encoders" / "smart-turn-v3.2-whisper-tiny"
SR = 16000


def make_batches(n: int, rows: int, seed: int = 0) -> tuple[list[dict], float]:
    """``n`` FLAC-encoded noise clips of 1.5-5 s in scorer batches of ``rows``; returns (batches, audio s)."""
    from ser_models.data.audio import encode_pool_audio

    rng = np.random.default_rng(seed)
    lengths = rng.integers(int(1.5 * SR), 5 * SR + 1, n)
    audio = [(0.1 * rng.standard_normal(k)).astype(np.float32) for k in lengths]
    batches = []
    for start in range(0, n, rows):
        part = audio[start: start + rows]
        batches.append({
            "utt_id": np.asarray([f"u{start + i}" for i in range(len(part))], dtype=object),
            "audio": np.asarray([encode_pool_audio(a, "flac") for a in part], dtype=object),
            "audio_format": np.asarray(["flac"] * len(part), dtype=object),
            "num_samples": np.asarray([len(a) for a in part], np.int64)})
    return batches, float(lengths.sum()) / SR


def wav2vec2_base_folder(where: Path) -> str:
    """A randomly initialised wav2vec2-base-sized encoder (12 x 768) saved as a local model folder."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(where)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(where)
    return str(where)


def model_cfg(source: str) -> dict:
    from ser_models.testing import tiny_model_config

    cfg = tiny_model_config(source, "lora", head_hidden=256, head_dropout=0.2, r=8)
    return dataclasses.asdict(cfg)


def time_scorer(scorer, passes: list[list[dict]], device: torch.device) -> float:
    """Seconds of the fastest full pass of ``passes`` (each a list of batches), after one warm-up batch of another
    draw. Each pass holds clips of lengths not seen before, as a pool's clips are: CUDA libraries plan a kernel
    per new input shape, and a pass over clips seen before would hide that."""
    scorer(make_batches(8, 8, seed=99)[0][0])
    best = float("inf")
    for batches in passes:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for b in batches:
            out = scorer(b)
            assert np.isfinite(out["probs"]).all()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    from ser_models.scoring.scorer import PoolScorer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="16 clips, one setting per encoder, print only")
    ap.add_argument("--out", default=None, help="report file (markdown); printed only when absent")
    ap.add_argument("--profile", choices=["wav2vec2", "whisper"], default=None,
                    help="only print where one bf16 pass of this encoder's scorer spends its time (cProfile)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.profile:
        return profile(device, 16 if args.quick else 512, args.profile)
    started = time.perf_counter()
    n = 16 if args.quick else 512
    draws = [make_batches(n, 8 if args.quick else 128, seed=seed) for seed in (1, 2)[:1 if args.quick else 2]]
    passes, audio_s = [d[0] for d in draws], draws[0][1]
    assert all(abs(d[1] - audio_s) / audio_s < 0.05 for d in draws)
    # (precision, micro-batch, MC passes, batched front end); the last runs group-norm front ends clip by clip
    settings = [("fp32", 0, 0, None), ("bf16", 0, 0, None), ("bf16", 32, 0, None), ("bf16", 0, 8, None),
                ("bf16", 0, 0, False)]
    if args.quick:
        settings = settings[:1]
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        encoders = [("wav2vec2-base-sized, 12 layers (random init)", wav2vec2_base_folder(Path(tmp) / "w2v2"))]
        if WHISPER_DIR.is_dir():
            encoders.insert(0, ("Whisper-tiny (Smart Turn v3.2)", str(WHISPER_DIR)))
        else:
            notes.append(f"Whisper-tiny skipped: {WHISPER_DIR} is absent.")
        for name, source in encoders:
            cfg = model_cfg(source)
            for precision, micro, mc, batched in settings:
                scorer = PoolScorer(None, model_cfg=cfg, mc_samples=mc, micro_batch_size=micro,
                                    device=str(device), precision=precision, threads=4)
                if batched is not None:
                    if not scorer.model.encoder.group_norm_front_end:
                        continue
                    scorer.model.encoder.batched_front_end = batched
                seconds = time_scorer(scorer, passes, device)
                size = scorer.batcher.size if scorer.batcher is not None else micro
                front = "n/a" if not scorer.model.encoder.group_norm_front_end else (
                    "clip by clip" if batched is False else "batched" if device.type == "cuda" else "clip by clip")
                rows.append((name, precision, "auto" if micro == 0 else str(micro), size, mc, front, n,
                             audio_s / seconds, n / seconds))
                print(f"{name} {precision} micro={micro or 'auto'}({size}) mc={mc}: "
                      f"{audio_s / seconds:.0f} audio s/s, {n / seconds:.0f} clips/s", flush=True)
                del scorer
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    text = render(device, rows, notes, time.perf_counter() - started)
    print(text)
    if args.out and not args.quick:
        Path(args.out).write_text(text)
    return 0


def profile(device: torch.device, n: int, encoder: str) -> int:
    """Print the 30 costliest calls (own time) of one bf16 pass of ``encoder``'s scorer, after a warm-up."""
    import cProfile
    import pstats

    from ser_models.data.audio import decode_pool_audio
    from ser_models.scoring.scorer import PoolScorer

    batches, audio_s = make_batches(n, 128, seed=1)
    t0 = time.perf_counter()
    for b in batches:
        for blob, fmt in zip(b["audio"], b["audio_format"]):
            decode_pool_audio(blob, fmt)
    print(f"FLAC decode alone: {time.perf_counter() - t0:.2f} s for {audio_s:.0f} s of audio", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = str(WHISPER_DIR) if encoder == "whisper" else wav2vec2_base_folder(Path(tmp) / "w2v2")
        scorer = PoolScorer(None, model_cfg=model_cfg(source),
                            device=str(device), precision="bf16", threads=4)
        scorer(batches[0])
        prof = cProfile.Profile()
        prof.enable()
        seconds = time_scorer(scorer, [batches], device)
        prof.disable()
    print(f"one pass: {seconds:.2f} s, {audio_s / seconds:.0f} audio s/s", flush=True)
    pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    return 0


def render(device: torch.device, rows: list[tuple], notes: list[str], total: float) -> str:
    import transformers

    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    lines = [
        "# The platform's scorer on one GPU",
        "",
        f"Made by `python bench/gpu_scorer.py` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC in {total:.0f} s, on "
        f"**{card}** (torch {torch.__version__}, transformers {transformers.__version__}, Python "
        f"{platform.python_version()}; no Ray on that machine).",
        "",
        "`PoolScorer` (one scoring actor's work per batch: FLAC decode, length-sorted micro-batches, forward, "
        "MC-dropout, probabilities and embeddings back to the host) over 512 noise clips of 1.5-5 s in batches "
        "of 128 rows; the faster of two passes, each over clips of lengths not seen before (as a pool's are), "
        "after a warm-up batch. `auto` = the micro-batch sized from free "
        "memory on the first batch (the default).",
        "",
        "| encoder | precision | micro-batch | clips per forward | MC passes | group-norm front end | clips "
        "| audio s / s | clips / s |",
        "|---|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for name, precision, micro, size, mc, front, n, audio_rate, clip_rate in rows:
        lines.append(f"| {name} | {precision} | {micro} | {size} | {mc} | {front} | {n} | {audio_rate:.0f} "
                     f"| {clip_rate:.0f} |")
    lines += [""] + notes + ([""] if notes else [])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
