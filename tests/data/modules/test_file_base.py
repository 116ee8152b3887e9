"""The shared bases of the image-file datamodules: options, errors, caching."""

import pytest
from support.image_fixtures import write_oltr

from lt_noise.data.modules import Animal10NDataModule, DatasetNotFoundError, ImageNetLTDataModule
from lt_noise.data.modules.file_base import IMAGENET_MEAN, ImageNetStyleDataModule


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("oltr")
    write_oltr(root, "ImageNet_LT", train_counts=[3, 2, 1])
    return root


def test_options_reach_the_base_class_and_misspellings_are_rejected(root):
    dm = ImageNetLTDataModule(root=str(root), image_size=48, batch_size=7, noise="symmetric", noise_rate=0.1)
    assert dm.batch_size == 7 and dm.noise_rate == 0.1 and dm.input_shape == (3, 48, 48) and dm.image_size == 48
    assert dm.hparams["image_size"] == 48 and dm.hparams["batch_size"] == 7
    with pytest.raises(TypeError, match="nosie"):
        ImageNetLTDataModule(root=str(root), nosie="symmetric")
    with pytest.raises(ValueError, match="image_size"):
        ImageNetLTDataModule(root=str(root), image_size=0)
    with pytest.raises(ValueError, match="noise_rate"):
        ImageNetLTDataModule(root=str(root), noise="symmetric", noise_rate=1.5)


def test_no_automatic_download(root):
    with pytest.raises(ValueError, match="download: false"):
        ImageNetLTDataModule(root=str(root), download=True)
    with pytest.raises(ValueError, match="dm.kaist.ac.kr"):
        Animal10NDataModule(root=str(root), download=True)


def test_splits_are_read_once_and_imagenet_conventions(root):
    dm = ImageNetLTDataModule(root=str(root), image_size=16, num_workers=0)
    assert dm.load_split("train") is dm.load_split("train")
    assert issubclass(ImageNetLTDataModule, ImageNetStyleDataModule) and dm.mean == IMAGENET_MEAN
    transform = repr(dm.eval_transform())
    assert "Resize" in transform and "CenterCrop" in transform and "size=[18]" in transform  # round(16 * 256 / 224)
    assert "RandomResizedCrop" in repr(dm.train_transform()) and "ColorJitter" in repr(dm.train_transform())


def test_not_found_errors_carry_the_class_layout_and_source(tmp_path):
    dm = ImageNetLTDataModule(root=str(tmp_path))
    error = dm.not_found([tmp_path / "x"], "Missing file: x")
    assert isinstance(error, DatasetNotFoundError)
    assert "ImageNet-LT" in str(error) and dm.layout in str(error) and dm.source in str(error)
