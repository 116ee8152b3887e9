"""Clothing1M: key lists joined to the noisy / clean key-value label files."""

import shutil

import numpy as np
import pytest
from support.image_fixtures import write_clothing1m

from lt_noise.data.modules import Clothing1MDataModule, DatasetNotFoundError


@pytest.fixture(scope="module")
def clothing(tmp_path_factory):
    root = tmp_path_factory.mktemp("clothing1m")
    return root, write_clothing1m(root)


def _dm(root, **kwargs):
    return Clothing1MDataModule(root=str(root), num_workers=0, image_size=32, **kwargs)


def _paths(dataset):
    return [dataset.images.paths[int(p)] for p in dataset.positions]


def test_noisy_training_set_has_the_noisy_labels_of_its_keys(clothing):
    root, written = clothing
    dm = _dm(root)
    keys, labels = written["train"]
    assert dm.num_classes == 14 and _paths(dm.train_dataset()) == keys
    np.testing.assert_array_equal(dm.observed_targets, labels)
    assert dm.class_counts == np.bincount(labels, minlength=14).tolist()
    truth = np.array([written["truth"][k] for k in keys])
    assert (labels != truth).any(), "the fixture's noisy labels are really noisy"


def test_clean_val_and_test_splits(clothing):
    root, written = clothing
    dm = _dm(root)
    dm.setup("fit")
    val, test = dm.val_dataset(), dm.test_dataset()
    for dataset, split in ((val, "val"), (test, "test")):
        keys, labels = written[split]
        assert _paths(dataset) == keys
        assert dataset.labels.tolist() == [written["truth"][k] for k in keys] == labels.tolist()
    assert not set(_paths(test)) & set(_paths(val)) and not set(_paths(test)) & set(_paths(dm.train_dataset()))
    assert dm.summary()["val_size"] == 28 and dm.summary()["test_size"] == 28


def test_clean_training_set_option(clothing):
    root, written = clothing
    dm = _dm(root, train_set="clean")
    keys, labels = written["clean_train"]
    assert _paths(dm.train_dataset()) == keys and dm.observed_targets.tolist() == labels.tolist()
    with pytest.raises(ValueError, match="train_set"):
        _dm(root, train_set="all")


def test_transforms_and_statistics(clothing):
    dm = Clothing1MDataModule(root=str(clothing[0]), num_workers=0)
    assert dm.input_shape == (3, 224, 224) and dm.augment == "imagenet" and dm.eval_resize_crop
    assert dm.mean == (0.6959, 0.6537, 0.6371)
    small = _dm(clothing[0])
    assert small.train_dataset()[0][0].shape == (3, 32, 32) and small.val_dataset()[0][0].shape == (3, 32, 32)


def test_annotations_folder_and_images_extracted_without_the_images_prefix(clothing, tmp_path):
    root = tmp_path / "divide_mix_style"
    shutil.copytree(clothing[0] / "images", root)  # images/<d>/<dd>/x.jpg -> <root>/<d>/<dd>/x.jpg
    (root / "annotations").mkdir()
    for text in clothing[0].glob("*.txt"):
        shutil.copy(text, root / "annotations" / text.name)
    dm = _dm(root)
    assert dm.train_size == len(clothing[1]["train"][0])
    assert dm.train_dataset().images.path(0) == root / clothing[1]["train"][0][0].removeprefix("images/")
    assert dm.train_dataset()[0][0].shape == (3, 32, 32)


def test_synthetic_noise_applies(clothing):
    dm = _dm(clothing[0], noise="symmetric", noise_rate=0.5, seed=2)
    np.testing.assert_array_equal(dm.clean_targets, clothing[1]["train"][1])
    assert 0.25 < dm.is_noisy.mean() < 0.75


def test_missing_and_truncated_files(clothing, tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        _dm(tmp_path).setup("fit")
    message = str(info.value)
    assert "noisy_train_key_list.txt" in message and str(tmp_path / "annotations") in message
    assert "images/<d>/<dd>/*.jpg" in message
    root = tmp_path / "copy"
    shutil.copytree(clothing[0], root)
    kv = (root / "noisy_label_kv.txt").read_text().splitlines()
    (root / "noisy_label_kv.txt").write_text("\n".join(kv[: len(kv) // 2]) + "\n")
    with pytest.raises(DatasetNotFoundError, match=r"has none.*truncated"):
        _dm(root).setup("fit")
