"""Samplers and the dataloader factory shared by every datamodule and method.

Two samplers, both subclasses of :class:`torch.utils.data.DistributedSampler` so that Lightning leaves
them in place under DDP (it only injects its own sampler when the loader's sampler is not one):

- :class:`EpochSampler` for training: a permutation that is a function of ``(seed, epoch)`` only,
  sharded across ranks by interleaving (rank r takes positions r, r+W, ...). Global batch k of a
  W-process run with per-rank batch B therefore holds exactly the samples of batch k of a 1-process run
  with batch W*B, and a resumed run replays the same order. It yields ``(index, epoch)`` keys so that
  :class:`~lt_noise.data.datasets.IndexedDataset` can seed each sample's augmentation.
- :class:`EvalSampler` for evaluation: interleaved shards *without padding*, so that
  under DDP every test sample is counted exactly once (``DistributedSampler`` pads with duplicates).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from lt_noise.data.batched import BatchKeySampler, InMemoryDataset
from lt_noise.distributed import world  # re-exported: its historical home
from lt_noise.validation import check_positive_int

__all__ = [
    "ClassAwareSampler",
    "EpochSampler",
    "EvalSampler",
    "SAMPLINGS",
    "batch_loader",
    "fetch_batch",
    "make_loader",
    "world",
]

# Training-set sampling schemes: "instance" (each sample once per epoch), "class_balanced" (class uniform,
# then instance uniform: Kang et al. 2020's class-balanced sampling for classifier re-training) and
# "square_root" (class probability proportional to sqrt(n_c), Mahajan et al. 2018 / Kang et al. 2020).
SAMPLINGS = ("instance", "class_balanced", "square_root")


class EpochSampler(DistributedSampler):
    """Seeded per-epoch shuffling, sharded across DDP ranks, yielding ``(index, epoch)`` keys.

    Lightning calls :meth:`set_epoch` at the start of every training epoch (also after a resume), so
    the order is a pure function of ``(seed, epoch)``. When the dataset size is not divisible by the
    world size, the permutation is padded with its first entries (as ``DistributedSampler`` does) so
    every rank runs the same number of steps.
    """

    def __init__(
        self,
        dataset: Sized,
        *,
        seed: int,
        shuffle: bool = True,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        default_replicas, default_rank = world()
        super().__init__(
            dataset,  # type: ignore[arg-type]
            num_replicas=default_replicas if num_replicas is None else num_replicas,
            rank=default_rank if rank is None else rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        for index in super().__iter__():
            yield index, epoch


class ClassAwareSampler(DistributedSampler):
    """Class-aware sampling with replacement, ``len(labels)`` draws per epoch, seeded by ``(seed, epoch)``.

    Each draw picks a class c with probability proportional to ``n_c ** power`` (power 0: class-balanced,
    0.5: square-root sampling) and then a sample of that class uniformly. Draws are padded to a multiple
    of the world size and sharded by interleaving, like :class:`EpochSampler`, and yielded as
    ``(index, epoch)`` keys.
    """

    def __init__(
        self,
        labels,
        *,
        seed: int,
        power: float = 0.0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        default_replicas, default_rank = world()
        labels = torch.as_tensor(labels, dtype=torch.long)
        super().__init__(
            range(len(labels)),  # type: ignore[arg-type]
            num_replicas=default_replicas if num_replicas is None else num_replicas,
            rank=default_rank if rank is None else rank,
            shuffle=True,
            seed=seed,
        )
        counts = torch.bincount(labels)
        present = counts > 0
        self._order = torch.argsort(labels, stable=True)  # sample indices grouped by class
        self._offsets = torch.cumsum(counts, 0) - counts
        self._counts = counts
        self._probs = torch.where(present, counts.double().pow(power), torch.zeros((), dtype=torch.double))

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        classes = torch.multinomial(self._probs, self.total_size, replacement=True, generator=generator)
        within = (torch.rand(self.total_size, generator=generator, dtype=torch.double) * self._counts[classes]).long()
        drawn = self._order[self._offsets[classes] + within]
        epoch = self.epoch
        for index in drawn[self.rank : self.total_size : self.num_replicas].tolist():
            yield index, epoch


class EvalSampler(DistributedSampler):
    """Sequential, interleaved shards without padding: rank r evaluates samples r, r+W, r+2W, ..."""

    def __init__(self, dataset: Sized, *, num_replicas: int | None = None, rank: int | None = None) -> None:
        default_replicas, default_rank = world()
        super().__init__(
            dataset,  # type: ignore[arg-type]
            num_replicas=default_replicas if num_replicas is None else num_replicas,
            rank=default_rank if rank is None else rank,
            shuffle=False,
        )
        self.num_samples = len(range(self.rank, len(dataset), self.num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    train: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    sampler: DistributedSampler | None = None,
) -> DataLoader:
    """A DataLoader with the project's samplers (training: :class:`EpochSampler`, else :class:`EvalSampler`,
    unless a ``sampler`` is given).

    An :class:`~lt_noise.data.batched.InMemoryDataset` is served a whole batch per item (the batched path:
    the sampler's keys grouped by :class:`~lt_noise.data.batched.BatchKeySampler`, no worker processes,
    the batch already on the dataset's device); any other dataset per sample, with ``num_workers``.
    """
    check_positive_int("batch_size", batch_size)
    if sampler is None:
        sampler = EpochSampler(dataset, seed=seed, drop_last=drop_last) if train else EvalSampler(dataset)
    if isinstance(dataset, InMemoryDataset):
        return DataLoader(dataset, batch_size=None, sampler=BatchKeySampler(sampler, batch_size, drop_last=drop_last and train))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last and train,
        pin_memory=pin_memory,
        # Workers survive across epochs: re-forking them every epoch costs seconds on small datasets.
        persistent_workers=num_workers > 0,
    )


def batch_loader(dataset: Dataset, batches: Sequence[Sequence[int]] | Sequence[np.ndarray], *, num_workers: int = 0,
                 pin_memory: bool = False) -> DataLoader:
    """A loader that yields exactly the given batches of indices (or ``(index, epoch)`` keys), in order:
    whole batches from an :class:`~lt_noise.data.batched.InMemoryDataset`, collated samples otherwise."""
    if isinstance(dataset, InMemoryDataset):
        return DataLoader(dataset, batch_size=None, sampler=[np.asarray(b, dtype=np.int64) for b in batches])
    keys = [[tuple(int(v) for v in k) if np.ndim(k) else int(k) for k in b] for b in batches]
    return DataLoader(dataset, batch_sampler=keys, num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0)


def fetch_batch(dataset: Dataset, keys: np.ndarray) -> Any:
    """One batch of ``dataset`` for ``keys`` ((B,) indices or (B, 2) ``(index, epoch)`` keys), collated as a
    loader would: a single call on an :class:`~lt_noise.data.batched.InMemoryDataset`, per sample otherwise."""
    keys = np.asarray(keys, dtype=np.int64)
    if isinstance(dataset, InMemoryDataset):
        return dataset[keys]
    items = [dataset[(int(i), int(e))] for i, e in keys] if keys.ndim == 2 else [dataset[int(i)] for i in keys]
    return default_collate(items)
