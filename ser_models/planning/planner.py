"""Plan a label budget before any label is bought: how many labels go to the test set, the dev set and the
active-learning rounds, and how precise each test-set size makes the reported UA.

**UA precision** (:mod:`~ser_models.planning.ua_precision`): the half-width a test set of ``n`` clips gives
the reported UA, and the smallest ``n`` reaching a target half-width, with a design effect for clips that share a
recording or speaker.

**The rest of the budget.** The dev set (early stopping, model selection) defaults to half the test set; the
initial training set holds ``ceil(m / p_min)`` clips, so the rarest class is expected ``m`` times in it (a random
set of that size misses the class with probability ``(1 - p_min)^n``, about ``e^-m``: 0.7 % for ``m = 5``);
the rounds then grow the labelled set to the training budget, doubling (equal ratios) or in equal steps.

**The overrides it prints** are keys of ``jobs.after``: ``active.evaluation.test_size`` and
``active.evaluation.dev_size`` are the loop's evaluation keys (how many clips the loop draws from the pool and
labels as the test and dev sets before round 0), and ``active.budget_labels`` lists the labelled training clips
at each round (the first entry is the initial set; evaluation labels are not counted in it).

Pure numpy/scipy: no Ray. :func:`read_pool_stats` reads a prepared pool's metadata with pyarrow.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ser_models.config import LOCATION, PATH, RESULT, field
from ser_models.exceptions import ConfigError, PoolError
from ser_models.planning.ua_precision import (
    kish_design_effect,
    required_test_size,
    simulated_half_width,
    ua_half_width,
    z_value,
)

__all__ = ["AUTO_MIN_LABELLED", "MIN_UNITS", "RESOLVE_HALF_WIDTH", "VERDICT_REFERENCE", "BudgetPlan", "PlanConfig",
           "PoolStats", "plan_budget", "read_pool_stats", "round_targets", "verdict_half_width", "verdict_labels"]

_SCHEDULES = ("doubling", "equal")
#: Fewest recordings (else speakers) an evaluation set should span: below it the set's UA tells more about a
#: few calls or voices than about the model, and a bootstrap over so few units is itself unreliable.
MIN_UNITS = 10
#: The half-width (UA, 0-1) the interval of "does selection pay" must reach to resolve a gain of 2 UA points.
RESOLVE_HALF_WIDTH = 0.02
#: ``(labels, half-width)``: the mean 95 % half-width (UA, 0-1) of ``auto``'s verdict at that many training
#: labels, measured on demo-2880 (generated speech, Whisper-tiny features, 10 seeds;
#: ``bench/results/verdict_width.md``). The planner's figure before any label scales it as ``1 / sqrt(labels)``.
VERDICT_REFERENCE = (200, 0.0495)
#: ``active.strategy.auto_min_labelled``'s default: below it a round's ``auto`` queries at random, with no verdict.
AUTO_MIN_LABELLED = 40


def verdict_half_width(labels: int, reference: tuple[int, float] = VERDICT_REFERENCE) -> float:
    """The expected half-width (UA, 0-1) of ``auto``'s verdict after ``labels`` training labels: the reference
    half-width scaled as ``1 / sqrt(labels)`` (an extrapolation from one generated pool, not a measurement of
    yours)."""
    at, half = reference
    return half * math.sqrt(at / max(labels, 1))


def verdict_labels(half_width: float = RESOLVE_HALF_WIDTH, reference: tuple[int, float] = VERDICT_REFERENCE) -> int:
    """Training labels after which ``auto``'s verdict is expected to reach ``half_width`` (UA, 0-1)."""
    at, half = reference
    return math.ceil(at * (half / half_width) ** 2)


@dataclass
class PlanConfig:
    """Inputs of ``python -m jobs.plan``: the budget, the classes and how precise the test set must be."""

    #: keys named as the loop's evaluation sets name them (``active.evaluation.half_width``, ``max_share``)
    RENAMED: ClassVar[dict[str, str]] = {"target_half_width": "half_width", "max_pool_share": "max_share"}

    budget: int = field(0, effect=RESULT, help="total labels the team can buy (test + dev + training), in clips")
    labels: list[str] = field(effect=RESULT, default_factory=list, help="class names, e.g. [angry,happy,neutral,sad]; empty = "
                              "the labels found in pool_dir")
    shares: list[float] = field(effect=RESULT, default_factory=list, help="expected share of each class in the pool (the class "
                                "prior), in labels' order, normalised to sum 1; empty = the label shares of "
                                "pool_dir when it has labels, else uniform")
    expected_ua: float = field(0.6, effect=RESULT, help="expected UA (mean per-class recall) of the final model")
    recalls: list[float] = field(effect=RESULT, default_factory=list, help="expected recall of each class, in labels' order "
                                 "(empty = expected_ua for every class)")
    half_width: float = field(0.05, effect=RESULT, help="wanted half-width of the test set's UA interval (+/- UA)")
    confidence: float = field(0.95, effect=RESULT, help="confidence of the interval (0.95 = 95 %)")
    max_test_share: float = field(0.3, effect=RESULT, help="most of the budget the test set may take; a warning says when "
                                  "this cap leaves the interval wider than half_width")
    max_share: float = field(0.3, effect=RESULT, help="with pool_dir: most of the pool the test and dev sets together "
                                  "may take (the loop's active.evaluation.max_share)")
    max_per_unit: int = field(0, effect=RESULT, help="most clips of one recording (else speaker) in an evaluation set (0 = "
                              "whole units; active.evaluation.max_per_unit): smaller clusters, a smaller design effect")
    dev_ratio: float = field(0.5, effect=RESULT, help="dev set size as a fraction of the test set size")
    min_per_class: int = field(5, effect=RESULT, help="clips of the rarest class expected in the initial set (and at least "
                                                      "in the dev and test sets): sizes >= min_per_class / rarest share")
    schedule: str = field("doubling", effect=RESULT, help=f"how rounds grow the labelled set, one of {list(_SCHEDULES)}: "
                                                          "'doubling' = the same ratio each round, 'equal' = equal steps")
    rounds: int = field(0, effect=RESULT, help="training rounds, round 0 (the initial set) included; 0 = as many as make "
                                               "each round about double the labelled set")
    design_effect: float | None = field(None, effect=RESULT, help="variance inflation of clustered test clips; null = "
                                        "1 + (cluster_size - 1) * icc")
    icc: float = field(0.1, effect=RESULT, help="intra-recording correlation of being right (used when cluster_size > 1)")
    cluster_size: float | None = field(None, effect=RESULT, help="test clips per recording (or speaker), clips' mean (sum m^2 "
                                       "/ sum m); null = from pool_dir's recordings, else its speakers (the loop "
                                       "draws whole ones: active.evaluation.disjoint_by), else 1 (independent)")
    table_sizes: list[int] = field(effect=RESULT, default_factory=lambda: [100, 200, 400, 800, 1600],
                                   help="test sizes shown in the precision table")
    simulate_draws: int = field(10000, effect=RESULT, help="random test sets simulated per size to check the formula "
                                "(0 = no check)")
    seed: int = field(0, effect=RESULT, help="seed of the simulation")
    pool_dir: str | None = field(None, effect=LOCATION, path=PATH, help="prepared pool (jobs.prepare_pool): class shares from "
                                 "its labels, cluster size from its recordings (else speakers)")
    output_dir: str | None = field(None, effect=LOCATION, path=PATH, help="folder to write plan.json to (null = print only)")
    run_dir: str | None = field(None, effect=LOCATION, path=PATH, help="a jobs.after run (its output_dir): also print the "
                                "labels forecast from its rounds' dev UA (docs/planning.md); with budget=0, only that")
    target_ua: float | None = field(None, effect=RESULT, help="with run_dir: the dev UA to forecast the labels for; null = "
                                    "where the learning curve flattens")

    def __post_init__(self):
        checks = [
            (isinstance(self.budget, int) and (self.budget >= 1 or (self.run_dir and self.budget == 0)),
             f"budget must be a number of labels >= 1 (e.g. budget=3000; 0 only with run_dir), got {self.budget!r}"),
            (self.target_ua is None or 0 < self.target_ua <= 1, f"target_ua must be in (0, 1], got {self.target_ua}"),
            (0 < self.expected_ua < 1, f"expected_ua must be in (0, 1), got {self.expected_ua}"),
            (all(0 <= r <= 1 for r in self.recalls), f"recalls must be in [0, 1], got {list(self.recalls)}"),
            (all(s > 0 for s in self.shares), f"shares must be > 0, got {list(self.shares)}"),
            (0 < self.half_width < 1, f"half_width must be in (0, 1), got {self.half_width}"),
            (0 < self.confidence < 1, f"confidence must be in (0, 1), got {self.confidence}"),
            (0 < self.max_test_share < 1, f"max_test_share must be in (0, 1), got {self.max_test_share}"),
            (0 < self.max_share < 1, f"max_share must be in (0, 1), got {self.max_share}"),
            (self.max_per_unit >= 0, f"max_per_unit must be >= 0 (0 = whole units), got {self.max_per_unit}"),
            (self.dev_ratio >= 0, f"dev_ratio must be >= 0, got {self.dev_ratio}"),
            (self.min_per_class >= 1, f"min_per_class must be >= 1, got {self.min_per_class}"),
            (self.schedule in _SCHEDULES, f"schedule must be one of {list(_SCHEDULES)}, got {self.schedule!r}"),
            (self.rounds >= 0, f"rounds must be >= 0 (0 = doubling), got {self.rounds}"),
            (self.design_effect is None or self.design_effect >= 1,
             f"design_effect must be >= 1 (1 = independent clips), got {self.design_effect}"),
            (0 <= self.icc <= 1, f"icc must be in [0, 1], got {self.icc}"),
            (self.cluster_size is None or self.cluster_size >= 1, f"cluster_size must be >= 1, got "
                                                                  f"{self.cluster_size}"),
            (all(n >= 1 for n in self.table_sizes), f"table_sizes must be >= 1, got {list(self.table_sizes)}"),
            (self.simulate_draws >= 0, f"simulate_draws must be >= 0, got {self.simulate_draws}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        for key in ("shares", "recalls"):
            values = getattr(self, key)
            if values and self.labels and len(values) != len(self.labels):
                raise ConfigError(f"{key} has {len(values)} values for {len(self.labels)} labels "
                                  f"{list(self.labels)}: give one per label, in the same order")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"labels has duplicates: {list(self.labels)}")


def round_targets(initial: int, total: int, rounds: int = 0, schedule: str = "doubling") -> list[int]:
    """Labelled training clips at each round, from ``initial`` (round 0) to ``total`` (the last round).

    Args:
        initial: the initial set.
        total: the training budget (the last round's labelled clips).
        rounds: rounds, round 0 included; 0 = ``1 + round(log2(total / initial))`` (about doubling).
        schedule: ``doubling`` (the same ratio each round) or ``equal`` (the same number of clips each round).

    Returns:
        Strictly increasing targets, ``[initial, ..., total]`` (``[total]`` for one round).
    """
    if total < initial:
        raise ConfigError(f"the training budget ({total}) is smaller than the initial set ({initial})")
    if rounds == 0:
        rounds = 1 + max(0, round(math.log2(total / initial)))
    if rounds == 1:
        return [int(total)]
    if rounds > total - initial + 1:
        raise ConfigError(f"rounds={rounds} cannot each add a label between {initial} and {total}: lower rounds")
    steps = np.arange(rounds) / (rounds - 1)
    raw = initial * (total / initial) ** steps if schedule == "doubling" else initial + (total - initial) * steps
    targets = [int(initial)]
    for i, x in enumerate(raw[1:], start=1):
        # at least one new clip each round, and room left for the rounds still to come
        targets.append(int(min(max(round(x), targets[-1] + 1), total - (rounds - 1 - i))))
    return targets


# ---------------------------------------------------------------------------------------------- the pool


@dataclass
class PoolStats:
    """What a prepared pool tells the planner.

    Attributes:
        clips: kept clips in the pool (every split).
        label_counts: labelled clips per label found in the pool.
        unit: what clusters the clips: ``recording`` when the pool has recordings, else ``speaker``, else
            ``clip`` (the units the loop's evaluation draw keeps whole, group aside).
        units: distinct units (a clip without one is a unit of its own).
        mean_size: plain mean of clips per unit.
        cluster_size: clips' mean unit size, ``sum m_u^2 / sum m_u`` (what the design effect uses).
        splits: clips per split.
    """

    clips: int
    label_counts: dict[str, int]
    unit: str
    units: int
    mean_size: float
    cluster_size: float
    #: clips per split (``train``, and ``dev`` / ``test`` when the pool has them)
    splits: dict[str, int] = dataclasses.field(default_factory=dict)


def read_pool_stats(pool_dir: str, max_per_unit: int = 0) -> PoolStats:
    """Class counts and recording (else speaker) sizes of a prepared pool (metadata only, read with pyarrow).

    ``max_per_unit`` > 0 caps each unit at that many clips in ``cluster_size`` (an evaluation set that takes at
    most that many clips of each recording).

    Raises:
        PoolError: no complete pool at ``pool_dir``.
    """
    from ser_models.data.pool import Pool

    md = Pool.open(pool_dir).metadata(columns=["utt_id", "label", "recording", "speaker", "split"])
    if md.empty:
        raise PoolError(f"pool {pool_dir} holds no clips")
    unit = next((c for c in ("recording", "speaker") if md[c].notna().any()), "clip")
    # A clip without a unit is a cluster of its own.
    ids = "clip:" + md["utt_id"].astype(str)
    cluster = ids if unit == "clip" else md[unit].where(md[unit].notna(), ids)
    sizes = cluster.value_counts().to_numpy(dtype=float)
    counts = md["label"].dropna().astype(str).value_counts()
    taken = np.minimum(sizes, max_per_unit) if max_per_unit > 0 else sizes
    return PoolStats(clips=len(md), label_counts={str(k): int(v) for k, v in counts.items()}, unit=unit,
                     units=len(sizes), mean_size=float(sizes.mean()),
                     cluster_size=float((taken**2).sum() / taken.sum()),
                     splits={str(k): int(v) for k, v in md["split"].astype(str).value_counts().items()})


# ---------------------------------------------------------------------------------------------- the plan


@dataclass
class BudgetPlan:
    """A proposed split of a label budget (:func:`plan_budget`); every size is in clips.

    Attributes:
        table: rows ``{"test_size", "rarest_clips", "half_width", "simulated_half_width", "over_cap"}`` (the
            simulated half-width is None without a simulation).
        budget_labels: labelled training clips at each round (``active.budget_labels``).
        warnings: what the user should know before pasting the overrides.
    """

    budget: int
    labels: list[str]
    shares: list[float]
    shares_source: str
    recalls: list[float]
    confidence: float
    z: float
    target_half_width: float
    design_effect: float
    cluster_size: float
    icc: float
    test_needed: int
    test_cap: int
    test_size: int
    test_half_width: float
    dev_size: int
    dev_half_width: float
    initial_size: int
    initial_miss_probability: float
    budget_labels: list[int]
    schedule: str
    table: list[dict]
    warnings: list[str]
    pool: dict | None = None
    max_per_unit: int = 0
    #: Training labels after which ``auto``'s verdict is expected to resolve +-2 UA points (:func:`verdict_labels`).
    verdict_labels: int = 0
    #: What the loop's draw with these sizes holds, per set (``jobs.plan`` with ``pool_dir``): lines to print.
    composition: list[str] = dataclasses.field(default_factory=list)
    #: Where the sets come from (``ser_models.planning.evaluation_sets.pool_source``): ``loop`` (both drawn and
    #: paid from the budget), ``test`` (the pool's labelled test split, a drawn dev set) or ``pool`` (both splits).
    evaluation_source: str = "loop"
    #: Clips the loop's draw takes for these sizes (whole units: within half a unit of them); None = not drawn.
    drawn_clips: int | None = None

    @property
    def evaluation_labels(self) -> int:
        """Labels the evaluation sets cost from the budget (the pool's labelled splits cost none)."""
        if self.drawn_clips is not None:
            return self.drawn_clips
        return {"loop": self.test_size + self.dev_size, "test": self.dev_size}.get(self.evaluation_source, 0)

    @property
    def expected_ua(self) -> float:
        return float(np.mean(self.recalls))

    @property
    def training_size(self) -> int:
        return self.budget_labels[-1]

    def overrides(self) -> list[str]:
        """The ``jobs.after`` overrides that carry out this plan."""
        cap = [f"active.evaluation.max_per_unit={self.max_per_unit}"] if self.max_per_unit else []
        budget = f"active.budget_labels=[{','.join(str(x) for x in self.budget_labels)}]"
        if self.evaluation_source == "pool":  # the pool's labelled splits: no set is drawn, nothing to size
            return [budget]
        test = [f"active.evaluation.test_size={self.test_size}"] if self.evaluation_source == "loop" else []
        return [*test, f"active.evaluation.dev_size={self.dev_size}", *cap, budget]

    def to_dict(self) -> dict:
        """The plan as plain JSON-ready values, the overrides and the expected UA included."""
        return {**dataclasses.asdict(self), "expected_ua": self.expected_ua, "training_size": self.training_size,
                "evaluation_labels": self.evaluation_labels, "overrides": self.overrides()}

    def format(self) -> str:
        """The plan as text for a terminal: the inputs, the precision table, the sizes and the overrides."""
        pct = f"{self.confidence * 100:g} %"
        lines = [f"Label budget plan: {self.budget} labels, {len(self.labels)} classes, expected UA "
                 f"{self.expected_ua:.2f}",
                 f"  class shares ({self.shares_source}): "
                 + ", ".join(f"{c} {s:.3f}" for c, s in zip(self.labels, self.shares))]
        if len(set(self.recalls)) > 1:
            lines.append("  expected recalls: " + ", ".join(f"{c} {r:.2f}" for c, r in zip(self.labels, self.recalls)))
        if self.pool:
            u = self.pool["unit"]
            lines.append(f"  pool: {self.pool['clips']} clips, {self.pool['units']} {u}s, "
                         f"{self.pool['mean_size']:.1f} clips per {u} (clips' mean {self.pool['cluster_size']:.1f})")
        unit = self.pool["unit"] if self.pool and self.pool["unit"] != "clip" else "recording"
        clustering = ("independent clips" if self.design_effect == 1 else
                      f"{self.cluster_size:.3g} clips per {unit}, "
                      f"ICC {self.icc:g}" if self.cluster_size > 1 else
                      "design effect given")
        lines.append(f"  test clips: {clustering} -> design effect {self.design_effect:.2f}")
        if self.design_effect == 1:
            lines.append("  (several test clips per recording or speaker? set cluster_size or pool_dir: they widen "
                         "the interval)")
        lines += ["",
                  f"Test-set size vs the {pct} interval of UA (+/- half-width):",
                  "    test clips  rarest class  formula  simulated"]
        for row in self.table:
            sim = "-" if row["simulated_half_width"] is None else f"{row['simulated_half_width']:.3f}"
            mark = ">" if row["test_size"] == self.test_size else " "
            note = "  chosen" if mark == ">" else "  over the cap" if row["over_cap"] else ""
            lines.append(f"  {mark} {row['test_size']:>10}  {row['rarest_clips']:>12.1f}  {row['half_width']:>7.3f}"
                         f"  {sim:>9}{note}")
        cap = (f"the cap is {self.test_cap} ({self.test_cap / self.budget:.0%} of the budget)" if not self.pool else
               f"the cap is {self.test_cap} (max_test_share of the budget, and test + dev within max_share "
               f"of the pool's {self.pool['clips']} clips)")
        need = (f"the smallest reaching +/-{self.target_half_width:.3f}" if self.test_size == self.test_needed
                else f"{self.test_needed} would reach +/-{self.target_half_width:.3f}")
        rounds = len(self.budget_labels)
        lines += ["",
                  *self._evaluation_lines(pct, need, cap),
                  f"Training: {self.training_size} clips in {rounds} round{'s' if rounds > 1 else ''}"
                  + (f" ({self.schedule}), labelled clips per round: {self.budget_labels}" if rounds > 1 else ""),
                  f"          initial set {self.initial_size}: the rarest class (share {min(self.shares):.3f}) is "
                  f"expected {self.initial_size * min(self.shares):.1f} times; a random set misses it with "
                  f"probability {self.initial_miss_probability:.1%}",
                  *self.verdict_lines(),
                  *(["", "What the loop's draw with these sizes holds (active.seed=0):", *self.composition]
                    if self.composition else []),
                  "",
                  "Overrides for jobs.after (paste after its config; quoted for bash and zsh):",
                  "  " + " ".join(shlex.quote(o) for o in self.overrides())]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


    def _evaluation_lines(self, pct: str, need: str, cap: str) -> list[str]:
        """The Test: and Dev: lines: drawn and paid from the budget, or the pool's labelled splits as they are."""
        test = (f"Test:     {self.test_size} clips, UA +/-{self.test_half_width:.3f} ({pct}): {need}; {cap}"
                if self.evaluation_source == "loop" else
                f"Test:     the pool's labelled test split as it is, {self.test_size} clips, UA "
                f"+/-{self.test_half_width:.3f} ({pct}); no label spent")
        dev = (f"Dev:      the pool's labelled dev split as it is, {self.dev_size} clips, UA "
               f"+/-{self.dev_half_width:.3f}; no label spent" if self.evaluation_source == "pool" else
               f"Dev:      {self.dev_size} clips, UA +/-{self.dev_half_width:.3f}: early stopping and model selection"
               + (" (drawn: the pool has no labelled dev split)" if self.evaluation_source == "test" else ""))
        return [test, dev]

    def verdict_lines(self) -> list[str]:
        """What the plan's rounds tell about "does selection pay" (``auto``'s verdict): lines to print. The last
        verdict comes with the last round that queries, before the final budget (the final round only trains)."""
        at, half = VERDICT_REFERENCE
        head = (f"Does selection pay? auto's verdict (the best strategy's gain over random, 95 % interval) resolves "
                f"+/-{100 * RESOLVE_HALF_WIDTH:g} UA points")
        source = f"  (Measured on demo-2880, generated speech: +/-{100 * half:.1f} points at {at} labels, narrowing as " \
                 "1 / sqrt(labels).)"
        last = self.budget_labels[-2] if len(self.budget_labels) > 1 else 0
        if last < AUTO_MIN_LABELLED:
            mine = (f"  at about {self.verdict_labels} training labels; this plan's rounds give none (auto judges from "
                    f"{AUTO_MIN_LABELLED} labels in a round that queries).")
        else:
            width = verdict_half_width(last)
            mine = (f"  at about {self.verdict_labels} training labels; its last verdict here, at {last} labels, is "
                    f"about +/-{100 * width:.1f} points"
                    + (" (resolved)." if width <= RESOLVE_HALF_WIDTH else " (a gain inside that stays unresolved)."))
        return ["", head, mine, source]


def _classes(cfg: PlanConfig, pool: PoolStats | None) -> tuple[list[str], np.ndarray, str, list[str]]:
    """Class names, shares, where the shares came from, and warnings."""
    warnings: list[str] = []
    labels = list(cfg.labels)
    if not labels:
        if pool is None or not pool.label_counts:
            where = f"the pool at {cfg.pool_dir} has no labels" if pool is not None else "no pool_dir is given"
            raise ConfigError(f"labels is empty and {where}: pass labels=[angry,happy,...]")
        labels = sorted(pool.label_counts)
    if cfg.shares:
        if len(cfg.shares) != len(labels):
            raise ConfigError(f"shares has {len(cfg.shares)} values for the pool's {len(labels)} labels {labels}")
        shares, source = np.asarray(cfg.shares, float), "given"
    elif pool is not None and pool.label_counts:
        missing = [c for c in labels if not pool.label_counts.get(c)]
        if missing:
            raise ConfigError(f"labels {missing} have no labelled clip in the pool at {cfg.pool_dir}: pass "
                              f"shares=[...] (one per label: {labels})")
        other = sorted(set(pool.label_counts) - set(labels))
        if other:
            warnings.append(f"the pool's labels {other} are not in labels and are left out of the class shares")
        shares = np.array([pool.label_counts[c] for c in labels], float)
        source = f"from the pool's {int(shares.sum())} labelled clips"
    else:
        shares, source = np.ones(len(labels)), "uniform"
    if len(labels) < 2:
        raise ConfigError(f"labels must name at least 2 classes, got {labels}")
    return labels, shares / shares.sum(), source, warnings


def plan_budget(cfg: PlanConfig, pool: PoolStats | None = None, evaluation: str = "loop") -> BudgetPlan:
    """Split ``cfg.budget`` into test, dev and training labels, with the training rounds.

    Args:
        cfg: the planner's inputs.
        pool: statistics of ``cfg.pool_dir`` (:func:`read_pool_stats`), when one is given.
        evaluation: where the loop takes the sets from on that pool (``evaluation_sets.pool_source``):
            ``loop`` (both drawn: paid from the budget), ``test`` (the pool's test split, a drawn dev set) or
            ``pool`` (the pool's dev and test splits as they are: no label spent on them).

    Raises:
        ConfigError: the budget cannot hold a test set, a dev set and an initial set (the sizes are named),
            or the labels, shares and recalls do not fit together.
    """
    labels, shares, source, warnings = _classes(cfg, pool)
    if cfg.recalls and len(cfg.recalls) != len(labels):
        raise ConfigError(f"recalls has {len(cfg.recalls)} values for the {len(labels)} labels {labels}")
    recalls = np.asarray(cfg.recalls, float) if cfg.recalls else np.full(len(labels), cfg.expected_ua)
    z, p_min = z_value(cfg.confidence), float(shares.min())
    cluster = cfg.cluster_size if cfg.cluster_size is not None else pool.cluster_size if pool else 1.0
    if cfg.max_per_unit and cfg.cluster_size is not None:  # a pool's clusters were capped when read
        cluster = min(cluster, cfg.max_per_unit)
    deff = cfg.design_effect if cfg.design_effect is not None else kish_design_effect(cluster, cfg.icc)
    # Simulating clusters checks the Kish design effect; a design effect given as a number has no cluster model.
    can_simulate = cfg.simulate_draws > 0 and (cfg.design_effect is None or cfg.design_effect == 1)
    sim_cluster, sim_icc = (cluster, cfg.icc) if cfg.design_effect is None else (1.0, 0.0)

    floor = math.ceil(cfg.min_per_class / p_min - 1e-9)  # the rarest class expected min_per_class times
    needed = max(required_test_size(cfg.half_width, shares, recalls, z, deff), floor)
    cap = int(cfg.max_test_share * cfg.budget)
    candidates = pool.splits.get("train", pool.clips) if pool is not None else 0  # what the loop draws from
    if pool is not None:  # test + dev within max_share of the training split, as the loop's own sizing
        cap = min(cap, int(int(cfg.max_share * candidates) / (1 + cfg.dev_ratio)))
        if not _floors_fit(cfg, pool, evaluation, floor, needed, cap):
            raise ConfigError(_floors_refusal(cfg, pool, evaluation, shares, recalls, z, deff, needed, cap))
    # below the floor a class would be measured on a handful of clips
    test = pool.splits.get("test", 0) if evaluation != "loop" else max(min(needed, cap), floor)
    test_hw = ua_half_width(max(test, 1), shares, recalls, z, deff)
    if needed > cap and evaluation == "loop":
        warnings.append(f"the test set that reaches +/-{cfg.half_width:.3f} UA needs {needed} labels, more "
                        f"than max_test_share={cfg.max_test_share:g} of the budget"
                        + (f" or max_share={cfg.max_share:g} of the pool" if pool is not None else "")
                        + f" allow ({cap}): the test set is {test} (+/-{test_hw:.3f}). Raise the budget or the "
                        "share, lower the design effect (max_per_unit), or accept the wider interval")
    dev = (pool.splits.get("dev", 0) if evaluation == "pool" else
           max(math.ceil(cfg.dev_ratio * (test if evaluation == "loop" else min(needed, cap)) - 1e-9), floor))
    initial = floor
    spent = {"loop": test + dev, "test": dev}.get(evaluation, 0)
    training = cfg.budget - spent
    if training < initial:
        # name only the keys that move a size here: a size held at its floor does not follow its share or ratio
        knobs = ["raise budget", "lower min_per_class"]
        if evaluation == "loop" and test > floor:
            knobs.append("lower max_test_share")
        if evaluation != "pool" and dev > floor:
            knobs.append("lower dev_ratio")
        what = {"loop": f"the test set ({test}), the dev set ({dev}) and ", "test": f"the dev set ({dev}) and "}
        raise ConfigError(f"budget={cfg.budget} cannot hold {what.get(evaluation, '')}an initial set with "
                          f"{cfg.min_per_class} clips of the rarest class ({initial}): " + ", or ".join(knobs))
    targets = round_targets(initial, training, cfg.rounds, cfg.schedule)

    table = []
    for n in sorted({*cfg.table_sizes, test}):
        sim = (simulated_half_width(n, shares, recalls, confidence=cfg.confidence, draws=cfg.simulate_draws,
                                    seed=cfg.seed, cluster_size=sim_cluster, icc=sim_icc)
               if can_simulate else None)
        table.append({"test_size": n, "rarest_clips": n * p_min, "half_width": ua_half_width(n, shares, recalls, z, deff),
                      "simulated_half_width": sim, "over_cap": n > cap})
    chosen = next(row for row in table if row["test_size"] == test)
    if chosen["simulated_half_width"] is not None and chosen["simulated_half_width"] > 1.1 * test_hw:
        warnings.append(f"the simulation gives +/-{chosen['simulated_half_width']:.3f} at {test} test clips, more "
                        f"than the formula's +/-{test_hw:.3f}: with so few clips per class the normal "
                        "approximation is optimistic; prefer a larger test set")
    if pool is not None and cfg.budget > pool.clips:
        warnings.append(f"the budget ({cfg.budget}) is larger than the pool ({pool.clips} clips)")
    if evaluation != "loop":
        warnings.append("the pool has a labelled test split" + (" and dev split" if evaluation == "pool" else "")
                        + ": the loop uses " + ("them as they are" if evaluation == "pool" else
                                                "it as it is and draws only a dev set")
                        + ", so the budget pays for " + ("training only" if evaluation == "pool" else
                                                         "the dev set and training"))
    return BudgetPlan(
        budget=cfg.budget, labels=labels, shares=[float(s) for s in shares], shares_source=source,
        recalls=[float(r) for r in recalls], confidence=cfg.confidence, z=z,
        target_half_width=cfg.half_width, design_effect=float(deff), cluster_size=float(cluster),
        icc=float(cfg.icc), test_needed=needed, test_cap=cap, test_size=test, test_half_width=test_hw,
        dev_size=dev, dev_half_width=ua_half_width(dev, shares, recalls, z, deff),
        initial_size=initial, initial_miss_probability=float((1 - p_min) ** initial), budget_labels=targets,
        schedule=cfg.schedule, table=table, warnings=warnings, pool=dataclasses.asdict(pool) if pool else None,
        max_per_unit=cfg.max_per_unit, verdict_labels=verdict_labels(), evaluation_source=evaluation)


def _floors_fit(cfg: PlanConfig, pool: PoolStats, evaluation: str, floor: int, needed: int, cap: int) -> bool:
    """Whether sets of ``floor`` clips (``min_per_class`` of the rarest class each) fit the pool's training split:
    the drawn ones within ``max_share`` of it, and with the initial set within it and the budget."""
    candidates = pool.splits.get("train", pool.clips)
    room = {"loop": cap, "test": int(cfg.max_share * candidates)}.get(evaluation, candidates)
    drawn = {"loop": max(min(needed, cap), floor) + floor, "test": floor}.get(evaluation, 0)
    return floor <= room and drawn + floor <= min(cfg.budget, candidates)


def _floors_refusal(cfg: PlanConfig, pool: PoolStats, evaluation: str, shares, recalls, z: float, deff: float,
                    needed: int, cap: int) -> str:
    """Why the pool is too small for ``min_per_class``'s floors, and the plan that fits (a smaller
    ``min_per_class``, with the test UA interval it gives), or what to add."""
    p_min, candidates = float(shares.min()), pool.splits.get("train", pool.clips)
    floor = math.ceil(cfg.min_per_class / p_min - 1e-9)
    sets = {"loop": "test, dev and initial set", "test": "dev and initial set"}.get(evaluation, "initial set")
    head = (f"the pool at {cfg.pool_dir} has {candidates} training clips ({pool.clips} in all); min_per_class="
            f"{cfg.min_per_class} wants {floor} clips ({cfg.min_per_class} of the rarest class, share {p_min:.3f}) "
            f"in each of the {sets}, which must fit in those training clips and budget={cfg.budget}"
            + (f", the drawn sets within max_share={cfg.max_share:g} of them" if evaluation != "pool" else ""))
    for m in range(cfg.min_per_class - 1, 0, -1):
        small = math.ceil(m / p_min - 1e-9)
        if _floors_fit(cfg, pool, evaluation, small, needed, cap):
            test = max(min(needed, cap), small) if evaluation == "loop" else pool.splits.get("test", 0)
            dev = small if evaluation != "pool" else pool.splits.get("dev", 0)
            return (f"{head}. The plan that fits: min_per_class={m} (test {test}, dev {dev}, initial {small} clips; "
                    f"test UA +/-{ua_half_width(max(test, 1), shares, recalls, z, deff):.3f} at "
                    f"{cfg.confidence:.0%}, the rarest class expected {m} times in the initial set), or add clips")
    return f"{head}. Even min_per_class=1 does not fit: add clips" + (
        ", or raise max_share" if evaluation != "pool" else "")
