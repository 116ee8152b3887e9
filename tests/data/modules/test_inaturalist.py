"""iNaturalist 2018: COCO-style train2018.json / val2018.json and train_val2018/ images."""

import json
import shutil

import numpy as np
import pytest
from support.image_fixtures import write_inat2018

from lt_noise.data.modules import DatasetNotFoundError, INaturalist2018DataModule

TRAIN_COUNTS = [5, 3, 2, 1]


@pytest.fixture(scope="module")
def inat(tmp_path_factory):
    root = tmp_path_factory.mktemp("inat")
    return root, write_inat2018(root, train_counts=TRAIN_COUNTS, val_per_class=2)


def _dm(root, **kwargs):
    return INaturalist2018DataModule(root=str(root), num_workers=0, image_size=32, **kwargs)


def _paths(dataset):
    return [dataset.images.paths[int(p)] for p in dataset.positions]


def test_labels_are_category_ranks_and_images_follow_the_json_order(inat):
    root, written = inat
    dm = _dm(root)
    assert dm.num_classes == 4 and dm.class_names == ("species 0", "species 1", "species 2", "species 3")
    assert dm.class_counts == TRAIN_COUNTS
    train = dm.train_dataset()
    assert _paths(train) == written["train"][0]
    np.testing.assert_array_equal(train.labels, written["train"][1])
    # each label is the category of the folder the image sits in (category id 10 * label)
    assert all(int(p.split("/")[2]) == 10 * y for p, y in zip(_paths(train), train.labels))


def test_val2018_is_the_test_split_and_validation_defaults_to_it(inat):
    root, written = inat
    dm = _dm(root)
    dm.setup("fit")
    test = dm.test_dataset()
    assert _paths(test) == written["test"][0] and test.labels.tolist() == written["test"][1].tolist()
    assert len(dm.val_dataset()) == 8
    assert test[0][0].shape == (3, 32, 32) and dm.train_dataset()[0][0].shape == (3, 32, 32)


def test_synthetic_noise_applies(inat):
    dm = _dm(inat[0], noise="uniform", noise_rate=0.6, seed=4)
    assert dm.is_noisy.any() and dm.clean_class_counts == TRAIN_COUNTS


def test_missing_and_truncated_json_files(inat, tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        _dm(tmp_path).setup("fit")
    assert str(tmp_path / "train2018.json") in str(info.value) and "inat_comp" in str(info.value)
    root = tmp_path / "copy"
    shutil.copytree(inat[0], root)
    text = (root / "val2018.json").read_text()
    (root / "val2018.json").write_text(text[: len(text) // 2])
    with pytest.raises(DatasetNotFoundError, match=r"val2018.json.*truncated"):
        _dm(root).setup("test")
    data = json.loads(text)
    data["annotations"][0]["category_id"] = 99
    (root / "val2018.json").write_text(json.dumps(data))
    with pytest.raises(DatasetNotFoundError, match="Category id 99"):
        _dm(root).setup("test")
    data["annotations"] = data["annotations"][1:]
    (root / "val2018.json").write_text(json.dumps(data))
    with pytest.raises(DatasetNotFoundError, match="one annotation per image"):
        _dm(root).setup("test")
