"""MC-dropout masks: drawn per row on the output's device, the same for a row whatever its batch and padding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ser_models.heads.mc_dropout import _mix32, counter_uniforms, row_seeded_dropout, row_subset, row_uniforms

BLOCK = 32

CPU = torch.device("cpu")


def test_cpu_rows_are_the_historical_mersenne_twister_draws():
    # Scores written before masks moved to the device must be reproduced bit for bit on the CPU.
    seed = 12 * 1_000_003 + 3
    expected = torch.rand((17, 5), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(row_uniforms(seed, (17, 5), CPU), expected)


@pytest.mark.parametrize("counter", [False, True])
def test_a_rows_first_frames_do_not_depend_on_its_padded_length(counter):
    short, long = (row_uniforms(7, (n, 6), CPU, counter=counter) for n in (BLOCK + 3, 3 * BLOCK))
    assert short.shape == (BLOCK + 3, 6) and long.shape == (3 * BLOCK, 6)
    assert torch.equal(short, long[: len(short)])
    assert ((0 <= long) & (long < 1)).all()


@pytest.mark.parametrize("counter", [False, True])
def test_rows_with_other_seeds_draw_other_values(counter):
    a, b = (row_uniforms(s, (2 * BLOCK, 4), CPU, counter=counter) for s in (1, 2))
    assert not torch.equal(a, b)
    if counter:  # frames of one row are not copies of each other
        assert not torch.equal(a[:BLOCK], a[BLOCK:])


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


def _lowbias32(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_the_tensor_hash_is_the_32_bit_hash_it_names():
    values = [0, 1, 2, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 123456789]
    got = _mix32(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [_lowbias32(v) for v in values]


def test_counter_uniforms_are_uniform_per_row_and_the_same_alone_or_batched():
    seeds = torch.tensor([5, -3, 2**62 + 7, 5], dtype=torch.int64)
    u = counter_uniforms(seeds, (200, 50), CPU)
    assert u.shape == (4, 200, 50) and ((0 <= u) & (u < 1)).all()
    assert torch.equal(u[0], u[3]) and not torch.equal(u[0], u[1]) and not torch.equal(u[1], u[2])
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.005
    # neighbouring elements are not correlated
    flat = u[1].flatten()
    assert abs(float(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1])) < 0.02
    assert torch.equal(row_uniforms(-3, (200, 50), CPU, counter=True), u[1])


def test_the_hook_takes_the_seeds_of_the_rows_a_grouped_forward_holds():
    p = 0.5
    x = torch.randn(3, 6, 4)
    hook = row_seeded_dropout([21, 22, 23], 1, p)
    whole = hook(nn.Identity(), (x,), x)
    with row_subset([2, 0]):
        part = hook(nn.Identity(), (x[[2, 0]],), x[[2, 0]])
    assert torch.equal(part, whole[[2, 0]])
    with row_subset([1]), pytest.raises(ValueError, match="1 seeds for a batch of 2"):
        hook(nn.Identity(), (x[:2],), x[:2])
