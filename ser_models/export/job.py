"""``python -m jobs.export``: write a checkpoint's audio inference path as one ONNX graph (docs/deploy.md)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys

from ser_models.config import LOCATION, PATH, RESULT, field, parse_job_args
from ser_models.console import library_warnings
from ser_models.encoders.pretrained import resolve_encoder_names
from ser_models.exceptions import ConfigError, ExportError
from ser_models.export.onnx_export import export_checkpoint
from ser_models.io import write_bytes_atomic
from ser_models.ownership import claim_file


@dataclasses.dataclass
class ExportConfig:
    """Inputs of ``python -m jobs.export`` (docs/deploy.md)."""

    checkpoint: str = field("", effect=LOCATION, path=PATH, help="the checkpoint folder, or a run holding one (a "
                            "jobs.finetune output, an AL run: its last round), as jobs.predict checkpoint= takes")
    output: str = field("model.onnx", effect=LOCATION, path=PATH, help="the .onnx file to write: a local path or a URI "
                        "(s3://bucket/models/model.onnx), written atomically")
    quantize: str = field("none", effect=RESULT, help="none (float32) | int8: ONNX Runtime's dynamic int8 "
                          "quantisation of the matrix multiplications' weights (activations quantised per batch at "
                          "run time; convolutions stay float32)")
    encoder_source: str | None = field(None, effect=LOCATION, path=PATH, help="where the encoder lives now, if it "
                                       "moved without keeping its place relative to the checkpoint")


#: The modules the export needs beyond the base install: ``onnx`` writes the graph, ONNX Runtime checks it
#: against torch (and quantises it); both come with the ``onnx`` extra.
EXTRA_MODULES = ("onnx", "onnxruntime")
INSTALL_EXTRA = "pip install 'ser-models[onnx]'"


def check_extra() -> None:
    """Import what the export needs beyond the base install.

    Raises:
        ExportError: (a ``ConfigError``) a module is missing, naming it and ``pip install 'ser-models[onnx]'``.
    """
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ExportError(f"jobs.export needs {name} (the onnx extra), which this environment cannot import "
                              f"({exc}): {INSTALL_EXTRA}") from None


def run_export(cfg: ExportConfig) -> dict:
    """Export ``cfg.checkpoint`` to ``cfg.output`` and print the report (one JSON line).

    Returns:
        :func:`~ser_models.export.onnx_export.export_checkpoint`'s report.

    Raises:
        ConfigError: no ``checkpoint=``; ``ExportError`` (a ``ConfigError``) for a missing onnx extra, or for a
            model the graph cannot carry exactly, naming the setting.
    """
    check_extra()  # before the checkpoint is read or traced: a missing extra fails in a second, not after tracing
    if not cfg.checkpoint:
        raise ConfigError("jobs.export needs checkpoint=<checkpoint folder or run>")

    inputs = {"checkpoint": cfg.checkpoint, "encoder_source": cfg.encoder_source}
    claim_file(cfg.output, inputs=inputs)
    log = log_path(cfg.output)
    claim_file(log, inputs=inputs, key="output's log")
    # torch's TracerWarnings and ONNX Runtime's quantisation advice go to the log beside the graph, not the console.
    report = None
    with library_warnings() as lines:
        try:
            report = export_checkpoint(cfg.checkpoint, cfg.output, cfg.quantize, cfg.encoder_source)
        finally:
            if report is not None or lines:  # a checkpoint refused before tracing leaves nothing behind
                write_bytes_atomic(log, "".join(line + "\n" for line in lines).encode())
    report["log"] = log
    print(json.dumps(report))
    return report


def log_path(output: str) -> str:
    """The export's log file: beside the graph, ``model.onnx`` -> ``model.onnx.log``."""
    return f"{str(output).rstrip('/')}.log"


__all__ = ["EXTRA_MODULES", "ExportConfig", "check_extra", "run_export"]


def main(argv: list[str] | None = None):
    cfg = resolve_encoder_names(parse_job_args(ExportConfig, sys.argv[1:] if argv is None else argv, "jobs.export"))
    return run_export(cfg)
