"""A query over sharded scores picks exactly what the same query picks over the whole pool in one process, for
every strategy with a sharded form, however the pool is split (1, 3 or 7 shards, rows in any order)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from ser_models.active.config import StrategyConfig
from ser_models.active.sharded_selection import shard_candidates
from ser_models.active.strategies import build_strategy
from ser_models.active.strategies.base import random_keys
from ser_models.exceptions import PoolError, PoolExhaustedError
from ser_models.scoring.score_shards import MANIFEST, ScoreShards, read_shard, write_shard
from ser_models.scoring.scored_pool import ScoredPool
from ser_models.scoring.scorer import Scores

N, C, E, T = 3000, 4, 16, 5


def _scores(seed: int = 0, n: int = N) -> Scores:
    """Clustered embeddings, probabilities with exact ties (repeated rows), MC samples and dimensions."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"rec{i % 97:04d}_seg{i:06d}" for i in rng.permutation(n)], dtype=object)
    centres = rng.normal(size=(12, E)) * 4
    emb = (centres[rng.integers(12, size=n)] + rng.normal(size=(n, E))).astype(np.float32)
    logits = rng.normal(size=(n, C)) * 2
    logits[::10] = logits[0]  # every tenth clip ties with the first: ties must break by id, not by row order
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    mc = np.clip(probs[:, None, :] + rng.normal(scale=0.05, size=(n, T, C)), 1e-4, None)
    mc /= mc.sum(-1, keepdims=True)
    dims = rng.uniform(size=(n, 3)).astype(np.float32)
    mc_dims = (dims[:, None, :] + rng.normal(scale=0.1, size=(n, T, 3))).astype(np.float32)
    return Scores(ids, probs.astype(np.float32), emb, np.zeros((n, 0), np.float32), mc.astype(np.float32), dims,
                  mc_dims).sorted_by_id()


def _shard(scores: Scores, folder, parts: int, seed: int = 1) -> ScoreShards:
    """``scores`` written as ``parts`` shards of unequal size, rows shuffled across them."""
    order = np.random.default_rng(seed).permutation(len(scores.ids))
    cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, len(order)), parts - 1, replace=False))
    files, rows = [], []
    for chunk in np.split(order, cuts):
        batch = {"utt_id": scores.ids[chunk], "probs": scores.probs[chunk], "embedding": scores.embedding[chunk],
                 "mc_probs": scores.mc_probs[chunk], "dims": scores.dims[chunk], "mc_dims": scores.mc_dims[chunk]}
        out = write_shard(batch, str(folder), keep_pooled=False)
        files += list(out["file"])
        rows += out["rows"].tolist()
    return ScoreShards(str(folder), tuple(files), tuple(rows), in_process=True)


_LEDGER_EVERY = 13  # one clip in 13 is labelled, with a class


def _labelled(scores: Scores) -> dict[str, int]:
    ids = scores.ids.astype(str)
    return {u: i % C for i, u in enumerate(sorted(ids)) if i % _LEDGER_EVERY == 0}


def _query(strategy, scores: Scores, ledger: dict[str, int], n: int, seed: int, costs=None) -> list[str]:
    ids = scores.ids.astype(str)
    labels = np.array([ledger.get(u, -1) for u in ids], np.int64)
    cost = None if costs is None else np.array([costs[u] for u in ids])
    return strategy.query(scores.as_scored_pool(labels=labels, costs=cost), set(ledger), n, seed)


CONFIGS = {
    "random": {},
    "entropy": {},
    "least_confidence": {},
    "margin": {},
    "bald": {},
    "mc_variance": {},
    "margin_balanced": {"name": "margin", "class_balanced": True},
    "entropy_cost": {"name": "entropy", "cost_aware": True},
    "informative_diverse": {"prefilter_factor": 4},
    "informative_diverse_pca": {"name": "informative_diverse", "kcenter_dim": 4},
    "auto": {"auto_min_labelled": 6},
    "badge": {},  # drawn pick by pick over every shard
}


@pytest.mark.parametrize("parts", [1, 3, 7])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_sharded_picks_equal_in_process_picks(tmp_path, name, parts):
    cfg = StrategyConfig(**{"name": name, **CONFIGS[name]})
    scores = _scores()
    ledger = _labelled(scores)
    costs = ({u: 1.0 + (hash(u) % 7) for u in scores.ids.astype(str)} if cfg.cost_aware else None)
    n, seed = 40, 5
    whole = _query(build_strategy(cfg), scores, ledger, n, seed, costs)
    shards = _shard(scores, tmp_path, parts)
    cost_table = None if costs is None else pa.table({"utt_id": list(costs), "seconds": list(costs.values())})
    strategy = build_strategy(cfg)
    mini = shard_candidates(shards, strategy, n, set(ledger), seed, cost_table)
    assert len(mini.ids) < len(scores.ids) / 2  # the driver held a fraction of the pool
    assert _query(strategy, mini, ledger, n, seed, costs) == whole
    if name == "auto":
        assert strategy.last_choice is not None


TWO_ROUND = {
    "kcenter": {},
    "kmeans": {},
    "gsx": {},
    "gsy": {},
    "igs": {},
}
#: Under a recording cap BADGE goes two rounds too.
CAPPED_TWO_ROUND = {**TWO_ROUND, "badge": {}}


def _targets(scores: Scores, ledger: dict[str, int]) -> np.ndarray:
    """The 'ledger' values of the labelled clips (their true dims here), NaN elsewhere."""
    known = np.array([u in ledger for u in scores.ids.astype(str)])
    return np.where(known[:, None], scores.dims, np.nan).astype(np.float32)


def _annotate(ledger):
    def annotate(known: Scores):
        return _targets(known, ledger), np.array([ledger.get(u, -1) for u in known.ids.astype(str)], np.int64)
    return annotate


@pytest.mark.parametrize("parts", [1, 3, 7])
@pytest.mark.parametrize("name", list(TWO_ROUND))
def test_two_round_strategies_pick_n_unlabelled_clips_from_the_shards_offers(tmp_path, name, parts):
    """k-center, k-means and greedy sampling: each shard offers its own picks (labelled clips as
    centres), and the strategy runs again on the offers. On one shard that is the whole pool's pick."""
    cfg = StrategyConfig(name=name)
    scores = _scores()
    ledger = _labelled(scores)
    n, seed = 30, 2
    shards = _shard(scores, tmp_path, parts)
    strategy = build_strategy(cfg)
    mini = shard_candidates(shards, strategy, n, set(ledger), seed, annotate=_annotate(ledger))
    assert len(mini.ids) <= parts * n + len(ledger)
    scored = mini.as_scored_pool(_targets(mini, ledger))
    picks = strategy.query(scored, set(ledger), n, seed)
    assert len(set(picks)) == n and not set(picks) & set(ledger)
    if parts == 1:
        whole = build_strategy(cfg).query(scores.as_scored_pool(_targets(scores, ledger)), set(ledger), n, seed)
        assert set(picks) == set(whole)


@pytest.mark.parametrize("parts", [1, 3, 7])
@pytest.mark.parametrize("candidates, margin, chosen, seed", [
    (["kcenter"], 0.01, "kcenter", 4), (["random", "kcenter", "badge"], 0.01, "badge", 5),
    (["margin", "kmeans"], 0.01, "kmeans", 4),
    (["random", "kcenter"], 1.0, "random", 4)])  # no candidate gains a whole UA point over random: random is chosen
def test_auto_over_a_two_round_candidate_chooses_as_in_process_then_runs_the_chosen_sharded(tmp_path, candidates,
                                                                                               margin, chosen, seed,
                                                                                               parts):
    """``auto`` with a k-center, BADGE or k-means candidate stays sharded: its replay over the labelled clips
    chooses what the whole-pool query chooses; a ranking candidate then picks exactly the whole pool's clips, and
    a two-round one picks what its own sharded form picks (on one shard: the whole pool's clips)."""
    cfg = StrategyConfig(name="auto", auto_candidates=candidates, auto_min_labelled=6, auto_repeats=3,
                         auto_margin=margin)
    scores = _scores()
    ledger = _labelled(scores)
    n = 30
    gathered = build_strategy(cfg)
    whole = _query(gathered, scores, ledger, n, seed)
    shards = _shard(scores, tmp_path, parts)
    auto = build_strategy(cfg)
    assert auto.shard_plan(n) is None and auto.sharded(n)
    mini = shard_candidates(shards, auto, n, set(ledger), seed, annotate=_annotate(ledger))
    assert len(mini.ids) < len(scores.ids) / 2  # the driver held a fraction of the pool
    picks = _query(auto, mini, ledger, n, seed)
    assert auto.last_choice["chosen"] == gathered.last_choice["chosen"] == chosen
    assert auto.last_choice["simulated_ua"] == gathered.last_choice["simulated_ua"]
    inner = build_strategy(StrategyConfig(name=chosen))
    if not inner.shard_plan(n).local or inner.shard_plan(n).stepwise:
        assert picks == whole
        return
    own = shard_candidates(shards, inner, n, set(ledger), seed, annotate=_annotate(ledger))
    assert set(picks) == set(_query(inner, own, ledger, n, seed))
    if parts == 1:
        assert set(picks) == set(whole)


def _radius(x: np.ndarray, centres: np.ndarray) -> float:
    """The k-center objective: the largest distance of a clip to its nearest centre."""
    d = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    return float(np.sqrt(d.min(1).max()))


def test_two_round_kcenter_stays_near_the_whole_pool_greedy(tmp_path):
    scores = _scores(seed=3)
    ledger = _labelled(scores)
    n = 40
    strategy = build_strategy(StrategyConfig("kcenter"))
    whole = strategy.query(scores.as_scored_pool(), set(ledger), n, 0)
    mini = shard_candidates(_shard(scores, tmp_path, 7), strategy, n, set(ledger), 0)
    sharded = strategy.query(mini.as_scored_pool(), set(ledger), n, 0)
    pos = {u: i for i, u in enumerate(scores.ids.astype(str))}
    labelled = [pos[u] for u in ledger]
    x = scores.embedding.astype(np.float64)
    r_whole = _radius(x, x[labelled + [pos[u] for u in whole]])
    r_sharded = _radius(x, x[labelled + [pos[u] for u in sharded]])
    assert r_sharded <= 1.25 * r_whole


def test_random_keys_depend_on_the_id_and_seed_only():
    ids = np.array(["a", "bb", "ccc", "é", "rec_0001"])
    keys = random_keys(ids, 3)
    assert random_keys(ids[::-1], 3).tolist() == keys[::-1].tolist()
    assert random_keys(np.array(["bb", "a much longer id than the others"]), 3)[0] == keys[1]
    assert (random_keys(ids, 4) != keys).all()
    assert len(set(keys.tolist())) == len(ids)


def test_random_is_uniform_over_the_pool():
    ids = np.array([f"clip{i:05d}" for i in range(20000)])
    chosen = np.zeros(len(ids))
    for seed in range(50):
        chosen[np.argsort(random_keys(ids, seed))[:2000]] += 1
    # Each clip is picked with probability 0.1 per seed: by deciles of the pool order the picks are even.
    per_decile = chosen.reshape(10, -1).sum(1)
    assert np.abs(per_decile / per_decile.mean() - 1).max() < 0.03


def test_an_exhausted_pool_is_refused_as_in_process(tmp_path):
    scores = _scores(n=200)
    ledger = {u: 0 for u in scores.ids.astype(str)[:190]}
    shards = _shard(scores, tmp_path, 3)
    with pytest.raises(PoolExhaustedError, match="only 10 of the 200 scored clips are unlabelled"):
        shard_candidates(shards, build_strategy(StrategyConfig("margin")), 11, set(ledger), 0)


def test_a_strategy_without_a_sharded_form_says_so(tmp_path):
    shards = _shard(_scores(n=100), tmp_path, 2)
    with pytest.raises(ValueError, match="no sharded form"):
        shard_candidates(shards, build_strategy(StrategyConfig("cluster_cold_start")), 5, set(), 0)


def test_rows_of_and_read_shard(tmp_path):
    scores = _scores(n=300)
    shards = _shard(scores, tmp_path, 3)
    wanted = scores.ids.astype(str)[[3, 150, 299]]
    got = shards.rows_of(list(wanted) + ["not-scored"])
    assert got.ids.tolist() == sorted(wanted)
    np.testing.assert_array_equal(got.embedding, scores.embedding[[3, 150, 299]])
    part = read_shard(shards.paths[0], ["probs"])
    assert part.embedding.shape == (shards.rows[0], 0) and part.probs.shape == (shards.rows[0], C)
    with pytest.raises(PoolError, match="none of the 1 clips"):
        shards.rows_of(["not-scored"])


def test_an_unfinished_pass_is_never_read(tmp_path):
    _shard(_scores(n=50), tmp_path, 2)  # shard files, no manifest: a pass killed before its commit
    assert ScoreShards.open(str(tmp_path)) is None
    assert not (tmp_path / MANIFEST).exists()


def test_the_attempts_a_manifest_does_not_name_are_dead():
    """Beside a committed pass, only ``attempt=`` folders its manifest does not name count as dead passes; any
    other name in the folder is not the platform's to judge."""
    import json
    import tempfile
    from pathlib import Path

    from ser_models.scoring.score_shards import dead_attempts

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("attempt=aaaa", "attempt=bbbb", "attempt=cccc", "notes"):
            (root / name).mkdir()
        (root / MANIFEST).write_text(json.dumps({"files": ["attempt=bbbb/part-1.parquet"], "rows": [5]}))
        assert dead_attempts(ScoreShards.open(str(root))) == ["attempt=aaaa", "attempt=cccc"]


def test_a_committed_pass_loses_its_dead_attempts_and_the_files_of_retried_tasks_nothing_else(tmp_path):
    """A shard task Ray ran again after its worker died leaves the first try's part and embedding files in the
    committed attempt; they go with the dead attempts, through the run folder's marker. Other files stay, and
    the pass reads back whole."""
    import json

    from ser_models.active.round_scores import drop_dead_attempts
    from ser_models.ownership import claim_output

    scores = _scores(n=200)
    run = tmp_path / "run"
    with claim_output(run, "run"):
        folder = run / "rounds" / "round=000" / "scores"
        batch = {"utt_id": scores.ids, "probs": scores.probs, "embedding": scores.embedding}
        live = write_shard(batch, str(folder / "attempt=b"), keep_pooled=False)
        first_try = write_shard(batch, str(folder / "attempt=b"), keep_pooled=False)  # the retried task's first
        write_shard(batch, str(folder / "attempt=a"), keep_pooled=False)  # a pass killed before its manifest
        (folder / "attempt=b" / "notes.txt").write_text("not a shard file")
        files = [f"attempt=b/{f}" for f in live["file"]]
        (folder / MANIFEST).write_text(json.dumps({"files": files, "rows": live["rows"].tolist()}))
        shards = ScoreShards.open(str(folder))
        lines: list[str] = []
        drop_dead_attempts(run, shards, lines.append)
    stray = first_try["file"][0]
    assert not (folder / "attempt=a").exists()
    assert not (folder / "attempt=b" / stray).exists()
    assert not (folder / "attempt=b" / stray.replace(".parquet", ".embedding")).exists()
    assert sorted(p.name for p in (folder / "attempt=b").iterdir()) == sorted(
        [live["file"][0], live["file"][0].replace(".parquet", ".embedding"), "notes.txt"])
    assert "1 unfinished scoring pass(es), 2 shard file(s) of retried tasks" in lines[0]
    assert read_shard(shards.paths[0]).ids.tolist() == scores.ids.tolist()


# A recording cap over shards: the capped walk over the candidate rows picks what it picks over the whole pool.
from ser_models.active.sharded_capped import capped_candidates  # noqa: E402
from ser_models.active.strategies.capped import GroupCap  # noqa: E402


def test_a_recording_cap_has_its_inner_strategys_sharded_form(tmp_path):
    for name in ("margin", "kcenter"):
        assert GroupCap(build_strategy(StrategyConfig(name)), {}, 2).shard_plan(5) == \
            build_strategy(StrategyConfig(name)).shard_plan(5)
    auto = GroupCap(build_strategy(StrategyConfig("auto", auto_candidates=["random", "kcenter"])), {}, 2)
    assert auto.shard_plan(5) is None and auto.sharded(5)  # chooses first, then caps the chosen candidate
    shards = _shard(_scores(n=100), tmp_path, 2)
    with pytest.raises(ValueError, match="no sharded form"):
        capped_candidates(shards, GroupCap(build_strategy(StrategyConfig("cluster_cold_start")), {}, 2), 5, set(), 0)
    with pytest.raises(ValueError, match="capped_candidates"):
        shard_candidates(shards, GroupCap(build_strategy(StrategyConfig("margin")), {}, 2), 5, set(), 0)
    with pytest.raises(PoolExhaustedError, match="only 100 of the 100 scored clips are unlabelled"):
        capped_candidates(shards, GroupCap(build_strategy(StrategyConfig("margin")), {}, 2), 101, set(), 0)


def _crowded_recordings(ids: np.ndarray, seed: int) -> dict[str, str | None]:
    """Nine clips in ten belong to one recording, the rest to recordings of one or two clips: under a cap of one,
    the offers of a diversity strategy crowd into the big recording, and most of them are skipped."""
    rng = np.random.default_rng(seed)
    return {u: "big" if rng.random() < 0.9 else f"small{i // 2}" for i, u in enumerate(ids.tolist())}


@pytest.mark.parametrize("parts", [1, 3, 7])
@pytest.mark.parametrize("name", list(CAPPED_TWO_ROUND))
def test_a_cap_around_a_two_round_strategy_stays_sharded_and_fills_its_batch(tmp_path, name, parts):
    """The capped walk runs on the union of the shards' offers; when the cap skips most of them, the shards offer
    again from open recordings until the walk fills the batch. On the first offers alone, every one of these
    walks comes up short of ``n``."""
    scores = _scores()
    ids = scores.ids.astype(str)
    ledger = _labelled(scores)
    groups = _crowded_recordings(ids, seed=parts)
    n, seed = 30, 2
    capped = GroupCap(build_strategy(StrategyConfig(name)), groups, 1)
    rows = capped_candidates(_shard(scores, tmp_path, parts), capped, n, set(ledger), seed,
                             annotate=_annotate(ledger))
    assert len(rows.ids) < len(ids) / 2  # the driver held a fraction of the pool
    scored = rows.as_scored_pool(_targets(rows, ledger), labels=_annotate(ledger)(rows)[1])
    picks = capped.query(scored, set(ledger), n, seed)
    assert len(picks) == len(set(picks)) == n and not set(picks) & set(ledger)
    assert max(Counter(groups[u] for u in picks).values()) == 1  # the cap holds over the whole pool


@pytest.mark.parametrize("parts", [1, 3, 7])
@pytest.mark.parametrize("candidates, chosen", [(["random", "kcenter", "badge"], "badge"), (["margin", "kmeans"], "margin")])
def test_a_capped_auto_chooses_once_as_gathered_and_fills_its_batch(tmp_path, candidates, chosen, parts):
    """``auto`` under a cap of one chooses once, for the batch, what the gathered round chooses; the walk's later
    calls (fewer clips asked for) take the same candidate. A two-round choice (BADGE) runs capped in its two-round
    form: a full batch, the cap held over the whole pool. A ranking choice (margin) picks the gathered clips;
    before, the walk's second call replayed for fewer clips, switched to k-means, and picked other clips."""
    cfg = StrategyConfig("auto", auto_candidates=candidates, auto_min_labelled=6, auto_repeats=3, auto_margin=0.01)
    scores = _scores()
    ids = scores.ids.astype(str)
    ledger = _labelled(scores)
    groups = _crowded_recordings(ids, seed=parts)
    n, seed = 30, 5
    gathered = GroupCap(build_strategy(cfg), groups, 1)
    whole = _query(gathered, scores, ledger, n, seed)
    capped = GroupCap(build_strategy(cfg), groups, 1)
    rows = capped_candidates(_shard(scores, tmp_path, parts), capped, n, set(ledger), seed,
                             annotate=_annotate(ledger))
    assert len(rows.ids) < len(ids) / 2  # the driver held a fraction of the pool
    picks = _query(capped, rows, ledger, n, seed)
    assert capped.last_choice["chosen"] == gathered.last_choice["chosen"] == chosen
    assert capped.last_choice["simulated_ua"] == gathered.last_choice["simulated_ua"]
    assert len(picks) == len(set(picks)) == n and not set(picks) & set(ledger)
    assert max(Counter(groups[u] for u in picks).values()) == 1
    if chosen == "margin":
        assert picks == whole


@pytest.mark.parametrize("name", ["kcenter", "kmeans"])
def test_a_capped_two_round_batch_the_pool_cannot_fill_stops_short_without_reading_the_pool(tmp_path, name):
    """Twenty recordings and a cap of one cannot fill a batch of 30: the walk stops at 20, as the gathered one
    does, once the shards have no clip of an open recording left to offer, holding a few offers, not the pool."""
    scores = _scores()
    ids = scores.ids.astype(str)
    ledger = _labelled(scores)
    groups = {u: f"rec{i % 20}" for i, u in enumerate(ids.tolist())}
    capped = GroupCap(build_strategy(StrategyConfig(name)), groups, 1)
    scored = scores.as_scored_pool(_targets(scores, ledger), labels=_annotate(ledger)(scores)[1])
    assert len(capped.query(scored, set(ledger), 30, 2)) == 20
    rows = capped_candidates(_shard(scores, tmp_path, 3), capped, 30, set(ledger), 2, annotate=_annotate(ledger))
    assert len(rows.ids) < len(ids) / 4  # a few offers of 30 per shard and the centres, not the pool
    picks = capped.query(rows.as_scored_pool(_targets(rows, ledger), labels=_annotate(ledger)(rows)[1]),
                         set(ledger), 30, 2)
    assert len(picks) == 20 and len({groups[u] for u in picks}) == 20


@pytest.mark.parametrize("name", list(CAPPED_TWO_ROUND))
def test_a_cap_that_never_binds_around_a_two_round_strategy_picks_the_gathered_clips_on_one_shard(tmp_path, name):
    scores = _scores()
    ledger = _labelled(scores)
    groups = {u: f"rec{i}" for i, u in enumerate(scores.ids.astype(str).tolist())}  # one clip per recording
    n, seed = 30, 4
    capped = GroupCap(build_strategy(StrategyConfig(name)), groups, 1)
    scored = scores.as_scored_pool(_targets(scores, ledger), labels=_annotate(ledger)(scores)[1])
    whole = capped.query(scored, set(ledger), n, seed)
    rows = capped_candidates(_shard(scores, tmp_path, 1), capped, n, set(ledger), seed, annotate=_annotate(ledger))
    picked = capped.query(rows.as_scored_pool(_targets(rows, ledger), labels=_annotate(ledger)(rows)[1]),
                          set(ledger), n, seed)
    assert set(picked) == set(whole)  # k-means over its own offers may order them otherwise


def _primary_order(cfg: StrategyConfig, scores: Scores, seed: int) -> np.ndarray:
    """Row positions in the order the strategy's ranking takes them (most wanted first)."""
    scored = scores.as_scored_pool()
    if cfg.name == "random":
        return np.lexsort((scores.ids.astype(str), random_keys(scores.ids.astype(str), seed)))
    from ser_models.active.strategies.base import uncertainty_scores

    if cfg.name == "auto" and "kcenter" in cfg.auto_candidates:  # auto_two_round chooses random
        return _primary_order(StrategyConfig("random"), scores, seed)
    score = cfg.uncertainty if cfg.name in ("informative_diverse", "auto") else cfg.name
    return np.argsort(-uncertainty_scores(scored, score, "test").astype(np.float64), kind="stable")


def _skewed_recordings(order: np.ndarray, ids: np.ndarray, seed: int) -> dict[str, str | None]:
    """Three recordings hold most of the ranking's top 600 (one of them 70 %); the rest of the pool is spread
    over recordings of Zipf-like sizes, and one clip in 50 has no recording."""
    rng = np.random.default_rng(seed)
    groups: dict[str, str | None] = {}
    top, rest = order[:600], order[600:]
    for pos in top:
        groups[ids[pos]] = str(rng.choice(["big_a", "big_b", "big_c", "small"], p=[0.7, 0.15, 0.1, 0.05]))
    sizes = np.maximum(1, (400 / np.arange(1, 200)).astype(int))
    owner = np.repeat(np.arange(len(sizes)), sizes)
    for i, pos in enumerate(rng.permutation(rest)):
        groups[ids[pos]] = f"rec{owner[i % len(owner)]:03d}"
    for u in ids[::50]:
        groups[u] = None
    return groups


def _capped_query(capped: GroupCap, scores: Scores, ledger: dict[str, int], n: int, seed: int) -> list[str]:
    return _query(capped, scores, ledger, n, seed)


def _labels_of(ledger: dict[str, int]):
    def annotate(rows: Scores):
        return None, np.array([ledger.get(u, -1) for u in rows.ids.astype(str)], np.int64)
    return annotate


CAPPED = {
    "random": {},
    "margin": {},
    "bald": {},
    "mc_variance": {},
    "entropy_balanced": {"name": "entropy", "class_balanced": True},
    "informative_diverse": {"prefilter_factor": 4},
    "auto": {"auto_min_labelled": 6, "auto_repeats": 2, "auto_candidates": ["random", "margin", "informative_diverse"]},
    # a two-round candidate: auto chooses first (random: k-center gains no whole point), then random runs capped
    "auto_two_round": {"name": "auto", "auto_min_labelled": 6, "auto_repeats": 2, "auto_margin": 1.0,
                       "auto_candidates": ["random", "kcenter"]},
}


@pytest.mark.parametrize("parts", [1, 3, 7])
@pytest.mark.parametrize("cap", [1, 3])
@pytest.mark.parametrize("name", list(CAPPED))
def test_sharded_capped_picks_equal_the_gathered_capped_picks(tmp_path, name, cap, parts):
    """One recording dominates the top of the ranking, so the capped walk goes far past the top n; the rows the
    shards hand over still give the gathered walk's picks, in its order."""
    cfg = StrategyConfig(**{"name": name, **CAPPED[name]})
    scores = _scores(seed=7)
    ids = scores.ids.astype(str)
    ledger = _labelled(scores)
    n, seed = 40, 3
    groups = _skewed_recordings(_primary_order(cfg, scores, seed), ids, seed=cap)
    whole = _capped_query(GroupCap(build_strategy(cfg), groups, cap), scores, ledger, n, seed)
    assert len(whole) == n and max(Counter(groups[u] for u in whole if groups[u]).values()) == cap
    capped = GroupCap(build_strategy(cfg), groups, cap)
    rows = capped_candidates(_shard(scores, tmp_path, parts), capped, n, set(ledger), seed,
                             annotate=_labels_of(ledger))
    assert len(rows.ids) < len(ids)  # never the whole pool here
    assert _capped_query(capped, rows, ledger, n, seed) == whole


def test_the_rankings_grow_until_they_hold_the_walk(tmp_path):
    """Capped at one clip a recording, the top 40 by margin (one recording's, mostly) hold few of the picks: the
    first pass's rows give other picks, and the capped search ranks deeper than the batch (margin reads no rows
    besides its rankings', so every row past 40 came from a deeper ranking)."""
    cfg = StrategyConfig("margin")
    scores = _scores(seed=7)
    ledger = _labelled(scores)
    n, seed = 40, 3
    groups = _skewed_recordings(_primary_order(cfg, scores, seed), scores.ids.astype(str), seed=1)
    whole = _capped_query(GroupCap(build_strategy(cfg), groups, 1), scores, ledger, n, seed)
    shards = _shard(scores, tmp_path, 3)
    first = shard_candidates(shards, build_strategy(cfg), n, set(ledger), seed)
    assert len(first.ids) == n
    assert _capped_query(GroupCap(build_strategy(cfg), groups, 1), first, ledger, n, seed) != whole
    rows = capped_candidates(shards, GroupCap(build_strategy(cfg), groups, 1), n, set(ledger), seed)
    assert len(rows.ids) >= 4 * n
    assert _capped_query(GroupCap(build_strategy(cfg), groups, 1), rows, ledger, n, seed) == whole


def test_a_capped_walk_that_empties_the_pool_is_the_gathered_one(tmp_path):
    """Few recordings, a large cap-limited batch: the walk runs out of open recordings before the batch is full,
    over the shards as over the whole pool (the rankings grow to the whole pool)."""
    scores = _scores(seed=2, n=400)
    ids = scores.ids.astype(str)
    groups = {u: f"rec{i % 9}" for i, u in enumerate(ids)}
    ledger = _labelled(scores)
    cfg = StrategyConfig("entropy")
    whole = _capped_query(GroupCap(build_strategy(cfg), groups, 2), scores, ledger, 30, 0)
    assert len(whole) == 18
    capped = GroupCap(build_strategy(cfg), groups, 2)
    rows = capped_candidates(_shard(scores, tmp_path, 3), capped, 30, set(ledger), 0)
    assert _capped_query(capped, rows, ledger, 30, 0) == whole


@pytest.mark.parametrize("parts", [1, 3, 7])
@pytest.mark.parametrize("reduce_above", [10**9, 100])
def test_the_sharded_cold_start_picks_the_in_process_initial_set(tmp_path, monkeypatch, parts, reduce_above):
    """Sample by hashed ids, centres fitted on it (PCA too above REDUCE_ABOVE), clusters sized and filled
    nearest-first over the shards: the in-process strategy's initial set, in its order."""
    from ser_models.active.sharded_cold_start import shard_cold_start
    from ser_models.active.strategies.diversity import ClusterColdStartStrategy

    monkeypatch.setattr(ClusterColdStartStrategy, "REDUCE_ABOVE", reduce_above)
    monkeypatch.setattr(ClusterColdStartStrategy, "SAMPLE_PER_CLUSTER", 16)  # a sample smaller than the pool
    scores = _scores(seed=4)
    pooled = Scores(scores.ids, scores.probs, scores.embedding, scores.embedding.copy())
    strategy = build_strategy(StrategyConfig("cluster_cold_start", num_clusters=20, kmeans_iters=5, cold_start_dim=6))
    skip = set(scores.ids.astype(str)[::50])
    n, seed = 90, 3
    whole = strategy.query(ScoredPool(ids=pooled.ids.astype(str), probs=pooled.probs, embeddings=pooled.pooled),
                           skip, n, seed)
    order = np.random.default_rng(parts).permutation(len(pooled.ids))
    files, rows = [], []
    for chunk in np.array_split(order, parts):
        out = write_shard({"utt_id": pooled.ids[chunk], "probs": pooled.probs[chunk],
                           "embedding": pooled.embedding[chunk], "pooled": pooled.pooled[chunk]},
                          str(tmp_path), keep_pooled=True)
        files += list(out["file"])
        rows += out["rows"].tolist()
    shards = ScoreShards(str(tmp_path), tuple(files), tuple(rows), in_process=True)
    assert shard_cold_start(shards, strategy, n, skip, seed) == whole
    with pytest.raises(PoolExhaustedError):
        shard_cold_start(shards, strategy, len(pooled.ids), skip, seed)


# Confident pseudo-labels over a round's score shards are the ones the gathered round makes; propagation spreads
# over each shard's own graph joined with every labelled clip.
from ser_models.active.pseudo_labels import SemiSupervisedConfig, pseudo_labels, shard_pseudo_labels  # noqa: E402

PSEUDO_CLASSES = ["neutral", "happy", "sad", "angry"]


@pytest.mark.parametrize("parts", [1, 3, 7])
@pytest.mark.parametrize("threshold, ratio", [(0.5, 1.0), (0.8, 0.3), (0.0, 2.0)])
def test_sharded_confident_pseudo_labels_equal_the_gathered_ones(tmp_path, parts, threshold, ratio):
    scores = _scores(seed=parts)
    ids = scores.ids.astype(str)
    labelled = {u: PSEUDO_CLASSES[i % 4] for i, u in enumerate(sorted(ids)) if i % 11 == 0}
    exclude = {u for i, u in enumerate(sorted(ids)) if i % 17 == 5}
    cfg = SemiSupervisedConfig(method="confident", threshold=threshold, max_ratio=ratio)
    want = pseudo_labels(cfg, scores.ids, scores.probs, scores.embedding, labelled, PSEUDO_CLASSES, exclude=exclude)
    got = shard_pseudo_labels(_shard(scores, tmp_path, parts), cfg, labelled, PSEUDO_CLASSES, exclude)
    assert want.num_rows > 0 and got.equals(want)
    assert not set(got.column("utt_id").to_pylist()) & (set(labelled) | exclude)


def _clustered_scores(n: int, seed: int) -> tuple[Scores, np.ndarray]:
    """Scores whose embeddings form one tight cluster per class (and a spread around it): the class of each
    clip is the truth propagation should recover."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, n)
    centres = rng.normal(size=(4, E)) * 3
    emb = (centres[truth] + rng.normal(size=(n, E))).astype(np.float32)
    ids = np.array([f"clip{i:05d}" for i in rng.permutation(n)], dtype=object)
    probs = np.full((n, 4), 0.25, np.float32)
    scores = Scores(ids, probs, emb, np.zeros((n, 0), np.float32), np.full((n, T, 4), 0.25, np.float32),
                    np.zeros((n, 3), np.float32), np.zeros((n, T, 3), np.float32))
    order = np.argsort(ids.astype(str))
    return scores.take(order), truth[order]


def test_sharded_propagation_over_a_shard_of_one_unseeded_clip(tmp_path):
    """A shard of one clip, and no labelled clip with a class to join it: no graph to spread over, so the clip is
    unreached (uniform shares), as every clip of a graph without seeds is; the result is the gathered one."""
    scores, _ = _clustered_scores(60, seed=2)
    ids = scores.ids.astype(str)
    rest = _shard(scores.take(np.arange(1, 60)), tmp_path / "rest", 2)
    lone = _shard(scores.take(np.arange(1)), tmp_path / "lone", 1)
    shards = ScoreShards(str(tmp_path), tuple(f"rest/{f}" for f in rest.files) + tuple(f"lone/{f}" for f in lone.files),
                         rest.rows + lone.rows, in_process=True)
    cfg = SemiSupervisedConfig(method="propagation", threshold=0.0, max_ratio=20.0)
    labelled = {u: None for u in ids[1:4]}  # dimensional labels only: nothing seeds the spread
    want = pseudo_labels(cfg, scores.ids, scores.probs, scores.embedding, labelled, PSEUDO_CLASSES)
    got = shard_pseudo_labels(shards, cfg, labelled, PSEUDO_CLASSES)
    assert ids[0] in got.column("utt_id").to_pylist() and got.equals(want)


def test_sharded_propagation_on_one_shard_is_the_gathered_one(tmp_path):
    scores, truth = _clustered_scores(600, seed=1)
    ids = scores.ids.astype(str)
    labelled = {u: PSEUDO_CLASSES[int(t)] for u, t in zip(ids[::15], truth[::15])}
    labelled[ids[1]] = None  # a dimensional-only label: in the graph, seeds nothing, never pseudo-labelled
    cfg = SemiSupervisedConfig(method="propagation", threshold=0.5, max_ratio=2.0)
    want = pseudo_labels(cfg, scores.ids, scores.probs, scores.embedding, labelled, PSEUDO_CLASSES,
                         exclude={ids[2]})
    got = shard_pseudo_labels(_shard(scores, tmp_path, 1), cfg, labelled, PSEUDO_CLASSES, {ids[2]})
    assert want.num_rows > 0 and got.equals(want)


@pytest.mark.parametrize("parts", [3, 7])
def test_sharded_propagation_spreads_each_shards_graph_from_every_labelled_clip(tmp_path, parts):
    """Over several shards each clip's neighbours are its shard's clips and the labelled clips (approximate):
    on clusters with one class each, the pseudo-labels are as right as the gathered ones, and never name a
    labelled or excluded clip."""
    scores, truth = _clustered_scores(1500, seed=parts)
    ids = scores.ids.astype(str)
    labelled = {u: PSEUDO_CLASSES[int(t)] for u, t in zip(ids[::25], truth[::25])}
    exclude = set(ids[3::40].tolist())
    cfg = SemiSupervisedConfig(method="propagation", threshold=0.5, max_ratio=4.0)
    want = pseudo_labels(cfg, scores.ids, scores.probs, scores.embedding, labelled, PSEUDO_CLASSES, exclude=exclude)
    got = shard_pseudo_labels(_shard(scores, tmp_path, parts), cfg, labelled, PSEUDO_CLASSES, exclude)
    truth_of = dict(zip(ids, (PSEUDO_CLASSES[int(t)] for t in truth)))

    def accuracy(table):
        return np.mean([truth_of[u] == lab for u, lab in zip(table.column("utt_id").to_pylist(),
                                                              table.column("label").to_pylist())])

    assert got.num_rows == want.num_rows  # every class fills its share either way
    assert accuracy(got) >= accuracy(want) - 0.02 and accuracy(got) > 0.95
    assert not set(got.column("utt_id").to_pylist()) & (set(labelled) | exclude)
    assert set(got.column("method").to_pylist()) == {"propagation"}


@pytest.mark.parametrize("parts", [3, 7])
def test_sharded_confident_pseudo_labels_break_ties_at_the_cut_by_id(tmp_path, parts):
    """Forty clips share one confidence across the shards and only five per class are kept: the five with the
    smallest ids, as the gathered round keeps them."""
    scores = _scores(seed=5, n=400)
    scores.probs[:40] = [1.0, 0.0, 0.0, 0.0]  # rows are id-sorted; the shuffle spreads them over every shard
    labelled = {u: "happy" for u in scores.ids.astype(str)[-20:]}  # cap 20: 5 per class
    cfg = SemiSupervisedConfig(method="confident", threshold=0.0, max_ratio=1.0)
    want = pseudo_labels(cfg, scores.ids, scores.probs, scores.embedding, labelled, PSEUDO_CLASSES)
    got = shard_pseudo_labels(_shard(scores, tmp_path, parts), cfg, labelled, PSEUDO_CLASSES)
    zero = [u for u, lab in zip(want.column("utt_id").to_pylist(), want.column("label").to_pylist()) if lab == "neutral"]
    assert zero == sorted(scores.ids.astype(str)[:40])[:5]
    assert got.equals(want)


@pytest.mark.parametrize("name, sharded", [("margin", True), ("informative_diverse", True), ("kcenter", True),
                                          ("auto_kcenter", True), ("cluster_cold_start", False)])
def test_a_capped_round_stays_sharded_when_its_inner_strategy_has_a_sharded_form(name, sharded):
    """The loop's decision (``rounds_are_sharded``) with ``active.max_per_recording`` set and the threshold
    forced: a cap around a ranking or a two-round strategy, or ``auto`` with k-center among its candidates,
    keeps the scores in shards; around a strategy with no sharded form the round gathers them, and the console
    says so."""
    from ser_models.active.config import SelectionConfig
    from ser_models.active.loop_config import ActiveConfig
    from ser_models.active.round_scores import rounds_are_sharded

    strategy = (StrategyConfig("auto", auto_candidates=["random", "kcenter"]) if name == "auto_kcenter"
                else StrategyConfig(name))
    active = ActiveConfig(strategy=strategy, max_per_recording=2, selection=SelectionConfig(shard_above_clips=0))
    lines: list[str] = []
    capped = GroupCap(build_strategy(active.strategy), {}, active.max_per_recording)
    assert rounds_are_sharded(active, capped, 1000, lines.append) is sharded
    assert any("gathers the pool's scores" in line for line in lines) is not sharded


@pytest.mark.parametrize("parts", [1, 7])
def test_sharded_capped_cost_aware_picks_equal_the_gathered_ones(tmp_path, parts):
    """Uncertainty per second of audio under a cap of one: the walk over the shards' rows reads the same costs."""
    cfg = StrategyConfig("margin", cost_aware=True)
    scores = _scores(seed=8)
    ids = scores.ids.astype(str)
    ledger = _labelled(scores)
    costs = {u: 1.0 + (i % 7) for i, u in enumerate(ids)}
    n, seed = 40, 1
    cost_table = pa.table({"utt_id": list(costs), "seconds": list(costs.values())})
    scored = scores.as_scored_pool(costs=np.array([costs[u] for u in ids]))
    from ser_models.active.strategies.base import uncertainty_scores

    order = np.argsort(-uncertainty_scores(scored, "margin", "test").astype(np.float64), kind="stable")
    groups = _skewed_recordings(order, ids, seed=0)
    whole = _query(GroupCap(build_strategy(cfg), groups, 1), scores, ledger, n, seed, costs)
    capped = GroupCap(build_strategy(cfg), groups, 1)
    rows = capped_candidates(_shard(scores, tmp_path, parts), capped, n, set(ledger), seed, cost_table)
    assert _query(capped, rows, ledger, n, seed, costs) == whole
