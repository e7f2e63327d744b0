"""Every YAML under ``jobs/configs/`` (recursively) loads into its job's schema and names its command.

A config's job comes from its file-name prefix (:data:`JOBS`); a YAML with no known prefix fails, so a new job
must be added here along with its configs.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from ser_models.config import load_config

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "jobs" / "configs"

#: file-name prefix -> (job module under jobs/, name of its config schema in that module)
JOBS = {
    "prepare_pool_": ("prepare_pool", "PoolConfig"),
    "finetune_": ("finetune", "FinetuneJobConfig"),
    "tapt_": ("tapt", "TaptJobConfig"),
    "demo_after": ("after", "AfterJobConfig"),
    "my_data_after": ("after", "AfterJobConfig"),
    "demo_evidence": ("evidence", "EvidenceJobConfig"),
    "evidence_": ("evidence", "EvidenceJobConfig"),
    "after_": ("after", "AfterJobConfig"),
    "sweep_": ("sweep", "SweepConfig"),
    "adapt_": ("adapt", "AdaptJobConfig"),
    "layer_analysis_": ("layer_analysis", "LayerAnalysisJobConfig"),
    "anchor_": ("anchor", "AnchorJobConfig"),
    "distill_": ("distill", "DistillJobConfig"),
    "adapter_pretrain_": ("adapter_pretrain", "AdapterPretrainJobConfig"),
    "predict_": ("predict", "PredictJobConfig"),
    "segment_": ("segment", "SegmentConfig"),
}

CONFIGS = sorted(p for ext in ("*.yaml", "*.yml") for p in CONFIG_DIR.rglob(ext))


def job_of(path: Path) -> tuple[str, str]:
    for prefix, job in JOBS.items():
        if path.name.startswith(prefix):
            return job
    pytest.fail(f"{path.relative_to(REPO)}: no job is mapped to this file name; name it after its job "
                f"({', '.join(JOBS)}...) or add its prefix to JOBS in {Path(__file__).name}")


def header(path: Path) -> list[str]:
    """The leading comment lines, '#' stripped."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return lines


def test_there_are_configs_to_check():
    assert len(CONFIGS) >= 4, CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_config_loads_into_its_job_schema(path):
    module, schema_name = job_of(path)
    schema = getattr(importlib.import_module(f"jobs.{module}"), schema_name)
    cfg = load_config(schema, path)  # raises ConfigError naming an unknown key, a wrong type or a bad value
    assert type(cfg) is schema
    if module == "sweep":  # the base job's config and every swept key and value check out too
        from ser_models.tune.sweep import plan_sweep

        assert plan_sweep(cfg, check_pool=False).trials >= cfg.num_samples


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_header_comment_holds_the_command_that_runs_it(path):
    module, _ = job_of(path)
    rel = path.relative_to(REPO).as_posix()
    lines = header(path)
    assert lines, f"{rel} has no header comment"
    commands = [line for line in lines if "python -m jobs." in line]
    assert any(re.search(rf"python -m jobs\.{module} {re.escape(rel)}(\s|$)", line) for line in commands), (
        f"{rel}: no header line runs `python -m jobs.{module} {rel}`")
    # Preparation steps may run other jobs, but nothing may run THIS file with another job.
    for line in commands:
        for named, target in re.findall(r"python -m jobs\.(\w+) (\S+)", line):
            assert target != rel or named == module, f"{rel}: header runs it with jobs.{named}, not jobs.{module}"
