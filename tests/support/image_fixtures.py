"""Tiny image datasets written in the real published layouts (JPEG files, split lists, JSON, .pt files).

Every image of class c carries a bright horizontal band at a class-specific height over dark noise (as in
``support.fixtures``), so small networks can learn the classes; JPEG at quality 95 keeps the band.
Each writer returns what it wrote, so tests compare the datamodules against the files themselves.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

JPEG_QUALITY = 95


def band_image(label: int, num_classes: int, size: int | tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """An RGB uint8 image (H, W, 3) with a bright band at rows ~label*H/num_classes."""
    height, width = (size, size) if isinstance(size, int) else size
    image = rng.integers(0, 100, size=(height, width, 3), dtype=np.uint8)
    band = max(1, height // num_classes)
    top = (label * height) // num_classes
    image[top : top + band] = 230
    return image


def write_jpeg(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=JPEG_QUALITY)
    return path


def labels_from_counts(counts: Sequence[int], seed: int = 0) -> np.ndarray:
    """Shuffled labels with ``counts[c]`` samples of class c."""
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(labels).astype(np.int64)


def _write_images(root: Path, relative: Sequence[str], labels: np.ndarray, num_classes: int, size, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for path, label in zip(relative, labels):
        write_jpeg(root / path, band_image(int(label), num_classes, size, rng))


def write_list(path: Path, paths: Sequence[str], labels: Sequence[int] | None = None, *, sep: str = " ") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if labels is None:
        text = "".join(f"{p}\n" for p in paths)
    else:
        text = "".join(f"{p}{sep}{int(label)}\n" for p, label in zip(paths, labels))
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------------
def write_animal10n(root: Path, *, n_train: int = 60, n_test: int = 20, size: int = 64, seed: int = 0):
    """``training/`` and ``testing/`` folders of ``<label>_<id>.jpg`` files; returns {split: (names, labels)}."""
    written = {}
    for offset, (split, folder, n) in enumerate((("train", "training", n_train), ("test", "testing", n_test))):
        labels = labels_from_counts([n // 10 + (c < n % 10) for c in range(10)], seed + offset)
        names = [f"{label}_{i:05d}.jpg" for i, label in enumerate(labels)]
        _write_images(root / folder, names, labels, 10, size, seed + offset)
        written[split] = (names, labels)
    return written


def write_oltr(root: Path, prefix: str, *, train_counts: Sequence[int], val_per_class: int = 2, test_per_class: int = 3,
               size: int = 8, seed: int = 0, leading_slash: bool = False):
    """An OLTR-style dataset (ImageNet_LT or Places_LT): images under ``root`` and ``root/<prefix>/<prefix>_<split>.txt``.

    ImageNet-style paths ``train/<wnid>/<wnid>_<i>.JPEG`` (train and val lists) and ``val/<wnid>/...`` (test
    list) for ``prefix="ImageNet_LT"``; Places-style ``data_256/<letter>/<category>/<i>.jpg`` and
    ``val_256/Places365_val_<i>.jpg`` otherwise. Returns {split: (paths, labels)}.
    """
    num_classes = len(train_counts)
    written = {}
    plan = {
        "train": labels_from_counts(train_counts, seed),
        "val": labels_from_counts([val_per_class] * num_classes, seed + 1),
        "test": labels_from_counts([test_per_class] * num_classes, seed + 2),
    }
    for offset, (split, labels) in enumerate(plan.items()):
        paths = []
        for i, label in enumerate(labels):
            if prefix == "ImageNet_LT":
                wnid = f"n{1440764 + 100 * int(label):08d}"
                folder = "val" if split == "test" else "train"
                paths.append(f"{folder}/{wnid}/{wnid}_{split}{i}.JPEG")
            else:
                category = f"category{int(label):03d}"
                train_path = f"data_256/{category[0]}/{category}/{split}{i:08d}.jpg"
                paths.append(f"val_256/Places365_val_{i:08d}.jpg" if split == "test" else train_path)
        _write_images(root, paths, labels, num_classes, size, seed + offset)
        listed = [("/" + p) if leading_slash else p for p in paths]
        write_list(root / prefix / f"{prefix}_{split}.txt", listed, labels)
        written[split] = (paths, labels)
    return written


def write_inat2018(root: Path, *, train_counts: Sequence[int], val_per_class: int = 2, size: int = 8, seed: int = 0):
    """train2018.json / val2018.json (COCO style) and ``train_val2018/<super>/<id>/<hash>.jpg`` images.

    Category ids are ``10 * c`` (not contiguous) to exercise the id -> label numbering, listed in reverse
    order; annotations are stored in a different order than the images. Returns {split: (paths, labels)}.
    """
    num_classes = len(train_counts)
    categories = [{"id": 10 * c, "name": f"species {c}", "supercategory": "Plantae"} for c in reversed(range(num_classes))]
    written = {}
    plan = {
        "train": labels_from_counts(train_counts, seed),
        "test": labels_from_counts([val_per_class] * num_classes, seed + 1),
    }
    rng = np.random.default_rng(seed)
    for offset, (split, labels) in enumerate(plan.items()):
        images, annotations, paths = [], [], []
        for i, label in enumerate(labels):
            image_id = 1000 * (offset + 1) + 7 * i
            path = f"train_val2018/Plantae/{10 * int(label)}/{rng.integers(1 << 60):016x}.jpg"
            images.append({"id": image_id, "file_name": path, "width": size, "height": size})
            annotations.append({"id": i, "image_id": image_id, "category_id": 10 * int(label)})
            paths.append(path)
        _write_images(root, paths, labels, num_classes, size, seed + offset)
        data = {"info": {}, "images": images, "annotations": annotations[::-1], "categories": categories}
        (root / ("train2018.json" if split == "train" else "val2018.json")).write_text(json.dumps(data))
        written[split] = (paths, labels)
    return written


def write_webvision(root: Path, *, train_counts: Sequence[int], val_per_class: int = 2, imagenet_per_class: int = 2,
                    imagenet_layout: str = "wnid", size: int = 8, seed: int = 0):
    """WebVision 1.0 (resized) layout with ``info/`` lists, ``google/``, ``val_images_256/``, ``imagenet/val/``.

    ``imagenet_layout``: ``"wnid"`` (class folders named by WordNet id, with ``info/synsets.txt``) or
    ``"index"`` (DivideMix: folders named by the class index). Returns {split: (paths, labels)} with the
    splits "train", "val" (WebVision val) and "imagenet".
    """
    num_classes = len(train_counts)
    wnids = [f"n{1440764 + 37 * c:08d}" for c in range(num_classes)]
    (root / "info").mkdir(parents=True, exist_ok=True)
    (root / "info" / "synsets.txt").write_text("".join(f"{w} concept {c}\n" for c, w in enumerate(wnids)))
    written = {}
    train = labels_from_counts(train_counts, seed)
    train_paths = [f"google/q{int(label) + 1:04d}/{i:06d}.jpg" for i, label in enumerate(train)]
    _write_images(root, train_paths, train, num_classes, size, seed)
    write_list(root / "info" / "train_filelist_google.txt", train_paths, train)
    written["train"] = (train_paths, train)
    val = labels_from_counts([val_per_class] * num_classes, seed + 1)
    val_paths = [f"val{i + 1:06d}.jpg" for i in range(len(val))]
    _write_images(root / "val_images_256", val_paths, val, num_classes, size, seed + 1)
    write_list(root / "info" / "val_filelist.txt", val_paths, val)
    written["val"] = (val_paths, val)
    imagenet = labels_from_counts([imagenet_per_class] * num_classes, seed + 2)
    folder = (lambda c: wnids[c]) if imagenet_layout == "wnid" else str
    imagenet_paths = [f"{folder(int(label))}/ILSVRC2012_val_{i + 1:08d}.JPEG" for i, label in enumerate(imagenet)]
    _write_images(root / "imagenet" / "val", imagenet_paths, imagenet, num_classes, size, seed + 2)
    written["imagenet"] = (imagenet_paths, imagenet)
    return written


def write_clothing1m(root: Path, *, noisy_per_class: int = 3, clean_per_class: int = 2, size: int = 8, seed: int = 0,
                     noise_rate: float = 0.3, text_folder: str = ""):
    """The official Clothing1M text files and ``images/<d>/<dd>/<name>.jpg`` (14 classes).

    ``noisy_label_kv.txt`` lists more images than ``noisy_train_key_list.txt`` (as in the release); the
    clean keys of train/val/test are labelled in ``clean_label_kv.txt``, listed in a shuffled order.
    Returns {"train": (keys, noisy labels), "clean_train"/"val"/"test": (keys, clean labels), "truth": {key: true label}}.
    """
    num_classes = 14
    rng = np.random.default_rng(seed)
    text = root / text_folder
    keys, truth = [], []
    total = num_classes * (noisy_per_class + 1 + 3 * clean_per_class)
    for i in range(total):
        keys.append(f"images/{i % 10}/{i % 100:02d}/{i:07d}.jpg")
        truth.append(i % num_classes)
    truth = np.array(truth)
    _write_images(root, keys, truth, num_classes, size, seed)
    n_noisy = num_classes * (noisy_per_class + 1)
    # the first n_noisy images carry noisy labels (in a shuffled order), the rest clean ones; truths cycle
    # through the classes, so every block of 14 * k consecutive clean images has k images per class
    noisy_order = rng.permutation(n_noisy)
    noisy_keys = [keys[j] for j in noisy_order]
    noisy_truth = truth[noisy_order]
    flip = rng.random(n_noisy) < noise_rate
    noisy_labels = np.where(flip, (noisy_truth + 1 + rng.integers(0, num_classes - 1, n_noisy)) % num_classes, noisy_truth)
    # every class keeps at least one noisy training label (the base class needs all classes present)
    noisy_labels[:num_classes] = np.arange(num_classes)
    train_keys, train_labels = noisy_keys[: num_classes * noisy_per_class], noisy_labels[: num_classes * noisy_per_class]
    write_list(text / "noisy_label_kv.txt", noisy_keys[::-1], noisy_labels[::-1])
    write_list(text / "noisy_train_key_list.txt", train_keys)
    written = {"train": (train_keys, train_labels), "truth": dict(zip(keys, truth.tolist()))}
    clean_keys = keys[n_noisy:]
    clean_labels = truth[n_noisy:]
    shuffled = rng.permutation(len(clean_keys))
    write_list(text / "clean_label_kv.txt", [clean_keys[j] for j in shuffled], clean_labels[shuffled])
    per_split = num_classes * clean_per_class
    for j, split in enumerate(("clean_train", "val", "test")):
        part = slice(j * per_split, (j + 1) * per_split)
        name = {"clean_train": "clean_train", "val": "clean_val", "test": "clean_test"}[split] + "_key_list.txt"
        write_list(text / name, clean_keys[part])
        written[split] = (clean_keys[part], clean_labels[part])
    return written


def write_cifar_n(path: Path, arrays: dict[str, np.ndarray], *, numpy1_names: bool = False) -> Path:
    """A CIFAR-N style label file: ``torch.save`` of a dict of NumPy int arrays.

    ``numpy1_names`` rewrites the pickle's module names as NumPy 1.x wrote them
    (``numpy.core.multiarray`` instead of ``numpy._core.multiarray``), like the published files.
    """
    import io
    import zipfile

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: np.asarray(value) for key, value in arrays.items()}, path)
    if numpy1_names:
        with zipfile.ZipFile(path) as original:
            entries = [(name, original.read(name)) for name in original.namelist()]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as rewritten:
            for name, data in entries:
                if name.endswith("data.pkl"):
                    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                rewritten.writestr(name, data)
        path.write_bytes(buffer.getvalue())
    return path


def write_image_folder(root: Path, counts: Sequence[int], *, class_names: Sequence[str] | None = None, size: int = 8,
                       seed: int = 0, nested: bool = False):
    """An ImageFolder tree ``root/<class>/[sub/]<i>.jpg``; returns (relative paths, labels by sorted class name)."""
    names = list(class_names) if class_names is not None else [f"class_{c}" for c in range(len(counts))]
    labels = labels_from_counts(counts, seed)
    paths = [f"{names[int(label)]}/{'sub/' if nested and i % 2 else ''}{i:05d}.jpg" for i, label in enumerate(labels)]
    _write_images(root, paths, labels, len(counts), size, seed)
    rank = {name: r for r, name in enumerate(sorted(names))}
    return paths, np.array([rank[names[int(label)]] for label in labels], dtype=np.int64)


def write_truncated_jpeg(path: Path, size: int = 16) -> Path:
    """A JPEG cut in the middle of its data (PIL refuses to decode it)."""
    write_jpeg(path, band_image(0, 2, size, np.random.default_rng(0)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
