"""model_guesses: the model's guess per clip that annotators see as a pre-annotation."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.active.handover import model_guesses
from ser_models.scoring.scorer import Scores


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


def test_request_details_show_the_guess_the_strategy_score_and_why():
    from ser_models.active.handover import request_details

    scores = _scores()
    guesses = model_guesses(scores, ["y", "z"], ["ang", "hap"], [])
    d = request_details(["y", "z"], "margin", guesses, scores, strategy="margin")
    assert d.columns.tolist() == ["model_guess", "model_confidence", "score", "reason"]
    assert d["model_guess"].tolist() == ["ang", "ang"] and d["model_confidence"].tolist() == pytest.approx([0.6, 0.5])
    # margin scores 1 - (top1 - top2): y's gap is 0.2, z's 0 (most uncertain)
    assert d["score"].tolist() == pytest.approx([0.8, 1.0], abs=1e-4)
    assert d["reason"].tolist() == ["margin: top-2 gap 0.2000", "margin: top-2 gap 0.0000"]
    # informative_diverse ranks by its uncertainty; random has no score; no model, no guess
    d = request_details(["x"], "round 2 pick", guesses=None, scores=scores, strategy="informative_diverse",
                        uncertainty="least_confidence")
    assert d.loc["x", "score"] == pytest.approx(0.1, abs=1e-4) and d.loc["x", "reason"].startswith(
        "round 2 pick: least_confidence 0.10")
    d = request_details(["x", "y"], ["evaluation set (test)", "evaluation set (dev)"])
    assert d["reason"].tolist() == ["evaluation set (test)", "evaluation set (dev)"]
    assert d[["model_guess", "model_confidence", "score"]].isna().all(axis=None)
    assert request_details(["x"], "random", None, scores, strategy="random")["score"].isna().all()
