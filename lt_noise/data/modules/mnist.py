"""MNIST and Fashion-MNIST, read from the standard IDX files (gzipped or not).

Layouts searched, in order (the torchvision layout first):

    <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    <root>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]

and for Fashion-MNIST additionally ``<root>/FashionMNIST/raw`` and the Debian package's copy in
``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import ClassVar

import numpy as np

from lt_noise.data.modules.base import DatasetNotFoundError, LTNoiseDataModule, Split

__all__ = ["FashionMNISTDataModule", "MNISTDataModule", "read_idx"]

# IDX magic numbers: 0x00000801 = unsigned-byte vector (labels), 0x00000803 = unsigned-byte 3-D (images).
_IDX_UBYTE_1D = 0x0801
_IDX_UBYTE_3D = 0x0803
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzipped) into a uint8 array of its declared shape.

    Raises ValueError naming the file when the magic number is wrong or the file is truncated.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:  # gzip raises EOFError on a truncated stream
        raise ValueError(f"Could not read IDX file {path}: {error}") from error
    if len(data) < 8:
        raise ValueError(f"Expected an IDX header in {path}, but the file has only {len(data)} bytes")
    magic = int.from_bytes(data[:4], "big")
    if magic not in (_IDX_UBYTE_1D, _IDX_UBYTE_3D):
        raise ValueError(f"Expected IDX magic 0x0801 or 0x0803 in {path}, but got {magic:#06x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise ValueError(
            f"Expected {expected} data bytes for shape {shape} in {path}, but got {len(data) - header} "
            "(truncated or corrupt file)"
        )
    # A writable copy: torch.from_numpy on a read-only buffer is undefined behaviour if written to.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


class _IDXDataModule(LTNoiseDataModule):
    """Shared reader of the MNIST family; subclasses name their folders and download source."""

    num_classes: ClassVar[int] = 10
    image_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    folder: ClassVar[str] = "MNIST"
    extra_locations: ClassVar[tuple[str, ...]] = ()
    source: ClassVar[str] = ""
    torchvision_name: ClassVar[str] = "MNIST"

    def _candidates(self) -> list[Path]:
        return [self.root / self.folder / "raw", self.root, *map(Path, self.extra_locations)]

    def _find(self, stem: str) -> Path | None:
        for folder in self._candidates():
            for name in (stem, stem + ".gz"):
                if (folder / name).is_file():
                    return folder / name
        return None

    def _layout(self) -> str:
        names = ", ".join(f"{stem}[.gz]" for pair in _FILES.values() for stem in pair)
        return f"  <root>/{self.folder}/raw/ or <root>/ containing {names}"

    def prepare_data(self) -> None:
        if self.download:
            import torchvision.datasets as tvd

            for train in (True, False):
                getattr(tvd, self.torchvision_name)(str(self.root), train=train, download=True)

    def load_split(self, split: str) -> Split:
        image_stem, label_stem = _FILES[split]
        paths = [self._find(image_stem), self._find(label_stem)]
        if None in paths:
            missing = image_stem if paths[0] is None else label_stem
            raise DatasetNotFoundError(
                type(self).__name__.removesuffix("DataModule"),
                self._candidates(),
                self._layout(),
                self.source,
                problem=f"Missing file: {missing}[.gz]",
            )
        try:
            images, labels = (read_idx(p) for p in paths)  # type: ignore[arg-type]
        except ValueError as error:
            raise DatasetNotFoundError(
                type(self).__name__.removesuffix("DataModule"), paths, self._layout(), self.source, str(error)
            ) from error
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetNotFoundError(
                type(self).__name__.removesuffix("DataModule"),
                paths,
                self._layout(),
                self.source,
                problem=f"Expected N images (N, 28, 28) and N labels, but got {images.shape} and {labels.shape}",
            )
        return Split(images=images, labels=labels.astype(np.int64))


class MNISTDataModule(_IDXDataModule):
    """MNIST (LeCun et al. 1998): 60,000 train / 10,000 test 28x28 grey digits, 10 classes.

    Default augmentation is none (the APL papers' MNIST setting; a flip would change a digit's class);
    the asymmetric flip map is the APL one (7->1, 2->7, 5<->6, 3->8).
    """

    folder = "MNIST"
    torchvision_name = "MNIST"
    mean = (0.1307,)
    std = (0.3081,)
    default_augment = "none"
    default_flip_map = "mnist"
    class_names = tuple(str(d) for d in range(10))
    source = "set `download: true` (torchvision), or copy the four IDX files from http://yann.lecun.com/exdb/mnist/"


class FashionMNISTDataModule(_IDXDataModule):
    """Fashion-MNIST (Xiao et al. 2017): 60,000 train / 10,000 test 28x28 grey articles, 10 classes.

    Also found in the Debian package's location /usr/share/datasets/fashion-mnist, the project's offline
    benchmark. Default augmentation is a random padded crop and a horizontal flip (garments are
    left-right symmetric classes).
    """

    folder = "FashionMNIST"
    torchvision_name = "FashionMNIST"
    extra_locations = ("/usr/share/datasets/fashion-mnist",)
    mean = (0.2860,)
    std = (0.3530,)
    default_augment = "crop_flip"
    default_flip_map = "fashion_mnist"
    class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    source = (
        "`apt-get install dataset-fashion-mnist` (Debian; files land in /usr/share/datasets/fashion-mnist), "
        "set `download: true` (torchvision), or copy the IDX files from https://github.com/zalandoresearch/fashion-mnist"
    )
