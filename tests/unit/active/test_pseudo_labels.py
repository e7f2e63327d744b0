"""Pseudo-labels: CEAL's confident picks, label spreading over the FAISS kNN graph, class-balanced caps."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.active.pseudo_labels import (
    SemiSupervisedConfig,
    balanced_top,
    confident_pseudo_labels,
    label_spreading,
    pseudo_labels,
)
from ser_models.exceptions import ConfigError

CLASSES = ["angry", "happy", "neutral", "sad"]


def test_confident_keeps_sure_unlabelled_clips_balanced_across_classes():
    probs = np.array([[0.97, 0.01, 0.01, 0.01],   # 0: sure angry (labelled: never pseudo-labelled)
                      [0.95, 0.03, 0.01, 0.01],   # 1: sure angry
                      [0.93, 0.05, 0.01, 0.01],   # 2: sure angry, less
                      [0.91, 0.05, 0.03, 0.01],   # 3: sure angry, least
                      [0.02, 0.92, 0.03, 0.03],   # 4: sure happy
                      [0.40, 0.30, 0.20, 0.10]])  # 5: unsure
    unlabelled = np.array([False, True, True, True, True, True])
    pos, cls, conf = confident_pseudo_labels(probs, unlabelled, threshold=0.9, cap=8)  # 2 per class
    assert pos.tolist() == [1, 2, 4] and cls.tolist() == [0, 0, 1]
    np.testing.assert_allclose(conf, [0.95, 0.93, 0.92])
    pos, _, _ = confident_pseudo_labels(probs, unlabelled, threshold=0.99, cap=8)
    assert pos.size == 0


def test_balanced_top_respects_the_per_class_share():
    labels = np.array([0, 0, 0, 1, 1, 2])
    conf = np.array([0.5, 0.9, 0.7, 0.8, 0.6, 0.99])
    assert balanced_top(labels, conf, np.ones(6, bool), 3, cap=6).tolist() == [1, 2, 3, 4, 5]
    assert balanced_top(labels, conf, np.ones(6, bool), 3, cap=3).tolist() == [1, 3, 5]


def test_label_spreading_recovers_two_clusters_from_one_label_each():
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0]])
    x = np.concatenate([centres[0] + rng.normal(0, 0.5, (40, 4)), centres[1] + rng.normal(0, 0.5, (40, 4))])
    seeds = np.full(80, -1)
    seeds[0], seeds[40] = 0, 1
    spread = label_spreading(x, seeds, 2, neighbours=6)
    np.testing.assert_allclose(spread.sum(1), 1.0, atol=1e-9)
    assert (spread[:40].argmax(1) == 0).all() and (spread[40:].argmax(1) == 1).all()


def test_pseudo_labels_never_label_a_labelled_or_excluded_clip():
    rng = np.random.default_rng(1)
    n = 60
    ids = np.array([f"c{i:02d}" for i in range(n)])
    y = np.repeat(np.arange(4), 15)
    emb = np.eye(4)[y] * 4 + rng.normal(0, 0.3, (n, 4))
    probs = np.full((n, 4), 0.02)
    probs[np.arange(n), y] = 0.94
    labelled = {ids[i]: CLASSES[y[i]] for i in (0, 15, 30, 45)}
    for method in ("confident", "propagation"):
        cfg = SemiSupervisedConfig(method=method, threshold=0.5, max_ratio=4.0)
        table = pseudo_labels(cfg, ids, probs, emb, labelled, CLASSES, exclude={"c01"})
        got = dict(zip(table.column("utt_id").to_pylist(), table.column("label").to_pylist()))
        assert not set(got) & (set(labelled) | {"c01"})
        assert len(got) == 16 and all(v == CLASSES[y[int(k[1:])]] for k, v in got.items())  # 4 per class
        assert set(table.column("method").to_pylist()) == {method}


@pytest.mark.parametrize("kwargs,key", [({"method": "magic"}, "method"), ({"threshold": 1.2}, "threshold"),
                                        ({"max_ratio": 0}, "max_ratio"), ({"alpha": 1.0}, "alpha")])
def test_bad_settings_name_their_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"active.semi_supervised.{key}"):
        SemiSupervisedConfig(**kwargs)
