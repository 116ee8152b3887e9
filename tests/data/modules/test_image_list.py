"""Users' own data: ImageFolder trees and (path, label) lists, with the same metrics and methods."""

import shutil

import lightning as L
import numpy as np
import pytest
import torch
from support.image_fixtures import band_image, write_image_folder, write_jpeg, write_list

from lt_noise.data.modules import DatasetNotFoundError, ImageListDataModule

NAMES = ["dog", "cat", "bird"]
COUNTS = [6, 4, 2]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    train = write_image_folder(root / "train", COUNTS, class_names=NAMES, nested=True)
    test = write_image_folder(root / "test", [2, 2, 2], class_names=NAMES, seed=1)
    return root, train, test


def _dm(root, **kwargs):
    kwargs.setdefault("image_size", 32)
    return ImageListDataModule(root=str(root), num_workers=0, **kwargs)


def _paths(dataset):
    return [dataset.images.paths[int(p)] for p in dataset.positions]


def test_image_folder_classes_are_the_sorted_folder_names(tree):
    root, (train_paths, train_labels), (test_paths, test_labels) = tree
    dm = _dm(root, train="train", test="test")
    assert dm.num_classes == 3 and dm.class_names == ("bird", "cat", "dog"), "known before setup"
    assert dm.class_counts == [2, 4, 6]
    train = dm.train_dataset()
    assert sorted(zip(_paths(train), train.labels.tolist())) == sorted(zip(train_paths, train_labels.tolist()))
    assert any("/sub/" in p for p in _paths(train)), "images in class sub-folders are found"
    test = dm.test_dataset()
    assert sorted(zip(_paths(test), test.labels.tolist())) == sorted(zip(test_paths, test_labels.tolist()))
    assert len(dm.val_dataset()) == 6, "without `val`, validation is the test set"
    assert train[0][0].shape == (3, 32, 32) and test[0][0].shape == (3, 32, 32)


def test_csv_and_text_lists_with_names_or_indices(tree, tmp_path):
    root, (train_paths, train_labels), (test_paths, test_labels) = tree
    names = ("bird", "cat", "dog")
    csv = root / "train.csv"
    csv.write_text("path,label\n" + "".join(f"train/{p},{names[y]}\n" for p, y in zip(train_paths, train_labels)))
    txt = write_list(root / "test.txt", [f"test/{p}" for p in test_paths], test_labels)
    dm = _dm(root, train="train.csv", test="test.txt")
    assert dm.class_names == names and dm.class_counts == [2, 4, 6]
    assert _paths(dm.train_dataset()) == [f"train/{p}" for p in train_paths]
    np.testing.assert_array_equal(dm.observed_targets, train_labels)
    np.testing.assert_array_equal(dm.test_dataset().labels, test_labels)
    # integer labels throughout; absolute list path; a CSV with extra columns and a 'class' header
    indexed = write_list(tmp_path / "train.txt", [f"train/{p}" for p in train_paths], train_labels, sep="\t")
    dm = _dm(root, train=str(indexed), test=str(txt))
    assert dm.num_classes == 3 and dm.class_names == ("0", "1", "2")
    np.testing.assert_array_equal(dm.observed_targets, train_labels)
    wide = root / "wide.csv"
    rows = "".join(f"train/{p},web,{names[y]}\n" for p, y in zip(train_paths, train_labels))
    wide.write_text("filename,source,class\n" + rows)
    np.testing.assert_array_equal(_dm(root, train="wide.csv", test="test").observed_targets, train_labels)


def test_names_in_a_text_list_and_a_fixed_class_order(tree):
    root, (train_paths, train_labels), _ = tree
    names = ("bird", "cat", "dog")
    (root / "named.txt").write_text("".join(f"train/{p} {names[y]}\n" for p, y in zip(train_paths, train_labels)))
    order = ["dog", "cat", "bird"]
    dm = _dm(root, train="named.txt", test="test", classes=order)
    assert dm.num_classes == 3 and dm.class_names == tuple(order)
    np.testing.assert_array_equal(dm.observed_targets, [order.index(names[y]) for y in train_labels])
    assert dm.class_counts == [6, 4, 2]
    # the test folder is scanned in sorted class order: bird, bird, cat, cat, dog, dog
    np.testing.assert_array_equal(dm.test_dataset().labels, [2, 2, 1, 1, 0, 0])


def test_val_list_is_the_validation_set_and_test_defaults_to_val(tree):
    root = tree[0]
    both = _dm(root, train="train", val="test", test="test")
    assert both.has_val_split and len(both.val_dataset()) == 6
    only_val = _dm(root, train="train", val="test")
    assert not only_val.has_val_split and len(only_val.test_dataset()) == 6
    with pytest.raises(ValueError, match="`test`"):
        _dm(root, train="train")


def test_synthetic_noise_and_imbalance_apply(tree):
    imbalanced = _dm(tree[0], train="test", test="train", imbalance="exp", imbalance_ratio=2)
    assert imbalanced.clean_class_counts == [2, 1, 1]  # floor(2 * 2^(-i/2))
    noisy = _dm(tree[0], train="train", test="test", noise="symmetric", noise_rate=0.3, noise_exact=True)
    assert noisy.is_noisy.sum() == int(0.3 * 2) + int(0.3 * 4) + int(0.3 * 6)


def test_errors_name_the_file_and_the_problem(tree, tmp_path):
    root = tree[0]
    with pytest.raises(DatasetNotFoundError, match=r"(?s)Missing train split.*missing.csv"):
        _dm(root, train="missing.csv", test="test").num_classes
    (root / "bad.csv").write_text("path,label\ntrain/a.jpg,cat\ntrain/b.jpg\n")
    with pytest.raises(DatasetNotFoundError, match=r"line 3 of .*bad.csv"):
        _dm(root, train="bad.csv", test="test").setup("fit")
    (root / "gone.txt").write_text("train/x.jpg 0\ntrain/y.jpg 1\n")
    with pytest.raises(DatasetNotFoundError, match=r"Missing image file .*train/x.jpg"):
        _dm(root, train="gone.txt", test="test").setup("fit")
    first, second = tree[1][0][:2]
    (root / "ints.txt").write_text(f"train/{first} 0\ntrain/{second} 1\n")
    with pytest.raises(DatasetNotFoundError, match="names such as"):
        _dm(root, train="ints.txt", test="test").setup("fit")
    extra = tmp_path / "extra"
    shutil.copytree(root / "test", extra)
    write_jpeg(extra / "fish" / "0.jpg", band_image(0, 3, 8, np.random.default_rng(0)))
    with pytest.raises(DatasetNotFoundError, match=r"not in the training classes: \['fish'\]"):
        _dm(root, train="train", test=str(extra)).setup("test")
    with pytest.raises(ValueError, match="classes"):
        _dm(root, test="test", classes=["a", "a"])


def test_short_fit_of_a_classifier_on_own_data(tree):
    from lt_noise.methods import Classifier
    from lt_noise.optim import LRSchedule

    root = tree[0]
    dm = _dm(root, train="train", test="test", batch_size=4, noise="symmetric", noise_rate=0.2)
    model = Classifier(
        num_classes=dm.num_classes, class_counts=dm.class_counts, input_shape=dm.input_shape,
        noise_rate=dm.noise_rate, backbone="mlp", backbone_args={"hidden": [16]}, lr_schedule=LRSchedule(name="constant"),
    )
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2
    metrics = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert 0.0 <= metrics["test/acc"] <= 1.0


@pytest.mark.filterwarnings("ignore")  # jsonargparse deprecation notices raised inside LightningCLI
def test_the_cli_links_the_file_derived_facts_into_the_model(tree):
    from lt_noise.cli import LTNoiseCLI

    root = tree[0]
    cli = LTNoiseCLI(
        args=[
            "--model=Classifier", "--model.backbone=mlp",
            "--data=ImageListDataModule", f"--data.root={root}", "--data.train=train", "--data.test=test",
            "--data.image_size=16", "--data.num_workers=0",
        ],
        run=False,
    )
    assert cli.model.num_classes == 3 and cli.model.class_counts == [2, 4, 6]
    assert tuple(cli.model.input_shape) == (3, 16, 16)
    assert cli.datamodule.hparams["image_size"] == 16 and cli.datamodule.hparams["train"] == "train"


def test_an_in_memory_cache_holds_the_resized_squares_and_takes_the_batched_path(tree):
    from PIL import Image

    from lt_noise.data.batched import InMemoryDataset

    root, (train_paths, _), _ = tree
    dm = _dm(root, train="train", test="test", image_size=16, cache_in_memory=True, augment="crop_flip", batch_size=4)
    dataset = dm.train_dataset()
    assert isinstance(dataset, InMemoryDataset) and dm.batched
    cached = dm.load_split("train").images
    assert cached.shape == (len(train_paths), 16, 16, 3) and cached.dtype == np.uint8
    # Independent reference: PIL's short-side resize and centre crop of the first file.
    first_file = _dm(root, train="train", test="test").load_split("train").images.path(0)
    with Image.open(first_file) as image:
        image = image.convert("RGB")
        scale = 16 / min(image.size)
        image = image.resize((max(16, round(image.width * scale)), max(16, round(image.height * scale))), Image.BILINEAR,
                             reducing_gap=None)
        left, top = (image.width - 16) // 2, (image.height - 16) // 2
        expected = np.asarray(image.crop((left, top, left + 16, top + 16)))
    np.testing.assert_array_equal(cached[0], expected)
    x, y, index = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert not dm.eval_resize_crop  # evaluation uses the cached squares as they are
    uncached = _dm(root, train="train", test="test", image_size=16, augment="crop_flip")
    assert not uncached.batched and uncached.eval_resize_crop
# --------------------------------------------------------------------------------------------------
# New images to predict
def test_a_predict_folder_of_new_images_is_what_predict_runs_on(tree, tmp_path):
    root, _, _ = tree
    rng = np.random.default_rng(0)
    new = tmp_path / "new"
    for name in ("b.jpg", "a.png", "deeper/c.jpg"):
        write_jpeg(new / name, band_image(1, 3, 16, rng))
    (new / ".hidden").write_text("not listed")
    dm = _dm(root, train="train", test="test", predict=str(new))
    assert dm.predict_split == "predict"
    dm.setup("predict")
    dataset = dm.predict_dataset()
    assert _paths(dataset) == ["a.png", "b.jpg", "deeper/c.jpg"] and (dataset.labels == -1).all()
    assert dm.sample_path(2, "predict") == str(new / "deeper" / "c.jpg")
    assert dataset[0][0].shape == (3, 32, 32) and dm.skipped_files == []
    # the training split's files have paths too
    assert dm.sample_path(0).startswith(str(root / "train"))
    assert _dm(root, train="train", test="test", predict=str(new), predict_split="test").predict_split == "test"
    with pytest.raises(ValueError, match="`predict`"):
        _dm(root, train="train", test="test", predict_split="predict")


def test_a_predict_list_may_give_labels(tree, tmp_path):
    root, (train_paths, _), (test_paths, test_labels) = tree
    names = ("bird", "cat", "dog")
    listed = root / "predict.csv"
    listed.write_text("image,class\n" + "".join(f"test/{p},{names[y]}\n" for p, y in zip(test_paths, test_labels)))
    dm = _dm(root, train="train", test="test", predict="predict.csv")
    np.testing.assert_array_equal(dm.predict_dataset().labels, test_labels)
    plain = write_list(root / "predict.txt", [f"test/{p}" for p in test_paths])
    assert (_dm(root, train="train", test="test", predict=str(plain)).predict_dataset().labels == -1).all()


def test_unreadable_files_to_predict_are_named_or_skipped_and_listed(tree, tmp_path):
    from support.image_fixtures import write_truncated_jpeg

    from lt_noise.data.files import ImageReadError

    root, _, _ = tree
    new = tmp_path / "new"
    write_jpeg(new / "good.jpg", band_image(0, 3, 16, np.random.default_rng(0)))
    (new / "notes.txt").write_text("a note, not an image")
    write_truncated_jpeg(new / "broken.jpg")
    with pytest.raises(ImageReadError, match=r"2 of 3 files(.|\n)*broken\.jpg(.|\n)*notes\.txt(.|\n)*skip_unreadable"):
        _dm(root, train="train", test="test", predict=str(new)).setup("predict")
    dm = _dm(root, train="train", test="test", predict=str(new), skip_unreadable=True)
    dm.setup("predict")
    assert _paths(dm.predict_dataset()) == ["good.jpg"]
    assert [p for p, _ in dm.skipped_files] == [str(new / "broken.jpg"), str(new / "notes.txt")]
    assert all(reason for _, reason in dm.skipped_files)
