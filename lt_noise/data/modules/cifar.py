"""CIFAR-10 and CIFAR-100, read from the standard "python version" pickled batches.

Layouts (what torchvision's downloader and the official tarballs produce):

    <root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    <root>/cifar-100-python/{train, test, meta}

Each batch is a pickled dict with ``data`` (N x 3072 uint8, channel-major 32x32) and ``labels``
(CIFAR-10) or ``fine_labels`` (CIFAR-100).

Real human label noise (CIFAR-10N / CIFAR-100N, Wei et al. 2022): ``human_labels`` picks a published
label set of the training images (see :mod:`lt_noise.data.modules.cifar_n`), read from
``human_labels_file`` or the standard locations; ``"noisy_coarse"`` makes CIFAR-100 the 20-superclass
problem (training and test labels both coarse).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np

from lt_noise.data.modules.base import DatasetNotFoundError, LTNoiseDataModule, Split
from lt_noise.data.modules.cifar_n import HUMAN_LABEL_SETS, SOURCE, find_human_labels_file, load_human_labels
from lt_noise.validation import check_choice

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
    # Key of the CIFAR-N label sets (lt_noise.data.modules.cifar_n.HUMAN_LABEL_SETS).
    cifar_n: ClassVar[str] = ""

    def __init__(
        self, root: str = "data", *, human_labels: str | None = None, human_labels_file: str | None = None, **kwargs
    ) -> None:
        # Every other keyword goes to LTNoiseDataModule, whose signature rejects misspelled ones.
        super().__init__(root, **kwargs)
        sets = tuple(HUMAN_LABEL_SETS[self.cifar_n])
        check_choice("human_labels", human_labels, (*sets, None))
        if human_labels is not None and self.noise != "none":
            raise ValueError(f"Expected `noise: none` with human labels, but got noise={self.noise!r}")
        self.human_labels = human_labels
        self.human_labels_file = human_labels_file
        self._train_labels: np.ndarray | None = None
        if human_labels == "noisy_coarse":
            # CIFAR-100N's superclass labels: a 20-class problem on the pickles' coarse labels.
            self.num_classes = 20  # type: ignore[misc]
            self.label_key = "coarse_labels"  # type: ignore[misc]

    def observed_labels(self, clean: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The chosen CIFAR-N human labels at ``positions``, or synthetic noise when there are none."""
        if self.human_labels is None:
            return super().observed_labels(clean, positions)
        path, searched = find_human_labels_file(self.root, self.cifar_n, self.human_labels_file, self.folder)
        name = type(self).__name__.removesuffix("DataModule") + "N"
        layout = "  <root>/CIFAR-10_human.pt or CIFAR-100_human.pt (or <root>/CIFAR-N/, or `human_labels_file`)"
        source = SOURCE.format(name=searched[0].name)
        if path is None:
            raise DatasetNotFoundError(name, searched, layout, source, problem="Missing CIFAR-N label file")
        if self._train_labels is None:
            self.load_split("train")
        try:
            labels = load_human_labels(path, self.cifar_n, self.human_labels, self._train_labels)  # type: ignore[arg-type]
        except ValueError as error:
            raise DatasetNotFoundError(name, [path], layout, source, problem=str(error)) from error
        return labels[positions]

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
        if split == "train":
            self._train_labels = np.concatenate(labels)  # the reference of the CIFAR-N label check
        return Split(images=np.concatenate(images), labels=np.concatenate(labels))


class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10 (Krizhevsky 2009): 50,000 train / 10,000 test 32x32 colour images, 10 classes.

    The asymmetric flip map is the APL one (truck->automobile, bird->airplane, cat<->dog, deer->horse).
    CIFAR-10N: ``human_labels`` in ``"aggregate"``, ``"worst"``, ``"random1"``, ``"random2"``, ``"random3"``
    (file ``CIFAR-10_human.pt``).
    """

    num_classes = 10
    cifar_n = "cifar10"
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
    ``flip_map: cifar100_superclass`` for flips within the true superclasses. CIFAR-100N: ``human_labels``
    ``"noisy"`` (fine labels) or ``"noisy_coarse"`` (20 superclasses; file ``CIFAR-100_human.pt``).
    """

    num_classes = 100
    cifar_n = "cifar100"
    folder = "cifar-100-python"
    files = {"train": ("train",), "test": ("test",)}
    label_key = "fine_labels"
    torchvision_name = "CIFAR100"
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    default_flip_map = "cifar100_block"
    source = "set `download: true` (torchvision), or unpack https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz into <root>"
