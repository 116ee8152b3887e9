"""The epoch plan of Dynamic Loss: which batches an epoch is made of, and the loader that serves them.

After the epoch's ranking and split (:class:`~lt_noise.data.sampling.EpochSplit`), the epoch is a list
of *batch descriptors* ``(phase, train_keys, meta_keys)``, one per training step (:func:`epoch_plan`):
warm-up batches of the whole training set, then meta steps (a training-remainder batch paired with the
next meta batch; the meta set is cycled and reshuffled), then the fine-tuning batches over the meta set.
Keys are ``(index, augment_epoch)`` pairs understood by :class:`~lt_noise.data.datasets.IndexedDataset`.
The plan is a pure function of (data seed, epoch, split, rank, world size); the training order is the
``(seed + epoch)`` permutation of :class:`~lt_noise.data.loaders.EpochSampler`, padded and interleaved
across ranks, so a warm-up epoch sees exactly the batches of a plain Classifier epoch and global batch k
of W ranks is batch k of one process with W times the batch.

:class:`BatchPlanSampler` yields the descriptors to a ``DataLoader(batch_size=None)`` over a
:class:`BatchPlanDataset`, which loads one whole batch per descriptor (two views of the training samples,
the augmented view of the meta samples).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lt_noise.data.loaders import fetch_batch
from lt_noise.data.sampling import EpochSplit, split_digest  # re-exported: the split's home is the data layer
from lt_noise.seeding import sample_seed

__all__ = [
    "PHASES",
    "BatchDescriptor",
    "BatchPlanDataset",
    "BatchPlanSampler",
    "EpochSplit",
    "batch_plan_loader",
    "epoch_plan",
    "split_digest",
]

# The three kinds of training batch an epoch is made of (see the module docstring).
PHASES = ("warmup", "meta", "finetune")
#: ``(phase, train_keys (n, 2) or None, meta_keys (m, 2) or None)``.
BatchDescriptor = tuple[str, "np.ndarray | None", "np.ndarray | None"]

# Independent random streams (keys mixed with the seed by sample_seed): the meta-set cycle orders, the
# fine-tuning order, and the augmentation seeds of meta / fine-tuning samples (so that a meta sample
# visited twice in an epoch gets two different augmentations, as in the authors' code).
_META_ORDER_STREAM = 0x3E7A
_FINETUNE_ORDER_STREAM = 0xF17E
_META_AUGMENT_STREAM = 0xA06E
_FINETUNE_AUGMENT_STREAM = 0xA0F7
# Largest value of the meta-set cycle counter per epoch, for the stream keys above (far above any real
# count of meta batches per epoch).
_MAX_CYCLES = 1 << 20


def epoch_plan(
    split: EpochSplit,
    *,
    seed: int,
    batch_size: int,
    drop_last: bool = False,
    meta_batch_size: int | None = None,
    finetune_on_meta: bool = True,
    num_replicas: int = 1,
    rank: int = 0,
) -> list[BatchDescriptor]:
    """This rank's batch descriptors for the epoch of ``split`` (see the module docstring).

    Args:
        split: the epoch's split; a warm-up split (``meta_indices`` None) gives warm-up batches only.
        seed: the datamodule's seed (training order and augmentation, as its own loaders use).
        batch_size: training batch size per process; ``drop_last`` drops an incomplete last batch.
        meta_batch_size: meta batch size per process (None: ``batch_size``, as in the authors' code).
        finetune_on_meta: end the epoch with one pass over the meta set.
        num_replicas, rank: the DDP world size and this process's rank.
    """
    epoch = split.epoch
    order = _permutation(split.train_indices, seed + epoch)
    train = _chunks(_padded_shard(order, num_replicas, rank), batch_size, drop_last=drop_last)
    if split.meta_indices is None:
        return [("warmup", _keys(chunk, epoch), None) for chunk in train]
    meta_batch = meta_batch_size or batch_size
    meta_chunks: list[np.ndarray] = []
    cycle = 0
    while len(meta_chunks) < len(train):
        cycle_order = _permutation(split.meta_indices, sample_seed(seed ^ _META_ORDER_STREAM, epoch, cycle))
        augment = sample_seed(_META_AUGMENT_STREAM, epoch, cycle)
        meta_chunks += [_keys(c, augment) for c in _chunks(_padded_shard(cycle_order, num_replicas, rank), meta_batch)]
        cycle += 1
        if cycle > _MAX_CYCLES:
            raise RuntimeError("Expected a non-empty meta set, but cycling it produced no batches")
    plan: list[BatchDescriptor] = [("meta", _keys(chunk, epoch), meta) for chunk, meta in zip(train, meta_chunks)]
    if finetune_on_meta:
        finetune_order = _permutation(split.meta_indices, sample_seed(seed ^ _FINETUNE_ORDER_STREAM, epoch, 0))
        augment = sample_seed(_FINETUNE_AUGMENT_STREAM, epoch, 0)
        plan += [("finetune", None, _keys(c, augment)) for c in _chunks(_padded_shard(finetune_order, num_replicas, rank), meta_batch)]
    return plan


def _padded_shard(order: np.ndarray, num_replicas: int, rank: int) -> np.ndarray:
    """``DistributedSampler``'s split of ``order``: pad with its first entries to a multiple of the world
    size, then rank r takes positions r, r+W, ... (so global batch k of W ranks with batch B equals batch
    k of one process with batch W·B)."""
    total = math.ceil(len(order) / num_replicas) * num_replicas
    if total > len(order):
        repeats = math.ceil((total - len(order)) / len(order))
        order = np.concatenate([order, np.tile(order, repeats)[: total - len(order)]])
    return order[rank:total:num_replicas]


def _chunks(array: np.ndarray, size: int, *, drop_last: bool = False) -> list[np.ndarray]:
    chunks = [array[i : i + size] for i in range(0, len(array), size)]
    if drop_last and chunks and len(chunks[-1]) < size:
        chunks.pop()
    return chunks


def _permutation(indices: np.ndarray, seed: int) -> np.ndarray:
    """``indices`` in the order of ``torch.randperm`` seeded by ``seed`` (the DistributedSampler recipe)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return indices[torch.randperm(len(indices), generator=generator).numpy()]


def _keys(indices: np.ndarray, augment_epoch: int) -> np.ndarray:
    """(n, 2) int64 keys ``(index, augment_epoch)`` understood by IndexedDataset (seeded augmentation)."""
    return np.stack([indices.astype(np.int64), np.full(len(indices), augment_epoch, dtype=np.int64)], axis=1)


class BatchPlanSampler(DistributedSampler):
    """Yields the epoch's batch descriptors ``(phase, train_keys, meta_keys)`` for one rank.

    A ``DistributedSampler`` subclass only so that Lightning leaves it in place under DDP (it shards
    itself); the plan is set (by the method's ``epoch_train_dataloader``) before Lightning iterates the loader.
    """

    def __init__(self, *, num_replicas: int, rank: int) -> None:
        super().__init__(range(num_replicas), num_replicas=num_replicas, rank=rank, shuffle=False)
        self.plan: list[BatchDescriptor] = []

    def __iter__(self) -> Iterator[BatchDescriptor]:  # type: ignore[override]
        return iter(list(self.plan))

    def __len__(self) -> int:
        return len(self.plan)


class BatchPlanDataset(Dataset):
    """Loads one whole batch per descriptor (the loader runs with ``batch_size=None``).

    Training samples come with both views ``(x_weak, x_strong)``; meta samples with the augmented view.
    """

    def __init__(self, two_views: Dataset, augmented: Dataset) -> None:
        self.two_views = two_views
        self.augmented = augmented

    def __len__(self) -> int:
        return len(self.two_views)  # type: ignore[arg-type]

    def __getitem__(self, item: BatchDescriptor) -> dict[str, Any]:
        phase, train_keys, meta_keys = item
        batch: dict[str, Any] = {"phase": phase}
        if train_keys is not None:
            (weak, strong), labels, index = fetch_batch(self.two_views, train_keys)
            batch["train"] = (weak, strong, labels, index)
        if meta_keys is not None:
            batch["meta"] = tuple(fetch_batch(self.augmented, meta_keys))
        return batch


def batch_plan_loader(datamodule: Any, *, num_replicas: int, rank: int) -> DataLoader:
    """The loader of an epoch plan over ``datamodule``'s training set (set ``loader.sampler.plan`` each
    epoch), with the datamodule's worker settings; build it once per fit (its workers persist)."""
    two_views = datamodule.train_dataset(views=("eval", "train"))
    dataset = BatchPlanDataset(two_views, datamodule.train_dataset(views=("train",)))
    workers = datamodule.loader_workers(two_views)
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=BatchPlanSampler(num_replicas=num_replicas, rank=rank),
        num_workers=workers,
        pin_memory=datamodule.pin_memory and workers > 0,
        persistent_workers=workers > 0,
    )
