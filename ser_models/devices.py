"""Which torch device a piece of the platform runs on, decided in one place.

Ray 2.60 no longer hides GPUs from actors that reserved none (``CUDA_VISIBLE_DEVICES`` is left as is), so
"CUDA is visible" does not mean "this actor may use a GPU": several actors with ``num_gpus=0`` would share
GPU 0 unasked, and the scheduler would place GPU work it does not know about. A device is CUDA only where the
config reserved a GPU for it.
"""

from __future__ import annotations

import sys

import torch

_said: set[str] = set()  # lines already printed by this process


def actor_device(num_gpus: float) -> torch.device:
    """The device of an actor (or an in-process stand-in for one) that reserved ``num_gpus`` GPUs.

    Args:
        num_gpus: the GPUs its config reserves (``active.scorer.num_gpus``); fractions count (0.5 = half a
            GPU shared with another actor).

    Returns:
        ``cuda`` (the current CUDA device: Ray sets ``CUDA_VISIBLE_DEVICES`` to the reserved one) when
        ``num_gpus > 0`` and CUDA is available, else ``cpu``. A reservation on a machine without CUDA falls
        back to the CPU (the log line says so) rather than failing: scoring is correct on either.
    """
    if float(num_gpus) > 0 and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def log_device(stage: str, device: torch.device, num_gpus: float) -> str:
    """Print and return the line that says which device ``stage`` runs on and why.

    Printed once per process (an actor is one; an in-process loop that builds a scorer each round says it
    once), as every stage reports itself: Ray forwards an actor's lines to the driver with its pid. The plain
    CPU line (no GPU reserved) is printed by a driver only: a Ray task or actor says it only when a GPU is
    in play (used, or reserved but not seen), so a fan-out of CPU runs does not repeat it per worker.

    Args:
        stage: what runs (``"scorer"``, ``"feature cache"``).
        device: the device it chose.
        num_gpus: the GPUs its config reserved.
    """
    if device.type == "cuda":
        line = f"{stage}: {device} ({torch.cuda.get_device_name(device)}), {float(num_gpus):g} GPU reserved"
    elif float(num_gpus) > 0:
        line = f"{stage}: cpu ({float(num_gpus):g} GPU reserved but this process sees no CUDA device)"
    else:
        line = f"{stage}: cpu (no GPU reserved: scorer.num_gpus / active.scorer.num_gpus reserve one)"
        if _in_ray_worker():  # the expected case: said by the driver's own stages, not once more per worker
            return line
    if line not in _said:
        _said.add(line)
        print("  " + line, flush=True)
    return line


def _in_ray_worker() -> bool:
    """Whether this code runs in a Ray task or actor (not in a driver or outside Ray)."""
    if "ray" not in sys.modules:
        return False
    import ray

    return ray.is_initialized() and ray.get_runtime_context().get_task_id() is not None


__all__ = ["actor_device", "log_device"]
