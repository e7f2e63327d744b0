"""Results depend only on settings that say so, on real components: a feature cache built
at one precision or crop length is never served to a run at another, and ``jobs.after`` refuses to resume its
folder with a changed result key while it accepts changed speed keys."""

from __future__ import annotations

import numpy as np
import pytest


def test_a_feature_cache_is_reused_across_speed_keys_and_never_across_precision_or_crop_length(demo_pool, tmp_path):
    from ser_models.encoders import build_encoder
    from ser_models.scoring.cache_keys import feature_cache_key
    from ser_models.scoring.cache_rows import features_array
    from ser_models.scoring.feature_cache import FeatureCache
    from ser_models.scoring.scorer import ScorerConfig
    from ser_models.testing import tiny_model_config

    pool = demo_pool.open()
    model = tiny_model_config(adapter="frozen")
    encoder = build_encoder(model.encoder)
    root = tmp_path / "cache"

    def build(sc: ScorerConfig) -> FeatureCache:
        cache = FeatureCache(root, feature_cache_key(pool, encoder, sc))
        cache.build(pool.dataset(None), model, encoder.num_layers, sc, verbose=False, in_process=True)
        return cache

    def features(cache: FeatureCache) -> np.ndarray:
        table = cache.table().sort_by("utt_id")
        return features_array(table.column("features"), cache.shape)

    clips = int(pool.summary["kept"])
    fp32 = build(ScorerConfig(max_seconds=20.0))
    assert fp32.last_encoded == clips
    # speed keys only: the same folder, nothing encoded again
    faster = build(ScorerConfig(max_seconds=20.0, batch_size=5, micro_batch_size=3, threads=2))
    assert faster.dir == fp32.dir and faster.last_encoded == 0
    bf16 = build(ScorerConfig(max_seconds=20.0, precision="bf16"))
    cropped = build(ScorerConfig(max_seconds=0.5))
    assert len({fp32.dir, bf16.dir, cropped.dir}) == 3
    assert bf16.last_encoded == clips and cropped.last_encoded == clips
    # and they are other numbers: what the fp32 run would have read had the key left them out
    for other in (bf16, cropped):
        assert not np.allclose(features(other), features(fp32), rtol=1e-4, atol=1e-6), other.dir


def _after_args(demo_pool, out, *extra):
    return ["jobs/configs/after_smoke.yaml", f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}",
            "scaling.backend=ray_train", *extra]


def test_jobs_after_refuses_a_changed_result_key_by_name_and_resumes_with_changed_speed_keys(demo_pool, tmp_path):
    """The job's own starts. Each one stops on purpose right after the resume check, before any work: the
    scoring actors ask for more CPUs than the test's Ray has (``check_reservation``, a ConfigError that is
    not a ResumeMismatchError), so reaching it proves the check passed."""
    from jobs.after import main
    from ser_models.exceptions import ConfigError, ResumeMismatchError

    out = tmp_path / "run"
    too_many = "active.scorer.num_actors=8"
    with pytest.raises(ConfigError, match="leaves no whole CPU") as first:
        main(_after_args(demo_pool, out, too_many))
    assert not isinstance(first.value, ResumeMismatchError) and (out / "run.json").is_file()
    for key, old, new in (("active.scorer.precision", "fp32", "bf16"), ("active.scorer.max_seconds", 20.0, 3.0),
                          ("scaling.num_workers", 1, 2)):
        with pytest.raises(ResumeMismatchError) as info:
            main(_after_args(demo_pool, out, too_many, f"{key}={new}"))
        assert info.value.changes == [(key, old, new)] and f"{key}: {old!r} -> {new!r}" in str(info.value)
    with pytest.raises(ConfigError, match="leaves no whole CPU") as resumed:  # got past the resume check
        main(_after_args(demo_pool, out, "active.scorer.num_actors=9", "active.scorer.micro_batch_size=4",
                         "active.scorer.batch_size=32", "scaling.cpus_per_worker=2", "active.feature_cache_dir="
                         + str(tmp_path / "elsewhere")))
    assert not isinstance(resumed.value, ResumeMismatchError)
