"""``active.strategy.name=auto``: choose the query strategy per round by simulating active learning on the
clips that are already labelled.

Which strategy pays depends on the pool, its features and the budget (margin sampling beats random by about
3 UA points on one corpus's Whisper features and loses by 2.6 on prosodic features that saturate early), so
no fixed choice is safe. Before each query, :class:`AutoStrategy` replays the decision it is about to make on
data it can see: the ledger's labelled clips and their embeddings. Never the dev or test split.

The rule, per round (``repeats`` times, each with its own random split):

1. split the labelled clips, stratified by class, into a held-out third and a simulation pool;
2. label half of the simulation pool (at random) and train the probe on it: a standardised logistic
   regression on the scorer's embeddings (the shipped recipe's learner);
3. let each candidate strategy pick, from the other half, as many clips as the real round adds relative to
   what is labelled (the same growth ratio), then retrain and score UA on the held-out third.

The candidate with the highest mean simulated UA is used for the real query, but a candidate replaces
``random`` only when its mean gain over random in the same splits exceeds ``auto_margin``: random is a strong
baseline at low budgets, and the simulation is noisy with few labels. With fewer than ``auto_min_labelled``
labelled clips (or fewer than two classes with three clips each) there is nothing to simulate on, and the
round queries at random. The choice and every candidate's simulated UA are logged and kept with the round.

Each decision also carries a **verdict** (:func:`selection_verdict`): the best other candidate's gain over
random, paired split by split, with its 95 % t-interval, and about how many more labels the interval needs to
narrow to +-2 UA points. That answers "does selection pay on my pool" from the labels a run gathered.

References:
    Hsu & Lin, "Active Learning by Learning", AAAI 2015 (choosing among strategies online; we choose by
    simulation on the labelled set instead of a bandit, so a round's choice needs no random queries).
    Konyushkova et al., "Learning Active Learning from Data", NeurIPS 2017 (simulating AL on labelled data).
"""

from __future__ import annotations

import hashlib

import numpy as np

from ser_models.active.strategies.base import QueryStrategy, ShardPlan
from ser_models.planning.evidence import t_interval
from ser_models.planning.planner import RESOLVE_HALF_WIDTH, verdict_labels
from ser_models.scoring.scored_pool import ScoredPool

__all__ = ["RESOLVE_HALF_WIDTH", "AutoStrategy", "format_verdict", "selection_verdict", "simulate_strategies",
           "verdict_gain"]



def _probe(x: np.ndarray, y: np.ndarray, num_classes: int):
    """A fitted ``predict_proba(x) -> [N, num_classes]`` of the standardised logistic-regression probe."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced"))
    clf.fit(x, y)
    classes = clf.classes_

    def predict_proba(xs: np.ndarray) -> np.ndarray:
        out = np.zeros((len(xs), num_classes), np.float32)
        out[:, classes] = clf.predict_proba(xs)
        return out

    return predict_proba


def _ua(truth: np.ndarray, probs: np.ndarray) -> float:
    """Unweighted accuracy (mean per-class recall) over the classes present in ``truth``."""
    pred = probs.argmax(1)
    return float(np.mean([(pred[truth == c] == c).mean() for c in np.unique(truth)]))


def _stratified_third(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions of about a third of each class (at least one of a class with two or more clips)."""
    held = []
    for c in np.unique(y):
        pos = rng.permutation(np.flatnonzero(y == c))
        if len(pos) >= 2:
            held.extend(pos[: max(1, round(len(pos) / 3))])
    return np.sort(np.asarray(held, dtype=int))


def simulate_strategies(x: np.ndarray, y: np.ndarray, strategies: dict[str, QueryStrategy], growth: float,
                        repeats: int, seed: int, num_classes: int) -> dict[str, list[float]]:
    """Simulated held-out UA of every strategy, per repeat (NaN where a repeat could not run).

    Args:
        x: [L, E] embeddings of the labelled clips.
        y: [L] their class indices.
        strategies: name -> strategy to simulate.
        growth: clips the real round adds per clip already labelled (its batch / labelled count).
        repeats: random splits to average over.
        seed: fixes every split and pick.
        num_classes: C of the model's probabilities.
    """
    out: dict[str, list[float]] = {name: [] for name in strategies}
    for k in range(repeats):
        rng = np.random.default_rng([seed, k])
        held = _stratified_third(y, rng)
        sim = np.setdiff1d(np.arange(len(y)), held)
        start = np.sort(rng.choice(sim, size=len(sim) // 2, replace=False))
        rest = np.setdiff1d(sim, start)
        batch = int(min(len(rest) // 2, max(1, round(growth * len(start)))))
        if len(np.unique(y[start])) < 2 or batch < 1 or len(held) == 0:
            for name in strategies:
                out[name].append(float("nan"))
            continue
        probs = _probe(x[start], y[start], num_classes)(x[sim])
        pool = ScoredPool(ids=sim.astype(str), probs=probs, embeddings=x[sim])
        for name, strategy in strategies.items():
            picks = np.asarray(strategy.query(pool, set(start.astype(str)), batch, seed=seed * 1000 + k), dtype=int)
            train = np.concatenate([start, picks])
            out[name].append(_ua(y[held], _probe(x[train], y[train], num_classes)(x[held])))
    return out


def selection_verdict(sims: dict[str, list[float]], labelled: int, confidence: float = 0.95) -> dict | None:
    """Does selection pay on these labels: the best candidate's paired gain over ``random`` in the replay.

    Args:
        sims: :func:`simulate_strategies`'s held-out UA per strategy and split (NaN where a split could not
            run); ``random`` must be among them.
        labelled: labelled clips the replay ran on (L).
        confidence: of the interval.

    Returns:
        None without ``random`` or without a candidate with two finite paired splits; else ``{"strategy",
        "gain", "low", "high", "splits", "labelled", "labels_to_resolve"}``: the candidate with the highest mean
        gain, the mean gain and its t-interval over the splits (UA, 0-1), and the labels to add before the
        interval's half-width reaches :data:`RESOLVE_HALF_WIDTH` (0 when it already has). That last figure
        assumes the half-width shrinks as ``1 / sqrt(L)`` (the held-out third and the simulated pool grow with
        L): an extrapolation, not a measurement. The best of several candidates is chosen on the same splits,
        so its interval is a little optimistic.
    """
    if "random" not in sims:
        return None
    base = np.asarray(sims["random"], float)
    best = None
    for name, values in sims.items():
        if name == "random":
            continue
        diffs = np.asarray(values, float) - base
        diffs = diffs[np.isfinite(diffs)]
        if len(diffs) >= 2 and (best is None or diffs.mean() > best[1].mean()):
            best = (name, diffs)
    if best is None:
        return None
    name, diffs = best
    gain, low, high = t_interval(diffs, confidence)
    half = (high - low) / 2
    more = 0 if half <= RESOLVE_HALF_WIDTH else verdict_labels(RESOLVE_HALF_WIDTH, (labelled, half)) - labelled
    return {"strategy": name, "gain": gain, "low": low, "high": high, "splits": len(diffs), "labelled": int(labelled),
            "labels_to_resolve": int(more)}


def verdict_gain(v: dict) -> str:
    """A :func:`selection_verdict`'s gain in UA points: ``margin +0.8 [-1.2, +2.8] UA points over random``."""
    return f"{v['strategy']} {100 * v['gain']:+.1f} [{100 * v['low']:+.1f}, {100 * v['high']:+.1f}] UA points over random"


def format_verdict(v: dict) -> str:
    """One line of a :func:`selection_verdict`: :func:`verdict_gain`, then ``(8 splits of 120 labels); about 480
    more labels to resolve +-2``."""
    text = f"{verdict_gain(v)} ({v['splits']} splits of {v['labelled']} labels)"
    more = v["labels_to_resolve"]
    return text + ("; resolved to +-2" if more == 0 else f"; about {more} more labels to resolve +-2")


class AutoStrategy(QueryStrategy):
    """Chooses among ``candidates`` every round by simulated active learning on the labelled clips (see the
    module docstring for the rule); :attr:`last_choice` records the decision of the last query."""

    name = "auto"

    def __init__(self, candidates: dict[str, QueryStrategy], repeats: int = 8, margin: float = 0.01,
                 min_labelled: int = 40, num_threads: int | None = None):
        super().__init__(num_threads)
        if not candidates:
            raise ValueError("AutoStrategy needs at least one candidate strategy")
        self.candidates = dict(candidates)
        self.repeats = repeats
        self.margin = margin
        self.min_labelled = min_labelled
        self.last_choice: dict | None = None
        #: The last decision and what it was made from: the same labelled clips, batch and seed choose the same
        #: candidate, so a sharded query (which chooses before it gathers the chosen one's rows, then queries
        #: those rows) replays once.
        self._memo: tuple[bytes, dict] | None = None

    @property
    def fallback(self) -> str:
        """The candidate a round with too few labels queries with: ``random`` when it is a candidate."""
        return "random" if "random" in self.candidates else next(iter(self.candidates))

    def _params(self) -> dict:
        return {"candidates": list(self.candidates), "repeats": self.repeats, "margin": self.margin,
                "min_labelled": self.min_labelled}

    def choose(self, scored: ScoredPool, labelled: np.ndarray, n: int, seed: int) -> dict:
        """The decision for a query of ``n`` clips: ``{"chosen", "reason", "simulated_ua": {name: mean}, "verdict"}``
        (``verdict``: :func:`selection_verdict`, None when nothing was simulated)."""
        fallback = self.fallback
        known = labelled[scored.labels[labelled] >= 0] if scored.labels is not None else labelled[:0]
        y = scored.labels[known] if len(known) else np.zeros(0, int)
        counts = np.bincount(y, minlength=scored.probs.shape[1]) if len(y) else np.zeros(1, int)
        if len(known) < self.min_labelled or (counts >= 3).sum() < 2:
            return {"chosen": fallback, "reason": f"{len(known)} labelled clips: too few to simulate "
                    f"(auto_min_labelled={self.min_labelled}, two classes with 3 clips)", "simulated_ua": {},
                    "verdict": None}
        x = np.ascontiguousarray(scored.embeddings[known])
        key = hashlib.sha256(b"".join([np.int64([n, seed, scored.probs.shape[1]]).tobytes(),
                                       np.ascontiguousarray(y, np.int64).tobytes(), x.tobytes()])).digest()
        if self._memo is None or self._memo[0] != key:
            self._memo = (key, self._decide(x, y, n, seed, scored.probs.shape[1], fallback))
        return dict(self._memo[1])

    def _decide(self, x: np.ndarray, y: np.ndarray, n: int, seed: int, num_classes: int, fallback: str) -> dict:
        """:meth:`choose`'s decision from the labelled clips' embeddings ``x`` [L, E] and classes ``y`` [L]."""
        sims = simulate_strategies(x, y, self.candidates, n / len(y), self.repeats, seed, num_classes)
        means = {name: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for name, v in sims.items()}
        verdict = selection_verdict(sims, len(y))
        ranked = sorted((m, name) for name, m in means.items() if np.isfinite(m))
        if not ranked:
            return {"chosen": fallback, "reason": "no simulation could run", "simulated_ua": means, "verdict": verdict}
        best = ranked[-1][1]
        if "random" in means and best != "random" and not means[best] - means["random"] > self.margin:
            return {"chosen": "random", "reason": f"{best} gains {means[best] - means['random']:+.3f} over random "
                    f"in simulation, not above auto_margin={self.margin}", "simulated_ua": means, "verdict": verdict}
        return {"chosen": best, "reason": f"highest simulated UA over {self.repeats} splits", "simulated_ua": means,
                "verdict": verdict}

    def shard_plan(self, n):
        # The replay reads labelled clips only (the centres); whichever candidate wins then needs its own rows,
        # so the union of every candidate's rows is enough. None when a candidate goes two rounds (its offers
        # are not the others' rankings): the sharded query then chooses first (``sharded``).
        plans = [c.shard_plan(n) for c in self.candidates.values()]
        if any(p is None or p.local for p in plans):
            return None
        return sum(plans[1:], plans[0]) + ShardPlan((), centres=True)

    def sharded(self, n):
        return all(c.shard_plan(n) is not None for c in self.candidates.values())

    def rest_of_batch(self):
        # chosen once per batch: a later call for fewer clips would replay for another size and may choose again
        return self.candidates[self.last_choice["chosen"]] if self.last_choice else self

    def _select(self, scored: ScoredPool, candidates: np.ndarray, labelled: np.ndarray, n: int,
                seed: int) -> np.ndarray:
        self.last_choice = self.choose(scored, labelled, n, seed)
        return self.candidates[self.last_choice["chosen"]]._select(scored, candidates, labelled, n, seed)
