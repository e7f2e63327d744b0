"""Several annotators per clip: one label per clip (majority or soft) and how much the annotators agree.

Pure functions over votes (class names), so the Label Studio oracle, a benchmark or a notebook can share them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Vote", "agreement_report", "dimension_agreement", "krippendorff_alpha_interval",
           "krippendorff_alpha_nominal", "tally"]


@dataclass(frozen=True)
class Vote:
    """The votes of one clip, tallied.

    Attributes:
        label: the plurality label; a tie goes to the class listed first in ``classes`` (repeatable, and the
            ``tied`` flag says it happened).
        share: votes for ``label`` / all votes, in (0, 1].
        tied: another class got as many votes as ``label``.
        soft: ``{class: share of the votes}`` over the classes that got votes (sums to 1).
        votes: number of votes.
    """

    label: str
    share: float
    tied: bool
    soft: dict[str, float]
    votes: int


def tally(votes: Sequence[str], classes: Sequence[str]) -> Vote:
    """Tally one clip's votes.

    Args:
        votes: one class name per annotator (at least one).
        classes: the model's class order (``model.labels``): breaks ties and orders ``soft``.

    Raises:
        ValueError: no votes.
    """
    if not votes:
        raise ValueError("tally needs at least one vote")
    counts = Counter(votes)
    order = {c: k for k, c in enumerate(classes)}
    ranked = sorted(counts, key=lambda c: (-counts[c], order.get(c, len(order)), c))
    top = ranked[0]
    n = len(votes)
    soft = {c: counts[c] / n for c in sorted(counts, key=lambda c: (order.get(c, len(order)), c))}
    return Vote(label=top, share=counts[top] / n, tied=len(ranked) > 1 and counts[ranked[1]] == counts[top],
                soft=soft, votes=n)


def krippendorff_alpha_nominal(units: Sequence[Sequence[str]]) -> float | None:
    """Krippendorff's alpha for nominal labels, any number of annotators per clip.

    Clips with fewer than two votes carry no information about agreement and are left out.

    Args:
        units: one list of votes (class names) per clip.

    Returns:
        alpha in [-1, 1] (1 = perfect agreement, 0 = chance), or None when it is undefined: fewer than two
        pairable votes, or every vote the same class (no expected disagreement).
    """
    pairable = [list(u) for u in units if len(u) >= 2]
    coincidence: Counter = Counter()
    for unit in pairable:
        counts = Counter(unit)
        m = len(unit)
        for c, nc in counts.items():
            for k, nk in counts.items():
                coincidence[c, k] += nc * (nk - (c == k)) / (m - 1)
    totals: Counter = Counter()
    for (c, _), v in coincidence.items():
        totals[c] += v
    n = sum(totals.values())
    if n < 2:
        return None
    observed = sum(v for (c, k), v in coincidence.items() if c != k)
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k)
    if expected == 0:
        return None
    return float(1.0 - (n - 1) * observed / expected)


def krippendorff_alpha_interval(units: Sequence[Sequence[float]]) -> float | None:
    """Krippendorff's alpha for interval values (slider ratings), any number of annotators per clip.

    ``1 - D_o / D_e`` with squared differences: D_o over the pairs of values within a clip (each clip weighted
    by ``1 / (m - 1)``), D_e over all pairs of pairable values. Clips with fewer than two values are left out.

    Args:
        units: one list of values per clip.

    Returns:
        alpha (1 = perfect agreement, 0 = chance), or None when undefined (fewer than two pairable values, or
        every value equal).
    """
    pairable = [[float(v) for v in u] for u in units if len(u) >= 2]
    values = [v for u in pairable for v in u]
    n = len(values)
    if n < 2:
        return None
    observed = 0.0
    for unit in pairable:
        m, total, squares = len(unit), sum(unit), sum(v * v for v in unit)
        observed += 2.0 * (m * squares - total * total) / (m - 1)  # sum over ordered pairs i != j, / (m - 1)
    total, squares = sum(values), sum(v * v for v in values)
    expected = 2.0 * (n * squares - total * total) / (n - 1)
    if expected <= 1e-12:
        return None
    return float(1.0 - observed / expected)


def dimension_agreement(units: Sequence[Sequence[float]]) -> dict:
    """How much annotators agree on one slider: ``alpha`` (Krippendorff, interval) and ``mean_sd`` (mean
    standard deviation of a clip's values) over clips with >= 2 values; None without such clips."""
    multi = [[float(v) for v in u] for u in units if len(u) >= 2]
    if not multi:
        return {"alpha": None, "mean_sd": None}
    sds = [(sum((v - sum(u) / len(u)) ** 2 for v in u) / len(u)) ** 0.5 for u in multi]
    return {"alpha": krippendorff_alpha_interval(multi), "mean_sd": sum(sds) / len(sds)}


def agreement_report(units: Sequence[Sequence[str]]) -> dict:
    """How much a round's annotators agree.

    Args:
        units: one list of votes per clip (clips with a single vote count in ``clips`` only).

    Returns:
        ``clips``, ``votes``, ``multi_annotated`` (clips with >= 2 votes), ``majority_share`` (mean share of
        the plurality label over multi-annotated clips), ``pairwise`` (share of agreeing annotator pairs),
        ``unanimous`` (share of multi-annotated clips with one class), ``alpha`` (Krippendorff, nominal);
        None where there is no multi-annotated clip.
    """
    multi = [list(u) for u in units if len(u) >= 2]
    report = {"clips": len(units), "votes": int(sum(len(u) for u in units)), "multi_annotated": len(multi),
              "majority_share": None, "pairwise": None, "unanimous": None, "alpha": None}
    if not multi:
        return report
    shares, agree, pairs = [], 0, 0
    for unit in multi:
        counts = Counter(unit)
        shares.append(max(counts.values()) / len(unit))
        agree += sum(c * (c - 1) // 2 for c in counts.values())
        pairs += len(unit) * (len(unit) - 1) // 2
    report.update(majority_share=sum(shares) / len(shares), pairwise=agree / pairs,
                  unanimous=sum(s == 1.0 for s in shares) / len(shares), alpha=krippendorff_alpha_nominal(multi))
    return report
