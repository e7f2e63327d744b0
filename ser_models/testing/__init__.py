"""Public fake-data builders for tests (tiny models, synthetic waveforms). Never downloads anything."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from ser_models.adapters import AdapterConfig
from ser_models.data import Pool, PoolConfig, generate_corpus, prepare_pool
from ser_models.data.clips import ClipSet
from ser_models.data.synth import generate_archive
from ser_models.data.synth.corpus import plan_corpus
from ser_models.data.synth.voice import synthesize_clip
from ser_models.encoders import EncoderConfig
from ser_models.formats.corpora.crema_d import SENTENCES
from ser_models.models.model import ModelConfig
from ser_models.ownership import claim_output
from ser_models.provenance import check_run
from ser_models.segment import SegmentConfig, segment_archive


def tiny_model_config(source: str = "tiny-wav2vec2", adapter: str = "lora", *, pooling: str = "mean",
                      featurizer_layer: int | None = None, labels: list[str] | None = None,
                      normalize_waveform: bool | str = "auto", head_hidden: int = 16, head_dropout: float = 0.1,
                      dimensions: list[str] | None = None, **adapter_kwargs) -> ModelConfig:
    """A :class:`ModelConfig` over a tiny random encoder (``tiny-wav2vec2`` | ``tiny-hubert`` | ``tiny-wavlm``).

    Args:
        source: tiny preset name (or any ``model.encoder.source``).
        adapter: ``model.adapter.kind``.
        pooling, featurizer_layer, labels, head_hidden, head_dropout, dimensions: the ``ModelConfig`` fields.
        normalize_waveform: ``model.encoder.normalize_waveform``.
        **adapter_kwargs: other :class:`AdapterConfig` fields (``r``, ``target_modules``, ...).
    """
    return ModelConfig(
        encoder=EncoderConfig(source=source, normalize_waveform=normalize_waveform),
        adapter=AdapterConfig(kind=adapter, **adapter_kwargs),
        featurizer_layer=featurizer_layer,
        pooling=pooling,
        head_hidden=head_hidden,
        head_dropout=head_dropout,
        labels=list(labels) if labels is not None else ["neutral", "happy", "angry", "sad"],
        dimensions=list(dimensions or []),
    )


def tone_clips(n: int, seed: int, seconds: tuple[float, float] = (0.5, 0.8), noise: float = 0.01):
    """A ``ClipSet`` of ``n`` int16 tones in two classes separable by loudness and pitch (quiet 150 Hz = 0, loud
    600 Hz = 1, alternating), ``seconds`` long (uniform); a model that trains must learn them.

    Args:
        n: clips.
        seed: draws the lengths (and the noise).
        seconds: ``(shortest, longest)`` clip length (s).
        noise: white-noise amplitude added to each tone (0 = none, and no draw for it).
    """


    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    audio = []
    for y in labels:
        t = np.arange(int(16000 * rng.uniform(*seconds))) / 16000
        wav = (0.05 if y == 0 else 0.5) * np.sin(2 * np.pi * (150 if y == 0 else 600) * t)
        if noise:
            wav = wav + noise * rng.standard_normal(len(t))
        audio.append((wav * 32767).astype(np.int16))
    return ClipSet(ids=[f"c{i:03d}" for i in range(n)], labels=labels, audio=audio)


def random_waveforms(batch: int = 2, seconds: float = 0.5, seed: int = 0,
                     min_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded random clips of different lengths at 16 kHz.

    Clip 0 is ``seconds`` long; the others have random lengths in ``[min_fraction, 1] * seconds``. The audio
    is a mix of a few sinusoids and noise, so it has structure without being trivially constant.

    Returns:
        ``(wavs [B, T] float32, lengths [B] int64 samples)``.
    """
    gen = torch.Generator().manual_seed(seed)
    n = int(round(seconds * 16_000))
    lengths = torch.full((batch,), n, dtype=torch.long)
    if batch > 1:
        frac = min_fraction + (1 - min_fraction) * torch.rand(batch - 1, generator=gen)
        lengths[1:] = (frac * n).long().clamp(min=1)
    t = torch.arange(n, dtype=torch.float32) / 16_000
    freqs = 100 + 400 * torch.rand(batch, 3, generator=gen)
    wavs = torch.sin(2 * torch.pi * freqs[:, :, None] * t).sum(1) * 0.1
    wavs = wavs + 0.05 * torch.randn(batch, n, generator=gen)
    wavs = wavs * (torch.arange(n)[None, :] < lengths[:, None])
    return wavs.float(), lengths


# ---------------------------------------------------------------------------------- demo pools
#: Clips in the demo corpus: enough for speaker-disjoint train/dev/test with all 4 emotions in each split.
#: jobs.after / jobs.evidence overrides of the trained-head path: LoRA adapters on the encoder, an MLP head with
#: LayerNorm on its input, AdamW epochs through Ray Train, TAPT first, ``informative_diverse`` selection. The
#: jobs' defaults are the frozen-encoder recipe; tests of these paths name them with this list (their own keys,
#: given after it, win).
TRAINED_HEAD_AFTER = (
    "model.adapter.kind=lora", "model.feature_norm=none", "model.head_hidden=128", "model.head_input_norm=true",
    "model.head_dropout=0.1", "train.solver=adamw", "train.l2_c=1.0", "scaling.backend=ray_train",
    "tapt_enabled=true", "active.strategy.name=informative_diverse", "active.strategy.prefilter_factor=10",
)

DEMO_N = 48
#: Corpus seed (same arguments give byte-identical audio).
DEMO_SEED = 0
#: The emotions of the synthetic corpus, in the order the smoke configs use as ``model.labels``.
DEMO_LABELS = ("neutral", "happy", "angry", "sad")


@dataclass(frozen=True)
class DemoPool:
    """Where the session's demo corpus and prepared pool live.

    Attributes:
        corpus_dir: generated corpus (``audio/``, ``manifest.csv``, ``clip_info.csv``).
        manifest: ``corpus_dir / "manifest.csv"``.
        pool_dir: the prepared pool (``data/``, ``summary.json``, ``quarantine.parquet``, ``config.yaml``).
        summary: what :func:`ser_models.data.prepare_pool` reported.
        labels: the label set the pool was validated against.
    """

    corpus_dir: Path
    manifest: Path
    pool_dir: Path
    summary: object  # ser_models.data.PoolSummary
    labels: tuple[str, ...] = DEMO_LABELS

    def open(self):
        """The prepared ``ser_models.data.Pool`` (cheap: reads ``summary.json`` only)."""

        return Pool.open(self.pool_dir)


_DEMO_POOLS: dict[Path, DemoPool] = {}


def assert_padding_invariant(encoder, seed: int = 2) -> None:
    """A clip's hidden states do not depend on what it is batched with: the shorter clip of a padded pair,
    encoded alone, gives the same valid frames (tolerance 1e-4).

    Raises:
        AssertionError: from ``torch.testing.assert_close`` on the first layer that differs.
    """
    wavs, lengths = random_waveforms(2, 0.8, seed=seed, min_fraction=0.4)
    short = int(lengths[1])
    with torch.no_grad():
        batched = encoder(wavs, lengths)
        alone = encoder(wavs[1:, :short], lengths[1:])
    n = int(alone.frame_lengths[0])
    assert int(batched.frame_lengths[1]) == n
    for hb, ha in zip(batched.hidden_states, alone.hidden_states):
        torch.testing.assert_close(hb[1, :n], ha[0, :n], atol=1e-4, rtol=1e-4)


def build_demo_pool(root: str | Path, n: int = DEMO_N, seed: int = DEMO_SEED) -> DemoPool:
    """Generate ``n`` synthetic clips under ``root/corpus`` and prepare them into ``root/pool``.

    Needs a running Ray (``prepare_pool`` is a Ray Data job). Memoised per ``root``: a second call returns
    the first result without touching the disk.

    Args:
        root: an empty folder (e.g. from ``tmp_path_factory``).
        n: clips in the corpus (>= 12).
        seed: corpus seed.
    """

    root = Path(root)
    if root in _DEMO_POOLS:
        return _DEMO_POOLS[root]
    corpus = root / "corpus"
    generate_corpus(corpus, n=n, seed=seed)
    # Same storage settings as jobs/configs/prepare_pool_smoke.yaml, so the tests exercise what users run.
    cfg = PoolConfig(manifest=str(corpus / "manifest.csv"), output_dir=str(root / "pool"),
                     labels=list(DEMO_LABELS), max_duration=8.0, audio_format="flac", batch_size=8,
                     num_workers=1)
    summary = prepare_pool(cfg)
    if summary.quarantined or set(summary.splits) != {"train", "dev", "test"}:
        raise RuntimeError(f"demo pool build is not what the tests assume: {summary.table()}")
    _DEMO_POOLS[root] = DemoPool(corpus, corpus / "manifest.csv", root / "pool", summary)
    return _DEMO_POOLS[root]


#: The generator's emotions as CREMA-D's file names code them (four of its six; the other two are never drawn).
CREMA_D_CODES = {"angry": "ANG", "happy": "HAP", "neutral": "NEU", "sad": "SAD"}


def crema_d_tree(root: str | Path, n: int = 240, seed: int = 0, n_actors: int = 12) -> pd.DataFrame:
    """A CREMA-D-shaped tree of generated speech, as the release unpacks:
    ``root/AudioWAV/<ActorID>_<Sentence>_<Emotion>_<Level>.wav`` (16 kHz mono PCM16; actors from 1001).

    Each actor's clips of one emotion take the sentence codes in turn, then the next intensity level, so every
    name is unique and well formed. The speech is the ``acted`` style of :func:`ser_models.data.generate_corpus`.

    Args:
        root: the corpus folder to write (``AudioWAV/`` is made in it).
        n: clips (>= 12). seed: the corpus seed. n_actors: actors (speakers).

    Returns:
        One row per clip: ``utt_id`` (the file name without ``.wav``), ``path`` (absolute), ``speaker`` (the
        actor id), ``label`` (the emotion the name codes).
    """
    folder = Path(root) / "AudioWAV"
    folder.mkdir(parents=True, exist_ok=True)
    actors: dict[str, str] = {}
    taken: dict[tuple[str, str], int] = {}
    rows = []
    for spec in plan_corpus(n, seed, n_actors):
        actor = actors.setdefault(spec.speaker.speaker_id, str(1001 + len(actors)))
        code = CREMA_D_CODES[spec.emotion]
        k = taken[actor, code] = taken.get((actor, code), -1) + 1
        name = f"{actor}_{SENTENCES[k % len(SENTENCES)]}_{code}_{('XX', 'LO', 'MD', 'HI')[k // len(SENTENCES)]}"
        wav, _ = synthesize_clip(spec, seed, sample_rate=16000, style="acted")
        sf.write(folder / f"{name}.wav", wav, 16000, subtype="PCM_16")
        rows.append({"utt_id": name, "path": str(folder / f"{name}.wav"), "speaker": actor, "label": spec.emotion})
    return pd.DataFrame(rows)


def session_pids(sid: int) -> list[int]:
    """Every live process of session ``sid`` (read from ``/proc``; Linux)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def kill_session(sid: int, timeout: float = 30.0) -> None:
    """SIGKILL every process of session ``sid`` until none is left: a machine that dies takes all of them.

    Killing the process group is not enough: Ray puts each worker and actor (Train's controller and workers
    among them) in a process group of its own, and those go on for seconds after their raylet died. A Ray Train
    worker then finished the next epoch and wrote its checkpoint, and the controller recorded it, after the
    "kill": the resumed run found nothing left to train (the fine-tuning resume test's flake).

    Raises:
        AssertionError: a process of the session outlived ``timeout`` seconds of kills.
    """

    deadline = time.monotonic() + timeout
    while pids := session_pids(sid):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes {pids} of session {sid} survived SIGKILL for {timeout:.0f} s")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def kill_when(cmd: list[str], ready, *, cwd: str | Path, env: dict | None = None, timeout: float = 300.0,
              log_file: str | Path | None = None, poll: float = 0.05) -> str:
    """Run ``cmd`` in a session of its own and SIGKILL the whole session as soon as ``ready()`` is true: the
    kill-and-resume tests' "die right after this point" (:func:`kill_session`: nothing it started writes
    anything after the kill).

    The output goes to a file, not a pipe: a chatty process would otherwise fill the pipe, block, and never
    reach the point the caller waits for.

    Args:
        cmd: the command (e.g. ``[sys.executable, "-m", "jobs.after", ...]``).
        ready: called every ``poll`` seconds; True = kill now (e.g. a checkpoint file exists).
        cwd / env: of the process.
        timeout: seconds to wait for ``ready``.
        log_file: where the output goes (None = a temporary file, removed afterwards).
        poll: seconds between checks.

    Returns:
        The process's output up to the kill.

    Raises:
        AssertionError: the process exited before ``ready()``, or ``timeout`` passed (with the output's end).
    """

    own = log_file is None
    log_path = Path(tempfile.mkstemp(suffix=".log")[1] if own else log_file)
    try:
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not ready():
                if proc.poll() is not None:
                    raise AssertionError(f"{cmd[:3]} exited ({proc.returncode}) before the kill point:\n"
                                         f"{log_path.read_text(errors='replace')[-4000:]}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{cmd[:3]} did not reach the kill point in {timeout:.0f} s:\n"
                                         f"{log_path.read_text(errors='replace')[-4000:]}")
                time.sleep(poll)
        finally:
            kill_session(proc.pid)
            proc.wait(60)
        return log_path.read_text(errors="replace")
    finally:
        if own:
            log_path.unlink(missing_ok=True)


def latest_ray_train_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint folder Ray Train V2 resumes ``run_dir`` from (named by its checkpoint manager's snapshot)."""

    run_dir = Path(run_dir)
    snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    return run_dir / snapshot["latest_checkpoint_result"]["checkpoint_dir_name"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server a test starts)."""

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_m4a(path: str | Path, wav, sample_rate: int) -> None:
    """Encode ``wav [n, C]`` (or ``[n]``) float32 as an M4A/AAC file with PyAV (libsndfile cannot write one).

    FFmpeg's AAC encoder adds 1024 priming samples at the start that this container does not signal, so the
    decoded file is about 1024 samples longer and later than ``wav``.
    """
    import av

    data = np.asarray(wav, dtype=np.float32)
    data = data[:, None] if data.ndim == 1 else data
    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout="mono" if data.shape[1] == 1 else "stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T), format="fltp", layout=stream.layout.name)
        frame.sample_rate = sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def write_long_recording(path: str | Path, seconds: float, seed: int = 0, sample_rate: int = 16000) -> None:
    """A mono PCM16 WAV of ``seconds``: a noise floor with a 1 s tone burst every 5 s, written in 60 s blocks
    (so writing a many-hour file holds one block). For memory and throughput tests, not for accuracy."""

    rng = np.random.default_rng(seed)
    block = 60 * sample_rate
    t = np.arange(block) / sample_rate
    burst = (0.3 * np.sin(2 * np.pi * 220 * t) * ((t % 5.0) < 1.0)).astype(np.float32)
    left = int(seconds * sample_rate)
    with sf.SoundFile(str(path), "w", sample_rate, 1, subtype="PCM_16") as fh:
        while left > 0:
            n = min(block, left)
            fh.write(burst[:n] + 0.01 * rng.standard_normal(n).astype(np.float32))
            left -= n


def build_segment_pool(root: str | Path, seed: int = 11, audio_format: str = "pcm16", n_episodes: int = 2) -> Path:
    """A small pool of segments: a generated archive (``n_episodes`` short episodes, one two-channel call; with 7
    or more episodes their shows fill train, dev and test) under ``root/archive``, segmented by ``jobs.segment``'s code into ``root/segments`` with labels by overlap, and
    prepared into ``root/pool``. Needs a running Ray. Returns the pool folder."""

    root = Path(root)
    info = generate_archive(root / "archive", seed=seed, n_episodes=n_episodes, n_calls=1, episode_minutes=(0.4, 0.5),
                            call_minutes=(0.4, 0.5), music_share=0.0, m4a_share=0.0)
    segment_archive(SegmentConfig(recordings=str(info["recordings"]), output_dir=str(root / "segments"),
                                  annotations=str(info["truth"]), num_workers=1), verbose=False)
    prepare_pool(PoolConfig(manifest=str(root / "segments" / "segments.parquet"), output_dir=str(root / "pool"),
                            audio_format=audio_format, num_workers=1))
    return root / "pool"


def claimed_check_run(folder, job: str, *args, **kwargs):
    """:func:`ser_models.provenance.check_run` as a job calls it: on ``folder`` claimed (a marked ``run``
    folder whose lock this process holds) for the call."""

    with claim_output(folder, "run"):
        return check_run(folder, job, *args, **kwargs)


@contextmanager
def beating_lock(path, every: float = 0.1):
    """While open: the holder of the lock file ``path`` (a record of another machine) beats, rewriting it with
    its ``beat`` counter raised every ``every`` s, as a live writer elsewhere would (its clock is not touched)."""

    stop = threading.Event()

    def beat():
        while not stop.wait(every):
            rec = json.loads(Path(path).read_text())
            tmp = Path(f"{path}.beat.tmp")
            tmp.write_text(json.dumps({**rec, "beat": int(rec.get("beat") or 0) + 1}))
            os.replace(tmp, path)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


#: Runs a command as PID 1 of a new user + PID namespace (a container's view of pids), killed with its parent.
PID_NAMESPACE = ["unshare", "--pid", "--fork", "--user", "--map-root-user", "--kill-child"]


def pid_namespace_refused() -> str | None:
    """Why this machine cannot start a process in a new PID namespace (None: it can)."""

    try:
        done = subprocess.run([*PID_NAMESPACE, sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare could not run: {exc}"
    if done.returncode != 0 or done.stdout.strip() != "1":
        return f"the kernel refused a user + PID namespace: {done.stderr.strip()[-300:]}"
    return None
