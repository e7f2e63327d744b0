"""Linear CKA and CORAL against straightforward reference implementations on small inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser_models.analysis import class_matched_pairs, layer_similarity, linear_cka, suggest_anchors
from ser_models.exceptions import ConfigError
from ser_models.training.anchoring import coral_loss, feature_covariance


def reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """HSIC with an explicit centring matrix H (Kornblith et al., eq. 3, linear kernels)."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


@pytest.mark.parametrize("n,d1,d2", [(12, 5, 7), (40, 3, 4), (6, 20, 9)])  # both the Gram and the feature form
def test_linear_cka_matches_reference(n, d1, d2):
    rng = np.random.default_rng(n)
    x, y = rng.normal(size=(n, d1)), rng.normal(size=(n, d2))
    y[:, 0] += 2 * x[:, 0]
    assert linear_cka(x, y) == pytest.approx(reference_cka(x, y), rel=1e-10)


def test_linear_cka_invariances_and_range():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q + 5.0) == pytest.approx(1.0)  # rotation, isotropic scale, shift
    noise = rng.normal(size=(30, 6))
    assert 0.0 <= linear_cka(x, noise) < 0.6
    assert np.isnan(linear_cka(np.ones((5, 2)), x[:5]))


def test_class_matched_pairs_pair_same_classes_and_balance():
    rng = np.random.default_rng(0)
    a = ["angry"] * 5 + ["sad"] * 3 + [None] * 2
    b = ["sad"] * 6 + ["angry"] * 2 + ["happy"] * 4
    ia, ib = class_matched_pairs(a, b, rng)
    assert [a[i] for i in ia] == [b[i] for i in ib]
    assert sorted(a[i] for i in ia) == ["angry"] * 2 + ["sad"] * 3  # min per class, 'happy' absent on one side
    assert len(set(ia)) == len(ia) and len(set(ib)) == len(ib)
    ia, _ = class_matched_pairs(a, b, rng, per_class=1)
    assert len(ia) == 2


def test_layer_similarity_finds_the_shared_layer():
    rng = np.random.default_rng(1)
    n, num_layers, d = 60, 4, 8
    labels = np.asarray(["a", "b", "c"] * (n // 3), dtype=object)
    centres = rng.normal(size=(3, d)) * 3
    code = {"a": 0, "b": 1, "c": 2}

    def group():
        feats = rng.normal(size=(n, num_layers, d))
        # layer 2 carries the class in both groups; the others are noise
        feats[:, 2] += centres[[code[x] for x in labels]]
        return feats

    sim = layer_similarity(group(), labels, group(), labels, repeats=3, seed=0)
    diag = np.diag(sim["cka"])
    assert sim["cka"].shape == (num_layers, num_layers) and sim["pairs"] == n
    assert diag.argmax() == 2 and diag[2] > 2 * np.delete(diag, 2).max()
    assert suggest_anchors(diag, 1, "most_similar") == [2]
    assert 2 not in suggest_anchors(diag, 2, "least_similar")
    # the per-pair values equal a direct CKA of the same pairing
    ia, ib = class_matched_pairs(labels, labels, np.random.default_rng(0))
    ga, gb = group(), group()
    one = layer_similarity(ga, labels, gb, labels, repeats=1, seed=0)["cka"]
    assert one[1, 3] == pytest.approx(linear_cka(ga[ia, 1], gb[ib, 3]))


def test_layer_similarity_refuses_disjoint_classes():
    with pytest.raises(ConfigError, match="class-matched"):
        layer_similarity(np.zeros((4, 2, 3)), ["a"] * 4, np.zeros((4, 2, 3)), ["b"] * 4)


def test_suggest_anchors_validates():
    with pytest.raises(ConfigError, match="top_k"):
        suggest_anchors(np.arange(3.0), 3)
    with pytest.raises(ConfigError, match="anchor mode"):
        suggest_anchors(np.arange(3.0), 1, "closest")
    assert suggest_anchors([0.9, 0.1, 0.5, 0.7], 2) == [2, 3]  # layer 0 is never a candidate by default


def test_coral_matches_reference_and_is_zero_for_identical_distributions():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(9, 4)), rng.normal(size=(7, 4)) * 2
    cs, ct = np.cov(s, rowvar=False), np.cov(t, rowvar=False)
    expected = ((cs - ct) ** 2).sum() / (4 * 4 ** 2)
    got = coral_loss(torch.tensor(s), torch.tensor(t))
    assert float(got) == pytest.approx(expected, rel=1e-10)
    assert torch.allclose(feature_covariance(torch.tensor(s)), torch.tensor(cs))
    # the same rows, a shifted copy: zero
    assert float(coral_loss(torch.tensor(s), torch.tensor(s + 3.0))) == pytest.approx(0.0, abs=1e-12)
    # two large samples of one distribution are near zero, a different covariance is far from it
    a, b = torch.randn(20000, 4), torch.randn(20000, 4)
    far = float(coral_loss(a, b * torch.tensor([1.0, 3.0, 1.0, 0.3])))
    assert float(coral_loss(a, b)) < 1e-3 < far / 100


def test_coral_is_differentiable_and_pulls_covariances_together():
    torch.manual_seed(0)
    target = torch.randn(64, 3) * torch.tensor([2.0, 0.5, 1.0])
    source = torch.randn(64, 3, requires_grad=True)
    opt = torch.optim.SGD([source], lr=5.0)
    first = float(coral_loss(source, target).detach())
    for _ in range(200):
        opt.zero_grad()
        loss = coral_loss(source, target)
        loss.backward()
        opt.step()
    assert float(coral_loss(source, target).detach()) < first / 20
    with pytest.raises(ValueError, match="feature width"):
        coral_loss(torch.zeros(3, 2), torch.zeros(3, 4))
