"""The base datamodule's composition: subsampling -> noise -> held-out part, all seeded."""

import dataclasses

import numpy as np
import pytest
from support.fixtures import write_cifar10, write_mnist_like

from lt_noise.data import imbalance, noise
from lt_noise.data.modules import CIFAR10DataModule, DatasetNotFoundError, FashionMNISTDataModule
from lt_noise.data.modules.base import ComposedTrainingSet


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fm")
    written = write_mnist_like(root / "FashionMNIST" / "raw", n_train=2000, n_test=300)
    return root, written


def _dm(root, **kwargs):
    return FashionMNISTDataModule(root=str(root[0]), num_workers=0, **kwargs)


def test_long_tail_then_noise_matches_the_pure_functions(root):
    dm = _dm(root, imbalance="exp", imbalance_ratio=10, noise="symmetric", noise_rate=0.4, seed=3)
    labels = root[1]["train"][1]
    counts = imbalance.long_tailed_counts(200, 10, 10)
    kept = imbalance.subsample_indices(labels, counts, 3)
    expected_observed = noise.symmetric_noise(labels[kept], 10, 0.4, 3)
    np.testing.assert_array_equal(dm.clean_targets, labels[kept])
    np.testing.assert_array_equal(dm.observed_targets, expected_observed)
    np.testing.assert_array_equal(dm.is_noisy, expected_observed != labels[kept])
    assert dm.class_counts == np.bincount(expected_observed, minlength=10).tolist()
    assert dm.clean_class_counts == counts


def test_training_samples_return_observed_labels_and_their_index(root):
    dm = _dm(root, imbalance="step", imbalance_ratio=5, noise="asymmetric", noise_rate=0.3, augment="none")
    dataset = dm.train_dataset()
    for i in (0, 17, len(dataset) - 1):
        _, y, index = dataset[i]
        assert index == i and y == dm.observed_targets[i]


def test_same_seed_same_data_and_different_seed_different_noise(root):
    a = _dm(root, noise="symmetric", noise_rate=0.5, seed=1)
    b = _dm(root, noise="symmetric", noise_rate=0.5, seed=1)
    c = _dm(root, noise="symmetric", noise_rate=0.5, seed=2)
    np.testing.assert_array_equal(a.observed_targets, b.observed_targets)
    assert (a.observed_targets != c.observed_targets).any()


def test_the_test_set_is_never_corrupted_or_subsampled(root):
    dm = _dm(root, imbalance="exp", imbalance_ratio=100, noise="symmetric", noise_rate=0.6)
    test = dm.test_dataset()
    assert len(test) == 300
    np.testing.assert_array_equal(test.labels, root[1]["test"][1])


def test_val_fraction_holds_out_a_stratified_part_of_the_noisy_training_set(root):
    dm = _dm(root, noise="symmetric", noise_rate=0.2, val_fraction=0.1)
    val = dm.val_dataset()
    assert len(val) + dm.train_size == 2000 and len(val) == pytest.approx(200, abs=10)
    assert set(val.positions).isdisjoint(set(dm.train_dataset().positions))
    default = _dm(root)
    assert len(default.val_dataset()) == 300, "without a held-out part, validation is the test set"


def test_summary_reports_the_realised_noise_rate(root):
    dm = _dm(root, noise="symmetric", noise_rate=0.4)
    summary = dm.summary()
    assert summary["realized_noise_rate"] == pytest.approx(float(dm.is_noisy.mean()))
    assert 0.3 < summary["realized_noise_rate"] < 0.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_rate": 1.2, "noise": "symmetric"}, "noise_rate"),
        ({"noise_rate": -0.1, "noise": "symmetric"}, "noise_rate"),
        ({"imbalance": "exp", "imbalance_ratio": 0.5}, "imbalance_ratio"),
        ({"imbalance": "zipf"}, "imbalance"),
        ({"noise": "pairflip"}, "noise"),
        ({"noise_rate": 0.3}, "noise_rate"),
        ({"augment": "mixup"}, "augment"),
        ({"batch_size": 0}, "batch_size"),
        ({"val_fraction": 1.0}, "val_fraction"),
    ],
)
def test_invalid_settings_are_rejected_with_the_field_name(root, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _dm(root, **kwargs)


def test_unknown_flip_map_class_is_rejected(root):
    dm = _dm(root, noise="asymmetric", noise_rate=0.2, flip_map={3: 12})
    with pytest.raises(ValueError, match="12"):
        dm.class_counts


def test_cifar10_reads_pickled_batches(tmp_path):
    written = write_cifar10(tmp_path, n_train=100, n_test=30)
    dm = CIFAR10DataModule(root=str(tmp_path), augment="none")
    dataset = dm.train_dataset()
    x, y, _ = dataset[7]
    raw = (x.numpy() * np.array(dm.std)[:, None, None] + np.array(dm.mean)[:, None, None]) * 255
    np.testing.assert_allclose(raw.transpose(1, 2, 0), written["train"][0][7], atol=1e-3)
    assert y == written["train"][1][7] and len(dm.test_dataset()) == 30


def test_cifar_truncated_or_missing_batches_name_the_file(tmp_path):
    write_cifar10(tmp_path, n_train=100, n_test=30)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    with pytest.raises(DatasetNotFoundError, match=r"data_batch_3.*truncated or corrupt"):
        CIFAR10DataModule(root=str(tmp_path)).class_counts
    assert batch.stat().st_size == 1000  # nothing rewritten or deleted
    batch.unlink()
    with pytest.raises(DatasetNotFoundError, match="Missing file: .*data_batch_3"):
        CIFAR10DataModule(root=str(tmp_path)).class_counts


def test_max_train_per_class_caps_before_the_long_tail(root):
    dm = _dm(root, max_train_per_class=50, imbalance="exp", imbalance_ratio=10, seed=2)
    assert dm.clean_class_counts == imbalance.long_tailed_counts(50, 10, 10)
    labels = root[1]["train"][1]
    capped = imbalance.subsample_indices(labels, [50] * 10, 2)
    expected = capped[imbalance.subsample_indices(labels[capped], imbalance.long_tailed_counts(50, 10, 10), 2)]
    np.testing.assert_array_equal(dm.clean_targets, labels[expected])
    with pytest.raises(ValueError, match="max_train_per_class"):
        _dm(root, max_train_per_class=0)


def test_the_composition_is_one_frozen_record_with_its_class_counts(root):
    dm = _dm(root, imbalance="exp", imbalance_ratio=10, noise="symmetric", noise_rate=0.4, seed=3, val_fraction=0.1)
    composed = dm._compose()
    assert composed is dm._compose()  # composed once
    assert isinstance(composed, ComposedTrainingSet) and composed.size == dm.train_size == len(composed.positions)
    assert list(composed.class_counts) == np.bincount(composed.observed, minlength=10).tolist() == dm.class_counts
    assert list(composed.clean_class_counts) == np.bincount(composed.clean, minlength=10).tolist()
    assert len(composed.val_positions) == len(composed.val_observed) == len(dm.val_dataset()) > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        composed.observed = composed.clean


def test_a_method_registered_epoch_loader_replaces_the_training_loader(root):
    dm = _dm(root)
    seen = []

    def factory(datamodule):
        seen.append(datamodule)
        return "the epoch's loader"

    default = dm.train_dataloader()
    dm.register_epoch_loader(factory)
    assert dm.train_dataloader() == "the epoch's loader" and seen == [dm]
    dm.register_epoch_loader(None)
    assert type(dm.train_dataloader()) is type(default)
    with pytest.raises(ValueError, match="`factory` to be callable or None"):
        dm.register_epoch_loader("not a function")


def test_predict_runs_on_the_chosen_split_unaugmented(root):
    dm = _dm(root, noise="symmetric", noise_rate=0.4, imbalance="exp", imbalance_ratio=5, augment="crop_flip")
    assert dm.predict_split == "test" and len(dm.predict_dataset()) == 300
    train = _dm(root, noise="symmetric", noise_rate=0.4, imbalance="exp", imbalance_ratio=5, augment="crop_flip",
                predict_split="train")
    dataset = train.predict_dataset()
    assert len(dataset) == train.train_size
    np.testing.assert_array_equal(dataset.labels, train.observed_targets)  # the observed labels, by training index
    x, label, index = dataset[7]
    assert index == 7 and label == train.observed_targets[7]
    assert np.array_equal(x, dataset[7][0]), "the evaluation view: no random augmentation"
    assert len(_dm(root, predict_split="val", val_fraction=0.2).predict_dataset()) == 400
    with pytest.raises(ValueError, match="predict_split"):
        _dm(root, predict_split="holdout")


def test_sample_image_is_the_stored_image_and_in_memory_sets_have_no_path(root):
    dm = _dm(root, imbalance="exp", imbalance_ratio=5)
    images, labels = root[1]["train"]
    composed = dm._compose()
    np.testing.assert_array_equal(dm.sample_image(3), images[composed.positions[3]])
    np.testing.assert_array_equal(dm.sample_image(2, "test"), root[1]["test"][0][2])
    assert dm.sample_image(0).shape == (28, 28) and dm.sample_path(0) is None and dm.sample_path(0, "predict") is None
