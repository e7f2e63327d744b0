"""Evaluation-set sizes for a pool when a run gives none: the smallest test set whose UA interval reaches the
half-width asked for (:mod:`ser_models.planning.planner`'s formula, with the design effect of clustered clips),
a dev set of half of it, and both together never more than a share of the pool.

Before any label exists nothing measures how correlated a recording's clips are, so the intra-cluster
correlation (ICC) is an assumption (``active.evaluation.icc``, 0.1 by default); the cluster size is measured on
the pool: the clips' mean clips per recording (else speaker), each capped at ``max_per_unit`` when the draw caps
it. The module also says what a drawn set holds (recordings, speakers, groups, design effect). No Ray, no
I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ser_models.exceptions import ConfigError
from ser_models.planning.planner import MIN_UNITS
from ser_models.planning.ua_precision import kish_design_effect, required_test_size, ua_half_width, z_value

__all__ = ["EvaluationSizes", "cluster_ids", "clips_mean_cluster_size", "describe_composition", "evaluation_sizes",
           "set_composition"]


@dataclass
class EvaluationSizes:
    """Test and dev sizes for a pool, from the UA half-width wanted and a cap on the pool's share
    (:func:`evaluation_sizes`); every size in clips.

    Attributes:
        needed: the smallest test set reaching ``half_width`` (at the design effect, and at least the floor that
            expects ``min_per_class`` clips of the rarest class).
        cap: the most clips the test and dev sets may take together (``max_share`` of the pool).
        design_effect: ``1 + (m - 1) * icc`` with ``m`` the clips' mean cluster size (``cluster_size``, never more
            than the test set itself); ``icc`` is assumed, not measured (no label exists yet).
    """

    test_size: int
    dev_size: int
    needed: int
    cap: int
    pool_clips: int
    max_share: float
    half_width: float
    test_half_width: float
    dev_half_width: float
    design_effect: float
    cluster_size: float
    icc: float
    classes: int
    expected_ua: float
    warnings: list[str]

    def describe(self) -> str:
        """One line: the sizes chosen and why."""
        why = (f"+/-{self.half_width:.3f} UA needs {self.needed}" if self.test_size == self.needed else
               f"+/-{self.half_width:.3f} UA would need {self.needed}, capped")
        return (f"test {self.test_size}, dev {self.dev_size} clips for {self.classes} classes at expected UA "
                f"{self.expected_ua:.2f}, design effect {self.design_effect:.2f} ({self.cluster_size:.3g} clips per "
                f"cluster, ICC {self.icc:g} assumed): {why}; at most {self.max_share:.0%} of the pool's "
                f"{self.pool_clips} clips ({self.cap}) -> test UA +/-{self.test_half_width:.3f}")


def evaluation_sizes(pool_clips: int, shares, recalls, *, half_width: float = 0.05, confidence: float = 0.95,
                     cluster_size: float = 1.0, icc: float = 0.1, max_share: float = 0.3, dev_ratio: float = 0.5,
                     min_per_class: int = 5) -> EvaluationSizes:
    """Test and dev sizes for a pool of ``pool_clips`` clips: the smallest test set reaching ``half_width``, and a
    dev set of ``dev_ratio`` of it, together never more than ``max_share`` of the pool.

    Args:
        pool_clips: the clips the sets are drawn from.
        shares: ``[K]`` class shares (sum 1).
        recalls: ``[K]`` expected per-class recalls.
        half_width: the wanted half-width of the test UA interval.
        confidence: the interval's confidence.
        cluster_size: clips' mean clips per recording (else speaker) in a set, ``sum m^2 / sum m``.
        icc: the assumed intra-cluster correlation of being right.
        max_share: the most of the pool test + dev may take.
        dev_ratio: dev size / test size.
        min_per_class: clips of the rarest class the test set should expect (a floor, under the cap).

    Returns:
        The sizes, with warnings when the cap leaves the interval wider than asked or the rarest class thin.

    Raises:
        ConfigError: the share of the pool holds no test clip.
    """
    shares, recalls = np.asarray(shares, float), np.asarray(recalls, float)
    z, p_min = z_value(confidence), float(shares.min())
    floor = math.ceil(min_per_class / p_min - 1e-9)

    def deff(n: float) -> float:
        return kish_design_effect(max(1.0, min(cluster_size, n)), icc)  # a cluster is never larger than the set

    needed = max(required_test_size(half_width, shares, recalls, z, deff(float("inf"))), floor)
    if needed < cluster_size:  # the whole set fits in one cluster's size: its clusters are at most the set
        needed = max(required_test_size(half_width, shares, recalls, z, deff(needed)), floor)
    cap = int(max_share * pool_clips)
    test_cap = int(cap / (1 + dev_ratio))
    if test_cap < 1:
        raise ConfigError(f"active.evaluation.max_share={max_share:g} of a pool of {pool_clips} clips holds no test "
                          "clip: raise max_share, give active.evaluation.test_size, or add clips")
    test = min(needed, test_cap)
    dev = min(math.ceil(dev_ratio * test - 1e-9), cap - test)
    test_hw = ua_half_width(test, shares, recalls, z, deff(test))
    warnings = []
    if needed > test_cap:
        warnings.append(f"a test set reaching +/-{half_width:.3f} UA needs {needed} clips (design effect "
                        f"{deff(needed):.2f}), more than max_share={max_share:g} of the pool allows ({test_cap} with "
                        f"the dev set): the test set is {test} clips, +/-{test_hw:.3f}. Add audio, raise "
                        "active.evaluation.max_share, or lower the design effect with active.evaluation.max_per_unit")
    if test < floor:
        warnings.append(f"the rarest class (share {p_min:.3f}) is expected {test * p_min:.1f} times in the test set, "
                        f"under {min_per_class}: its recall, and so UA, rests on a handful of clips")
    return EvaluationSizes(
        test_size=int(test), dev_size=int(max(dev, 0)), needed=int(needed), cap=cap, pool_clips=int(pool_clips),
        max_share=float(max_share), half_width=float(half_width), test_half_width=test_hw,
        dev_half_width=ua_half_width(max(dev, 1), shares, recalls, z, deff(max(dev, 1))),
        design_effect=deff(test), cluster_size=float(cluster_size), icc=float(icc), classes=len(shares),
        expected_ua=float(recalls.mean()), warnings=warnings)


# ------------------------------------------------------------------------------------------ what a set holds
def _present(values: pd.Series) -> pd.Series:
    return values.notna() & (values.astype(str).str.strip() != "")


def cluster_ids(clips: pd.DataFrame) -> tuple[str, pd.Series]:
    """``(column, cluster per clip)``: clips cluster by recording, else speaker (a clip without one is a cluster of
    its own), else each clip is its own (``clip``)."""
    ids = "clip:" + clips["utt_id"].astype(str)
    for col in ("recording", "speaker"):
        if col in clips.columns and _present(clips[col]).any():
            return col, clips[col].astype(object).where(_present(clips[col]), ids)
    return "clip", ids


def clips_mean_cluster_size(clusters: pd.Series, max_per_unit: int = 0) -> float:
    """``sum m^2 / sum m`` over the clusters' sizes ``m`` (each at most ``max_per_unit`` when > 0)."""
    sizes = clusters.value_counts().to_numpy(dtype=float)
    if max_per_unit > 0:
        sizes = np.minimum(sizes, max_per_unit)
    return float((sizes**2).sum() / sizes.sum()) if sizes.size else 1.0


def set_composition(clips: pd.DataFrame, selection: pd.DataFrame, icc: float) -> dict[str, dict]:
    """What each drawn set holds: clips, units (what it took whole), recordings, speakers and groups, the clips'
    mean cluster size (per recording, else speaker) and the design effect ``1 + (m - 1) * icc``.

    Args:
        clips: the candidates: ``utt_id`` and any of ``recording, speaker, group``.
        selection: ``utt_id, purpose, unit`` (:func:`~ser_models.planning.evaluation_sets.draw_evaluation_sets`).
        icc: the assumed intra-cluster correlation of being right.

    Returns:
        ``{purpose: {"clips", "units", "recordings", "speakers", "groups", "cluster", "clusters",
        "cluster_size", "design_effect", "effective_clips"}}``.
    """
    meta = clips.assign(utt_id=clips["utt_id"].astype(str)).set_index("utt_id")
    out = {}
    for purpose, rows in selection.groupby("purpose", sort=False):
        held = meta.loc[rows["utt_id"].astype(str)].reset_index()
        col, clusters = cluster_ids(held)
        m = clips_mean_cluster_size(clusters)
        deff = kish_design_effect(m, icc)
        count = {c: int(held.loc[_present(held[c]), c].nunique()) if c in held.columns else 0
                 for c in ("recording", "speaker", "group")}
        out[str(purpose)] = {"clips": len(held), "units": int(rows["unit"].nunique()), "recordings": count["recording"],
                             "speakers": count["speaker"], "groups": count["group"], "cluster": col,
                             "clusters": int(clusters.nunique()), "cluster_size": round(m, 3),
                             "design_effect": round(deff, 3), "effective_clips": round(len(held) / deff, 1)}
    return out


def describe_composition(composition: dict[str, dict], icc: float, min_units: int = MIN_UNITS
                         ) -> tuple[list[str], list[str]]:
    """``(lines, warnings)``: one line per set, and a warning for each set spanning fewer than ``min_units``
    recordings (else speakers) or units."""
    lines, warnings = [], []
    for purpose, c in composition.items():
        lines.append(f"{purpose}: {c['clips']} clips from {c['recordings']} recordings, {c['speakers']} speakers, "
                     f"{c['groups']} groups ({c['units']} units taken); {c['cluster_size']:.3g} clips per "
                     f"{c['cluster']} (clips' mean) -> design effect {c['design_effect']:.2f} at ICC {icc:g} "
                     f"(assumed), worth {c['effective_clips']:g} independent clips")
        spans = min(c["clusters"], c["units"])
        if spans < min_units:
            what = c["cluster"] + "s" if c["clusters"] <= c["units"] else "units"
            warnings.append(f"the {purpose} set spans {spans} {what}, under {min_units}: its UA says more about "
                            "those few than about the model. Set active.evaluation.max_per_unit (e.g. 10) so it "
                            "spans more recordings for the same labels, or add recordings")
    return lines, warnings
