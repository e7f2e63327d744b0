"""One frozen encoder for every model a simulated run builds over cached features.

A simulated active-learning run (:mod:`ser_models.runs.simulation`) builds an ``EmotionModel`` for each round's
fit and each scoring pass (and its loop an encoder, to name its feature cache), and every build loads the
encoder's weights from its folder after drawing their random initialisation (0.1-0.4 s for Whisper-tiny on 2
cores), although from the feature cache only the head runs. Inside :func:`reusing_frozen_encoders`, a model
whose encoder stays frozen (``model.adapter.kind=frozen``, no ``model.adapter.add``) gets the encoder this
process already built for the same config and encoder files (:func:`adapted_encoder`; the loop's:
:func:`base_encoder`), and torch's random generator is set to the state that building it would have left (the
head's initial weights are drawn from it next): the models, and every number they give, are a fresh build's.

The state a build leaves is a function of the state it starts from, so it is known once a build has started
from that state: the fits of a run's rounds start from ``manual_seed(train.optim.seed)`` and share it. A start state
not seen before still builds (and is remembered).

Only for models that never run their encoder: they share its weights, so moving one model to a device moves
the others' encoder too, and cutting its depth (:meth:`~ser_models.encoders.Encoder.limit_depth`, as the
feature-cache build does) would cut theirs; a cut encoder is never handed out again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Iterator

import torch

from ser_models.adapters import apply_adapter
from ser_models.encoders import build_encoder

#: Open :func:`reusing_frozen_encoders` blocks in this process.
_ACTIVE = 0
#: Built encoders by :func:`_encoder_key` (a run uses a few: the loop's bare one, and the frozen one of its
#: models under the configured source and under the folder a checkpoint names).
_ENCODERS: OrderedDict[str, object] = OrderedDict()
#: torch's CPU generator state after a build, by (encoder key, sha256 of the state before it).
_RNG_AFTER: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
#: How many encoders (each holds its weights) and RNG states (5 kB each) are kept.
ENCODERS_KEPT, RNG_STATES_KEPT = 3, 512


@contextlib.contextmanager
def reusing_frozen_encoders() -> Iterator[None]:
    """Within the block, ``EmotionModel`` s with a frozen encoder share one per encoder config (module docstring).

    Use it only around code whose models read cached features; blocks may nest.
    """
    global _ACTIVE
    _ACTIVE += 1
    try:
        yield
    finally:
        _ACTIVE -= 1


def adapted_encoder(model_cfg):
    """The encoder of a new ``EmotionModel``: ``apply_adapter(build_encoder(model_cfg.encoder), model_cfg.adapter)``,
    or inside :func:`reusing_frozen_encoders` the shared frozen one, with torch's RNG where the build leaves it.

    Args:
        model_cfg: the model's ``ModelConfig``.

    Returns:
        An ``Encoder`` (adapted: its trainable weights set by ``model.adapter``).
    """
    adapter = model_cfg.adapter
    if not _ACTIVE or adapter.kind != "frozen" or adapter.add:
        return apply_adapter(build_encoder(model_cfg.encoder), adapter)
    return _reused(_encoder_key(model_cfg.encoder, adapter),
                   lambda: apply_adapter(build_encoder(model_cfg.encoder), adapter))


def base_encoder(encoder_cfg):
    """``build_encoder(encoder_cfg)``, or inside :func:`reusing_frozen_encoders` the one this process built for
    the same config and files, with torch's RNG where a build leaves it: for reading the encoder's fingerprint
    and shape (the AFTER loop names its feature cache by them), never for running or training it."""
    if not _ACTIVE:
        return build_encoder(encoder_cfg)
    return _reused(_encoder_key(encoder_cfg, None), lambda: build_encoder(encoder_cfg))


def _reused(key: str, build):
    """The encoder kept under ``key`` with the RNG set as ``build()`` would leave it, or ``build()`` (kept)."""
    start = (key, hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest())
    shared, after = _ENCODERS.get(key), _RNG_AFTER.get(start)
    if shared is not None and after is not None and not _cut(shared):
        torch.set_rng_state(after)
        _ENCODERS.move_to_end(key)
        _RNG_AFTER.move_to_end(start)
        return shared
    encoder = build()
    _RNG_AFTER[start] = torch.get_rng_state()
    if shared is None or _cut(shared):
        _ENCODERS[key] = encoder
    for kept, most in ((_ENCODERS, ENCODERS_KEPT), (_RNG_AFTER, RNG_STATES_KEPT)):
        while len(kept) > most:
            kept.popitem(last=False)
    return encoder


def _cut(encoder) -> bool:
    """Whether :meth:`~ser_models.encoders.Encoder.limit_depth` cut ``encoder`` short since it was built."""
    return getattr(encoder, "_states", None) is not None


def _encoder_key(encoder_cfg, adapter_cfg) -> str:
    """The encoder and adapter configs (None: the bare encoder), plus the name, size and modification time of
    every file at the top of a local source folder and of a local encoder checkpoint (files rewritten in place
    give another key)."""
    files = []
    for path in (encoder_cfg.source, encoder_cfg.checkpoint):
        if not path:
            continue
        path = os.path.expanduser(str(path))
        entries = ([os.path.join(path, n) for n in sorted(os.listdir(path))] if os.path.isdir(path)
                   else [path] if os.path.isfile(path) else [])
        for entry in entries:
            st = os.stat(entry)
            files.append([entry, st.st_size, st.st_mtime_ns])
    adapter = None if adapter_cfg is None else dataclasses.asdict(adapter_cfg)
    return json.dumps({"encoder": dataclasses.asdict(encoder_cfg), "adapter": adapter, "files": files},
                      sort_keys=True, default=str)
