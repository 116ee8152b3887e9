import numpy as np
import pytest
import torch
from support.fixtures import write_idx, write_mnist_like

from lt_noise.data.modules import DatasetNotFoundError, FashionMNISTDataModule, MNISTDataModule
from lt_noise.data.modules.mnist import read_idx


@pytest.fixture(scope="module")
def fmnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    written = write_mnist_like(root / "FashionMNIST" / "raw", n_train=600, n_test=200)
    return root, written


def test_read_idx_round_trips_gzipped_and_raw(tmp_path):
    array = np.random.default_rng(0).integers(0, 255, size=(3, 4, 5), dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a", array, gz=True)), array)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "b", array, gz=False)), array)


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((4, 3, 3), dtype=np.uint8), gz=False)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)
    other = tmp_path / "y"
    other.write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 10)
    with pytest.raises(ValueError, match="magic"):
        read_idx(other)


def test_reads_the_torchvision_layout(fmnist_root):
    root, written = fmnist_root
    dm = FashionMNISTDataModule(root=str(root), augment="none", num_workers=0)
    dm.setup("fit")
    assert dm.train_size == 600 and dm.class_counts == np.bincount(written["train"][1], minlength=10).tolist()
    x, y, index = dm.train_dataset()[5]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    # normalised pixel -> raw pixel, against the file contents
    raw = (x[0] * dm.std[0] + dm.mean[0]) * 255
    np.testing.assert_allclose(raw.numpy(), written["train"][0][5], atol=1e-3)
    assert y == written["train"][1][5] and index == 5
    test = dm.test_dataset()
    assert len(test) == 200 and test[3][1] == written["test"][1][3]


def test_missing_files_name_the_paths_the_layout_and_the_source(tmp_path):
    dm = MNISTDataModule(root=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotFoundError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "download: true" in message


def test_truncated_file_error_names_the_file(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_mnist_like(folder, n_train=50, n_test=20, gz=False)
    images = folder / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    with pytest.raises(DatasetNotFoundError, match="truncated"):
        MNISTDataModule(root=str(tmp_path)).setup("fit")


def test_fashion_mnist_finds_an_extra_location(tmp_path, monkeypatch):
    elsewhere = tmp_path / "debian"
    write_mnist_like(elsewhere, n_train=40, n_test=20)
    monkeypatch.setattr(FashionMNISTDataModule, "extra_locations", (str(elsewhere),))
    dm = FashionMNISTDataModule(root=str(tmp_path / "empty"))
    assert dm.train_size == 40


@pytest.mark.skipif(
    not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_the_debian_copy_is_the_real_fashion_mnist(tmp_path):
    dm = FashionMNISTDataModule(root=str(tmp_path))
    assert dm.train_size == 60000 and dm.class_counts == [6000] * 10
    assert len(dm.test_dataset()) == 10000
