"""ser_models: speech emotion recognition with active learning (AFTER), PEFT adapters and Ray."""

import os

__version__ = "0.1.0"

#: oneDNN (torch's CPU convolution backend) caches a compiled primitive, with its buffers, for every input
#: shape it meets, up to 1024 of them by default. Clips come in hundreds of lengths, so a scoring actor or a
#: training worker grew with the amount of audio it had seen (bench.scale: the cache-build actor's heap went
#: from 1.6 GiB after 1 h of audio to 2.6 GiB after 4 h). 16 keeps the shapes of the batches in flight; it
#: is read once, when the first convolution runs, so it is set here, before any of our code can run one, in
#: every process that imports this package (drivers, Ray workers, actors). Set the variable yourself to
#: override it.
ONEDNN_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
os.environ.setdefault(ONEDNN_CACHE_ENV, "16")


def __getattr__(name: str):
    """``ser_models.load`` (see :func:`ser_models.api.load`), imported on first use: ``import ser_models`` stays
    cheap (no torch, no transformers) for the Ray workers and tools that only need a submodule."""
    if name == "load":
        from ser_models.api import load

        return load
    raise AttributeError(f"module 'ser_models' has no attribute {name!r}")
