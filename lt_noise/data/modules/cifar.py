"""CIFAR-10 and CIFAR-100, read from the standard "python version" pickled batches.

Layouts (what torchvision's downloader and the official tarballs produce):

    <root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    <root>/cifar-100-python/{train, test, meta}

Each batch is a pickled dict with ``data`` (N x 3072 uint8, channel-major 32x32) and ``labels``
(CIFAR-10) or ``fine_labels`` (CIFAR-100).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np

from lt_noise.data.modules.base import DatasetNotFoundError, LTNoiseDataModule, Split

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule", "read_cifar_batch"]

_PIXELS = 3 * 32 * 32


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one pickled CIFAR batch into (N, 32, 32, 3) uint8 images and (N,) int64 labels."""
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as error:
        raise ValueError(f"Could not unpickle CIFAR batch {path}: {error!r} (truncated or corrupt file?)") from error
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        raise ValueError(f"Expected a dict with keys 'data' and {label_key!r} in {path}")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != _PIXELS or len(data) != len(labels):
        raise ValueError(
            f"Expected 'data' of shape (N, {_PIXELS}) and N labels in {path}, but got {data.shape} and {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


class _CIFARDataModule(LTNoiseDataModule):
    folder: ClassVar[str] = ""
    files: ClassVar[dict[str, tuple[str, ...]]] = {}
    label_key: ClassVar[str] = "labels"
    torchvision_name: ClassVar[str] = ""
    source: ClassVar[str] = ""
    image_shape = (3, 32, 32)
    default_augment = "crop_flip"

    def _layout(self) -> str:
        names = ", ".join(name for split in self.files.values() for name in split)
        return f"  <root>/{self.folder}/ containing {names} (the 'python version' pickles)"

    def prepare_data(self) -> None:
        if self.download:
            import torchvision.datasets as tvd

            for train in (True, False):
                getattr(tvd, self.torchvision_name)(str(self.root), train=train, download=True)

    def load_split(self, split: str) -> Split:
        folder = self.root / self.folder
        name = type(self).__name__.removesuffix("DataModule")
        paths = [folder / f for f in self.files[split]]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DatasetNotFoundError(
                name, [folder], self._layout(), self.source, problem=f"Missing file: {missing[0]}"
            )
        images, labels = [], []
        for path in paths:
            try:
                batch_images, batch_labels = read_cifar_batch(path, self.label_key)
            except ValueError as error:
                raise DatasetNotFoundError(name, [path], self._layout(), self.source, str(error)) from error
            images.append(batch_images)
            labels.append(batch_labels)
        return Split(images=np.concatenate(images), labels=np.concatenate(labels))


class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10 (Krizhevsky 2009): 50,000 train / 10,000 test 32x32 colour images, 10 classes.

    The asymmetric flip map is the APL one (truck->automobile, bird->airplane, cat<->dog, deer->horse).
    """

    num_classes = 10
    folder = "cifar-10-batches-py"
    files = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
    label_key = "labels"
    torchvision_name = "CIFAR10"
    # Channel statistics of the CIFAR-10 training set (as in the LDAM-DRW and APL code).
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2023, 0.1994, 0.2010)
    default_flip_map = "cifar10"
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    source = "set `download: true` (torchvision), or unpack https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into <root>"


class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100 (Krizhevsky 2009): 50,000 train / 10,000 test 32x32 colour images, 100 fine classes.

    The default asymmetric flip map is ``"cifar100_block"``, the APL code's convention that PAL's and the
    curriculum paper's tables follow (cycle within consecutive blocks of 5 class indices); use
    ``flip_map: cifar100_superclass`` for flips within the true superclasses.
    """

    num_classes = 100
    folder = "cifar-100-python"
    files = {"train": ("train",), "test": ("test",)}
    label_key = "fine_labels"
    torchvision_name = "CIFAR100"
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    default_flip_map = "cifar100_block"
    source = "set `download: true` (torchvision), or unpack https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz into <root>"
