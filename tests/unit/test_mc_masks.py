"""MC-dropout masks: drawn per row on the output's device, the same for a row whatever its batch and padding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ser_models.heads.mc_dropout import MASK_BLOCK_FRAMES, row_seeded_dropout, row_uniforms

CPU = torch.device("cpu")


def test_cpu_rows_are_the_historical_mersenne_twister_draws():
    # Scores written before masks moved to the device must be reproduced bit for bit on the CPU.
    seed = 12 * 1_000_003 + 3
    expected = torch.rand((17, 5), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(row_uniforms(seed, (17, 5), CPU), expected)


@pytest.mark.parametrize("blocked", [False, True])
def test_a_rows_first_frames_do_not_depend_on_its_padded_length(blocked):
    short, long = (row_uniforms(7, (n, 6), CPU, blocked=blocked) for n in (MASK_BLOCK_FRAMES + 3, 3 * MASK_BLOCK_FRAMES))
    assert short.shape == (MASK_BLOCK_FRAMES + 3, 6) and long.shape == (3 * MASK_BLOCK_FRAMES, 6)
    assert torch.equal(short, long[: len(short)])
    assert ((0 <= long) & (long < 1)).all()


@pytest.mark.parametrize("blocked", [False, True])
def test_rows_with_other_seeds_draw_other_values(blocked):
    a, b = (row_uniforms(s, (2 * MASK_BLOCK_FRAMES, 4), CPU, blocked=blocked) for s in (1, 2))
    assert not torch.equal(a, b)
    if blocked:  # blocks of one row are not copies of each other
        assert not torch.equal(a[:MASK_BLOCK_FRAMES], a[MASK_BLOCK_FRAMES:])


def test_the_hook_masks_a_row_the_same_alone_and_in_a_padded_batch():
    p, d = 0.4, 8
    x = torch.randn(1, 10, d)
    alone = row_seeded_dropout([11], 2, p)(nn.Identity(), (x,), x)
    batch = torch.cat([torch.nn.functional.pad(x, (0, 0, 0, 15)), torch.randn(1, 25, d)])  # padded to 25 frames
    together = row_seeded_dropout([11, 12], 2, p)(nn.Identity(), (batch,), batch)
    assert torch.equal(alone[0], together[0, :10])
    kept = alone != 0
    assert 0 < kept.float().mean() < 1  # it drops some, keeps some
    torch.testing.assert_close(alone[kept], x[kept] / (1 - p))


def test_the_hook_refuses_a_seed_count_that_is_not_the_batch():
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="2 seeds for a batch of 3"):
        row_seeded_dropout([1, 2], 0, 0.1)(nn.Identity(), (x,), x)
