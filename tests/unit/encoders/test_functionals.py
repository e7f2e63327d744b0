"""eGeMAPS functionals (the optional ``[opensmile]`` extra): the error without it, and the values with it.

Without the extra (``make test``) the tests that need it skip and say why; ``make test-opensmile`` installs the
extra and runs them.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from ser_models.encoders.functionals import EGEMAPS_DIM, require_opensmile
from ser_models.exceptions import ConfigError

pytestmark = pytest.mark.opensmile


def _opensmile():
    return pytest.importorskip("opensmile", reason="the optional opensmile extra is not installed "
                                                   "(make test-opensmile installs it and runs these tests)")


def test_a_missing_extra_is_a_config_error_naming_the_extra_and_its_licence(monkeypatch):
    monkeypatch.setitem(sys.modules, "opensmile", None)  # what `import opensmile` sees without the extra
    with pytest.raises(ConfigError, match=r"pip install 'ser-models\[opensmile\]'.*research licence"):
        require_opensmile()


def _voice(seconds=2.0, f0=140.0, sr=16_000, seed=0):
    """A voiced clip with vibrato and a loudness envelope, int16 at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 4 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    wave = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.4 * np.sin(2 * np.pi * 1.5 * t) ** 2)
    wave = wave / np.abs(wave).max() * 0.5 + rng.normal(0, 0.003, len(t))
    return np.round(wave * 32767).astype(np.int16)


def test_the_extractor_gives_opensmiles_own_values_for_a_file_on_disk(tmp_path):
    import soundfile as sf

    opensmile = _opensmile()
    from ser_models.encoders.functionals import EgemapsExtractor

    audio = _voice()
    sf.write(tmp_path / "clip.wav", audio, 16_000, subtype="PCM_16")
    reference = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                feature_level=opensmile.FeatureLevel.Functionals).process_file(str(tmp_path / "clip.wav"))
    ours = EgemapsExtractor().clip(audio)
    assert ours.shape == (1, EGEMAPS_DIM) and reference.shape == (1, EGEMAPS_DIM)
    np.testing.assert_allclose(ours[0], reference.to_numpy(np.float32)[0], rtol=1e-4, atol=1e-5)
    f0_mean = list(reference.columns).index("F0semitoneFrom27.5Hz_sma3nz_amean")
    assert ours[0, f0_mean] == pytest.approx(12 * np.log2(140.0 / 27.5), abs=1.0)  # 140 Hz in semitones


def test_silence_gives_zeros_where_opensmile_has_no_value_and_counts_them():
    _opensmile()
    from ser_models.encoders.functionals import EgemapsExtractor

    opensmile = _opensmile()
    raw = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
                          ).process_signal(np.zeros(16_000, np.float32), 16_000).to_numpy()[0]
    extractor = EgemapsExtractor()
    values = extractor.clip(np.zeros(16_000, np.int16))
    assert values.shape == (1, EGEMAPS_DIM) and np.isfinite(values).all()
    assert extractor.nan_values == int((~np.isfinite(raw)).sum())
    np.testing.assert_array_equal(values[0, ~np.isfinite(raw)], 0.0)


def test_a_cache_of_functionals_without_the_extra_is_refused_naming_it(monkeypatch, tmp_path):
    """jobs.after / finetune / predict open the feature cache with the functionals first: without the extra that
    fails at once, naming the extra, before any clip is encoded."""
    from ser_models.scoring.feature_cache import FeatureCache

    monkeypatch.setitem(sys.modules, "opensmile", None)
    with pytest.raises(ConfigError, match=r"model.functionals=egemaps needs the optional opensmile extra"):
        FeatureCache(tmp_path, "0" * 64, functionals="egemaps")
    with pytest.raises(ConfigError, match="beside per-layer means only"):
        FeatureCache(tmp_path, "0" * 64, kind="frames", functionals="egemaps")
