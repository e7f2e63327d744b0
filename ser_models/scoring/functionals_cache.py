"""The eGeMAPS functionals of a pool cached on their own (a ``FeatureCache`` with one "layer" of 88 values).

It lives in ``active/`` beside the cache it uses: the encoders layer (``encoders/functionals.py``, the
extractor) never imports the machinery above it.
"""

from __future__ import annotations

import hashlib

from ser_models.encoders.functionals import EgemapsExtractor, functionals_fingerprint
from ser_models.scoring.cache_keys import pool_lineage
from ser_models.scoring.feature_cache import FeatureCache
from ser_models.scoring.scorer import ScorerConfig


def functionals_cache_key(pool) -> str:
    """sha256 naming the cached functionals of ``pool`` (its lineage: a grown pool's cache computes only its new
    clips) under this extractor."""
    return hashlib.sha256(f"{pool_lineage(pool)}:{functionals_fingerprint()}".encode()).hexdigest()


def functionals_cache(root, pool):
    """The :class:`~ser_models.scoring.feature_cache.FeatureCache` of ``pool``'s functionals under ``root``."""
    return FeatureCache(root, functionals_cache_key(pool), kind="pooled")


def build_functionals_cache(root, pool, ds, scorer_cfg=None, *, verbose: bool = True, in_process: bool = False,
                            total: int | None = None):
    """Compute the functionals of every row of ``ds`` once into :func:`functionals_cache` (a no-op when it is
    ready), on ``scorer_cfg``'s actor pool (its actors, CPUs and batch size); returns the cache.

    Raises:
        ConfigError: the opensmile extra is missing.
    """
    sc = scorer_cfg or ScorerConfig()
    cache = functionals_cache(root, pool)
    cache.build_with(ds, EgemapsExtractor, {"threads": sc.torch_threads()}, 1, sc, verbose=verbose,
                     in_process=in_process, total=total, what="eGeMAPS functionals of")
    return cache
