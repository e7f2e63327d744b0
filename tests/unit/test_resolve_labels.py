"""Labels are declared once, when the pool is prepared: ``resolve_labels`` gives a job's model the pool's."""

from __future__ import annotations

import pytest

from ser_models.data.pool import Pool
from ser_models.exceptions import ConfigError
from ser_models.models.model_config import DEFAULT_LABELS, ModelConfig, resolve_labels

POOL_LABELS = ["frustrated", "satisfied", "neutral"]


def _pool(labels) -> Pool:
    return Pool("/data/pools/calls", {"build": "build-x", "config": {"labels": labels}})


def test_an_unset_model_labels_takes_the_pools_in_the_pools_order():
    resolved = resolve_labels(ModelConfig(), _pool(POOL_LABELS))
    assert resolved.labels == POOL_LABELS
    assert ModelConfig().labels == list(DEFAULT_LABELS)  # the config given is not changed


def test_labels_naming_the_pools_classes_stay_in_their_own_order():
    cfg = ModelConfig(labels=["neutral", "frustrated", "satisfied"])
    assert resolve_labels(cfg, _pool(POOL_LABELS)) is cfg


def test_different_labels_are_refused_naming_both_lists():
    with pytest.raises(ConfigError) as err:
        resolve_labels(ModelConfig(labels=["neutral", "angry"]), _pool(POOL_LABELS))
    message = str(err.value)
    assert "model.labels=['neutral', 'angry']" in message
    assert "pool /data/pools/calls was prepared with labels=['frustrated', 'satisfied', 'neutral']" in message


def test_a_pool_of_any_label_and_a_dimensional_model_keep_their_config():
    assert resolve_labels(ModelConfig(), _pool([])).labels == list(DEFAULT_LABELS)
    assert resolve_labels(ModelConfig(), Pool("/p", {"build": "b"})).labels == list(DEFAULT_LABELS)
    dims = ModelConfig(labels=[], dimensions=["arousal"])
    assert resolve_labels(dims, _pool(POOL_LABELS)) is dims


def test_a_pool_declaring_the_default_classes_in_its_own_order_keeps_that_order():
    """The default four classes, declared at prepare_pool in another order: an unset model.labels takes the
    pool's order (the logit order, the confusion matrices' rows, the served labels), not the default's."""
    declared = ["angry", "sad", "neutral", "happy"]
    assert set(declared) == set(DEFAULT_LABELS) and declared != list(DEFAULT_LABELS)
    assert resolve_labels(ModelConfig(), _pool(declared)).labels == declared
    same = ModelConfig(labels=list(DEFAULT_LABELS))
    assert resolve_labels(same, _pool(list(DEFAULT_LABELS))) is same
