"""The feature code's version (``FEATURE_CODE_VERSION``) changes whenever a clip's features change.

Every feature-cache key holds the version, so a cache built by older feature code is read only while the code
computes the same features. This test keeps that true: it encodes three fixed generated clips (one batch,
different lengths, non-zero padding) with every tiny preset and compares a short summary of the hidden states
and their per-layer means (what the feature caches store) with ``golden_features.json``. A change in the
features while the version stayed the same fails, telling the developer to bump the version.

To regenerate the golden file after bumping ``FEATURE_CODE_VERSION`` (or after a torch / transformers upgrade
that changed the presets' random weights, which the test reports as such)::

    SER_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/encoders/test_feature_golden.py
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ser_models.encoders import TINY_PRESETS, EncoderConfig, build_encoder
from ser_models.encoders.encoder import FEATURE_CODE_VERSION
from ser_models.heads import masked_mean

GOLDEN = Path(__file__).with_name("golden_features.json")
REGENERATE = os.environ.get("SER_REGENERATE_GOLDEN") == "1"
#: Relative to each value's magnitude (or, for values near zero, to the state's RMS): CPU runs agree to ~1e-6;
#: dropping the waveform normalisation moves them by 1e-2 or more.
RTOL = 1e-4
HOW = ("bump FEATURE_CODE_VERSION in ser_models/encoders/encoder.py (the feature caches must not serve the old "
       "features), then regenerate the golden file: SER_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest -q "
       "tests/unit/encoders/test_feature_golden.py")


def _clips() -> tuple[torch.Tensor, torch.Tensor]:
    """Three clips (1 s, 0.6 s, 0.3 s) in one padded batch: tones with a DC offset (the normalisation removes
    it) and noise, and random samples after each clip's end (the encoder must ignore them)."""
    rng = np.random.default_rng(20240601)
    lengths = [16_000, 9_600, 4_800]
    t = np.arange(max(lengths)) / 16_000
    wavs = rng.standard_normal((len(lengths), t.size)).astype(np.float32)  # the padding: garbage
    for i, n in enumerate(lengths):
        tone = 0.3 * np.sin(2 * np.pi * (140 + 60 * i) * t[:n]) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t[:n]))
        wavs[i, :n] = tone + 0.05 * rng.standard_normal(n) + 0.1
    return torch.from_numpy(wavs), torch.tensor(lengths)


def _round(x: float) -> float:
    return float(f"{float(x):.7g}")


#: What each summary row holds, per clip and hidden state (``frames_*``: over the clip's valid frames).
COLUMNS = ("pooled[0]", "pooled[1]", "pooled[2]", "pooled[3]", "pooled_abs_mean",
           "mid_frame[0]", "mid_frame[1]", "mid_frame[2]", "mid_frame[3]", "frames_abs_mean", "frames_rms")


def summarise(preset: str) -> dict:
    """The preset's weights (their fingerprint) and, per hidden state and clip, a row of :data:`COLUMNS`: the
    first values and mean magnitude of the per-layer mean (the pooled cache's entry) and of the valid frames
    (the frame cache's)."""
    encoder = build_encoder(EncoderConfig(source=preset)).eval()
    wavs, lengths = _clips()
    with torch.no_grad():
        out = encoder(wavs, lengths)
        pooled = masked_mean(torch.stack(out.hidden_states), out.frame_lengths).transpose(0, 1)  # [B, L, D]
    states = []
    for layer, hidden in enumerate(out.hidden_states):
        rows = []
        for b, frames in enumerate(out.frame_lengths.tolist()):
            valid, mean = hidden[b, :frames].double(), pooled[b, layer].double()
            row = [*mean[:4], mean.abs().mean(), *valid[frames // 2, :4], valid.abs().mean(), valid.pow(2).mean().sqrt()]
            rows.append([_round(v) for v in row])
        states.append(rows)
    return {"weights": encoder.portable_fingerprint(), "frame_lengths": out.frame_lengths.tolist(), "states": states}


def differences(expected: dict, actual: dict, where: str) -> list[str]:
    """Every value of ``actual`` farther than :data:`RTOL` from ``expected``, as ``where: expected -> actual``."""
    if expected["frame_lengths"] != actual["frame_lengths"] or len(expected["states"]) != len(actual["states"]):
        return [f"{where}: frame lengths / states {expected['frame_lengths']} x {len(expected['states'])} -> "
                f"{actual['frame_lengths']} x {len(actual['states'])}"]
    found = []
    for layer, (exp_rows, act_rows) in enumerate(zip(expected["states"], actual["states"])):
        for b, (exp, act) in enumerate(zip(exp_rows, act_rows)):
            scale = exp[COLUMNS.index("frames_rms")]
            for column, e, a in zip(COLUMNS, exp, act):
                if not math.isclose(a, e, rel_tol=RTOL, abs_tol=RTOL * scale):
                    found.append(f"{where} state {layer} clip {b} {column}: {e} -> {a}")
    return found


def _dump(golden: dict) -> str:
    """JSON with one line per hidden state (a small, reviewable diff)."""
    lines = ["{", f' "columns": {json.dumps(list(COLUMNS))},', f' "feature_code_version": {golden["feature_code_version"]},',
             f' "torch": {json.dumps(golden["torch"])},', ' "presets": {']
    presets = sorted(golden["presets"])
    for i, name in enumerate(presets):
        entry = golden["presets"][name]
        lines += [f"  {json.dumps(name)}: {{", f'   "frame_lengths": {json.dumps(entry["frame_lengths"])},',
                  f'   "weights": {json.dumps(entry["weights"])},', '   "states": [']
        lines += [f"    {json.dumps(rows)}" + ("," if k < len(entry["states"]) - 1 else "")
                  for k, rows in enumerate(entry["states"])]
        lines += ["   ]", "  }" + ("," if i < len(presets) - 1 else "")]
    return "\n".join([*lines, " }", "}"]) + "\n"


def test_features_match_the_golden_file_or_the_feature_code_version_was_bumped():
    actual = {"feature_code_version": FEATURE_CODE_VERSION, "torch": torch.__version__,
              "presets": {preset: summarise(preset) for preset in sorted(TINY_PRESETS)}}
    if REGENERATE:
        GOLDEN.write_text(_dump(actual))
        pytest.skip(f"wrote {GOLDEN} (feature code version {FEATURE_CODE_VERSION}): commit it")
    golden = json.loads(GOLDEN.read_text())
    if golden["feature_code_version"] != FEATURE_CODE_VERSION:
        pytest.fail(f"{GOLDEN.name} holds the features of feature code version {golden['feature_code_version']}, "
                    f"the code is version {FEATURE_CODE_VERSION}: regenerate it (SER_REGENERATE_GOLDEN=1 "
                    ".venv/bin/python -m pytest -q tests/unit/encoders/test_feature_golden.py) and commit it")
    assert sorted(golden["presets"]) == sorted(actual["presets"]), \
        f"the tiny presets changed: regenerate {GOLDEN.name} (SER_REGENERATE_GOLDEN=1)"
    reweighted = [p for p in actual["presets"] if golden["presets"][p]["weights"] != actual["presets"][p]["weights"]]
    if reweighted:  # not the feature code: the presets' random init (torch / transformers) changed
        pytest.fail(f"the random weights of {reweighted} differ from {GOLDEN.name}'s (torch {golden['torch']} -> "
                    f"{torch.__version__}? the fingerprints, and so the caches, follow the weights already): "
                    "regenerate it with SER_REGENERATE_GOLDEN=1, without bumping FEATURE_CODE_VERSION")
    found = [d for p in sorted(actual["presets"]) for d in differences(golden["presets"][p], actual["presets"][p], p)]
    assert not found, (f"the features changed while FEATURE_CODE_VERSION is still {FEATURE_CODE_VERSION} "
                       f"({len(found)} values, e.g. {found[:4]}): {HOW}")


def test_the_comparison_catches_a_small_change_and_ignores_rounding():
    """The tolerance: a 1e-3 relative change in one value fails, a 1e-6 one does not."""
    golden = json.loads(GOLDEN.read_text())
    assert golden["columns"] == list(COLUMNS)
    expected = golden["presets"]["tiny-wav2vec2"]
    nudged = json.loads(json.dumps(expected))
    rms = COLUMNS.index("frames_rms")
    nudged["states"][2][1][rms] *= 1 + 1e-6
    assert differences(expected, nudged, "x") == []
    nudged["states"][2][1][rms] *= 1 + 1e-3
    assert differences(expected, nudged, "x") == [
        f"x state 2 clip 1 frames_rms: {expected['states'][2][1][rms]} -> {nudged['states'][2][1][rms]}"]
