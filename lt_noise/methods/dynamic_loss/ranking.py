"""The ranking pass of Dynamic Loss and the split it gives: per-sample losses of the whole training set,
their within-class loss-rank bins, and the epoch's meta set (paper section "Hierarchical Sampling
Strategy", Algorithm 1).

Exact under resume and DDP: the pass evaluates fixed, contiguous chunks of the training set (chunk k on
rank k mod W), so every sample's loss comes from the identical batch in any run; the ranks all-gather
``(index, loss, prediction)`` rows and place them by index, so every rank holds the identical arrays and
derives the identical split from ``SeedSequence([seed, epoch])``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from lt_noise.data.loaders import batch_loader
from lt_noise.data.sampling import (
    EpochSplit,
    hierarchical_meta_split,
    loss_rank_bins,
    meta_split_sizes,
    naive_meta_split,
    split_digest,
)
from lt_noise.distributed import all_gather_rows, world

__all__ = ["check_same_split_on_all_ranks", "rank_training_set", "ranking_loader", "split_epoch"]


def ranking_loader(datamodule: Any, *, batch_size: int, num_replicas: int, rank: int) -> DataLoader:
    """Fixed contiguous chunks of ``batch_size`` training samples (eval view), chunk k on rank k mod W."""
    n = datamodule.train_size
    starts = range(rank * batch_size, n, num_replicas * batch_size)
    chunks = [np.arange(s, min(s + batch_size, n)) for s in starts]
    dataset = datamodule.train_dataset(views=("eval",))
    workers = datamodule.loader_workers(dataset)
    return batch_loader(dataset, chunks, num_workers=workers, pin_memory=datamodule.pin_memory and workers > 0)


@torch.no_grad()
def rank_training_set(
    module: Any,
    loader: DataLoader,
    train_size: int,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample losses (N,) float64 and arg-max predictions (N,) int64 of the whole training set.

    ``module`` is the classifier (``module(x)`` logits, ``module.per_sample_loss``, ``module.net``); it
    runs in eval mode (BN running statistics) under ``autocast``, on the loader's un-augmented view,
    against the observed labels. Under DDP the rows are all-gathered and placed by index, so every rank
    returns the identical arrays; a sample the pass missed is an error.
    """
    size, _ = world()
    if size > 1:
        # The next DDP forward would broadcast rank 0's BN statistics anyway; do it now so that every
        # rank ranks with the same network.
        for buffer in module.net.buffers():
            dist.broadcast(buffer, src=0)
    device = module.device
    was_training = module.training
    module.eval()
    indices, losses, predictions = [], [], []
    try:
        for x, labels, index in loader:
            # The module's dtype: float64 under `precision: 64-true` (autocast keeps float32 parameters).
            x, labels = x.to(device=device, dtype=module.dtype), labels.to(device)
            with autocast():
                logits = module(x)
            losses.append(module.per_sample_loss(logits.float(), labels).double())
            predictions.append(logits.argmax(dim=1))
            indices.append(index.to(device))
    finally:
        module.train(was_training)
    index = torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long, device=device)
    loss = torch.cat(losses) if losses else torch.zeros(0, dtype=torch.float64, device=device)
    prediction = torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long, device=device)
    if size > 1:
        rows = all_gather_rows(torch.stack([index.double(), loss, prediction.double()], dim=1))
        index, loss, prediction = rows[:, 0].long(), rows[:, 1], rows[:, 2].long()
    index_np = index.cpu().numpy()
    out_losses = np.full(train_size, np.nan)
    out_predictions = np.full(train_size, -1, dtype=np.int64)
    out_losses[index_np] = loss.cpu().numpy()
    out_predictions[index_np] = prediction.cpu().numpy()
    missing = np.flatnonzero(out_predictions < 0)
    if missing.size:
        raise RuntimeError(f"The ranking pass missed {missing.size} training samples, e.g. index {int(missing[0])}")
    return out_losses, out_predictions


def split_epoch(
    losses: np.ndarray,
    predictions: np.ndarray,
    labels: np.ndarray,
    *,
    epoch: int,
    num_classes: int,
    num_bins: int,
    warmup_epochs: int,
    primary_fraction: float,
    meta_fraction: float,
    meta_sampling: str,
    seed: int,
) -> EpochSplit:
    """The epoch's :class:`EpochSplit` from the ranking pass: loss-rank bins of every sample within its
    observed class, and (after warm-up) the meta set of ``meta_split_sizes`` of the observed class counts,
    hierarchical (seeded by ``SeedSequence([seed, epoch])``) or naive."""
    if not np.isfinite(losses).all():
        bad = np.flatnonzero(~np.isfinite(losses))
        raise ValueError(
            f"Expected finite per-sample losses in the ranking pass of epoch {epoch}, but {bad.size} are not "
            f"(e.g. training index {int(bad[0])}): the classifier has diverged"
        )
    bins = loss_rank_bins(losses, labels, num_classes, num_bins)
    if epoch < warmup_epochs:
        return EpochSplit(epoch, losses, predictions, bins, None, np.arange(len(labels), dtype=np.int64))
    primary, meta = meta_split_sizes(
        np.bincount(labels, minlength=num_classes), primary_fraction=primary_fraction, meta_fraction=meta_fraction
    )
    if meta_sampling == "hierarchical":
        meta_indices, train_indices = hierarchical_meta_split(
            losses, labels, num_classes, primary, meta, seed=np.random.SeedSequence([seed, epoch])
        )
    else:
        meta_indices, train_indices = naive_meta_split(losses, labels, num_classes, meta)
    return EpochSplit(epoch, losses, predictions, bins, meta_indices, train_indices)


def check_same_split_on_all_ranks(split: EpochSplit, device: torch.device) -> None:
    """Raise if the DDP ranks derived different bins or splits (they must: same gathered losses, same seed)."""
    size, _ = world()
    if size == 1:
        return
    digest = torch.tensor([split_digest(split)], dtype=torch.long, device=device)
    digests = [torch.zeros_like(digest) for _ in range(size)]
    dist.all_gather(digests, digest)
    if any(int(d.item()) != int(digest.item()) for d in digests):
        raise RuntimeError(
            f"Expected every DDP rank to derive the same loss-rank bins and meta split in epoch {split.epoch}, "
            f"but their digests differ: {[int(d.item()) for d in digests]}"
        )
