"""lt_noise.distributed: the identity in one process, and on 2 gloo ranks the sums, means and gathers the
methods rely on (the differentiable sum of Dynamic Loss's virtual step included)."""

from __future__ import annotations

import pytest
import torch
from support.distributed import run_on_ranks

from lt_noise.distributed import all_gather_rows, all_reduce_, all_reduce_mean_, global_mean, world, world_size


def test_one_process_is_the_identity():
    assert world() == (1, 0) and world_size() == 1
    tensor = torch.tensor([1.0, 2.0])
    assert all_reduce_(tensor) is tensor and tensor.tolist() == [1.0, 2.0]
    grads = [torch.tensor([3.0]), torch.tensor([[4.0, 5.0]])]
    all_reduce_mean_(grads)
    assert [g.tolist() for g in grads] == [[3.0], [[4.0, 5.0]]]
    rows = torch.arange(6.0).reshape(3, 2)
    assert all_gather_rows(rows) is rows
    same = [torch.ones(2), None]
    assert global_mean(same) is same


def _on_rank(rank: int, world_size_: int, out: str) -> None:
    assert world() == (world_size_, rank)
    summed = all_reduce_(torch.tensor([rank + 1.0]))
    maximum = all_reduce_(torch.tensor([float(rank)]), op=torch.distributed.ReduceOp.MAX)
    grads = [torch.tensor([2.0 * rank]), torch.full((2, 2), 1.0 + rank)]
    all_reduce_mean_(grads)
    rows = torch.arange(3 * (rank + 1), dtype=torch.float64).reshape(-1, 3) + 100 * rank  # 1 row, then 2 rows
    gathered = all_gather_rows(rows)
    # the differentiable mean: d/dx of sum_ranks (mean over ranks of (r+1) x)^2 reaches every rank's x
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    mean, none = global_mean([(rank + 1.0) * x, None])
    mean.square().sum().backward()
    torch.save({"summed": summed, "maximum": maximum, "grads": grads, "gathered": gathered, "none": none,
                "grad": x.grad}, f"{out}/rank{rank}.pt")


@pytest.mark.ddp
def test_two_ranks_sum_average_and_gather(tmp_path):
    run_on_ranks(_on_rank, str(tmp_path))
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["summed"].tolist() == [3.0] and got["maximum"].tolist() == [1.0]
        assert got["grads"][0].tolist() == [1.0] and got["grads"][1].tolist() == [[1.5, 1.5], [1.5, 1.5]]
        expected_rows = torch.cat([torch.arange(3.0).reshape(1, 3), torch.arange(6.0).reshape(2, 3) + 100]).double()
        assert torch.equal(got["gathered"], expected_rows)
        assert got["none"] is None
        # mean = 1.5 x on both ranks; the summed objective is 2 (1.5 x)^2, whose gradient through rank r's
        # share (r+1) x / 2 is 2 * 2 * 1.5 x * (r+1) / 2
        torch.testing.assert_close(got["grad"], 2 * 1.5 * torch.tensor([1.0, 2.0]) * (rank + 1))
