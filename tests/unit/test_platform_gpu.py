"""The shipped cluster files say what they do on GPUs: a RayJob with a GPU group reserves GPUs for its work,
and the GPU image example pins the torch the tests run."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import torch
import yaml

from ser_models.config import load_config

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "platform"


def _job_config(rel: str):
    """The config a RayJob's entrypoint (`ser-models JOB --config RECIPE key=value ...`) runs with."""
    from ser_models.catalog.jobs import JOBS
    from ser_models.catalog.recipes import find_recipe

    spec = yaml.safe_load((PLATFORM / rel).read_text())["spec"]
    entry = shlex.split(spec["entrypoint"])
    assert entry[0] == "ser-models" and entry[2] == "--config", entry
    module, cls = JOBS[entry[1]].schema.split(":")
    return load_config(getattr(importlib.import_module(module), cls), find_recipe(entry[3], entry[1].replace("-", "_")),
                       entry[4:])


def test_the_finetune_rayjob_trains_on_its_gpu_group():
    assert _job_config("kuberay/rayjob-finetune.yaml").scaling.use_gpu is True


def test_the_sweep_rayjobs_trials_train_on_gpus():
    scaling = _job_config("kuberay/rayjob-sweep.yaml").config["scaling"]
    assert scaling["use_gpu"] in (True, "true") and scaling["backend"] == "ray_train"


def test_the_after_rayjob_uses_its_gpu_group_as_its_header_says():
    text = (PLATFORM / "kuberay/rayjob-after.yaml").read_text()
    cfg = _job_config("kuberay/rayjob-after.yaml")
    header = "\n".join(ln for ln in text.splitlines() if ln.startswith("#"))
    if cfg.scaling.backend == "in_process" or not cfg.scaling.use_gpu:
        # Training stays in the driver on the CPU-only head: the words must not say it trains on GPU.
        assert not re.search(r"trains on (the )?GPU", header), header
        assert cfg.active.scorer.num_gpus > 0, "the GPU group would sit idle: reserve it for the encoder"
    else:
        assert cfg.scaling.use_gpu


def test_the_gpu_image_example_pins_the_tested_torch():
    tested = torch.__version__.split("+")[0]
    docker = (PLATFORM / "Dockerfile").read_text()
    readme = (PLATFORM / "README.md").read_text()
    assert re.search(r"^ARG TORCH_SPEC=torch==(\S+)$", docker, re.MULTILINE).group(1) == tested
    for text in (docker, readme):
        pins = set(re.findall(r"TORCH_SPEC=torch==([\w.]+)", text))
        assert pins == {tested}, pins
    images = {m for p in PLATFORM.rglob("*.yaml") for m in re.findall(r"ser-platform:(cu\d+)", p.read_text())}
    built = set(re.findall(r"-t ser-platform:(cu\d+)", docker))
    assert images and images <= built, (images, built)

