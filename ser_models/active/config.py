"""Config of the query strategy (``active.strategy.*`` in a job config)."""

from __future__ import annotations

from dataclasses import dataclass

from ser_models.config import RESULT, SPEED, field
from ser_models.exceptions import ConfigError
from ser_models.planning.planner import AUTO_MIN_LABELLED

__all__ = ["AUTO_CANDIDATES", "SHARD_ABOVE_CLIPS", "SelectionConfig", "StrategyConfig"]

_KEY = "active.strategy"
_NAMES = ("random", "entropy", "least_confidence", "margin", "bald", "mc_variance", "badge", "kcenter", "kmeans",
          "cluster_cold_start", "informative_diverse", "gsx", "gsy", "igs", "auto")
#: What ``auto`` may choose among: strategies that need only class probabilities and embeddings.
AUTO_CANDIDATES = ("random", "entropy", "least_confidence", "margin", "badge", "kcenter", "kmeans",
                   "informative_diverse")
#: Class-probability scores, then the dimensional one (MC-dropout variance of the A/V/D outputs).
_UNCERTAINTIES = ("entropy", "least_confidence", "margin", "bald", "mc_variance")
_PICKS = ("uncertain", "central")


@dataclass
class StrategyConfig:
    """Which clips to label next, and how."""

    # auto is the default, chosen on dev AUBC over 20 paired seeds of every in-repo pool: its interval never
    # fell below random's, margin's did (bench/results/default_strategy.md).
    name: str = field("auto", effect=RESULT, help=f"query strategy, one of {list(_NAMES)} (gsx / gsy / igs: "
                      "greedy sampling for dimensional targets in input / output / both spaces; auto: chosen per "
                      "round among auto_candidates by simulating AL on the labelled clips)")
    auto_candidates: list[str] = field(effect=RESULT, default_factory=lambda: ["random", "margin", "informative_diverse"],
                                       help=f"auto: the strategies it chooses among, from {list(AUTO_CANDIDATES)}")
    auto_repeats: int = field(8, effect=RESULT, help="auto: random splits of the labelled clips each round's simulation averages")
    auto_margin: float = field(0.01, effect=RESULT, help="auto: simulated UA gain over random a candidate needs to replace random")
    auto_min_labelled: int = field(AUTO_MIN_LABELLED, effect=RESULT, help="auto: below this many labelled clips the round queries at random")
    uncertainty: str = field("entropy", effect=RESULT, help=f"uncertainty score used to rank clips, one of {list(_UNCERTAINTIES)}")
    prefilter_factor: int = field(
        4, effect=RESULT, help="informative_diverse keeps the prefilter_factor * n most uncertain clips, then picks n diverse ones")
    kmeans_iters: int = field(20, effect=RESULT, help="k-means iterations (kmeans, cluster_cold_start)")
    num_clusters: int | None = field(
        None, effect=RESULT, help="cluster_cold_start: number of k-means clusters (null = n, one per requested clip; capped at "
                                  "max_clusters)")
    max_clusters: int = field(1024, effect=RESULT, help="cluster_cold_start: cap on k (k = n would be 50k centres at 1M clips and "
                              "a 5% budget); the rest of the budget is filled round-robin, nearest-centre first")
    cold_start_dim: int | None = field(
        64, effect=RESULT, help="cluster_cold_start: PCA dimensions the k-means runs in on pools above 100k clips (null = full)")
    pick: str = field("uncertain", effect=RESULT, help="kmeans: per cluster take the most 'uncertain' or the most 'central' clip")
    kcenter_dim: int | None = field(
        None, effect=RESULT, help="k-center: project embeddings to this many PCA dimensions first (approximate, faster on "
                                  "very large pools); null = exact in the full dimension")
    class_balanced: bool = field(False, effect=RESULT, help="entropy / least_confidence / margin / bald: take each predicted "
                                 "class's most uncertain clips by quota, filling the classes with the fewest labels "
                                 "first (for imbalanced pools, e.g. mostly neutral speech)")
    cost_aware: bool = field(False, effect=RESULT, help="divide each clip's uncertainty by its duration in seconds (informativeness "
                             "per second of annotation); applies to strategies that rank by uncertainty")
    num_threads: int | None = field(None, effect=SPEED,
                                    help="threads for FAISS and BLAS during selection (null = all)")

    def __post_init__(self) -> None:
        if self.name not in _NAMES:
            raise ConfigError(f"{_KEY}.name must be one of {list(_NAMES)}, got {self.name!r}")
        if self.uncertainty not in _UNCERTAINTIES:
            raise ConfigError(f"{_KEY}.uncertainty must be one of {list(_UNCERTAINTIES)}, got {self.uncertainty!r}")
        if self.pick not in _PICKS:
            raise ConfigError(f"{_KEY}.pick must be one of {list(_PICKS)}, got {self.pick!r}")
        if self.prefilter_factor < 1:
            raise ConfigError(f"{_KEY}.prefilter_factor must be >= 1, got {self.prefilter_factor}")
        if self.kmeans_iters < 1:
            raise ConfigError(f"{_KEY}.kmeans_iters must be >= 1, got {self.kmeans_iters}")
        if self.num_clusters is not None and self.num_clusters < 1:
            raise ConfigError(f"{_KEY}.num_clusters must be >= 1 or null, got {self.num_clusters}")
        if self.max_clusters < 1:
            raise ConfigError(f"{_KEY}.max_clusters must be >= 1, got {self.max_clusters}")
        if self.cold_start_dim is not None and self.cold_start_dim < 1:
            raise ConfigError(f"{_KEY}.cold_start_dim must be >= 1 or null, got {self.cold_start_dim}")
        if self.kcenter_dim is not None and self.kcenter_dim < 1:
            raise ConfigError(f"{_KEY}.kcenter_dim must be >= 1 or null, got {self.kcenter_dim}")
        if self.class_balanced and self.name not in ("entropy", "least_confidence", "margin", "bald", "auto"):
            raise ConfigError(f"{_KEY}.class_balanced applies to entropy, least_confidence, margin, bald (and to "
                              f"those among auto's candidates), not to {self.name!r}")
        bad = [c for c in self.auto_candidates if c not in AUTO_CANDIDATES]
        if bad or not self.auto_candidates or len(set(self.auto_candidates)) != len(self.auto_candidates):
            raise ConfigError(f"{_KEY}.auto_candidates must be distinct names from {list(AUTO_CANDIDATES)}, got "
                              f"{list(self.auto_candidates)}")
        if self.auto_repeats < 1 or self.auto_min_labelled < 6 or self.auto_margin < 0:
            raise ConfigError(f"{_KEY}.auto_repeats must be >= 1, auto_min_labelled >= 6 and auto_margin >= 0")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"{_KEY}.num_threads must be >= 1 or null, got {self.num_threads}")


#: Pools above this many training clips are scored into shards and selected shard by shard
#: (``bench/round_scale.py`` measured the two paths side by side; docs/concepts.md, "The sharded round").
SHARD_ABOVE_CLIPS = 200_000


@dataclass
class SelectionConfig:
    """Where a round's decision runs: over scores gathered into this process, or over scores left in shards."""

    # Result-changing: the picks are the same either way for the exact forms, but k-center, k-means, BADGE and
    # greedy sampling go two rounds over the shards (approximate), so the threshold and the shards' size can
    # change what they pick.
    shard_above_clips: int = field(
        SHARD_ABOVE_CLIPS, effect=RESULT,
        help="pools with more training clips than this keep each round's scores as Parquet shards and select shard "
             "by shard (the driver holds the candidates, never the pool); the picks are the same either way for "
             "random, entropy, least_confidence, margin, bald, mc_variance, informative_diverse, auto over those "
             "and the cold start; kcenter, kmeans, badge, gsx, gsy and igs go two rounds (approximate). "
             "0 = always sharded")
    rows_per_shard: int = field(65536, effect=RESULT,
                                help="clips per score shard (a shard is one selection task; the two-round strategies "
                                     "pick per shard first)")

    def __post_init__(self) -> None:
        if self.shard_above_clips < 0 or self.rows_per_shard < 1:
            raise ConfigError(f"active.selection.shard_above_clips must be >= 0 and rows_per_shard >= 1, got "
                              f"{self.shard_above_clips} / {self.rows_per_shard}")
