"""ANIMAL-10N: the official training/ and testing/ folders of '<label>_<id>.jpg' files."""

import shutil

import numpy as np
import pytest
import torch
from support.image_fixtures import write_animal10n, write_truncated_jpeg

from lt_noise.data.files import ImageReadError
from lt_noise.data.modules import Animal10NDataModule, DatasetNotFoundError


@pytest.fixture(scope="module")
def animal(tmp_path_factory):
    root = tmp_path_factory.mktemp("animal10n")
    return root, write_animal10n(root, n_train=60, n_test=20)


def _dm(root, **kwargs):
    return Animal10NDataModule(root=str(root), num_workers=0, **kwargs)


def test_sizes_classes_and_labels_from_the_file_names(animal):
    root, written = animal
    dm = _dm(root)
    dm.setup("fit")
    names, labels = written["train"]
    order = np.argsort(names)  # files are read in sorted name order
    np.testing.assert_array_equal(dm.clean_targets, labels[order])
    np.testing.assert_array_equal(dm.observed_targets, labels[order])
    assert dm.num_classes == 10 and dm.class_counts == [6] * 10 and dm.class_names[9] == "guinea pig"
    paths = dm.train_dataset().images.paths
    assert all(int(paths[i].split("_")[0]) == dm.clean_targets[i] for i in range(len(paths)))
    test = dm.test_dataset()
    assert len(test) == 20 and sorted(test.labels.tolist()) == sorted(written["test"][1].tolist())
    assert len(dm.val_dataset()) == 20, "no official val split: validation is the test set"


def test_native_64px_inputs_with_crop_and_flip(animal):
    dm = _dm(animal[0])
    assert dm.input_shape == (3, 64, 64) and dm.augment == "crop_flip" and not dm.eval_resize_crop
    x, y, index = dm.train_dataset()[3]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and index == 3
    assert dm.test_dataset()[0][0].shape == (3, 64, 64)


def test_train_and_test_are_the_two_folders(animal):
    dm = _dm(animal[0])
    train, test = dm.train_dataset().images, dm.test_dataset().images
    assert {str(train.path(i).parent.name) for i in range(len(train))} == {"training"}
    assert {str(test.path(i).parent.name) for i in range(len(test))} == {"testing"}


def test_synthetic_noise_applies_on_top(animal):
    dm = _dm(animal[0], noise="symmetric", noise_rate=0.5, seed=1)
    assert 0.3 < dm.is_noisy.mean() < 0.7
    assert (dm.observed_targets[dm.is_noisy] != dm.clean_targets[dm.is_noisy]).all()


def test_missing_folder_names_the_layout_and_the_source(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        _dm(tmp_path).setup("fit")
    message = str(info.value)
    assert str(tmp_path / "training") in message and "<label>_<id>.jpg" in message
    assert "dm.kaist.ac.kr/datasets/animal-10n" in message


def test_foreign_file_names_and_missing_or_truncated_images(animal, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(animal[0], root)
    (root / "testing" / "notes.jpg").write_text("x")
    with pytest.raises(DatasetNotFoundError, match="notes.jpg"):
        _dm(root).setup("test")
    (root / "testing" / "notes.jpg").unlink()
    victim = sorted((root / "training").iterdir())[4]
    write_truncated_jpeg(victim)
    dataset = _dm(root, augment="none").train_dataset()
    with pytest.raises(ImageReadError, match=victim.name):
        dataset[4]
