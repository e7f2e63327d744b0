"""Collective helpers: the device follows the process group's backend, and they run in a real gloo group."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist

from ser_models.training.distributed import (
    GPU_BACKEND,
    all_reduce_min,
    broadcast_flag,
    collective_device,
    rank,
)


@pytest.mark.parametrize("backend", ["gloo", "GLOO", "cpu:gloo,cuda:nccl", "cuda:nccl,cpu:gloo", GPU_BACKEND])
def test_backends_with_a_cpu_path_collect_on_the_cpu(backend):
    assert collective_device(backend) == torch.device("cpu")


@pytest.mark.parametrize("backend", ["nccl", "cuda:nccl"])
def test_nccl_only_groups_collect_on_the_current_cuda_device(backend, monkeypatch):
    # The decision under test is collective_device's; which CUDA index is current is torch's (none exists here).
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert collective_device(backend) == torch.device("cuda", 3)


def test_the_gpu_backend_keeps_nccl_for_the_gradients():
    parts = dict(p.split(":") for p in GPU_BACKEND.split(","))
    assert parts == {"cpu": "gloo", "cuda": "nccl"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gloo_group():
    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{_free_port()}")
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_helpers_run_their_collectives_in_a_one_process_gloo_group(gloo_group):
    assert dist.is_initialized() and collective_device(dist.get_backend()) == torch.device("cpu")
    assert all_reduce_min(7) == 7 and isinstance(all_reduce_min(7), int)
    assert all_reduce_min(True) == 1 and all_reduce_min(False) == 0
    assert broadcast_flag(True) is True and broadcast_flag(False) is False
    assert rank() == 0


def test_helpers_without_a_process_group_return_their_input():
    assert not dist.is_initialized()
    assert all_reduce_min(5) == 5 and broadcast_flag(True) is True
