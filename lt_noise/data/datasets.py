"""The indexed dataset: every training sample comes back as ``(x, observed_label, index)``.

``index`` is the sample's position in the (subsampled, corrupted) training set, so that methods can keep
per-sample state (Dynamic Loss ranks, diagnostics) and callbacks can look up the diagnostics-only
``clean_targets`` / ``is_noisy`` arrays of the datamodule.

Augmentation is made reproducible per sample: when the sampler yields a key ``(index, epoch)`` (see
:class:`lt_noise.data.loaders.EpochSampler`), the transform runs under a private torch RNG seeded from
``(seed, epoch, index)``. The augmented view of a sample therefore depends neither on the number of
dataloader workers nor on the DDP world size nor on whether the run was resumed from a checkpoint, which
is what makes exact resume and 1-vs-2-process parity possible with random crops and flips.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from lt_noise.seeding import sample_seed  # re-exported: its historical home

__all__ = ["IndexedDataset", "index_arrays", "to_image_tensor", "sample_seed"]

def to_image_tensor(image: Any) -> torch.Tensor:
    """Convert a decoded image (uint8 array HxW / HxWxC, PIL image or CHW tensor) to a CHW uint8 tensor.

    torchvision's v2 transforms treat a plain CHW tensor as an image, so every source (in-memory arrays
    for MNIST/CIFAR, decoded JPEGs for the large benchmarks) enters the pipeline in the same form.
    """
    if isinstance(image, torch.Tensor):
        return image if image.ndim == 3 else image.unsqueeze(0)
    if isinstance(image, Image.Image):
        # np.array (a writable copy): torch.from_numpy on PIL's read-only buffer warns and is unsafe.
        image = np.array(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
    array = np.asarray(image)
    if array.ndim == 2:
        return torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(0)
    if array.ndim == 3:
        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    raise ValueError(f"Expected an image of shape (H, W) or (H, W, C), but got shape {array.shape}")


def index_arrays(positions: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``positions`` and ``labels`` as 1-D int64 arrays of equal length (a dataset's index into its images
    and its labels), or a ValueError that says what came."""
    positions = np.asarray(positions, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if positions.ndim != 1 or labels.shape != positions.shape:
        raise ValueError(
            f"Expected 1-D `positions` and `labels` of equal length, but got shapes {positions.shape} and {labels.shape}"
        )
    return positions, labels


class IndexedDataset(Dataset):
    """A view of ``images[positions]`` with the given labels, returning ``(x, label, index)``.

    Args:
        images: anything indexable by int that returns one decoded image (see :func:`to_image_tensor`).
        positions: for each sample of this dataset, its position in ``images``.
        labels: the label returned for each sample (observed labels for training, clean for test).
        transform: a callable applied to the CHW uint8 tensor, or a tuple of callables; with a tuple,
            ``x`` is a tuple of views (e.g. a weak and a strong augmentation of the same image).
        seed: base seed of the per-sample augmentation RNG (used when the key carries an epoch).
    """

    def __init__(
        self,
        images: Sequence[Any],
        positions: np.ndarray,
        labels: np.ndarray,
        transform: Callable | tuple[Callable, ...] | None = None,
        *,
        seed: int = 0,
    ) -> None:
        positions, labels = index_arrays(positions, labels)
        self.images = images
        self.positions = positions
        self.labels = labels
        self.transform = transform
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.positions)

    def _apply(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if self.transform is None:
            return image
        # Per-sample transforms are small tensor ops: in the main process (num_workers=0) they would run
        # on every intra-op thread, which costs 6-14x on a busy CPU. Workers already use one thread.
        threads = torch.get_num_threads()
        single = threads > 1 and get_worker_info() is None
        if single:
            torch.set_num_threads(1)
        try:
            if isinstance(self.transform, tuple):
                return tuple(view(image) for view in self.transform)
            return self.transform(image)
        finally:
            if single:
                torch.set_num_threads(threads)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, int, int]:
        index, epoch = (key, None) if not isinstance(key, tuple) else key
        index = int(index)
        image = to_image_tensor(self.images[int(self.positions[index])])
        if epoch is None:
            x = self._apply(image)
        else:
            # A private RNG stream per (seed, epoch, sample): torchvision's random transforms draw from
            # the global CPU generator, so save and restore it to leave the caller's stream untouched.
            # (Seeding the generator directly: torch.manual_seed would also seed CUDA, at ~0.5 ms a call.)
            generator = torch.default_generator
            state = generator.get_state()
            try:
                generator.manual_seed(sample_seed(self.seed, int(epoch), index))
                x = self._apply(image)
            finally:
                generator.set_state(state)
        return x, int(self.labels[index]), index
