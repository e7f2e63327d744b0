"""Distill a speech encoder into a small student of its own architecture on the pool's audio (no labels).

    python -m jobs.distill jobs/configs/distill_demo.yaml [key.sub=value ...]
    platform/submit.sh distill jobs/configs/distill_demo.yaml output_dir=/mnt/outputs/distill

The student keeps the teacher's first ``distill.student_layers`` layers at ``distill.student_ffn_ratio`` of
their feed-forward width and learns to predict several teacher layers (DistilHuBERT's L1 + cosine loss) with
Ray Train. It prints the encoder overrides that use the student in any job (``student/encoder.json``).
Rerunning with the same ``output_dir`` resumes an interrupted run, or reuses a finished one.
"""


import sys
from dataclasses import dataclass

from ser_models.config import LOCATION, PATH, RESULT, field, parse_job_args, to_yaml
from ser_models.data import Pool
from ser_models.encoders import EncoderConfig
from ser_models.encoders.pretrained import resolve_encoder_names
from ser_models.ownership import deferred_claim
from ser_models.pretraining.distill import DistillConfig, run_distill
from ser_models.provenance import check_run
from ser_models.runtime import connect_ray
from ser_models.training.config import ScalingConfig


@dataclass
class DistillJobConfig:
    pool_dir: str = field(effect=LOCATION, path=PATH, help="prepared pool whose audio the student learns from")
    output_dir: str = field(effect=LOCATION, path=PATH, help="where student/encoder.safetensors and the metrics go")
    teacher: EncoderConfig = field(default_factory=EncoderConfig, help="the encoder distilled (as model.encoder)")
    distill: DistillConfig = field(default_factory=DistillConfig, help="student size and training")
    scaling: ScalingConfig = field(default_factory=ScalingConfig, help="Ray Train workers and retries")
    split: str = field("train", effect=RESULT, help="pool split whose audio is used (labels are never read)")


def main(argv: list[str] | None = None) -> dict:
    cfg = resolve_encoder_names(parse_job_args(DistillJobConfig, sys.argv[1:] if argv is None else argv, "jobs.distill"))

    with deferred_claim(cfg.output_dir, "run", job="jobs.distill", layout=DISTILL_LAYOUT,
                        inputs={"pool_dir": cfg.pool_dir, "teacher.source": cfg.teacher.source,
                                "teacher.checkpoint": cfg.teacher.checkpoint}) as claim:
        return _run(cfg, claim)


#: What jobs.distill writes into its output_dir besides run.json and config.yaml.
DISTILL_LAYOUT = ("student", "metrics.json", "distill_loss.png", "ray_train", "checkpoint")


def _run(cfg, claim) -> dict:

    pool = Pool.open(cfg.pool_dir)
    pool.metadata(columns=["utt_id"], split=cfg.split)  # a missing split fails before Ray starts
    claim()  # the output folder: marked and locked before the first byte
    check_run(cfg.output_dir, "jobs.distill", cfg, inputs={"pool": pool.lineage},
              config_yaml=to_yaml(cfg))
    connect_ray()
    result = run_distill(cfg.pool_dir, cfg.output_dir, cfg.teacher, cfg.distill, cfg.scaling, split=cfg.split)
    enc = result.encoder
    print(f"student ready ({result.metrics['student_params']:,} of the teacher's "
          f"{result.metrics['teacher_params']:,} parameters); use it in any job with:\n"
          f"  model.encoder.source={enc.source} model.encoder.student_layers={enc.student_layers} "
          f"model.encoder.student_ffn_ratio={enc.student_ffn_ratio:g} model.encoder.checkpoint={enc.checkpoint}")
    return result.metrics
