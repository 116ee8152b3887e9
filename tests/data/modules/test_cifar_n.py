"""CIFAR-10N / CIFAR-100N human label sets on the CIFAR datamodules."""

import pickle

import numpy as np
import pytest
import torch
from support.fixtures import write_cifar10, write_cifar100
from support.image_fixtures import write_cifar_n

from lt_noise.data.modules import CIFAR10DataModule, CIFAR100DataModule, DatasetNotFoundError
from lt_noise.data.modules.cifar_n import load_human_labels


def _corrupt(labels, num_classes, rate, seed):
    rng = np.random.default_rng(seed)
    flip = rng.random(len(labels)) < rate
    return np.where(flip, (labels + rng.integers(1, num_classes, len(labels))) % num_classes, labels)


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10n")
    clean = write_cifar10(root, n_train=500, n_test=100)["train"][1]
    sets = {
        "clean_label": clean,
        "aggre_label": _corrupt(clean, 10, 0.09, 1),
        "worse_label": _corrupt(clean, 10, 0.4, 2),
        "random_label1": _corrupt(clean, 10, 0.17, 3),
        "random_label2": _corrupt(clean, 10, 0.18, 4),
        "random_label3": _corrupt(clean, 10, 0.18, 5),
    }
    write_cifar_n(root / "CIFAR-N" / "CIFAR-10_human.pt", sets)
    return root, sets


@pytest.fixture(scope="module")
def cifar100(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar100n")
    written = write_cifar100(root, n_train=1000, n_test=200)
    clean = written["train"][1]
    sets = {
        "clean_label": clean,
        "noisy_label": _corrupt(clean, 100, 0.4, 1),
        "clean_coarse_label": clean // 5,
        "noisy_coarse_label": _corrupt(clean // 5, 20, 0.25, 2),
    }
    write_cifar_n(root / "CIFAR-100_human.pt", sets)
    return root, sets, written


@pytest.mark.parametrize(
    ("option", "key"),
    [("worst", "worse_label"), ("aggregate", "aggre_label"), ("random1", "random_label1"), ("random3", "random_label3")],
)
def test_cifar10n_label_sets_are_the_observed_labels(cifar10, option, key):
    root, sets = cifar10
    dm = CIFAR10DataModule(root=str(root), human_labels=option, num_workers=0)
    np.testing.assert_array_equal(dm.observed_targets, sets[key])
    np.testing.assert_array_equal(dm.clean_targets, sets["clean_label"])
    np.testing.assert_array_equal(dm.is_noisy, sets[key] != sets["clean_label"])
    assert dm.class_counts == np.bincount(sets[key], minlength=10).tolist()
    assert dm.train_dataset()[7][1] == sets[key][7]
    assert dm.test_dataset().labels.tolist() != [] and len(dm.test_dataset()) == 100


def test_human_labels_follow_the_long_tail_subsampling(cifar10):
    root, sets = cifar10
    dm = CIFAR10DataModule(root=str(root), human_labels="worst", imbalance="exp", imbalance_ratio=5, num_workers=0)
    positions = dm.train_dataset().positions
    np.testing.assert_array_equal(dm.observed_targets, sets["worse_label"][positions])
    np.testing.assert_array_equal(dm.clean_targets, sets["clean_label"][positions])


def test_cifar100n_fine_and_coarse(cifar100):
    root, sets, written = cifar100
    fine = CIFAR100DataModule(root=str(root), human_labels="noisy", num_workers=0)
    assert fine.num_classes == 100
    np.testing.assert_array_equal(fine.observed_targets, sets["noisy_label"])
    coarse = CIFAR100DataModule(root=str(root), human_labels="noisy_coarse", num_workers=0)
    assert coarse.num_classes == 20 and CIFAR100DataModule.num_classes == 100
    np.testing.assert_array_equal(coarse.observed_targets, sets["noisy_coarse_label"])
    np.testing.assert_array_equal(coarse.clean_targets, written["train"][1] // 5)
    np.testing.assert_array_equal(coarse.test_dataset().labels, written["test"][1] // 5)


def test_explicit_file_option_and_missing_file(cifar10, tmp_path):
    root, sets = cifar10
    elsewhere = write_cifar_n(tmp_path / "labels.pt", sets)
    dm = CIFAR10DataModule(root=str(root), human_labels="random2", human_labels_file=str(elsewhere), num_workers=0)
    np.testing.assert_array_equal(dm.observed_targets, sets["random_label2"])
    with pytest.raises(DatasetNotFoundError) as info:
        CIFAR10DataModule(root=str(root), human_labels="worst", human_labels_file="nope.pt").setup("fit")
    assert str(root / "nope.pt") in str(info.value) and "UCSC-REAL/cifar-10-100n" in str(info.value)


def test_clean_labels_must_match_the_cifar_training_labels(cifar10, tmp_path):
    root, sets = cifar10
    shuffled = {k: np.roll(v, 1) for k, v in sets.items()}
    path = write_cifar_n(tmp_path / "other.pt", shuffled)
    with pytest.raises(DatasetNotFoundError, match="differ at .* images"):
        CIFAR10DataModule(root=str(root), human_labels="worst", human_labels_file=str(path)).setup("fit")
    short = write_cifar_n(tmp_path / "short.pt", {k: v[:-1] for k, v in sets.items()})
    with pytest.raises(DatasetNotFoundError, match="Expected 500 labels"):
        CIFAR10DataModule(root=str(root), human_labels="worst", human_labels_file=str(short)).setup("fit")
    no_key = write_cifar_n(tmp_path / "nokey.pt", {"clean_label": sets["clean_label"]})
    with pytest.raises(DatasetNotFoundError, match="'worse_label'"):
        CIFAR10DataModule(root=str(root), human_labels="worst", human_labels_file=str(no_key)).setup("fit")


def test_files_pickled_by_numpy_1_load(cifar10, tmp_path):
    root, sets = cifar10
    path = write_cifar_n(tmp_path / "old.pt", sets, numpy1_names=True)
    assert b"numpy.core.multiarray" in path.read_bytes()
    dm = CIFAR10DataModule(root=str(root), human_labels="aggregate", human_labels_file=str(path), num_workers=0)
    np.testing.assert_array_equal(dm.observed_targets, sets["aggre_label"])


class _Payload:
    def __reduce__(self):
        return (print, ("this must not run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_label_files_are_loaded_without_running_code(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"clean_label": np.zeros(3, dtype=np.int64), "worse_label": _Payload()}, path)
    with pytest.raises(ValueError, match="Could not read the CIFAR-N label file"):
        load_human_labels(path, "cifar10", "worst", np.zeros(3, dtype=np.int64))
    assert "must not run" not in capsys.readouterr().out
    path.write_bytes(pickle.dumps([1, 2])[:3])
    with pytest.raises(ValueError, match="Could not read"):
        load_human_labels(path, "cifar10", "worst", np.zeros(3, dtype=np.int64))


def test_options_are_validated(cifar10):
    root = str(cifar10[0])
    with pytest.raises(ValueError, match="human_labels"):
        CIFAR10DataModule(root=root, human_labels="noisy")
    with pytest.raises(ValueError, match="human_labels"):
        CIFAR100DataModule(root=root, human_labels="worst")
    with pytest.raises(ValueError, match="noise: none"):
        CIFAR10DataModule(root=root, human_labels="worst", noise="symmetric", noise_rate=0.2)
