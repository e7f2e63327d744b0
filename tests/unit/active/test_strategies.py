from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ser_models.active import STRATEGIES, StrategyConfig, build_strategy, greedy_kcenter
from ser_models.active.strategies import KCenterStats, badge_kmeanspp
from ser_models.active.strategies.base import random_keys
from ser_models.data.id_keys import key_uniforms
from ser_models.exceptions import ConfigError, PoolError
from ser_models.scoring.scored_pool import ScoredPool

from .contract import StrategyContract, fake_pool


def _cfg(name, **kw):
    return build_strategy(StrategyConfig(name=name, **kw))


class TestRandom(StrategyContract):
    def make(self):
        return _cfg("random")

    def test_seeds_differ(self):
        pool = fake_pool()
        assert self.make().query(pool, set(), 10, 0) != self.make().query(pool, set(), 10, 1)


@pytest.mark.parametrize("score", ["entropy", "least_confidence", "margin", "bald", "mc_variance"])
class TestUncertainty(StrategyContract):
    @pytest.fixture(autouse=True)
    def _score(self, score):
        self.score = score

    def make(self):
        return _cfg(self.score)

    def test_takes_most_uncertain(self):
        probs = np.array([[0.97, 0.01, 0.01, 0.01], [0.25, 0.25, 0.25, 0.25], [0.6, 0.2, 0.1, 0.1]])
        mc = np.stack([probs, probs[:, ::-1]], axis=1)
        mc[1] = 0.25  # uniform samples that agree: high entropy, zero BALD
        # Dimensional samples: clip "c" is the one whose dropout samples spread most.
        mc_dims = np.array([[[3.0], [3.1]], [[2.0], [2.0]], [[1.5], [4.5]]])
        pool = ScoredPool(ids=["a", "b", "c"], probs=probs, embeddings=np.eye(3), mc_probs=mc,
                          predictions=mc_dims.mean(1), mc_predictions=mc_dims)
        got = self.make().query(pool, set(), 1, 0)
        assert got == {"bald": ["a"], "mc_variance": ["c"]}.get(self.score, ["b"])


def test_bald_without_mc_probs_names_fix():
    pool = fake_pool()
    pool.mc_probs = None
    with pytest.raises(PoolError, match="mc_probs.*active.strategy.uncertainty"):
        _cfg("bald").query(pool, set(), 3, 0)


class TestBadge(StrategyContract):
    def make(self):
        return _cfg("badge")


def _badge_reference(probs, emb, ids, n, seed):
    """Materialises g = (p - onehot) outer h [N, C*E] and runs k-means++ on it directly: each pick drawn by an
    exponential race on the clips' seeded draws (key_uniforms), i.e. with probability d2 / sum(d2)."""
    a = probs.astype(np.float64).copy()
    a[np.arange(len(a)), a.argmax(1)] -= 1
    g = (a[:, :, None] * emb.astype(np.float64)[:, None, :]).reshape(len(a), -1)
    keys = random_keys(ids, seed)
    picks = [int(np.argmax((g * g).sum(1)))]
    d2 = np.full(len(g), np.inf)
    while len(picks) < n:
        d2 = np.minimum(d2, ((g - g[picks[-1]]) ** 2).sum(1))
        with np.errstate(divide="ignore"):  # a pick's own distance is 0: it is never drawn again
            race = -np.log(key_uniforms(keys, len(picks))) / d2
        race[picks] = np.inf
        picks.append(int(np.argmin(race)))
    return np.array(picks)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_badge_matches_materialised_reference(seed):
    pool = fake_pool(n=80, dim=6, seed=seed)
    a = pool.probs.astype(np.float64).copy()
    a[np.arange(len(a)), a.argmax(1)] -= 1
    got = badge_kmeanspp(a, pool.embeddings, 15, seed, ids=pool.ids)
    np.testing.assert_array_equal(got, _badge_reference(pool.probs, pool.embeddings, pool.ids, 15, seed))


def test_badge_draws_in_proportion_to_the_squared_distance():
    """The race draws a clip with probability d2 / sum(d2): over many seeds, the second pick's frequencies
    match those probabilities (chi-square, 2 degrees of freedom)."""
    a = np.array([[1.0], [0.5], [0.0], [0.0]])
    h = np.array([[1.0], [1.0], [1.0], [1.0]])  # g = a: distances to the first pick (row 0) are 0.25, 1, 1
    ids = np.array(["a", "b", "c", "d"])
    seeds = 4000
    second = Counter(int(badge_kmeanspp(a, h, 2, s, ids=ids)[1]) for s in range(seeds))
    expected = np.array([0.25, 1.0, 1.0]) / 2.25 * seeds
    observed = np.array([second[1], second[2], second[3]])
    assert second[0] == 0
    assert ((observed - expected) ** 2 / expected).sum() < 16.3  # chi-square(2 dof) at p = 0.0003


def _kcenter_reference(x, n, centres=None, first=None):
    x = x.astype(np.float64)
    if centres is not None:
        mind, picks = ((x[:, None] - centres[None]) ** 2).sum(-1).min(1), []
    else:
        picks, mind = [first], ((x - x[first]) ** 2).sum(1)
    while len(picks) < n:
        mind[picks] = -1
        picks.append(int(np.argmax(mind)))
        mind = np.minimum(mind, ((x - x[picks[-1]]) ** 2).sum(1))
    return np.array(picks)


@pytest.mark.parametrize("cells", [1, 7, 40])
@pytest.mark.parametrize("with_centres", [False, True])
def test_greedy_kcenter_matches_reference(cells, with_centres):
    rng = np.random.default_rng(cells)
    # offset + clusters: exercises float32 cancellation (centring) and cell pruning
    x = (rng.normal(size=(10, 12)) * 5)[rng.integers(0, 10, 500)] + rng.normal(size=(500, 12)) + 50
    centres = x[:4] + 0.5 if with_centres else None
    stats = KCenterStats()
    got = greedy_kcenter(x, 40, centres=centres, first=None if with_centres else 11, num_cells=cells, stats=stats)
    np.testing.assert_array_equal(got, _kcenter_reference(x, 40, centres, None if with_centres else 11))
    if cells > 1:
        assert stats.scan_fraction < 0.9  # pruning skipped work on clustered data


class TestKCenter(StrategyContract):
    def make(self):
        return _cfg("kcenter")

    def test_labelled_clips_are_centres(self):
        # two far blobs; the labelled clip sits in blob A, so the first pick must come from blob B
        emb = np.r_[np.zeros((5, 2)), np.full((5, 2), 100.0)] + np.arange(10)[:, None] * 0.01
        pool = ScoredPool(ids=[f"i{k}" for k in range(10)], probs=np.full((10, 2), 0.5), embeddings=emb)
        assert int(self.make().query(pool, {"i0"}, 1, 0)[0][1:]) >= 5

    def test_pca_variant_runs(self):
        pool = fake_pool(n=100, dim=16)
        ids = _cfg("kcenter", kcenter_dim=4).query(pool, {"c000"}, 10, 0)
        assert len(set(ids)) == 10


class TestKMeansUncertain(StrategyContract):
    def make(self):
        return _cfg("kmeans", kmeans_iters=5)


class TestKMeansCentral(StrategyContract):
    def make(self):
        return _cfg("kmeans", kmeans_iters=5, pick="central")


class TestClusterColdStart(StrategyContract):
    def make(self):
        return _cfg("cluster_cold_start", kmeans_iters=5)

    def test_one_per_blob_first(self):
        rng = np.random.default_rng(0)
        emb = np.repeat(np.eye(3) * 50, 10, axis=0) + rng.normal(size=(30, 3))
        pool = ScoredPool(ids=[f"i{k:02d}" for k in range(30)], probs=np.full((30, 2), 0.5), embeddings=emb)
        ids = _cfg("cluster_cold_start", num_clusters=3, kmeans_iters=10).query(pool, set(), 3, 0)
        assert sorted(int(i[1:]) // 10 for i in ids) == [0, 1, 2]

    @pytest.mark.parametrize("reduce_above", [10**9, 1000])
    def test_capped_k_and_pca_still_cover_every_blob_in_proportion(self, monkeypatch, reduce_above):
        """k = min(n, max_clusters) clusters fitted on a sample (and, above REDUCE_ABOVE clips, in a PCA
        projection): a budget far above k is filled round-robin, so each blob gets its share."""
        from ser_models.active.strategies.diversity import ClusterColdStartStrategy

        monkeypatch.setattr(ClusterColdStartStrategy, "REDUCE_ABOVE", reduce_above)
        rng = np.random.default_rng(1)
        sizes = [3000, 2000, 1000]  # three speakers' worth of clips, 32-d
        centres = rng.normal(size=(3, 32)) * 40
        emb = np.concatenate([c + rng.normal(size=(m, 32)) for c, m in zip(centres, sizes)]).astype(np.float32)
        blob = np.repeat(np.arange(3), sizes)
        pool = ScoredPool(ids=[f"c{i:05d}" for i in range(len(emb))], probs=np.full((len(emb), 2), 0.5),
                          embeddings=emb)
        strategy = _cfg("cluster_cold_start", kmeans_iters=10, max_clusters=12, cold_start_dim=8)
        ids = strategy.query(pool, set(), 600, 0)
        assert len(set(ids)) == 600
        counts = np.bincount(blob[[int(i[1:]) for i in ids]], minlength=3)
        assert all(c > 0 for c in counts) and counts[0] > counts[2], counts
        assert strategy.query(pool, set(), 600, 0) == ids  # seeded


class TestInformativeDiverse(StrategyContract):
    def make(self):
        return _cfg("informative_diverse", prefilter_factor=3)

    def test_only_picks_from_prefilter(self):
        pool = fake_pool(n=100)
        from ser_models.active import entropy

        top = set(pool.ids[np.argsort(-entropy(pool.probs), kind="stable")[:15]].tolist())
        ids = self.make().query(pool, set(), 5, 0)
        assert set(ids) <= top


def test_registry_and_default():
    assert set(STRATEGIES) >= {"gsx", "gsy", "igs", "mc_variance"}
    assert set(STRATEGIES) >= {"random", "entropy", "least_confidence", "margin", "bald", "badge", "kcenter",
                               "kmeans", "cluster_cold_start", "informative_diverse"}
    assert repr(build_strategy()).startswith("AutoStrategy(candidates=['random', 'margin', 'informative_diverse']")
    assert "InformativeDiverseStrategy(score='entropy', prefilter_factor=4" in repr(
        build_strategy(StrategyConfig(name="informative_diverse")))


@pytest.mark.parametrize("kw,key", [({"name": "nope"}, "active.strategy.name"),
                                    ({"uncertainty": "x"}, "active.strategy.uncertainty"),
                                    ({"prefilter_factor": 0}, "active.strategy.prefilter_factor"),
                                    ({"pick": "x"}, "active.strategy.pick"),
                                    ({"num_threads": 0}, "active.strategy.num_threads")])
def test_config_validation_names_key(kw, key):
    with pytest.raises(ConfigError, match=key):
        StrategyConfig(**kw)


def test_scored_pool_rejects_duplicate_ids():
    with pytest.raises(PoolError, match="unique.*'a'"):
        ScoredPool(ids=["a", "a"], probs=np.full((2, 2), 0.5), embeddings=np.zeros((2, 3)))


def test_non_finite_scores_are_refused_with_clip_ids():
    from ser_models.exceptions import PoolError
    from ser_models.scoring.scored_pool import ScoredPool

    probs = np.full((4, 3), 1 / 3, np.float32)
    probs[2, 1] = np.nan
    with pytest.raises(PoolError, match=r"ScoredPool.probs holds non-finite values for 1 of 4 clips: 'u2'"):
        ScoredPool(ids=[f"u{i}" for i in range(4)], probs=probs, embeddings=np.zeros((4, 2), np.float32))


def test_informative_diverse_when_the_prefilter_covers_the_whole_pool():
    """Prefilter M >= N with nothing labelled: the rows handed to k-center are the whole pool in uncertainty
    order, not pool order. The first pick is the most uncertain clip, the second the clip farthest from it."""
    from ser_models.active.strategies import InformativeDiverseStrategy
    from ser_models.scoring.scored_pool import ScoredPool

    n_clips = 12
    probs = np.tile(np.array([0.97, 0.01, 0.01, 0.01], np.float32), (n_clips, 1))
    probs[7] = 0.25  # the most uncertain clip
    probs[2] = [0.7, 0.1, 0.1, 0.1]  # second most uncertain: rank 1 in the prefilter
    emb = np.zeros((n_clips, 2), np.float32)
    emb[:, 0] = np.arange(n_clips)  # clip i at x = i: the farthest from clip 7 is clip 0
    scored = ScoredPool(ids=[f"c{i:02d}" for i in range(n_clips)], probs=probs, embeddings=emb)
    picks = InformativeDiverseStrategy("entropy", prefilter_factor=10).query(scored, set(), 2, seed=0)
    assert picks[0] == "c07" and picks[1] == "c00"


@pytest.mark.parametrize("name", ["gsx", "gsy", "igs"])
class TestGreedySampling(StrategyContract):
    @pytest.fixture(autouse=True)
    def _name(self, name):
        self.name = name

    def make(self):
        return _cfg(self.name)


def test_greedy_sampling_matches_a_plain_reimplementation():
    """GSy / iGS picks equal a direct transcription of Wu et al.'s rule (min over centres, then argmax)."""
    from ser_models.active.strategies import greedy_sampling

    pool = fake_pool(n=80)
    x, y = pool.embeddings.astype(np.float64), pool.predictions.astype(np.float64)
    known = np.array([3, 11, 40])
    y_known = pool.targets[known].astype(np.float64)
    cand = np.setdiff1d(np.arange(80), known)
    for space in ("output", "both"):
        got = cand[greedy_sampling(x[cand], y[cand], 6, space, x[known], y_known)]
        cx, cy, want = list(x[known]), list(y_known), []
        for _ in range(6):
            cover = {i: min(np.linalg.norm(y[i] - b) * (np.linalg.norm(x[i] - a) if space == "both" else 1.0)
                            for a, b in zip(cx, cy)) for i in cand if i not in want}
            pick = max(cover, key=cover.get)
            want.append(pick)
            cx.append(x[pick])
            cy.append(y[pick])  # a batch pick has no label: its prediction stands in
        assert got.tolist() == want, space


def test_greedy_sampling_without_labels_starts_at_the_centre_and_spreads_in_output_space():
    from ser_models.active.strategies import greedy_sampling

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = np.concatenate([rng.normal(2, 0.05, (190, 1)), rng.normal(4.5, 0.05, (10, 1))])  # a rare high-arousal tail
    picks = greedy_sampling(x, y, 2, "output")
    assert picks[0] == np.argmin(np.linalg.norm(x - x.mean(0), axis=1))
    assert picks[1] >= 190  # the second pick covers the other end of the output range


def test_regression_strategies_refuse_pools_without_dimensional_outputs():
    plain = fake_pool()
    plain = ScoredPool(ids=plain.ids, probs=plain.probs, embeddings=plain.embeddings, mc_probs=plain.mc_probs)
    with pytest.raises(PoolError, match="model.dimensions"):
        _cfg("gsy").query(plain, {"c000"}, 3, 0)
    with pytest.raises(PoolError, match="mc_predictions.*active.scorer.mc_samples"):
        _cfg("mc_variance").query(plain, set(), 3, 0)
    no_classes = fake_pool()
    no_classes = ScoredPool(ids=no_classes.ids, probs=np.zeros((60, 0)), embeddings=no_classes.embeddings,
                            predictions=no_classes.predictions)
    with pytest.raises(PoolError, match="no classes.*mc_variance"):
        _cfg("entropy").query(no_classes, set(), 3, 0)
    with pytest.raises(PoolError, match=r"targets must be \[N=60, K\] with one K throughout"):
        ScoredPool(ids=no_classes.ids, probs=no_classes.probs, embeddings=no_classes.embeddings,
                   predictions=np.zeros((60, 2)), targets=np.zeros((60, 3)))


def test_cost_aware_uncertainty_is_per_second_of_audio():
    from ser_models.active.strategies import uncertainty_scores

    probs = np.array([[0.25, 0.25, 0.25, 0.25], [0.4, 0.4, 0.1, 0.1], [0.9, 0.05, 0.03, 0.02]])
    plain = ScoredPool(ids=["long", "short", "sure"], probs=probs, embeddings=np.eye(3))
    costs = np.array([10.0, 1.0, 1.0])  # seconds
    aware = ScoredPool(ids=["long", "short", "sure"], probs=probs, embeddings=np.eye(3), costs=costs)
    np.testing.assert_allclose(uncertainty_scores(aware, "entropy", "t"),
                               uncertainty_scores(plain, "entropy", "t") / costs)
    assert _cfg("entropy").query(plain, set(), 1, 0) == ["long"]
    assert _cfg("entropy").query(aware, set(), 1, 0) == ["short"]  # the 10 s clip is not 10x as informative
    with pytest.raises(PoolError, match="costs must be"):
        ScoredPool(ids=["a"], probs=[[0.5, 0.5]], embeddings=[[1.0]], costs=[0.0])


# ---- class-balanced selection for imbalanced pools -------------------------------------------------------------

def test_class_balanced_quotas_fill_the_classes_with_fewest_labels_first():
    from ser_models.active.strategies.uncertainty import class_balanced_top

    predicted = np.array([0] * 20 + [1] * 5 + [2] * 1 + [3] * 4)
    u = np.linspace(1, 0, len(predicted))  # earlier = more uncertain
    picks = class_balanced_top(u, predicted, 8, have=np.array([30, 2, 0, 1]))
    taken = np.bincount(predicted[picks], minlength=4)
    # water-filling from (30, 2, 0, 1) with 8 clips: class 2's one candidate, then 3 and 1 in turn (ties to the
    # lower class) until class 3's four candidates are taken
    assert taken.tolist() == [0, 3, 1, 4] and len(set(picks)) == 8
    assert set(picks[predicted[picks] == 1]) == {20, 21, 22}  # each class's most uncertain first
    # more wanted than the non-neutral classes hold: the rest goes to neutral's most uncertain
    picks = class_balanced_top(u, predicted, 14, have=np.array([30, 2, 0, 1]))
    assert np.bincount(predicted[picks], minlength=4).tolist() == [4, 5, 1, 4]
    assert set(picks[predicted[picks] == 0]) == {0, 1, 2, 3}


@pytest.mark.parametrize("score", ["entropy", "margin"])
class TestClassBalanced(StrategyContract):
    @pytest.fixture(autouse=True)
    def _score(self, score):
        self.score = score

    def make(self):
        return _cfg(self.score, class_balanced=True)

    def test_balanced_picks_follow_the_ledger_counts(self):
        pool = fake_pool(n=80)
        pool.labels = np.where(np.arange(80) < 20, 0, -1)  # the ledger holds 20 clips, all of class 0
        ids = self.make().query(pool, {f"c{i:03d}" for i in range(20)}, 12, seed=0)
        predicted = pool.probs.argmax(1)[[int(i[1:]) for i in ids]]
        assert (predicted != 0).sum() >= min(12, int((pool.probs[20:].argmax(1) != 0).sum()))
        assert "class_balanced=True" in repr(self.make())


def test_class_balanced_is_refused_where_it_means_nothing():
    with pytest.raises(ConfigError, match="class_balanced"):
        StrategyConfig(name="kcenter", class_balanced=True)
    auto = build_strategy(StrategyConfig(name="auto", class_balanced=True,
                                         auto_candidates=["random", "margin", "kcenter"]))
    assert auto.candidates["margin"].class_balanced and "class_balanced" not in repr(auto.candidates["kcenter"])


def test_class_score_messages_name_the_fix_in_full():
    from ser_models.active.strategies.base import uncertainty_scores

    no_classes = fake_pool()
    no_classes = ScoredPool(ids=no_classes.ids, probs=np.zeros((60, 0)), embeddings=no_classes.embeddings,
                            predictions=no_classes.predictions)
    with pytest.raises(PoolError) as err:
        uncertainty_scores(no_classes, "entropy", "the test")
    assert str(err.value) == ("the test ranks by entropy, a class-probability score, but the model has no classes "
                              "(model.labels is empty): use active.strategy.uncertainty=mc_variance or a greedy "
                              "sampling strategy (gsx, gsy, igs)")
    no_mc = fake_pool()
    no_mc.mc_probs = None
    with pytest.raises(PoolError) as err:
        uncertainty_scores(no_mc, "bald", "the test")
    assert str(err.value) == ("the test uses BALD, which needs ScoredPool.mc_probs [N, T, C] (MC-dropout samples), "
                              "but the pool was scored without them: enable MC samples in the scorer or set "
                              "active.strategy.uncertainty to entropy, least_confidence or margin")


def test_rank_desc_keeps_pool_order_among_many_ties_and_reads_any_numbers():
    from ser_models.active.strategies.base import rank_desc

    values = np.tile([0.2, 0.9, 0.5], 100)  # 300 values, 100 of each: long enough for an unstable sort to reorder
    got = rank_desc(values)
    assert got.tolist() == list(range(1, 300, 3)) + list(range(2, 300, 3)) + list(range(0, 300, 3))
    assert rank_desc(np.array([0, 3, 1], dtype=np.uint8)).tolist() == [1, 2, 0]  # no unsigned wrap-around
    assert rank_desc(np.array([False, True, True])).tolist() == [1, 2, 0]


def _fixed(picks, num_threads=None):
    """A strategy that returns the positions it is given, and notes the FAISS threads it ran under."""
    import faiss

    from ser_models.active.strategies.base import QueryStrategy

    class Fixed(QueryStrategy):
        def _select(self, scored, candidates, labelled, n, seed):
            self.threads = faiss.omp_get_max_threads()
            return np.array(picks)

    return Fixed(num_threads=num_threads)


def test_query_runs_under_the_strategys_thread_cap_and_repr_names_it():
    import faiss

    from ser_models.active.strategies.base import QueryStrategy

    before = faiss.omp_get_max_threads()
    strategy = _fixed([2, 0], num_threads=before + 1)
    assert strategy.num_threads == before + 1
    assert strategy.query(fake_pool(n=5), set(), 2, 0) == ["c002", "c000"]
    assert strategy.threads == before + 1 and faiss.omp_get_max_threads() == before
    assert repr(strategy) == f"Fixed(num_threads={before + 1})"
    assert repr(QueryStrategy()) == "QueryStrategy(num_threads=None)"


def test_query_refuses_a_bad_n_and_picks_already_in_the_ledger():
    pool = fake_pool(n=5)
    strategy = _fixed([1, 3])
    for n in (0, 2.5, -1):
        with pytest.raises(ValueError) as err:
            strategy.query(pool, set(), n, 0)
        assert str(err.value) == f"n must be a positive integer, got {n!r}"
    with pytest.raises(AssertionError) as err:  # n unique picks, but one of them is labelled already
        strategy.query(pool, {"c003"}, 2, 0)
    assert str(err.value) == "Fixed(num_threads=None) returned 2 picks (2 unique) for n=2"
