"""Whether a round trains on soft labels: only when its targets carry vote shares, and never in a cross-lingual
round (the source group has none), each said in the log."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa

from ser_models.active.round_inputs import trains_on_soft_labels


def _training(soft: list[str | None] | None):
    columns = {"utt_id": [f"u{i}" for i in range(3)], "label": ["sad", "sad", "happy"]}
    if soft is not None:
        columns["soft_label"] = soft
    return SimpleNamespace(targets=lambda: pa.table(columns))


def test_a_round_trains_on_soft_labels_when_some_clips_carry_vote_shares():
    said = []
    shares = '{"sad": 0.67, "happy": 0.33}'
    assert trains_on_soft_labels(_training([shares, None, None]), False, said.append)
    assert said == ["  training on soft labels: 1 of 3 clips carry their annotators' vote shares"]
    said.clear()
    assert not trains_on_soft_labels(_training([shares, None, None]), True, said.append)  # cross-lingual
    assert said == ["  cross_lingual: training on the plurality label of soft-labelled clips"]
    assert not trains_on_soft_labels(_training([None, None, None]), False, print)
    assert not trains_on_soft_labels(_training(None), False, print)  # a ledger without the column
