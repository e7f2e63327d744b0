"""jobs.evidence refuses to compare auto where every round queries below auto's minimum (random against random),
naming the minimum; budgets that reach it, or a comparison without auto, pass."""

from __future__ import annotations

import pytest

from ser_models.exceptions import ConfigError
from ser_models.runs.evidence import EvidenceConfig, EvidenceJobConfig, check_auto_compares


def _cfg(strategies):
    return EvidenceJobConfig(pool_dir="pool", output_dir="out", evidence=EvidenceConfig(strategies=strategies))


def test_auto_below_its_minimum_is_refused_naming_the_minimum():
    with pytest.raises(ConfigError, match=r"auto_min_labelled=40 .*budgets \[3, 7, 15\].*\[40,80\]"):
        check_auto_compares(_cfg(["auto"]), [3, 7, 15])
    check_auto_compares(_cfg(["auto"]), [20, 40, 80])  # the round at 40 queries with auto's own choice
    check_auto_compares(_cfg(["margin"]), [3, 7, 15])  # margin queries by margin from the first round
