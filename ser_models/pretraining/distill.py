"""Layer-wise distillation of a speech encoder into a smaller student of its own architecture, on pool audio.

The student (:mod:`ser_models.encoders.student`: the teacher's first layers, narrower feed-forwards, started
from the teacher's weights) encodes a clip; one linear prediction head per chosen teacher layer maps the
student's last hidden state to that layer, and the loss is, per frame and head, the L1 distance minus
``log sigmoid(cosine similarity)`` (DistilHuBERT's objective), averaged over valid frames. No labels are read.

It runs on the TAPT machinery (:func:`ser_models.pretraining.tapt.pretrain` for epochs, resume state and the
schedule; :func:`~ser_models.pretraining.tapt.tapt_loop_per_worker` on Ray Train), so it streams large pools,
checkpoints every epoch and resumes the same way::

    output_dir/
      student/encoder.safetensors   the student's weights (model.encoder.checkpoint)
      student/encoder.json          the EncoderConfig that loads it, parameter counts, teacher layers
      distill_metrics.json          loss / L1 / cosine per epoch (written last: marks the run finished)
      distill_loss.png              loss curve
      ray_train/distill/            Ray Train checkpoints per epoch; rerunning resumes from them

References:
    Chang, Yang, Lee, 2022. DistilHuBERT: Speech Representation Learning by Layer-wise Distillation of
    Hidden-Unit BERT. ICASSP.
    de Oliveira, Prabhu, Gerkmann, 2023. Leveraging Semantic Information for Efficient Self-Supervised Emotion
    Recognition with Audio-Textual Distilled Models. arXiv:2305.19184.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ser_models.config import RESULT, field, from_dict, to_dict
from ser_models.data import Pool
from ser_models.data.clips import AUDIO_INPUT_COLUMNS as TAPT_COLUMNS
from ser_models.encoders import Encoder, EncoderConfig, build_encoder
from ser_models.exceptions import ConfigError
from ser_models.io import StoragePath
from ser_models.pretraining.driver import PretrainLayout, PretrainTraining, Say, run_pretraining
from ser_models.pretraining.pretraining import WEIGHTS_FILE, tapt_loop_per_worker
from ser_models.training.config import OPTIM_RENAMED, OptimConfig

STUDENT_DIR = "student"
METRICS_FILE = "distill_metrics.json"
PLOT_FILE = "distill_loss.png"


@dataclass
class DistillConfig:
    """The student's size and how it is distilled (``distill`` in ``jobs.distill``)."""

    student_layers: int = field(1, effect=RESULT, help="transformer layers the student keeps (the teacher's first ones)")
    student_ffn_ratio: float = field(0.5, effect=RESULT, help="fraction of each kept layer's feed-forward units")
    teacher_layers: list[int] = field(effect=RESULT, default_factory=list,
                                      help="teacher hidden states the student predicts, one head each ([] = three "
                                           "evenly spaced up to the last: 4, 8, 12 of 12 as in DistilHuBERT)")
    cos_weight: float = field(1.0, effect=RESULT, help="weight of -log sigmoid(cosine) next to the L1 term")
    optim: OptimConfig = field(effect=RESULT, default_factory=lambda: OptimConfig(lr=2e-4, weight_decay=0.0, grad_clip=10.0),
                               help="the optimiser: passes over the pool's audio, AdamW, schedule, crops, and the seed "
                                    "of shuffling, crops and head init")

    RENAMED: ClassVar[dict[str, str]] = OPTIM_RENAMED

    def __post_init__(self):
        if self.student_layers < 1:
            raise ConfigError(f"distill.student_layers must be >= 1, got {self.student_layers}")
        if not 0 < self.student_ffn_ratio <= 1:
            raise ConfigError(f"distill.student_ffn_ratio must be in (0, 1], got {self.student_ffn_ratio}")
        if self.cos_weight < 0:
            raise ConfigError(f"distill.cos_weight must be >= 0, got {self.cos_weight}")


def student_config(teacher: EncoderConfig, cfg: DistillConfig, checkpoint: str | None = None) -> EncoderConfig:
    """The ``EncoderConfig`` of the student: the teacher's source, cut to size, with ``checkpoint`` loaded."""
    return dataclasses.replace(teacher, student_layers=cfg.student_layers, student_ffn_ratio=cfg.student_ffn_ratio,
                               checkpoint=checkpoint)


def resolve_teacher_layers(layers: list[int], num_layers: int) -> list[int]:
    """Teacher hidden-state indices to predict: ``layers`` checked, or three evenly spaced ending at the last.

    Raises:
        ConfigError: an index outside ``1..L-1`` (0 is the input embedding, which the student shares).
    """
    top = num_layers - 1
    if not layers:
        return sorted({max(1, round(top * (i + 1) / 3)) for i in range(3)})
    bad = [x for x in layers if not 1 <= int(x) <= top]
    if bad:
        raise ConfigError(f"distill.teacher_layers {bad} are outside 1..{top} (the teacher's transformer layers)")
    return sorted({int(x) for x in layers})


class DistillObjective(nn.Module):
    """The student encoder plus one prediction head per teacher layer; the teacher rides along untrained.

    The TAPT training step calls ``prepare`` (the teacher's targets, no gradient, outside DDP) then
    ``forward`` (the student and heads), which returns ``{"loss", "l1", "cos"}`` per valid frame and head.

    Args:
        student: the :class:`Encoder` being trained (``objective.encoder``: its weights are the result).
        teacher: the frozen teacher (same front end, so the same frames).
        cfg: distillation settings.
    """

    name = "distill"

    def __init__(self, student: Encoder, teacher: Encoder, cfg: DistillConfig):
        super().__init__()
        self.encoder = student
        self.cfg = cfg
        self.teacher_layers = resolve_teacher_layers(cfg.teacher_layers, teacher.num_layers)
        self.heads = nn.ModuleList(nn.Linear(student.hidden_size, teacher.hidden_size) for _ in self.teacher_layers)
        teacher.eval().requires_grad_(False)
        # A plain attribute, not a submodule: neither trained, nor checkpointed, nor DDP-synced.
        self.__dict__["teacher"] = teacher

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.__dict__["teacher"]._apply(fn)
        return self

    @property
    def min_samples(self) -> int:
        return max(self.encoder.min_samples, self.teacher.min_samples)

    def set_step(self, step: int) -> None:
        """No annealing (the TAPT loop calls it every step)."""

    @torch.no_grad()
    def prepare(self, wavs: torch.Tensor, lengths: torch.Tensor, rng: np.random.Generator) -> dict:
        """The teacher's hidden states at ``teacher_layers`` for ``wavs [B, T]``: targets ``[B, K, F, D]``."""
        self.teacher.eval()
        out = self.teacher(wavs, lengths)
        targets = torch.stack([out.hidden_states[i] for i in self.teacher_layers], 1)
        return {"wavs": wavs, "lengths": lengths, "targets": targets, "frame_lengths": out.frame_lengths}

    def forward(self, wavs, lengths, targets, frame_lengths) -> dict:
        hidden = self.encoder(wavs, lengths).hidden_states[-1]  # [B, F, D]
        frames = min(hidden.shape[1], targets.shape[2])
        hidden, targets = hidden[:, :frames], targets[:, :, :frames]
        preds = torch.stack([head(hidden) for head in self.heads], 1).float()  # [B, K, F, D]
        targets = targets.float()
        valid = (torch.arange(frames, device=hidden.device)[None, :] < frame_lengths[:, None]).float()  # [B, F]
        weight = valid[:, None, :].expand(-1, len(self.heads), -1)
        denom = weight.sum().clamp(min=1.0)
        l1 = (preds - targets).abs().mean(-1)  # [B, K, F]
        cos = nn.functional.cosine_similarity(preds, targets, dim=-1)
        per_frame = l1 - self.cfg.cos_weight * nn.functional.logsigmoid(cos)
        loss = (per_frame * weight).sum() / denom
        return {"loss": loss, "l1": ((l1 * weight).sum() / denom).detach(),
                "cos": ((cos * weight).sum() / denom).detach()}

    def extra_repr(self) -> str:
        return f"teacher_layers={self.teacher_layers}, cos_weight={self.cfg.cos_weight}"


def build_distill_objective(teacher_cfg: EncoderConfig, cfg: DistillConfig) -> DistillObjective:
    """Teacher and student (from the teacher's weights) built from the teacher's encoder config."""
    teacher = build_encoder(dataclasses.replace(teacher_cfg, student_layers=0, student_ffn_ratio=1.0))
    student = build_encoder(student_config(teacher_cfg, cfg, checkpoint=None))
    return DistillObjective(student, teacher, cfg)


def parameter_count(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


@dataclass
class DistillResult:
    """A finished distillation: ``encoder`` is the config that loads the student everywhere."""

    output_dir: object
    encoder: EncoderConfig
    metrics: dict
    seconds: float
    reused: bool = False


def run_distill(pool_dir: str, output_dir: str, teacher: EncoderConfig, cfg: DistillConfig, scaling, *,
                split: str = "train", run_name: str = "distill", verbose: bool = True) -> DistillResult:
    """Distill ``teacher`` into a student on ``split``'s audio with Ray Train (or reuse the finished run).

    Returns:
        A :class:`DistillResult`.

    Raises:
        TrainingError: Ray Train gives up, or no checkpoint came back.
    """

    layout = PretrainLayout("distillation", STUDENT_DIR, WEIGHTS_FILE, "encoder.json", METRICS_FILE, PLOT_FILE,
                            finished_by_marker=True)  # the marker holds the config that loads the student

    def prepare(out: StoragePath, say: Say) -> PretrainTraining:
        pool = Pool.open(pool_dir)
        dataset = pool.dataset(split, columns=TAPT_COLUMNS)
        dataset.context.enable_progress_bars = False
        rows = len(pool.metadata(columns=["utt_id"], split=split))
        probe = build_distill_objective(teacher, cfg)  # checks the sizes and layers before Ray starts
        counts = {"teacher_params": parameter_count(probe.teacher.hf_model),
                  "student_params": parameter_count(probe.encoder.hf_model),
                  "teacher_layers": probe.teacher_layers}
        del probe
        say(f"distilling {teacher.source} ({counts['teacher_params']:,} parameters) into a {cfg.student_layers}-layer "
            f"student at {cfg.student_ffn_ratio:g}x feed-forward width ({counts['student_params']:,} parameters, "
            f"{counts['student_params'] / counts['teacher_params']:.0%}); predicting teacher layers "
            f"{counts['teacher_layers']} on {rows} clips of split {split!r}")
        t0 = time.perf_counter()
        loop_config = {"build": build_from_config, "encoder": to_dict(teacher), "distill": to_dict(cfg),
                       "threads": scaling.cpus_per_worker}

        def describe(_metrics: dict, _staged: dict | None) -> dict:
            encoder = student_config(teacher, cfg, checkpoint=str(out / STUDENT_DIR / WEIGHTS_FILE))
            return {"encoder": to_dict(encoder), "teacher": to_dict(teacher), "distill": to_dict(cfg), **counts}

        return PretrainTraining(
            tapt_loop_per_worker, loop_config, dataset, rows, t0,
            missing=f"distillation run {run_name!r}: the last checkpoint has no {WEIGHTS_FILE}",
            describe=describe, title=lambda _metrics: f"distillation of {teacher.source}", extra_metrics=counts)

    run = run_pretraining(output_dir, layout, scaling, run_name, prepare, verbose=verbose)
    if run.reused:
        return DistillResult(run.output_dir, from_dict(EncoderConfig, run.info["encoder"]), run.metrics, 0.0, True)
    encoder = student_config(teacher, cfg, checkpoint=str(run.weights))  # the one its marker records
    return DistillResult(run.output_dir, encoder, run.metrics, run.seconds)


def build_from_config(config: dict):
    """The Ray Train worker's builder (see :mod:`ser_models.pretraining.pretraining`): ``(objective, DistillConfig)``
    from ``{"encoder": the teacher's EncoderConfig dict, "distill": DistillConfig dict}``."""

    cfg = from_dict(DistillConfig, config["distill"])
    torch.manual_seed(cfg.optim.seed)  # identical head init on every replica
    return build_distill_objective(from_dict(EncoderConfig, config["encoder"]), cfg), cfg
