"""What a replay on a run's labels refuses before any work: budgets it cannot answer with, and a labelled pool
whose labels or sets changed (other metadata may change)."""

from __future__ import annotations

import pandas as pd
import pytest

from ser_models.active.loop_config import ActiveConfig
from ser_models.exceptions import ConfigError
from ser_models.runs.run_labels import _changed_targets, check_replay_budgets


def test_budgets_within_half_the_labels_pass_and_the_others_name_the_override():
    check_replay_budgets(ActiveConfig(budget_labels=[25, 50, 100]), 200)
    with pytest.raises(ConfigError, match=r"gathered 200 .* largest budget is 150: set e\.g\. "
                                          r"active\.budget_labels=\[25,50,100\]"):
        check_replay_budgets(ActiveConfig(budget_labels=[50, 150]), 200)
    with pytest.raises(ConfigError, match=r"largest budget is 200"):  # fractions of the labels: up to all of them
        check_replay_budgets(ActiveConfig(budget_fractions=[0.5, 1.0]), 200)
    with pytest.raises(ConfigError, match=r"set active\.budget_hours=\[\] and active\.budget_labels=\[25,50,100\]"):
        check_replay_budgets(ActiveConfig(budget_hours=[0.1, 0.2]), 200)
    with pytest.raises(ConfigError, match="gathered 12 training labels; replaying strategies needs a few dozen"):
        check_replay_budgets(ActiveConfig(budget_labels=[2, 4]), 12)


def test_only_labels_and_sets_count_as_a_change():
    old = pd.DataFrame({"utt_id": ["a", "b", "007"], "label": ["sad", "happy", None], "arousal": [0.5, 0.1, 0.7],
                        "split": ["train", "train", "test"], "speaker": ["s1", "s2", "s3"]})
    moved = old.assign(speaker=["s9", "s2", "s3"], path=["x", "y", "z"])  # metadata only
    assert _changed_targets(old, moved) == []
    relabelled = old.assign(label=["sad", "angry", None])
    assert _changed_targets(old, relabelled) == ["b"]
    resplit = old.assign(split=["train", "dev", "test"])
    assert _changed_targets(old, resplit) == ["b"]
    assert _changed_targets(old, old.assign(arousal=[0.5, 0.1, 0.8])) == ["007"]
    assert _changed_targets(old, old.iloc[:2]) == ["007"]  # a clip gone
    # As read back from the CSV the pool's manifest was written to: the same labels.
    import io

    back = pd.read_csv(io.StringIO(old.to_csv(index=False)), dtype={"utt_id": str}, keep_default_na=False,
                       na_values=[""])
    assert _changed_targets(back, old) == []
