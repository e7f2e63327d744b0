"""Evaluation sets the loop draws itself, for a pool that comes with no labelled dev / test split.

A team's pool often has no labels and no split column: every clip is ``train``. Before round 0 the loop then
draws a test set and a dev set from the training split (``active.evaluation``), has them labelled through the
run's oracle first, and records those labels in the ledger with purpose ``test`` / ``dev``
(:mod:`ser_models.data.ledger`): they measure every round and never train, and the rounds never select them.

How a draw works:

* **Whole units** (``disjoint_by``): the sets take whole groups (shows, campaigns, customers), else whole
  recordings, else whole speakers, so no group straddles evaluation and training (a model that has heard a
  speaker in training would look better on that speaker's test clips than on a new one). A clip without a
  value of the column is a unit of its own.
* **Stratified** (``stratify``): units are spread over the values of a coarser column (e.g. recordings over
  groups, speakers over languages) in proportion to each value's share of the candidate audio. Each unit
  belongs to the value most of its clips have. Units are laid out on a line stratum by stratum in a seeded
  random order, each at the middle of its share of its stratum, and the sets take units in that order: every
  prefix of the order holds each stratum's share (systematic sampling).
* **Sizes**: ``test_size`` / ``dev_size`` clips, or ``test_hours`` / ``dev_hours`` of audio. Left unset, they
  come from the planner for the pool the draw sees (:mod:`~ser_models.planning.evaluation_sizes`): the smallest
  test set whose UA interval reaches ``half_width`` for the run's classes, at the design effect of the pool's
  recordings (else speakers) and an assumed ``icc``, a dev set of half of it, together at most ``max_share`` of
  the candidates (a ceiling the draw keeps). Given sizes win. Whole units cannot hit a size exactly: a set takes
  the next unit while the unit's first half still fits, skipping a unit that would overshoot by more than half
  its own size, so it ends within half a unit of its size.
* **At most N clips per unit** (``max_per_unit``): a set takes a seeded sample of at most N clips of each unit
  it draws, so the same labels span more recordings (a smaller design effect, a narrower interval). The unit's
  other clips are held out too (neither labelled nor trained on), so no unit straddles evaluation and training:
  the price is training-pool clips, which the draw's line states.
* **What a set holds**: the draw prints, per set, its recordings, speakers and groups and its design effect, and
  warns when a set spans fewer than ``planner.MIN_UNITS`` (10) recordings (else speakers).
* **Deterministic**: a pure function of (the training clips, the clips the oracle cannot label, the config,
  ``active.seed``). The loop writes the draw once to ``rounds/evaluation/selection.parquet`` (``utt_id,
  purpose, unit``; atomically) and a restart reads it back, never drawing again.

Before it writes the draw, the draw checks that the training budget (``active.budget_*``) still fits in what
is left, and names the evaluation keys, the budget keys and the numbers when it does not (nothing is written, so
a rerun with other sizes draws again). ``docs/planning.md`` weighs the sizes against the training budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from ser_models.config import RESULT, field
from ser_models.exceptions import ConfigError, PoolExhaustedError
from ser_models.io import StoragePath, exists, read_parquet, write_json_atomic, write_parquet_atomic
from ser_models.locks import fenced_for
from ser_models.planning.evaluation_sizes import (
    EvaluationSizes,
    clips_mean_cluster_size,
    cluster_ids,
    describe_composition,
    evaluation_sizes,
    set_composition,
)

__all__ = ["EVALUATION_PURPOSES", "EvaluationConfig", "check_evaluation_pool", "checked_draw", "describe_source",
           "draw_config", "draw_evaluation_sets", "evaluation_sets", "evaluation_source", "pool_source", "resolve_sizes",
           "unit_column"]

_SOURCES = ("auto", "pool", "loop")
#: Coarse to fine: a set's units may be spread over a coarser column's values.
_HIERARCHY = ("group", "recording", "speaker")
_STRATIFY = ("auto", "none", *_HIERARCHY, "language")
_DISJOINT = ("auto", "none", *_HIERARCHY)
#: The evaluation purposes, in the order they are drawn.
EVALUATION_PURPOSES = ("test", "dev")
#: Pool columns a draw reads.
DRAW_COLUMNS = ["utt_id", "duration", *_HIERARCHY, "language", "label"]
_KEY = "active.evaluation"


@dataclass
class EvaluationConfig:
    """``active.evaluation``: where the dev and test sets come from, and how the loop draws them itself."""

    source: str = field("auto", effect=RESULT, help=f"{list(_SOURCES)}: 'pool' = the pool's own dev / test splits (labelled in "
                                                    "the manifest); 'loop' = drawn from the training split before round 0 and "
                                                    "labelled through the oracle first; 'auto' = the pool's labelled splits as they "
                                                    "are (a labelled test split alone: kept, with a dev set drawn), else 'loop'")
    test_size: int | None = field(None, effect=RESULT, help="source=loop: clips in the test set (about: whole units are "
                                  "taken); null = from the planner for the pool: the smallest reaching half_width, "
                                  "within max_share")
    dev_size: int | None = field(None, effect=RESULT, help="source=loop: clips in the dev set (0 = no dev set); null = from "
                                 "the planner, half the planner's test set")
    half_width: float = field(0.05, effect=RESULT, help="source=loop, sizes unset: the test UA interval's half-width the "
                              "planner sizes the test set for (95 %, expected UA 0.6)")
    max_share: float = field(0.3, effect=RESULT, help="source=loop, sizes unset: the most of the candidate clips the test "
                             "and dev sets may take together (planner sizes never exceed it)")
    icc: float = field(0.1, effect=RESULT, help="assumed correlation of being right between clips of one recording (else "
                       "speaker): the design effect 1 + (m - 1) * icc of the planner's sizes and of the sets' report")
    max_per_unit: int = field(0, effect=RESULT, help="source=loop: at most this many clips of each unit (disjoint_by) in "
                              "a set, a seeded sample; the unit's other clips are held out of training too (0 = whole "
                              "units). The same labels then span more recordings")
    test_hours: float = field(0.0, effect=RESULT, help="source=loop: hours of audio in the test set instead of test_size (0 = "
                                                       "use test_size)")
    dev_hours: float = field(0.0, effect=RESULT, help="source=loop: hours of audio in the dev set instead of dev_size (0 = use "
                                                      "dev_size)")
    stratify: str = field("auto", effect=RESULT, help=f"source=loop: {list(_STRATIFY)}: spread the sets' units over this "
                                                      "column's values in proportion to the pool; 'auto' = the finest of "
                                                      "group > recording > speaker coarser than the disjoint_by unit that has "
                                                      "two or more values, else language when the pool has several, else none")
    disjoint_by: str = field("auto", effect=RESULT, help=f"source=loop: {list(_DISJOINT)}: the sets take whole units of this "
                                                         "column, so none straddles evaluation and training; 'auto' = group, "
                                                         "else recording, else speaker (the first the pool has); 'none' = clips")

    def __post_init__(self):
        for key, value, allowed in (("source", self.source, _SOURCES), ("stratify", self.stratify, _STRATIFY),
                                    ("disjoint_by", self.disjoint_by, _DISJOINT)):
            if value not in allowed:
                raise ConfigError(f"{_KEY}.{key} must be one of {list(allowed)}, got {value!r}")
        for key in ("test_size", "dev_size"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"{_KEY}.{key} must be a whole number of clips >= 0 (or null: from the planner), "
                                  f"got {value!r}")
        if isinstance(self.max_per_unit, bool) or not isinstance(self.max_per_unit, int) or self.max_per_unit < 0:
            raise ConfigError(f"{_KEY}.max_per_unit must be a whole number >= 0 (0 = whole units), got "
                              f"{self.max_per_unit!r}")
        for key, low, high in (("half_width", 0, 1), ("max_share", 0, 1), ("icc", -1e-12, 1 + 1e-12)):
            if not low < getattr(self, key) < high:
                raise ConfigError(f"{_KEY}.{key} must be in ({max(low, 0):g}, {round(high):g}), got "
                                  f"{getattr(self, key)!r}")
        for key in ("test_hours", "dev_hours"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"{_KEY}.{key} must be >= 0 hours, got {getattr(self, key)!r}")
        if self.test_size is not None and self.test_size < 1 and self.test_hours <= 0:
            raise ConfigError(f"{_KEY}: the test set needs test_size >= 1 (or null), or test_hours > 0")

    @property
    def planned(self) -> bool:
        """Whether a size is left to the planner (a size unset and no hours in its place)."""
        return any(getattr(self, f"{p}_size") is None and getattr(self, f"{p}_hours") <= 0
                   for p in EVALUATION_PURPOSES)

    def target(self, purpose: str) -> tuple[float, str]:
        """``(size, unit)`` of a set: ``(clips, "clips")`` or ``(seconds, "seconds")`` (0 = no such set); sizes
        must be resolved (:func:`resolve_sizes`)."""
        hours = getattr(self, f"{purpose}_hours")
        if hours > 0:
            return 3600.0 * hours, "seconds"
        size = getattr(self, f"{purpose}_size")
        if size is None:
            raise ConfigError(f"{_KEY}.{purpose}_size is unset and was not resolved from the planner")
        return float(size), "clips"


# ------------------------------------------------------------------------------------------------ source
def _has_targets(pool, labels, dimensions, split: str) -> bool:
    cols = ["utt_id", *(["label"] if labels else []), *dimensions]
    meta = pool.metadata(columns=cols, split=split)
    return bool(len(meta) and meta[cols[1:]].notna().any(axis=None))


def pool_source(cfg: EvaluationConfig, pool, labels=(), dimensions=()) -> str:
    """Where a run's dev and test sets come from, for the pool as it is: ``"pool"`` (its labelled dev and test
    splits, used as they are), ``"test"`` (its labelled test split kept, a dev set drawn from the training split:
    a pool with a test split and no labelled dev) or ``"loop"`` (both drawn). ``plan`` and the loop both call it.

    ``auto`` takes a split that exists and holds labels (a split that is only partly labelled then fails the
    pool's own check, naming the clips: a half-labelled test split is a mistake to fix, not to paper over).

    Args:
        cfg: ``active.evaluation``.
        pool: the opened pool.
        labels: the run's classes (``model.labels``; empty: dimensions only).
        dimensions: the run's dimensions.

    Raises:
        ConfigError: ``source=pool`` on a pool without a test split.
    """
    have = [s for s in ("dev", "test") if s in pool.splits]
    if cfg.source == "loop":
        return "loop"
    if cfg.source == "pool" and "test" not in have:
        raise ConfigError(f"{_KEY}.source=pool but pool {pool.root} has the splits {pool.splits} (no test): give the "
                          f"manifest a split column, or set {_KEY}.source=loop to draw the sets from the training "
                          "split")
    labelled = [s for s in have if cfg.source == "pool" or _has_targets(pool, labels, dimensions, s)]
    if "test" not in labelled:
        return "loop"
    return "pool" if "dev" in labelled else "test"


def evaluation_source(cfg: EvaluationConfig, pool, model_cfg) -> str:
    """:func:`pool_source` for a run's model config (its ``labels`` and ``dimensions``)."""
    return pool_source(cfg, pool, model_cfg.labels, model_cfg.dimensions)


def draw_config(cfg: EvaluationConfig, source: str) -> EvaluationConfig:
    """The ``active.evaluation`` a draw runs with: ``cfg`` itself, or with ``source="test"`` no test set (the
    pool's test split is the test set) and the dev set as ``cfg`` sizes it."""
    if source != "test":
        return cfg
    drawn = dataclasses.replace(cfg, test_hours=0.0, test_size=None)
    drawn.test_size = 0  # after the checks: a dev-only draw (its test set is the pool's split)
    return drawn


def describe_source(source: str, pool, cfg: EvaluationConfig) -> str:
    """One console line: which sets come from the pool's splits, which are drawn, and the keys not used."""
    sizes = {s: len(pool.metadata(columns=["utt_id"], split=s)) for s in ("dev", "test") if s in pool.splits}
    unused = [f"{_KEY}.{k}" for k in (("test_size", "test_hours", "dev_size", "dev_hours") if source == "pool" else
                                      ("test_size", "test_hours") if source == "test" else ())
              if getattr(cfg, k) not in (None, 0, 0.0)]
    ignored = (f"; {', '.join(unused)} not used (set {_KEY}.source=loop to draw both sets instead)" if unused else "")
    if source == "pool":
        return (f"evaluation: the pool's labelled splits as they are: test {sizes['test']} clips, dev "
                f"{sizes['dev']} clips{ignored}")
    if source == "test":
        return (f"evaluation: the pool's labelled test split as it is ({sizes['test']} clips); the pool has no "
                f"labelled dev split, so a dev set is drawn from the training split{ignored}")
    return "evaluation: test and dev sets drawn from the training split"


def check_evaluation_pool(pool, model_cfg, source: str, cross_lingual: bool = False) -> None:
    """The pool checks a run's evaluation needs before Ray starts: every clip of the pool's splits it uses has
    valid targets (``Pool.check_targets`` and ``Pool.check_evaluation_labels``); drawn sets are labelled by the
    oracle, so there is nothing to check in the pool for them.

    Raises:
        ConfigError: a drawn set with ``cross_lingual`` on (it evaluates on the target group's pool splits).
        PoolError: from the pool's checks.
    """
    if cross_lingual and source != "pool":
        raise ConfigError("cross_lingual evaluates on the target group's dev / test splits of the pool: give the "
                          f"pool labelled dev and test splits and set {_KEY}.source=pool (or auto)")
    splits = {"pool": ("dev", "test"), "test": ("test",)}.get(source, ())
    if splits:
        pool.check_targets(model_cfg.targets, splits)
        pool.check_evaluation_labels(model_cfg, splits)


# ------------------------------------------------------------------------------------------------ drawing
def _present(values: pd.Series) -> pd.Series:
    """True where a column holds a value (not null, not blank text)."""
    return values.notna() & (values.astype(str).str.strip() != "")


def _resolve(cfg: EvaluationConfig, clips: pd.DataFrame) -> tuple[str, str]:
    """``(disjoint_by, stratify)`` with ``auto`` resolved against the candidate clips' columns."""
    def distinct(col: str) -> int:
        return int(clips.loc[_present(clips[col]), col].nunique()) if col in clips.columns else 0

    disjoint = cfg.disjoint_by
    if disjoint == "auto":
        disjoint = next((c for c in _HIERARCHY if distinct(c)), "none")
    elif disjoint != "none" and not distinct(disjoint):
        raise ConfigError(f"{_KEY}.disjoint_by={disjoint} but no candidate clip has a {disjoint}: choose another "
                          f"column, or 'auto' / 'none'")
    stratify = cfg.stratify
    if stratify == "auto":
        coarser = _HIERARCHY if disjoint == "none" else _HIERARCHY[:_HIERARCHY.index(disjoint)]
        stratify = next((c for c in reversed(coarser) if distinct(c) >= 2),
                        "language" if distinct("language") >= 2 else "none")
    elif stratify != "none" and not distinct(stratify):
        raise ConfigError(f"{_KEY}.stratify={stratify} but no candidate clip has a {stratify}: choose another "
                          "column, or 'auto' / 'none'")
    return disjoint, stratify


def _order(units: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Units in the order the sets take them: each stratum's units in a seeded random order, each placed at the
    middle of its share of its stratum's size, then all sorted by that place (ties in the random order)."""
    units = units.sort_values("unit", kind="stable").reset_index(drop=True)
    rng = np.random.default_rng([int(seed), 0xE7A1])  # a stream of its own: the initial set uses [seed, 0]
    units["draw"] = rng.permutation(len(units))
    units = units.sort_values("draw", kind="stable")
    total = units.groupby("stratum")["size"].transform("sum")
    before = units.groupby("stratum")["size"].cumsum() - units["size"]
    units["place"] = (before + units["size"] / 2) / total
    return units.sort_values(["place", "draw"], kind="stable").reset_index(drop=True)


def _take(order: pd.DataFrame, target: float, ceiling: float = float("inf")) -> list[int]:
    """Positions in ``order`` a set of ``target`` size takes: the next unit while its first half still fits, and
    never past ``ceiling``."""
    taken, total = [], 0.0
    for k, size in enumerate(order["size"].to_numpy()):
        if total >= target:
            break
        if total + size / 2 <= target and total + size <= ceiling:
            taken.append(k)
            total += size
    return taken


def resolve_sizes(clips: pd.DataFrame, cfg: EvaluationConfig, labels: Sequence[str] = ()
                  ) -> tuple[EvaluationConfig, EvaluationSizes | None]:
    """``cfg`` with unset sizes filled from the planner for ``clips`` (the candidates), and the planner's sizes
    (None when every size was given).

    Classes are ``labels`` (the run's ``model.labels``) with the shares of the candidates' labels when each class
    has one (a simulated pool), else uniform; the expected UA is the planner's 0.6; clusters are the candidates'
    recordings (else speakers), each capped at ``max_per_unit``. A run with no classes (dimensional only) takes
    300 / 100 clips within ``max_share``.
    """
    if not cfg.planned:
        return cfg, None
    labels = [str(c) for c in labels]
    if len(labels) >= 2:
        counts = (clips["label"].dropna().astype(str).value_counts() if "label" in clips.columns
                  else pd.Series(dtype=int))
        counts = counts.reindex(labels).fillna(0).to_numpy(dtype=float)
        shares = counts / counts.sum() if counts.min() > 0 else np.full(len(labels), 1 / len(labels))
    else:  # no class to size UA for: the planner's uniform four-class case
        shares = np.full(4, 0.25)
    _, clusters = cluster_ids(clips)
    sizes = evaluation_sizes(len(clips), shares, np.full(len(shares), 0.6), half_width=cfg.half_width,
                             cluster_size=clips_mean_cluster_size(clusters, cfg.max_per_unit), icc=cfg.icc,
                             max_share=cfg.max_share)
    test = cfg.test_size if cfg.test_size is not None else sizes.test_size
    dev = cfg.dev_size if cfg.dev_size is not None else sizes.dev_size
    resolved = dataclasses.replace(cfg, test_size=test or None, dev_size=dev)
    resolved.test_size = test  # 0 in a dev-only draw (draw_config), past the check that a test set exists
    return resolved, sizes


def _sample_per_unit(clips: pd.DataFrame, limit: int, seed: int) -> pd.Series:
    """True for the clips a draw may take: all, or a seeded sample of at most ``limit`` clips of each unit."""
    if limit <= 0:
        return pd.Series(True, index=clips.index)
    rng = np.random.default_rng([int(seed), 0x5A3])  # a stream of its own, like the unit order's
    key = pd.Series(rng.permutation(len(clips)), index=clips.index)
    order = clips.assign(key=key).sort_values(["unit", "utt_id"], kind="stable")  # the same ids, the same sample
    rank = order.sort_values(["unit", "key"], kind="stable").groupby("unit").cumcount()
    return (rank < limit).reindex(clips.index)


def draw_evaluation_sets(clips: pd.DataFrame, cfg: EvaluationConfig, seed: int, exclude: Iterable[str] = (),
                         labels: Sequence[str] = ()) -> tuple[pd.DataFrame, dict]:
    """Draw the test set, then the dev set, from ``clips``.

    Args:
        clips: the training split's clips: ``utt_id``, ``duration`` (seconds) and any of ``group, recording,
            speaker, language, label`` (missing columns count as empty).
        cfg: ``active.evaluation``.
        seed: ``active.seed``.
        exclude: clips the oracle cannot label: never drawn (their units may still be).
        labels: the run's classes (``model.labels``), for sizes left to the planner (:func:`resolve_sizes`).

    Returns:
        ``(selection, summary)``: ``selection`` has columns ``utt_id, purpose, unit`` (``purpose`` test or dev,
        ``unit`` the disjoint unit, e.g. ``speaker=spk3``), sorted by purpose and id; ``summary`` says what was
        drawn (``disjoint_by``, ``stratify``, ``sizes`` (how they were chosen), per purpose ``clips``,
        ``seconds``, ``units``, ``target``, and ``composition``: recordings, speakers, groups, design effect).

    Raises:
        PoolExhaustedError: the candidates cannot fill the sets and leave training clips, naming the sizes asked
            for, the clips and units there are, and the keys to lower.
        ConfigError: ``disjoint_by`` / ``stratify`` names a column no candidate has.
    """
    clips = clips.copy()
    clips["utt_id"] = clips["utt_id"].astype(str)
    for col in (*_HIERARCHY, "language"):
        if col not in clips.columns:
            clips[col] = None
    skip = set(map(str, exclude))
    clips = clips[~clips["utt_id"].isin(skip)].reset_index(drop=True)
    cfg, planned = resolve_sizes(clips, cfg, labels)
    # Both sizes from the planner: the max_share cap is a ceiling the draw keeps, not a target it may overshoot.
    ceiling = float(planned.cap) if planned is not None and all(
        getattr(cfg, f"{p}_hours") <= 0 for p in EVALUATION_PURPOSES) else float("inf")
    disjoint, stratify = _resolve(cfg, clips)
    clips["unit"] = unit_column(clips, disjoint)
    if stratify == "none":
        clips["stratum"] = ""
    else:
        clips["stratum"] = np.where(_present(clips[stratify]), clips[stratify].astype(str), "")
    clips["seconds"] = clips["duration"].astype(float)
    stratum = clips.groupby("unit")["stratum"].agg(lambda s: s.value_counts().sort_index().idxmax())
    pickable = clips[_sample_per_unit(clips, cfg.max_per_unit, seed)]
    units = pickable.groupby("unit").agg(clips=("utt_id", "size"), seconds=("seconds", "sum"))
    units["stratum"] = stratum
    units = units.reset_index()
    chosen: dict[str, list[str]] = {}
    summary: dict = {"disjoint_by": disjoint, "stratify": stratify, "seed": int(seed), "candidates": len(clips),
                     "max_per_unit": int(cfg.max_per_unit),
                     "sizes": ({"source": "given"} if planned is None else
                               {"source": "planner", "line": planned.describe(), **dataclasses.asdict(planned)})}
    left, spent = units, 0.0
    for purpose in EVALUATION_PURPOSES:
        target, unit = cfg.target(purpose)
        if target <= 0:
            chosen[purpose] = []
            continue
        available = float(left[unit].sum())
        if available <= target:
            asked = {p: cfg.target(p) for p in EVALUATION_PURPOSES}
            shown = " + ".join(f"{_amount(*asked[p])} {p}" for p in EVALUATION_PURPOSES if asked[p][0] > 0)
            raise PoolExhaustedError(
                f"{_KEY} asks for {shown}, but the training split holds {len(clips)} clips "
                f"({clips['seconds'].sum() / 3600:.3f} h) the oracle can label, in {len(units)} "
                f"{'units' if disjoint == 'none' else disjoint + ' units'}; {_amount(available, unit)} are left "
                + (f"(at most {_KEY}.max_per_unit={cfg.max_per_unit} of each unit) " if cfg.max_per_unit else "") +
                f"for the {purpose} set, which must also leave clips to train on: lower {_KEY}."
                f"{purpose}_{'hours' if unit == 'seconds' else 'size'} (and the other set's), or add audio")
        order = _order(left.assign(size=left[unit].astype(float)), seed + EVALUATION_PURPOSES.index(purpose))
        later = sum(cfg.target(p)[0] for p in EVALUATION_PURPOSES[EVALUATION_PURPOSES.index(purpose) + 1:])
        taken = order.iloc[_take(order, target, ceiling - spent - later)]
        if taken.empty:
            raise PoolExhaustedError(
                f"{_KEY}: every {disjoint} unit is more than twice the {purpose} set's size "
                f"({_amount(target, unit)}; the smallest holds {_amount(float(order['size'].min()), unit)}): raise "
                f"{_KEY}.{purpose}_size / {purpose}_hours, set {_KEY}.max_per_unit, or set {_KEY}.disjoint_by to a "
                "finer column")
        chosen[purpose] = taken["unit"].tolist()
        spent += float(taken["clips"].sum())
        left = left[~left["unit"].isin(set(chosen[purpose]))]
        summary[purpose] = {"clips": int(taken["clips"].sum()), "seconds": round(float(taken["seconds"].sum()), 3),
                            "units": len(taken), "target": round(target, 3), "target_unit": unit}
    if left.empty:
        raise PoolExhaustedError(f"{_KEY}: the test and dev sets would take every training clip "
                                 f"({len(clips)}): lower {_KEY}.test_size / dev_size")
    rows = [(u, p) for p in EVALUATION_PURPOSES for u in chosen[p]]
    purpose_of = dict(rows)
    picked = pickable[pickable["unit"].isin(purpose_of)]
    selection = pd.DataFrame({"utt_id": picked["utt_id"].to_numpy(),
                              "purpose": picked["unit"].map(purpose_of).to_numpy(),
                              "unit": picked["unit"].to_numpy()})
    rank = selection["purpose"].map({p: k for k, p in enumerate(EVALUATION_PURPOSES)})
    selection = selection.assign(rank=rank).sort_values(["rank", "utt_id"]).drop(columns="rank")
    summary["composition"] = set_composition(clips, selection, cfg.icc)
    return selection.reset_index(drop=True), summary


def unit_column(clips: pd.DataFrame, disjoint: str) -> pd.Series:
    """Each clip's disjoint unit, ``"<column>=<value>"`` (``"clip=<utt_id>"`` for a clip without a value, or with
    ``disjoint`` ``none``)."""
    ids = "clip=" + clips["utt_id"].astype(str)
    if disjoint == "none":
        return ids
    values = clips[disjoint] if disjoint in clips.columns else pd.Series(None, index=clips.index)
    return pd.Series(np.where(_present(values), disjoint + "=" + values.astype(str), ids), index=clips.index)


def _amount(value: float, unit: str) -> str:
    return f"{value / 3600:.3f} h" if unit == "seconds" else f"{int(round(value))} clips"


def evaluation_sets(pool, folder: StoragePath, cfg: EvaluationConfig, seed: int, where: dict | None = None,
                    exclude: Callable[[], Iterable[str]] | Iterable[str] = (),
                    log: Callable[[str], None] = print, labels: Sequence[str] = (), budget=None,
                    drawn: tuple[pd.DataFrame, dict] | None = None) -> pd.DataFrame:
    """The run's drawn evaluation sets: read from ``folder/selection.parquet``, or drawn from the pool's training
    split (``where`` filters it, e.g. a cross-lingual target) and written there atomically
    (``evaluation.json`` beside it says how, and what each set holds).

    Args:
        exclude: the clips the oracle cannot label, or a function giving them (only called when drawing).
        labels: the run's classes (``model.labels``): what the planner sizes unset sizes for.
        budget: the run's ``ActiveConfig``: checked against the training pool the draw leaves before anything
            is written (None = not checked).
        drawn: the draw :func:`checked_draw` made (and checked) before the run claimed its folder, written as it
            is; None = drawn here.

    Returns:
        ``utt_id, purpose, unit`` (:func:`draw_evaluation_sets`).

    Raises:
        ConfigError: the training budget does not fit in what the sets leave (the draw is not written).
    """
    path = folder / "selection.parquet"
    if exists(path):
        return read_parquet(path).to_pandas()
    selection, summary = drawn or checked_draw(pool, cfg, seed, where, exclude, log, labels, budget)
    with fenced_for(path):  # only while the run folder's lock is still ours, with no take-over in between
        write_json_atomic(folder / "evaluation.json", summary)
        write_parquet_atomic(path, pa.Table.from_pandas(selection, preserve_index=False))  # last: the draw is done
    sets = ", ".join(f"{p} {summary[p]['clips']} clips ({summary[p]['seconds'] / 3600:.2f} h, {summary[p]['units']} "
                     f"units)" for p in EVALUATION_PURPOSES if p in summary)
    extra = summary["held_out"]["clips"] - len(selection)
    capped = (f", at most {cfg.max_per_unit} clips per unit ({extra} more clips of those units held out of "
              "training)" if cfg.max_per_unit else "")
    log(f"evaluation sets drawn from the training split: {sets}; whole {summary['disjoint_by']} units{capped}, "
        f"stratified by {summary['stratify']} -> {path}")
    lines, warnings = describe_composition(summary["composition"], cfg.icc)
    for line in lines:
        log(f"  {line}")
    for warning in warnings:
        log(f"warning: {warning}")
    return selection


def checked_draw(pool, cfg: EvaluationConfig, seed: int, where: dict | None = None,
                 exclude: Callable[[], Iterable[str]] | Iterable[str] = (), log: Callable[[str], None] = print,
                 labels: Sequence[str] = (), budget=None) -> tuple[pd.DataFrame, dict]:
    """The draw :func:`evaluation_sets` writes, and its budget check, writing nothing: a job refuses a budget
    that does not fit before it claims its run folder (a refusal leaves no trace).

    Returns:
        ``(selection, summary)`` (:func:`draw_evaluation_sets`; ``summary["held_out"]`` added).

    Raises:
        ConfigError: the training budget does not fit in what the sets leave.
    """
    clips = pool.metadata(columns=DRAW_COLUMNS, split="train", where=where)
    selection, summary = draw_evaluation_sets(clips, cfg, seed, exclude() if callable(exclude) else exclude,
                                              labels=labels)
    # The training pool: the split's clips outside the drawn units (their other clips are held out too).
    held = unit_column(clips, summary["disjoint_by"]).isin(set(selection["unit"]))
    summary["held_out"] = {"clips": int(held.sum()), "training_clips": int((~held).sum())}
    sizes = summary["sizes"]
    if sizes["source"] == "planner":
        log(f"evaluation sizes from the planner ({_KEY}.test_size / dev_size unset): {sizes['line']}")
        for warning in sizes["warnings"]:
            log(f"warning: {warning}")
    if budget is not None:
        _check_budget(budget, clips, held, selection, summary, cfg)
    return selection, summary


def _check_budget(budget, clips: pd.DataFrame, held: pd.Series, selection: pd.DataFrame, summary: dict,
                  cfg: EvaluationConfig) -> None:
    """Refuse a draw that leaves the training budget no room, naming the evaluation keys, the budget keys and the
    numbers (``budget``: the run's ``ActiveConfig``)."""
    counts = selection["purpose"].value_counts()
    test, dev = int(counts.get("test", 0)), int(counts.get("dev", 0))
    sizes = summary["sizes"]
    chosen = (f"sized by the planner: at most {_KEY}.max_share={cfg.max_share:g} of the pool, for +/-"
              f"{cfg.half_width:g} UA" if sizes["source"] == "planner" else
              f"{_KEY}.test_size={cfg.test_size}, {_KEY}.dev_size={cfg.dev_size}"
              + (f", test_hours={cfg.test_hours:g}" if cfg.test_hours else "")
              + (f", dev_hours={cfg.dev_hours:g}" if cfg.dev_hours else ""))
    context = (f"the training split holds {len(clips)} clips; the drawn evaluation sets take test {test} and dev "
               f"{dev} clips ({chosen}) and hold out {int(held.sum())} clips with their "
               f"{summary['disjoint_by']} units")
    fix = (f"lower {_KEY}.test_size / {_KEY}.dev_size (unset, the planner keeps them within "
           f"{_KEY}.max_share={cfg.max_share:g} of the pool), lower {_KEY}.max_share, raise {_KEY}.max_per_unit "
           "(fewer recordings held out; 0 = whole units), or add audio")
    kept = clips.loc[~held]
    if budget.budget_hours:
        budget.seconds_targets(float(kept["duration"].astype(float).sum()), evaluation=context, fix=fix)
    else:
        budget.targets(len(kept), evaluation=context, fix=fix)


