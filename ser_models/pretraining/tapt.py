"""Task-adaptive pre-training (TAPT): continue the encoder's self-supervised objective on the pool's audio.

Two objectives, picked by encoder family (``tapt.objective=auto``):

- ``contrastive`` (wav2vec2): ``Wav2Vec2ForPreTraining`` over the encoder's own base model. Since
  transformers 4.12 its forward returns ``loss=None`` unless ``sampled_negative_indices`` is passed; AFTER's
  published TAPT code passes only the mask and so trains nothing. Here masks and negatives are sampled per
  batch (:meth:`ContrastiveObjective.prepare`) and the loss is checked to exist.
- ``masked_prediction`` (HuBERT / WavLM): cross-entropy on masked frames between a cosine-similarity head
  and k-means cluster ids of MFCC frames (first iteration) or of a layer of the encoder itself (later
  iterations). Targets are computed per batch on the same random crop the model sees, from centroids fitted
  once on the driver (:func:`fit_clusters`).

Layers: masks (:mod:`~ser_models.pretraining.masking`), k-means targets (:mod:`~ser_models.pretraining.kmeans_targets`),
objectives (:mod:`~ser_models.pretraining.tapt_objectives`) -> one step, epochs with resume and the Ray Train worker
(:mod:`~ser_models.pretraining.pretraining`, shared with distillation) -> :func:`run_tapt` (driver, artifacts, on
the skeleton of :mod:`~ser_models.pretraining.driver`)::

    output_dir/
      encoder/encoder.safetensors   state dict of Encoder.hf_model: set EncoderConfig.checkpoint to it
      encoder/encoder.json          source encoder config, objective, epochs, final loss
      kmeans/clusters.npz           centroids [K, d] + feature mean/std (masked prediction only)
      tapt_metrics.json             loss per epoch, seconds (written last: marks the run finished)
      tapt_loss.png                 loss curve
      ray_train/tapt/               Ray Train checkpoints per epoch; rerunning resumes from them

Where we differ from AFTER's code: negatives are actually passed (so the loss exists), the loss is averaged
per masked frame, clips are shuffled and randomly cropped every epoch, the CNN is frozen by default, and
only the training split is ever read (dev/test are refused by the job config).

References:
    Li et al., "Active Learning with Task Adaptation Pre-training for Speech Emotion Recognition",
    arXiv:2405.00307 (AFTER). Baevski et al., "wav2vec 2.0", NeurIPS 2020. Hsu et al., "HuBERT",
    IEEE/ACM TASLP 2021.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from ser_models.config import to_dict
from ser_models.data import Pool
from ser_models.data.clips import AUDIO_INPUT_COLUMNS, ClipSet, collect_clips
from ser_models.encoders import EncoderConfig, build_encoder
from ser_models.exceptions import ConfigError
from ser_models.io import StoragePath, exists, write_json_atomic
from ser_models.pretraining.driver import PretrainLayout, PretrainTraining, Say, run_pretraining
from ser_models.pretraining.kmeans_targets import Clusters, fit_clusters, resolve_targets
from ser_models.pretraining.pretraining import WEIGHTS_FILE, tapt_loop_per_worker
from ser_models.pretraining.tapt_config import TaptJobConfig
from ser_models.pretraining.tapt_objectives import build_from_config

#: Pool columns TAPT reads: audio only, never labels.
TAPT_COLUMNS = AUDIO_INPUT_COLUMNS
ENCODER_DIR = "encoder"
INFO_FILE = "encoder.json"
METRICS_FILE = "tapt_metrics.json"
PLOT_FILE = "tapt_loss.png"
CLUSTERS_FILE = "kmeans/clusters.npz"
LAYOUT = PretrainLayout("TAPT", ENCODER_DIR, WEIGHTS_FILE, INFO_FILE, METRICS_FILE, PLOT_FILE)


@dataclass
class TaptResult:
    """What a finished TAPT run left behind; ``checkpoint`` is what ``EncoderConfig.checkpoint`` takes."""

    output_dir: Path
    checkpoint: Path
    metrics: dict
    seconds: float
    reused: bool = False

    def encoder_config(self, base: EncoderConfig) -> EncoderConfig:
        """``base`` (the source encoder config) pointed at the adapted weights."""
        return EncoderConfig(**{**vars(base), "checkpoint": str(self.checkpoint)})


def _driver_clips(dataset, max_clips: int, seed: int) -> ClipSet:

    # Block order randomised (cheap, no audio shuffle) so the k-means sample is not just the first files.
    sample = dataset.randomize_block_order(seed=seed).limit(max_clips)
    return collect_clips(sample.iter_batches(batch_size=64, batch_format="numpy"), labels=[],
                         require_labels=False).sorted_by_id()


def run_tapt(cfg: TaptJobConfig, dataset=None, *, run_name: str = "tapt", train_rows: int | None = None,
             verbose: bool = True) -> TaptResult:
    """Run TAPT with Ray Train, or reuse the finished run in ``cfg.output_dir``.

    Args:
        cfg: the job config (pool, encoder, TAPT settings, scaling, output folder).
        dataset: a Ray Dataset of pool rows to use instead of ``Pool.open(cfg.pool_dir).dataset("train")``
            (only ``utt_id, audio, audio_format, num_samples`` are read).
        run_name: Ray Train run name under ``output_dir/ray_train``.
        train_rows: clips in ``dataset`` when known (None = counted); above ``scaling.stream_above_clips``
            per worker, workers stream their shard every epoch instead of holding it.

    Returns:
        A :class:`TaptResult`.

    Raises:
        TrainingError: Ray Train gives up after ``scaling.max_failures`` restarts, or no checkpoint came back.
        ConfigError: the objective does not fit the encoder.
    """

    def prepare(out: StoragePath, say: Say) -> PretrainTraining:
        data, rows = dataset, train_rows
        if data is None:

            pool = Pool.open(cfg.pool_dir)
            data = pool.dataset(cfg.split, columns=TAPT_COLUMNS)
            rows = len(pool.metadata(columns=["utt_id"], split=cfg.split))
        data = data.select_columns(TAPT_COLUMNS)
        data.context.enable_progress_bars = False  # bars would interleave with the epoch lines
        t0 = time.perf_counter()  # the run's seconds include the k-means targets
        encoder = build_encoder(cfg.encoder)
        objective = cfg.tapt.resolve_objective(encoder.family)
        if objective == "adapter":
            raise ConfigError("tapt.objective=adapter (auto for Whisper) pre-trains the WAP adapter, not the encoder: "
                              "use jobs.adapter_pretrain, or jobs.after / jobs.finetune with model.wap.enabled=true")
        # Concrete k-means targets from here on: workers, tapt_info.json and a resumed run all see the same ones.
        job = dataclasses.replace(cfg, tapt=resolve_targets(cfg.tapt, encoder))
        clusters = None
        if objective == "masked_prediction":
            path = out / CLUSTERS_FILE
            if exists(path):  # a resumed run must keep the targets its checkpoints were trained on
                clusters = Clusters.load(path)
                say(f"reusing k-means targets {path}")
            else:
                clips = _driver_clips(data, job.tapt.kmeans_max_clips, job.tapt.optim.seed)
                clusters = fit_clusters(encoder, clips, job.tapt, batch_size=job.tapt.optim.batch_size)
                clusters.save(path)
                write_json_atomic(path[:-len(".npz")] + ".json" if path.endswith(".npz") else path + ".json",
                                  {"features": clusters.features, "layer": clusters.layer,
                                   "num_clusters": job.tapt.num_clusters, **clusters.stats})
                say(f"k-means: K={job.tapt.num_clusters} on {clusters.stats['frames']} {clusters.features} frames "
                    f"of {clusters.stats['clips']} clips ({clusters.stats['seconds']:.1f}s) -> {path}")
        del encoder
        loop_config = {"build": build_from_config, "encoder": to_dict(job.encoder), "tapt": to_dict(job.tapt),
                       "clusters": None if clusters is None else clusters.to_dict(),
                       "threads": job.scaling.cpus_per_worker}

        def describe(metrics: dict, _staged: dict | None) -> dict:
            adapted = TaptResult(out, out / ENCODER_DIR / WEIGHTS_FILE, metrics, metrics["seconds"])
            return {"source_encoder": to_dict(job.encoder), "encoder": to_dict(adapted.encoder_config(job.encoder)),
                    "objective": metrics["objective"], "epochs": len(metrics["history"]),
                    "final_loss": metrics["final_loss"], "tapt": to_dict(job.tapt),
                    "clusters": None if clusters is None else str(out / CLUSTERS_FILE)}

        return PretrainTraining(
            tapt_loop_per_worker, loop_config, data, data.count() if rows is None else rows, t0,
            missing=f"TAPT run {run_name!r}: the last checkpoint has no {WEIGHTS_FILE}", describe=describe,
            title=lambda metrics: f"TAPT {metrics['objective']} on {job.encoder.source}")

    run = run_pretraining(cfg.output_dir, LAYOUT, cfg.scaling, run_name, prepare, verbose=verbose)
    return TaptResult(run.output_dir, run.weights, run.metrics, run.seconds, reused=run.reused)
