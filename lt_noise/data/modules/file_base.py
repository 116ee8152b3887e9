"""Bases of the datamodules that read image files (JPEGs on disk) instead of in-memory arrays.

- :class:`ImageFileDataModule`: split caching, the "not found" errors with the dataset's layout, list
  reading and image-existence checks shared by Animal-10N, ImageNet-LT, Places-LT, iNaturalist 2018,
  mini-WebVision, Clothing1M and users' own image lists.
- :class:`ImageNetStyleDataModule`: adds the ImageNet conventions (Liu et al. 2019 OLTR code, Kang et
  al. 2020): training with random-resized crop + flip + colour jitter 0.4 (``augment="imagenet"``),
  evaluation with resize to 256/224 of the crop size and a centre crop, ImageNet channel statistics,
  and a selectable ``image_size`` (224 by default; e.g. 299 for Inception-ResNet-v2).

Images are decoded by :class:`lt_noise.data.files.ImageFiles` inside the dataloader's worker processes;
file lists are held as :class:`lt_noise.data.files.PathTable` byte buffers, never as a Python object per
sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from lt_noise.data.files import ImageFiles, PathTable, read_path_list
from lt_noise.data.modules.base import DatasetNotFoundError, LTNoiseDataModule, Split
from lt_noise.validation import check_positive_int

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageFileDataModule", "ImageNetStyleDataModule"]

# Channel statistics of the ImageNet training set (torchvision / OLTR convention).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The standard ImageNet crop side (He et al. 2016).
IMAGENET_SIZE = 224


class ImageFileDataModule(LTNoiseDataModule):
    """Shared machinery of the datamodules over image files (see the module docstring).

    Subclasses implement :meth:`read_split` and set ``dataset_name``, ``layout`` (the expected on-disk
    layout, quoted in every "not found" error) and ``source`` (where to download it). Splits are read
    once and cached, so properties such as a file-derived ``num_classes`` cost nothing after the first
    call. These datasets have no automatic download: ``download: true`` is rejected.
    """

    dataset_name: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    source: ClassVar[str] = ""
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(self, root: str = "data", **kwargs) -> None:
        # Every keyword goes to LTNoiseDataModule, whose signature rejects misspelled ones.
        super().__init__(root, **kwargs)
        if self.download:
            raise ValueError(
                f"Expected `download: false`: {self.dataset_name} has no automatic download. {self.source}"
            )
        self._splits: dict[str, Split] = {}

    # ----------------------------------------------------------------------------------------------
    def read_split(self, split: str) -> Split:
        """Read ``split`` from disk (called once per split; :meth:`load_split` caches the result)."""
        raise NotImplementedError

    def load_split(self, split: str) -> Split:
        if split not in self._splits:
            self._splits[split] = self.read_split(split)
        return self._splits[split]

    # ----------------------------------------------------------------------------------------------
    # Errors and checks
    def not_found(self, searched: Sequence[Path | str], problem: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(self.dataset_name, searched, self.layout, self.source, problem=problem)

    def find_file(self, name: str, folders: Sequence[Path]) -> Path:
        """The first ``folder / name`` that exists, else a DatasetNotFoundError listing all candidates."""
        for folder in folders:
            if (folder / name).is_file():
                return folder / name
        raise self.not_found([folder / name for folder in folders], f"Missing file: {name}")

    def read_list(self, path: Path, *, labels: bool = True) -> tuple[PathTable, np.ndarray | None]:
        """:func:`~lt_noise.data.files.read_path_list`, with unreadable or malformed files as DatasetNotFoundError."""
        try:
            return read_path_list(path, labels=labels)
        except (OSError, ValueError) as error:
            raise self.not_found([path], str(error)) from error

    def image_files(self, root: Path, paths: PathTable) -> ImageFiles:
        """The decoding sequence over ``paths``; checks that the first and last images exist."""
        images = ImageFiles(root, paths, name=self.dataset_name, layout=self.layout, source=self.source)
        if len(images):
            missing = images.first_missing([0, len(images) - 1])
            if missing is not None:
                raise self.not_found(
                    [missing], f"Missing image file {missing} (images not downloaded or not fully extracted?)"
                )
        return images

    def check_labels(self, labels: np.ndarray, split: str, where: Path | str, hint: str = "") -> None:
        """Raise a DatasetNotFoundError if a label of ``split`` is outside [0, num_classes)."""
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise self.not_found(
                [where],
                f"Expected {split} labels in [0, {self.num_classes}), but got values in "
                f"[{labels.min()}, {labels.max()}]{hint}",
            )


class ImageNetStyleDataModule(ImageFileDataModule):
    """An :class:`ImageFileDataModule` with the ImageNet transforms and a selectable ``image_size``.

    Args:
        root: directory holding the dataset (see each subclass).
        image_size: side of the square network input (the random-resized / centre crop).
        **kwargs: the options of :class:`~lt_noise.data.modules.base.LTNoiseDataModule`.
    """

    image_shape = (3, IMAGENET_SIZE, IMAGENET_SIZE)
    default_augment = "imagenet"
    eval_resize_crop = True

    def __init__(self, root: str = "data", *, image_size: int = IMAGENET_SIZE, **kwargs) -> None:
        check_positive_int("image_size", image_size)
        super().__init__(root, **kwargs)
        self._image_size = int(image_size)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self._image_size, self._image_size)
