"""How a checkpoint names the encoder it was trained over, and finds it again after a move.

A checkpoint holds the trainable weights only; the frozen rest comes from the encoder's source. ``model.json``
records the encoder by its content fingerprint, the source as configured and, for an encoder on a local disk, its
path relative to the checkpoint folder. Loading tries an explicit ``encoder_source``, then the relative path, then
the configured source, and keeps the first whose fingerprint matches.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from ser_models.exceptions import CheckpointError, ConfigError, EncoderError, EncoderMismatchError
from ser_models.io import is_local, local_path

#: Set (to anything but ``""`` / ``0``) by the test suite: building a model over a random tiny preset encoder is
#: then expected and not warned about.
TESTING_ENV = "SER_MODELS_TESTING"
_log = logging.getLogger(__name__)
_warned_test_encoder = False


def warn_test_encoder(source: str) -> bool:
    """Log, once per process, that ``source`` (a tiny preset, used only where a config names it) is a
    random-initialised test encoder, and how to choose a real one; silent when ``$SER_MODELS_TESTING`` is set.

    Returns:
        Whether the warning was logged by this call.
    """
    global _warned_test_encoder
    if _warned_test_encoder or os.environ.get(TESTING_ENV, "") not in ("", "0"):
        return False
    _warned_test_encoder = True
    _log.warning("model.encoder.source=%s is a random-initialised test encoder: its predictions mean nothing. "
                 "Set model.encoder.source to a pretrained encoder (smart-turn, the default: the Whisper-tiny "
                 "encoder of Smart Turn v3.2, imported once; a local folder; or a hub id), as a key=value override "
                 "or in the job's YAML", source)
    return True


def encoder_reference(encoder, checkpoint_dir: str) -> dict:
    """How a checkpoint in ``checkpoint_dir`` names its base encoder (``model.json``'s ``encoder``).

    Returns:
        ``{"fingerprint"``: the encoder's :meth:`~ser_models.encoders.Encoder.portable_fingerprint` (content
        only, so it survives a move), ``"source"`` / ``"checkpoint"``: ``model.encoder.source`` and
        ``model.encoder.checkpoint`` as configured, ``"relative_source"`` / ``"relative_checkpoint"``: their
        paths relative to ``checkpoint_dir`` when both are on a local disk and the encoder's file or folder
        exists, else None``}``.
    """
    return {"fingerprint": encoder.portable_fingerprint(), "source": encoder.cfg.source,
            "relative_source": _relative_to(encoder.cfg.source, checkpoint_dir),
            "checkpoint": encoder.cfg.checkpoint,
            "relative_checkpoint": _relative_to(encoder.cfg.checkpoint, checkpoint_dir)}


def _relative_to(target: str | None, checkpoint_dir: str) -> str | None:
    if not target or not is_local(target) or not is_local(checkpoint_dir):
        return None
    path = local_path(target).expanduser()
    if not path.exists():
        return None  # a tiny preset or hub id: nothing on disk to carry along
    return os.path.relpath(path.absolute(), local_path(checkpoint_dir).expanduser().absolute())


def _from_checkpoint(relative: str | None, checkpoint_dir: str) -> str | None:
    """``relative`` (recorded by :func:`encoder_reference`) resolved against the checkpoint's folder now."""
    if not relative or not is_local(checkpoint_dir):
        return None
    return os.path.normpath(os.path.join(local_path(checkpoint_dir).expanduser().absolute(), relative))


def build_over_encoder(cls, cfg, meta: dict, base: str, meta_path: str,
                        encoder_source: str | None) -> tuple[object, object]:
    """Build ``cls(cfg)`` (an ``EmotionModel`` class and its ``ModelConfig``) over the first encoder place whose
    fingerprint is the checkpoint's.

    Places, in order: ``encoder_source``, the recorded relative path, the configured source (deduplicated).
    A local place that does not exist is passed over without building anything.

    Returns:
        ``(model, the EncoderConfig it was built from)``.

    Raises:
        EncoderMismatchError: naming each place, what it held, and the expected fingerprint.
    """
    ref = meta.get("encoder")
    if ref:  # content fingerprint: survives a move
        expected, fingerprint = ref.get("fingerprint"), (lambda m: m.encoder.portable_fingerprint())
    else:  # written before the reference existed: the fingerprint of the configured encoder
        ref = {}
        expected, fingerprint = meta.get("encoder_fingerprint"), (lambda m: m.encoder.fingerprint())
    moved_ckpt = _from_checkpoint(ref.get("relative_checkpoint"), base)
    encoder_ckpt = moved_ckpt if moved_ckpt and os.path.exists(moved_ckpt) else cfg.encoder.checkpoint
    places = [("encoder_source", encoder_source),
              ("path relative to the checkpoint", _from_checkpoint(ref.get("relative_source"), base)),
              ("configured source", ref.get("source") or cfg.encoder.source)]
    tried, seen = [], set()
    for how, source in places:
        if not source or source in seen:
            continue
        seen.add(source)
        if (is_local(source) and source.startswith((".", "/", "~"))
                and not local_path(source).expanduser().exists()):
            tried.append(f"{how} {source}: does not exist")
            continue
        try:
            encoder_cfg = dataclasses.replace(cfg.encoder, source=str(source), checkpoint=encoder_ckpt)
            model = cls(dataclasses.replace(cfg, encoder=encoder_cfg))
        except (EncoderError, CheckpointError, ConfigError) as exc:
            tried.append(f"{how} {source}: cannot be built ({type(exc).__name__}: {exc})")
            continue
        actual = fingerprint(model)
        # A checkpoint saved by an earlier version records the fingerprint that version gave these weights.
        if actual == expected or expected in model.encoder.legacy_fingerprints():
            return model, encoder_cfg
        if expected in model.encoder.named_only_fingerprints():
            # A key of the first versions: it names the place (a path, a hub id at whatever revision is current
            # now), not the weights; loading on it could put the trained head over other weights.
            tried.append(
                f"{how} {source}: the checkpoint names its encoder by this source alone (saved before encoders "
                "were keyed by their weights), so the weights it was trained over cannot be checked, and a hub id "
                "may now resolve to other weights. If you know these are the weights it was trained over, record "
                f"them: set \"encoder\": {{\"fingerprint\": \"{model.encoder.portable_fingerprint()}\"}} in "
                f"{meta_path}")
            continue
        tried.append(f"{how} {source}: fingerprint {actual[:12]}")
    raise EncoderMismatchError(
        f"{meta_path}: no place holds the encoder this checkpoint was trained over (fingerprint "
        f"{str(expected)[:12]}); tried " + "; ".join(tried) + ". Copy the encoder folder along with the "
        "checkpoint (keeping their relative layout) or pass encoder_source= the folder that holds it")
