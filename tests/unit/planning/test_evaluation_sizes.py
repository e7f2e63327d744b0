"""Evaluation sizes from the planner for a pool (``active.evaluation`` sizes left unset): the arithmetic, the cap
on the pool's share, the design effect of clustered clips, and what a drawn set is reported to hold."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ser_models.exceptions import ConfigError
from ser_models.planning.evaluation_sizes import (
    clips_mean_cluster_size,
    cluster_ids,
    describe_composition,
    evaluation_sizes,
    set_composition,
)
from ser_models.planning.ua_precision import kish_design_effect, required_test_size, ua_half_width, z_value

UNIFORM = [0.25] * 4
RECALLS = [0.6] * 4


def test_a_large_pool_of_independent_clips_gets_the_planners_sizes():
    s = evaluation_sizes(10_000, UNIFORM, RECALLS, cluster_size=1.0)
    # 1.96^2 * 0.24 / 0.05^2 = 368.8, as jobs.plan's table; dev is half of it
    assert (s.test_size, s.dev_size, s.needed, s.cap) == (369, 185, 369, 3000)
    assert s.design_effect == 1.0 and s.test_half_width <= 0.05 and not s.warnings
    assert "test 369, dev 185 clips for 4 classes" in s.describe() and "+/-0.050 UA needs 369" in s.describe()


def test_clusters_multiply_the_size_by_the_design_effect():
    s = evaluation_sizes(100_000, UNIFORM, RECALLS, cluster_size=46.0, icc=0.1)
    assert s.design_effect == pytest.approx(5.5)
    assert s.needed == required_test_size(0.05, UNIFORM, RECALLS, z_value(0.95), 5.5) == 2029
    assert s.test_size == 2029 and s.test_half_width <= 0.05


def test_a_cluster_larger_than_the_set_counts_as_the_set():
    # one recording of 5,000 clips: a set of n clips from it is one cluster of n, not of 5,000
    s = evaluation_sizes(100_000, UNIFORM, RECALLS, half_width=0.1, cluster_size=5000.0, icc=0.01)
    first = required_test_size(0.1, UNIFORM, RECALLS, z_value(0.95), kish_design_effect(5000, 0.01))
    assert first < 5000
    assert s.needed == required_test_size(0.1, UNIFORM, RECALLS, z_value(0.95), kish_design_effect(first, 0.01))
    assert s.needed < first


def test_the_reported_460_clip_pool_stays_within_its_share_and_warns():
    # 460 clips in speakers of 46: +/-0.05 needs ~2,000 clips; 30 % of the pool allows 138 for test + dev
    s = evaluation_sizes(460, UNIFORM, RECALLS, cluster_size=46.0, icc=0.1)
    assert s.cap == 138 and (s.test_size, s.dev_size) == (92, 46) and s.test_size + s.dev_size <= 138
    assert s.test_half_width == pytest.approx(ua_half_width(92, UNIFORM, RECALLS, 1.96, 1 + 45 * 0.1), rel=1e-3)
    assert len(s.warnings) == 1 and "needs 2029 clips" in s.warnings[0] and "active.evaluation.max_share" in \
        s.warnings[0] and "max_per_unit" in s.warnings[0]


@pytest.mark.parametrize("clips", [20, 47, 100, 333, 460, 1001, 5000])
@pytest.mark.parametrize("share", [0.1, 0.3, 0.5])
def test_test_plus_dev_never_exceed_the_share(clips, share):
    s = evaluation_sizes(clips, [0.1, 0.2, 0.3, 0.4], RECALLS, cluster_size=3.0, max_share=share)
    assert 1 <= s.test_size and 0 <= s.dev_size and s.test_size + s.dev_size <= math.floor(share * clips)
    assert s.dev_size <= math.ceil(s.test_size / 2)


def test_a_rare_class_under_the_floor_is_warned_about():
    s = evaluation_sizes(100, [0.02, 0.49, 0.49], [0.6] * 3, cluster_size=1.0)
    assert s.test_size == 20 and any("rarest class (share 0.020) is expected 0.4 times" in w for w in s.warnings)


def test_a_share_holding_no_clip_is_refused_naming_the_keys():
    with pytest.raises(ConfigError, match=r"active.evaluation.max_share=0.3 of a pool of 3 clips holds no test clip"):
        evaluation_sizes(3, UNIFORM, RECALLS)


def test_clusters_are_recordings_else_speakers_else_clips():
    clips = pd.DataFrame({"utt_id": list("abcdef"), "recording": ["r1", "r1", "r1", "r2", None, None],
                          "speaker": ["s1", "s1", "s2", "s2", "s3", "s3"]})
    col, ids = cluster_ids(clips)
    assert col == "recording" and list(ids) == ["r1", "r1", "r1", "r2", "clip:e", "clip:f"]
    assert clips_mean_cluster_size(ids) == pytest.approx((9 + 1 + 1 + 1) / 6)
    assert clips_mean_cluster_size(ids, max_per_unit=2) == pytest.approx((4 + 1 + 1 + 1) / 5)
    col, ids = cluster_ids(clips.drop(columns="recording"))
    assert col == "speaker" and ids.nunique() == 3
    assert cluster_ids(clips[["utt_id"]])[0] == "clip"


def test_composition_counts_units_and_design_effect_and_warns_under_the_floor():
    rows = [{"utt_id": f"g{g}r{r}c{c}", "group": f"g{g}", "recording": f"g{g}r{r}", "speaker": f"g{g}r{r}s{c % 2}"}
            for g in range(3) for r in range(4) for c in range(6)]
    clips = pd.DataFrame(rows)
    test = clips[clips.group.isin(["g0", "g1"])].utt_id
    dev = clips[(clips.group == "g2") & clips.recording.isin(["g2r0"])].utt_id
    selection = pd.DataFrame({"utt_id": [*test, *dev], "purpose": ["test"] * len(test) + ["dev"] * len(dev),
                              "unit": [f"group={u[:2]}" for u in test] + ["group=g2"] * len(dev)})
    comp = set_composition(clips, selection, icc=0.2)
    assert comp["test"] == {"clips": 48, "units": 2, "recordings": 8, "speakers": 16, "groups": 2,
                            "cluster": "recording", "clusters": 8, "cluster_size": 6.0,
                            "design_effect": pytest.approx(2.0), "effective_clips": 24.0}
    assert (comp["dev"]["recordings"], comp["dev"]["speakers"], comp["dev"]["clips"]) == (1, 2, 6)
    lines, warnings = describe_composition(comp, icc=0.2)
    assert lines[0].startswith("test: 48 clips from 8 recordings, 16 speakers, 2 groups (2 units taken)")
    assert "design effect 2.00 at ICC 0.2 (assumed)" in lines[0]
    assert len(warnings) == 2 and "the test set spans 2 units, under 10" in warnings[0]
    assert "the dev set spans 1 recordings" in warnings[1] and "active.evaluation.max_per_unit" in warnings[1]
    assert not describe_composition(comp, icc=0.2, min_units=1)[1]


def test_design_effect_agrees_with_the_planners_simulation():
    # the sizes' design effect is the one the planner's beta-binomial simulation carries
    from ser_models.planning.ua_precision import simulated_half_width

    s = evaluation_sizes(100_000, UNIFORM, RECALLS, half_width=0.08, cluster_size=10.0, icc=0.2)
    sim = simulated_half_width(s.test_size, UNIFORM, RECALLS, draws=4000, seed=2, cluster_size=10.0, icc=0.2)
    assert sim == pytest.approx(s.test_half_width, rel=0.12)
    assert np.isclose(s.design_effect, 2.8)
