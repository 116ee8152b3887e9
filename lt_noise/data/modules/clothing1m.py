"""Clothing1M (Xiao et al. 2015): one million clothing images from shopping sites, 14 classes, real noise.

The official release is a set of key lists and key-value label files next to an ``images/`` folder:

- ``noisy_label_kv.txt``: ``"images/0/00/xxx.jpg <label>"`` for the 1,037,497 images with a noisy label;
- ``clean_label_kv.txt``: the 72,409 images with a human-verified (clean) label;
- ``noisy_train_key_list.txt`` (1,000,000 keys, the standard noisy training set),
  ``clean_train_key_list.txt`` (47,570), ``clean_val_key_list.txt`` (14,313),
  ``clean_test_key_list.txt`` (10,526): one key per line.

Training uses the noisy training keys with their noisy labels (``train_set="noisy"``, what ABSGD's
Table 7 and the noisy-label literature report) or the clean training keys (``train_set="clean"``);
the validation split is the clean validation set and the test split the clean test set, both labelled
from ``clean_label_kv.txt``. Keys are joined to labels with NumPy (sorted 64-bit hashes), never through a
Python dict of a million entries.

Transforms: the ImageNet-style pipeline at 224 (random-resized crop + flip + colour jitter; resize 256 +
centre crop 224 for evaluation), normalised with the Clothing1M channel statistics used by the APL and
DivideMix code, (0.6959, 0.6537, 0.6371) / (0.3113, 0.3192, 0.3214).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lt_noise.data.files import PathTable, join_labels
from lt_noise.data.modules.base import Split
from lt_noise.data.modules.file_base import ImageNetStyleDataModule
from lt_noise.validation import check_choice

__all__ = ["Clothing1MDataModule"]

TRAIN_SETS = ("noisy", "clean")
_KEY_LISTS = {
    ("train", "noisy"): ("noisy_train_key_list.txt", "noisy_label_kv.txt"),
    ("train", "clean"): ("clean_train_key_list.txt", "clean_label_kv.txt"),
    ("val", None): ("clean_val_key_list.txt", "clean_label_kv.txt"),
    ("test", None): ("clean_test_key_list.txt", "clean_label_kv.txt"),
}
# Keys of the official lists start with this folder; DivideMix's loader strips it (images extracted
# directly into the root), which is accepted too.
_IMAGE_PREFIX = "images/"
# The label file read by two splits (val and test), so kept after the first read.
_SHARED_LABELS = "clean_label_kv.txt"


class Clothing1MDataModule(ImageNetStyleDataModule):
    """Clothing1M in its official layout.

    Layout (the text files may also sit in ``<root>/annotations/``)::

        <root>/noisy_label_kv.txt, clean_label_kv.txt
        <root>/noisy_train_key_list.txt, clean_train_key_list.txt, clean_val_key_list.txt, clean_test_key_list.txt
        <root>/images/0/00/*.jpg ... <root>/images/9/99/*.jpg   (the extracted images/*.tar)

    Classes: 0 T-Shirt, 1 Shirt, 2 Knitwear, 3 Chiffon, 4 Sweater, 5 Hoodie, 6 Windbreaker, 7 Jacket,
    8 Downcoat, 9 Suit, 10 Shawl, 11 Dress, 12 Vest, 13 Underwear.

    With the noisy training set, ``clean_targets`` equals the noisy labels (the truth of most images is
    unknown) unless synthetic ``noise`` is added on top.

    Args:
        root: the dataset root.
        train_set: ``"noisy"`` (1M keys, noisy labels) or ``"clean"`` (47,570 keys, clean labels).
        image_size: network input side (224).
        **kwargs: the options of :class:`~lt_noise.data.modules.base.LTNoiseDataModule`.
    """

    dataset_name = "Clothing1M"
    num_classes = 14
    has_val_split = True
    # Channel statistics of Clothing1M (APL and DivideMix code).
    mean = (0.6959, 0.6537, 0.6371)
    std = (0.3113, 0.3192, 0.3214)
    class_names = (
        "T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
        "Jacket", "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear",
    )
    layout = (
        "  <root>/noisy_label_kv.txt, <root>/clean_label_kv.txt         ('images/0/00/xxx.jpg <label>' per line)\n"
        "  <root>/noisy_train_key_list.txt, clean_train_key_list.txt, clean_val_key_list.txt, clean_test_key_list.txt\n"
        "      (one key per line; the text files may also be in <root>/annotations/)\n"
        "  <root>/images/<d>/<dd>/*.jpg                                 (the extracted images/*.tar)"
    )
    source = (
        "request access from the authors (https://github.com/Cysu/noisy_label, Xiao et al. 2015) and extract "
        "the archives into <root>"
    )

    def __init__(self, root: str = "data", *, train_set: str = "noisy", **kwargs) -> None:
        check_choice("train_set", train_set, TRAIN_SETS)
        super().__init__(root, **kwargs)
        self.train_set = train_set
        self._kv: dict[str, tuple[Path, PathTable, np.ndarray]] = {}

    def _text_folders(self) -> list[Path]:
        return [self.root, self.root / "annotations"]

    def _label_table(self, name: str) -> tuple[Path, PathTable, np.ndarray]:
        """(path, keys, labels) of a key-value label file; clean_label_kv is kept (val and test share it)."""
        if name in self._kv:
            return self._kv[name]
        path = self.find_file(name, self._text_folders())
        table, labels = self.read_list(path)
        if name == _SHARED_LABELS:
            self._kv[name] = (path, table, labels)  # type: ignore[assignment]
        return path, table, labels  # type: ignore[return-value]

    def _image_keys(self, keys: PathTable) -> PathTable:
        """Keys as paths under the root: as listed, or without 'images/' when extracted DivideMix-style."""
        if not len(keys) or (self.root / keys[0]).is_file() or not keys.startswith(_IMAGE_PREFIX).all():
            return keys
        stripped = keys.strip_prefix(_IMAGE_PREFIX)
        return stripped if (self.root / stripped[0]).is_file() else keys

    def read_split(self, split: str) -> Split:
        key = (split, self.train_set if split == "train" else None)
        if key not in _KEY_LISTS:
            raise ValueError(f"Expected split in ('train', 'val', 'test'), but got {split!r}")
        key_file, label_file = _KEY_LISTS[key]
        key_path = self.find_file(key_file, self._text_folders())
        keys, _ = self.read_list(key_path, labels=False)
        if not len(keys):
            raise self.not_found([key_path], f"Expected keys in {key_path}, but it is empty")
        label_path, table, table_labels = self._label_table(label_file)
        try:
            labels = join_labels(keys, table, table_labels, source=str(label_path))
        except ValueError as error:
            raise self.not_found([key_path, label_path], f"{error} (truncated label file?)") from error
        self.check_labels(labels, split, label_path)
        return Split(images=self.image_files(self.root, self._image_keys(keys)), labels=labels)
