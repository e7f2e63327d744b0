"""The jobs the ``ser-models`` command runs: subcommand, module, config class, group and one-line summary.

Plain data, imported by the command (:mod:`ser_models.cli.command`) and by every job's ``--help``
(:func:`ser_models.config.parse_job_args`); it imports nothing of the platform.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    """One subcommand.

    Attributes:
        module: the module whose ``main(argv)`` runs it.
        schema: ``module:Class`` of its config dataclass, or None for a job with its own argparse flags.
        group: the heading ``ser-models --help`` lists it under.
        summary: one line on what it does.
    """

    module: str
    schema: str | None
    group: str
    summary: str


#: Subcommand -> job, in the order ``ser-models --help`` lists them.
JOBS: dict[str, Job] = {
    "prepare-pool": Job("ser_models.runs.prepare_pool", "ser_models.data.config:PoolConfig", "data",
                        "Build a pool from a manifest: decode, mono, 16 kHz, validate, quarantine, shard."),
    "segment": Job("ser_models.runs.segment", "ser_models.segment.config:SegmentConfig", "data",
                   "Find the speech in long recordings and write a segments manifest (Silero VAD)."),
    "convert": Job("ser_models.runs.convert", "ser_models.formats.convert:ConvertConfig", "data",
                   "Read Lhotse, HF datasets, NeMo, EmoBox and the standard SER corpora into a manifest, and back."),
    "import-encoder": Job("ser_models.runs.import_encoder", None, "data",
                          "Import a pretrained speech encoder shipped inside a registry package."),
    "make-demo-pool": Job("ser_models.runs.make_demo_pool", None, "data",
                          "Write a generated demo corpus (audio files and manifest.csv)."),
    "make-demo-archive": Job("ser_models.runs.make_demo_archive", None, "data",
                             "Write a generated archive of long recordings with speech-region truth."),
    "plan": Job("ser_models.runs.plan", "ser_models.planning.planner:PlanConfig", "active learning",
                "Plan a label budget: test, dev and rounds, and how precise each test size makes UA."),
    "after": Job("ser_models.runs.after", "ser_models.runs.after:AfterJobConfig", "active learning",
                 "The AFTER active-learning loop: train, score the pool, select a batch, get labels, repeat."),
    "evidence": Job("ser_models.runs.evidence", "ser_models.runs.evidence:EvidenceJobConfig", "active learning",
                    "Does selection pay on this pool: strategies against random over paired seeds."),
    "compare": Job("ser_models.runs.compare", None, "active learning",
                   "Overlay the learning curves of several runs and print a table."),
    "finetune": Job("ser_models.runs.finetune", "ser_models.runs.finetune:FinetuneJobConfig", "models",
                    "Fine-tune adapters and an emotion head on a pool with Ray Train."),
    "tapt": Job("ser_models.runs.tapt", "ser_models.pretraining.tapt_config:TaptJobConfig", "models",
                "Task-adaptive pre-training of the speech encoder on a pool's audio."),
    "adapter-pretrain": Job("ser_models.runs.adapter_pretrain",
                            "ser_models.runs.adapter_pretrain:AdapterPretrainJobConfig", "models",
                            "Pre-train the WAP-Transformer adapter on a pool's unlabelled clips."),
    "adapt": Job("ser_models.runs.adapt", "ser_models.runs.adapt:AdaptJobConfig", "models",
                 "Two-stage adaptation: fine-tune on a source pool, then go on on a target pool."),
    "anchor": Job("ser_models.runs.anchor", "ser_models.runs.anchor:AnchorJobConfig", "models",
                  "Cross-lingual layer anchoring: a labelled source language aligns an unlabelled target."),
    "distill": Job("ser_models.runs.distill", "ser_models.runs.distill:DistillJobConfig", "models",
                   "Distill a speech encoder into a small student of its own architecture."),
    "layer-analysis": Job("ser_models.runs.layer_analysis",
                          "ser_models.runs.layer_analysis:LayerAnalysisJobConfig", "models",
                          "Layer-wise analysis of a frozen encoder: probes, layer weights, CKA."),
    "sweep": Job("ser_models.tune.job", "ser_models.tune.config:SweepConfig", "models",
                 "Sweep any keys of a job's config with Ray Tune."),
    "evaluate": Job("ser_models.runs.evaluate", None, "serving",
                    "Evaluate checkpoints on pools: one score, or the cross-corpus matrix."),
    "export": Job("ser_models.export.job", "ser_models.export.job:ExportConfig", "serving",
                  "Write a trained checkpoint as one ONNX graph for ONNX Runtime without torch."),
    "predict": Job("ser_models.runs.predict", "ser_models.runs.predict:PredictJobConfig", "serving",
                   "Batch inference: a trained checkpoint on a pool or a manifest."),
}


def job_name(module_or_prog: str) -> str:
    """The subcommand of a job module or ``jobs.<job>`` name (``jobs.prepare_pool`` -> ``prepare-pool``)."""
    return module_or_prog.rsplit(".", 1)[-1].replace("_", "-")
