"""How alike two groups of clips (two languages, two corpora) look to each encoder layer: linear CKA.

Two languages share no utterances, so there is no natural pairing of rows. Rows are paired *within emotion
classes* instead (an ``angry`` clip of language A with an ``angry`` clip of language B, at random, the same
number per class), and CKA is averaged over several random pairings. A layer whose class structure is alike
in both languages scores high; one dominated by language-specific content scores low.

References:
    Kornblith, Norouzi, Lee, Hinton, 2019. Similarity of Neural Network Representations Revisited. ICML.
    Upadhyay, Busso, Lee, 2024. A Layer-Anchoring Strategy for Enhancing Cross-Lingual Speech Emotion
    Recognition. arXiv:2407.04966 (layer similarity across languages chooses the anchor layers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ser_models.exceptions import ConfigError

#: ``anchoring.auto`` / :func:`suggest_anchors` modes.
ANCHOR_MODES = ("most_similar", "least_similar")


def _centred_gram(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    return x @ x.T


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment of two representations of the same N rows.

    Args:
        x: ``[N, D1]``.
        y: ``[N, D2]`` (row i of ``y`` describes the same item, or its class-matched partner, as row i of ``x``).

    Returns:
        A value in [0, 1]; 1 when ``y`` is an orthogonal transform of ``x`` times a scale. NaN when either side
        is constant (no variance to compare).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"linear_cka needs [N, D1] and [N, D2] with N >= 2, got {x.shape} and {y.shape}")
    x, y = x - x.mean(0), y - y.mean(0)
    if x.shape[0] <= max(x.shape[1], y.shape[1]):  # N x N Gram form is cheaper
        k, l_ = x @ x.T, y @ y.T
        hsic, norm = float((k * l_).sum()), float(np.sqrt((k * k).sum() * (l_ * l_).sum()))
    else:  # D x D feature form
        hsic = float(((y.T @ x) ** 2).sum())
        norm = float(np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    return hsic / norm if norm > 0 else float("nan")


def class_matched_pairs(labels_a: Sequence, labels_b: Sequence, rng: np.random.Generator,
                        per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pair rows of two groups that share a class: the same number per class, chosen at random.

    Args:
        labels_a: [Na] class of each row of group A (None = unlabelled, never paired).
        labels_b: [Nb] the same for group B.
        rng: draws which rows are paired.
        per_class: at most this many pairs per class (None = as many as the smaller group has).

    Returns:
        ``(index_a, index_b)``: [P] row indices into A and B; pair p has the same class on both sides.
    """
    a, b = np.asarray(labels_a, dtype=object), np.asarray(labels_b, dtype=object)
    out_a, out_b = [], []
    for cls in sorted({x for x in a if x is not None} & {x for x in b if x is not None}, key=str):
        ia, ib = np.flatnonzero(a == cls), np.flatnonzero(b == cls)
        m = min(len(ia), len(ib), per_class if per_class else len(ia))
        out_a.append(rng.choice(ia, m, replace=False))
        out_b.append(rng.choice(ib, m, replace=False))
    if not out_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_a).astype(np.int64), np.concatenate(out_b).astype(np.int64)


def layer_similarity(features_a: np.ndarray, labels_a: Sequence, features_b: np.ndarray, labels_b: Sequence, *,
                     per_class: int | None = None, repeats: int = 5, seed: int = 0) -> dict:
    """Linear CKA between every layer of group A and every layer of group B, over class-matched pairings.

    Args:
        features_a: ``[Na, L, D]`` per-layer pooled features of group A (the feature cache's rows).
        labels_a: [Na] their classes.
        features_b: ``[Nb, L, D]`` of group B.
        labels_b: [Nb].
        per_class: pairs per class in each pairing (None = all the smaller side has).
        repeats: random pairings averaged.
        seed: seed of the pairings.

    Returns:
        A dict with ``"cka"``, the ``[L, L]`` mean (row = layer of A, column = layer of B), ``"cka_std"``, its
        ``[L, L]`` spread over pairings, and ``"pairs"``, the P rows per pairing. The diagonal is the per-layer
        similarity anchors are chosen from.

    Raises:
        ConfigError: fewer than 4 class-matched pairs (too few clips, or no class in common).
    """
    fa, fb = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if fa.ndim != 3 or fb.ndim != 3 or fa.shape[1:] != fb.shape[1:]:
        raise ValueError(f"layer_similarity needs [N, L, D] features of equal L and D, got {fa.shape} and {fb.shape}")
    rng = np.random.default_rng(seed)
    runs = []
    pairs = 0
    for _ in range(max(int(repeats), 1)):
        ia, ib = class_matched_pairs(labels_a, labels_b, rng, per_class)
        pairs = len(ia)
        if pairs < 4:
            raise ConfigError(f"only {pairs} class-matched clip pairs between the two groups: CKA needs clips of "
                              "the same classes on both sides (check the labels and the group column)")
        # Normalised centred Gram matrices per layer, flattened: CKA of every layer pair is one matrix product.
        ga = np.stack([_centred_gram(fa[ia, l_]).ravel() for l_ in range(fa.shape[1])])
        gb = np.stack([_centred_gram(fb[ib, l_]).ravel() for l_ in range(fb.shape[1])])
        ga /= np.maximum(np.linalg.norm(ga, axis=1, keepdims=True), 1e-300)
        gb /= np.maximum(np.linalg.norm(gb, axis=1, keepdims=True), 1e-300)
        runs.append(ga @ gb.T)
    stack = np.stack(runs)
    return {"cka": stack.mean(0), "cka_std": stack.std(0), "pairs": pairs}


def suggest_anchors(similarity: np.ndarray, k: int, mode: str = "most_similar",
                    candidates: Sequence[int] | None = None) -> list[int]:
    """The ``k`` layers whose per-layer similarity is highest (``most_similar``) or lowest (``least_similar``).

    Args:
        similarity: ``[L]`` per-layer similarity (the diagonal of :func:`layer_similarity`'s ``cka``).
        k: anchors to return.
        mode: ``most_similar`` | ``least_similar``.
        candidates: layers allowed (None = every layer but 0, the input embedding, which no adapter changes).

    Returns:
        Sorted layer indices.
    """
    if mode not in ANCHOR_MODES:
        raise ConfigError(f"anchor mode must be one of {list(ANCHOR_MODES)}, got {mode!r}")
    sim = np.asarray(similarity, np.float64)
    pool = list(range(1, len(sim))) if candidates is None else [int(c) for c in candidates]
    if not 1 <= k <= len(pool):
        raise ConfigError(f"anchoring.top_k={k} must be in 1..{len(pool)} (the candidate layers {pool})")
    order = sorted(pool, key=lambda i: (-sim[i] if mode == "most_similar" else sim[i], i))
    return sorted(order[:k])
