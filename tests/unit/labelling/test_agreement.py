"""Several annotators per clip: tallies, Krippendorff's alpha against the published example, the round report."""

from __future__ import annotations

import pytest

from ser_models.labelling.agreement import (
    agreement_report,
    dimension_agreement,
    krippendorff_alpha_interval,
    krippendorff_alpha_nominal,
    tally,
)


def test_tally_plurality_ties_and_soft_shares():
    v = tally(["sad", "ang", "sad"], ["ang", "hap", "sad"])
    assert (v.label, v.tied, v.votes) == ("sad", False, 3) and v.share == pytest.approx(2 / 3)
    assert v.soft == pytest.approx({"ang": 1 / 3, "sad": 2 / 3}) and list(v.soft) == ["ang", "sad"]
    tie = tally(["sad", "hap"], ["ang", "hap", "sad"])
    assert tie.tied and tie.label == "hap" and tie.share == 0.5  # the class listed first wins a tie
    with pytest.raises(ValueError):
        tally([], ["ang"])


def test_krippendorff_alpha_matches_the_published_nominal_example():
    """Krippendorff (2011), "Computing Krippendorff's alpha-reliability", 4 coders x 12 units with missing
    values, nominal alpha = 0.743."""
    units = [[1, 1, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4], [4, 4, 4, 4],
             [1, 1, 2, 1], [2, 2, 2, 2], [5, 5, 5], [1, 1], [3]]
    assert krippendorff_alpha_nominal([[str(x) for x in u] for u in units]) == pytest.approx(0.743, abs=5e-4)
    # the same data as interval values (slider ratings): the paper's 0.849
    assert krippendorff_alpha_interval(units) == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha_interval([[2.0, 2.0], [4.0, 4.0]]) == 1.0
    assert krippendorff_alpha_interval([[3.0, 3.0], [3.0, 3.0]]) is None
    d = dimension_agreement([[1.0, 3.0], [4.0, 4.0], [5.0]])
    assert d["mean_sd"] == pytest.approx(0.5) and d["alpha"] == krippendorff_alpha_interval([[1.0, 3.0], [4.0, 4.0]])
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == 1.0
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "b"]]) == pytest.approx(0.0)
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]) is None  # no expected disagreement
    assert krippendorff_alpha_nominal([["a"], ["b"]]) is None


def test_agreement_report():
    report = agreement_report([["a", "a"], ["a", "b", "b"], ["c"]])
    assert report["clips"] == 3 and report["votes"] == 6 and report["multi_annotated"] == 2
    assert report["majority_share"] == pytest.approx((1 + 2 / 3) / 2)
    assert report["pairwise"] == pytest.approx((1 + 1) / (1 + 3)) and report["unanimous"] == 0.5
    assert agreement_report([["a"]])["alpha"] is None
