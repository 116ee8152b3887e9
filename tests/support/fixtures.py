"""Tiny datasets written in the real published formats (IDX, CIFAR pickles), with learnable images.

Images of class c carry a bright horizontal band at a class-specific height over uniform noise, so a
small network learns them within a few epochs; labels are balanced and shuffled.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def synthetic_images(n: int, num_classes: int, height: int, width: int, channels: int, seed: int):
    """(images uint8 (n, H, W[, C]), labels int64 (n,)): class c has a bright band at rows ~c*H/K."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    images = rng.integers(0, 100, size=(n, height, width, channels), dtype=np.uint8)
    band = max(1, height // num_classes)
    for c in range(num_classes):
        top = (c * height) // num_classes
        images[labels == c, top : top + band] = 230
    return (images[..., 0] if channels == 1 else images), labels


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> Path:
    """Write a uint8 array as an IDX file (magic 0x08 = unsigned byte, then ndim, then big-endian dims)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path = Path(str(path) + (".gz" if gz else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)
    return path


def write_mnist_like(
    folder: Path, *, n_train: int = 600, n_test: int = 200, num_classes: int = 10, gz: bool = True, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write the four IDX files of an MNIST-like dataset into ``folder``; return the arrays written."""
    written = {}
    for offset, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        images, labels = synthetic_images(n, num_classes, 28, 28, 1, seed + offset)
        image_name, label_name = IDX_FILES[split]
        write_idx(folder / image_name, images, gz=gz)
        write_idx(folder / label_name, labels.astype(np.uint8), gz=gz)
        written[split] = (images, labels)
    return written


def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    # The CIFAR "python version" stores each image channel-major: 1024 R, 1024 G, 1024 B values.
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def write_cifar10(root: Path, *, n_train: int = 500, n_test: int = 100, seed: int = 0):
    """Write cifar-10-batches-py/ (5 training batches, test batch, meta) under ``root``."""
    folder = root / "cifar-10-batches-py"
    images, labels = synthetic_images(n_train, 10, 32, 32, 3, seed)
    for i, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        _pickle(folder / f"data_batch_{i}", {"data": _cifar_rows(images[part]), "labels": labels[part].tolist()})
    test_images, test_labels = synthetic_images(n_test, 10, 32, 32, 3, seed + 1)
    _pickle(folder / "test_batch", {"data": _cifar_rows(test_images), "labels": test_labels.tolist()})
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    return {"train": (images, labels), "test": (test_images, test_labels)}


def write_cifar100(root: Path, *, n_train: int = 1000, n_test: int = 200, seed: int = 0):
    """Write cifar-100-python/{train, test, meta} under ``root``."""
    folder = root / "cifar-100-python"
    written = {}
    for offset, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        images, labels = synthetic_images(n, 100, 32, 32, 3, seed + offset)
        _pickle(folder / split, {"data": _cifar_rows(images), "fine_labels": labels.tolist(),
                                 "coarse_labels": (labels // 5).tolist()})
        written[split] = (images, labels)
    _pickle(folder / "meta", {"fine_label_names": [f"class{i}" for i in range(100)]})
    return written
