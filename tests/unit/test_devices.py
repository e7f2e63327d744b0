"""Actors pick CUDA only when their config reserved a GPU, and say which device they use."""

from __future__ import annotations

import pytest
import torch

from ser_models import devices
from ser_models.devices import actor_device, log_device


@pytest.mark.parametrize("num_gpus", [0, 0.0])
def test_no_reservation_means_cpu_even_where_cuda_is_visible(num_gpus, monkeypatch):
    # Ray 2.60 leaves GPUs visible to actors that reserved none: visibility alone must not pick CUDA.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert actor_device(num_gpus) == torch.device("cpu")


@pytest.mark.parametrize("num_gpus", [1, 0.5, 0.25])
def test_a_reservation_picks_the_current_cuda_device(num_gpus, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert actor_device(num_gpus) == torch.device("cuda", 0)


def test_a_reservation_without_cuda_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert actor_device(1) == torch.device("cpu")


def test_the_device_line_names_the_reason_and_is_printed_once_per_process(capsys, monkeypatch):
    monkeypatch.setattr(devices, "_said", set())
    line = log_device("scorer", torch.device("cpu"), 0)
    assert "scorer: cpu" in line and "no GPU reserved" in line
    log_device("scorer", torch.device("cpu"), 0)
    assert capsys.readouterr().out.count("scorer: cpu") == 1
    assert "sees no CUDA device" in log_device("feature cache", torch.device("cpu"), 1)
    assert capsys.readouterr().out.count("feature cache: cpu") == 1


def test_the_scorer_follows_its_reservation(monkeypatch):
    from ser_models.config import to_dict
    from ser_models.scoring.scorer import PoolScorer
    from ser_models.testing import tiny_model_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # visible, yet not reserved
    scorer = PoolScorer(None, model_cfg=to_dict(tiny_model_config()), num_gpus=0, threads=torch.get_num_threads())
    assert scorer.device == torch.device("cpu")
    assert next(scorer.model.parameters()).device.type == "cpu"


def test_a_ray_worker_says_only_the_lines_that_involve_a_gpu(ray_local):
    """A fan-out of CPU runs (jobs.evidence) must not forward 'scorer: cpu (no GPU reserved ...)' once per
    worker to the job's console; a reservation the worker cannot use is still said."""
    import ray

    @ray.remote(num_cpus=1)
    def say():
        import contextlib
        import io

        from ser_models.devices import log_device

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            plain = log_device("worker scorer", torch.device("cpu"), 0)
            missing = log_device("worker scorer", torch.device("cpu"), 1)
        return plain, missing, out.getvalue()

    plain, missing, printed = ray.get(say.remote())
    assert "no GPU reserved" in plain and "no GPU reserved" not in printed
    assert "sees no CUDA device" in missing and missing in printed
