"""ANIMAL-10N (Song, Kim & Lee 2019, SELFIE): 50,000 training / 5,000 test 64x64 JPEGs, 10 classes.

Real label noise (about 8%) from human annotators who labelled five pairs of confusing animals; the
test set keeps only images whose label matches the search keyword. The label is encoded in each file
name as ``<label>_<image id>.jpg``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from lt_noise.data.files import PathTable
from lt_noise.data.modules.base import Split
from lt_noise.data.modules.file_base import ImageFileDataModule

__all__ = ["Animal10NDataModule"]

_FOLDERS = {"train": "training", "test": "testing"}
# "<label>_<image id>.<ext>": the label is the leading integer before the first underscore.
_NAME = re.compile(r"^(\d+)_.+\.(jpe?g|png)$", re.IGNORECASE)


class Animal10NDataModule(ImageFileDataModule):
    """ANIMAL-10N in its official release layout.

    Layout (the official ``raw_image_ver.zip`` unpacked into ``root``; ``<root>/animal10n`` and
    ``<root>/ANIMAL-10N`` are searched too)::

        <root>/training/<label>_<id>.jpg    50,000 images, label in 0..9 from the file name
        <root>/testing/<label>_<id>.jpg      5,000 images

    Classes (official numbering): 0 cat, 1 lynx, 2 wolf, 3 coyote, 4 cheetah, 5 jaguar, 6 chimpanzee,
    7 orangutan, 8 hamster, 9 guinea pig. Inputs are the native 64x64 images. The Dynamic Loss paper
    (Table 7, VGG-19-BN, 100 epochs) does not state its augmentation; the default here is the random
    crop (8 px zero padding, 4 px per 32 px of side) plus horizontal flip used for 32-64 px natural images
    in the SELFIE/CIFAR line of work, and evaluation only normalises. Channel statistics: ImageNet's
    (the paper gives none).

    The training labels are the dataset's own (noisy) labels; ``clean_targets`` therefore equals them
    (the true labels are unknown), unless synthetic ``noise`` is added on top.
    """

    dataset_name = "ANIMAL-10N"
    num_classes = 10
    image_shape = (3, 64, 64)
    default_augment = "crop_flip"
    eval_resize_crop = False
    class_names = ("cat", "lynx", "wolf", "coyote", "cheetah", "jaguar", "chimpanzee", "orangutan", "hamster", "guinea pig")
    layout = (
        "  <root>/training/<label>_<id>.jpg   (50,000 64x64 JPEGs, label 0-9 = the number before '_')\n"
        "  <root>/testing/<label>_<id>.jpg    (5,000 JPEGs)\n"
        "  (also searched: <root>/animal10n/, <root>/ANIMAL-10N/)"
    )
    source = (
        "request and download raw_image_ver.zip from https://dm.kaist.ac.kr/datasets/animal-10n/ and unzip it "
        "into <root>"
    )

    def _folder(self, split: str) -> Path:
        name = _FOLDERS[split]
        candidates = [self.root / name, self.root / "animal10n" / name, self.root / "ANIMAL-10N" / name]
        for folder in candidates:
            if folder.is_dir():
                return folder
        raise self.not_found(candidates, f"Missing folder: {name}/")

    def read_split(self, split: str) -> Split:
        if split not in _FOLDERS:
            raise ValueError(f"Expected split in {tuple(_FOLDERS)}, but got {split!r}")
        folder = self._folder(split)
        with os.scandir(folder) as entries:
            names = sorted(entry.name for entry in entries if entry.is_file() and not entry.name.startswith("."))
        labels = np.empty(len(names), dtype=np.int64)
        for i, name in enumerate(names):
            match = _NAME.match(name)
            if match is None:
                raise self.not_found([folder / name], f"Expected file names '<label>_<id>.jpg', but found {name!r}")
            labels[i] = int(match.group(1))
        if not names:
            raise self.not_found([folder], f"Expected JPEG files in {folder}, but it is empty")
        self.check_labels(labels, split, folder)
        return Split(images=self.image_files(folder, PathTable.from_strings(names)), labels=labels)
