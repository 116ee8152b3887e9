"""The torch.distributed helpers of lt-noise, each a no-op (or the identity) in a single process.

Methods, callbacks, metrics and samplers that need the world size, a sum or mean over ranks, or a gather
of per-rank arrays of different lengths call these, so that "am I distributed?" is asked in one place
and every collective reads the same way. Every rank must call a collective the same number of times.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "SumAcrossRanks",
    "all_gather_rows",
    "all_reduce_",
    "all_reduce_mean_",
    "global_mean",
    "is_distributed",
    "world",
    "world_size",
]


def is_distributed() -> bool:
    """Whether a torch.distributed process group is initialised (even of one process)."""
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """``(world_size, rank)`` of the current process group, ``(1, 0)`` outside distributed runs."""
    if is_distributed():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def world_size() -> int:
    """The number of processes of the current process group (1 outside distributed runs)."""
    return dist.get_world_size() if is_distributed() else 1


def all_reduce_(tensor: Tensor, op: dist.ReduceOp = dist.ReduceOp.SUM) -> Tensor:
    """Reduce ``tensor`` in place over all ranks (sum by default) when there is more than one; returns it."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=op)
    return tensor


def all_reduce_mean_(tensors: Sequence[Tensor]) -> None:
    """Replace each tensor (in place) by its mean over ranks, with one all-reduce of their concatenation."""
    size = world_size()
    if size == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= size
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def all_gather_rows(tensor: Tensor) -> Tensor:
    """Every rank's ``tensor`` (n_rank, ...) concatenated along dim 0 in rank order; n_rank may differ.

    Each rank pads its rows to the longest, one ``all_gather`` moves them, and the padding is dropped.
    ``DistributedSampler``-style padding (duplicate samples) is the caller's to remove.
    """
    size = world_size()
    if size == 1:
        return tensor
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(size)]
    dist.all_gather(counts, count)
    rows = [int(c.item()) for c in counts]
    longest = max(rows)
    padded = torch.cat([tensor, tensor.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))])
    gathered = [torch.zeros_like(padded) for _ in range(size)]
    dist.all_gather(gathered, padded)
    return torch.cat([block[:n] for block, n in zip(gathered, rows)])


class SumAcrossRanks(torch.autograd.Function):
    """A differentiable all-reduce (sum): its backward all-reduces the incoming gradient.

    With it, a quantity computed from the global sum (Dynamic Loss's virtual step on the global-batch
    gradient) passes the gradient of the sum of all ranks' objectives back to every rank's share.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return SumAcrossRanks.apply(grad)


def global_mean(tensors: list[Tensor | None]) -> list[Tensor | None]:
    """Differentiable mean over ranks of a list of tensors (None entries pass through), one all-reduce."""
    size = world_size()
    present = [t for t in tensors if t is not None]
    if size == 1 or not present:
        return tensors
    flat = SumAcrossRanks.apply(torch.cat([t.reshape(-1) for t in present])) / size
    out, offset = [], 0
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        out.append(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return out
