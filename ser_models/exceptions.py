"""Typed errors. Every message names the file, field or config key the user has to fix."""


class SERError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(SERError, ValueError):
    """A config key is unknown, has the wrong type, or holds an invalid value."""


class ManifestError(SERError, ValueError):
    """A manifest is malformed: missing column, duplicate id, unknown label (names column, row, value)."""


class AudioError(SERError):
    """A clip could not be turned into valid 16 kHz mono audio; `reason` is a quarantine reason code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class CorpusError(SERError):
    """A benchmark corpus could not be generated: a tool it needs is missing or failed (message says which)."""


class PoolError(SERError):
    """The prepared pool is missing, stale or inconsistent."""


class PoolExhaustedError(PoolError):
    """A query asked for more clips than the unlabelled pool still holds."""


class LedgerError(SERError):
    """The label ledger was asked to do something that would lose or duplicate labels."""


class OracleError(SERError):
    """An oracle could not provide labels."""


class LabelImportError(OracleError):
    """A human-filled label file has unknown labels or missing rows (message lists line numbers)."""


class LabellingPending(OracleError):  # noqa: N818 - a state, not a failure
    """Labels were requested from humans; the job stops until the file is filled in and rerun."""


class EncoderError(SERError):
    """An encoder could not be built or loaded."""


class AdapterError(SERError):
    """An adapter config does not fit the encoder."""


class GradientCheckError(AdapterError):
    """After building a model, some trainable parameters received no gradient."""


class CheckpointError(SERError):
    """A checkpoint is missing, incomplete or does not match the model config."""


class EncoderMismatchError(CheckpointError):
    """No place a checkpoint's encoder was looked for holds the encoder it was trained over (the message names
    every place tried, what each held, and the fingerprint expected)."""


class TrainingError(SERError):
    """Training failed in a way that a retry will not fix."""


class UnsafePathError(SERError, ValueError):
    """A path built from data (an id, a name in a file) would leave its folder (names the folder and the name)."""


class ForeignFolderError(SERError):
    """An output folder holds things this platform did not make (no ownership marker, or another kind's): the
    job refuses to write or delete there (the message names the folder, its kind if any and some entries)."""


class OutputOverlapError(ForeignFolderError, ConfigError):
    """A job's output is one of its inputs, lies inside one, or contains one: writing it would change the input."""


class LockHeldError(SERError):
    """Another process holds the writer's lock of a pool, run folder, feature cache or segment output (the
    message names the holder's host, pid and start time, and how to take over a stale lock)."""


class LockLostError(LockHeldError):
    """A writer found, before committing, that its lock was taken over by another process: it stops without
    committing."""


class FeatureCacheMissError(SERError):
    """A feature cache was asked for clips it does not hold (the message names them): a reader never skips a
    clip silently."""


class ResumeMismatchError(ConfigError):
    """A rerun on a run folder changes a result-changing key or input recorded by its first start (the message
    names each key with its recorded and new value; ``.changes`` holds them as ``(key, old, new)``)."""

    def __init__(self, message: str, changes: list[tuple[str, object, object]] | None = None):
        super().__init__(message)
        self.changes = list(changes or [])


class DeviceMemoryError(SERError):
    """A forward pass ran out of device memory with a micro-batch of one clip, after halving down to it (the
    message names the clip, its length in seconds, the stage and the config key that bounds clip length)."""


class ExportError(ConfigError):
    """A model cannot be exported to ONNX exactly (a setting the graph cannot carry, or a graph that does not
    predict as the checkpoint does); the message names the setting."""
