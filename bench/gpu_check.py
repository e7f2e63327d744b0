"""A short GPU check: scoring throughput and MFU, one-clip-at-a-time scoring, a fine-tune step, NCCL.

    python bench/gpu_check.py                        # (or python -m bench.gpu_check) on one GPU, <= 8 minutes; writes gpu.md in bench/results
    python bench/gpu_check.py --device cpu --quick   # proves the script end to end on a CPU (prints only)

It runs in one process and needs only torch, transformers, peft and numpy (no Ray, no FAISS, no OmegaConf):
the GPU machines it is meant for hold torch, transformers, peft, pyarrow, scikit-learn and onnxruntime and
nothing from the network. So the scoring model is assembled here from the same parts the platform's
``EmotionModel`` uses (a Hugging Face speech encoder, peft LoRA on the attention projections, masked mean
pooling, an MLP head with dropout), and it takes two of the platform's own modules by file: the per-row
MC-dropout masks (``ser_models/heads/mc_dropout.py``) and the collective helpers
(``ser_models/training/distributed.py``), loaded without their packages' ``__init__`` (which pull in
OmegaConf).

What it measures, each in fp32 and in bf16 (autocast):

- scoring throughput, in seconds of audio per second, over clips of 1.5-5 s (the demo's lengths) sorted by
  length and scored in micro-batches, as ``PoolScorer`` does; MFU = counted FLOPs per second / the card's
  peak (FLOPs counted by ``torch.utils.flop_counter`` on the real batches);
- the same clips scored one at a time in fp32, as the AFTER paper's released code does, and the ratio
  (goal >= 5x);
- MC-dropout scoring (T passes with the platform's per-row masks drawn on the device);
- one LoRA fine-tune step's samples/s and MFU (FLOPs of forward + backward counted the same way);
- a one-process all-reduce and broadcast through the platform's helpers (NCCL on CUDA, gloo on the CPU).

Encoders: the bundled Whisper-tiny (Smart Turn v3.2, ``.cache/encoders/smart-turn-v3.2-whisper-tiny``;
skipped with a line when absent) and a randomly initialised wav2vec2-base-sized encoder (12 x 768; the
weights do not change the speed).

Peak dense TFLOPs (no sparsity), from NVIDIA's data sheets (H100 Tensor Core GPU datasheet, H200 product
brief, A100 datasheet): see :data:`PEAK_TFLOPS`. An unknown card gets no MFU.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where bench/peft.py would shadow the peft package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from contextlib import nullcontext  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WHISPER_DIR = ROOT / ".cache" / "encoders" / "smart-turn-v3.2-whisper-tiny"
RESULTS = ROOT / "bench" / "results" / "gpu.md"
SR = 16000

#: Dense peak TFLOPs by card: (bf16 tensor, fp32 non-tensor, tf32 tensor). NVIDIA data sheets (the tensor
#: figures without sparsity): H100 SXM5 989 / 67 / 495, H100 PCIe 756 / 51 / 378, H200 SXM as H100 SXM,
#: A100 (SXM and PCIe) 312 / 19.5 / 156.
PEAK_TFLOPS = {
    "H200": (989.0, 67.0, 495.0),
    "H100 PCIe": (756.0, 51.0, 378.0),
    "H100": (989.0, 67.0, 495.0),
    "A100": (312.0, 19.5, 156.0),
}


def _load_by_file(name: str, rel: str):
    """A platform module loaded from its file alone (its package's ``__init__`` imports OmegaConf)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mc_dropout = _load_by_file("ser_mc_dropout", "ser_models/heads/mc_dropout.py")
distributed = _load_by_file("ser_distributed", "ser_models/training/distributed.py")
whisper_windows = _load_by_file("ser_whisper_windows", "ser_models/encoders/whisper_windows.py")


def peak_tflops(device: torch.device) -> tuple[str, float, float, float] | None:
    """``(card, bf16, fp32, tf32)`` peak dense TFLOPs of ``device``'s card, or None (CPU, unknown card)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (bf16, fp32, tf32) in PEAK_TFLOPS.items():
        if all(part in name for part in key.split()):
            return key, bf16, fp32, tf32
    return None


# ---------------------------------------------------------------------------------------------------------
# The scoring model: encoder + LoRA + masked mean pooling + MLP head (the platform's EmotionModel, assembled)


class Scorer(nn.Module):
    """``forward(inputs, frames) -> logits [B, C]`` over an encoder's last hidden state."""

    def __init__(self, encoder: nn.Module, dim: int, kind: str, classes: int = 4, lora_rank: int = 8):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.kind = kind
        lora = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.1,
                          target_modules=["q_proj", "v_proj"])
        self.encoder = get_peft_model(encoder, lora)
        self.head = nn.Sequential(nn.Linear(dim, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, classes))

    def forward(self, inputs: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        if self.kind == "whisper-trim":
            hidden = self._trimmed(inputs, frames)
        elif self.kind == "whisper":  # the log-mel on the device, as the platform computes it
            mel = whisper_windows.log_mel_spectrogram(inputs, self.mel_filters)
            hidden = self.encoder(mel.to(inputs.dtype)).last_hidden_state
        else:
            hidden = self.encoder(inputs).last_hidden_state  # [B, F, D]
        valid = torch.arange(hidden.shape[1], device=hidden.device)[None] < frames[:, None]
        w = valid[..., None].to(hidden.dtype)
        pooled = (hidden * w).sum(1) / w.sum(1).clamp_min(1)
        return self.head(pooled)

    def _trimmed(self, inputs: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """The platform's ``trim`` windows: each clip's window cut to its frames rounded up to 1 s (50 frames),
        clips of one window length encoded together (``ser_models/encoders/whisper_windows.py``)."""
        window = inputs.shape[-1] // 320
        sizes = [w[0] for w in whisper_windows.window_frames((frames * 320).tolist(), window, 50)]
        hidden = None
        for n in sorted(set(sizes)):
            rows = torch.as_tensor([i for i, k in enumerate(sizes) if k == n], device=inputs.device)
            mel = whisper_windows.log_mel_spectrogram(inputs[rows, : 320 * n], self.mel_filters)
            h = whisper_windows.encode(self.encoder, mel)[-1]
            if hidden is None:
                hidden = h.new_zeros(inputs.shape[0], max(sizes), h.shape[-1])
            hidden[rows, :n] = h
        return hidden


def build_wav2vec2_base(device: torch.device, layers: int = 12) -> tuple[Scorer, callable]:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    # The defaults are wav2vec2-base's sizes (12 x 768); --quick keeps the width and fewer layers.
    cfg = Wav2Vec2Config(layerdrop=0.0, mask_time_prob=0.0, num_hidden_layers=layers)
    encoder = Wav2Vec2Model(cfg)
    model = Scorer(encoder, cfg.hidden_size, "wav2vec2").to(device).eval()

    def prepare(clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(len(c) for c in clips)
        x = np.zeros((len(clips), longest), np.float32)
        for i, c in enumerate(clips):
            x[i, : len(c)] = (c - c.mean()) / (c.std() + 1e-7)
        lengths = torch.as_tensor([len(c) for c in clips])
        frames = encoder._get_feat_extract_output_lengths(lengths)
        return torch.from_numpy(x), frames

    return model, prepare


def build_whisper_tiny(device: torch.device, trim: bool = False) -> tuple[Scorer, callable] | None:
    if not (WHISPER_DIR / "model.safetensors").is_file():
        return None
    from safetensors.torch import load_file
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig.from_pretrained(WHISPER_DIR)
    encoder = WhisperEncoder(cfg)
    state = {k.removeprefix("encoder."): v for k, v in load_file(WHISPER_DIR / "model.safetensors").items()}
    encoder.load_state_dict(state, strict=True)
    torch.manual_seed(0)
    model = Scorer(encoder, cfg.d_model, "whisper-trim" if trim else "whisper")
    model.register_buffer("mel_filters", whisper_windows.whisper_mel_filters(cfg.num_mel_bins))
    model = model.to(device).eval()
    window = int(WhisperFeatureExtractor.from_pretrained(WHISPER_DIR).n_samples)  # 8 s: every clip padded to it

    def prepare(clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded waveforms ``[B, window]`` (the log-mel is computed on the device) and valid frames."""
        x = np.zeros((len(clips), window), np.float32)
        for i, c in enumerate(clips):
            c = c[:window]
            x[i, : len(c)] = (c - c.mean()) / (c.std() + 1e-7)
        frames = torch.as_tensor([math.ceil(min(len(c), window) / 320) for c in clips])
        return torch.from_numpy(x), frames

    return model, prepare


# ---------------------------------------------------------------------------------------------------------
# Measurements


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str):
    """bf16 autocast, or fp32 with TF32 matmuls allowed (``tf32``) or not (``fp32``)."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def make_clips(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(int(rng.uniform(1.5, 5.0) * SR)).astype(np.float32) * 0.1 for _ in range(n)]


def score(model: Scorer, prepare, clips: list[np.ndarray], micro: int, device: torch.device, precision: str,
          mc_samples: int = 0, flops: bool = False, repeats: int = 2) -> dict:
    """Score ``clips`` in length-sorted micro-batches; returns seconds, audio seconds per second, FLOPs."""
    order = np.argsort([len(c) for c in clips])
    batches = [[clips[i] for i in order[s : s + micro]] for s in range(0, len(clips), micro)]
    total_flops = 0
    seeds = iter(range(10**9))
    dropouts = [m for name, m in model.named_modules()
                if isinstance(m, nn.Dropout) and (name.startswith("head.") or "lora_dropout" in name) and m.p > 0]

    def run(batch):
        x, frames = prepare(batch)
        if device.type == "cuda":
            x = x.pin_memory()
        x, frames = x.to(device, non_blocking=True), frames.to(device, non_blocking=True)
        with torch.no_grad(), autocast(device, precision):
            out = [model(x, frames).float().softmax(-1)]
            for salt in range(mc_samples):  # T passes, each row with its own seeded masks, drawn on the device
                row_seeds = [next(seeds) for _ in batch]
                hooks = [m.register_forward_hook(mc_dropout.row_seeded_dropout(row_seeds, k * 131 + salt, m.p))
                         for k, m in enumerate(dropouts)]
                try:
                    out.append(model(x, frames).float().softmax(-1))
                finally:
                    for h in hooks:
                        h.remove()
        return torch.stack(out).cpu()  # one host copy per micro-batch

    run(batches[-1])  # warm-up on the longest batch (kernels, allocator)
    seconds = math.inf
    for _ in range(repeats):  # the faster of the timed passes
        sync(device)
        t0 = time.perf_counter()
        for b in batches:
            run(b)
        sync(device)
        seconds = min(seconds, time.perf_counter() - t0)
    if flops:
        total_flops = sum(count_flops(lambda b=b: run(b)) for b in batches)
    audio = sum(len(c) for c in clips) / SR
    return {"seconds": seconds, "audio_s_per_s": audio / seconds, "flops": total_flops, "clips": len(clips)}


def train_step_rate(model: Scorer, prepare, device: torch.device, precision: str, batch: int, steps: int,
                    crop_s: float = 3.0) -> dict:
    """Samples/s of LoRA fine-tune steps (forward, backward, AdamW) on ``batch`` crops of ``crop_s`` s."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    rng = np.random.default_rng(1)
    clips = [rng.standard_normal(int(crop_s * SR)).astype(np.float32) * 0.1 for _ in range(batch)]
    x, frames = prepare(clips)
    x, frames = x.to(device), frames.to(device)
    y = torch.as_tensor(rng.integers(0, 4, batch), device=device)

    def step():
        with autocast(device, precision):
            loss = nn.functional.cross_entropy(model(x, frames).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = time.perf_counter() - t0
    flops = count_flops(step)
    model.eval()
    return {"samples_per_s": batch * steps / seconds, "flops_per_step": flops, "step_s": seconds / steps,
            "batch": batch, "crop_s": crop_s}


def collectives(device: torch.device) -> dict:
    """A one-process group (NCCL on CUDA, gloo on the CPU) through the platform's helpers."""
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{port}")
    try:
        where = distributed.collective_device(dist.get_backend())
        t0 = time.perf_counter()
        low = distributed.all_reduce_min(7)
        flag = distributed.broadcast_flag(True)
        seconds = time.perf_counter() - t0
        ok = low == 7 and flag is True
    finally:
        dist.destroy_process_group()
    return {"backend": backend, "tensor_device": str(where), "ok": ok, "seconds": seconds}


# ---------------------------------------------------------------------------------------------------------
# Report


def environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "card": "cpu", "driver": None, "host": platform.node()}
    import peft
    import transformers

    env["transformers"], env["peft"] = transformers.__version__, peft.__version__
    if device.type == "cuda":
        env["card"] = torch.cuda.get_device_name(device)
        env["memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.split("\n")[0].strip()
        except (OSError, subprocess.SubprocessError):
            env["driver"] = "unknown (nvidia-smi not found)"
    return env


def mfu(flops: float, seconds: float, peak: tuple[str, float, float] | None, precision: str) -> str:
    if not peak or not flops:
        return "n/a"
    top = {"bf16": peak[1], "fp32": peak[2], "tf32": peak[3]}[precision] * 1e12
    return f"{100 * flops / seconds / top:.1f} %"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu")
    ap.add_argument("--quick", action="store_true", help="a few clips and steps, print only (CPU proof run)")
    ap.add_argument("--out", default=str(RESULTS), help="report file (not written with --quick)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device is visible: run with --device cpu --quick to check the script itself")
        return 2
    t_start = time.perf_counter()
    env = environment(device)
    print(json.dumps(env))
    n_clips, micro, steps, mc_t, n_single, train_batch = (4, 2, 1, 2, 2, 2) if args.quick else (512, 32, 20, 8, 128, 16)
    micro_sweep = [2] if args.quick else [8, 64, 128]
    precisions = ["fp32", "tf32", "bf16"]
    peak = peak_tflops(device)
    clips = make_clips(n_clips)
    audio_s = sum(len(c) for c in clips) / SR
    print(f"gpu_check on {device} ({'quick' if args.quick else 'full'}): {n_clips} clips, {audio_s:.0f} s of audio")

    rows, single_rows, train_rows, notes = [], [], [], []
    coll = {"backend": "-", "tensor_device": "-", "ok": False, "seconds": 0.0}
    failed = []

    def write(final: bool = False) -> None:
        """The report so far, rewritten after each section, so a later failure keeps what was measured."""
        report = render(env, peak, rows, single_rows, train_rows, coll, notes, time.perf_counter() - t_start,
                        args.quick)
        if args.quick:
            if final:
                print(report)
            return
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report)

    def section(name: str, fn) -> None:
        """Run one measurement; a failure is reported in the notes and the check goes on."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the other sections
            import traceback

            failed.append(name)
            notes.append(f"{name} FAILED: {type(exc).__name__}: {exc}".replace("\n", " ")[:400])
            print(notes[-1])
            traceback.print_exc()
        write()

    layers = 2 if args.quick else 12
    encoders = [(f"wav2vec2-base-sized, {layers} layers (random init)", lambda d: build_wav2vec2_base(d, layers))]
    if WHISPER_DIR.is_dir():
        encoders.insert(0, ("Whisper-tiny (Smart Turn v3.2), trimmed windows", lambda d: build_whisper_tiny(d, True)))
        encoders.insert(0, ("Whisper-tiny (Smart Turn v3.2)", build_whisper_tiny))
    else:
        notes.append(f"Whisper-tiny skipped: {WHISPER_DIR.relative_to(ROOT)} is absent (see docs/encoders.md)")
        print("  " + notes[-1])
    for name, build in encoders:
        built = [None]

        def load(name=name, build=build, built=built):
            built[0] = build(device)
            if built[0] is None:
                notes.append(f"{name} skipped: its weights are absent")

        section(f"{name}: build", load)
        if built[0] is None:
            continue
        model, prepare = built[0]
        for precision in precisions:
            def measure(precision=precision, name=name, model=model, prepare=prepare):
                r = score(model, prepare, clips, micro, device, precision, flops=True)
                rows.append((name, precision, micro, r, mfu(r["flops"], r["seconds"], peak, precision)))
                print(f"  {name} {precision}: {r['audio_s_per_s']:.0f} audio s/s, MFU {rows[-1][-1]}")

            section(f"{name}: scoring {precision}", measure)
        if model.kind == "wav2vec2":
            for m in micro_sweep:
                def sweep(m=m, name=name, model=model, prepare=prepare):
                    r = score(model, prepare, clips, m, device, "bf16", flops=True)
                    rows.append((name, "bf16", m, r, mfu(r["flops"], r["seconds"], peak, "bf16")))
                    print(f"  {name} bf16 micro-batch {m}: {r['audio_s_per_s']:.0f} audio s/s, MFU {rows[-1][-1]}")

                section(f"{name}: bf16 micro-batch {m}", sweep)

        def one_at_a_time(name=name, model=model, prepare=prepare):
            one = score(model, prepare, clips[:n_single], 1, device, "fp32", repeats=1)
            mine = [r for n, _, _, r, _ in rows if n == name]
            best = max(mine, key=lambda r: r["audio_s_per_s"])
            same = next(r for n, p, mb, r, _ in rows if n == name and p == "fp32" and mb == micro)
            single_rows.append((name, one, same["audio_s_per_s"] / one["audio_s_per_s"],
                                best["audio_s_per_s"] / one["audio_s_per_s"]))
            print(f"  {name} one clip at a time (fp32): {one['audio_s_per_s']:.0f} audio s/s, batched fp32 is "
                  f"{single_rows[-1][2]:.1f}x, best batched {single_rows[-1][3]:.1f}x")

        section(f"{name}: one clip at a time", one_at_a_time)

        def mc(name=name, model=model, prepare=prepare):
            r = score(model, prepare, clips, micro, device, "bf16", mc_samples=mc_t, repeats=1)
            rows.append((name, f"bf16 + MC-dropout T={mc_t}", micro, r, "n/a"))
            print(f"  {name} bf16 with T={mc_t} MC passes: {r['audio_s_per_s']:.0f} audio s/s")

        if model.kind != "whisper-trim":  # its per-length groups would need the per-row seeds split to match
            section(f"{name}: MC-dropout", mc)
        if model.kind == "wav2vec2":
            for precision in precisions:
                for batch in ([train_batch] if args.quick else [train_batch, 4 * train_batch]):
                    def train(precision=precision, batch=batch, name=name, model=model, prepare=prepare):
                        tr = train_step_rate(model, prepare, device, precision, batch=batch, steps=steps,
                                             crop_s=1.5 if args.quick else 3.0)
                        train_rows.append((name, precision, tr, mfu(tr["flops_per_step"], tr["step_s"], peak,
                                                                    precision)))
                        print(f"  {name} fine-tune step {precision} batch {batch}: {tr['samples_per_s']:.1f} "
                              f"samples/s, MFU {train_rows[-1][-1]}")

                    section(f"{name}: fine-tune {precision} batch {batch}", train)
        model = prepare = built = None  # frees the GPU memory before the next encoder
        if device.type == "cuda":
            torch.cuda.empty_cache()

    def run_collectives():
        coll.update(collectives(device))
        print(f"  collectives ({coll['backend']}): tensors on {coll['tensor_device']}, ok={coll['ok']}")

    section("collectives", run_collectives)
    loaded = sorted({m.split(".")[0] for m in sys.modules} & {"ray", "faiss", "omegaconf"})
    if loaded:
        notes.append(f"imported {loaded}: the script must run without them")
    write(final=True)
    if not args.quick:
        print(f"wrote {args.out}")
    print(f"gpu_check finished in {time.perf_counter() - t_start:.0f} s" + (f"; failed: {failed}" if failed else ""))
    return 1 if loaded or failed or not coll["ok"] else 0


def render(env, peak, rows, single_rows, train_rows, coll, notes, total, quick) -> str:
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# GPU check" + (" (quick CPU proof run: not a measurement)" if quick else ""),
        "",
        f"Made by `python bench/gpu_check.py` on {when} in {total:.0f} s.",
        "",
        "```",
        json.dumps(env, indent=1),
        "```",
        "",
        f"Peak used for MFU: {peak[0]} {peak[1]:g} TFLOPs bf16 / {peak[2]:g} fp32 / {peak[3]:g} tf32 (dense, NVIDIA data sheet)"
        if peak else "Peak used for MFU: none (CPU or a card not in PEAK_TFLOPS), so no MFU.",
        "",
        "## Scoring (1.5-5 s clips, length-sorted micro-batches, the faster of two passes)",
        "",
        "Whisper pads every clip to its 8 s window; \"trimmed windows\" cuts each clip's window to its length "
        "rounded up to 1 s. fp32 = TF32 off, tf32 = fp32 with TF32 matmuls, bf16 = autocast.",
        "",
        "| encoder | precision | micro-batch | clips | audio s / s | TFLOP/s (counted) | MFU |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {n} | {p} | {m} | {r['clips']} | {r['audio_s_per_s']:.0f} | "
              + (f"{r['flops'] / r['seconds'] / 1e12:.3g}" if r["flops"] else "n/a") + f" | {u} |"
              for n, p, m, r, u in rows]
    lines += ["", "## One clip at a time (fp32, as the AFTER paper's code scores) vs batched (goal >= 5x)", "",
              "The first clips of the same set, one forward each; ratios are of audio seconds per second.", "",
              "| encoder | clips | audio s / s | batched fp32 / one-at-a-time | best batched / one-at-a-time |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {r['clips']} | {r['audio_s_per_s']:.0f} | {a:.1f}x | {b:.1f}x |" for n, r, a, b in single_rows]
    lines += ["", "## Fine-tune step (LoRA r=8 on q/v + head, AdamW)", "",
              "| encoder | precision | batch x crop | samples / s | step (ms) | MFU (forward + backward FLOPs) |",
              "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {p} | {t['batch']} x {t['crop_s']:g} s | {t['samples_per_s']:.1f} | {1000 * t['step_s']:.0f} | {u} |"
              for n, p, t, u in train_rows]
    lines += ["", "## Collectives through `ser_models/training/distributed.py`", "",
              f"One-process {coll['backend']} group: `all_reduce_min` and `broadcast_flag` put their tensors on "
              f"`{coll['tensor_device']}`; results correct: {coll['ok']}.", ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
