"""Run an exported ONNX graph with ONNX Runtime, without torch.

:class:`OnnxScorer` takes the place of the torch scorer behind :class:`ser_models.api.Predictor`
(``ser_models.load(path, runtime="onnx")``): the predictor decodes, resamples, checks and crops each input as it
does for a checkpoint and hands the scorer the same batch (16-bit PCM clips, as the pool stores them); the
scorer runs the graph on it. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ser_models import io
from ser_models.data.audio import decode_pool_audio
from ser_models.exceptions import CheckpointError
from ser_models.export.whisper_mel import whisper_inputs

#: The file ``ser_models.load(folder, runtime="onnx")`` looks for in a folder.
MODEL_FILE = "model.onnx"


def resolve_onnx(path: str | os.PathLike) -> str:
    """An ``.onnx`` file, or a folder holding :data:`MODEL_FILE`: a local path or a URI (``s3://...``).

    Raises:
        CheckpointError: no such file.
    """
    path = os.fspath(path)
    if not io.is_local(path):
        candidates = [path] if path.endswith(".onnx") else [io.join(path, MODEL_FILE), path]
        for candidate in candidates:
            if io.exists(candidate) and io.storage_path(candidate).name.endswith(".onnx"):
                return candidate
        raise CheckpointError(f"{path}: no ONNX graph (neither the file nor {MODEL_FILE} in the folder); write one "
                              "with ser-models export checkpoint=... output=model.onnx")
    candidate = os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(candidate):
        what = f"no {MODEL_FILE} in the folder" if os.path.isdir(path) else "no such file"
        raise CheckpointError(f"{path}: no ONNX graph ({what}); write one with ser-models export "
                              "checkpoint=... output=model.onnx")
    return candidate


class OnnxScorer:
    """An exported graph as a scorer: a batch of pool rows in, ``probs [B, C]`` and ``dims [B, K]`` out.

    Args:
        path: the ``.onnx`` file (written by ``jobs.export``): a local path or a URI.
        threads: ONNX Runtime intra-op threads; 0 = its default (all cores).

    Attributes:
        session: the ``onnxruntime.InferenceSession``.
        metadata: the graph's ``metadata_props`` (strings).
        labels, dimensions, min_samples, encoder: from the metadata.
        per_clip: the graph takes one unpadded clip per run (``ser.batch=1``: group-norm front ends).
        model: always None (no torch model behind it).

    Raises:
        CheckpointError: the graph has no ``ser.labels`` metadata (not written by ``jobs.export``).
    """

    model = None

    def __init__(self, path: str, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        # A graph in an object store is read into memory once (ONNX Runtime takes the bytes); a local one by path.
        source = path if io.is_local(path) else io.read_bytes(path)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own errors (InvalidProtobuf, Fail) are not typed for callers
            raise CheckpointError(f"{path}: not an ONNX graph ONNX Runtime can load ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}); write one with "
                                  "ser-models export checkpoint=... output=model.onnx") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if "ser.labels" not in self.metadata:
            raise CheckpointError(f"{path}: the graph has no ser.labels metadata; was it written by ser-models export?")
        self.labels = list(json.loads(self.metadata["ser.labels"]))
        self.dimensions = list(json.loads(self.metadata.get("ser.dimensions", "[]")))
        self.min_samples = int(self.metadata.get("ser.min_samples", "0"))
        self.encoder = self.metadata.get("ser.encoder", "")
        self.per_clip = self.metadata.get("ser.batch") == "1"
        self.whisper = self.metadata.get("ser.front_end") == "whisper_log_mel"  # numpy log-mel before the graph
        if self.whisper:
            self._window_frames = int(self.metadata["ser.window_frames"])
            self._mel_filters = np.asarray(json.loads(self.metadata["ser.mel_filters"]), np.float32)
        self._outputs = ["probabilities"] + (["dimensions"] if self.dimensions else [])

    def __call__(self, batch: dict) -> dict:
        """Score pool rows.

        Args:
            batch: ``utt_id``, ``audio`` (encoded clips), ``audio_format`` (per row), as the torch scorer takes.

        Returns:
            ``utt_id``, ``probs [B, C]`` float32, ``dims [B, K]`` float32 (with dimensions), ``embedding`` and
            ``pooled`` (empty: the graph returns probabilities only).
        """
        wavs = [decode_pool_audio(a, f) for a, f in zip(batch["audio"], batch["audio_format"])]
        groups = [[w] for w in wavs] if self.per_clip else [wavs]
        outs = [self._run(group) for group in groups if group]
        n = len(wavs)
        probs = np.concatenate([o[0] for o in outs]) if outs else np.zeros((0, len(self.labels)), np.float32)
        out = {"utt_id": np.asarray(batch["utt_id"], dtype=object), "probs": probs,
               "embedding": np.zeros((n, 0), np.float32), "pooled": np.zeros((n, 0), np.float32)}
        if self.dimensions:
            out["dims"] = np.concatenate([o[1] for o in outs]) if outs else np.zeros((0, len(self.dimensions)))
        return out

    def _run(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        """The graph on ``wavs`` zero-padded into one batch: ``[probabilities [B, C](, dimensions [B, K])]``."""
        if self.whisper:

            return self.session.run(self._outputs, whisper_inputs(wavs, self._window_frames, self._mel_filters))
        lengths = np.asarray([w.size for w in wavs], np.int64)
        batch = np.zeros((len(wavs), int(lengths.max())), np.float32)
        for i, w in enumerate(wavs):
            batch[i, :w.size] = w
        return self.session.run(self._outputs, {"wavs": batch, "lengths": lengths})


__all__ = ["MODEL_FILE", "OnnxScorer", "resolve_onnx"]
