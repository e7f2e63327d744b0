import numpy as np
import pytest
import torch

from ser_models.metrics import balanced_nll, classification_metrics, plot_confusion
from ser_models.training.fitting import class_weight_tensor
from ser_models.training.schedule import tri_stage_lambda, tri_stage_scheduler


def test_tri_stage_shape():
    f = tri_stage_lambda(100, 0.1, 0.4)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == 1.0 and f(49) == 1.0
    assert f(75) == pytest.approx(0.5, abs=0.03)
    assert f(100) == pytest.approx(0.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = tri_stage_scheduler(opt, 100, 0.1, 0.4)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(2.0) and lrs[-1] < 0.1


def test_metrics_known_values():
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 0, 0, 1, 2, 0]
    m = classification_metrics(y_true, y_pred, 4)
    assert m["wa"] == pytest.approx(6 / 8)
    assert m["ua"] == pytest.approx((1 + 0.5 + 0.5) / 3)  # class 3 has no support: not averaged in
    assert np.asarray(m["confusion"]).shape == (4, 4)
    assert m["confusion"][1] == [1, 1, 0, 0]
    assert np.isnan(classification_metrics([], [], 4)["ua"])


def test_balanced_nll_weights_each_class_equally():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.5, 0.5]])
    # class 0: three clips at -log 0.9; class 1: one at -log 0.5 -> the mean of the two class means
    assert balanced_nll([0, 0, 0, 1], probs) == pytest.approx((-np.log(0.9) - np.log(0.5)) / 2)
    assert balanced_nll([1], np.array([[1.0, 0.0]])) == pytest.approx(-np.log(1e-7))  # a sure miss is finite
    assert np.isnan(balanced_nll([], np.zeros((0, 2))))


def test_plot_confusion_writes_png(tmp_path):
    plot_confusion([[3, 1], [0, 2]], ["a", "b"], tmp_path / "c.png", title="t")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_class_weights_inverse_frequency():
    w = class_weight_tensor([10, 30, 0, 20], 4)
    assert w[2] == 0
    assert w[0] > w[3] > w[1]
    assert float(w[[0, 1, 3]].mean()) == pytest.approx(1.0)
    assert class_weight_tensor(None, 4) is None
