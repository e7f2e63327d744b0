"""Per-speaker statistics: hand-computed answers, the shrinkage rule, the fallback, streaming and storage."""

import numpy as np
import pytest

from ser_models.encoders.speaker_norm import SpeakerMoments, SpeakerStatistics, speaker_key
from ser_models.exceptions import ConfigError

# One feature (L = D = 1). Speaker a: 1, 3 (mean 2, var 1). Speaker b: 10, 14, 12, 12 (mean 12, var 2).
A, B = [1.0, 3.0], [10.0, 14.0, 12.0, 12.0]
POOL = np.array(A + B)


def rows(values):
    return np.asarray(values, np.float32).reshape(-1, 1, 1)


def moments():
    m = SpeakerMoments()
    m.add(rows(A + B), ["a", "a", "b", "b", "b", "b"])
    return m


def test_without_shrinkage_each_speaker_gets_its_own_mean_and_std():
    stats = moments().result(shrink_clips=0)
    assert stats.speakers == ["a", "b"] and stats.counts.tolist() == [2, 4]
    assert stats.mean[:, 0, 0] == pytest.approx([2.0, 12.0])
    assert stats.std[:, 0, 0] == pytest.approx([1.0, np.sqrt(2.0)])
    assert stats.pool_mean[0, 0] == pytest.approx(POOL.mean()) and stats.pool_std[0, 0] == pytest.approx(POOL.std())
    out, fallbacks = stats.normalise(rows(A + B), ["a", "a", "b", "b", "b", "b"])
    assert fallbacks == 0
    assert out[:, 0, 0] == pytest.approx([-1, 1, -np.sqrt(2), np.sqrt(2), 0, 0], abs=1e-6)


def test_shrinkage_is_the_mixture_of_speaker_and_pool_by_hand():
    k = 2.0
    stats = moments().result(shrink_clips=k)
    pool_m, pool_v = POOL.mean(), POOL.var()
    for row, (m, v, n) in enumerate([(2.0, 1.0, 2), (12.0, 2.0, 4)]):
        w = n / (n + k)  # a: 0.5, b: 2/3
        mean = w * m + (1 - w) * pool_m
        second = w * (v + m * m) + (1 - w) * (pool_v + pool_m * pool_m)  # E[x^2] of the mixture
        assert stats.mean[row, 0, 0] == pytest.approx(mean, rel=1e-6)
        assert stats.std[row, 0, 0] == pytest.approx(np.sqrt(second - mean * mean), rel=1e-5)


def test_a_speaker_with_one_clip_is_mostly_the_pool_and_never_divides_by_zero():
    m = SpeakerMoments()
    m.add(rows(A + B + [50.0]), ["a", "a", "b", "b", "b", "b", "solo"])
    stats = m.result(shrink_clips=10)
    solo = stats.speakers.index("solo")
    assert stats.counts[solo] == 1
    assert stats.std[solo, 0, 0] > 0.9 * stats.pool_std[0, 0]  # 1/11 own (std 0), 10/11 the pool's
    out, _ = stats.normalise(rows([50.0]), ["solo"])
    assert np.isfinite(out).all()


def test_clips_without_a_known_speaker_use_the_pool_statistics_and_are_counted():
    stats = moments().result(shrink_clips=0)
    out, fallbacks = stats.normalise(rows([5.0, 5.0, 5.0, 5.0, 5.0]), [None, "", float("nan"), "stranger", "a"])
    assert fallbacks == 4
    pooled = (5.0 - POOL.mean()) / POOL.std()
    assert out[:4, 0, 0] == pytest.approx([pooled] * 4, rel=1e-5)
    assert out[4, 0, 0] == pytest.approx(3.0)
    assert stats.index(["b", "stranger", None]).tolist() == [1, -1, -1]


def test_clips_without_speaker_count_in_the_pool_but_no_speaker():
    m = moments()
    m.add(rows([100.0]), [None])
    stats = m.result(0)
    assert stats.speakers == ["a", "b"] and m.without_speaker == 1 and stats.pool_clips == 7


def test_streaming_in_chunks_equals_one_pass_and_speaker_effects_vanish():
    rng = np.random.default_rng(0)
    speakers = rng.integers(0, 5, 400)
    offset = rng.normal(0, 5, (5, 3, 8))[speakers]  # each speaker's own baseline, [N, L, D]
    feats = (offset + rng.normal(0, 1, (400, 3, 8))).astype(np.float32)
    names = [f"spk{s}" for s in speakers]
    one, chunks = SpeakerMoments(), SpeakerMoments()
    one.add(feats, names)
    for start in range(0, 400, 37):
        chunks.add(feats[start:start + 37], names[start:start + 37])
    a, b = one.result(0), chunks.result(0)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.std, b.std, rtol=1e-5, atol=1e-5)
    out, _ = a.normalise(feats, names)
    for s in range(5):
        mine = out[speakers == s]
        np.testing.assert_allclose(mine.mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(mine.std(0), 1, atol=1e-4)


def test_frames_and_the_first_states_use_the_same_statistics():
    stats = moments().result(0)
    frames = np.stack([rows([1.0, 3.0]), rows([12.0, 14.0])])  # [N=2, F=2, L=1, D=1]
    out, fallbacks = stats.normalise(frames, ["a", "b"])
    assert out.shape == (2, 2, 1, 1) and fallbacks == 0
    np.testing.assert_allclose(out[..., 0, 0], [[-1, 1], [0, np.sqrt(2)]], atol=1e-6)
    two = SpeakerMoments()
    two.add(np.concatenate([rows(A + B), rows(A + B) * 2], axis=1), ["a", "a", "b", "b", "b", "b"])
    first, _ = two.result(0).normalise(rows([3.0]), ["a"])  # only the first of two states
    assert first[0, 0, 0] == pytest.approx(1.0)


def test_saved_statistics_load_back_and_a_bad_file_names_the_key(tmp_path):
    stats = moments().result(shrink_clips=3)
    stats.save(tmp_path / "speaker_stats.safetensors")
    back = SpeakerStatistics.load(tmp_path / "speaker_stats.safetensors")
    assert back.speakers == stats.speakers and back.shrink_clips == 3.0 and back.pool_clips == 6
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.counts, stats.counts)
    assert back.summary() == {"speakers": 2, "clips_min": 2, "clips_median": 3.0, "clips_max": 4, "pool_clips": 6,
                              "shrink_clips": 3.0}
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(ConfigError, match="model.speaker_stats: .*bad.safetensors"):
        SpeakerStatistics.load(tmp_path / "bad.safetensors")


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match="model.speaker_shrinkage"):
        moments().result(shrink_clips=-1)
    with pytest.raises(ValueError, match="2 feature rows but 1 speakers"):
        SpeakerMoments().add(rows([1.0, 2.0]), ["a"])
    with pytest.raises(ConfigError, match="no clips"):
        SpeakerMoments().result()
    assert speaker_key("  ") is None and speaker_key(7) == "7" and speaker_key(" s1 ") == "s1"
