"""Training state is saved as plain containers and loaded weights-only (no code runs on load)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from ser_models.exceptions import CheckpointError
from ser_models.training.fitting import FitState
from ser_models.training.state_io import load_state, save_state


def test_round_trip_keeps_every_field(tmp_path):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=1e-3)
    state = FitState(epoch=3, best_ua=-math.inf, best_epoch=2, bad_epochs=1,
                     history=[{"epoch": 1, "loss": np.float64(0.5), "dev_ua": np.float32(0.25)}],
                     best_weights={"w": torch.arange(4.0)}, optimizer=opt.state_dict())
    save_state(tmp_path / "s.pt", state, current={"w": torch.ones(2)})
    loaded, extra = load_state(tmp_path / "s.pt", FitState)
    assert (loaded.epoch, loaded.best_ua, loaded.best_epoch, loaded.bad_epochs) == (3, -math.inf, 2, 1)
    assert loaded.history == [{"epoch": 1, "loss": 0.5, "dev_ua": 0.25}]
    assert torch.equal(loaded.best_weights["w"], torch.arange(4.0)) and torch.equal(extra["current"]["w"], torch.ones(2))
    assert loaded.optimizer["param_groups"][0]["lr"] == 1e-3


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_file_that_would_run_code_is_refused(tmp_path):
    torch.save({"state": {"epoch": 1}, "current": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt cannot be loaded safely"):
        load_state(tmp_path / "evil.pt", FitState)


def test_foreign_state_fields_are_refused(tmp_path):
    torch.save({"state": {"epoch": 1, "surprise": 2}}, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="does not hold a FitState"):
        load_state(tmp_path / "s.pt", FitState)
