"""ImageNet-LT and Places-LT: the OLTR split files over the ImageNet / Places-365 image roots."""

import shutil

import numpy as np
import pytest
from support.image_fixtures import write_oltr

from lt_noise.data.modules import DatasetNotFoundError, ImageNetLTDataModule, PlacesLTDataModule

TRAIN_COUNTS = [12, 6, 3, 2, 1, 1]


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    return root, write_oltr(root, "ImageNet_LT", train_counts=TRAIN_COUNTS)


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("places")
    return root, write_oltr(root, "Places_LT", train_counts=[5, 3, 1], leading_slash=True)


def _dm(cls, root, **kwargs):
    return cls(root=str(root), num_workers=0, image_size=32, **kwargs)


def _paths(dataset):
    return [dataset.images.paths[int(p)] for p in dataset.positions]


def test_classes_and_counts_come_from_the_split_files(imagenet):
    root, written = imagenet
    dm = _dm(ImageNetLTDataModule, root)
    assert dm.num_classes == len(TRAIN_COUNTS), "available before setup, for the CLI's link"
    assert dm.class_counts == TRAIN_COUNTS and dm.train_size == sum(TRAIN_COUNTS)
    train = dm.train_dataset()
    assert _paths(train) == written["train"][0]
    np.testing.assert_array_equal(train.labels, written["train"][1])


def test_official_val_split_is_the_validation_set_and_test_is_separate(imagenet):
    root, written = imagenet
    dm = _dm(ImageNetLTDataModule, root)
    dm.setup("fit")
    val, test = dm.val_dataset(), dm.test_dataset()
    assert _paths(val) == written["val"][0] and _paths(test) == written["test"][0]
    np.testing.assert_array_equal(val.labels, written["val"][1])
    np.testing.assert_array_equal(test.labels, written["test"][1])
    assert all(p.startswith("val/") for p in _paths(test)) and all(p.startswith("train/") for p in _paths(val))
    assert not set(_paths(test)) & set(_paths(dm.train_dataset()))
    assert dm.summary()["val_size"] == len(written["val"][0])
    held_out = _dm(ImageNetLTDataModule, root, val_fraction=0.5)
    assert set(held_out.val_dataset().positions) <= set(range(sum(TRAIN_COUNTS))), "val_fraction holds out training data"
    assert len(held_out.val_dataset()) + held_out.train_size == sum(TRAIN_COUNTS)


def test_imagenet_transforms_at_the_chosen_size(imagenet):
    dm = ImageNetLTDataModule(root=str(imagenet[0]), num_workers=0)
    assert dm.input_shape == (3, 224, 224) and dm.augment == "imagenet" and dm.eval_resize_crop
    assert dm.mean == (0.485, 0.456, 0.406)
    small = _dm(ImageNetLTDataModule, imagenet[0])
    assert small.train_dataset()[0][0].shape == (3, 32, 32) and small.test_dataset()[0][0].shape == (3, 32, 32)


def test_synthetic_imbalance_and_noise_compose(places):
    dm = _dm(PlacesLTDataModule, places[0], imbalance="exp", imbalance_ratio=5, noise="symmetric", noise_rate=0.4)
    assert dm.clean_class_counts == [5, 2, 1]  # floor(5 * 5^(-i/2))
    assert dm.is_noisy.any() and len(dm.test_dataset()) == 9, "the test split is never subsampled"


def test_places_lt_reads_its_own_files_and_drops_a_leading_slash(places):
    root, written = places
    dm = _dm(PlacesLTDataModule, root)
    assert dm.num_classes == 3 and dm.class_counts == [5, 3, 1]
    assert _paths(dm.train_dataset()) == written["train"][0]
    assert all(p.startswith("val_256/") for p in _paths(dm.test_dataset()))
    assert dm.test_dataset()[0][0].shape == (3, 32, 32)


def test_split_dir_option(imagenet, tmp_path):
    shutil.copytree(imagenet[0] / "ImageNet_LT", tmp_path / "lists")
    dm = _dm(ImageNetLTDataModule, imagenet[0], split_dir=str(tmp_path / "lists"))
    assert dm.class_counts == TRAIN_COUNTS


def test_missing_split_file_names_the_paths_the_layout_and_the_source(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        _dm(PlacesLTDataModule, tmp_path).setup("fit")
    message = str(info.value)
    assert str(tmp_path / "Places_LT" / "Places_LT_train.txt") in message
    assert str(tmp_path / "Places_LT_train.txt") in message
    assert "data_256" in message and "OpenLongTailRecognition-OLTR" in message


def test_truncated_list_missing_images_and_foreign_labels_are_clear_errors(imagenet, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(imagenet[0], root)
    lists = root / "ImageNet_LT"
    text = (lists / "ImageNet_LT_train.txt").read_text()
    (lists / "ImageNet_LT_train.txt").write_text(text[: len(text) - 5])  # cut inside the last line's path
    with pytest.raises(DatasetNotFoundError, match=r"line 25 .*truncated"):
        _dm(ImageNetLTDataModule, root).setup("fit")
    (lists / "ImageNet_LT_train.txt").write_text(text)
    last_image = root / text.strip().splitlines()[-1].split()[0]
    last_image.unlink()
    with pytest.raises(DatasetNotFoundError, match=str(last_image.name)):
        _dm(ImageNetLTDataModule, root).setup("fit")
    shutil.copy(root / text.splitlines()[0].split()[0], last_image)
    (lists / "ImageNet_LT_test.txt").write_text((lists / "ImageNet_LT_test.txt").read_text() + "val/x.JPEG 6\n")
    with pytest.raises(DatasetNotFoundError, match=r"test labels in \[0, 6\)"):
        _dm(ImageNetLTDataModule, root).setup("test")
