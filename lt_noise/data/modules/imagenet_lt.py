"""ImageNet-LT and Places-LT (Liu et al. 2019, "Large-Scale Long-Tailed Recognition in an Open World").

Both are defined by the split files of the OLTR release (github.com/zhmiao/OpenLongTailRecognition-OLTR,
``data/ImageNet_LT/`` and ``data/Places_LT/``, also redistributed by facebookresearch/classifier-balancing):
one line per image, ``"<path relative to the image root> <label>"``. OLTR's loader also accepts lines
that start with ``/`` and joins them to the root, so a leading ``/`` is dropped here as well.

=============  ==========  =======  ============  ========  ======================
dataset        classes     train    val           test      n_max / n_min (train)
=============  ==========  =======  ============  ========  ======================
ImageNet-LT    1,000       115,846  20,000        50,000    1,280 / 5
Places-LT      365         62,500   7,300         36,500    4,980 / 5
=============  ==========  =======  ============  ========  ======================

The val split (20 images per class, drawn from the original training images) is the validation set by
default (``has_val_split``); the test split is the original ImageNet / Places-365 validation set,
balanced, and is what the papers report. The number of classes is read from the training split
(``1 + max label``), so the many/medium/few metrics need no configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from lt_noise.data.modules.base import Split
from lt_noise.data.modules.file_base import ImageNetStyleDataModule

__all__ = ["ImageNetLTDataModule", "PlacesLTDataModule"]

_SPLITS = ("train", "val", "test")


class _OLTRDataModule(ImageNetStyleDataModule):
    """Shared reader of the OLTR split files; subclasses name the split-file prefix."""

    prefix: ClassVar[str] = ""
    has_val_split = True

    def __init__(self, root: str = "data", *, split_dir: str | None = None, **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.split_dir = None if split_dir is None else Path(split_dir).expanduser()

    def _split_folders(self) -> list[Path]:
        if self.split_dir is not None:
            return [self.split_dir]
        return [self.root / self.prefix, self.root]

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        """Number of classes: 1 + the largest label of the training split."""
        labels = self.load_split("train").labels
        return int(labels.max()) + 1 if len(labels) else 0

    def read_split(self, split: str) -> Split:
        if split not in _SPLITS:
            raise ValueError(f"Expected split in {_SPLITS}, but got {split!r}")
        path = self.find_file(f"{self.prefix}_{split}.txt", self._split_folders())
        paths, labels = self.read_list(path)
        if not len(paths):
            raise self.not_found([path], f"Expected at least one '<path> <label>' line in {path}, but it is empty")
        if split != "train":
            self.check_labels(labels, split, path, hint=" (the training split has fewer classes: truncated?)")
        return Split(images=self.image_files(self.root, paths.without_leading_slash()), labels=labels)


class ImageNetLTDataModule(_OLTRDataModule):
    """ImageNet-LT: a Pareto(6)-distributed subset of ImageNet-2012 training images, 1,000 classes.

    Layout (``root`` is the ImageNet-2012 root whose ``train/`` and ``val/`` folders hold one folder per
    synset; the OLTR test list addresses the validation images as ``val/<wnid>/<file>.JPEG``)::

        <root>/train/n01440764/n01440764_190.JPEG ...
        <root>/val/n01440764/ILSVRC2012_val_00000293.JPEG ...
        <root>/ImageNet_LT/ImageNet_LT_{train,val,test}.txt    (or <root>/ or `split_dir`)

    Args:
        root: the ImageNet root.
        split_dir: folder of the three split files (default: ``<root>/ImageNet_LT``, then ``<root>``).
        image_size: network input side (224).
        **kwargs: the options of :class:`~lt_noise.data.modules.base.LTNoiseDataModule`.
    """

    dataset_name = "ImageNet-LT"
    prefix = "ImageNet_LT"
    layout = (
        "  <root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG   (ImageNet-2012, val sorted into class folders)\n"
        "  <root>/ImageNet_LT/ImageNet_LT_train.txt, ImageNet_LT_val.txt, ImageNet_LT_test.txt\n"
        "      (or directly in <root>, or in `split_dir`; lines '<path relative to root> <label>')"
    )
    source = (
        "ImageNet-2012 from https://image-net.org (validation images sorted into <wnid>/ folders); the split "
        "files from https://github.com/zhmiao/OpenLongTailRecognition-OLTR (Google Drive link in its README) "
        "or https://github.com/facebookresearch/classifier-balancing/tree/main/data/ImageNet_LT"
    )


class PlacesLTDataModule(_OLTRDataModule):
    """Places-LT: a Pareto-distributed subset of Places-365-Standard, 365 classes.

    Layout (``root`` is the Places-365 root of the 256x256 release; the OLTR lists address training
    images as ``data_256/<letter>/<category>/<file>.jpg`` and test images as ``val_256/<file>.jpg``)::

        <root>/data_256/a/airfield/00000001.jpg ...
        <root>/val_256/Places365_val_00000001.jpg ...
        <root>/Places_LT/Places_LT_{train,val,test}.txt    (or <root>/ or `split_dir`)

    Args:
        root: the Places-365 root.
        split_dir: folder of the three split files (default: ``<root>/Places_LT``, then ``<root>``).
        image_size: network input side (224).
        **kwargs: the options of :class:`~lt_noise.data.modules.base.LTNoiseDataModule`.
    """

    dataset_name = "Places-LT"
    prefix = "Places_LT"
    layout = (
        "  <root>/data_256/<letter>/<category>/*.jpg and <root>/val_256/*.jpg   (Places-365-Standard, 256x256)\n"
        "  <root>/Places_LT/Places_LT_train.txt, Places_LT_val.txt, Places_LT_test.txt\n"
        "      (or directly in <root>, or in `split_dir`; lines '<path relative to root> <label>')"
    )
    source = (
        "Places-365-Standard small images (train_256_places365standard.tar, val_256.tar) from "
        "http://places2.csail.mit.edu/download.html; the Places_LT split files from "
        "https://github.com/zhmiao/OpenLongTailRecognition-OLTR (Google Drive link in its README)"
    )
