"""Mini-WebVision: the first ``num_classes`` classes of WebVision 1.0's Google subset (Li et al. 2017).

WebVision 1.0 crawled 2.4 million images for the 1,000 ILSVRC-2012 concepts from Google and Flickr,
with real label noise (about 20%) and imbalance. "Mini-WebVision" (Jiang et al. 2018, MentorNet; Ma et
al. 2020, APL; the five papers' noisy-label tables) trains on the Google images of the first 50
classes (about 66k images, imbalance 3134/462 per PAL's Fig. 7) and evaluates on the same classes of the
WebVision validation set (50 clean images per class) and of the ILSVRC-2012 validation set. The
curriculum paper's Table 4 also uses the first 200 and 400 classes: ``num_classes`` selects them.

The WebVision class index is the ILSVRC-2012 synset order (``info/synsets.txt``), which is how the
ImageNet validation images are labelled here. Two ImageNet layouts are read: class folders named by
WordNet id (``val/n01440764/...``, the usual reorganised ILSVRC val) and the DivideMix layout, whose
folders are named by the class index (``imagenet/val/0/ ... imagenet/val/49/``, see
LiJunnan1992/DivideMix ``dataloader_webvision.py``).

Image size: 224 by default, as APL (and so PAL and the curriculum paper) train ResNet-50 on 224x224
crops; the Dynamic Loss paper follows DivideMix with Inception-ResNet-v2, whose code crops 227 px from
the 256 px images (set ``image_size``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lt_noise.data.files import PathTable
from lt_noise.data.modules.base import Split
from lt_noise.data.modules.file_base import ImageNetStyleDataModule
from lt_noise.validation import check_choice

__all__ = ["MiniWebVisionDataModule"]

# WebVision 1.0 has the 1,000 ILSVRC-2012 classes.
WEBVISION_CLASSES = 1000
EVAL_SETS = ("webvision", "imagenet")
# File extensions accepted in the ImageNet class folders (torchvision's ImageFolder list).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class MiniWebVisionDataModule(ImageNetStyleDataModule):
    """The first ``num_classes`` classes of WebVision 1.0 (Google subset), evaluated on WebVision or ImageNet val.

    Layout (the "resized images" release of WebVision 1.0; list paths are relative to ``root``)::

        <root>/info/train_filelist_google.txt   lines "google/q0001/000000.jpg 0"
        <root>/info/val_filelist.txt            lines "val000001.jpg 0"
        <root>/info/synsets.txt                 (optional) the 1,000 WordNet ids in class order
        <root>/google/q0001/000000.jpg ...
        <root>/val_images_256/val000001.jpg ...
        <imagenet_root>/val/<wnid or class index>/*.JPEG   (only for eval_on="imagenet")

    The training labels are WebVision's own (noisy) labels; ``clean_targets`` equals them (the truth is
    unknown) unless synthetic ``noise`` is added on top. The test split is the WebVision validation set
    (``eval_on="webvision"``, default) or the ILSVRC-2012 validation images of the same classes
    (``eval_on="imagenet"``; run ``lt-noise test`` once with each to fill both columns of the tables).

    Args:
        root: the WebVision root.
        num_classes: keep the classes 0..num_classes-1 (50 = mini-WebVision; 200, 400 for the
            curriculum paper's Table 4; at most 1,000).
        eval_on: ``"webvision"`` or ``"imagenet"``: which validation set is the test split.
        imagenet_root: folder containing ``val/`` of ILSVRC-2012 (default ``<root>/imagenet``).
        image_size: network input side (224).
        **kwargs: the options of :class:`~lt_noise.data.modules.base.LTNoiseDataModule`.
    """

    dataset_name = "mini-WebVision"
    layout = (
        "  <root>/info/train_filelist_google.txt  ('google/q0001/000000.jpg 0' per line)\n"
        "  <root>/info/val_filelist.txt           ('val000001.jpg 0' per line)\n"
        "  <root>/info/synsets.txt                (optional: WordNet ids in class order)\n"
        "  <root>/google/...                      (training images, as named in the list)\n"
        "  <root>/val_images_256/...              (validation images)\n"
        "  <imagenet_root or root/imagenet>/val/<wnid>/*.JPEG or .../val/<class index>/*.JPEG (for eval_on=imagenet)"
    )
    source = (
        "WebVision 1.0 'resized images' (Google subset and validation set) and info/ from "
        "https://data.vision.ee.ethz.ch/cvl/webvision/download.html; the ILSVRC-2012 validation images "
        "from https://image-net.org, sorted into class folders"
    )

    def __init__(
        self,
        root: str = "data",
        *,
        num_classes: int = 50,
        eval_on: str = "webvision",
        imagenet_root: str | None = None,
        **kwargs,
    ) -> None:
        if not 2 <= num_classes <= WEBVISION_CLASSES:
            raise ValueError(f"Expected argument `num_classes` in [2, {WEBVISION_CLASSES}], but got {num_classes}")
        check_choice("eval_on", eval_on, EVAL_SETS)
        super().__init__(root, **kwargs)
        self._num_classes = int(num_classes)
        self.eval_on = eval_on
        self.imagenet_root = self.root / "imagenet" if imagenet_root is None else Path(imagenet_root).expanduser()

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return self._num_classes

    def read_split(self, split: str) -> Split:
        if split == "train":
            return self._read_list("train_filelist_google.txt", self.root)
        if split == "test":
            if self.eval_on == "imagenet":
                return self._read_imagenet()
            folders = [self.root / "val_images_256", self.root / "val_images"]
            image_root = next((f for f in folders if f.is_dir()), None)
            if image_root is None:
                raise self.not_found(folders, "Missing folder of WebVision validation images: val_images_256/")
            return self._read_list("val_filelist.txt", image_root)
        raise ValueError(f"Expected split in ('train', 'test'), but got {split!r}")

    def _read_list(self, name: str, image_root: Path) -> Split:
        path = self.find_file(name, [self.root / "info"])
        paths, labels = self.read_list(path)
        keep = np.flatnonzero(labels < self._num_classes)  # type: ignore[operator]
        if not len(keep):
            raise self.not_found([path], f"Expected images of classes 0..{self._num_classes - 1} in {path}, but found none")
        return Split(images=self.image_files(image_root, paths.take(keep)), labels=labels[keep])  # type: ignore[index]

    def _synsets(self) -> list[str] | None:
        path = self.root / "info" / "synsets.txt"
        if not path.is_file():
            return None
        with open(path, encoding="utf-8") as handle:
            return [line.split()[0] for line in handle if line.strip()]

    def _read_imagenet(self) -> Split:
        folder = self.imagenet_root / "val"
        if not folder.is_dir():
            raise self.not_found([folder], "Missing the ILSVRC-2012 validation folder (for eval_on='imagenet')")
        with os.scandir(folder) as entries:
            class_dirs = sorted(entry.name for entry in entries if entry.is_dir())
        if class_dirs and all(name.isdigit() for name in class_dirs):
            index = {name: int(name) for name in class_dirs}  # DivideMix: folders named by class index
        else:
            # WordNet-id folders: WebVision's class order is the ILSVRC synset order, which sorting the
            # 1,000 WordNet ids reproduces when info/synsets.txt is absent.
            order = self._synsets() or class_dirs
            index = {wnid: i for i, wnid in enumerate(order)}
            unknown = [name for name in class_dirs if name not in index]
            if unknown:
                raise self.not_found(
                    [folder / unknown[0]], f"Class folder {unknown[0]!r} is not a synset of info/synsets.txt"
                )
        files: list[str] = []
        labels: list[int] = []
        for name in class_dirs:
            label = index[name]
            if label >= self._num_classes:
                continue
            with os.scandir(folder / name) as entries:
                images = sorted(e.name for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
            files += [f"{name}/{image}" for image in images]
            labels += [label] * len(images)
        if not files:
            raise self.not_found([folder], f"Expected image folders of classes 0..{self._num_classes - 1} in {folder}")
        images = self.image_files(folder, PathTable.from_strings(files))
        return Split(images=images, labels=np.array(labels, dtype=np.int64))
