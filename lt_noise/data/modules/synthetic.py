"""A synthetic, in-memory benchmark: learnable random images of any shape and class count.

For benchmarks (step time does not depend on the pixels), smoke tests of a new method, and CI. Images of
class c are uniform noise plus a bright horizontal band whose height depends on c, so a network learns
them quickly; the base class's imbalance and noise options apply as to any dataset.
"""

from __future__ import annotations

import numpy as np

from lt_noise.data.modules.base import LTNoiseDataModule, Split
from lt_noise.validation import check_int

__all__ = ["SyntheticDataModule"]

# Pixel values of the background noise and of the class band (uint8).
NOISE_MAX = 100
BAND_VALUE = 230


def synthetic_split(n: int, num_classes: int, shape: tuple[int, int, int], seed: int) -> Split:
    channels, height, width = shape
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    images = rng.integers(0, NOISE_MAX, size=(n, height, width, channels), dtype=np.uint8)
    band = max(1, height // num_classes)
    for c in range(num_classes):
        top = (c * height) // num_classes
        images[labels == c, top : top + band] = BAND_VALUE
    return Split(images=images[..., 0] if channels == 1 else images, labels=labels)


class SyntheticDataModule(LTNoiseDataModule):
    """Random learnable images: ``train_size`` / ``test_size`` samples of ``image_shape`` (C, H, W).

    Args:
        num_classes: number of classes.
        image_shape: (channels, height, width) of the images.
        train_size: training samples before subsampling (balanced across classes).
        test_size: test samples (balanced).
        **kwargs: the options of :class:`LTNoiseDataModule` (root is unused).
    """

    default_augment = "none"

    def __init__(
        self,
        root: str = "unused",
        *,
        num_classes: int = 10,
        image_shape: tuple[int, int, int] = (3, 32, 32),
        train_size: int = 5000,
        test_size: int = 1000,
        **kwargs,
    ) -> None:
        check_int("num_classes", num_classes, minimum=2)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"Expected `image_shape` (C, H, W) of positive sizes, but got {tuple(image_shape)}")
        if min(train_size, test_size) < num_classes:
            raise ValueError(f"Expected train_size and test_size >= num_classes={num_classes}, got {train_size}, {test_size}")
        self._num_classes = int(num_classes)
        self._shape = tuple(int(s) for s in image_shape)
        self.train_samples = train_size
        self.test_samples = test_size
        super().__init__(root, **kwargs)

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return self._num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._shape  # type: ignore[return-value]

    @property
    def mean(self) -> tuple[float, ...]:  # type: ignore[override]
        return (0.5,) * self._shape[0]

    @property
    def std(self) -> tuple[float, ...]:  # type: ignore[override]
        return (0.5,) * self._shape[0]

    def load_split(self, split: str) -> Split:
        n = self.train_samples if split == "train" else self.test_samples
        return synthetic_split(n, self._num_classes, self._shape, seed=self.seed + (split != "train"))
