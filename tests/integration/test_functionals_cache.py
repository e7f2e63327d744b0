"""eGeMAPS functionals into the feature cache on Ray Data actors: every clip once, reused by a rerun, keyed apart
from the encoder's cache (needs the optional opensmile extra: ``make test-opensmile``)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.opensmile]


def test_functionals_of_every_clip_are_cached_once_and_equal_the_extractors(demo_pool, tmp_path):
    pytest.importorskip("opensmile", reason="the optional opensmile extra is not installed "
                                            "(make test-opensmile installs it and runs these tests)")
    from ser_models.data.clips import collect_clips
    from ser_models.encoders.functionals import EGEMAPS_DIM, EgemapsExtractor
    from ser_models.scoring.cache_rows import features_array
    from ser_models.scoring.functionals_cache import build_functionals_cache
    from ser_models.scoring.scorer import ScorerConfig

    pool = demo_pool.open()
    scorer = ScorerConfig(num_actors=1, num_cpus=1, batch_size=16)
    cache = build_functionals_cache(tmp_path / "cache", pool, pool.dataset(None), scorer, verbose=False)
    assert cache.ready and cache.shape == (1, EGEMAPS_DIM)
    table = cache.table()
    meta = pool.metadata(columns=["utt_id"])
    assert sorted(table.column("utt_id").to_pylist()) == sorted(meta["utt_id"])
    values = features_array(table.column("features"), cache.shape)
    assert np.isfinite(values).all() and values.std(0).max() > 0

    # the same values as the extractor on each clip's own audio
    clips = collect_clips(pool.dataset(None).iter_batches(batch_size=64, batch_format="numpy"), [],
                          require_labels=False)
    by_id = dict(zip(table.column("utt_id").to_pylist(), values))
    extractor = EgemapsExtractor()
    for i in range(0, len(clips), 9):
        np.testing.assert_allclose(by_id[clips.ids[i]], extractor.clip(clips.audio[i]), rtol=1e-5, atol=1e-6)

    # a rerun reuses it; the encoder's cache of the same pool lives in another folder
    from pathlib import Path

    meta_file = Path(str(cache.dir)) / "meta.json"
    stamp = meta_file.stat().st_mtime_ns
    again = build_functionals_cache(tmp_path / "cache", pool, pool.dataset(None), scorer, verbose=False)
    assert again.dir == cache.dir and meta_file.stat().st_mtime_ns == stamp
    from ser_models.encoders import build_encoder
    from ser_models.scoring.cache_keys import feature_cache_key
    from ser_models.testing import tiny_model_config

    assert feature_cache_key(pool, build_encoder(tiny_model_config().encoder))[:16] != cache.dir.name[:16]


def test_functionals_cost_bench_builds_the_three_caches_on_both_paths_and_reports_seconds_per_pool_hour(
        demo_pool, tmp_path):
    pytest.importorskip("opensmile", reason="the optional opensmile extra is not installed "
                                            "(make test-opensmile installs it and runs these tests)")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench import functionals_cost

    results = tmp_path / "cost.md"
    seconds = functionals_cost.main(["--pool-dir", str(demo_pool.pool_dir), "--workdir", str(tmp_path / "work"),
                                     "--actors", "1", "--encoder", "tiny-wav2vec2", "--results", str(results)])
    variants = {"encoder", "encoder + egemaps", "egemaps"}
    assert set(seconds) == {(b, v) for b in ("ray", "in_process") for v in variants}
    assert min(seconds.values()) > 0
    text = results.read_text()
    for (backend, variant), s in seconds.items():
        assert f"| {backend} | {variant} | {s:.1f} |" in text
    for backend in ("ray", "in_process"):  # each build in its own folder, the functionals beside the features
        assert list((tmp_path / "work" / backend / "encoder_egemaps").glob("*-egemaps/meta.json"))


def test_functionals_computed_on_cpu_actors_of_their_own_equal_those_of_the_encoding_actor(demo_pool, tmp_path):
    # active.scorer.functionals_stage=separate (auto picks it when the encoding actors reserve GPUs): openSMILE runs
    # on CPU actors ahead of the encoder, and the encoder's actor carries the column through.
    pytest.importorskip("opensmile", reason="the optional opensmile extra is not installed "
                                            "(make test-opensmile installs it and runs these tests)")
    import dataclasses

    from ser_models.encoders.functionals import EGEMAPS_DIM
    from ser_models.scoring.cache_rows import features_array
    from ser_models.scoring.feature_cache import FeatureCache
    from ser_models.scoring.scorer import ScorerConfig
    from ser_models.testing import tiny_model_config

    pool = demo_pool.open()
    ds = pool.dataset("train").limit(24)
    from ser_models.encoders import build_encoder

    model_cfg = dataclasses.replace(tiny_model_config(adapter="frozen"), functionals="egemaps")
    layers = build_encoder(model_cfg.encoder).num_layers
    tables = {}
    for stage in ("actor", "separate"):
        # half a CPU for the encoder leaves the separate stage half a CPU beside Ray Data's reads on 2 CPUs
        sc = ScorerConfig(num_actors=1, num_cpus=0.5, threads=1, batch_size=8, functionals_stage=stage)
        assert sc.separate_functionals() is (stage == "separate")
        cache = FeatureCache(tmp_path / stage, "k", functionals="egemaps")
        cache.build(ds, model_cfg, layers, sc, verbose=False)
        table = cache.table()
        order = np.argsort(table.column("utt_id").to_pylist())
        tables[stage] = (np.asarray(table.column("utt_id").to_pylist())[order],
                         features_array(table.column("functionals"), (1, EGEMAPS_DIM))[order],
                         features_array(table.column("features"), cache.shape)[order])
    ids, funcs, feats = tables["actor"]
    np.testing.assert_array_equal(tables["separate"][0], ids)
    np.testing.assert_allclose(tables["separate"][1], funcs, rtol=1e-6)
    np.testing.assert_allclose(tables["separate"][2], feats, rtol=1e-6)
    assert len(ids) == 24 and np.isfinite(funcs).all()
    assert ScorerConfig(num_gpus=1.0).separate_functionals() and not ScorerConfig().separate_functionals()
    # a separate stage that would leave Ray Data's reads no CPU is refused with the keys (auto falls back)
    from ser_models.exceptions import ConfigError

    with pytest.raises(ConfigError, match="functionals_stage=separate needs a CPU"):
        FeatureCache(tmp_path / "full", "k", functionals="egemaps").build(
            ds, model_cfg, layers, ScorerConfig(num_cpus=1, functionals_stage="separate"), verbose=False)
