"""Your own data: an ImageFolder tree or a list of (path, label), with your own (noisy) labels.

Every split (``train``, ``val``, ``test``) is given either as

- a folder in the torchvision ImageFolder layout, ``<folder>/<class name>/**/<image>``: the label is the
  class folder's name; classes are numbered in sorted order of the training folder's class names; or
- a list file, one image per line: ``.csv`` files with columns ``path,label`` (a header row is optional
  and recognised by its first cell: path / file / filename / image / image_path / filepath), any other
  extension whitespace-separated ``"<path> <label>"`` lines (the label is the last field, so paths may
  contain spaces). Labels are integer class indices or class names. Relative paths are resolved
  against ``root``.

Class numbering: ``classes`` (a list of names) if given; otherwise the sorted class names of the
training split, or, if its labels are integers, ``1 + the largest training label`` classes. The
validation and test splits must use the training split's classes. ``num_classes`` and ``class_names``
are available right after construction (they read the training list), as the CLI needs them.

The training labels are yours and may be noisy: ``clean_targets`` equals them (the truth is unknown)
unless synthetic ``noise`` is added on top. Give a clean ``test`` list or folder for the test metrics;
without one the ``val`` split is also the test split.

New images to predict (``lt-noise predict``): ``predict`` is a folder (every file under it, recursively,
in sorted order; no class folders needed) or a list file (``.csv`` with a path column and an optional
label column, any other extension one path per line). Every file is decoded once at ``setup`` so that a
non-image file or an unreadable image is an error naming it before anything is predicted, or, with
``skip_unreadable: true``, is left out and listed in :attr:`ImageListDataModule.skipped_files` (the
prediction writer prints them and writes them beside its CSV).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lt_noise.data.datasets import IndexedDataset
from lt_noise.data.files import ImageFiles, ImageReadError, PathTable, decode_all, image_problem, read_path_list
from lt_noise.data.modules.base import PREDICT_SPLITS, Split
from lt_noise.data.modules.file_base import ImageNetStyleDataModule
from lt_noise.validation import check_flag

__all__ = ["ImageListDataModule"]

# File extensions of images in ImageFolder trees (torchvision's ImageFolder list).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# First cells that mark a CSV header row, and label column names recognised in it.
_PATH_HEADERS = ("path", "file", "filename", "image", "image_path", "filepath")
_LABEL_HEADERS = ("label", "labels", "class", "target", "noisy_label", "category")
_INTEGER = re.compile(r"^\d+$")
# Bad files named in the error of an unreadable predict source (the rest are counted).
_LISTED_BAD_FILES = 10


def _scan_tree(folder: Path) -> tuple[PathTable, np.ndarray]:
    """(paths relative to ``folder``, class-name labels) of an ImageFolder tree, in sorted order."""
    with os.scandir(folder) as entries:
        classes = sorted(entry.name for entry in entries if entry.is_dir() and not entry.name.startswith("."))
    paths: list[str] = []
    names: list[str] = []
    for name in classes:
        for directory, subdirs, files in os.walk(folder / name, followlinks=True):
            subdirs.sort()
            relative = Path(directory).relative_to(folder)
            for file in sorted(files):
                if file.lower().endswith(IMAGE_EXTENSIONS) and not file.startswith("."):
                    paths.append(str(relative / file))
                    names.append(name)
    return PathTable.from_strings(paths), np.array(names, dtype=str)


def _scan_files(folder: Path) -> list[str]:
    """Every non-hidden file under ``folder`` (recursively, following links), as sorted relative paths."""
    found: list[str] = []
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        relative = Path(directory).relative_to(folder)
        found.extend(str(relative / f) for f in files if not f.startswith("."))
    return sorted(found)


def _read_predict_list(path: Path) -> tuple[list[str], list[str] | None]:
    """(paths, raw labels or None) of a predict list: a CSV with a path column and an optional label column
    (header optional), or one path per line."""
    if path.suffix.lower() != ".csv":
        with open(path, encoding="utf-8-sig") as handle:
            return [line.strip() for line in handle if line.strip()], None
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if any(c.strip() for c in row)]
    label_column: int | None = 1
    if rows and rows[0][0].strip().lower() in _PATH_HEADERS:
        header = [cell.strip().lower() for cell in rows.pop(0)]
        label_column = next((header.index(h) for h in _LABEL_HEADERS if h in header), None)
    paths = [row[0].strip() for row in rows]
    if label_column is None or not rows or any(len(row) <= label_column or not row[label_column].strip() for row in rows):
        return paths, None
    return paths, [row[label_column].strip() for row in rows]


def _as_labels(raw: list[str]) -> np.ndarray:
    """Integer labels if every entry is a non-negative integer, else the names (a str array)."""
    if raw and all(_INTEGER.match(value) for value in raw):
        return np.array([int(value) for value in raw], dtype=np.int64)
    return np.array(raw, dtype=str)


def _read_csv(path: Path) -> tuple[PathTable, np.ndarray]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [(number, row) for number, row in enumerate(csv.reader(handle), start=1) if any(c.strip() for c in row)]
    path_column, label_column = 0, 1
    if rows and rows[0][1][0].strip().lower() in _PATH_HEADERS:
        header = [cell.strip().lower() for cell in rows.pop(0)[1]]
        label_column = next((header.index(h) for h in _LABEL_HEADERS if h in header), 1)
    paths, raw = [], []
    for number, row in rows:
        if len(row) <= max(path_column, label_column) or not row[label_column].strip():
            raise ValueError(f"Expected 'path,label' on line {number} of {path}, but got {','.join(row)!r}")
        paths.append(row[path_column].strip())
        raw.append(row[label_column].strip())
    return PathTable.from_strings(paths), _as_labels(raw)


def _read_text(path: Path) -> tuple[PathTable, np.ndarray]:
    try:
        table, labels = read_path_list(path)
        return table, labels  # type: ignore[return-value]
    except ValueError as error:
        if "integer label" not in str(error):
            raise
    # Class names instead of integers: a Python pass over the (user-sized) list.
    paths, raw = [], []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.strip().rsplit(None, 1)
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"Expected '<path> <label>' on line {number} of {path}, but got {line.strip()!r}")
            paths.append(fields[0].strip())
            raw.append(fields[1])
    return PathTable.from_strings(paths), _as_labels(raw)


class ImageListDataModule(ImageNetStyleDataModule):
    """A user's own images with their own labels (see the module docstring for the accepted formats).

    Args:
        root: base folder: the training ImageFolder tree when ``train`` is None, and the folder that
            relative paths (of ``train``/``val``/``test`` and of the images in list files) start from.
        train: training split: a list file or an ImageFolder folder (default: ``root`` itself as a tree).
        val: optional validation split (list or folder); the validation set when ``val_fraction`` is 0.
        test: test split (list or folder), ideally with clean labels; defaults to ``val``. At least one
            of ``val`` and ``test`` is required.
        classes: class names in label order (fixes the numbering; integer labels index into it).
        predict: new images for ``predict`` (a folder or a list file, see the module docstring); when given,
            ``predict`` runs on them unless ``predict_split`` says otherwise.
        skip_unreadable: leave out (and list in :attr:`skipped_files`) files of ``predict`` that are not
            readable images, instead of stopping with an error that names them.
        image_size: network input side (224; the images are resized and cropped to it).
        cache_in_memory: decode every image once (with a progress bar), resize its short side to
            ``image_size`` and centre-crop it square, and keep the split as one uint8 array. Training then
            takes the batched in-memory path (:mod:`lt_noise.data.batched`: no decoding, no workers) when
            ``augment`` is one it implements (``crop_flip``, ``crop``, ``flip``, ``none``; with
            AutoAugment and Cutout); the ImageNet augmentations still run per sample, on the cached
            squares. Evaluation uses the cached squares as they are. Memory: N x image_size^2 x 3 bytes
            per split (50,000 images at 64 px: 614 MB; at 224 px: 7.5 GB).
        **kwargs: the options of :class:`~lt_noise.data.modules.base.LTNoiseDataModule` (noise,
            imbalance, batch size, workers, augmentation, ...).
    """

    dataset_name = "ImageList"
    layout = (
        "  train/val/test: a folder <folder>/<class name>/**/*.jpg (ImageFolder), or a list file:\n"
        "      .csv with columns 'path,label' (optional header), or other text with '<path> <label>' lines;\n"
        "      labels are class indices or class names; relative paths start from `root`"
    )
    source = "your own data (see docs/datasets.md, 'Your own data')"

    def __init__(
        self,
        root: str = "data",
        *,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        classes: Sequence[str] | None = None,
        cache_in_memory: bool = False,
        predict: str | None = None,
        skip_unreadable: bool = False,
        **kwargs,
    ) -> None:
        check_flag("cache_in_memory", cache_in_memory)
        if val is None and test is None:
            raise ValueError(
                "Expected argument `test` (a clean list or ImageFolder of test images) or `val`, but got neither"
            )
        if classes is not None and (len(classes) < 2 or len(set(classes)) != len(classes)):
            raise ValueError(f"Expected argument `classes` to be at least 2 distinct names, but got {list(classes)}")
        check_flag("skip_unreadable", skip_unreadable)
        super().__init__(root, **kwargs)
        if predict is not None and kwargs.get("predict_split") is None:
            self.predict_split = "predict"
        if self.predict_split == "predict" and predict is None:
            raise ValueError("Expected argument `predict` (a folder or list of images) with predict_split 'predict', but got None")
        self.predict_source = predict
        self.skip_unreadable = skip_unreadable
        #: (file, reason) of the files of `predict` left out as unreadable (with `skip_unreadable`).
        self.skipped_files: list[tuple[str, str]] = []
        self._predict: Split | None = None
        self.sources = {"train": train, "val": val, "test": test if test is not None else val}
        self.cache_in_memory = cache_in_memory
        self.classes = None if classes is None else tuple(str(c) for c in classes)
        # The `val` split is a separate validation set only when there is a separate test split too.
        self.has_val_split = val is not None and test is not None  # type: ignore[misc]
        self._raw: dict[str, tuple[Path, PathTable, np.ndarray]] = {}
        self._names: tuple[str, ...] | None = None
        self._count: int | None = None

    # ----------------------------------------------------------------------------------------------
    def _resolve(self, spec: str | None) -> Path:
        if spec is None:
            return self.root
        path = Path(spec).expanduser()
        return path if path.is_absolute() else self.root / path

    def _read_raw(self, split: str) -> tuple[Path, PathTable, np.ndarray]:
        """(image root, paths, raw labels: int64 indices or str names) of a split, read once."""
        if split in self._raw:
            return self._raw[split]
        source = self._resolve(self.sources[split])
        if source.is_dir():
            paths, labels = _scan_tree(source)
            image_root = source
        elif source.is_file():
            try:
                paths, labels = _read_csv(source) if source.suffix.lower() == ".csv" else _read_text(source)
            except (OSError, ValueError, UnicodeDecodeError, csv.Error) as error:
                raise self.not_found([source], str(error)) from error
            image_root = self.root
        else:
            raise self.not_found([source], f"Missing {split} split: no such list file or folder")
        if not len(paths):
            raise self.not_found([source], f"Expected images in the {split} split {source}, but found none")
        self._raw[split] = (image_root, paths, labels)
        return self._raw[split]

    def _numbering(self) -> tuple[tuple[str, ...] | None, int]:
        """(class names or None, number of classes), fixed by `classes` or the training split."""
        if self._count is None:
            if self.classes is not None:
                self._names, self._count = self.classes, len(self.classes)
            else:
                _, _, labels = self._read_raw("train")
                if labels.dtype.kind == "i":
                    self._names, self._count = None, int(labels.max()) + 1
                else:
                    self._names = tuple(str(n) for n in np.unique(labels))
                    self._count = len(self._names)
            if self._count < 2:
                raise self.not_found(
                    [self._resolve(self.sources["train"])],
                    f"Expected at least 2 classes in the training split, but found {self._count} "
                    f"{list(self._names or [])} (is the folder the parent of the class folders?)",
                )
        return self._names, self._count

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return self._numbering()[1]

    @property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        names, count = self._numbering()
        return names if names is not None else tuple(str(i) for i in range(count))

    def _indices(self, labels: np.ndarray, split: str, where: Path) -> np.ndarray:
        names, count = self._numbering()
        if labels.dtype.kind == "i":
            self.check_labels(labels, split, where, hint=" (integer labels index the training classes)")
            return labels.astype(np.int64)
        if names is None:
            raise self.not_found(
                [where],
                f"Expected integer labels in the {split} split like the training split, but got names such as "
                f"{labels[0]!r}",
            )
        unique, inverse = np.unique(labels, return_inverse=True)
        position = {name: i for i, name in enumerate(names)}
        unknown = [str(name) for name in unique if str(name) not in position]
        if unknown:
            raise self.not_found([where], f"The {split} split has classes not in the training classes: {unknown[:5]}")
        return np.array([position[str(name)] for name in unique], dtype=np.int64)[inverse]

    predict_splits = (*PREDICT_SPLITS, "predict")

    def _predict_split(self) -> Split:
        """The readable images of ``predict`` (checked once; see the module docstring) and their labels
        (-1 where the list gives none)."""
        if self._predict is not None:
            return self._predict
        source = self._resolve(self.predict_source)
        if source.is_dir():
            paths, raw, image_root = _scan_files(source), None, source
        elif source.is_file():
            try:
                paths, raw = _read_predict_list(source)
            except (OSError, UnicodeDecodeError, csv.Error) as error:
                raise self.not_found([source], str(error)) from error
            image_root = self.root
        else:
            raise self.not_found([source], "Missing predict images: no such list file or folder")
        if not paths:
            raise self.not_found([source], f"Expected images to predict in {source}, but found none")
        full = [Path(p) if Path(p).is_absolute() else image_root / p for p in paths]
        bad = [(i, problem) for i, path in enumerate(full) if (problem := image_problem(path)) is not None]
        if bad and not self.skip_unreadable:
            listed = "\n".join(f"  - {full[i]}: {problem}" for i, problem in bad[:_LISTED_BAD_FILES])
            more = f"\n  ... and {len(bad) - _LISTED_BAD_FILES} more" if len(bad) > _LISTED_BAD_FILES else ""
            raise ImageReadError(
                f"Expected readable images to predict in {source}, but {len(bad)} of {len(paths)} files are not:\n"
                f"{listed}{more}\nRemove them, or set `skip_unreadable: true` to predict the others and list these."
            )
        self.skipped_files = [(str(full[i]), problem) for i, problem in bad]
        keep = sorted(set(range(len(paths))) - {i for i, _ in bad})
        if not keep:
            raise self.not_found([source], f"Expected readable images to predict in {source}, but none is readable")
        if raw is None:
            labels = np.full(len(keep), -1, dtype=np.int64)
        else:
            labels = self._indices(_as_labels([raw[i] for i in keep]), "predict", source)
        table = PathTable.from_strings([paths[i] for i in keep])
        images = ImageFiles(image_root, table, name=self.dataset_name, layout=self.layout, source=self.source)
        self._predict = Split(images=images, labels=labels)
        return self._predict

    def predict_dataset(self) -> IndexedDataset:
        if self.predict_split != "predict":
            return super().predict_dataset()
        split = self._predict_split()
        return IndexedDataset(split.images, np.arange(len(split.labels)), split.labels, self.eval_transform(), seed=self.seed)

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if stage in (None, "predict") and self.predict_split == "predict":
            self._predict_split()

    def read_split(self, split: str) -> Split:
        if split not in self.sources:
            raise ValueError(f"Expected split in {tuple(self.sources)}, but got {split!r}")
        image_root, paths, raw = self._read_raw(split)
        labels = self._indices(raw, split, self._resolve(self.sources[split]))
        images = self.image_files(image_root, paths)
        if self.cache_in_memory:
            return Split(images=decode_all(images, self.image_size, desc=f"{self.dataset_name} {split}: caching"), labels=labels)
        return Split(images=images, labels=labels)

    @property
    def eval_resize_crop(self) -> bool:  # type: ignore[override]
        """The ImageNet resize / centre crop at evaluation, unless the cache holds the squares already."""
        return not self.cache_in_memory
