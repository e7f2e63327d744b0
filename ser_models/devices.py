"""Which torch device a piece of the platform runs on, decided in one place.

Ray 2.60 no longer hides GPUs from actors that reserved none (``CUDA_VISIBLE_DEVICES`` is left as is), so
"CUDA is visible" does not mean "this actor may use a GPU": several actors with ``num_gpus=0`` would share
GPU 0 unasked, and the scheduler would place GPU work it does not know about. A device is CUDA only where the
config reserved a GPU for it.
"""

from __future__ import annotations

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
    once), as every stage reports itself: Ray forwards an actor's lines to the driver with its pid.

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
    if line not in _said:
        _said.add(line)
        print("  " + line, flush=True)
    return line


__all__ = ["actor_device", "log_device"]
