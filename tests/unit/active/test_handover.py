"""model_guesses: the model's guess per clip that annotators see as a pre-annotation."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.active.handover import model_guesses
from ser_models.active.scorer import Scores


def _scores(dims=None):
    probs = np.array([[0.1, 0.9], [0.6, 0.4], [0.5, 0.5]], np.float32)
    return Scores(ids=np.array(["x", "y", "z"]), probs=probs, embedding=np.zeros((3, 1), np.float32),
                  pooled=np.zeros((3, 0), np.float32), dims=dims)


def test_guess_is_the_top_class_and_its_probability_in_the_asked_order():
    g = model_guesses(_scores(), ["y", "x", "missing"], ["ang", "hap"], [])
    assert g.index.tolist() == ["y", "x"]  # a clip the scores lack gets no guess
    assert g["label"].tolist() == ["ang", "hap"]
    assert g["score"].tolist() == pytest.approx([0.6, 0.9])


def test_dimensions_are_guessed_too_and_no_scores_means_no_guess():
    g = model_guesses(_scores(dims=np.array([[1.0], [2.5], [3.0]], np.float32)), ["z"], [], ["arousal"])
    assert g.columns.tolist() == ["arousal"] and g.loc["z", "arousal"] == pytest.approx(3.0)
    assert model_guesses(None, ["x"], ["ang", "hap"], []) is None  # the initial set: no model yet
