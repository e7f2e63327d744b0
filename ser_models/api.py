"""Use a trained model from Python: ``ser_models.load(checkpoint_dir).predict(x)``.

    import ser_models
    model = ser_models.load("outputs/ft/checkpoint")          # or encoder_source=..., device="cuda"
    result = model.predict("call.wav")                         # or predict(wav, sample_rate=8000), or a list

Inputs take the path every pool clip takes, so a prediction here is the one ``jobs.predict`` makes for the same
clip: a file is decoded like ``prepare_pool`` decodes it (any format :mod:`ser_models.data.audio_stream`
reads, channels averaged, resampled to the 16 kHz the encoders take with soxr), an array is resampled with the
same :class:`~ser_models.data.audio_stream.Resampler`; both are stored in the pool's 16-bit form and scored
by :class:`~ser_models.scoring.scorer.PoolScorer`, which applies the encoder's own preprocessing (waveform
normalisation or log-mel, from the encoder's config) and the model, as scoring and training do.

This is for clips. Long recordings (episodes, calls, meetings) go through ``jobs.predict recordings=...``,
which segments them into speech turns and predicts each one on a timeline. Here a clip longer than
``max_seconds`` is cut to its first ``max_seconds`` (as ``prepare_pool`` crops), and one longer than
``max_minutes`` is refused.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from ser_models.data.audio import encode_pool_audio, load_clip
from ser_models.data.audio_stream import Resampler, open_audio
from ser_models.data.config import POOL_SAMPLE_RATE
from ser_models.exceptions import AudioError, ConfigError
from ser_models.export.onnx_runtime import OnnxScorer, resolve_onnx
from ser_models.scoring.predictions import prediction_table
from ser_models.scoring.scorer import PoolScorer

_log = logging.getLogger(__name__)
#: How ``predict`` stores audio before scoring it: the pool's 16-bit PCM (what every model trains on).
_POOL_FORMAT = "pcm16"


@dataclass(frozen=True)
class Prediction:
    """What the model says about one input.

    Attributes:
        label: the most probable class (None for a model without classes).
        confidence: its probability (None without classes).
        probabilities: ``{class: probability}`` in the model's class order (empty without classes).
        dimensions: ``{name: value}`` of the model's arousal / valence / dominance outputs, in
            ``model.dimension_range`` (empty without them).
        input: the file path, or ``"array[i]"`` for the i-th array given.
        seconds: duration of the audio the model heard (s).
    """

    label: str | None
    confidence: float | None
    probabilities: dict[str, float] = field(default_factory=dict)
    dimensions: dict[str, float] = field(default_factory=dict)
    input: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """A plain dict (JSON-ready)."""
        return {"input": self.input, "label": self.label, "confidence": self.confidence,
                "probabilities": dict(self.probabilities), "dimensions": dict(self.dimensions),
                "seconds": self.seconds}


class Predictor:
    """A loaded checkpoint that predicts clips. Build it with :func:`load`.

    Attributes:
        model: the :class:`~ser_models.models.model.EmotionModel` (eval mode); None for an ONNX graph
            (``runtime="onnx"``, whose scorer is :class:`~ser_models.export.onnx_runtime.OnnxScorer`).
        checkpoint: the checkpoint folder (or ``.onnx`` file) it was loaded from.
        labels: class names, in the model's order.
        dimensions: dimensional outputs, in the model's order.
        max_seconds: longer inputs are cut to their first ``max_seconds`` (s).
        max_minutes: longer inputs are refused (min).
    """

    def __init__(self, scorer, checkpoint: str, max_seconds: float, max_minutes: float):
        self._scorer = scorer
        self.model = scorer.model
        self.checkpoint = checkpoint
        described = self.model.cfg if self.model is not None else scorer  # an OnnxScorer carries these itself
        self.labels = list(described.labels)
        self.dimensions = list(described.dimensions)
        self.max_seconds = float(max_seconds)
        self.max_minutes = float(max_minutes)
        self.min_samples = int(self.model.encoder.min_samples if self.model is not None else scorer.min_samples)
        self._encoder = described.encoder.source if self.model is not None else scorer.encoder

    def __repr__(self) -> str:
        return (f"Predictor(checkpoint={self.checkpoint!r}, labels={self.labels}, dimensions={self.dimensions}, "
                f"encoder={self._encoder!r})")

    def predict(self, x, sample_rate: int | None = None) -> Prediction | list[Prediction]:
        """Predict one input or a list of them.

        Args:
            x: a file path (local or a ``pyarrow.fs`` URI; WAV, FLAC, OGG/Opus, MP3 through libsndfile,
                M4A/AAC and more through FFmpeg), a 1-D waveform ``[T]`` (numpy array or torch tensor; float in
                [-1, 1], or integer PCM) with ``sample_rate``, or a list of those.
            sample_rate: Hz of every array in ``x`` (required for arrays; files carry their own).

        Returns:
            A :class:`Prediction` for a single input, a list of them (in input order) for a list.

        Raises:
            AudioError: a file cannot be decoded (missing, unreadable, empty), or an input is empty, not
                finite, shorter than the encoder's receptive field, or longer than ``max_minutes`` (its
                ``reason`` says which; the message names the input).
            ConfigError: an array without ``sample_rate``, or not 1-D.
        """
        single = not isinstance(x, (list, tuple))
        items = [x] if single else list(x)
        names, wavs = [], []
        for i, item in enumerate(items):
            name, wav = self._waveform(item, i, sample_rate)
            names.append(name)
            wavs.append(wav)
        results = self._score(names, wavs) if items else []
        return results[0] if single else results

    def _waveform(self, item, index: int, sample_rate: int | None) -> tuple[str, np.ndarray]:
        """``(name, [T] float32 at 16 kHz)`` of one input, checked and cut to ``max_seconds``."""

        if isinstance(item, (str, os.PathLike)):
            name = str(item)
            with open_audio(name) as stream:  # the length first: a long recording is refused before decoding
                seconds = stream.frames / stream.sample_rate
            self._check_length(name, seconds)
            # Read a second more than kept, as prepare_pool does, so the cut is exact at 16 kHz.
            wav, _, _ = load_clip(name, target_sr=POOL_SAMPLE_RATE, max_duration=self.max_seconds + 1.0)
        else:
            name = f"array[{index}]"
            if sample_rate is None:
                raise ConfigError(f"predict({name}): an array needs sample_rate= (its rate in Hz); files carry "
                                  "their own")
            wav = np.asarray(item.detach().cpu().numpy() if hasattr(item, "detach") else item)
            if wav.ndim != 1:
                raise ConfigError(f"predict({name}): expected a mono waveform [T], got shape {wav.shape} (average "
                                  "the channels, or pick one, first)")
            if np.issubdtype(wav.dtype, np.unsignedinteger):  # unsigned PCM (8-bit WAV) is centred on its midpoint
                mid = float(np.iinfo(wav.dtype).max + 1) / 2
                wav = (wav.astype(np.float32) - mid) / mid
            elif np.issubdtype(wav.dtype, np.integer):
                wav = wav.astype(np.float32) / float(np.iinfo(wav.dtype).max + 1)
            wav = np.ascontiguousarray(wav, dtype=np.float32)
            self._check_length(name, wav.size / float(sample_rate))
            if wav.size and np.isfinite(wav).all():
                wav = Resampler(int(sample_rate), POOL_SAMPLE_RATE, 1)(wav[:, None], last=True)[:, 0]
        if wav.size == 0:
            raise AudioError("empty", f"{name}: no samples")
        if not np.isfinite(wav).all():
            raise AudioError("non_finite", f"{name}: {int((~np.isfinite(wav)).sum())} samples are NaN or infinite")
        keep = int(round(self.max_seconds * POOL_SAMPLE_RATE))
        if wav.size > keep:
            _log.warning("%s is %.1f s long: predicted on its first %g s (long recordings: jobs.predict "
                         "recordings=...)", name, wav.size / POOL_SAMPLE_RATE, self.max_seconds)
            wav = wav[:keep]
        if wav.size < self.min_samples:
            raise AudioError("too_short", f"{name}: {wav.size} samples at 16 kHz is shorter than the encoder's "
                                          f"receptive field ({self.min_samples} samples)")
        return name, wav

    def _check_length(self, name: str, seconds: float) -> None:
        if seconds > self.max_minutes * 60:
            raise AudioError("too_long", f"{name} is {seconds / 60:.1f} min long (max_minutes={self.max_minutes:g}): "
                                         "long recordings go through jobs.predict recordings=... (segmented into "
                                         "speech turns, each predicted on a timeline)")

    def _score(self, names: list[str], wavs: list[np.ndarray]) -> list[Prediction]:

        ids = [f"{i:08d}" for i in range(len(wavs))]  # sorted = input order
        blobs = [encode_pool_audio(w, _POOL_FORMAT) for w in wavs]
        batch = {"utt_id": np.asarray(ids, dtype=object), "audio": np.asarray(blobs, dtype=object),
                 "audio_format": np.asarray([_POOL_FORMAT] * len(wavs), dtype=object),
                 "num_samples": np.asarray([w.size for w in wavs], dtype=np.int64)}
        # jobs.predict's own conversion of scorer outputs into predicted class, confidence and probabilities.
        table = prediction_table([self._scorer(batch)], self.labels, self.dimensions, embedding=False)
        rows = table.to_pylist()
        out = []
        for name, wav, row in zip(names, wavs, rows):
            probs = row.get("probs") or []
            out.append(Prediction(
                label=row.get("predicted"), confidence=row.get("confidence"),
                probabilities={c: float(p) for c, p in zip(self.labels, probs)},
                dimensions={d: float(row[d]) for d in self.dimensions},
                input=name, seconds=wav.size / POOL_SAMPLE_RATE))
        return out


def load(checkpoint_dir: str | os.PathLike, encoder_source: str | None = None, device: str = "cpu",
         max_seconds: float = 20.0, max_minutes: float = 10.0, runtime: str = "torch",
         threads: int | None = None) -> Predictor:
    """Load a trained checkpoint for prediction from Python.

    Args:
        checkpoint_dir: a checkpoint folder (``model.json`` + ``model.safetensors``), or a run that holds one
            (a ``jobs.finetune`` output, an AL run: its last round), as ``jobs.predict checkpoint=`` takes.
        encoder_source: where the encoder lives now, if it moved without keeping its place relative to the
            checkpoint; None = the places the checkpoint records. Its fingerprint is checked either way.
        device: torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        max_seconds: inputs are cut to their first ``max_seconds`` s (``jobs.predict``'s default crop).
        max_minutes: longer inputs are refused; segment long recordings with ``jobs.predict recordings=``.
        runtime: ``"torch"`` (the checkpoint) or ``"onnx"``: ``checkpoint_dir`` is then a graph written by
            ``jobs.export`` (an ``.onnx`` file, or a folder holding ``model.onnx``; local or a URI such as
            ``s3://bucket/models``), run by ONNX Runtime on the
            CPU without importing torch (``encoder_source`` and ``device`` do not apply).
        threads: CPU threads for inference (a service on a shared box sets 1); None = torch's current count for
            ``runtime="torch"`` (which the predictor then sets process-wide), ONNX Runtime's default (all cores)
            for ``runtime="onnx"``.

    Returns:
        A :class:`Predictor`; ``.predict(x)`` gives a :class:`Prediction` per input.

    Raises:
        CheckpointError: no checkpoint at ``checkpoint_dir``; ``EncoderMismatchError`` (a ``CheckpointError``)
            when no place holds its encoder, naming each place tried and the expected fingerprint.
        ConfigError: the model has a text branch (it needs transcripts; this API reads audio only), an
            unknown ``runtime``, or ``threads`` below 1.
    """
    if threads is not None and int(threads) < 1:
        raise ConfigError(f"ser_models.load(threads={threads!r}): expected None or a count >= 1")
    if runtime == "onnx":

        path = resolve_onnx(checkpoint_dir)
        return Predictor(OnnxScorer(path, threads=int(threads or 0)), path, max_seconds, max_minutes)
    if runtime != "torch":
        raise ConfigError(f"ser_models.load(runtime={runtime!r}): expected 'torch' or 'onnx'")
    import torch

    from ser_models.runs.predict import resolve_checkpoint

    checkpoint = resolve_checkpoint(str(checkpoint_dir))
    # threads = the caller's own count: the scorer sets it process-wide, and this is the caller's process.
    scorer = PoolScorer(checkpoint, threads=int(threads or torch.get_num_threads()), max_seconds=max_seconds,
                        encoder_source=encoder_source, device=str(device))
    if scorer.model.cfg.text.enabled:
        raise ConfigError(f"{checkpoint}: the model has a text branch (model.text); ser_models.load reads audio "
                          "only")
    return Predictor(scorer, checkpoint, max_seconds, max_minutes)


__all__ = ["Prediction", "Predictor", "load"]

