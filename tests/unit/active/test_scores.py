import numpy as np
import pytest

from ser_models.active import bald, entropy, least_confidence, margin

UNIFORM, MID, PEAKED = [0.25] * 4, [0.55, 0.3, 0.1, 0.05], [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("fn", [entropy, least_confidence, margin])
def test_order_uniform_mid_peaked(fn):
    s = fn(np.array([PEAKED, UNIFORM, MID], np.float32))
    assert s[1] > s[2] > s[0]
    assert np.isfinite(s).all()


def test_known_values():
    p = np.array([UNIFORM, PEAKED])
    np.testing.assert_allclose(entropy(p), [np.log(4), 0.0], atol=1e-12)
    np.testing.assert_allclose(least_confidence(p), [0.75, 0.0])
    np.testing.assert_allclose(margin(np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2]])), [0.8, 1.0])


def test_bald_disagreement_beats_agreement():
    agree = np.array([[0.25] * 4] * 3)  # uncertain but consistent: aleatoric only
    disagree = np.array([PEAKED, [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    s = bald(np.stack([agree, disagree]))
    assert s[0] == pytest.approx(0.0, abs=1e-12) and s[1] == pytest.approx(np.log(3))


def test_shape_errors():
    with pytest.raises(ValueError, match="mc_probs"):
        bald(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="probs"):
        entropy(np.zeros((3, 4, 2)))


def test_mc_variance_sums_the_sample_variance_over_dimensions():
    from ser_models.active.scores import mc_variance

    samples = np.array([[[3.0, 3.0], [3.0, 3.0]], [[2.0, 1.0], [4.0, 1.0]], [[1.0, 2.0], [5.0, 4.0]]])
    np.testing.assert_allclose(mc_variance(samples), [0.0, 1.0, 4.0 + 1.0])
    with pytest.raises(ValueError, match="T >= 2"):
        mc_variance(samples[:, :1])
