"""Mini-WebVision: the first k classes of the Google subset, evaluated on WebVision or ImageNet val."""

import numpy as np
import pytest
from support.image_fixtures import write_webvision

from lt_noise.data.modules import DatasetNotFoundError, MiniWebVisionDataModule

TRAIN_COUNTS = [6, 5, 4, 3, 2, 1]


@pytest.fixture(scope="module")
def webvision(tmp_path_factory):
    root = tmp_path_factory.mktemp("webvision")
    return root, write_webvision(root, train_counts=TRAIN_COUNTS, imagenet_layout="wnid")


def _dm(root, **kwargs):
    kwargs.setdefault("num_classes", 4)
    return MiniWebVisionDataModule(root=str(root), num_workers=0, image_size=32, **kwargs)


def _paths(dataset):
    return [dataset.images.paths[int(p)] for p in dataset.positions]


def test_keeps_the_first_num_classes_classes(webvision):
    root, written = webvision
    dm = _dm(root)
    assert dm.num_classes == 4 and dm.class_counts == TRAIN_COUNTS[:4]
    paths, labels = written["train"]
    keep = labels < 4
    assert _paths(dm.train_dataset()) == [p for p, k in zip(paths, keep) if k]
    np.testing.assert_array_equal(dm.observed_targets, labels[keep])
    assert _dm(root, num_classes=6).class_counts == TRAIN_COUNTS
    assert MiniWebVisionDataModule(root=str(root)).num_classes == 50, "mini-WebVision by default"


def test_webvision_val_is_the_test_split(webvision):
    root, written = webvision
    dm = _dm(root)
    dm.setup("fit")
    test = dm.test_dataset()
    paths, labels = written["val"]
    assert _paths(test) == [p for p, y in zip(paths, labels) if y < 4]
    assert test.images.root == root / "val_images_256" and len(dm.val_dataset()) == 8
    assert test[0][0].shape == (3, 32, 32)


@pytest.mark.parametrize("layout", ["wnid", "index"])
def test_imagenet_val_of_the_same_classes(tmp_path, layout):
    written = write_webvision(tmp_path, train_counts=TRAIN_COUNTS, imagenet_layout=layout, imagenet_per_class=3)
    dm = _dm(tmp_path, eval_on="imagenet")
    test = dm.test_dataset()
    paths, labels = written["imagenet"]
    expected = sorted((p, int(y)) for p, y in zip(paths, labels) if y < 4)
    assert sorted(zip(_paths(test), test.labels.tolist())) == expected
    assert test[0][0].shape == (3, 32, 32)


def test_imagenet_wnid_folders_follow_synsets_txt_order(webvision):
    root = webvision[0]
    synsets = (root / "info" / "synsets.txt").read_text().splitlines()
    dm = _dm(root, eval_on="imagenet")
    test = dm.test_dataset()
    for position, label in zip(test.positions, test.labels):
        wnid = test.images.paths[int(position)].split("/")[0]
        assert synsets[label].split()[0] == wnid


def test_default_size_is_224_and_options_are_validated(webvision):
    dm = MiniWebVisionDataModule(root=str(webvision[0]))
    assert dm.input_shape == (3, 224, 224) and dm.augment == "imagenet"
    assert MiniWebVisionDataModule(root=str(webvision[0]), image_size=299).input_shape == (3, 299, 299)
    with pytest.raises(ValueError, match="num_classes"):
        MiniWebVisionDataModule(root=str(webvision[0]), num_classes=1001)
    with pytest.raises(ValueError, match="eval_on"):
        MiniWebVisionDataModule(root=str(webvision[0]), eval_on="flickr")


def test_synthetic_noise_applies(webvision):
    dm = _dm(webvision[0], noise="symmetric", noise_rate=0.5, noise_exact=True)
    assert dm.is_noisy.sum() == sum(int(0.5 * n) for n in TRAIN_COUNTS[:4])


def test_missing_lists_and_images(tmp_path, webvision):
    with pytest.raises(DatasetNotFoundError) as info:
        _dm(tmp_path).setup("fit")
    message = str(info.value)
    assert str(tmp_path / "info" / "train_filelist_google.txt") in message and "val_images_256" in message
    assert "webvision" in message.lower() and "download" in message
    with pytest.raises(DatasetNotFoundError, match="ILSVRC-2012 validation folder"):
        _dm(webvision[0], eval_on="imagenet", imagenet_root=str(tmp_path / "nowhere")).setup("test")
