"""Config of the active-learning loop (``active.*`` in a jobs.after config)."""

from __future__ import annotations

from dataclasses import dataclass

from ser_models.active.config import SelectionConfig, StrategyConfig
from ser_models.active.pseudo_labels import SemiSupervisedConfig
from ser_models.active.stopping import StoppingConfig
from ser_models.analysis.anchoring import AnchoringConfig
from ser_models.config import LOCATION, PATH, RESULT, SPEED, field
from ser_models.exceptions import ConfigError
from ser_models.labelling.config import LabelStudioConfig
from ser_models.ownership.overlap import check_apart
from ser_models.planning.evaluation_sets import EvaluationConfig
from ser_models.planning.forecast import ForecastConfig
from ser_models.scoring.scorer import ScorerConfig

_INITIAL = ("random", "cluster_cold_start")
_ORACLES = ("simulated", "file", "label_studio")
_CACHE = ("auto", "on", "off")


@dataclass
class ActiveConfig:
    """Budget, rounds, initial set, strategy, scorer and oracle of the AFTER loop."""

    strategy: StrategyConfig = field(default_factory=StrategyConfig, help="how each round's batch is chosen")
    scorer: ScorerConfig = field(default_factory=ScorerConfig, help="Ray Data actors scoring the pool")
    selection: SelectionConfig = field(default_factory=SelectionConfig,
                                       help="whether a round's scores stay sharded and selection runs shard by shard")
    initial: str = field("cluster_cold_start", effect=RESULT, help=f"initial labelled set, one of {list(_INITIAL)} (AFTER: clusters)")
    budget_fractions: list[float] = field(
        effect=RESULT, default_factory=lambda: [0.05, 0.10, 0.15, 0.20],
        help="labelled fraction of the training pool (without drawn evaluation sets) at each round (AFTER: "
             "5 % steps up to 20 %); empty = use initial_size / query_size / rounds")
    budget_labels: list[int] = field(
        effect=RESULT, default_factory=list,
        help="labelled clips at each round (e.g. [50, 100, 200, 400], what a team buys); when set it replaces "
             "budget_fractions")
    budget_hours: list[float] = field(
        effect=RESULT, default_factory=list,
        help="hours of labelled audio at each round (e.g. [0.5, 1, 2]); when set it replaces budget_fractions "
             "and each round labels clips until its hours are used (the ledger records seconds per clip); "
             "it cannot be combined with budget_labels")
    initial_size: int = field(0, effect=RESULT, help="clips in the initial set (when budget_fractions is empty)")
    query_size: int = field(0, effect=RESULT, help="clips labelled per round (when budget_fractions is empty)")
    rounds: int = field(0, effect=RESULT, help="training rounds (when budget_fractions is empty)")
    query_batch: int = field(0, effect=RESULT, help="clips per query batch inside a budget step: the loop labels a batch, retrains "
                             "on the labels so far and rescores the pool before the next one (0 = the whole step is "
                             "one batch). Simulated oracle and clip budgets only; fast with the feature cache")
    max_per_recording: int = field(0, effect=RESULT, help="most segments of one recording in one query (0 = no cap): a batch is "
                                                          "not one uncertain episode; clips without a recording have no cap")
    clip_context: float = field(0.0, effect=RESULT, help="active.oracle=file|label_studio: seconds of the source recording "
                                                         "added on each side of a segment's clip for annotators (0 = exactly "
                                                         "the segment, from the pool's audio)")
    warm_start: bool = field(False, effect=RESULT, help="start each round from the previous round's weights (AFTER retrains "
                                                         "from the TAPT checkpoint: false)")
    oracle: str = field("simulated", effect=RESULT, help=f"who labels, one of {list(_ORACLES)}: 'file' writes to_label.csv for humans, "
                                                         "'label_studio' makes a Label Studio project of each round's clips")
    label_studio: LabelStudioConfig = field(default_factory=LabelStudioConfig,
                                            help="active.oracle=label_studio: server, project, annotators per clip, "
                                                 "aggregation and disagreement policy")
    feature_cache: str = field("auto", effect=SPEED,
                               help=f"{list(_CACHE)}: train/score from cached frozen-encoder features "
                                    "('auto' = when model.adapter.kind=frozen and pooling=mean)")
    feature_cache_layers: str = field("auto", effect=SPEED,
                                      help="'auto': when the model reads one fixed layer (model.featurizer_layer) "
                                           "and the encoder can stop there (Whisper), encode and cache only the "
                                           "hidden states up to it (Whisper-tiny layer 1: 3x faster); 'all': every "
                                           "state (switching layers later reuses the cache)")
    feature_cache_dir: str | None = field(None, effect=LOCATION, path=PATH, help="where cached features live; null = <output_dir>/"
                                          "feature_cache. Runs over the same pool and encoder (e.g. AL vs random) "
                                          "can share one folder: entries are keyed by pool and encoder")
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig,
                                         help="dev and test sets: the pool's splits, or drawn from the training "
                                              "split and labelled through the oracle before round 0 (a pool "
                                              "with no labels). Drawn evaluation labels are not part of the "
                                              "budget_* steps, which count training labels only")
    stopping: StoppingConfig = field(default_factory=StoppingConfig,
                                     help="stopping criteria: kappa on a stop set, uncertainty, max rounds")
    forecast: ForecastConfig = field(default_factory=ForecastConfig,
                                     help="the learning-curve forecast of the labels still needed (from the third "
                                          "round with a dev UA; reporting only)")
    semi_supervised: SemiSupervisedConfig = field(default_factory=SemiSupervisedConfig,
                                                  help="pseudo-labels of unlabelled clips in training (never "
                                                       "in the ledger)")
    seed: int = field(0, effect=RESULT, help="seed of the initial set and of every selection")

    def __post_init__(self):
        if self.initial not in _INITIAL:
            raise ConfigError(f"active.initial must be one of {list(_INITIAL)}, got {self.initial!r}")
        if self.oracle not in _ORACLES:
            raise ConfigError(f"active.oracle must be one of {list(_ORACLES)}, got {self.oracle!r}")
        # YAML 1.1 (and so a dotted override) reads a bare on/off as a boolean, which OmegaConf then stores
        # in this str field as "True"/"False": map it back instead of rejecting what the user typed.
        self.feature_cache = {"true": "on", "false": "off"}.get(str(self.feature_cache).lower(), self.feature_cache)
        if self.feature_cache_layers not in ("auto", "all"):
            raise ConfigError(f"active.feature_cache_layers must be 'auto' or 'all', got {self.feature_cache_layers!r}")
        if self.feature_cache not in _CACHE:
            raise ConfigError(f"active.feature_cache must be one of {list(_CACHE)}, got {self.feature_cache!r}")
        # Checked here, before any training: BALD with no MC-dropout samples would fail after round 0's fit.
        uses_bald = self.strategy.name == "bald" or (
            self.strategy.name in ("kmeans", "informative_diverse") and self.strategy.uncertainty == "bald")
        if uses_bald and self.scorer.mc_samples < 2:
            raise ConfigError(f"active.strategy.name={self.strategy.name} scores with BALD, which needs MC-dropout "
                              f"samples: set active.scorer.mc_samples >= 2 (e.g. 8), got {self.scorer.mc_samples}")
        if self.budget_labels and self.budget_hours:
            raise ConfigError("set one of active.budget_labels and active.budget_hours, not both")
        if self.max_per_recording < 0:
            raise ConfigError(f"active.max_per_recording must be >= 0 (0 = no cap), got {self.max_per_recording}")
        if self.clip_context < 0:
            raise ConfigError(f"active.clip_context must be >= 0 seconds, got {self.clip_context}")
        if isinstance(self.query_batch, bool) or not isinstance(self.query_batch, int) or self.query_batch < 0:
            raise ConfigError(f"active.query_batch must be a whole number of clips >= 0, got {self.query_batch!r}")
        if self.query_batch and self.budget_hours:
            raise ConfigError("active.query_batch counts clips: use it with budget_labels or budget_fractions, "
                              "not budget_hours")
        if self.query_batch and self.oracle != "simulated":
            raise ConfigError(f"active.query_batch retrains on each batch's labels at once, which only the simulated "
                              f"oracle gives: set active.query_batch=0 with active.oracle={self.oracle}")
        if self.budget_labels:
            n = list(self.budget_labels)
            if any(not isinstance(x, int) or isinstance(x, bool) or x < 1 for x in n) \
                    or any(b <= a for a, b in zip(n, n[1:])):
                raise ConfigError(f"active.budget_labels must be increasing whole numbers >= 1, got {n}")
        elif self.budget_hours:
            h = list(self.budget_hours)
            if any(not x > 0 for x in h) or any(b <= a for a, b in zip(h, h[1:])):
                raise ConfigError(f"active.budget_hours must increase and be > 0, got {h}")
        elif self.budget_fractions:
            f = list(self.budget_fractions)
            if any(not 0 < x <= 1 for x in f) or any(b <= a for a, b in zip(f, f[1:])):
                raise ConfigError(f"active.budget_fractions must increase within (0, 1], got {f}")
        elif self.initial_size < 1 or self.rounds < 1 or (self.rounds > 1 and self.query_size < 1):
            raise ConfigError("with empty active.budget_fractions set active.initial_size >= 1, "
                              "active.rounds >= 1 and active.query_size >= 1")

    def seconds_targets(self, pool_seconds: float, evaluation: str = "", fix: str = "") -> list[float]:
        """Labelled seconds of audio wanted at each training round (``budget_hours``), for a training pool of
        ``pool_seconds`` seconds of audio (``evaluation`` / ``fix``: see :meth:`targets`)."""
        targets = [3600.0 * h for h in self.budget_hours]
        if targets[-1] > pool_seconds + 1e-6:
            raise ConfigError(f"active.budget_hours asks for {self.budget_hours[-1]:g} h of labelled training audio "
                              f"but the training pool holds {pool_seconds / 3600:.3f} h"
                              + _too_big("active.budget_hours", evaluation, fix))
        return targets

    def check_cache_apart(self, inputs: dict) -> None:
        """Refuse a ``feature_cache_dir`` that is one of the job's ``inputs``, lies inside one or contains one:
        the cache is a second output (its default, inside the run folder, needs no check).

        Raises:
            OutputOverlapError: naming both keys; nothing is written.
        """
        if self.feature_cache_dir:
            check_apart(self.feature_cache_dir, inputs, key="active.feature_cache_dir")

    @property
    def num_rounds(self) -> int:
        """Training rounds the budget describes."""
        for steps in (self.budget_labels, self.budget_hours, self.budget_fractions):
            if steps:
                return len(steps)
        return int(self.rounds)

    def targets(self, pool_size: int, evaluation: str = "", fix: str = "") -> list[int]:
        """Labelled clips wanted at each training round, for a training pool of ``pool_size`` clips.

        Args:
            pool_size: training clips (the training split without drawn evaluation sets).
            evaluation: what the drawn evaluation sets took, for the error (numbers and keys).
            fix: the evaluation keys to change instead of the budget, for the error.

        Raises:
            ConfigError: the budget does not fit in the training pool, naming the budget keys, and the
                evaluation keys and numbers when ``evaluation`` says what the sets took.
        """
        if self.budget_labels:
            if self.budget_labels[-1] > pool_size:
                raise ConfigError(f"active.budget_labels asks for {self.budget_labels[-1]} labelled training clips "
                                  f"but the training pool has {pool_size}"
                                  + _too_big("active.budget_labels", evaluation, fix))
            return [int(x) for x in self.budget_labels]
        if self.budget_fractions:
            counts = [max(1, int(round(f * pool_size))) for f in self.budget_fractions]
        else:
            counts = [self.initial_size + r * self.query_size for r in range(self.rounds)]
        if counts[-1] > pool_size:
            raise ConfigError(f"the budget asks for {counts[-1]} labelled clips but the training pool has {pool_size}"
                              + _too_big("active.budget_fractions / active.query_size", evaluation, fix))
        if any(b <= a for a, b in zip(counts, counts[1:])):
            raise ConfigError(f"rounds would label nothing new ({counts}): the pool is too small for "
                              "active.budget_fractions")
        return counts


def _too_big(budget_keys: str, evaluation: str, fix: str) -> str:
    """The end of a budget-too-big error: what the evaluation sets took, and every key that can make room."""
    if not evaluation:
        return (f": lower {budget_keys} (the training pool is the training split without the evaluation sets; "
                "drawn ones are sized by active.evaluation.test_size / dev_size / max_share)")
    return f" ({evaluation}): lower {budget_keys}, or make room: {fix or 'lower active.evaluation.test_size / dev_size'}"


@dataclass
class CrossLingualConfig:
    """Cross-lingual active learning (``cross_lingual`` in ``jobs.after``; off while ``group_column`` is '').

    The loop's pool becomes the target group's training clips (only they are scored, selected and labelled, and
    dev/test are the target's); the source group's labelled training clips join every round's training set;
    with ``anchoring.weight > 0`` every step also aligns the unlabelled target clips with the training batch
    at the anchor layers (CORAL, as ``jobs.anchor``; it needs trainable encoder weights and audio, so the
    feature cache is off).
    """

    group_column: str = field("", effect=RESULT, help="pool column that tells source from target (language | corpus); '' = off")
    source: str = field("", effect=RESULT, help="value of group_column whose labelled clips are extra training data")
    target: str = field("", effect=RESULT, help="value of group_column of the pool the loop labels and is evaluated on")
    anchoring: AnchoringConfig = field(effect=RESULT, default_factory=lambda: AnchoringConfig(weight=0.0),
                                       help="layer anchoring of the target clips (weight 0 = none)")

    def __post_init__(self):
        if self.group_column and (not self.source or not self.target or self.source == self.target):
            raise ConfigError("cross_lingual needs distinct source and target values of cross_lingual.group_column")

    @property
    def enabled(self) -> bool:
        return bool(self.group_column)
