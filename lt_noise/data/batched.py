"""The batched in-memory data path: whole batches gathered and augmented at once, on the training device.

For every dataset that fits in memory (MNIST, Fashion-MNIST, CIFAR-10/100, CIFAR-N, the synthetic set,
and image lists cached in memory), the training images live as one ``(N, C, H, W)`` uint8 tensor on the
device that trains (the CPU, or the GPU when training on one). A batch is a list of keys from the
project's seeded samplers (:mod:`lt_noise.data.loaders`), grouped by :class:`BatchKeySampler`; the
dataset gathers the batch's images by index and runs the augmentation on the whole batch on that device.
No loader worker processes: the loader runs with ``num_workers=0`` and ``batch_size=None`` (one batch
per key list), so there is no per-sample Python work and nothing to fight the training step for cores.

Reproducibility is the per-sample path's contract: sample i's augmentation in epoch e is a pure function
of ``(seed, epoch, index)``. Its random numbers come from a counter-based generator keyed by
``sample_seed(seed, epoch, index)`` (SplitMix64, vectorised in NumPy): slot k of sample i is
``splitmix64(key_i + k)``, a fixed slot per decision (crop offsets, flip bit, Cutout centre, the
AutoAugment sub-policy, its apply bits and signs). So exact resume, 1-vs-2-process DDP parity and
determinism hold exactly as on the per-sample path, whatever the batch composition. The draws differ from
the per-sample path's (a torch generator reseeded per sample), so the two paths give different but
equally distributed augmentations; with ``augment="none"`` (and at evaluation) the two paths give
bit-identical inputs (tested), so runs made with either reproduce each other.

Operations (the order of :func:`lt_noise.data.transforms.build_train_transform`): padded random crop,
horizontal flip, AutoAugment, normalisation, Cutout (after normalisation, as DeVries & Taylor's code).

AutoAugment is applied *grouped by sampled operation*: each sample draws its sub-policy and, for each of
the sub-policy's two operations, whether it applies and the sign of its magnitude (torchvision's
``AutoAugment`` draws the same three things); then, per stage, the samples that apply the same
(operation, magnitude) are transformed together by torchvision's own kernel for that operation. A policy
has 25 sub-policies of two operations with fixed magnitude bins, so a batch holds a few dozen groups:
every kernel runs batched, and each image gets exactly the transform torchvision's per-image
``AutoAugment`` would give it with the same draws. A fully vectorised version (one affine grid for all
geometric operations, say) would not reproduce torchvision's kernels (nearest-neighbour rounding,
histogram equalisation per image), which is why it was not chosen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler
from torchvision.transforms import v2

from lt_noise.data.datasets import index_arrays
from lt_noise.data.transforms import AUTOAUGMENT_POLICIES, CROP_PADDING_32

__all__ = [
    "BATCHED_AUGMENTATIONS",
    "BatchKeySampler",
    "BatchTransform",
    "InMemoryDataset",
    "sample_keys",
    "sample_uniforms",
    "to_image_batch",
]

# Augmentations the batched path implements (the others need a per-image resize: decoded-JPEG datasets).
BATCHED_AUGMENTATIONS = ("none", "flip", "crop", "crop_flip")

_MASK64 = np.uint64((1 << 64) - 1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# 53 random mantissa bits -> a uniform double in [0, 1).
_DOUBLE_SCALE = 2.0**-53

# The fixed random slot of each decision (appending a decision never changes the others' draws).
_CROP_Y, _CROP_X, _FLIP, _CUTOUT_Y, _CUTOUT_X, _AA_POLICY = 0, 1, 2, 3, 4, 5
_AA_APPLY = (6, 8)  # per AutoAugment stage: apply?  (slot + 1: the sign of a signed magnitude)
_SLOTS = 10


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's mixer on uint64 arrays (wrap-around arithmetic), as in lt_noise's ``sample_seed``."""
    with np.errstate(over="ignore"):
        z = values + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def sample_keys(seed: int, epoch: int | np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``sample_seed(seed, epoch, index)`` for arrays of epochs and indices: (B,) uint64 (63-bit values)."""
    mixed_seed = _splitmix64(np.asarray([seed & int(_MASK64)], dtype=np.uint64))
    epochs = np.asarray(epoch, dtype=np.int64).astype(np.uint64)
    index = np.asarray(indices, dtype=np.int64).astype(np.uint64)
    return _splitmix64(_splitmix64(mixed_seed ^ epochs) ^ index) >> np.uint64(1)


def sample_uniforms(keys: np.ndarray, slots: int = _SLOTS) -> np.ndarray:
    """(B, slots) float64 uniforms in [0, 1): slot k of sample b is ``splitmix64(keys[b] + k)``."""
    with np.errstate(over="ignore"):
        counters = keys[:, None] + np.arange(slots, dtype=np.uint64)[None, :]
    return (_splitmix64(counters) >> np.uint64(11)).astype(np.float64) * _DOUBLE_SCALE


def to_image_batch(images: np.ndarray | Tensor) -> Tensor:
    """A decoded in-memory image array, (N, H, W) grey or (N, H, W, C), as one contiguous (N, C, H, W) uint8 tensor."""
    tensor = torch.as_tensor(np.asarray(images)) if not isinstance(images, Tensor) else images
    if tensor.dtype != torch.uint8:
        raise ValueError(f"Expected uint8 images for the in-memory path, but got dtype {tensor.dtype}")
    if tensor.ndim == 3:
        return tensor.unsqueeze(1).contiguous()
    if tensor.ndim == 4:
        return tensor.permute(0, 3, 1, 2).contiguous()
    raise ValueError(f"Expected images of shape (N, H, W) or (N, H, W, C), but got shape {tuple(tensor.shape)}")


class BatchTransform:
    """A training or evaluation pipeline applied to a whole (B, C, H, W) uint8 batch on its device.

    Args:
        augment: one of :data:`BATCHED_AUGMENTATIONS` (for evaluation: ``"none"``).
        image_size: the side of the (square) images; the crop padding is scaled from 4 px at 32.
        mean, std: per-channel normalisation of the [0, 1] pixel values.
        autoaugment: a torchvision AutoAugment policy name (``"cifar10"``, ``"imagenet"``, ``"svhn"``) or None.
        cutout: side in pixels of the Cutout square (0 = off).

    Calling it with ``keys`` (:func:`sample_keys` of the batch) draws each sample's augmentation from its
    key; ``keys=None`` is only allowed for a pipeline without random operations.
    """

    def __init__(
        self,
        *,
        augment: str = "none",
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        autoaugment: str | None = None,
        cutout: int = 0,
    ) -> None:
        if augment not in BATCHED_AUGMENTATIONS:
            raise ValueError(f"Expected argument `augment` in {BATCHED_AUGMENTATIONS} for the batched path, but got {augment!r}")
        if autoaugment is not None and autoaugment not in AUTOAUGMENT_POLICIES:
            raise ValueError(
                f"Expected argument `autoaugment` in {tuple(AUTOAUGMENT_POLICIES)} or None, but got {autoaugment!r}"
            )
        if cutout < 0:
            raise ValueError(f"Expected argument `cutout` >= 0, but got {cutout}")
        if len(mean) != len(std):
            raise ValueError(f"Expected `mean` and `std` of equal length, but got {len(mean)} and {len(std)}")
        self.augment = augment
        self.image_size = int(image_size)
        self.padding = max(1, round(CROP_PADDING_32 * image_size / 32)) if augment in ("crop", "crop_flip") else 0
        self.flip = augment in ("flip", "crop_flip")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.cutout = int(cutout)
        # torchvision's own policy table, magnitude bins and kernels (see the module docstring).
        self._autoaugment = v2.AutoAugment(AUTOAUGMENT_POLICIES[autoaugment]) if autoaugment is not None else None
        self._constants: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    @property
    def random(self) -> bool:
        """Whether the pipeline has random operations (and so needs the samples' keys)."""
        return bool(self.padding or self.flip or self.cutout or self._autoaugment is not None)

    def __call__(self, images: Tensor, keys: np.ndarray | None = None) -> Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"Expected a (B, C, H, W) uint8 batch, but got dtype {images.dtype}, shape {tuple(images.shape)}")
        if self.random and (keys is None or len(keys) != len(images)):
            raise ValueError(f"Expected one key per image for a random pipeline, but got {None if keys is None else len(keys)} keys")
        draws = sample_uniforms(keys) if self.random else None
        x = images
        if self.padding:
            x = self._crop(x, draws)
        if self.flip:
            flip = torch.from_numpy(draws[:, _FLIP] < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if self._autoaugment is not None:
            x = self._auto_augment(x, draws)
        x = self.normalize(x)
        if self.cutout:
            x = self._cutout(x, draws)
        return x

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 -> float32 in [0, 1] -> (x - mean) / std, with exactly the arithmetic of torchvision's
        ``ToDtype(float32, scale=True)`` and ``Normalize`` (so the per-sample path's inputs are reproduced bit
        for bit)."""
        key = (images.device, torch.float32)
        if key not in self._constants:
            mean = torch.as_tensor(self.mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
            std = torch.as_tensor(self.std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
            self._constants[key] = (mean, std)
        mean, std = self._constants[key]
        return images.to(torch.float32).mul_(1.0 / 255).sub_(mean).div_(std)

    def _crop(self, x: Tensor, draws: np.ndarray) -> Tensor:
        """Zero-pad by ``padding`` and take each sample's (H, W) window at its drawn offset (as RandomCrop)."""
        batch, _, height, width = x.shape
        pad = self.padding
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        offset_y = torch.from_numpy(np.floor(draws[:, _CROP_Y] * (2 * pad + 1)).astype(np.int64)).to(x.device)
        offset_x = torch.from_numpy(np.floor(draws[:, _CROP_X] * (2 * pad + 1)).astype(np.int64)).to(x.device)
        rows = offset_y[:, None] + torch.arange(height, device=x.device)  # (B, H)
        cols = offset_x[:, None] + torch.arange(width, device=x.device)  # (B, W)
        channels = x.shape[1]
        out = padded.gather(2, rows[:, None, :, None].expand(batch, channels, height, padded.shape[3]))
        return out.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))

    def _cutout(self, x: Tensor, draws: np.ndarray) -> Tensor:
        """Zero each sample's ``cutout`` square centred at its drawn pixel, clipped at the border (as :class:`Cutout`)."""
        _, _, height, width = x.shape
        centre_y = torch.from_numpy(np.floor(draws[:, _CUTOUT_Y] * height).astype(np.int64)).to(x.device)
        centre_x = torch.from_numpy(np.floor(draws[:, _CUTOUT_X] * width).astype(np.int64)).to(x.device)
        half, odd = self.cutout // 2, self.cutout % 2
        ys = torch.arange(height, device=x.device)[None, :]
        xs = torch.arange(width, device=x.device)[None, :]
        in_y = (ys >= centre_y[:, None] - half) & (ys < centre_y[:, None] + half + odd)  # (B, H)
        in_x = (xs >= centre_x[:, None] - half) & (xs < centre_x[:, None] + half + odd)  # (B, W)
        mask = in_y[:, None, :, None] & in_x[:, None, None, :]
        return x.masked_fill(mask, 0.0)

    def _auto_augment(self, x: Tensor, draws: np.ndarray) -> Tensor:
        """AutoAugment grouped by sampled operation (module docstring): torchvision's draws and kernels."""
        augment = self._autoaugment
        policies = augment._policies
        height, width = x.shape[-2:]
        policy_ids = np.minimum((draws[:, _AA_POLICY] * len(policies)).astype(np.int64), len(policies) - 1)
        x = x.clone()
        for stage, slot in enumerate(_AA_APPLY):
            groups: dict[tuple[str, float], list[int]] = {}
            for sample, policy_id in enumerate(policy_ids.tolist()):
                name, probability, magnitude_bin = policies[policy_id][stage]
                if not draws[sample, slot] <= probability:
                    continue
                magnitudes_fn, signed = augment._AUGMENTATION_SPACE[name]
                magnitudes = magnitudes_fn(10, height, width)
                magnitude = 0.0 if magnitudes is None else float(magnitudes[magnitude_bin])
                if magnitudes is not None and signed and draws[sample, slot + 1] <= 0.5:
                    magnitude *= -1
                groups.setdefault((name, magnitude), []).append(sample)
            for (name, magnitude), members in groups.items():
                index = torch.tensor(members, device=x.device)
                x[index] = augment._apply_image_or_video_transform(
                    x[index], name, magnitude, interpolation=augment.interpolation, fill=augment._fill
                )
        return x


class InMemoryDataset(Dataset):
    """``images[positions]`` with their labels, served a whole batch per item on the images' device.

    ``dataset[keys]`` takes a batch of keys: an (B, 2) int64 array of ``(index, epoch)`` pairs (training;
    the epoch keys the random augmentation) or a (B,) array of indices (evaluation), and returns
    ``(x, labels, index)``, with ``x`` a tuple of views when several transforms are given (e.g. Dynamic
    Loss's un-augmented and augmented views of the same images, gathered once). A single key, an int or
    an ``(index, epoch)`` tuple, gives one sample ``(x, label, index)`` as
    :class:`~lt_noise.data.datasets.IndexedDataset` does (for inspection; loaders ask for batches; an int
    alone is augmented as in epoch 0).

    Args:
        images: (N, C, H, W) uint8 tensor of the whole split (see :func:`to_image_batch`).
        positions: for each sample of this dataset, its row in ``images``.
        labels: the label of each sample (observed labels for training, clean for test).
        transform: a :class:`BatchTransform`, or a tuple of them (one per view).
        seed: the base seed of the per-sample augmentation keys.
    """

    def __init__(
        self,
        images: Tensor,
        positions: np.ndarray,
        labels: np.ndarray,
        transform: BatchTransform | tuple[BatchTransform, ...],
        *,
        seed: int = 0,
    ) -> None:
        positions, labels = index_arrays(positions, labels)
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise ValueError(f"Expected (N, C, H, W) uint8 images, but got dtype {images.dtype}, shape {tuple(images.shape)}")
        if positions.size and (positions.min() < 0 or positions.max() >= len(images)):
            raise ValueError(f"Expected positions in [0, {len(images)}), but got values in [{positions.min()}, {positions.max()}]")
        self.images = images
        self.positions = positions
        self.labels = labels
        self.transform = transform
        self.seed = int(seed)
        self._on_device: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}

    @property
    def transforms(self) -> tuple[BatchTransform, ...]:
        return self.transform if isinstance(self.transform, tuple) else (self.transform,)

    def to(self, device: torch.device | str) -> InMemoryDataset:
        """Keep (a copy of) the images, positions and labels on ``device``: batches are gathered there."""
        device = torch.device(device)
        if device not in self._on_device:
            self._on_device[device] = (
                self.images.to(device),
                torch.from_numpy(self.positions).to(device),
                torch.from_numpy(self.labels).to(device),
            )
        self.device = device
        return self

    device: torch.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, keys: Any) -> tuple[Any, Any, Any]:
        if isinstance(keys, (int, np.integer, tuple)):  # one sample, as IndexedDataset: a batch of one
            # An index alone gets epoch 0's augmentation (the per-sample path would draw from the global RNG).
            key = keys if isinstance(keys, tuple) else (int(keys), 0)
            x, labels, index = self[np.asarray([key], dtype=np.int64)]
            views = tuple(view[0] for view in x) if isinstance(x, tuple) else x[0]
            return views, int(labels[0]), int(index[0])
        keys = np.asarray(keys, dtype=np.int64)
        if keys.ndim == 2 and keys.shape[1] == 2:
            index, epochs = keys[:, 0], keys[:, 1]
        elif keys.ndim == 1:
            index, epochs = keys, None
        else:
            raise ValueError(f"Expected a batch of keys of shape (B,) or (B, 2), but got shape {keys.shape}")
        images, positions, labels = self.to(self.device)._on_device[self.device]
        index_t = torch.from_numpy(index).to(self.device)
        raw = images.index_select(0, positions[index_t])
        needs_keys = any(t.random for t in self.transforms)
        if needs_keys and epochs is None:
            raise ValueError("Expected (index, epoch) keys for a randomly augmented view, but got indices only")
        sample = sample_keys(self.seed, epochs, index) if needs_keys else None
        views = tuple(t(raw, sample) for t in self.transforms)
        x = views if isinstance(self.transform, tuple) else views[0]
        return x, labels[index_t], index_t


class BatchKeySampler(DistributedSampler):
    """Groups the keys of a per-sample sampler into batches (a list of keys per item).

    A ``DistributedSampler`` subclass so that Lightning leaves it in place under DDP: the wrapped sampler
    (:class:`~lt_noise.data.loaders.EpochSampler`, :class:`~lt_noise.data.loaders.ClassAwareSampler` or
    :class:`~lt_noise.data.loaders.EvalSampler`) already shards across ranks, and :meth:`set_epoch` is
    forwarded to it. Batch k therefore holds exactly the samples of batch k of the per-sample loader.
    """

    def __init__(self, sampler: DistributedSampler, batch_size: int, *, drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"Expected argument `batch_size` >= 1, but got {batch_size}")
        super().__init__(range(sampler.num_replicas), num_replicas=sampler.num_replicas, rank=sampler.rank, shuffle=False)
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = drop_last

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[np.ndarray]:  # type: ignore[override]
        keys = np.asarray(list(iter(self.sampler)), dtype=np.int64)
        for start in range(0, len(keys), self.batch_size):
            batch = keys[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch

    def __len__(self) -> int:
        count = len(self.sampler)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)
