"""Batching a group-norm encoder on CPU: what exact, batch-independent features cost (issue 51, item 6).

    flock /tmp/heavy.lock python -m bench.bucketing               # 200 demo-like clips, writes results
    python -m bench.bucketing --clips 24 --no-write               # a quick look

The same N demo-like clips (the synthetic corpus of ``jobs.make_demo_pool``, 1.9-6 s, resampled to 16 kHz)
go through a wav2vec2-base-sized encoder with random weights (768 x 12, group-norm CNN of 7 x 512 channels:
``Wav2Vec2Config()``'s defaults, which are wav2vec2-base's), one torch thread, as a CPU scoring actor runs:

- ``one clip at a time``: micro-batch 1, today's CPU default (exact: nothing is padded);
- ``HF padded, sorted``: micro-batches of ``--micro`` clips, sorted by length within each Ray Data batch of
  ``--ray-batch`` clips, HF's own front end on the zero-padded batch: how a GPU actor batched before issue 51
  (its features move with the batch: see the last column);
- ``HF padded, unsorted``: the same in arrival order (what length sorting saves);
- ``Encoder.forward (per-clip front end), sorted``: ``Encoder.forward`` now: the CNN front end clip by clip
  on unpadded samples, then the frame sequences padded and the transformer batched under the frame mask;
- ``per-clip group norm, batched convs, sorted``: the other exact option, tried first: the convolutions
  batched on the padded input and only the first layer's group norm taken per clip over its valid frames;
- equal-length buckets (HF's other advice) are not run: the table states how many clips share a length.

Reported per path: clips/s, seconds of audio per second, wasted padding (padded samples / samples computed)
and the largest relative difference of any clip's per-layer mean features to one-at-a-time
(``max |x - ref| / max |ref|`` per clip).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import (
    DEFAULT_WORKDIR,
    RESULTS_DIR,
    LoadWindow,
    machine_info,
    machine_markdown,
    md_table,
    write_results,
)

SAMPLE_RATE = 16000


def demo_clips(n: int, seed: int = 0, workdir: Path | None = None) -> list[np.ndarray]:
    """``n`` clips of the synthetic demo corpus as float32 16 kHz waveforms (generated once under ``workdir``,
    default ``DEFAULT_WORKDIR/bucketing``)."""
    import pandas as pd

    from ser_models.data.audio import load_clip
    from ser_models.data.synth.corpus import generate_corpus

    corpus = (workdir or DEFAULT_WORKDIR / "bucketing") / f"corpus-{n}-{seed}"
    if not (corpus / "manifest.csv").exists():
        generate_corpus(corpus, n=n, seed=seed)
    manifest = pd.read_csv(corpus / "manifest.csv")
    return [load_clip(str(corpus / p))[0].astype(np.float32) for p in manifest["path"]]


def group_norm_encoder(size: str = "base"):
    """A group-norm :class:`~ser_models.encoders.encoder.Encoder` with random weights (seed 0): wav2vec2-base's
    size (``Wav2Vec2Config()``'s defaults are its architecture), or ``tiny`` (the ``tiny-wav2vec2-group``
    preset, for smoke tests). The preset's config only supplies the family's waveform normalisation."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from ser_models.encoders import EncoderConfig, build_encoder
    from ser_models.encoders.encoder import Encoder

    if size == "tiny":
        return build_encoder(EncoderConfig(source="tiny-wav2vec2-group")).eval()
    config = Wav2Vec2Config(layerdrop=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Wav2Vec2Model(config).eval()
    return Encoder(EncoderConfig(source="tiny-wav2vec2-group"), "wav2vec2", config, model).eval()


def _pad(clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(c) for c in clips])
    wavs = torch.zeros(len(clips), int(lengths.max()))
    for row, c in enumerate(clips):
        wavs[row, :len(c)] = torch.from_numpy(c)
    return wavs, lengths


def _means(hidden: tuple[torch.Tensor, ...], frames: torch.Tensor) -> np.ndarray:
    """``[B, L, D]`` per-layer means over each clip's valid frames (what the feature cache stores)."""
    stacked = torch.stack(hidden, 1)  # [B, L, F, D]
    mask = (torch.arange(stacked.shape[2])[None, :] < frames[:, None]).to(stacked.dtype)  # [B, F]
    return ((stacked * mask[:, None, :, None]).sum(2) / frames[:, None, None].to(stacked.dtype)).numpy()


def hf_padded(encoder, wavs, lengths) -> np.ndarray:
    """HF's forward on the padded batch with the sample mask: the pre-issue-51 ``Encoder.forward``."""
    x, mask = encoder.prepare_inputs(wavs, lengths)
    out = encoder.hf_model(x, attention_mask=mask, output_hidden_states=True)
    return _means(tuple(out.hidden_states), encoder.frame_lengths(lengths))


def padding_aware(encoder, wavs, lengths) -> np.ndarray:
    """``Encoder.forward`` as it is now."""
    out = encoder(wavs, lengths)
    return _means(out.hidden_states, out.frame_lengths)


def per_clip_norm(encoder, wavs, lengths) -> np.ndarray:
    """The other exact option: the CNN front end batched on the padded input, only the first layer's group norm
    taken per clip over its valid frames (later layers' valid frames read only valid frames); the rest as HF."""
    x, mask = encoder.prepare_inputs(wavs, lengths)
    extractor = encoder.hf_model.feature_extractor
    first = extractor.conv_layers[0]
    h = first.conv(x[:, None])
    valid = ((lengths - first.conv.kernel_size[0]) // first.conv.stride[0] + 1).tolist()
    norm, normed = first.layer_norm, torch.zeros_like(h)
    for b, n in enumerate(valid):
        normed[b:b + 1, :, :n] = torch.nn.functional.group_norm(h[b:b + 1, :, :n], norm.num_groups, norm.weight,
                                                                norm.bias, norm.eps)
    h = first.activation(normed)
    for layer in extractor.conv_layers[1:]:
        h = layer(h)
    extractor.forward = lambda _x: h
    try:
        out = encoder.hf_model(x, attention_mask=mask, output_hidden_states=True)
    finally:
        del extractor.forward
    return _means(tuple(out.hidden_states), encoder.frame_lengths(lengths))


#: name -> (forward, clips per forward (None = --micro), sorted by length). The two paths that matter most (HF's
#: padded batches and the padding-aware forward) run next to each other, and the baseline runs again last: the
#: machine is shared, and its drift during the run shows as the gap between the two baseline rows.
PATHS = {
    "one clip at a time": (padding_aware, 1, True),
    "HF padded, sorted": (hf_padded, None, True),
    "Encoder.forward (per-clip front end), sorted": (padding_aware, None, True),
    "per-clip group norm, batched convs, sorted": (per_clip_norm, None, True),
    "HF padded, unsorted": (hf_padded, None, False),
    "one clip at a time (again)": (padding_aware, 1, True),
}


def plan(lengths: np.ndarray, micro: int, ray_batch: int, sort: bool) -> list[np.ndarray]:
    """Micro-batches as the scorer forms them: Ray Data batches of ``ray_batch`` clips in arrival order, each
    sorted by length (``plan_batches`` without ``rng``) or not, cut into ``micro`` clips."""
    out = []
    for start in range(0, len(lengths), ray_batch):
        window = np.arange(start, min(start + ray_batch, len(lengths)))
        if sort:
            window = window[np.argsort(lengths[window], kind="stable")]
        out.extend(window[i:i + micro] for i in range(0, len(window), micro))
    return out


def run_path(encoder, clips: list[np.ndarray], fn, batches: list[np.ndarray]) -> tuple[float, float, np.ndarray]:
    """``(seconds, wasted padding share, [N, L, D] means)`` of ``fn`` over ``batches`` (one warm-up batch first)."""
    lengths = np.asarray([len(c) for c in clips])
    out = np.zeros((len(clips), encoder.num_layers, encoder.hidden_size), np.float32)
    computed = sum(len(b) * int(lengths[b].max()) for b in batches)
    with torch.no_grad():
        fn(encoder, *_pad([clips[i] for i in batches[0]]))
        t0 = time.perf_counter()
        for index in batches:
            out[index] = fn(encoder, *_pad([clips[i] for i in index]))
        secs = time.perf_counter() - t0
    return secs, 1 - lengths.sum() / computed, out


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--micro", type=int, default=8, help="clips per forward of the batched paths")
    parser.add_argument("--ray-batch", type=int, default=128, help="active.scorer.batch_size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--encoder", choices=("base", "tiny"), default="base",
                        help="wav2vec2-base-sized random weights, or the tiny group-norm preset (smoke tests)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    clips = demo_clips(max(args.clips, 12))[:args.clips]
    lengths = np.asarray([len(c) for c in clips])
    encoder = group_norm_encoder(args.encoder)
    load = LoadWindow()
    rows, ref = [], None
    for name, (fn, micro, sort) in PATHS.items():
        batches = plan(lengths, micro or args.micro, args.ray_batch, sort)
        secs, waste, means = run_path(encoder, clips, fn, batches)
        ref = means if ref is None else ref
        diff = np.abs(means - ref).max(axis=(1, 2)) / np.abs(ref).max(axis=(1, 2))
        rows.append((name, micro or args.micro, secs, waste, float(diff.max())))
        print(f"{name}: {secs:.1f} s, padding {100 * waste:.1f} %, max rel diff {diff.max():.1e}", flush=True)
    load.close()
    base = rows[0][2]
    audio_s = lengths.sum() / SAMPLE_RATE
    table = md_table(
        ["path", "clips / forward", "clips/s", "audio s/s", "time vs one at a time", "wasted padding",
         "max rel. diff of features to one at a time"],
        [(name, micro, f"{len(clips) / secs:.2f}", f"{audio_s / secs:.1f}", f"{secs / base:.2f}x",
          f"{100 * waste:.1f} %", f"{diff:.1e}") for name, micro, secs, waste, diff in rows])
    shared = len(lengths) - len(np.unique(lengths))
    text = (f"# Batching a group-norm encoder on CPU (bench.bucketing)\n\n"
            f"`python -m bench.bucketing --clips {args.clips} --micro {args.micro} --ray-batch {args.ray_batch} "
            f"--threads {args.threads} --encoder {args.encoder}` under `flock /tmp/heavy.lock`.\n\n"
            f"{machine_markdown(machine_info(), load)}\n\n"
            f"{len(clips)} demo-like clips ({lengths.min() / SAMPLE_RATE:.1f}-{lengths.max() / SAMPLE_RATE:.1f} s, "
            f"{audio_s:.0f} s of audio; {shared} share their length with another clip, so equal-length buckets "
            "would be single clips), "
            f"{'wav2vec2-base-sized encoder' if args.encoder == 'base' else 'tiny-wav2vec2-group'} with random weights, "
            f"{args.threads} torch thread(s), all paths in one run on one process.\n\n{table}\n")
    print(text)
    if not args.no_write:
        print(f"wrote {write_results(RESULTS_DIR / 'bucketing.md', text)}")
    return text


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
